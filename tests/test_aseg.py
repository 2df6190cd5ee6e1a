"""FreeSurfer aseg codes -> the 5 brain classes (issue 13, item 2): every code of a FreeSurfer 5-7 aseg.mgz.

The expected values come from FreeSurfer's colour table (FreeSurferColorLUT.txt): the code -> name pairs below
are copied from it, and each name's tissue is decided here by rules on the name, independently of the package.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from hyperrecon.data import load_data
from hyperrecon.data.aseg import ASEG_CLASSES, ASEG_TABLE, CLASS_NAMES, merge_aseg
from hyperrecon.errors import DataError

# FreeSurferColorLUT.txt: every label of a recon-all aseg.mgz (FreeSurfer 5.3-7: the aseg.stats rows plus 0, 2, 3,
# 41, 42), the legacy thalamus codes 9/48, and the extra-cerebral codes of FreeSurfer's head segmentation.
LUT = {
    0: "Unknown",
    2: "Left-Cerebral-White-Matter",
    3: "Left-Cerebral-Cortex",
    4: "Left-Lateral-Ventricle",
    5: "Left-Inf-Lat-Vent",
    7: "Left-Cerebellum-White-Matter",
    8: "Left-Cerebellum-Cortex",
    9: "Left-Thalamus",
    10: "Left-Thalamus",
    11: "Left-Caudate",
    12: "Left-Putamen",
    13: "Left-Pallidum",
    14: "3rd-Ventricle",
    15: "4th-Ventricle",
    16: "Brain-Stem",
    17: "Left-Hippocampus",
    18: "Left-Amygdala",
    24: "CSF",
    26: "Left-Accumbens-area",
    28: "Left-VentralDC",
    30: "Left-vessel",
    31: "Left-choroid-plexus",
    41: "Right-Cerebral-White-Matter",
    42: "Right-Cerebral-Cortex",
    43: "Right-Lateral-Ventricle",
    44: "Right-Inf-Lat-Vent",
    46: "Right-Cerebellum-White-Matter",
    47: "Right-Cerebellum-Cortex",
    48: "Right-Thalamus",
    49: "Right-Thalamus",
    50: "Right-Caudate",
    51: "Right-Putamen",
    52: "Right-Pallidum",
    53: "Right-Hippocampus",
    54: "Right-Amygdala",
    58: "Right-Accumbens-area",
    60: "Right-VentralDC",
    62: "Right-vessel",
    63: "Right-choroid-plexus",
    72: "5th-Ventricle",
    77: "WM-hypointensities",
    78: "Left-WM-hypointensities",
    79: "Right-WM-hypointensities",
    80: "non-WM-hypointensities",
    81: "Left-non-WM-hypointensities",
    82: "Right-non-WM-hypointensities",
    85: "Optic-Chiasm",
    251: "CC_Posterior",
    252: "CC_Mid_Posterior",
    253: "CC_Central",
    254: "CC_Mid_Anterior",
    255: "CC_Anterior",
    130: "Air",
    165: "Skull",
    172: "Vermis",
    174: "Pons",
    257: "CSF-ExtraCerebral",
    258: "Head-ExtraCerebral",
}

# the structures aseg.stats reports (FreeSurfer 5.3-7), which every standard aseg.mgz may hold
ASEG_STATS = {
    4,
    5,
    7,
    8,
    10,
    11,
    12,
    13,
    14,
    15,
    16,
    17,
    18,
    24,
    26,
    28,
    30,
    31,
    43,
    44,
    46,
    47,
    49,
    50,
    51,
    52,
    53,
    54,
    58,
    60,
    62,
    63,
    72,
    77,
    78,
    79,
    80,
    81,
    82,
    85,
    251,
    252,
    253,
    254,
    255,
}


def tissue(name: str) -> str:
    """The class a structure belongs to, from its colour-table name alone."""
    if name in ("Unknown", "Air", "Skull", "Head-ExtraCerebral"):
        return "background"
    if name.endswith("Cerebral-Cortex"):
        return "cortex"  # the cerebral cortex only; cerebellar cortex is below
    if name.startswith("non-WM") or name.split("-", 1)[-1].startswith("non-WM"):
        return "subcortical-gm"
    if "White-Matter" in name or "WM-hypointensities" in name or name.startswith("CC_") or name == "Optic-Chiasm":
        return "white-matter"
    if "Ventricle" in name or name.endswith("-Vent") or "CSF" in name or "choroid-plexus" in name or "vessel" in name:
        return "csf"
    return "subcortical-gm"  # nuclei, hippocampus, amygdala, ventral DC, cerebellar cortex, vermis, brain stem


def test_table_covers_every_standard_aseg_code_with_its_lut_name():
    assert ASEG_STATS | {0, 2, 3, 41, 42} <= set(ASEG_TABLE)
    assert set(ASEG_TABLE) == set(LUT)
    for code, (name, _) in ASEG_TABLE.items():
        assert name.split(" (")[0] == LUT[code], code


@pytest.mark.parametrize("code", sorted(LUT))
def test_each_code_maps_to_the_tissue_its_name_says(code):
    want = CLASS_NAMES.index(tissue(LUT[code]))
    assert ASEG_TABLE[code][1] == want
    assert merge_aseg(np.array([[code]], np.int32), "x").tolist() == [[want]]
    assert code in ASEG_CLASSES[want]


def test_issue_codes():
    """The issue's report: corpus callosum and WM hypointensities are white matter, the 5th ventricle is CSF."""
    wm, csf = CLASS_NAMES.index("white-matter"), CLASS_NAMES.index("csf")
    got = merge_aseg(np.array([251, 252, 253, 254, 255, 77, 78, 79, 72]), "x")
    assert got.tolist() == [wm] * 8 + [csf]
    assert CLASS_NAMES == ("background", "subcortical-gm", "white-matter", "csf", "cortex")


