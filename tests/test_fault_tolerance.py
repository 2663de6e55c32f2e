"""Kills, corrupt checkpoints and NaNs lose nothing: resumed runs are bitwise the uninterrupted run."""

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

import dyt_llama.train.loop as loop
from dyt_llama.train import main
from dyt_llama.train.checkpoint import step_dirs
from dyt_llama.train.metrics import read_metrics
from tests.conftest import REPO
from tests.test_train import args, corpus, losses  # noqa: F401  (corpus is a fixture)


def weights(run):
    return load_file(run / "export" / "model.safetensors")


def test_same_seed_gives_the_same_curve_twice(tmp_path, corpus):  # noqa: F811
    cache = tmp_path / "cache"
    for name in ("a", "b"):
        assert main(args(tmp_path / name, corpus, "--max_steps", 6, "--norm_type", "dyt", cache=cache)) == 0
    assert losses(tmp_path / "a" / "run") == losses(tmp_path / "b" / "run")
    a, b = weights(tmp_path / "a" / "run"), weights(tmp_path / "b" / "run")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_corrupt_checkpoint_is_named_and_skipped(tmp_path, corpus, capsys):  # noqa: F811
    cache = tmp_path / "cache"
    assert main(args(tmp_path, corpus, "--max_steps", 6, "--save_every", 2, cache=cache)) == 0
    newest = step_dirs(tmp_path / "run")[0]
    assert newest.name == "step_00000006"
    optimizer = newest / "optimizer.bin"
    optimizer.write_bytes(optimizer.read_bytes()[:100])  # truncated, as by a full disk
    capsys.readouterr()
    # An explicit path that fails its manifest: a clear error naming the file.
    assert main(args(tmp_path, corpus, "--max_steps", 6, "--resume", newest, cache=cache)) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: checkpoint") and "optimizer.bin" in err and err.count("\n") == 1, err
    # 'latest' falls back to the previous good checkpoint and says so; the run ends as the straight one.
    assert (
        main(args(tmp_path, corpus, "--max_steps", 6, "--save_every", 2, "--resume", "latest", cache=cache))
        == 0
    )
    out = capsys.readouterr().out
    assert (
        "optimizer.bin" in out and "falling back" in out and "resumed from" in out and "step_00000004" in out
    )
    assert main(args(tmp_path / "straight", corpus, "--max_steps", 6, cache=cache)) == 0
    assert losses(tmp_path / "run") == losses(tmp_path / "straight" / "run")


def inject(monkeypatch, at_step: int, what: str):
    """Make the micro-step of optimizer step `at_step` produce a NaN loss, or NaN weights."""
    calls = {"n": 0}
    real = loop.micro_step_loss

    def patched(model, batch, num_items):
        calls["n"] += 1
        loss = real(model, batch, num_items)
        if calls["n"] == at_step:
            if what == "loss":
                return loss * float("nan")
            with torch.no_grad():
                next(model.parameters()).view(-1)[0] = float("nan")
        return loss

    monkeypatch.setattr(loop, "micro_step_loss", patched)


def test_nan_loss_is_skipped(tmp_path, corpus, monkeypatch, capsys):  # noqa: F811
    inject(monkeypatch, 3, "loss")
    assert main(args(tmp_path, corpus, "--max_steps", 6, "--nonfinite_policy", "skip")) == 0
    rows = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert [r["skipped"] for r in rows] == [False, False, True, False, False, False]
    assert "non-finite loss=nan at step 3" in capsys.readouterr().out
    assert all(torch.isfinite(t).all() for t in weights(tmp_path / "run").values())


def test_nan_loss_stops_without_saving(tmp_path, corpus, monkeypatch, capsys):  # noqa: F811
    inject(monkeypatch, 3, "loss")
    code = main(args(tmp_path, corpus, "--max_steps", 6, "--save_every", 1, "--nonfinite_policy", "stop"))
    assert code == 3
    err = capsys.readouterr().err
    assert err.endswith(
        "error: non-finite loss=nan at step 3 (nonfinite_policy=stop); no checkpoint written for it\n"
    )
    assert [p.name for p in step_dirs(tmp_path / "run")] == ["step_00000002", "step_00000001"]
    assert not (tmp_path / "run" / "export").exists()


