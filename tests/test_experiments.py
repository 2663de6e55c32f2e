"""`make experiments --quick`: every experiment script runs and writes its outputs (JSON, PNGs, the report),
and nothing under docs/ is touched."""

import hashlib
import json
import subprocess
import sys
import time

import pytest

from tests.conftest import REPO

EXPECTED = {
    "01_dyt_vs_rmsnorm": {"configs", "figure", "command"},
    "02_alpha_sensitivity": {"grid", "best", "diverged", "rmsnorm", "figure"},
    "03_embed_scale": {"widths", "figure"},
    "04_layer_removal": {"configs", "figure"},
    "05_alpha_vs_std": {"configs", "pearson_log_all", "figure"},
    "06_convert_fit": {"rows", "fits", "fine_tune_curves", "figure"},
}


def docs_state():
    docs = REPO / "docs"
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in docs.rglob("*") if p.is_file()}


@pytest.mark.slow
def test_run_all_quick(tmp_path, shared_data):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    chunks = (shared_data / "tinyshakespeare" / "input.txt").read_text()[:120_000].split("\n\n")
    for i in range(6):  # several documents, as the Shakespeare plays are
        (corpus / f"part{i}.txt").write_text("\n\n".join(chunks[i::6]))
    out = tmp_path / "out"
    before = docs_state()
    t0 = time.perf_counter()
    argv = [
        "--quick",
        "--out",
        str(out),
        "--data",
        str(corpus / "*.txt"),
        "--cache-dir",
        str(tmp_path / "cache"),
    ]
    proc = subprocess.run(
        [sys.executable, "experiments/run_all.py", *argv],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert time.perf_counter() - t0 < 120

    for name, keys in EXPECTED.items():
        result = json.loads((out / f"{name}.json").read_text())
        assert keys <= set(result), (name, keys - set(result))
        assert result["quick"] is True and result["seconds"] >= 0
        png = out / "img" / f"{name}.png"
        assert png.stat().st_size > 1000, png
    assert json.loads((out / "04_layer_removal.json").read_text())["configs"]["small"]["dyt"][
        "mean_sweep_ratio"
    ]
    fit = json.loads((out / "06_convert_fit.json").read_text())
    assert {r["model"] for r in fit["rows"]} >= {"RMSNorm (trained)", "DyT, table alpha0"}
    timings = json.loads((out / "timings.json").read_text())
    assert len(timings["parts"]) == 6 and timings["parts"]["01_dyt_vs_rmsnorm.py"]["runs_trained"] == 8
    assert timings["parts"]["04_layer_removal.py"]["runs_trained"] == 0  # part 1's models, reused

    report = (out / "results.md").read_text()
    assert report.count("](img/") == 6 and "## Headline" in report and "--quick run" in report
    for name in EXPECTED:
        assert f"python experiments/{name}.py --quick" in report
    assert docs_state() == before  # --quick never writes docs/


def test_a_script_runs_alone_and_reuses_runs(tmp_path, shared_data):
    """One script on its own: trains what it needs, and a second call trains nothing."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a.txt").write_text((shared_data / "tinyshakespeare" / "input.txt").read_text()[:40_000])
    argv = ["--quick", "--out", str(tmp_path / "out"), "--data", str(corpus / "*.txt")]
    argv += ["--cache-dir", str(tmp_path / "cache")]
    for trained in (6, 0):  # 3 widths with and without the scale, then all reused
        proc = subprocess.run(
            [sys.executable, "experiments/03_embed_scale.py", *argv], cwd=REPO, capture_output=True, text=True
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        result = json.loads((tmp_path / "out" / "03_embed_scale.json").read_text())
        assert result["runs_trained"] == trained and set(result["widths"]) == {"32", "48", "64"}