@pytest.mark.parametrize("codes", [[2, 1001], [3, 1, 40], [2, 99], [256], [2, 5002, 2035]])
def test_unknown_codes_are_one_clear_error(codes):
    unknown = sorted({c for c in codes if c not in LUT})
    with pytest.raises(DataError) as err:
        merge_aseg(np.array(codes), "sub/aseg.mgz")
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith(f"sub/aseg.mgz: aseg has code(s) {', '.join(map(str, unknown))} not in the aseg table")


def test_many_unknown_codes_are_listed_briefly():
    with pytest.raises(DataError, match=r"code\(s\) 1000, 1001, .*, 1009 \(\+5 more\) not in the aseg table"):
        merge_aseg(np.arange(1000, 1015), "x")


def test_real_aseg_volume_through_the_reader(tmp_path: Path):
    """A FreeSurfer-style .mgz holding every table code in its own block: the bundle's labels, per class, cover
    exactly the voxels of the structures of that tissue."""
    rng = np.random.default_rng(0)
    codes = sorted(LUT)
    side = 10
    for s in range(3):
        d = tmp_path / f"sub{s}" / "mri"
        d.mkdir(parents=True)
        aseg = np.zeros((side * 8, side * 8, 3), np.int32)
        for k, c in enumerate(rng.permutation(codes)):
            i, j = divmod(k, 8)
            aseg[i * side : (i + 1) * side, j * side : (j + 1) * side, :] = c
        t1 = np.where(aseg > 0, 100 + aseg % 100, 0).astype(np.uint8)
        nib.save(nib.MGHImage(t1, np.eye(4)), d / "norm.mgz")
        nib.save(nib.MGHImage(aseg, np.eye(4)), d / "aseg.mgz")
        if s == 0:
            truth = aseg
    b = load_data("freesurfer-brain", image_size=80, seed=0, path=tmp_path, cache_dir=False)
    assert b.class_names == CLASS_NAMES
    split = next(sp for sp in b.splits.values() if any(i.startswith("sub0/") for i in sp.ids))
    k = next(n for n, i in enumerate(split.ids) if i.startswith("sub0/"))
    z = int(split.ids[k].rsplit("/z", 1)[1])
    codes_2d = truth[:, :, z].T[::-1]  # RAS storage with an identity affine: axial view, anterior up
    for name in CLASS_NAMES:
        structures = [c for c in codes if tissue(LUT[c]) == name]
        np.testing.assert_array_equal(split.labels[k] == CLASS_NAMES.index(name), np.isin(codes_2d, structures))
    assert b.meta["aseg_classes"] == {CLASS_NAMES[c]: list(m) for c, m in ASEG_CLASSES.items()}


def test_docs_table_lists_the_same_codes():
    """docs/data.md shows the table to users: each class row holds exactly that class's codes."""
    import re

    text = (Path(__file__).resolve().parents[1] / "docs" / "data.md").read_text()
    for c, name in enumerate(CLASS_NAMES):
        row = next(line for line in text.splitlines() if line.startswith(f"| {c} `{name}` |"))
        cell = re.sub(r"\([^)]*\)", "", row.split("|")[2])  # drop remarks in parentheses ("before FS 7")
        listed = {int(n) for pair in re.findall(r"\b(\d+)(?:/(\d+))?\b", cell) for n in pair if n}
        assert listed == set(ASEG_CLASSES[c]), name
