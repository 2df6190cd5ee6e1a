"""Bad input through the command line: every case gives exactly one ``error:`` line, no traceback, a non-zero exit
code, and leaves the files on disk as they were (hashed before and after; a new run folder is not even made).

Real files are written with h5py / nibabel / numpy and then truncated or garbled. Run folders come from one finished
smoke run and one "interrupted" run (four jobs done), copied per case so that each case damages its own copy.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from hyperrecon.cli import app
from hyperrecon.config import load_study
from hyperrecon.study import context_for, enqueue, prepare_run, work

runner = CliRunner()
STUDY = ["--study", "sl-knee-denoise", "--profile", "smoke"]
BRAIN = ["--study", "sl-brain-cs", "--profile", "smoke"]


# ------------------------------------------------------------------------------------------------------------
# helpers


def snapshot(root: Path) -> dict[str, str]:
    """SHA-256 of every file under ``root`` (hidden and temporary files included)."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def error_line(args: list[str], code: int, *needles: str) -> str:
    """Invoke the CLI; check the exit code, exactly one ``error:`` line, no traceback; return that line."""
    result = runner.invoke(app, [str(a) for a in args])
    out = result.output
    assert result.exit_code == code, f"exit {result.exit_code}, expected {code}:\n{out}\n{result.exception!r}"
    assert isinstance(result.exception, SystemExit), repr(result.exception)  # no escaped exception
    assert "Traceback" not in out, out
    errors = [line for line in out.splitlines() if "error:" in line]
    assert len(errors) == 1 and errors[0].startswith("error: "), out
    for needle in needles:
        assert needle in errors[0], f"{needle!r} not in {errors[0]!r}"
    return errors[0]


def truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def garble(path: Path, at: float = 0.4, n: int = 256) -> None:
    data = bytearray(path.read_bytes())
    start = int(len(data) * at)
    data[start : start + n] = np.random.default_rng(0).integers(0, 256, n, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))


HEADER = """<?xml version="1.0" encoding="utf-8"?>
<ismrmrdHeader xmlns="http://www.ismrm.org/ISMRMRD"><encoding>
<encodedSpace><matrixSize><x>64</x><y>37</y><z>1</z></matrixSize></encodedSpace>
<reconSpace><matrixSize><x>32</x><y>32</y><z>1</z></matrixSize></reconSpace>
<encodingLimits><kspace_encoding_step_1><minimum>0</minimum><maximum>29</maximum><center>10</center>
</kspace_encoding_step_1></encodingLimits></encoding></ismrmrdHeader>"""


def knee_volume(n: int = 4, h: int = 36, w: int = 30, seed: int = 0) -> np.ndarray:
    """A bright ellipse with a little noise: (n, h, w) float32, anatomy in every slice."""
    yy, xx = np.mgrid[0:h, 0:w]
    ell = (((yy - h / 2) / (0.35 * h)) ** 2 + ((xx - w / 2) / (0.3 * w)) ** 2) < 1
    noise = np.random.default_rng(seed).uniform(0, 0.01, (n, h, w))
    return (np.stack([ell * (k + 1.0) for k in range(n)]) + noise).astype(np.float32)


def write_h5(path: Path, recon: np.ndarray) -> Path:
    """A fastMRI single-coil file: reconstruction_esc, kspace, ismrmrd_header, acquisition and patient attrs."""
    with h5py.File(path, "w") as h:
        h.create_dataset("reconstruction_esc", data=recon)
        h.create_dataset("kspace", data=np.zeros((recon.shape[0], 64, 37), np.complex64))
        h["ismrmrd_header"] = HEADER
        h.attrs["acquisition"] = "CORPD_FBK"
        h.attrs["patient_id"] = path.stem
    return path


def knee_folder(root: Path, n_files: int = 3) -> Path:
    root.mkdir(parents=True)
    for i in range(n_files):
        write_h5(root / f"file{i}.h5", knee_volume(seed=i))
    return root


def brain_folder(root: Path, n_subjects: int = 3) -> Path:
    """FreeSurfer-style subjects: <subj>/mri/norm.mgz (uint8) and aseg.mgz (white matter 2, ventricle 4)."""
    for s in range(n_subjects):
        d = root / f"subj{s}" / "mri"
        d.mkdir(parents=True)
        norm = np.zeros((24, 24, 24), np.uint8)
        norm[4:20, 4:20, 4:20] = 100 + s
        aseg = np.zeros((24, 24, 24), np.int32)
        aseg[4:20, 4:20, 4:20] = 2
        aseg[9:13, 9:13, 9:13] = 4
        nib.save(nib.MGHImage(norm, np.eye(4)), d / "norm.mgz")
        nib.save(nib.MGHImage(aseg, np.eye(4)), d / "aseg.mgz")
    return root


