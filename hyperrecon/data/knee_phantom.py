"""Procedural coronal knee phantom: a synthetic stand-in for fastMRI CORPD_FBK / CORPDFS_FBK slices.

No real knee MRI can be had offline, so the default knee data set is drawn here with numpy only (no torch).
Reports that use it must call it synthetic.

Geometry. Every structure is a 2-D signed distance function (SDF, mm, negative inside) of *anatomical*
coordinates ``(u, v)``: ``u`` left-right with the lateral side positive, ``v`` superior -> inferior with
``v = 0`` at the joint line (the femoral/tibial cartilage interface). The image grid (field of view
``FOV_MM`` = 140 mm, as in fastMRI knee) is mapped to ``(u, v)`` through a small smooth per-slice warp and the
subject's rigid pose and scale. Bones are "extruded" in the anterior-posterior direction: the half-width of
each cross-section is multiplied by a chord factor ``sqrt(1 - ((p - p0) / a)^2)``, with ``p`` = ``position``
in [-1, 1] (anterior -> posterior) and ``a`` the structure's AP half-depth, so anatomy shrinks toward the ends,
the femoral shaft leaves first in posterior slices, the notch opens into two condyles, the fibular head
appears posterior-laterally and the patella only in the most anterior slices.

Appearance. Tissues are painted back to front, one painter (``_paint_*``) per structure, with anti-aliased
masks ``alpha = clip(1/2 - d / pixel, 0, 1)``: skin, subcutaneous fat (with fibrous septa), muscle (striated, with
fatty septa), periarticular / Hoffa / popliteal fat, joint fluid, vessels, ligaments and tendons, bone (dark
cortex, trabecular marrow, physeal scar), articular cartilage (deep layer darker) and menisci. Per-contrast
intensities follow proton-density FSE without (``"PD"``) and with fat suppression (``"PDFS"``: fat and marrow dark,
fluid bright, lower SNR).

Acquisition. ``x = m * b * exp(i phi)`` with a smooth multiplicative bias ``b`` (low-order log-polynomial
plus a receive-coil rise toward the periphery) and a smooth phase ``phi``; the outer phase-encode (column)
frequencies are rolled off with a raised cosine (|f| from 0.32 to 0.5 cycles/pixel), which gives the slight
softening and faint ringing of a finite acquisition (circular along columns, like real phase encoding);
white complex Gaussian noise ``sigma (n1 + i n2)`` is added and ``|x + n|`` is returned, so the magnitude
is Rician and pure background is Rayleigh with mean ``sigma * sqrt(pi / 2)``, ``sigma`` being
``noise_sigma(subject, contrast)``. The magnitude is not normalised (PD fat ~ 1; PDFS is about half as
bright with a similar sigma, hence lower SNR).

Textures (trabecular bone, muscle striation, fat lobules, muscle septa, low-frequency heterogeneity) are
band-passed Gaussian noise fields drawn once per (subject, size) from ``subject.texture_seed`` and cached;
per slice two fields are mixed as ``cos(t) A + sin(t) B`` with ``t`` a function of ``position`` (stays unit
variance, varies smoothly between slices). Nothing here touches numpy's global RNG.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from hyperrecon.errors import ConfigError

__all__ = [
    "CONTRASTS",
    "FOV_MM",
    "LABELS",
    "KneeSubject",
    "noise_sigma",
    "render_slice",
    "sample_subject",
]

#: Label map classes, index = value in the ``labels`` image. "meniscus/ligament" holds the dark fibrous
#: tissues (menisci, cruciate and collateral ligaments, tendons, iliotibial band); "muscle/soft tissue" holds
#: muscle, skin, joint fluid, vessels; "fat" holds subcutaneous, intermuscular, Hoffa and popliteal fat.
LABELS: tuple[str, ...] = (
    "background",
    "bone",
    "cartilage",
    "meniscus/ligament",
    "muscle/soft tissue",
    "fat",
)
BACKGROUND, BONE, CARTILAGE, FIBROUS, SOFT, FAT = range(6)
CONTRASTS: tuple[str, ...] = ("PD", "PDFS")
FOV_MM = 140.0

# Base tissue intensities per contrast (before subject jitter, bias and noise). PDFS is scaled down overall
# (fat suppression removes most of the signal), so for a similar noise level its SNR is lower.
# fmt: off
_TISSUE = {
    "PD": dict(
        scale=1.0, skin=0.50, fat=0.95, fat_septa=0.35, muscle=0.36, marrow=0.97, red_marrow=0.25,
        trab=0.32, cortex=0.05, physis=0.45, cart_deep=0.42, cart_sup=0.66, fluid=0.74, meniscus=0.06,
        ligament=0.06, acl=0.22, artery=0.07, vein=0.50, fs_fail=0.0,
    ),
    "PDFS": dict(
        scale=0.5, skin=0.34, fat=0.09, fat_septa=0.20, muscle=0.36, marrow=0.15, red_marrow=-0.60,
        trab=0.20, cortex=0.03, physis=0.25, cart_deep=0.36, cart_sup=0.56, fluid=1.00, meniscus=0.05,
        ligament=0.06, acl=0.30, artery=0.06, vein=0.45, fs_fail=0.15,
    ),
}
# fmt: on
_NOISE_FACTOR = {"PD": 1.0, "PDFS": 0.8}  # sigma relative to subject.noise


@dataclass(frozen=True)
class KneeSubject:
    """Per-subject shape and appearance parameters (lengths in mm, angles in degrees).

    Anatomical frame: ``u`` left-right with the lateral side positive, ``v`` downward, ``v = 0`` at the joint
    line. ``lateral_sign`` = +1 puts the lateral side (fibula) on the image right (x > 0), -1 on the left.
    Frozen (hashable) so per-subject textures can be cached by subject.
    """

    lateral_sign: int
    scale: float  # global anatomical scale factor
    shift_x: float  # in-plane translation of the knee in the field of view (mm)
    shift_y: float
    rotation_deg: float  # in-plane rotation (valgus/varus tilt of the leg axis)
    # femur
    femur_shaft_hw: float  # diaphysis half-width
    condyle_rx_med: float  # condyle half-widths
    condyle_rx_lat: float
    condyle_ry: float  # condyle vertical radius
    notch_hw: float  # intercondylar notch half-width and height
    notch_h: float
    femur_flare: float  # length scale of the metaphyseal taper from the epicondyles to the shaft
    epicondyle_med: float  # epicondylar bulges
    epicondyle_lat: float
    # tibia / fibula
    plateau_hw_med: float
    plateau_hw_lat: float
    tibia_shaft_hw: float
    tibia_flare: float  # length scale of the metaphyseal taper below the plateau
    spine_h: float  # tibial spine (intercondylar eminence) height
    fibula_r: float  # fibular head radius
    fibula_drop: float  # fibular head centre below the lateral plateau
    # joint
    joint_gap: float  # fluid film between cartilage surfaces
    cart_fem: float  # cartilage thicknesses
    cart_tib_med: float
    cart_tib_lat: float
    men_width: float  # meniscal body width and height
    men_height: float
    # soft tissue
    knee_hw_med: float  # skin half-widths at the joint line
    knee_hw_lat: float
    thigh_extra: float  # extra half-width of the thigh (top) and calf (bottom)
    calf_extra: float
    fat_med: float  # subcutaneous fat thickness
    fat_lat: float
    skin_th: float
    # marrow and fluid
    physis_fem: float  # physeal scar distance from the condyle bottom / plateau
    physis_tib: float
    physis_contrast: float  # 0..1
    red_marrow: float  # 0..1 amount of hematopoietic marrow in the metaphyses
    effusion: float  # 0..1 joint fluid amount
    baker: float  # Baker's cyst size (mm), 0 = none
    # appearance
    fat_level: float
    muscle_level: float
    marrow_level: float
    cartilage_level: float
    fluid_level: float
    bias_strength: float
    noise: float  # complex noise sigma of the PD scan (signal units, fat ~ 1)
    texture_seed: int


def sample_subject(rng: np.random.Generator) -> KneeSubject:
    """Draw one subject with realistic adult variability (sizes about +-10 %, fat 3-20 mm, pose +-6 deg)."""
    if not isinstance(rng, np.random.Generator):
        raise ConfigError(f"sample_subject: rng must be a numpy.random.Generator, but got {type(rng).__name__}")

    def u(lo: float, hi: float) -> float:
        return float(rng.uniform(lo, hi))

    plateau_med, plateau_lat = u(36.0, 43.0), u(35.0, 41.0)
    return KneeSubject(
        lateral_sign=int(rng.choice([-1, 1])),
        scale=u(0.88, 1.1),
        shift_x=u(-5.0, 5.0),
        shift_y=u(-10.0, 8.0),
        rotation_deg=u(-6.0, 6.0),
        femur_shaft_hw=u(14.0, 18.0),
        condyle_rx_med=u(13.5, 16.0),
        condyle_rx_lat=u(14.0, 16.5),
        condyle_ry=u(15.0, 19.0),
        notch_hw=u(8.5, 11.5),
        notch_h=u(17.0, 24.0),
        femur_flare=u(26.0, 36.0),
        epicondyle_med=u(1.0, 4.0),
        epicondyle_lat=u(0.5, 3.0),
        plateau_hw_med=plateau_med,
        plateau_hw_lat=plateau_lat,
        tibia_shaft_hw=u(13.0, 16.5),
        tibia_flare=u(20.0, 28.0),
        spine_h=u(5.0, 9.0),
        fibula_r=u(9.0, 12.0),
        fibula_drop=u(17.0, 25.0),
        joint_gap=u(0.3, 0.9),
        cart_fem=u(1.8, 2.8),
        cart_tib_med=u(1.6, 2.5),
        cart_tib_lat=u(2.2, 3.2),
        men_width=u(9.0, 12.5),
        men_height=u(5.5, 8.0),
        knee_hw_med=plateau_med + u(15.0, 30.0),
        knee_hw_lat=plateau_lat + u(11.0, 22.0),
        thigh_extra=u(0.0, 16.0),
        calf_extra=u(-4.0, 8.0),
        fat_med=u(5.0, 20.0),
        fat_lat=u(3.0, 12.0),
        skin_th=u(1.2, 2.2),
        physis_fem=u(17.0, 26.0),
        physis_tib=u(14.0, 22.0),
        physis_contrast=u(0.1, 0.8),
        red_marrow=u(0.0, 0.8),
        effusion=u(0.0, 1.0),
        baker=u(6.0, 14.0) if rng.uniform() < 0.2 else 0.0,
        fat_level=u(0.92, 1.06),
        muscle_level=u(0.88, 1.12),
        marrow_level=u(0.9, 1.05),
        cartilage_level=u(0.9, 1.1),
        fluid_level=u(0.9, 1.1),
        bias_strength=u(0.05, 0.2),
        noise=u(0.014, 0.03),
        texture_seed=int(rng.integers(0, 2**31 - 1)),
    )


def noise_sigma(subject: KneeSubject, contrast: str) -> float:
    """Standard deviation of each of the real and imaginary noise components that ``render_slice`` adds."""
    _check_contrast(contrast)
    return float(subject.noise * _NOISE_FACTOR[contrast])


# ----------------------------------------------------------------------------------------------------------
# small SDF and blending helpers (all work on float32 arrays; mm units)


def _sig(x):
    """Logistic function, numerically safe."""
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _ss(e0: float | np.ndarray, e1: float | np.ndarray, x):
    """Smoothstep from 0 at ``e0`` to 1 at ``e1`` (either order)."""
    t = np.clip((x - e0) / (e1 - e0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _taper(d, d0: float, lam: float, power: float):
    """Metaphyseal taper: 1 up to distance ``d0`` from the joint end, then ``exp(-((d - d0)/lam)^power)``.

    Returns ``(t, |dt/dd|)``; a smooth ramp ``(z + sqrt(z^2 + 9)) / 2`` keeps the profile smooth at ``d0``.
    ``power`` > 1 gives the convex epicondylar shoulders of the femur, ``power`` = 1 the concave wine-glass
    flare of the tibia.
    """
    z = d - d0
    root = np.sqrt(z * z + 9.0)
    x = 0.5 * (z + root) / lam
    t = np.exp(-(x**power))
    return t, power * x ** (power - 1.0) * t * 0.5 * (1.0 + z / root) / lam


def _chord(p: float, p0: float, a, n: int = 2):
    """AP extrusion factor ``(1 - |(p - p0)/a|^n)^(1/n)``: half-width of a body of AP half-depth ``a``.

    n = 2 is an elliptic axial cross-section; n = 4 (bone shafts) a flatter, D-like one whose coronal
    sections stay wide until close to its anterior/posterior surface.
    """
    x = ((p - p0) / a) ** 2
    if n == 4:
        return np.sqrt(np.sqrt(np.clip(1.0 - x * x, 0.0, 1.0)))
    return np.sqrt(np.clip(1.0 - x, 0.0, 1.0))


def _femur_ap(t) -> tuple[Any, Any]:
    """AP centre and half-depth (position units) of the femur at t (1 condyles, 0 shaft).

    The diaphysis is narrow and anterior; the condyles reach far posteriorly, so posterior slices show
    condyles without a shaft and anterior slices the trochlea running into the shaft.
    """
    return -0.33 + 0.35 * t, 0.42 + 0.48 * t


def _tibia_ap(t) -> tuple[Any, Any]:
    """AP centre and half-depth of the tibia at t (1 plateau, 0 shaft); the shaft is anterior.

    Driven by a quicker taper than the width so posterior slices show a rounded plateau "cap".
    """
    return -0.15 + 0.2 * t, 0.6 + 0.3 * t


def _smin(a, b, k: float):
    """Polynomial smooth minimum (smooth union of SDFs) with blending radius k."""
    h = np.clip(0.5 + 0.5 * (b - a) / k, 0.0, 1.0)
    return b + (a - b) * h - k * h * (1.0 - h)


def _smax(a, b, k: float):
    """Smooth maximum (smooth intersection; ``_smax(a, -b)`` subtracts b)."""
    return -_smin(-a, -b, k)


def _ellipse(u, v, cx: float, cy: float, rx: float, ry: float):
    """Approximate SDF of an axis-aligned ellipse (exact on the boundary, first order near it)."""
    qx, qy = (u - cx) / rx, (v - cy) / ry
    k0 = np.sqrt(qx * qx + qy * qy)
    k1 = np.sqrt(qx * qx / (rx * rx) + qy * qy / (ry * ry)) + 1e-6
    return k0 * (k0 - 1.0) / k1


def _capsule(u, v, a: tuple[float, float], b: tuple[float, float], r):
    """SDF of a segment a-b thickened by radius r (r may be an array)."""
    bax, bay = b[0] - a[0], b[1] - a[1]
    pax, pay = u - a[0], v - a[1]
    h = np.clip((pax * bax + pay * bay) / (bax * bax + bay * bay + 1e-9), 0.0, 1.0)
    dx, dy = pax - bax * h, pay - bay * h
    return np.sqrt(dx * dx + dy * dy) - r


def _polyline(u, v, pts: list[tuple[float, float]], r):
    """SDF of a thickened polyline (union of capsules)."""
    d = _capsule(u, v, pts[0], pts[1], r)
    for a, b in zip(pts[1:-1], pts[2:], strict=True):
        d = np.minimum(d, _capsule(u, v, a, b, r))
    return d


def _rbox(u, v, cx: float, cy: float, hx: float, hy: float, r: float):
    """SDF of an axis-aligned box (half-sizes hx, hy) with corners rounded by r."""
    r = min(r, hx, hy)
    qx = np.abs(u - cx) - (hx - r)
    qy = np.abs(v - cy) - (hy - r)
    out = np.sqrt(np.maximum(qx, 0.0) ** 2 + np.maximum(qy, 0.0) ** 2)
    return out + np.minimum(np.maximum(qx, qy), 0.0) - r


def _halfplane(u, v, a: tuple[float, float], b: tuple[float, float], inside: tuple[float, float]):
    """Signed distance to the line a-b, negative on the side of point ``inside``."""
    nx, ny = b[1] - a[1], a[0] - b[0]
    n = math.hypot(nx, ny)
    nx, ny = nx / n, ny / n
    if (inside[0] - a[0]) * nx + (inside[1] - a[1]) * ny > 0:
        nx, ny = -nx, -ny
    return (u - a[0]) * nx + (v - a[1]) * ny


def _ridge(field, f0: float, half_width: float):
    """Thin lines along the zero crossings of a band-passed unit-variance field of centre frequency f0 (1/mm).

    The distance to the zero set is about ``|field| / (2 pi f0)``; returns that distance minus ``half_width``,
    i.e. an SDF of the line network.
    """
    return np.abs(field) / (2.0 * math.pi * f0) - half_width


# ----------------------------------------------------------------------------------------------------------
# per-subject cached textures

_FIELDS = {
    # name: (kind, centre frequency or low-pass width (1/mm), bandwidth, vertical elongation)
    "trab": ("band", 0.32, 0.10, 1.6),  # trabecular network, vertically oriented
    "fine": ("band", 0.75, 0.25, 1.0),  # fine grain
    "stri": ("stri", 0.0, 0.0, 0.0),  # muscle striation (long vertical streaks)
    "lob": ("band", 0.10, 0.035, 1.0),  # fat lobule septa
    "septa": ("band", 0.028, 0.008, 2.2),  # intermuscular septa
    "low": ("low", 0.010, 0.0, 1.0),  # slow heterogeneity
    "edge": ("band", 0.05, 0.02, 1.0),  # boundary irregularity
}


@lru_cache(maxsize=8)
def _subject_textures(subject: KneeSubject, size: int) -> dict[str, np.ndarray]:
    """Unit-variance Gaussian texture fields (2, size, size) per name, plus the subject's wobble coefficients.

    Filters are defined in physical frequency (cycles/mm), so a texture has the same look in mm at any size.
    """
    rng = np.random.default_rng(subject.texture_seed)
    px = FOV_MM / size
    fy = np.fft.fftfreq(size, d=px)[:, None]
    fx = np.fft.rfftfreq(size, d=px)[None, :]
    th = math.radians(subject.rotation_deg)
    # frequency components across / along the leg axis (textures follow the subject's rotation)
    fa = fx * math.cos(th) + fy * math.sin(th)
    fb = -fx * math.sin(th) + fy * math.cos(th)
    names = list(_FIELDS)
    white = rng.standard_normal((len(names), 2, size, size), dtype=np.float32)
    spec = np.fft.rfft2(white)
    for i, name in enumerate(names):
        kind, f0, bw, elong = _FIELDS[name]
        if kind == "band":
            f = np.sqrt(fa**2 + (fb * elong) ** 2)
            filt = np.exp(-0.5 * ((f - f0) / bw) ** 2)
        elif kind == "low":
            filt = np.exp(-0.5 * (fa**2 + fb**2) / f0**2)
        else:  # striation: fine across the fibres, long along them; no DC blobs
            filt = np.exp(-0.5 * ((fa / 0.35) ** 2 + (fb / 0.025) ** 2)) * (1 - np.exp(-0.5 * (fa / 0.06) ** 2))
        spec[i] *= filt
    out = np.fft.irfft2(spec, s=(size, size)).astype(np.float32)
    out /= out.std(axis=(2, 3), keepdims=True) + 1e-12
    tex = {name: out[i] for i, name in enumerate(names)}
    # smooth outline wobble: amplitudes (mm), wavelengths (mm), phases for medial/lateral skin and fat
    tex["wobble"] = np.stack(
        [
            rng.uniform(0.3, 1.6, (4, 3)),
            rng.uniform(35.0, 120.0, (4, 3)),
            rng.uniform(0.0, 2 * math.pi, (4, 3)),
        ]
    ).astype(np.float32)
    tex["phys_phase"] = rng.uniform(0.0, 2 * math.pi, 4).astype(np.float32)
    for arr in tex.values():
        arr.setflags(write=False)
    return tex


def _mix(pair: np.ndarray, p: float, rate: float) -> np.ndarray:
    """Position-dependent unit-variance mixture of two independent fields."""
    t = (p + 1.0) * 0.5 * math.pi * rate
    return math.cos(t) * pair[0] + math.sin(t) * pair[1]


def _wobble(coef: np.ndarray, row: int, v):
    amp, lam, ph = coef[0, row], coef[1, row], coef[2, row]
    return sum(amp[i] * np.sin(2 * math.pi * v / lam[i] + ph[i]) for i in range(3))


# ----------------------------------------------------------------------------------------------------------
# rendering


def _check_contrast(contrast: str) -> None:
    if contrast not in CONTRASTS:
        raise ConfigError(f"knee phantom contrast: expected one of {list(CONTRASTS)}, but got {contrast!r}")


def render_slice(
    subject: KneeSubject,
    position: float,
    contrast: str,
    rng: np.random.Generator,
    size: int = 320,
) -> tuple[np.ndarray, np.ndarray]:
    """Render one coronal slice.

    Args:
        subject: shape parameters from ``sample_subject``.
        position: slice position in [-1, 1], anterior (-1) to posterior (+1) through the joint.
        contrast: ``"PD"`` or ``"PDFS"``.
        rng: source of the per-slice randomness (warp, pose jitter, bias, phase, noise).
        size: output side in pixels; the field of view is always ``FOV_MM``.

    Returns:
        ``(magnitude, labels)``: float32 (size, size) noisy magnitude (not normalised; fat ~ 1 in PD) and
        uint8 (size, size) label map with values indexing ``LABELS``. Row 0 is superior, the femur on top.
    """
    if not isinstance(subject, KneeSubject):
        raise ConfigError(f"render_slice: subject must be a KneeSubject, but got {type(subject).__name__}")
    _check_contrast(contrast)
    if not isinstance(rng, np.random.Generator):
        raise ConfigError(f"render_slice: rng must be a numpy.random.Generator, but got {type(rng).__name__}")
    if isinstance(size, bool) or not isinstance(size, int | np.integer) or size < 32:
        raise ConfigError(f"render_slice: size must be an integer >= 32, but got {size!r}")
    try:
        position = float(position)
    except (TypeError, ValueError):
        raise ConfigError(f"render_slice: position must be a number in [-1, 1], but got {position!r}") from None
    if not -1.0 <= position <= 1.0:
        raise ConfigError(f"render_slice: position must lie in [-1, 1], but got {position}")
    clean, labels = _render_clean(subject, position, contrast, rng, int(size))
    image = _acquire(clean, subject, contrast, rng)
    return image, labels


def _acquire(clean: np.ndarray, subject: KneeSubject, contrast: str, rng: np.random.Generator) -> np.ndarray:
    """Bias field, smooth phase, phase-encode k-space roll-off and complex Gaussian noise; returns |x|."""
    size = clean.shape[0]
    c = np.linspace(-1.0, 1.0, size, dtype=np.float32)
    basis = np.stack([np.ones_like(c), c, c * c - 1.0 / 3.0])  # (3, size)
    # bias: low-order polynomial in log space plus a receive-coil rise toward the periphery
    bc = rng.normal(0.0, subject.bias_strength, (3, 3)).astype(np.float32)
    bc[0, 0] = 0.0
    log_b = basis.T @ bc @ basis
    r2 = c[:, None] ** 2 + c[None, :] ** 2
    bias = np.exp(log_b) * (1.0 + float(rng.uniform(0.0, 0.25)) * r2)
    # phase: random constant, linear and quadratic terms (radians)
    pc = rng.normal(0.0, 1.0, (3, 3)).astype(np.float32) * np.array(
        [[math.pi, 1.0, 0.6], [1.0, 0.5, 0.2], [0.6, 0.2, 0.1]], dtype=np.float32
    )
    phase = basis.T @ pc @ basis
    x = (clean * bias) * np.exp(1j * phase).astype(np.complex64)
    # finite phase-encode (column) sampling: a raised-cosine roll-off over the outer k-space band gives the
    # slight softening and faint ringing of a real acquisition while keeping ringing local to edges
    k = np.fft.fft(x, axis=1)
    f = np.abs(np.fft.fftfreq(size))
    win = 0.5 + 0.5 * np.cos(np.pi * np.clip((f - 0.32) / 0.18, 0.0, 1.0))
    k *= win.astype(np.float32)[None, :]
    x = np.fft.ifft(k, axis=1)
    sigma = noise_sigma(subject, contrast)
    n = rng.standard_normal((2, size, size), dtype=np.float32)
    mag = np.hypot(x.real + sigma * n[0], x.imag + sigma * n[1])
    return mag.astype(np.float32)


class _Canvas:
    """Back-to-front painter: ``img += alpha (value - img)``; label where alpha > 1/2."""

    def __init__(self, size: int, px: float) -> None:
        self.img = np.zeros((size, size), np.float32)
        self.lab = np.zeros((size, size), np.uint8)
        self.px = px

    def alpha(self, sdf):
        return np.clip(0.5 - sdf / self.px, 0.0, 1.0)

    def paint(self, alpha, value, label: int) -> None:
        self.img += alpha * (value - self.img)
        self.lab[alpha > 0.5] = label


@dataclass
class _Slice:
    """One slice being drawn: the subject, its position ``p``, the contrast's intensities ``T``, the canvas, the
    anatomical grid ``(u, v)`` (mm; ``c`` the image grid's pixel centres), this slice's textures and the key levels
    (``fb`` femoral bone bottom, ``cy`` condyle centres, ``vtm``/``vtl`` medial/lateral tibial bone top, mm)."""

    s: KneeSubject
    p: float
    T: dict[str, float]
    tex: dict[str, np.ndarray]
    cv: _Canvas
    c: np.ndarray
    u: np.ndarray
    v: np.ndarray
    trab: np.ndarray
    fine: np.ndarray
    stri: np.ndarray
    lob: np.ndarray
    septa: np.ndarray
    low: np.ndarray
    edge: np.ndarray
    gap: float
    fb: float
    cy: float
    vtm: float
    vtl: float

    def A(self, sdf):
        """Anti-aliased coverage of an SDF on this canvas."""
        return self.cv.alpha(sdf)


@dataclass
class _Femur:
    sdf: np.ndarray
    t: np.ndarray  # metaphyseal taper: 1 near the condyles, 0 up the shaft
    notch: np.ndarray  # SDF of the intercondylar notch
    nh: float  # notch height and half-width at this position
    nw: float


@dataclass
class _Tibia:
    sdf: np.ndarray
    t: np.ndarray  # metaphyseal taper: 1 at the plateau, 0 down the shaft
    top: np.ndarray  # height of the plateau surface along u
    spine: float  # weight of the tibial spines at this position
    spines: np.ndarray
    drop: float  # how far the plateau margins slope down at the AP ends
    ch_plat: float  # AP chord factor of the plateau
    side_l: np.ndarray  # 0 medial .. 1 lateral


@dataclass
class _Leg:
    sdf: np.ndarray  # skin outline
    f_leg: float  # AP chord factor of the leg
    fat_img: np.ndarray  # fat intensity (with fat-suppression failure)
    inside: np.ndarray  # SDF of the inside of the subcutaneous fat


def _render_clean(
    s: KneeSubject, p: float, contrast: str, rng: np.random.Generator, size: int
) -> tuple[np.ndarray, np.ndarray]:
    """Noise-free magnitude (size, size) float32 and labels uint8 of the slice at position p.

    Structures are painted back to front, one painter each; the bone SDFs are built first because soft tissue,
    fluid, ligaments and cartilage are placed relative to them.
    """
    sl = _slice(s, p, contrast, rng, size)
    femur, tibia = _femur(sl), _tibia(sl)
    fib = _fibula(sl, tibia)
    pat = _patella(sl, femur)
    leg = _paint_leg(sl, tibia)
    hx = _paint_periarticular_fat(sl, tibia, leg)
    _paint_joint_fluid(sl, femur, tibia, leg, hx)
    _paint_vessels(sl)
    _paint_ligaments(sl, femur, tibia, fib, leg)
    _paint_bones(sl, femur, tibia, fib, pat)
    th_t = _paint_cartilage(sl, femur, tibia)
    _paint_menisci(sl, femur, tibia, th_t)
    return sl.cv.img * sl.T["scale"], sl.cv.lab


def _slice(s: KneeSubject, p: float, contrast: str, rng: np.random.Generator, size: int) -> _Slice:
    """Draw the slice's randomness, map the image grid to anatomical (u, v) and mix this slice's textures."""
    tex = _subject_textures(s, size)
    px = FOV_MM / size

    # ---- per-slice randomness (fixed draw order keeps it deterministic)
    rot = math.radians(s.rotation_deg + rng.normal(0.0, 0.8))
    jx, jy = (float(j) for j in rng.normal(0.0, 0.6, 2))  # python floats keep the grid float32
    warp = rng.normal(0.0, 0.7, (2, 3, 3)).astype(np.float32)

    # ---- grid (mm), smooth warp, rigid pose -> anatomical (u, v)
    c = ((np.arange(size, dtype=np.float32) + 0.5) * px - FOV_MM / 2).astype(np.float32)
    cb = np.stack([np.cos(math.pi * k * (c / FOV_MM + 0.5)) for k in range(3)]).astype(np.float32)
    dx = cb.T @ warp[0] @ cb
    dy = cb.T @ warp[1] @ cb
    xs = c[None, :] + dx - (s.shift_x + jx)
    ys = c[:, None] + dy - (s.shift_y + jy)
    cr, sr = math.cos(rot), math.sin(rot)
    u = (cr * xs + sr * ys) * (s.lateral_sign / s.scale)
    v = (-sr * xs + cr * ys) / s.scale
    pxa = px / s.scale

    # ---- key levels
    gap = s.joint_gap
    fb = -(s.cart_fem + gap / 2)  # femoral bone bottom (central slices)
    return _Slice(
        s=s,
        p=p,
        T=_TISSUE[contrast],
        tex=tex,
        cv=_Canvas(size, pxa),
        c=c,
        u=u,
        v=v,
        trab=_mix(tex["trab"], p, 1.5),
        fine=_mix(tex["fine"], p, 2.0),
        stri=_mix(tex["stri"], p, 1.0),
        lob=_mix(tex["lob"], p, 0.8),
        septa=_mix(tex["septa"], p, 0.5),
        low=_mix(tex["low"], p, 0.4),
        edge=_mix(tex["edge"], p, 0.5),
        gap=gap,
        fb=fb,
        cy=fb - s.condyle_ry,  # condyle centres
        vtm=gap / 2 + s.cart_tib_med,  # tibial bone top, medial / lateral
        vtl=gap / 2 + s.cart_tib_lat,
    )


# ---- bone shapes (SDFs)


def _femur(sl: _Slice) -> _Femur:
    """Distal femur: shaft with metaphyseal flare and epicondyles, two condyles, the intercondylar notch."""
    s, p, u, v, fb, cy = sl.s, sl.p, sl.u, sl.v, sl.fb, sl.cy
    t_f, dt_f = _taper(fb - v, 25.0, s.femur_flare, 1.6)  # 1 near the condyles, 0 up the shaft
    ch_f = _chord(p, *_femur_ap(_taper(fb - v, 22.0, 24.0, 2.0)[0]), n=4)
    bulge = np.exp(-(((v - (fb - 22.0)) / 10.0) ** 2))
    we_m = s.notch_hw + 2 * s.condyle_rx_med - 1.5 + s.epicondyle_med * bulge
    we_l = s.notch_hw + 2 * s.condyle_rx_lat - 1.5 + s.epicondyle_lat * bulge
    gone = np.float32(30.0) * (ch_f == 0.0)  # push absent cross-sections far outside
    w_m = (s.femur_shaft_hw + (we_m - s.femur_shaft_hw) * t_f) * ch_f - 1.0 - gone
    w_l = (s.femur_shaft_hw + (we_l - s.femur_shaft_hw) * t_f) * ch_f - 1.0 - gone
    slope = (we_l - s.femur_shaft_hw) * dt_f * ch_f
    stem = np.maximum(-w_m - u, u - w_l) / np.sqrt(1.0 + slope * slope)
    stem = _smax(stem, v - cy, 6.0)
    fem = stem
    for side, rx, pc, ac in ((-1, s.condyle_rx_med, 0.15, 1.1), (1, s.condyle_rx_lat, 0.1, 1.05)):
        fc = float(_chord(p, pc, ac))
        if fc > 0.05:
            fcx = fc**0.5  # the distal femur is narrower anteriorly (trochlea) than posteriorly
            ccx = side * ((s.notch_hw + rx) * fcx + 3.0 * max(0.0, p))
            cond = _ellipse(u, v, ccx, cy, rx * fcx, s.condyle_ry * fc)
            fem = _smin(fem, cond, 5.0)
    # intercondylar notch: shallow trochlear groove anteriorly, deep arch centrally, open posteriorly
    nh = 3.0 + (s.notch_h - 3.0) * float(_ss(-0.6, -0.1, p)) + 1.6 * s.notch_h * float(_ss(0.35, 0.95, p))
    nw = s.notch_hw * (0.55 + 0.45 * float(_ss(-0.6, -0.1, p))) + 7.0 * float(_ss(0.3, 1.0, p))
    notch = _rbox(u, v, 0.0, fb + 6.0 - (nh + 6.0) / 2, nw, (nh + 6.0) / 2, nw * 0.9)
    fem = _smax(fem, -notch, 2.0)
    return _Femur(sdf=fem, t=t_f, notch=notch, nh=nh, nw=nw)


def _tibia(sl: _Slice) -> _Tibia:
    """Proximal tibia: shaft with a wine-glass flare, a plateau with two shallow facets and the tibial spines."""
    s, p, u, v, vtm, vtl = sl.s, sl.p, sl.u, sl.v, sl.vtm, sl.vtl
    t_t, dt_t = _taper(v - vtl, 14.0, s.tibia_flare, 1.0)  # 1 at the plateau, 0 down the shaft
    ch_t = _chord(p, *_tibia_ap(_taper(v - vtl, 10.0, 22.0, 2.0)[0]), n=4)
    gone = np.float32(30.0) * (ch_t == 0.0)
    wt_m = (s.tibia_shaft_hw + (s.plateau_hw_med - s.tibia_shaft_hw) * t_t) * ch_t - 1.0 - gone
    wt_l = (s.tibia_shaft_hw + (s.plateau_hw_lat - s.tibia_shaft_hw) * t_t) * ch_t - 1.0 - gone
    ch_plat = float(_chord(p, 0.05, 0.95))
    side_l = _sig(u / 2.0)
    hm, hl = s.plateau_hw_med / 2, s.plateau_hw_lat / 2
    top = (1 - side_l) * (vtm + 1.0 * np.clip(1 - ((u + hm) / hm) ** 2, 0, 1)) + side_l * (
        vtl - 0.8 * np.clip(1 - ((u - hl) / hl) ** 2, 0, 1)
    )
    spine = float(_ss(-0.6, -0.2, p) * (1 - _ss(0.3, 0.7, p)))
    spines = np.exp(-(((u + 4.0) / 3.4) ** 2)) + 0.8 * np.exp(-(((u - 4.0) / 3.4) ** 2))
    drop = 9.0 * float(_ss(0.5, 1.0, abs(p - 0.05)))  # plateau margins slope down at the AP ends
    top = top - s.spine_h * spine * spines + drop
    slope_t = (s.plateau_hw_lat - s.tibia_shaft_hw) * dt_t * ch_t
    tib = _smax(np.maximum(-wt_m - u, u - wt_l) / np.sqrt(1.0 + slope_t * slope_t), top - v, 3.0)
    return _Tibia(sdf=tib, t=t_t, top=top, spine=spine, spines=spines, drop=drop, ch_plat=ch_plat, side_l=side_l)


def _fibula(sl: _Slice, tibia: _Tibia):
    """Fibular head (posterior-lateral slices only, else None), kept 2 mm from the tibia (tibiofibular joint)."""
    s, u, v = sl.s, sl.u, sl.v
    ff = float(_chord(sl.p, 0.6, 0.38))
    if ff <= 0.05:
        return None
    fr = s.fibula_r * ff**0.5
    fcx, fcy = s.plateau_hw_lat * tibia.ch_plat - 2.0, sl.vtl + s.fibula_drop
    fib = _smin(
        _ellipse(u, v, fcx, fcy, fr, fr * 1.15),
        _capsule(u, v, (fcx, fcy), (fcx - 4.0, fcy + 90.0), 0.55 * fr),
        6.0,
    )
    return _smax(fib, -(tibia.sdf - 2.0), 1.0)


def _patella(sl: _Slice, femur: _Femur):
    """Patella (the most anterior slices only, else None), kept 3 mm from the femur."""
    fp = float(_chord(sl.p, -1.05, 0.2))
    if fp <= 0.05:
        return None
    pat = _ellipse(sl.u, sl.v, 3.0, sl.fb - 36.0, 21.0 * fp**0.5, 19.0 * fp**0.7)
    return _smax(pat, -(femur.sdf - 3.0), 2.0)


# ---- painters, back to front


def _paint_leg(sl: _Slice, tibia: _Tibia) -> _Leg:
    """Skin, subcutaneous fat (lobules, septa), muscle (bellies, striation, fatty streaks), intermuscular septa;
    returns the leg outline and fat intensity that later painters use."""
    s, p, T, u, v, c, A, cv = sl.s, sl.p, sl.T, sl.u, sl.v, sl.c, sl.A, sl.cv
    fine, stri, lob, septa, low, edge = sl.fine, sl.stri, sl.lob, sl.septa, sl.low, sl.edge
    side_l = tibia.side_l
    wob = sl.tex["wobble"]
    f_leg = float(_chord(p, 0.1, 1.8))
    thigh = s.thigh_extra * _sig((-25.0 - v) / 14.0)
    calf = s.calf_extra * _sig((v - 45.0) / 14.0)
    hw_m = (s.knee_hw_med + thigh + calf) * f_leg + _wobble(wob, 0, v)
    hw_l = (s.knee_hw_lat + thigh + calf) * f_leg + _wobble(wob, 1, v)
    leg = np.maximum(-hw_m - u, u - hw_l)
    ft = (s.fat_med * (1 - side_l) + s.fat_lat * side_l) * (1.0 + 0.12 * (1 - f_leg))
    ft = ft + (1 - side_l) * _wobble(wob, 2, v) + side_l * _wobble(wob, 3, v) + 1.2 * edge
    ft = np.maximum(ft, 1.5)

    lvl_fat = T["fat"] * s.fat_level
    fat_img = lvl_fat * (1.0 + 0.04 * fine)
    if T["fs_fail"] > 0:  # fat suppression degrades away from the centre
        r2 = (c[None, :] / (FOV_MM / 2)) ** 2 + (c[:, None] / (FOV_MM / 2)) ** 2  # from the FOV centre
        fat_img = fat_img + T["fs_fail"] * np.clip(r2 - 0.45 + 0.3 * low, 0.0, 1.0)
    lob_sdf = _ridge(lob, 0.10, 0.15)
    fat_sub = fat_img + A(lob_sdf) * _ss(-0.6, 0.4, septa) * 0.7 * (T["fat_septa"] - fat_img)
    # each muscle belly (a sign region of the septa field) gets its own brightness
    muscle = T["muscle"] * s.muscle_level * (1.0 + 0.09 * stri + 0.04 * fine + 0.07 * np.tanh(3.0 * septa) + 0.04 * low)
    muscle = muscle + np.clip(stri - 2.2, 0, 1) * 0.6 * (fat_img - muscle)  # intramuscular fat streaks

    cv.paint(A(leg), T["skin"] * (1.0 + 0.05 * fine), SOFT)
    cv.paint(A(leg + s.skin_th), fat_sub, FAT)
    cv.paint(A(leg + s.skin_th + ft), muscle, SOFT)
    # intermuscular fat septa (inside the muscle only)
    msk = A(leg + s.skin_th + ft + 1.0) * A(_ridge(septa, 0.03, 0.3)) * _ss(-0.3, 0.3, edge)
    cv.paint(msk, fat_img, FAT)
    return _Leg(sdf=leg, f_leg=f_leg, fat_img=fat_img, inside=leg + s.skin_th + 0.5)


def _paint_periarticular_fat(sl: _Slice, tibia: _Tibia, leg: _Leg) -> float:
    """Periarticular fat around the joint, Hoffa's pad anteriorly and the popliteal fossa posteriorly; returns the
    half-width (mm) of its box, which bounds the fluid film."""
    s, p, u, v, edge = sl.s, sl.p, sl.u, sl.v, sl.edge
    hx = max(s.plateau_hw_med, s.plateau_hw_lat) * tibia.ch_plat + 9.0
    hy = 13.0 + 14.0 * float(_ss(-0.3, -0.85, p)) + 4.0 * float(_ss(0.4, 0.9, p))
    peri = _rbox(u, v, 0.0, -2.0, hx, hy, 12.0) + 3.0 * edge
    fpop = float(_ss(0.35, 0.8, p))
    if fpop > 0:
        peri = np.minimum(peri, _rbox(u, v, 3.0, -8.0, 4.0 + 14.0 * fpop, 8.0 + 48.0 * fpop, 10.0) + 3.0 * edge)
    sl.cv.paint(sl.A(np.maximum(peri, leg.inside)), leg.fat_img, FAT)
    return hx


def _paint_joint_fluid(sl: _Slice, femur: _Femur, tibia: _Tibia, leg: _Leg, hx: float) -> None:
    """Joint fluid: recesses, notch, the film between cartilages, suprapatellar pouch, Baker's cyst."""
    s, p, u, v, gap, fb, edge = sl.s, sl.p, sl.u, sl.v, sl.gap, sl.fb, sl.edge
    fem, tib, ch_plat, nh, nw = femur.sdf, tibia.sdf, tibia.ch_plat, femur.nh, femur.nw
    fl = sl.T["fluid"] * s.fluid_level
    eff = s.effusion
    fcon = float(_chord(p, 0.05, 0.75))  # AP extent of the tibiofemoral contact
    # film between the cartilage surfaces: only where both surfaces are within 1.5 mm
    film = np.maximum(np.abs(v) - (gap / 2 + 1.5), np.abs(u) - (hx - 9.0))
    film = np.maximum(film, np.maximum(fem - s.cart_fem, tib - np.maximum(s.cart_tib_med, s.cart_tib_lat)) - 1.5)
    fluid = film + 50.0 * (fcon < 0.1)
    for side, pw in ((-1, s.plateau_hw_med), (1, s.plateau_hw_lat)):
        r = fcon * (1.0 + 2.0 * eff)
        fluid = np.minimum(fluid, _ellipse(u, v, side * (pw * ch_plat + 2.0), -3.0, r + 0.1, 2.0 * r + 0.1))
    if -0.5 < p < 0.45:
        nhc = min(nh, s.notch_h)
        fluid = np.minimum(fluid, _ellipse(u, v, 0.0, fb - 0.45 * nhc, 0.4 * nw * eff + 1.0, 0.3 * nhc * eff + 1.0))
    fsp = float(_chord(p, -0.7, 0.2)) * eff  # suprapatellar recess, in front of the distal femur
    if fsp > 0.05:
        fluid = np.minimum(fluid, _ellipse(u, v, 0.0, fb - 52.0, 20.0 * fsp, 3.0 * fsp) + 1.5 * edge)
    if s.baker > 0 and p > 0.55:
        fbk = float(_ss(0.55, 0.8, p))
        fluid = np.minimum(fluid, _ellipse(u, v, -28.0, -8.0, 0.6 * s.baker * fbk, s.baker * fbk))
    sl.cv.paint(sl.A(np.maximum(fluid, leg.inside)), fl * (1.0 + 0.03 * sl.fine), SOFT)


def _paint_vessels(sl: _Slice) -> None:
    """Popliteal vessels (posterior slices): artery dark (flow void), vein brighter."""
    T, u, v, A = sl.T, sl.u, sl.v, sl.A
    fv = float(_chord(sl.p, 1.0, 0.35))
    if fv > 0.05:
        sl.cv.paint(A(_capsule(u, v, (1.5, -90.0), (4.0, 40.0), 2.8 * fv**0.5)), T["artery"], SOFT)
        sl.cv.paint(A(_capsule(u, v, (9.0, -90.0), (8.5, 40.0), 3.5 * fv**0.5)), T["vein"] * (1 + 0.05 * sl.fine), SOFT)


def _femur_edge(sl: _Slice, vv: float, side: int) -> float:
    """Half-width of the femoral metaphysis at height vv (scalar) on one side."""
    s, p, fb = sl.s, sl.p, sl.fb
    tt = float(_taper(fb - vv, 25.0, s.femur_flare, 1.6)[0])
    chh = float(_chord(p, *_femur_ap(_taper(fb - vv, 22.0, 24.0, 2.0)[0]), n=4))
    we = s.notch_hw + 2 * (s.condyle_rx_lat if side > 0 else s.condyle_rx_med) - 1.5
    return (s.femur_shaft_hw + (we - s.femur_shaft_hw) * tt) * chh


def _tibia_edge(sl: _Slice, vv: float, side: int) -> float:
    """Half-width of the tibial metaphysis at height vv (scalar) on one side."""
    s, p, vtl = sl.s, sl.p, sl.vtl
    tt = float(_taper(vv - vtl, 14.0, s.tibia_flare, 1.0)[0])
    chh = float(_chord(p, *_tibia_ap(_taper(vv - vtl, 10.0, 22.0, 2.0)[0]), n=4))
    pw = s.plateau_hw_lat if side > 0 else s.plateau_hw_med
    return (s.tibia_shaft_hw + (pw - s.tibia_shaft_hw) * tt) * chh


def _paint_ligaments(sl: _Slice, femur: _Femur, tibia: _Tibia, fib, leg: _Leg) -> None:
    """Ligaments and tendons (collaterals with their fat sheath, iliotibial band, biceps, popliteus,
    semimembranosus, patellar tendon, cruciates), painted before bone so that attachments disappear into it."""
    s, p, T, u, v, A, cv = sl.s, sl.p, sl.T, sl.u, sl.v, sl.A, sl.cv
    fb, vtm, vtl, edge, fine = sl.fb, sl.vtm, sl.vtl, sl.edge, sl.fine
    ch_plat, nh, nw, f_leg = tibia.ch_plat, femur.nh, femur.nw, leg.f_leg
    lig = T["ligament"] * (1.0 + 0.15 * fine)

    def fem_edge(vv: float, side: int) -> float:
        return _femur_edge(sl, vv, side)

    def tib_edge(vv: float, side: int) -> float:
        return _tibia_edge(sl, vv, side)

    liga = None
    halo = None  # fat sheath around collateral ligaments and the iliotibial band

    def add(sdf, halo_mm: float = 0.0) -> None:
        nonlocal liga, halo
        liga = sdf if liga is None else np.minimum(liga, sdf)
        if halo_mm > 0:
            halo = sdf - halo_mm if halo is None else np.minimum(halo, sdf - halo_mm)

    f_mcl = float(_chord(p, -0.1, 0.5))
    if f_mcl > 0.05:  # medial collateral ligament: femoral epicondyle -> tibia ~55 mm below the joint
        pts = [
            (-(fem_edge(fb - 36.0, -1) + 1.0), fb - 36.0),
            (-(fem_edge(fb - 12.0, -1) + 2.5), fb - 12.0),
            (-(s.plateau_hw_med * ch_plat + 2.5), 0.0),
            (-(tib_edge(22.0, -1) + 3.0), 22.0),
            (-(tib_edge(52.0, -1) + 1.0), 52.0),
        ]
        r = 1.4 * f_mcl**0.5
        add(_polyline(u, v, pts, r), halo_mm=2.5)
    f_lcl = float(_chord(p, 0.45, 0.32))
    if f_lcl > 0.05 and fib is not None:  # lateral collateral ligament: epicondyle -> fibular head
        p1 = (fem_edge(fb - 28.0, 1) + 1.0, fb - 28.0)
        p2 = (s.plateau_hw_lat * ch_plat + 4.0, vtl + s.fibula_drop - 0.5 * s.fibula_r)
        add(_capsule(u, v, p1, p2, 1.3 * f_lcl**0.5), halo_mm=2.0)
    f_bic = float(_ss(0.5, 0.7, p) * (1 - _ss(0.85, 1.0, p)))
    if f_bic > 0.05:  # biceps femoris tendon into the fibular head
        fx0 = s.plateau_hw_lat * ch_plat + 2.0
        add(_capsule(u, v, (fx0, vtl + s.fibula_drop), (fx0 + 7.0, -35.0), 2.0 * f_bic))
    f_itb = float(_chord(p, -0.4, 0.4))
    if f_itb > 0.05:  # iliotibial band to Gerdy's tubercle
        x_top = (s.knee_hw_lat + s.thigh_extra) * f_leg - s.fat_lat - s.skin_th - 4.0
        x_mid = max(fem_edge(fb - 25.0, 1) + 6.0, 0.5 * (x_top + s.plateau_hw_lat))
        g = (s.plateau_hw_lat * ch_plat - 3.0, vtl + 7.0)
        r = 1.1 * f_itb**0.5
        add(_polyline(u, v, [(x_top, -90.0), (x_mid, fb - 25.0), g], r), halo_mm=1.5)
    f_pop = float(_chord(p, 0.35, 0.3))
    if f_pop > 0.05:  # popliteus tendon in its groove on the lateral condyle
        xp = fem_edge(fb - 9.0, 1) * 0.97
        add(_ellipse(u, v, xp, fb - 9.0, 2.2 * f_pop, 1.8 * f_pop))
    f_sm = float(_ss(0.45, 0.7, p))
    if f_sm > 0.05:  # semimembranosus tendon, posteromedial
        xs_ = -(s.plateau_hw_med * ch_plat + 2.0)
        add(_capsule(u, v, (xs_ - 3.0, -40.0), (xs_, vtm + 6.0), 2.2 * f_sm))
    f_pt = float(_chord(p, -1.0, 0.15))
    if f_pt > 0.05:  # patellar tendon: broad band from the lower pole of the patella to the tibial tubercle
        add(_capsule(u, v, (3.0, fb - 20.0), (2.0, vtl + 35.0), 11.0 * f_pt**0.5 + 0.5 * edge))
    f_pcl = float(_chord(p, 0.45, 0.42))
    if f_pcl > 0.05 and nh > 8:  # PCL: medial wall of the notch -> posterior tibia
        add(_capsule(u, v, (-0.55 * nw, fb - 0.75 * nh), (1.0, vtm + 12.0), 3.2 * f_pcl**0.5))
    if halo is not None:
        cv.paint(A(np.maximum(halo + 1.5 * edge, leg.sdf + s.skin_th)), leg.fat_img, FAT)
    if liga is not None:
        cv.paint(A(np.maximum(liga, leg.sdf + s.skin_th)), lig, FIBROUS)
    f_acl = float(_chord(p, -0.05, 0.42))
    if f_acl > 0.05 and nh > 8:  # ACL: striated, intermediate signal
        acl = _capsule(u, v, (0.6 * nw, fb - 0.8 * nh), (-2.0, vtm - 1.0), 2.8 * f_acl**0.5)
        cv.paint(A(acl), T["acl"] * (1.0 + 0.35 * sl.stri), FIBROUS)


def _paint_bones(sl: _Slice, femur: _Femur, tibia: _Tibia, fib, pat) -> None:
    """Femur, tibia, fibula and patella: cortex rim, trabecular marrow, red marrow, physeal scar."""
    s, T, u, fine = sl.s, sl.T, sl.u, sl.fine
    ridge_t = np.exp(-((sl.trab / 0.45) ** 2))
    ridge_f = np.exp(-((fine / 0.5) ** 2))
    # trabecular network broken into struts by the fine field, plus fine grain
    dark = 0.65 * ridge_t * (0.5 + 0.5 * np.tanh(1.5 * fine + 0.5)) + 0.35 * ridge_f
    marrow = T["marrow"] * s.marrow_level * (1.0 - T["trab"] * dark) * (1 + 0.03 * fine)
    red = s.red_marrow * np.clip(0.5 + 0.6 * sl.low, 0.0, 1.0)
    ph = sl.tex["phys_phase"]
    t_f, t_t = femur.t, tibia.t

    def bone(sdf, cortex_th, red_w, phys_v=None):
        _paint_bone(sl, marrow, red, sdf, cortex_th, red_w, phys_v)

    cv_f = 0.9 + 2.6 * (1 - t_f)
    bone(
        femur.sdf,
        cv_f,
        1 - t_f * 0.7,
        sl.fb - s.physis_fem + 2.0 * np.sin(u / 9.0 + ph[0]) + 1.5 * np.sin(u / 4.0 + ph[1]),
    )
    bone(
        tibia.sdf,
        0.9 + 2.6 * (1 - t_t),
        1 - t_t * 0.7,
        (sl.vtm + sl.vtl) / 2 + s.physis_tib + 1.8 * np.sin(u / 8.0 + ph[2]),
    )
    if fib is not None:
        bone(fib, 1.1, 0.3)
    if pat is not None:
        bone(pat, 1.0, 0.2)


def _paint_bone(sl: _Slice, marrow, red, sdf, cortex_th, red_w, phys_v=None) -> None:
    """One bone: marrow (denser near the surface, red marrow weighted by ``red_w``), the physeal scar along
    ``phys_v`` (a height per column, or None) and the cortical rim of thickness ``cortex_th``."""
    s, T, v = sl.s, sl.T, sl.v
    inner = np.exp(np.minimum(sdf, 0.0) / 2.5)  # subchondral sclerosis: denser near the surface
    val = marrow * (1.0 - 0.12 * inner) * (1.0 - T["red_marrow"] * red * red_w)
    if phys_v is not None:
        line = np.exp(-(((v - phys_v - 1.2 * sl.edge) / 0.55) ** 2)) * s.physis_contrast
        val = val + line * (T["physis"] * T["marrow"] - val)
    cort = sl.A(-(sdf + cortex_th))  # 1 in the cortical rim, 0 deeper inside
    val = val + cort * (T["cortex"] - val)
    sl.cv.paint(sl.A(sdf), val, BONE)


def _paint_cartilage(sl: _Slice, femur: _Femur, tibia: _Tibia) -> np.ndarray:
    """Femoral and tibial articular cartilage, the deep (calcified/radial) layer darker than the superficial one;
    returns the tibial cartilage thickness (mm per pixel), which seats the menisci."""
    s, p, T, u, v, A, cv, fine = sl.s, sl.p, sl.T, sl.u, sl.v, sl.A, sl.cv, sl.fine
    fem, tib, side_l, ch_plat = femur.sdf, tibia.sdf, tibia.side_l, tibia.ch_plat
    cy = sl.cy
    lvl_c = s.cartilage_level
    notch_w = _ss(0.5, 3.0, femur.notch)
    w_f = _ss(cy - 0.1 * s.condyle_ry, cy + 0.45 * s.condyle_ry, v) * notch_w
    th_f = s.cart_fem * w_f
    depth = np.clip(fem / np.maximum(th_f, 1e-3), 0.0, 1.0)
    cart_val = lvl_c * (T["cart_deep"] + (T["cart_sup"] - T["cart_deep"]) * depth) * (1 + 0.04 * fine)
    cv.paint(A(np.maximum(-fem, fem - th_f)) * _ss(0.2, 0.7, th_f), cart_val, CARTILAGE)
    ct = (1 - side_l) * s.cart_tib_med + side_l * s.cart_tib_lat
    ew = (1 - side_l) * s.plateau_hw_med + side_l * s.plateau_hw_lat
    w_t = (1 - _ss(ew * ch_plat - 7.0, ew * ch_plat - 1.0, np.abs(u))) * (1 - 0.9 * tibia.spine * tibia.spines)
    w_t = w_t * (1 - _ss(0.55, 0.95, abs(p - 0.05)))
    th_t = ct * w_t
    tib_c = np.maximum(np.maximum(-tib, tib - th_t), v - tibia.top - 1.0)
    depth_t = np.clip(tib / np.maximum(th_t, 1e-3), 0.0, 1.0)
    cart_t = lvl_c * (T["cart_deep"] + (T["cart_sup"] - T["cart_deep"]) * depth_t) * (1 + 0.04 * fine)
    cv.paint(A(tib_c) * _ss(0.2, 0.7, th_t), cart_t, CARTILAGE)
    return th_t


def _paint_menisci(sl: _Slice, femur: _Femur, tibia: _Tibia, th_t: np.ndarray) -> None:
    """Menisci: wedges between the tibial cartilage and the femur at both margins; horns reach further in."""
    s, p, u, v, gap = sl.s, sl.p, sl.u, sl.v, sl.gap
    fem, tib, ch_plat, drop = femur.sdf, tibia.sdf, tibia.ch_plat, tibia.drop
    horn = float(_ss(0.25, 0.75, abs(p - 0.05)))
    fm = float(_chord(p, 0.05, 0.88))
    if fm <= 0.1:
        return
    men = None
    for side, pw, ctk in ((-1, s.plateau_hw_med, s.cart_tib_med), (1, s.plateau_hw_lat, s.cart_tib_lat)):
        u_out = side * (pw * ch_plat + 1.0)
        width = min(s.men_width * (1.0 + 0.6 * horn) * fm**0.5, 0.6 * pw * ch_plat)
        u_in = u_out - side * width
        vb = gap / 2 + ctk + drop  # tibial bone top
        mh = s.men_height * (1.0 - 0.5 * horn) * fm**0.5
        # box between the inner and outer margins, capped at the meniscal height; the femur and the
        # tibial cartilage carve its concave top and its base; the half-plane sharpens the inner tip
        box = np.maximum(np.maximum(v - vb, vb - mh - v), np.maximum(side * (u - u_out), side * (u_in - u)))
        tip = _halfplane(u, v, (u_in, vb - ctk), (u_in + side * 0.6 * width, vb - mh), (u_out, vb))
        m = np.maximum(box, tip)
        men = m if men is None else np.minimum(men, m)
    men = _smax(men, -(fem - s.cart_fem - gap), 0.8)
    men = np.maximum(men, -(tib - th_t - 0.2))
    mval = sl.T["meniscus"] * (1.0 + 0.3 * sl.fine)
    sl.cv.paint(sl.A(men), mval, FIBROUS)
