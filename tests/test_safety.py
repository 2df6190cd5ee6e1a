"""Safety: no code runs when a checkpoint or weights file is loaded, plugins are imported only when a study lists
them, hrbench opens no server, and every result file is written atomically (temp file in the same folder + rename).

The source checks read ``hyperrecon/`` with :mod:`ast`, so a new ``torch.load`` without ``weights_only=True``, a
new server socket or a new direct file write fails here with the file and line.
"""

from __future__ import annotations

import ast
import os
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from hyperrecon.checkpoints import load_checkpoint
from hyperrecon.cli import app
from hyperrecon.config import load_study
from hyperrecon.errors import CheckpointError
from hyperrecon.study import load_weights

PKG = Path(__file__).resolve().parent.parent / "hyperrecon"
runner = CliRunner()


def sources() -> list[tuple[str, ast.Module]]:
    return [
        (str(p.relative_to(PKG.parent)), ast.parse(p.read_text(), filename=str(p))) for p in sorted(PKG.rglob("*.py"))
    ]


def calls(tree: ast.AST):
    """(call node, dotted name of what is called, enclosing function name)."""

    def dotted(node: ast.AST) -> str:
        if isinstance(node, ast.Name):
            return node.id
        if isinstance(node, ast.Attribute):
            return f"{dotted(node.value)}.{node.attr}"
        return "?"

    def walk(node: ast.AST, func: str):
        for child in ast.iter_child_nodes(node):
            name = child.name if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef) else func
            if isinstance(child, ast.Call):
                yield child, dotted(child.func), name
            yield from walk(child, name)

    yield from walk(tree, "<module>")


# ------------------------------------------------------------------------------------------------------------
# loading is safe


def test_every_torch_load_is_weights_only() -> None:
    found = []
    for path, tree in sources():
        for node, name, _ in calls(tree):
            if name == "torch.load":
                ok = any(
                    k.arg == "weights_only" and isinstance(k.value, ast.Constant) and k.value.value is True
                    for k in node.keywords
                )
                assert ok, f"{path}:{node.lineno}: torch.load without weights_only=True"
                found.append(path)
    assert found  # the check saw the loaders (training.load_checkpoint, study.load_weights)


class Payload:
    """Unpickling this runs code: it touches the file named in ``MARK``."""

    MARK = ""

    def __reduce__(self):
        return (Path.touch, (Path(self.MARK),))


def test_a_checkpoint_with_a_pickled_object_is_rejected(tmp_path: Path) -> None:
    Payload.MARK = str(tmp_path / "code-ran")
    ckpt = tmp_path / "evil.pt"
    torch.save({"format_version": 1, "step": 3, "model": {"w": torch.zeros(2)}, "extra": Payload()}, ckpt)
    with pytest.raises(CheckpointError, match=r"evil\.pt: corrupt or truncated checkpoint"):
        load_checkpoint(ckpt)
    with pytest.raises(CheckpointError, match=r"evil\.pt"):
        load_weights(ckpt)
    assert not (tmp_path / "code-ran").exists()
    # A plain file of the same shape loads (the rejection is about the pickled object, not the format).
    torch.save({"w": torch.zeros(2)}, tmp_path / "plain.pt")
    assert torch.equal(load_weights(tmp_path / "plain.pt")["w"], torch.zeros(2))


def test_resume_refuses_a_checkpoint_with_a_pickled_object(tmp_path: Path) -> None:
    from hyperrecon.study import context_for, enqueue, prepare_run, work

    out = tmp_path / "run"
    run = prepare_run(load_study("sl-knee-denoise", "smoke"), out=out, resume=False, storage=None, device="cpu")
    ctx = context_for(run)
    enqueue(run, ctx)
    work(run, ctx, max_jobs=4)  # seg, the two single-term baselines, scales
    Payload.MARK = str(tmp_path / "code-ran")
    ckpt = out / "checkpoints" / "baseline-0.5.pt"  # not trained yet: --resume would continue from it
    torch.save({"format_version": 1, "model": Payload()}, ckpt)
    result = runner.invoke(
        app, ["run", "--study", "sl-knee-denoise", "--profile", "smoke", "--out", str(out), "--resume", "--no-report"]
    )
    assert result.exit_code == 1 and "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and str(ckpt) in lines[0], result.output
    assert not (tmp_path / "code-ran").exists()


