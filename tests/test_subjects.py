"""Statistics units on nested data: slices group by the reader's subject (patient), not by the first path part.

With path-based volume ids, ``siteA/patient1/file.h5`` gives slice ids ``siteA/patient1/file/000``; the part before
the first ``/`` is the site, so grouping by it would pool every patient of a site into one unit (issue 15, item 4).
Layouts are written here with h5py; expected subjects and unit means are written out by hand.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

# the reader tests' fastMRI file writer (tests/ is on sys.path under pytest)
from test_identity import volume, write_h5

from hyperrecon.data import load_data
from hyperrecon.data.identity import volume_of
from hyperrecon.evaluation import EvalData, evaluate_model
from hyperrecon.models import UNet
from hyperrecon.physics import Denoise
from hyperrecon.reporting.stats import subject_of, subjects, unit_values

SIZE = 16


def test_fastmri_nested_ids_carry_the_patient_as_subject(tmp_path):
    root = tmp_path / "data"
    layout = {  # path under the root -> patient_id attribute (None: the file is its own patient)
        "siteA/patient1/scan1.h5": "A-p1",
        "siteA/patient1/scan2.h5": "A-p1",
        "siteA/patient2/scan1.h5": "A-p2",
        "siteA/patient3/scan1.h5": None,
        "siteB/patient1/scan1.h5": "B-p1",
        "siteB/patient4/scan1.h5": "B-p4",
    }
    expected = {  # volume id -> subject
        "siteA/patient1/scan1": "A-p1",
        "siteA/patient1/scan2": "A-p1",
        "siteA/patient2/scan1": "A-p2",
        "siteA/patient3/scan1": "siteA/patient3/scan1",
        "siteB/patient1/scan1": "B-p1",
        "siteB/patient4/scan1": "B-p4",
    }
    for i, (rel, patient) in enumerate(layout.items()):
        write_h5(root / rel, volume(i), patient)
    b = load_data("fastmri-knee", image_size=SIZE, seed=0, path=root, cache_dir=False)
    seen = {}
    for split in b.splits.values():
        assert split.subjects is not None and len(split.subjects) == len(split)
        for sid, subj in zip(split.ids, split.subject_ids(), strict=True):
            seen[volume_of(sid)] = subj
            assert subject_of(sid) in ("siteA", "siteB")  # the old first-part rule: the site, not the patient
    assert seen == expected


def test_split_without_reader_subjects_falls_back_to_the_volume():
    from hyperrecon.data.base import Split

    s = Split(np.zeros((3, 8, 8), np.float32), None, ["a/b/f/000", "a/b/f/001", "a/c/g/000"])
    assert s.subject_ids() == ["a/b/f", "a/b/f", "a/c/g"]
    assert volume_of("flat") == "flat"


def test_evaluation_table_has_the_subject_column_and_stats_group_by_it():
    ids = ["siteA/patient1/f/000", "siteA/patient1/f/001", "siteA/patient2/f/000"]
    rng = np.random.default_rng(0)
    data = EvalData.from_arrays(
        rng.random((3, 16, 16)).astype(np.float32), None, Denoise((16, 16)), generator_seed=0, ids=ids,
        subjects=["p1", "p1", "p2"],
    )  # fmt: skip
    torch.manual_seed(0)
    table = evaluate_model(UNet(width=4), "unet-0", data, np.array([[0.0]]), ["mae"]).table
    assert list(table["subject"]) == ["p1", "p1", "p2"]
    assert data.subset([2, 0]).subjects == ["p2", "p1"]
    # default subjects: each slice's volume
    assert EvalData.from_arrays(
        rng.random((2, 16, 16)).astype(np.float32), None, Denoise((16, 16)), generator_seed=0, ids=ids[1:]
    ).subjects == ["siteA/patient1/f", "siteA/patient2/f"]

    table["replicate"] = 0
    units = unit_values(table, "unet-0", "mae")
    v = table["value"].to_numpy()
    assert list(units.index) == [(0, "p1"), (0, "p2")]  # two patients, not one site
    np.testing.assert_allclose(units.to_numpy(), [(v[0] + v[1]) / 2, v[2]])


def test_stats_fall_back_to_the_first_part_only_without_a_subject_column():
    rows = pd.DataFrame(
        {
            "model": "m",
            "lam1": 0.0,
            "slice": ["siteA/p1/f/000", "siteA/p1/f/001", "siteA/p2/f/000", "siteA/p2/f/001"],
            "metric": "psnr",
            "replicate": 0,
            "value": [1.0, 3.0, 10.0, 20.0],
        }
    )
    old = unit_values(rows, "m", "psnr")
    assert list(old.index) == [(0, "siteA")] and old.iloc[0] == pytest.approx(8.5)
    rows["subject"] = ["p1", "p1", "p2", ""]  # an empty cell falls back for that row
    assert list(subjects(rows)) == ["p1", "p1", "p2", "siteA"]
    new = unit_values(rows, "m", "psnr")
    assert dict(new) == {(0, "p1"): 2.0, (0, "p2"): 10.0, (0, "siteA"): 20.0}
