"""FreeSurfer ``aseg`` label codes -> the 5 tissue classes of the HyperRecon brain segmentation (one table).

Codes and names are those of FreeSurfer's colour table ``FreeSurferColorLUT.txt`` (FreeSurfer 5.3-7.x,
``$FREESURFER_HOME/FreeSurferColorLUT.txt``; https://surfer.nmr.mgh.harvard.edu/fswiki/FsTutorial/AnatomicalROI/
FreeSurferColorLUT). :data:`ASEG_TABLE` lists every code that a standard ``recon-all`` ``aseg.mgz`` of FreeSurfer
5-7 can hold (the labels of ``aseg.stats`` plus 0, cerebral white matter 2/41 and cortex 3/42), the legacy
thalamus codes 9/48, and the six extra-cerebral codes of FreeSurfer's head segmentation (``xcerebralseg``, the
``apas+head`` / ``aseg+head`` volumes: 130, 165, 172, 174, 257, 258).

Classes (the paper's five: background, gray matter, white matter, CSF, cortex), named for what they hold:

0. ``background``: unknown/outside the brain, air, skull, extra-cerebral head tissue.
1. ``subcortical-gm``: gray matter other than the cerebral cortex: thalamus, caudate, putamen, pallidum,
   hippocampus, amygdala, accumbens, ventral diencephalon, cerebellar cortex (and vermis), the brain stem and pons
   (FreeSurfer labels the brain stem as one structure; it is grouped here as in the reference setup), and
   non-white-matter hypointensities (80-82: FreeSurfer labels them in gray-matter structures).
2. ``white-matter``: cerebral and cerebellar white matter, white-matter hypointensities (77-79), the corpus
   callosum (251-255) and the optic chiasm (85, a white-matter tract).
3. ``csf``: ventricles (lateral, inferior lateral, 3rd, 4th, 5th), CSF, choroid plexus (inside the ventricles),
   the vessel label (30/62: perivascular spaces, CSF-dark on T1) and extra-cerebral CSF.
4. ``cortex``: the cerebral cortex (3, 42) only.

A code not in the table (for example cortical parcels 1000-2999 of ``aparc+aseg``, lesion codes, or labels from
another atlas) is refused with one ``DataError`` naming the file and the codes: the merge never guesses.
"""

from __future__ import annotations

import numpy as np

from ..errors import DataError

CLASS_NAMES = ("background", "subcortical-gm", "white-matter", "csf", "cortex")
BACKGROUND, SUBCORTICAL_GM, WHITE_MATTER, CSF, CORTEX = range(5)