# ------------------------------------------------------------------------------------------------------------
# plugins


def test_plugins_are_imported_only_when_a_study_lists_them(tmp_path: Path, monkeypatch) -> None:
    module = "hrbench_side_effect_plugin"
    mark = tmp_path / "imported"
    (tmp_path / f"{module}.py").write_text(f"from pathlib import Path\nPath({str(mark)!r}).touch()\n")
    monkeypatch.syspath_prepend(str(tmp_path))  # importable: only the study decides whether it is imported
    monkeypatch.delitem(sys.modules, module, raising=False)
    src = Path(load_study("sl-knee-denoise", "smoke").source_file).read_text()
    plain, listing = tmp_path / "plain.toml", tmp_path / "listing.toml"
    plain.write_text(src)
    listing.write_text(f'plugins = ["{module}"]\n' + src)

    for args in (["validate", "--study", str(plain), "--profile", "smoke"], ["list", "losses"], ["list", "studies"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
        assert not mark.exists() and module not in sys.modules, args

    result = runner.invoke(app, ["validate", "--study", str(listing), "--profile", "smoke"])
    assert result.exit_code == 0, result.output
    assert mark.exists() and module in sys.modules
    monkeypatch.delitem(sys.modules, module)


# ------------------------------------------------------------------------------------------------------------
# no server


SERVER_CALLS = {
    "socket.socket",
    "socket.create_server",
    "asyncio.start_server",
    "asyncio.start_unix_server",
    "http.server.HTTPServer",
    "http.server.ThreadingHTTPServer",
    "socketserver.TCPServer",
    "xmlrpc.server.SimpleXMLRPCServer",
    "multiprocessing.connection.Listener",
    "uvicorn.run",
}
SERVER_MODULES = {
    "http.server",
    "socketserver",
    "xmlrpc.server",
    "uvicorn",
    "flask",
    "aiohttp",
    "tornado",
    "zmq",
    "multiprocessing.connection",
    "wsgiref.simple_server",
}
# The one server: `hrbench explore` serves its page, on 127.0.0.1 unless --host says otherwise (tests/test_explore.py
# checks where the command listens and what it answers).
SERVER_ALLOWED = {"hyperrecon/explore/server.py"}


def test_hrbench_opens_no_server() -> None:
    for path, tree in sources():
        if path in SERVER_ALLOWED:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                assert not set(names) & SERVER_MODULES, f"{path}:{node.lineno}: imports a server module {names}"
        for node, name, _ in calls(tree):
            assert name not in SERVER_CALLS, f"{path}:{node.lineno}: {name}"
            assert not name.endswith((".listen", ".bind", ".serve_forever")), f"{path}:{node.lineno}: {name}"
    # At run time: tests/test_interrupt.py watches a running `hrbench run` (its sockets never listen), and
    # tests/test_postgres.py starts PostgreSQL on 127.0.0.1 only and checks where it listens.


# ------------------------------------------------------------------------------------------------------------
# atomic writes


WRITE_METHODS = ("write_text", "write_bytes", "to_csv", "to_json", "to_parquet", "savefig")  # on any object
WRITE_FUNCTIONS = {"np.save", "np.savez", "np.savez_compressed", "torch.save", "json.dump", "pickle.dump"}
# Functions that write files, each one checked below to write a temp file that it renames, or an in-memory buffer.
WRITERS = {
    ("hyperrecon/io.py", "atomic_write_bytes"): "mkstemp in the target folder, fsync, os.replace",
    ("hyperrecon/io.py", "write_csv"): "to a StringIO, then atomic_write_text",
    ("hyperrecon/io.py", "write_npz"): "to a BytesIO, then atomic_write_bytes",
    ("hyperrecon/checkpoints.py", "save_checkpoint"): "mkstemp in the target folder, fsync, os.replace",
    ("hyperrecon/masks.py", "_save"): "mask cache: mkstemp, os.replace",
    ("hyperrecon/data/cache.py", "save_bundle"): "data cache: mkstemp, os.replace",
    ("hyperrecon/reporting/figures.py", "save"): "to a BytesIO, then atomic_write_bytes",
    ("hyperrecon/data/preview.py", "preview"): "the data preview PNG: to a BytesIO, then atomic_write_bytes",
}
# Writes that are not results, with why.
NOT_RESULTS = {
    ("hyperrecon/runs/orchestrate.py", "prepare_run"): "an empty probe file that tests the folder is writable",
    ("hyperrecon/runs/orchestrate.py", "spawn_workers"): "worker logs, appended to",
    # tiny files of a reader's format, written into a scratch folder for the contract check (testing/contracts.py)
    ("hyperrecon/data/arrays.py", "write_sample"): "contract-test sample data, not a result",
    ("hyperrecon/data/fastmri.py", "write_sample"): "contract-test sample data, not a result",
    ("hyperrecon/data/freesurfer.py", "write_sample"): "contract-test sample data, not a result",
    ("hyperrecon/testing/contracts.py", "check_sampler"): "torch.save into a BytesIO (a state round trip), no file",
}


def _writes(tree: ast.Module):
    for node, name, func in calls(tree):
        last = name.rsplit(".", 1)[-1]
        mode = next((a.value for a in node.args[1:2] if isinstance(a, ast.Constant)), None)
        mode = next(
            (k.value.value for k in node.keywords if k.arg == "mode" and isinstance(k.value, ast.Constant)), mode
        )
        writing_open = last == "open" and name != "os.open" and isinstance(mode, str) and set(mode) & set("wax+")
        if writing_open or last in WRITE_METHODS or name in WRITE_FUNCTIONS:
            yield node, name, func


def test_every_file_write_is_atomic_or_not_a_result() -> None:
    bodies = {}
    for path, tree in sources():
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef):
                bodies[(path, node.name)] = ast.unparse(node)
        for node, name, func in _writes(tree):
            key = (path, func)
            assert key in WRITERS or key in NOT_RESULTS, (
                f"{path}:{node.lineno}: {name}() in {func}() writes a file directly; write results through "
                "hyperrecon.io (temp file + rename) or checkpoints.save_checkpoint"
            )
    for key, how in WRITERS.items():
        body = bodies[key]
        assert "os.replace" in body or "BytesIO" in body or "StringIO" in body, f"{key}: {how}"


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o002])
def test_atomic_write_gives_the_mode_of_an_ordinary_new_file(tmp_path: Path, umask: int) -> None:
    from hyperrecon.io import atomic_write_bytes

    old = os.umask(umask)
    try:
        atomic_write_bytes(tmp_path / "result.bin", b"x")
        with open(tmp_path / "reference.bin", "wb") as fh:  # what open() makes under this umask
            fh.write(b"x")
    finally:
        os.umask(old)
    mode = (tmp_path / "result.bin").stat().st_mode & 0o777
    assert mode == (tmp_path / "reference.bin").stat().st_mode & 0o777 == 0o666 & ~umask


def test_atomic_write_leaves_no_partial_file(tmp_path: Path) -> None:
    from hyperrecon.io import atomic_write_bytes, write_json

    target = tmp_path / "result.json"
    write_json(target, {"a": 1})
    before = target.read_bytes()
    # A write that fails half-way (here: data that cannot be written) keeps the old file and leaves no temp file.
    with pytest.raises(TypeError):
        atomic_write_bytes(target, object())  # type: ignore[arg-type]
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]