# ------------------------------------------------------------------------------------------------------------
# run folders (made once per module, copied per case)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("finished") / "run"
    result = runner.invoke(app, ["run", *STUDY, "--out", str(out), "--no-report"])
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="module")
def partial_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run stopped after its first four jobs (seg, the two single-term baselines, scales)."""
    out = tmp_path_factory.mktemp("partial") / "run"
    run = prepare_run(load_study("sl-knee-denoise", "smoke"), out=out, resume=False, storage=None, device="cpu")
    ctx = context_for(run)
    enqueue(run, ctx)
    assert work(run, ctx, max_jobs=4) == 4
    return out


@pytest.fixture
def copy_run(tmp_path: Path) -> Callable[[Path], Path]:
    def copy(src: Path) -> Path:
        dst = tmp_path / f"copy-{src.parent.name}"
        shutil.copytree(src, dst)
        return dst

    return copy


def check_unchanged(run_dir: Path, args: list[str], code: int, *needles: str) -> str:
    before = snapshot(run_dir)
    line = error_line(args, code, *needles)
    assert snapshot(run_dir) == before, "the failed command changed the run folder"
    return line


# ------------------------------------------------------------------------------------------------------------
# study files, names, types and ranges (validate and run; a new run folder is never made)


def test_malformed_toml(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "x"\nkind = "sl"\n[train\nsteps = 3\n')
    line = error_line(["validate", "--study", bad], 2, str(bad), "malformed TOML")
    assert "line" in line  # says where in the file


def test_unknown_key_in_a_study_file(tmp_path: Path) -> None:
    src = Path(load_study("sl-knee-denoise", "smoke").source_file).read_text()
    bad = tmp_path / "study.toml"
    bad.write_text(src.replace("[train]\n", "[train]\nepochs = 3\n", 1))
    error_line(["validate", "--study", bad, "--profile", "smoke"], 2, str(bad), "[train]", "unknown key 'epochs'")


def test_not_utf8_study_file(tmp_path: Path) -> None:
    bad = tmp_path / "latin.toml"
    bad.write_bytes('name = "caf\xe9"\n'.encode("latin-1"))
    error_line(["validate", "--study", bad], 2, str(bad), "UTF-8")


CONFIG_CASES = [
    # (id, extra args, needles); every one is a ConfigError: exit 2
    (
        "unknown-study",
        ["--study", "sl-knee-denoize"],
        ["unknown study 'sl-knee-denoize'", "did you mean 'sl-knee-denoise'"],
    ),
    ("unknown-profile", ["--profile", "tiny"], ["--profile", "'tiny' is not one of"]),
    ("unknown-key", ["--set", "train.stepz=3"], ["unknown key 'stepz'", "did you mean 'steps'"]),
    (
        "unknown-loss",
        ["--set", 'loss.terms=["mae","ssimm"]'],
        ["[loss] terms", "unknown loss 'ssimm'", "did you mean 'ssim'"],
    ),
    ("unknown-sampler", ["--set", 'hyper.samplers=["uniformm"]'], ["unknown sampler 'uniformm'"]),
    ("unknown-strategy", ["--set", 'search.strategies=["tpee"]'], ["unknown", "'tpee'", "did you mean 'tpe'"]),
    ("unknown-dataset", ["--set", "data.source=knee-phantomm"], ["unknown dataset 'knee-phantomm'"]),
    (
        "unknown-metric",
        ["--set", 'evaluation.metrics=["psnrr"]'],
        ["[evaluation] metrics", "'psnrr'", "did you mean 'psnr'"],
    ),
    ("unknown-objective", ["--set", "search.objective=ssmi"], ["[search] objective", "'ssmi'"]),
    ("unknown-forward-model", ["--set", "forward.name=denoize"], ["unknown forward model 'denoize'"]),
    ("unknown-plugin", ["--set", 'plugins=["no_such_plugin_mod"]'], ["plugins", "no_such_plugin_mod"]),
    (
        "unknown-data-param",
        ["--set", "data.params.n_trian=3"],
        ["[data] params", "'n_trian'", "did you mean 'n_train'"],
    ),
    ("type-lr-string", ["--set", "train.lr=fast"], ["[train] lr", "expected number", '"fast"']),
    ("type-steps-float", ["--set", "train.steps=1.5"], ["[train] steps", "expected integer", "1.5"]),
    ("type-sizes-int", ["--set", "hyper.sizes=3"], ["[hyper] sizes", "expected list"]),
    ("type-channels-last", ["--set", "train.channels_last=1"], ["[train] channels_last", "expected boolean"]),
    ("range-lr", ["--set", "train.lr=2"], ["`0 < lr < 1` must hold", "lr=2"]),
    ("range-image-size", ["--set", "data.image_size=30"], ["image_size % 8 == 0", "image_size=30"]),
    ("range-batch", ["--set", "train.batch_size=0"], ["`batch_size >= 1` must hold"]),
    ("lambda-above-1", ["--set", "baselines.grid=[0.0,1.5]"], ["[baselines] grid", "every λ in [0, 1]", "1.5"]),
    ("lambda-negative", ["--set", "baselines.grid=[-0.25,0.5]"], ["[baselines] grid", "every λ in [0, 1]", "-0.25"]),
    ("forward-param", ["--set", "forward.params.sigma=-1"], ["sigma", "-1"]),
    ("scales-length", ["--set", "loss.scales=[1.0]"], ["[loss] scales", "one scale per term"]),
    ("scales-negative", ["--set", "loss.scales=[1.0,-2.0]"], ["[loss] scales", "every scale > 0"]),
    ("groups-divide", ["--set", "hyper.groups=3"], ["[hyper] groups", "batch_size % groups == 0"]),
    ("set-syntax", ["--set", "train.steps"], ["expected key=value"]),
]


@pytest.mark.parametrize(("extra", "needles"), [c[1:] for c in CONFIG_CASES], ids=[c[0] for c in CONFIG_CASES])
def test_config_errors(tmp_path: Path, extra: list[str], needles: list[str]) -> None:
    base = {"--study": "sl-knee-denoise", "--profile": "smoke"}
    for key in ("--study", "--profile"):
        if key in extra:
            base[key] = extra[extra.index(key) + 1]
    rest = [a for i, a in enumerate(extra) if a not in base and (i == 0 or extra[i - 1] not in base)]
    args = [*(x for kv in base.items() for x in kv), *rest]
    error_line(["validate", *args], 2, *needles)
    out = tmp_path / "new-run"
    error_line(["run", *args, "--out", out], 2, *needles)
    assert not out.exists()  # nothing was made


def test_bad_device_and_storage(tmp_path: Path) -> None:
    out = tmp_path / "new-run"
    error_line(["run", *STUDY, "--device", "tpu", "--out", out], 2, "--device", "'tpu'")
    error_line(["run", *STUDY, "--storage", "ftp://host/db", "--out", out], 2, "--storage", "postgresql://")
    assert not out.exists()


def test_unreachable_database(tmp_path: Path) -> None:
    pytest.importorskip("psycopg2")
    out = tmp_path / "new-run"
    # Port 1 on loopback: refused at once. The password must not be printed.
    line = error_line(
        ["run", *STUDY, "--storage", "postgresql://me:secret@127.0.0.1:1/hr", "--out", out],
        1,
        "cannot connect",
        "me:***@127.0.0.1:1",
    )
    assert "secret" not in line
    assert not out.exists()


# ------------------------------------------------------------------------------------------------------------
# data (--data): missing, unreadable, empty, corrupt, wrong shapes, non-finite, labels


def _data_error(tmp_path: Path, data: Path, *needles: str, study: list[str] = STUDY, code: int = 2) -> str:
    out = tmp_path / "new-run"
    line = error_line(["run", *study, "--data", data, "--out", out], code, *needles)
    assert not out.exists()  # bad data are found before the run folder is made
    return line


def test_data_path_missing(tmp_path: Path) -> None:
    _data_error(tmp_path, tmp_path / "nowhere", str(tmp_path / "nowhere"), "no such file or folder")
    error_line(["validate", *STUDY, "--data", tmp_path / "nowhere"], 2, "no such file or folder")


@pytest.mark.skipif(not Path("/proc/self/mem").exists(), reason="needs Linux /proc")
def test_data_file_unreadable(tmp_path: Path) -> None:
    # Tests run as root, which ignores permission bits: a file whose read fails is a link to /proc/self/mem.
    f = tmp_path / "slices.npy"
    f.symlink_to("/proc/self/mem")
    _data_error(tmp_path, f, str(f), "cannot read")


def test_data_folder_empty(tmp_path: Path) -> None:
    d = tmp_path / "empty"
    d.mkdir()
    _data_error(tmp_path, d, str(d), "cannot tell the data format")


def test_data_folder_without_known_files(tmp_path: Path) -> None:
    d = tmp_path / "notes"
    d.mkdir()
    (d / "readme.txt").write_text("no images here")
    _data_error(tmp_path, d, str(d), "cannot tell the data format", "expected .h5 files")


def test_data_h5_truncated(tmp_path: Path) -> None:
    d = knee_folder(tmp_path / "knee")
    truncate(d / "file1.h5")
    _data_error(tmp_path, d, str(d / "file1.h5"), "cannot read")


def test_data_h5_garbled(tmp_path: Path) -> None:
    d = knee_folder(tmp_path / "knee")
    f = d / "file2.h5"
    f.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(range(256)) * 40)  # an HDF5 signature, then rubbish
    _data_error(tmp_path, d, str(f), "cannot read")


def test_data_h5_not_finite(tmp_path: Path) -> None:
    d = knee_folder(tmp_path / "knee")
    vol = knee_volume(seed=9)
    vol[1, 10, 10] = np.inf
    write_h5(d / "file0.h5", vol)
    _data_error(tmp_path, d, str(d / "file0.h5"), "NaN or Inf")


def test_data_mgz_truncated(tmp_path: Path) -> None:
    d = brain_folder(tmp_path / "brain")
    f = d / "subj1" / "mri" / "norm.mgz"
    truncate(f)
    _data_error(tmp_path, d, str(f), "cannot read volume", study=BRAIN)


def test_data_mgz_garbled(tmp_path: Path) -> None:
    d = brain_folder(tmp_path / "brain")
    f = d / "subj0" / "mri" / "aseg.mgz"
    data = f.read_bytes()  # keep the gzip header, replace the compressed stream by rubbish
    f.write_bytes(data[:20] + np.random.default_rng(1).integers(0, 256, len(data) - 20, dtype=np.uint8).tobytes())
    _data_error(tmp_path, d, str(f), "cannot read volume", study=BRAIN)


def test_data_mgz_garbled_inside_the_stream(tmp_path: Path) -> None:
    d = brain_folder(tmp_path / "brain")
    f = d / "subj0" / "mri" / "aseg.mgz"
    garble(f, at=0.3, n=64)  # deflate still decodes: 2931 voxels change
    error_line(
        ["data", "preview", *BRAIN, "--data", d, "--out", tmp_path / "preview"],
        2,
        str(f),
        "cannot read volume",
        "gzip stream",
    )


def test_data_npy_four_dims_with_channels(tmp_path: Path) -> None:
    f = tmp_path / "rgb.npy"
    np.save(f, np.random.default_rng(0).random((6, 3, 32, 32), dtype=np.float32))
    _data_error(tmp_path, f, str(f), "(6, 3, 32, 32)", "expected (N, H, W) or (N, 1, H, W)")


def test_data_npy_one_dim(tmp_path: Path) -> None:
    f = tmp_path / "flat.npy"
    np.save(f, np.ones(100, np.float32))
    _data_error(tmp_path, f, str(f), "(100,)", "expected (N, H, W)")


def test_data_npy_not_finite(tmp_path: Path) -> None:
    f = tmp_path / "nan.npy"
    x = knee_volume(8, 32, 32)
    x[3, 5, 5] = np.nan
    np.save(f, x)
    _data_error(tmp_path, f, str(f), "NaN or Inf")


def test_data_labels_do_not_match_images(tmp_path: Path) -> None:
    f = tmp_path / "pairs.npz"
    np.savez(f, images=knee_volume(8, 32, 32), labels=np.zeros((8, 30, 32), np.uint8))
    _data_error(tmp_path, f, str(f), "labels have shape (8, 30, 32) but images (8, 32, 32)")


def test_data_npz_truncated(tmp_path: Path) -> None:
    f = tmp_path / "slices.npz"
    np.savez(f, images=knee_volume(8, 32, 32))
    truncate(f)
    _data_error(tmp_path, f, str(f), "cannot read")


def test_data_too_few_slices(tmp_path: Path) -> None:
    f = tmp_path / "two.npy"
    np.save(f, knee_volume(2, 32, 32))
    _data_error(tmp_path, f, str(f), "expected at least 3")


def test_data_reader_param(tmp_path: Path) -> None:
    f = tmp_path / "ok.npy"
    np.save(f, knee_volume(8, 32, 32))
    _data_error(tmp_path, f, "normalize", "'loud'", study=[*STUDY, "--set", "data.params.normalize=loud"])


# ------------------------------------------------------------------------------------------------------------
# output folders


def test_out_inside_a_regular_file(tmp_path: Path) -> None:
    f = tmp_path / "a-file"
    f.write_text("mine")
    error_line(["run", *STUDY, "--out", f / "run"], 1, str(f / "run"), "cannot create the run folder")
    error_line(["run", *STUDY, "--out", f], 1, str(f), "not a folder")
    assert f.read_text() == "mine"


@pytest.mark.skipif(not Path("/proc/self").exists(), reason="needs Linux /proc")
def test_out_under_proc() -> None:
    # root may write almost anywhere; /proc takes no new folders, for root neither.
    error_line(
        ["run", *STUDY, "--out", "/proc/self/hrbench-run"], 1, "/proc/self/hrbench-run", "cannot create the run folder"
    )


def test_report_out_inside_a_regular_file(tmp_path: Path, finished_run: Path, copy_run) -> None:
    run = copy_run(finished_run)
    f = tmp_path / "a-file"
    f.write_text("mine")
    error_line(["report", run, "--out", f / "report.md"], 1, str(f))
    assert f.read_text() == "mine"


# ------------------------------------------------------------------------------------------------------------
# run folders: incompatible versions, damaged files, corrupt checkpoints and weights


RESUME = ["run", *STUDY, "--resume", "--no-report", "--out"]


def _edit_json(path: Path, **changes) -> None:
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


def test_resume_incompatible_format(partial_run: Path, copy_run) -> None:
    run = copy_run(partial_run)
    _edit_json(run / "run.json", format=99)
    check_unchanged(run, [*RESUME, run], 1, str(run / "run.json"), "format 99", "start a new run")


def test_worker_incompatible_format(partial_run: Path, copy_run) -> None:
    run = copy_run(partial_run)
    _edit_json(run / "run.json", format=0)
    check_unchanged(run, ["worker", "--run-dir", run], 1, str(run / "run.json"), "format 0")


def test_resume_garbled_run_json(partial_run: Path, copy_run) -> None:
    run = copy_run(partial_run)
    (run / "run.json").write_text('{"format": 1, "run_id": ')
    check_unchanged(run, [*RESUME, run], 1, str(run / "run.json"), "corrupt JSON")


def test_resume_config_missing(partial_run: Path, copy_run) -> None:
    run = copy_run(partial_run)
    (run / "config.json").unlink()
    check_unchanged(run, [*RESUME, run], 1, str(run / "config.json"), "missing")


def test_resume_with_another_config(partial_run: Path, copy_run) -> None:
    run = copy_run(partial_run)
    check_unchanged(run, [*RESUME, run, "--set", "seed=3"], 1, "different study config")


def test_resume_with_another_storage(partial_run: Path, copy_run, tmp_path: Path) -> None:
    run = copy_run(partial_run)
    check_unchanged(
        run, [*RESUME, run, "--storage", tmp_path / "other.journal"], 2, "--storage", "resume without --storage"
    )


def test_resume_ledger_missing(partial_run: Path, copy_run) -> None:
    run = copy_run(partial_run)
    (run / "ledger.journal").unlink()
    check_unchanged(run, [*RESUME, run], 1, str(run / "ledger.journal"), "missing")


def test_resume_ledger_garbled(partial_run: Path, copy_run) -> None:
    run = copy_run(partial_run)
    text = (run / "ledger.journal").read_text().splitlines(keepends=True)
    text[len(text) // 2] = '{"op_code": 5, "worker_id": \n'
    (run / "ledger.journal").write_text("".join(text))
    check_unchanged(run, [*RESUME, run], 1, str(run / "ledger.journal"), "ledger is corrupt")


def test_resume_job_record_garbled(partial_run: Path, copy_run) -> None:
    run = copy_run(partial_run)
    (run / "jobs" / "seg.json").write_text('{"job": "seg", "cost": {')
    check_unchanged(run, [*RESUME, run], 1, str(run / "jobs" / "seg.json"), "corrupt JSON")


@pytest.mark.parametrize("damage", [truncate, garble], ids=["truncated", "garbled"])
def test_resume_from_a_corrupt_checkpoint(partial_run: Path, finished_run: Path, copy_run, damage) -> None:
    # baseline-0.5 has not finished in the partial run: a checkpoint of it is what --resume continues from.
    run = copy_run(partial_run)
    ckpt = run / "checkpoints" / "baseline-0.5.pt"
    shutil.copy(finished_run / "checkpoints" / "baseline-0.5.pt", ckpt)
    damage(ckpt)
    check_unchanged(run, [*RESUME, run], 1, str(ckpt), "corrupt")


def test_resume_from_a_checkpoint_of_another_format(partial_run: Path, finished_run: Path, copy_run) -> None:
    run = copy_run(partial_run)
    ckpt = run / "checkpoints" / "baseline-0.5.pt"
    state = torch.load(finished_run / "checkpoints" / "baseline-0.5.pt", weights_only=True)
    torch.save({**state, "format_version": 7}, ckpt)
    check_unchanged(run, [*RESUME, run], 1, str(ckpt), "format version 7")


@pytest.mark.parametrize("damage", [truncate, garble], ids=["truncated", "garbled"])
def test_resume_with_corrupt_model_weights(partial_run: Path, copy_run, damage) -> None:
    # baseline-0 finished training, its evaluation has not run: --resume will read these weights.
    run = copy_run(partial_run)
    weights = run / "models" / "baseline-0.pt"
    damage(weights)
    check_unchanged(run, [*RESUME, run], 1, str(weights), "model weights")


def test_resume_finished_run_with_a_garbled_result_table(finished_run: Path, copy_run) -> None:
    run = copy_run(finished_run)
    # A moved folder tells its ledger where it now is on its first resume: do that first, then damage a table.
    assert runner.invoke(app, [*RESUME, str(run)]).exit_code == 0
    (run / "eval" / "baseline-0.csv").write_text('model,lam1\n"baseline-0,0.0\n')
    check_unchanged(run, [*RESUME, run], 1, str(run / "eval" / "baseline-0.csv"), "corrupt table")


def test_worker_without_a_run(tmp_path: Path) -> None:
    error_line(["worker"], 2, "--run-dir", "--storage")
    error_line(["worker", "--run-dir", tmp_path / "nowhere"], 1, str(tmp_path / "nowhere"), "no such run folder")


def test_report_on_a_run_without_results(partial_run: Path, copy_run) -> None:
    run = copy_run(partial_run)
    check_unchanged(run, ["report", run], 1, str(run / "results.csv"), "missing", "--resume")


def test_report_on_a_folder_that_is_no_run(tmp_path: Path) -> None:
    d = tmp_path / "somewhere"
    d.mkdir()
    (d / "notes.txt").write_text("x")
    check_unchanged(d, ["report", d], 1, str(d / "run.json"), "missing")
    error_line(["report", tmp_path / "nowhere"], 1, "not a folder")


def test_report_with_a_garbled_results_table(finished_run: Path, copy_run) -> None:
    run = copy_run(finished_run)
    (run / "results.csv").write_bytes(b"\xff\xfe\x00garbage" * 50)
    check_unchanged(run, ["report", run], 1, str(run / "results.csv"))


def test_report_with_an_empty_results_table(finished_run: Path, copy_run) -> None:
    run = copy_run(finished_run)
    (run / "results.csv").write_text("")
    check_unchanged(run, ["report", run], 1, str(run / "results.csv"), "empty")


def test_report_with_truncated_evaluation_images(finished_run: Path, copy_run) -> None:
    run = copy_run(finished_run)
    images = run / "eval" / "baseline-0-images.npz"
    truncate(images)
    check_unchanged(run, ["report", run], 1, str(images), "corrupt or truncated")


def test_messages_with_brackets_are_printed_whole(tmp_path: Path) -> None:
    # Rich markup would swallow "[data]" in a message; the error line must keep it.
    error_line(["validate", *STUDY, "--set", "data.params.n_trian=3"], 2, "[data] params")
    assert os.environ.get("OMP_NUM_THREADS") == "1"  # conftest keeps the suite to one thread per process