#: code -> (FreeSurferColorLUT.txt name, class index)
ASEG_TABLE: dict[int, tuple[str, int]] = {
    0: ("Unknown", BACKGROUND),
    2: ("Left-Cerebral-White-Matter", WHITE_MATTER),
    3: ("Left-Cerebral-Cortex", CORTEX),
    4: ("Left-Lateral-Ventricle", CSF),
    5: ("Left-Inf-Lat-Vent", CSF),
    7: ("Left-Cerebellum-White-Matter", WHITE_MATTER),
    8: ("Left-Cerebellum-Cortex", SUBCORTICAL_GM),
    9: ("Left-Thalamus (legacy code)", SUBCORTICAL_GM),
    10: ("Left-Thalamus (Left-Thalamus-Proper before FreeSurfer 7)", SUBCORTICAL_GM),
    11: ("Left-Caudate", SUBCORTICAL_GM),
    12: ("Left-Putamen", SUBCORTICAL_GM),
    13: ("Left-Pallidum", SUBCORTICAL_GM),
    14: ("3rd-Ventricle", CSF),
    15: ("4th-Ventricle", CSF),
    16: ("Brain-Stem", SUBCORTICAL_GM),
    17: ("Left-Hippocampus", SUBCORTICAL_GM),
    18: ("Left-Amygdala", SUBCORTICAL_GM),
    24: ("CSF", CSF),
    26: ("Left-Accumbens-area", SUBCORTICAL_GM),
    28: ("Left-VentralDC", SUBCORTICAL_GM),
    30: ("Left-vessel", CSF),
    31: ("Left-choroid-plexus", CSF),
    41: ("Right-Cerebral-White-Matter", WHITE_MATTER),
    42: ("Right-Cerebral-Cortex", CORTEX),
    43: ("Right-Lateral-Ventricle", CSF),
    44: ("Right-Inf-Lat-Vent", CSF),
    46: ("Right-Cerebellum-White-Matter", WHITE_MATTER),
    47: ("Right-Cerebellum-Cortex", SUBCORTICAL_GM),
    48: ("Right-Thalamus (legacy code)", SUBCORTICAL_GM),
    49: ("Right-Thalamus (Right-Thalamus-Proper before FreeSurfer 7)", SUBCORTICAL_GM),
    50: ("Right-Caudate", SUBCORTICAL_GM),
    51: ("Right-Putamen", SUBCORTICAL_GM),
    52: ("Right-Pallidum", SUBCORTICAL_GM),
    53: ("Right-Hippocampus", SUBCORTICAL_GM),
    54: ("Right-Amygdala", SUBCORTICAL_GM),
    58: ("Right-Accumbens-area", SUBCORTICAL_GM),
    60: ("Right-VentralDC", SUBCORTICAL_GM),
    62: ("Right-vessel", CSF),
    63: ("Right-choroid-plexus", CSF),
    72: ("5th-Ventricle", CSF),
    77: ("WM-hypointensities", WHITE_MATTER),
    78: ("Left-WM-hypointensities", WHITE_MATTER),
    79: ("Right-WM-hypointensities", WHITE_MATTER),
    80: ("non-WM-hypointensities", SUBCORTICAL_GM),
    81: ("Left-non-WM-hypointensities", SUBCORTICAL_GM),
    82: ("Right-non-WM-hypointensities", SUBCORTICAL_GM),
    85: ("Optic-Chiasm", WHITE_MATTER),
    251: ("CC_Posterior", WHITE_MATTER),
    252: ("CC_Mid_Posterior", WHITE_MATTER),
    253: ("CC_Central", WHITE_MATTER),
    254: ("CC_Mid_Anterior", WHITE_MATTER),
    255: ("CC_Anterior", WHITE_MATTER),
    # head segmentation (xcerebralseg) codes
    130: ("Air", BACKGROUND),
    165: ("Skull", BACKGROUND),
    172: ("Vermis", SUBCORTICAL_GM),
    174: ("Pons", SUBCORTICAL_GM),
    257: ("CSF-ExtraCerebral", CSF),
    258: ("Head-ExtraCerebral", BACKGROUND),
}

#: class index -> the codes it holds (sorted), derived from the table
ASEG_CLASSES: dict[int, tuple[int, ...]] = {
    c: tuple(sorted(code for code, (_, k) in ASEG_TABLE.items() if k == c)) for c in range(len(CLASS_NAMES))
}

_LUT_SIZE = max(ASEG_TABLE) + 1
_UNKNOWN = 255
_LUT = np.full(_LUT_SIZE, _UNKNOWN, dtype=np.uint8)
for _code, (_name, _cls) in ASEG_TABLE.items():
    _LUT[_code] = _cls


def merge_aseg(aseg: np.ndarray, where: str) -> np.ndarray:
    """Map FreeSurfer aseg codes (any integer-valued array) to class indices 0..4 -> uint8, same shape.

    ``DataError`` naming ``where`` for non-integer or negative values, or codes not in :data:`ASEG_TABLE`
    (the message lists up to 10 of them).
    """
    if aseg.size == 0:
        return aseg.astype(np.uint8)
    if not np.issubdtype(aseg.dtype, np.integer):
        if not np.all(np.isfinite(aseg)) or not np.all(aseg == np.round(aseg)):
            raise DataError(f"{where}: aseg has non-integer values; expected FreeSurfer label codes")
    codes = aseg.astype(np.int64)
    if codes.min() < 0:
        raise DataError(f"{where}: aseg has negative value {codes.min()}; expected FreeSurfer label codes >= 0")
    inside = codes < _LUT_SIZE
    out = np.full(codes.shape, _UNKNOWN, dtype=np.uint8)
    out[inside] = _LUT[codes[inside]]
    if np.any(out == _UNKNOWN):
        bad = np.unique(codes[out == _UNKNOWN])
        shown = ", ".join(str(int(c)) for c in bad[:10]) + (f" (+{len(bad) - 10} more)" if len(bad) > 10 else "")
        raise DataError(
            f"{where}: aseg has code(s) {shown} not in the aseg table (hyperrecon/data/aseg.py, from "
            "FreeSurferColorLUT.txt); expected the codes of a FreeSurfer 5-7 aseg.mgz (not aparc+aseg)"
        )
    return out