def test_nan_weights_are_never_saved(tmp_path, corpus, monkeypatch, capsys):  # noqa: F811
    inject(monkeypatch, 2, "weights")
    code = main(args(tmp_path, corpus, "--max_steps", 4, "--save_every", 1, "--max_skips", 0))
    assert code == 3
    assert capsys.readouterr().err.endswith("error: the weights hold NaN or inf at step 2; nothing saved\n")
    saved = step_dirs(tmp_path / "run")
    assert [p.name for p in saved] == ["step_00000001"]
    for d in saved:
        assert all(torch.isfinite(t).all() for t in load_file(d / "model.safetensors").values())
    assert not (tmp_path / "run" / "export").exists()


def launch(run_args, env):
    return subprocess.Popen(
        [sys.executable, str(REPO / "pretrain.py"), *run_args],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )


def last_step(metrics) -> int:
    """The step of the newest complete row of metrics.jsonl (0 when there is none yet)."""
    if not metrics.exists():
        return 0
    for line in reversed(metrics.read_text(errors="replace").splitlines()):
        try:
            return json.loads(line).get("step", 0)
        except json.JSONDecodeError:
            continue  # a torn line from the previous kill
    return 0


def saving_since(checkpoints, launched_ns: int) -> bool:
    """Whether a checkpoint begun after launched_ns is being written (not one left half-written by a kill)."""
    for d in checkpoints.glob(".tmp-*"):
        try:
            if d.stat().st_ctime_ns > launched_ns:
                return True
        except FileNotFoundError:
            pass  # renamed into place just now
    return False


@pytest.mark.slow
def test_sigkill_at_random_moments_loses_nothing(tmp_path, corpus):  # noqa: F811
    """12 SIGKILLs, a third of them in the middle of writing a checkpoint, the rest at a random moment a few
    steps after resuming; each time resume; the final weights and the whole loss curve are bitwise those of
    the uninterrupted run. Kills are placed by training progress, not wall time, so that a fast machine
    cannot finish the run before the kills are done (12 kills use at most 12 * 5 of the 100 steps)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    cache = tmp_path / "cache"
    common = ["--max_steps", 100, "--save_every", 3, "--keep_last", 2, "--eval_every", 25]
    straight = launch(args(tmp_path / "straight", corpus, *common, cache=cache), env)
    assert straight.wait(timeout=600) == 0, straight.stderr.read().decode()[-2000:]

    rng = random.Random(0)
    killed = tmp_path / "killed" / "run"
    checkpoints, metrics = killed / "checkpoints", killed / "metrics.jsonl"
    kills = mid_save = 0
    while kills < 12:
        saved = step_dirs(killed)
        resumed_at = int(saved[0].name.split("_")[1]) if saved else 0
        # On resume the run rewrites metrics.jsonl (a new inode) without the rows after its checkpoint.
        old_inode = metrics.stat().st_ino if metrics.exists() else None
        launched = time.time_ns()
        proc = launch(args(tmp_path / "killed", corpus, *common, "--resume", "latest", cache=cache), env)
        mode = "save" if kills % 3 == 2 else "step"
        kill_at, delay = resumed_at + rng.randint(1, 5), rng.uniform(0.0, 0.05)
        while proc.poll() is None:
            if mode == "save" and saving_since(checkpoints, launched):
                break  # a checkpoint is being written right now
            resumed = metrics.exists() and metrics.stat().st_ino != old_inode
            if mode == "step" and resumed and last_step(metrics) >= kill_at:
                time.sleep(delay)  # somewhere inside the next step (or the save after this one)
                break
            time.sleep(0.001)
        assert proc.poll() is None, (
            f"the run ended before kill {kills + 1}: {proc.stderr.read().decode()[-2000:]}"
        )
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        kills += 1
        mid_save += mode == "save"
    final = launch(args(tmp_path / "killed", corpus, *common, "--resume", "latest", cache=cache), env)
    assert final.wait(timeout=600) == 0, final.stderr.read().decode()[-2000:]

    assert kills == 12 and mid_save == 4, (kills, mid_save)
    assert losses(killed) == losses(tmp_path / "straight" / "run")
    a, b = weights(killed), weights(tmp_path / "straight" / "run")
    assert all(torch.equal(a[k], b[k]) for k in a)
    print(f"{kills} kills ({mid_save} while a checkpoint was being written): curve and weights bitwise equal")
    shutil.rmtree(tmp_path / "killed", ignore_errors=True)
