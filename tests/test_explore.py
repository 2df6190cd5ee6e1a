"""`hrbench explore` on a real AO smoke run: numbers against the run's own evaluation tables and scikit-image, the
HTTP API (bad input answered 4xx, the server going on, the run folder untouched), coalescing, the self-contained
export, CLI errors, and a real headless Chromium driving the page (tests/test_explore_browser.py)."""

from __future__ import annotations

import base64
import hashlib
import http.client
import io
import json
import re
import shutil
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage.metrics import peak_signal_noise_ratio
from typer.testing import CliRunner

from hyperrecon.cli import app
from hyperrecon.explore.coalesce import SUPERSEDED, Busy, Coalescer

runner = CliRunner()


# ---------------------------------------------------------------------------------------------------------------
# fixtures


@pytest.fixture(scope="module")
def ao_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real AO smoke run (HyperRecon S with UHS and DHS, FiLM, 2x2 baselines, 4 test slices of 32x32)."""
    out = tmp_path_factory.mktemp("explore-ao-knee") / "run"
    made = runner.invoke(app, ["run", "-s", "ao-knee", "-p", "smoke", "-o", str(out), "--no-report", "--device", "cpu"])
    assert made.exit_code == 0, made.output
    return out


@pytest.fixture(scope="module")
def explorer(ao_run: Path):
    from hyperrecon.explore.session import open_explorer

    return open_explorer(ao_run)


@pytest.fixture(scope="module")
def server(explorer):
    from hyperrecon.explore.server import make_server

    srv = make_server(explorer, port=0)
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def snapshot(folder: Path) -> dict[str, tuple[int, str, int]]:
    """Every file under ``folder``: size, SHA-256 and mtime (ns)."""
    return {
        str(p.relative_to(folder)): (p.stat().st_size, hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def get(srv, path: str, method: str = "GET", headers: dict[str, str] | None = None) -> tuple[int, dict | str]:
    host, port = srv.server_address[:2]
    conn = http.client.HTTPConnection(host, port, timeout=60)
    conn.request(method, path, headers=headers or {})
    resp = conn.getresponse()
    body = resp.read().decode("utf-8")
    conn.close()
    kind = resp.getheader("Content-Type", "")
    return resp.status, json.loads(body) if kind.startswith("application/json") else body


def decode(data_url: str) -> np.ndarray:
    assert data_url.startswith("data:image/png;base64,")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(data_url.split(",", 1)[1]))))


def eval_value(run: Path, model: str, lam: list[float], slice_id: str, metric: str) -> float:
    import pandas as pd

    t = pd.read_csv(run / "eval" / f"{model}.csv")
    row = t[
        np.isclose(t.lam1, lam[0])
        & np.isclose(t.lam2, lam[1])
        & (t.slice.astype(str) == slice_id)
        & (t.metric == metric)
    ]
    assert len(row) == 1
    return float(row.value.iloc[0])


# ---------------------------------------------------------------------------------------------------------------
# numbers


def test_render_reads_the_runs_evaluation_numbers_at_grid_lambdas(explorer, ao_run: Path) -> None:
    """On the evaluation grid, the readout equals eval/<model>.csv (computed batched by the run's eval job), and
    PSNR equals scikit-image's on the reconstruction; the image is the reconstruction clipped to 8 bits."""
    axis = np.linspace(0, 1, explorer.study.evaluation.grid_points)
    assert len(explorer.models) >= 2  # HyperRecon S (UHS, DHS) and FiLM in the smoke profile
    for model in explorer.models:
        for i in range(explorer.n_slices):
            for lam in ([axis[0], axis[-1]], [axis[1], axis[0]], [axis[-1], axis[1]]):
                lam = [float(v) for v in lam]
                r = explorer.render(model, i, lam)
                sid = explorer.data.ids[i]
                for metric in ("psnr", "rpsnr", "ssim", "hfen"):
                    assert r["metrics"][metric] == pytest.approx(
                        eval_value(ao_run, model, lam, sid, metric), abs=2e-4
                    ), (model, i, lam, metric)
                x_hat = explorer.reconstruct(model, i, lam)[0, 0].numpy().astype(np.float64)
                target = explorer.data.targets[i, 0].numpy().astype(np.float64)
                assert r["metrics"]["psnr"] == pytest.approx(
                    peak_signal_noise_ratio(target, x_hat, data_range=1.0), abs=1e-3
                )
                expected = np.rint(np.clip(x_hat, 0, 1) * 255).astype(np.uint8)
                assert np.abs(decode(r["image"]).astype(int) - expected).max() <= 1


def test_nearest_baseline_is_the_closest_trained_lambda(explorer, ao_run: Path) -> None:
    lams = explorer.baselines
    assert set(lams.values()) == {(a, b) for a in (0.5, 1.0) for b in (0.5, 1.0)}  # the smoke profile's grid
    for lam, expected in (
        ([0.9, 0.2], "baseline-1-0.5"),
        ([0.1, 0.9], "baseline-0.5-1"),
        ([0.74, 0.76], "baseline-0.5-1"),
        ([1.0, 1.0], "baseline-1-1"),
    ):
        b = explorer.render(next(iter(explorer.models)), 0, lam)["baseline"]
        assert b["model"] == expected and list(b["lam"]) == list(lams[expected])
        assert b["metrics"]["psnr"] == pytest.approx(
            eval_value(ao_run, expected, list(lams[expected]), explorer.data.ids[0], "psnr"), abs=2e-4
        )


def test_diverse_pair_and_range_against_a_brute_force_reference(explorer) -> None:
    """Every grid λ reconstructed, PSNR / rPSNR by scikit-image, the kept set and the farthest pair by a double
    loop, the range as max - min over λ with rPSNR above the threshold."""
    from hyperrecon.evaluation import lam_grid

    model, i = next(iter(explorer.models)), 1
    d = explorer.diverse(model, i)
    ev = explorer.study.evaluation
    grid = lam_grid(2, d["grid_points"])
    target = explorer.data.targets[i, 0].numpy().astype(np.float64)
    degraded = explorer.data.degraded[i, 0].numpy().astype(np.float64)
    recons = np.stack([explorer.reconstruct(model, i, list(lam))[0, 0].numpy().astype(np.float64) for lam in grid])
    psnr = np.array([peak_signal_noise_ratio(target, r, data_range=1.0) for r in recons])
    gain = psnr - peak_signal_noise_ratio(target, degraded, data_range=1.0)
    above = gain > ev.rpsnr_threshold
    assert d["range"]["n_above"] == int(above.sum())
    if above.any():
        spread = recons[above].max(0) - recons[above].min(0)
        assert d["range"]["range_mean_per_pixel"] == pytest.approx(spread.mean(), rel=1e-4, abs=1e-6)
    else:
        assert d["range"]["range_mean_per_pixel"] is None
    kept = [j for j in range(len(grid)) if psnr[j] >= np.quantile(psnr, ev.diverse_quantile) - 1e-9]
    if len(kept) < 2:
        kept = list(np.argsort(-psnr, kind="stable")[:2])
    best = max(((a, b) for a in kept for b in kept if a < b), key=lambda p: np.linalg.norm(recons[p[0]] - recons[p[1]]))
    pair = d["pair"]
    assert {tuple(pair["lam_a"]), tuple(pair["lam_b"])} == {tuple(grid[best[0]]), tuple(grid[best[1]])}
    assert pair["distance"] == pytest.approx(np.linalg.norm(recons[best[0]] - recons[best[1]]), rel=1e-4)


def test_request_values_are_checked(explorer) -> None:
    from hyperrecon.explore.session import RequestError

    assert explorer.parse_lam("0,1") == [0.0, 1.0] and explorer.parse_lam("0.25,0.5") == [0.25, 0.5]
    for bad, words in (
        ("1.5,0.5", "outside [0, 1]"),
        ("nan,0.5", "outside [0, 1]"),
        ("inf,0", "outside"),
        ("-0.0001,0", "outside"),
        ("0.5", "has 1 value(s)"),
        ("a,b", "not a number"),
        ("", "missing parameter 'lam'"),
        ("0.5,0.5,0.5", "has 3 value(s)"),
    ):
        with pytest.raises(RequestError, match=re.escape(words)) as info:
            explorer.parse_lam(bad)
        assert info.value.status == 400
    with pytest.raises(RequestError, match="slice 4 is out of range; this run has 4 test slices"):
        explorer.parse_slice("4")
    with pytest.raises(RequestError, match="unknown model 'hyper-X'; expected one of: hyper-S-uniform"):
        explorer.parse_model("hyper-X")


# ---------------------------------------------------------------------------------------------------------------
# coalescing


def test_coalescer_renders_only_the_latest_of_a_client_and_bounds_the_wait() -> None:
    c = Coalescer(max_waiting=6)
    rendered, answers = [], {}
    c.slot.acquire()  # a render in progress
    threads = []
    for seq in range(1, 6):
        t = threading.Thread(
            target=lambda s=seq: answers.__setitem__(s, c.run("page", s, lambda: rendered.append(s) or s))
        )
        t.start()
        threads.append(t)
    other = threading.Thread(target=lambda: answers.__setitem__("other", c.run("tab2", 1, lambda: "tab2")))
    other.start()
    deadline = time.monotonic() + 10
    while c.waiting < 6 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert c.waiting == 6
    with pytest.raises(Busy):  # the seventh waiter is refused, not queued
        c.run("page", 99, lambda: None)
    c.slot.release()
    for t in [*threads, other]:
        t.join(10)
    assert rendered == [5]  # only the newest of "page" ran ...
    assert [answers[s] for s in range(1, 5)] == [SUPERSEDED] * 4 and answers[5] == 5
    assert answers["other"] == "tab2"  # ... and another client is not affected
    assert c.superseded == 4 and c.waiting == 0
    assert c.run(None, 0, lambda: "free") == "free"  # without a client id: never superseded


def test_server_coalesces_a_burst_over_http(server, explorer) -> None:
    model = next(iter(explorer.models))
    results: dict[int, tuple[int, dict]] = {}
    server.coalescer.slot.acquire()
    threads = [
        threading.Thread(
            target=lambda s=s: results.__setitem__(
                s, get(server, f"/api/render?model={model}&slice=0&lam={s / 10},0.5&client=burst&seq={s}")
            )
        )
        for s in range(1, 5)
    ]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 20
    while server.coalescer.waiting < 4 and time.monotonic() < deadline:
        time.sleep(0.01)
    server.coalescer.slot.release()
    for t in threads:
        t.join(30)
    assert all(status == 200 for status, _ in results.values())
    assert [results[s][1].get("superseded", False) for s in (1, 2, 3)] == [True] * 3
    assert results[4][1]["lam"] == [0.4, 0.5] and "image" in results[4][1]


# ---------------------------------------------------------------------------------------------------------------
# HTTP


def test_page_is_self_contained(server) -> None:
    status, html = get(server, "/")
    assert status == 200 and "<script>" in html and "window.hrExplore" in html
    assert_offline(html)


def assert_offline(html: str) -> None:
    """No external script, style sheet, font, image or frame; no URL of another host anywhere in markup."""
    assert not re.search(
        r"<(script|img|iframe|link|audio|video|source)\b[^>]*\b(src|href)\s*=\s*[\"']?(https?:)?//", html, re.I
    )
    assert not re.search(r"<link\b", html, re.I)
    assert not re.search(r"@import|@font-face|url\(\s*[\"']?(https?:)?//", html, re.I)
    assert not re.search(r"https?://", html)


def test_info_and_slice(server, explorer) -> None:
    status, info = get(server, "/api/info")
    assert status == 200
    assert info["n_lams"] == 2 and [m["name"] for m in info["models"]] == list(explorer.models)
    assert len(info["slices"]) == explorer.n_slices
    land = info["landscapes"]["models"][info["models"][0]["name"]]["psnr"]
    assert len(land["axis"]) == explorer.study.evaluation.grid_points
    status, s = get(server, "/api/slice?slice=2")
    assert status == 200 and s["id"] == explorer.data.ids[2]
    target = explorer.data.targets[2, 0].numpy()
    assert np.array_equal(decode(s["target"]), np.rint(np.clip(target, 0, 1) * 255).astype(np.uint8))


BAD_REQUESTS = [
    ("/api/render?model={m}&slice=0&lam=1.5,0.5", 400, "1.5 is outside [0, 1]"),
    ("/api/render?model={m}&slice=0&lam=nan,0.5", 400, "nan is outside [0, 1]"),
    ("/api/render?model={m}&slice=0&lam=NaN,0.5", 400, "NaN is outside [0, 1]"),
    ("/api/render?model={m}&slice=0&lam=0.5,-1", 400, "-1 is outside [0, 1]"),
    ("/api/render?model={m}&slice=0&lam=0.5", 400, "has 1 value(s); this run's models take 2"),
    ("/api/render?model={m}&slice=0&lam=x,0", 400, "'x' is not a number"),
    ("/api/render?model={m}&slice=0", 400, "missing parameter 'lam'"),
    ("/api/render?model={m}&slice=0&lam=0.5,0.5&lam=0.1,0.1", 400, "parameter 'lam' given 2 times"),
    ("/api/render?model={m}&slice=4&lam=0.5,0.5", 404, "slice 4 is out of range"),
    ("/api/render?model={m}&slice=-1&lam=0.5,0.5", 404, "slice -1 is out of range"),
    ("/api/render?model={m}&slice=1e9&lam=0.5,0.5", 400, "slice '1e9' is not an integer"),
    ("/api/render?model=hyper-X&slice=0&lam=0.5,0.5", 404, "unknown model 'hyper-X'"),
    ("/api/render?model=baseline-1-1&slice=0&lam=0.5,0.5", 404, "unknown model 'baseline-1-1'"),
    ("/api/render?model={m}&slice=0&lam=0.5,0.5&client=c&seq=x", 400, "seq 'x' is not an integer"),
    ("/api/slice?slice=99", 404, "slice 99 is out of range"),
    ("/api/diverse?model=nope&slice=0", 404, "unknown model 'nope'"),
    ("/../models/hyper-S-uniform.pt", 404, "no such path"),
    ("/%2e%2e/%2e%2e/etc/passwd", 404, "no such path"),
    ("/run.json", 404, "it serves no files"),
    ("/api/render/../../config.json", 404, "no such path"),
]


def test_bad_requests_get_4xx_and_the_server_goes_on(server, explorer, ao_run: Path) -> None:
    before = snapshot(ao_run)
    m = next(iter(explorer.models))
    for path, status, words in BAD_REQUESTS:
        got, body = get(server, path.format(m=m))
        assert got == status, (path, body)
        assert words in body["error"], (path, body)
        assert "Traceback" not in body["error"]
    got, body = get(server, f"/api/render?model={m}&slice=0&lam=0.5,0.5", method="POST")
    assert got == 405 and "only answers GET" in body["error"]
    got, body = get(server, "/api/info", headers={"Host": "evil.example:80"})
    assert got == 403 and "is not this server" in body["error"]
    got, body = get(server, f"/api/render?model={m}&slice=3&lam=0.25,0.75")  # still serving
    assert got == 200 and body["lam"] == [0.25, 0.75] and np.isfinite(body["metrics"]["psnr"])
    assert snapshot(ao_run) == before  # nothing in the run folder changed


# ---------------------------------------------------------------------------------------------------------------
# export and --save


def test_export_is_self_contained_and_matches_live_renders(ao_run: Path, explorer, tmp_path: Path) -> None:
    before = snapshot(ao_run)
    out = tmp_path / "page.html"
    result = runner.invoke(app, ["explore", str(ao_run), "--export", str(out), "--export-points", "3"])
    assert result.exit_code == 0, result.output
    html = out.read_text(encoding="utf-8")
    assert_offline(html)
    blob = re.search(r'<script type="application/json" id="export-data">(.*?)</script>', html, re.S).group(1)
    data = json.loads(blob)
    assert data["grid"] == [0.0, 0.5, 1.0]
    model = next(iter(explorer.models))
    for i in data["info"]["exported"]["slices"]:
        rows = data["renders"][model][str(i)]
        assert len(rows) == 9  # 3 x 3, λ1 slowest
        live = explorer.render(model, i, [1.0, 0.5])
        assert rows[2 * 3 + 1]["image"] == live["image"] and rows[2 * 3 + 1]["metrics"] == live["metrics"]
    assert snapshot(ao_run) == before


def test_save_writes_the_reconstructions_at_lambda(ao_run: Path, explorer, tmp_path: Path) -> None:
    out = tmp_path / "recon.npz"
    model = next(iter(explorer.models))
    result = runner.invoke(app, ["explore", str(ao_run), "--model", model, "--lam", "0.3,0.7", "--save", str(out)])
    assert result.exit_code == 0, result.output
    with np.load(out) as z:
        assert z["recon"].shape == (explorer.n_slices, *explorer.image_shape)
        assert list(z["lam"]) == [0.3, 0.7] and list(z["ids"]) == explorer.data.ids
        for i in range(explorer.n_slices):
            np.testing.assert_allclose(
                z["recon"][i], explorer.reconstruct(model, i, [0.3, 0.7])[0, 0].numpy(), atol=1e-6
            )


@pytest.mark.slow
def test_report_links_the_exported_page(run_copy: Path) -> None:
    from types import SimpleNamespace

    from hyperrecon.reporting.report import _explore_note

    note = _explore_note(SimpleNamespace(run_dir=run_copy), lambda p: p.name)
    assert "`hrbench explore RUN_DIR --export RUN_DIR/explore.html`" in note and "](explore.html)" not in note
    result = runner.invoke(
        app, ["explore", str(run_copy), "--export", str(run_copy / "explore.html"), "--export-points", "2"]
    )
    assert result.exit_code == 0, result.output
    assert runner.invoke(app, ["report", str(run_copy)]).exit_code == 0
    assert "[explore.html](explore.html)" in (run_copy / "report.md").read_text(encoding="utf-8")


def test_a_partly_evaluated_run_is_explored_without_its_landscape(run_copy: Path) -> None:
    from hyperrecon.explore.session import open_explorer

    (run_copy / "eval" / "hyper-S-uniform.csv").unlink()
    (run_copy / "models" / "film-uniform.pt").unlink()
    ex = open_explorer(run_copy)
    assert list(ex.models) == ["hyper-S-uniform", "hyper-S-dhs"]
    lands = ex.info()["landscapes"]["models"]
    assert "hyper-S-uniform" not in lands and "psnr" in lands["hyper-S-dhs"]
    assert np.isfinite(ex.render("hyper-S-uniform", 0, [0.2, 0.9])["metrics"]["psnr"])


def test_the_command_serves_until_interrupted(ao_run: Path) -> None:
    """The real command in a subprocess: prints its URL (port 0: a free one), answers, stops on Ctrl-C (exit 0)."""
    import signal
    import subprocess
    import sys

    proc = subprocess.Popen(
        [sys.executable, "-m", "hyperrecon.cli", "explore", str(ao_run), "--no-browser", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # A test run started in the background (`pytest &` from a script) ignores SIGINT, the child inherits that,
        # and Python then installs no KeyboardInterrupt handler: Ctrl-C would never reach the command.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    watchdog = threading.Timer(300, proc.kill)  # a hung command fails the test instead of hanging it
    watchdog.start()
    try:
        line = proc.stdout.readline()
        url = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
        assert url, line + proc.stderr.read()
        conn = http.client.HTTPConnection("127.0.0.1", int(url.group(1)), timeout=60)
        conn.request("GET", "/api/info")
        assert conn.getresponse().status == 200
        conn.close()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=240)  # a loaded 2-core CI machine can take a while to stop
    finally:
        watchdog.cancel()
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "stopped" in out and "Traceback" not in err


@pytest.mark.slow
def test_the_latency_benchmark_runs_and_counts_every_burst_request(ao_run: Path, tmp_path: Path) -> None:
    import csv
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    stem = tmp_path / "lat"
    proc = subprocess.run(
        [
            sys.executable,
            str(root / "benchmark" / "explore_latency.py"),
            str(ao_run),
            "--requests",
            "4",
            "--warmup",
            "1",
            "--bursts",
            "2",
            "--burst-size",
            "4",
            "--precisions",
            "fp32",
            "--threads",
            "1",
            "--out",
            str(stem),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=root / "benchmark",
    )
    assert proc.returncode == 0, proc.stderr
    with open(stem.with_suffix(".csv"), newline="") as fh:
        (row,) = list(csv.DictReader(fh))
    assert row["precision"] == "fp32" and row["image"] == "32x32" and int(row["requests"]) == 4
    assert 0 < float(row["median_ms"]) <= float(row["p95_ms"]) <= float(row["max_ms"])
    parts = [int(row[k]) for k in ("burst_rendered", "burst_superseded", "burst_refused")]
    assert sum(parts) == int(row["burst_requests"]) == 8 and parts[0] >= 2  # the last of each burst renders
    assert "median_ms" in stem.with_suffix(".md").read_text()


# ---------------------------------------------------------------------------------------------------------------
# CLI errors: one line, non-zero exit, the run folder as it was


def _one_error_line(result) -> str:
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert lines[0].startswith("error: ") and "Traceback" not in result.output
    return lines[0]


@pytest.fixture
def run_copy(ao_run: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "copy"
    shutil.copytree(ao_run, dst)
    return dst


def test_error_without_conditional_models(run_copy: Path) -> None:
    for p in [*run_copy.glob("models/hyper-*.pt"), *run_copy.glob("models/film-*.pt")]:
        p.unlink()
    before = snapshot(run_copy)
    result = runner.invoke(app, ["explore", str(run_copy), "--no-browser", "--port", "0"])
    assert result.exit_code == 1
    assert "no trained λ-conditioned model yet" in _one_error_line(result)
    assert snapshot(run_copy) == before


def test_error_on_a_corrupt_checkpoint(run_copy: Path) -> None:
    path = run_copy / "models" / "hyper-S-uniform.pt"
    raw = bytearray(path.read_bytes())
    mid = len(raw) // 2
    raw[mid : mid + 16] = bytes(b ^ 0xFF for b in raw[mid : mid + 16])
    path.write_bytes(bytes(raw))
    before = snapshot(run_copy)
    result = runner.invoke(app, ["explore", str(run_copy), "--no-browser", "--port", "0"])
    assert result.exit_code == 1
    line = _one_error_line(result)
    assert "hyper-S-uniform.pt" in line and "corrupt" in line
    assert snapshot(run_copy) == before


def test_error_on_a_port_in_use(ao_run: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = runner.invoke(app, ["explore", str(ao_run), "--no-browser", "--port", str(port)])
    assert result.exit_code == 1
    assert f"port {port} on 127.0.0.1 is in use" in _one_error_line(result)


@pytest.mark.parametrize(
    ("args", "code", "words"),
    [
        (["{tmp}"], 1, "run.json: missing"),
        (["{tmp}/nowhere"], 1, "not a folder"),
        (["{run}", "--save", "{tmp}/r.npz", "--model", "hyper-S-uniform", "--lam", "2,0"], 2, "outside [0, 1]"),
        (["{run}", "--save", "{tmp}/r.npz", "--model", "hyper-S-uniform"], 2, "--save needs --model and --lam"),
        (["{run}", "--save", "{tmp}/r.txt", "--model", "hyper-S-uniform", "--lam", "0,0"], 2, "ending in .npz"),
        (["{run}", "--export", "{tmp}", "--export-points", "3"], 2, "is a folder"),
        (["{run}", "--export", "{tmp}/p.html", "--export-points", "1"], 2, "2 <= points <= 101"),
    ],
)
def test_cli_usage_errors(ao_run: Path, tmp_path: Path, args: list[str], code: int, words: str) -> None:
    before = snapshot(ao_run)
    argv = ["explore"] + [a.format(tmp=tmp_path, run=ao_run) for a in args]
    result = runner.invoke(app, argv)
    assert result.exit_code == code, result.output
    assert words in _one_error_line(result)
    assert snapshot(ao_run) == before


# ---------------------------------------------------------------------------------------------------------------
# a real browser: Debian's headless Chromium driven through chromedriver (selenium)


CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


@pytest.fixture(scope="module")
def chromium() -> tuple[str, str]:
    """Debian's ``chromium`` and ``chromium-driver``: installed with apt-get when missing and this is root (as in
    .ci/run); otherwise the browser tests are skipped with the reason."""
    import os
    import subprocess

    pytest.importorskip("selenium", reason="selenium is not installed (pip install -e '.[dev]')")
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        if shutil.which("apt-get") is None or os.geteuid() != 0:
            pytest.skip("chromium / chromium-driver missing and cannot be installed here (needs apt-get as root)")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        try:
            subprocess.run(["apt-get", "update", "-qq"], check=True, capture_output=True, timeout=600, env=env)
            subprocess.run(
                ["apt-get", "install", "-y", "-qq", "chromium", "chromium-driver"],
                check=True,
                capture_output=True,
                timeout=900,
                env=env,
            )
        except (subprocess.SubprocessError, OSError) as exc:
            pytest.skip(f"could not install chromium and chromium-driver with apt-get ({exc})")
        if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
            pytest.skip("apt-get installed no /usr/bin/chromium or /usr/bin/chromedriver")
    return CHROMIUM, CHROMEDRIVER


@pytest.fixture
def browser(chromium: tuple[str, str], tmp_path: Path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium[0]
    for arg in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
        "--window-size=1400,900",
    ):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(chromium[1]), options=opts)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def _wait(driver, script: str, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = driver.execute_script(script)
        if value:
            return value
        time.sleep(0.1)
    status = driver.execute_script("return document.getElementById('status').textContent")
    raise AssertionError(f"timed out waiting for: {script}; page status: {status!r}")


def screenshot_dir(tmp_path: Path) -> Path:
    """Where the browser tests keep their screenshots: $HRBENCH_TEST_ARTIFACTS, else the test's temp folder."""
    import os

    out = Path(os.environ.get("HRBENCH_TEST_ARTIFACTS", tmp_path))
    out.mkdir(parents=True, exist_ok=True)
    return out


def _click_landscape(driver, lam: tuple[float, float]) -> None:
    """Click the landscape canvas where the page draws ``lam`` (its plot box: margins 48/12/12/40 px)."""
    from selenium.webdriver.common.action_chains import ActionChains

    canvas = driver.find_element("id", "landscape")
    w, h = canvas.size["width"], canvas.size["height"]
    x = 48 + lam[0] * (w - 48 - 12)
    y = 12 + (1 - lam[1]) * (h - 12 - 40)
    # selenium offsets are from the element's centre
    ActionChains(driver).move_to_element_with_offset(
        canvas, int(round(x - w / 2)), int(round(y - h / 2))
    ).click().perform()


@pytest.mark.slow
def test_browser_moves_a_slider_sees_the_image_change_and_clicks_the_landscape(
    browser, server, explorer, ao_run: Path, tmp_path: Path
) -> None:
    from selenium.webdriver.common.keys import Keys

    before = snapshot(ao_run)
    browser.get(server.url)
    _wait(browser, "return window.hrExplore && window.hrExplore.ready")
    first = browser.find_element("id", "recon").get_attribute("src")
    assert first.startswith("data:image/png")
    renders = browser.execute_script("return window.hrExplore.renders")

    slider = browser.find_element("id", "lam0")
    for _ in range(40):  # 40 steps of 0.005: λ1 0.5 -> 0.7, as a user holding the arrow key
        slider.send_keys(Keys.ARROW_RIGHT)
    _wait(browser, "const p = window.hrExplore; return p.shownLam && Math.abs(p.shownLam[0] - 0.7) < 1e-9")
    after = browser.find_element("id", "recon").get_attribute("src")
    assert after != first  # the reconstruction changed ...
    expected = explorer.render(next(iter(explorer.models)), 0, [0.7, 0.5])
    assert after == expected["image"]  # ... to the model's output at the new λ
    shown = browser.execute_script("return window.hrExplore.renders")
    assert renders < shown <= renders + 40  # coalesced: never more renders than slider moves
    psnr_cell = browser.find_element("css selector", "#readout tbody tr td:nth-child(2)").text
    assert float(psnr_cell) == pytest.approx(expected["metrics"]["psnr"], abs=0.006)

    _click_landscape(browser, (0.25, 0.75))
    lam = _wait(
        browser,
        "const p = window.hrExplore; return p.shownLam && Math.abs(p.shownLam[0] - 0.25) < 0.02 "
        "&& Math.abs(p.shownLam[1] - 0.75) < 0.02 && p.shownLam",
    )
    assert float(browser.find_element("id", "lam0").get_attribute("value")) == pytest.approx(lam[0])
    assert (
        browser.find_element("id", "recon").get_attribute("src")
        == explorer.render(next(iter(explorer.models)), 0, lam)["image"]
    )

    browser.find_element("id", "copy").click()
    copied = browser.find_element("id", "copied").text
    assert f"--lam {float(f'{lam[0]:.4f}'):g},{float(f'{lam[1]:.4f}'):g}" in copied
    assert "hrbench explore" in copied and "--save" in copied

    shot = screenshot_dir(tmp_path) / "explore-browser.png"
    assert browser.save_screenshot(str(shot))
    with Image.open(shot) as img:
        assert img.size[0] >= 800 and img.size[1] >= 600
    assert browser.execute_script("return window.hrExplore.errors") == 0
    severe = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert not severe, severe
    assert snapshot(ao_run) == before


@pytest.mark.slow
def test_browser_opens_the_exported_page_offline(browser, ao_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "page.html"
    result = runner.invoke(app, ["explore", str(ao_run), "--export", str(out), "--export-points", "3"])
    assert result.exit_code == 0, result.output
    browser.get(out.as_uri())
    _wait(browser, "return window.hrExplore && window.hrExplore.ready")
    first = browser.find_element("id", "recon").get_attribute("src")
    browser.find_element("id", "lam1").send_keys("\ue014")  # ARROW_RIGHT: one grid step, 0.5 -> 1
    _wait(browser, "const p = window.hrExplore; return p.shownLam && p.shownLam[1] === 1")
    assert browser.find_element("id", "recon").get_attribute("src") != first
    browser.save_screenshot(str(screenshot_dir(tmp_path) / "explore-export.png"))
    assert browser.execute_script("return window.hrExplore.errors") == 0
