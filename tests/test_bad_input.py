"""Bad input, everywhere: one clear `error:` line, a non-zero exit, no traceback, every existing output intact.

One table over every command; each row is (command, arguments built from the fixtures, what the line names).
"""

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.conftest import REPO, TINY

PRETRAIN_TINY = [
    "--hidden_size", "32", "--intermediate_size", "64", "--num_hidden_layers", "2", "--num_attention_heads", "4",
    "--seq_len", "32", "--tokenizer_vocab_size", "320", "--max_steps", "2", "--batch_size", "2",
    "--report_to", "none", "--progress", "false",
]  # fmt: skip


@pytest.fixture(scope="module")
def world(tmp_path_factory, shared_data):
    """Files the bad inputs point at, and existing outputs that must survive them."""
    w = tmp_path_factory.mktemp("bad")
    text = (shared_data / "tinyshakespeare" / "input.txt").read_text()[:20_000]
    (w / "good.txt").write_text(text)
    (w / "empty.txt").write_text("")
    (w / "binary.txt").write_bytes(bytes(range(256)) * 8)
    (w / "latin1.txt").write_bytes("café résumé naïve ".encode("latin-1") * 100)
    (w / "notext.jsonl").write_text(
        "\n".join(json.dumps({"body": text[i : i + 500]}) for i in range(0, 5000, 500))
    )
    (w / "config.yaml").write_text("model:\n  hidden_size: 32\n")
    (w / "malformed.yaml").write_text("model:\n  hidden_size: [32\n")
    (w / "list.yaml").write_text("- hidden_size\n- 32\n")
    (w / "unknown_key.yaml").write_text("model:\n  hidden_sise: 32\n")
    (w / "ill_typed.yaml").write_text("train:\n  lr: fast\n")
    (w / "a_file").write_text("not a directory")
    # A finished run, which no bad command may touch.
    from dyt_llama.train import main

    run = [*PRETRAIN_TINY, "--data_files", str(w / "good.txt"), "--cache_dir", str(w / "cache")]
    assert main([*run, "--output_dir", str(w / "run")]) == 0
    # Checkpoints with a missing and a truncated safetensors file.
    from dyt_llama import DyTLlamaConfig, DyTLlamaForCausalLM

    model = DyTLlamaForCausalLM(DyTLlamaConfig(norm_type="dyt", **TINY))
    for name in ("no_weights", "truncated", "dyt"):
        model.save_pretrained(w / name)
    (w / "no_weights" / "model.safetensors").unlink()
    data = (w / "truncated" / "model.safetensors").read_bytes()
    (w / "truncated" / "model.safetensors").write_bytes(data[: len(data) // 2])
    for name in ("exp_no_weights", "exp_truncated"):
        shutil.copytree(w / "run" / "export", w / name)
    (w / "exp_no_weights" / "model.safetensors").unlink()
    data = (w / "exp_truncated" / "model.safetensors").read_bytes()
    (w / "exp_truncated" / "model.safetensors").write_bytes(data[: len(data) // 2])
    (w / "bad_data" / "piqa").mkdir(parents=True)
    (w / "bad_data" / "piqa" / "valid.jsonl").write_text('{"goal": "x", "sol1": \n')
    (w / "bad_data" / "piqa" / "valid-labels.lst").write_text("0\n")
    (w / "emptydir").mkdir()
    (w / "metrics_empty").mkdir()
    (w / "metrics_empty" / "metrics.jsonl").write_text("")
    return w


def pretrain(w, *extra, data="good.txt"):
    return [*PRETRAIN_TINY, "--data_files", str(w / data), "--cache_dir", str(w / "cache"),
            "--output_dir", str(w / "out"), *map(str, extra)]  # fmt: skip


def evaluate(w, *extra):
    return ["--model", w / "run" / "export", "--tasks", "piqa", "--limit", 4, "--device", "cpu", *extra]


CASES = {
    # pretrain.py
    "malformed YAML": (
        "pretrain",
        lambda w: ["--config", w / "malformed.yaml", *pretrain(w)],
        "not valid YAML",
    ),
    "YAML not a mapping": (
        "pretrain",
        lambda w: ["--config", w / "list.yaml", *pretrain(w)],
        "must be a mapping",
    ),
    "unknown YAML key": (
        "pretrain",
        lambda w: ["--config", w / "unknown_key.yaml", *pretrain(w)],
        "hidden_sise",
    ),
    "ill-typed YAML key": (
        "pretrain",
        lambda w: ["--config", w / "ill_typed.yaml", *pretrain(w)],
        "lr='fast'",
    ),
    "missing config file": (
        "pretrain",
        lambda w: ["--config", w / "nope.yaml", *pretrain(w)],
        "nope.yaml not found",
    ),
    "unknown flag": ("pretrain", lambda w: [*pretrain(w), "--hidden_sise", "3"], "--hidden_sise"),
    "ill-typed flag": ("pretrain", lambda w: [*pretrain(w), "--lr", "fast"], "invalid float value: 'fast'"),
    "heads do not divide width": (
        "pretrain",
        lambda w: pretrain(w, "--num_attention_heads", 5),
        "not divisible",
    ),
    "missing data file": ("pretrain", lambda w: pretrain(w, data="missing.txt"), "missing.txt"),
    "empty data file": ("pretrain", lambda w: pretrain(w, data="empty.txt"), "empty"),
    "binary data file": ("pretrain", lambda w: pretrain(w, data="binary.txt"), "binary"),
    "non-UTF-8 data file": ("pretrain", lambda w: pretrain(w, data="latin1.txt"), "UTF-8"),
    "missing text column": ("pretrain", lambda w: pretrain(w, data="notext.jsonl"), "body"),
    "no data at all": ("pretrain", lambda w: [*PRETRAIN_TINY, "--output_dir", w / "out"], "no data"),
    "seq_len over max positions": (
        "pretrain",
        lambda w: pretrain(w, "--max_position_embeddings", 16),
        "max_position_embeddings=16",
    ),
    "tokenizer larger than model": (
        "pretrain",
        lambda w: pretrain(w, "--vocab_size", 100),
        "vocab_size is 100",
    ),
    "missing tokenizer": (
        "pretrain",
        lambda w: pretrain(w, "--tokenizer", w / "no_tokenizer_here"),
        "no_tokenizer_here",
    ),
    "output holds another run": (
        "pretrain",
        lambda w: [*pretrain(w)[:-2], "--output_dir", w / "run"],
        "--resume latest",
    ),
    "output not writable": (
        "pretrain",
        lambda w: [*pretrain(w)[:-2], "--output_dir", w / "a_file" / "sub"],
        "a_file",
    ),
    "resume from a non-checkpoint": (
        "pretrain",
        lambda w: pretrain(w, "--resume", w / "emptydir"),
        "manifest",
    ),
    # python -m dyt_llama.convert
    "convert: missing source": ("convert", lambda w: [w / "nowhere", w / "conv"], "nowhere"),
    "convert: DyT to LLaMA": (
        "convert",
        lambda w: [w / "dyt", w / "conv", "--to-llama"],
        "cannot convert a DyT model",
    ),
    "convert: destination exists": (
        "convert",
        lambda w: [w / "dyt", w / "run", "--norm-type", "dyt"],
        "--overwrite",
    ),
    "convert: missing safetensors": ("convert", lambda w: [w / "no_weights", w / "conv"], "no_weights"),
    "convert: truncated safetensors": ("convert", lambda w: [w / "truncated", w / "conv"], "truncated"),
    # evaluate_lm.py, with its layer-removal modes
    "eval: unknown task": (
        "eval",
        lambda w: ["--model", w / "run" / "export", "--tasks", "piqa,mmlu"],
        "mmlu",
    ),
    "eval: missing data file": ("eval", lambda w: evaluate(w, "--data-dir", w / "emptydir"), "piqa"),
    "eval: malformed data file": ("eval", lambda w: evaluate(w, "--data-dir", w / "bad_data"), "valid.jsonl"),
    "eval: directory without a model": (
        "eval",
        lambda w: ["--model", w / "emptydir", "--tasks", "piqa"],
        "config.json",
    ),
    "eval: directory without a tokenizer": (
        "eval",
        lambda w: ["--model", w / "dyt", "--tasks", "piqa"],
        "tokenizer",
    ),
    "eval: --limit 0": ("eval", lambda w: evaluate(w, "--limit", 0), "--limit"),
    "eval: missing safetensors": (
        "eval",
        lambda w: ["--model", w / "exp_no_weights", "--tasks", "piqa"],
        "exp_no_weights",
    ),
    "eval: truncated safetensors": (
        "eval",
        lambda w: ["--model", w / "exp_truncated", "--tasks", "piqa"],
        "exp_truncated",
    ),
    "eval: tokenizer larger than model": (
        "eval",
        lambda w: [
            "--model",
            w / "dyt",
            "--tokenizer",
            w / "run" / "export",
            "--tasks",
            "piqa",
            "--limit",
            2,
        ],
        "vocab",
    ),
    "eval: output under a file": (
        "eval",
        lambda w: evaluate(w, "--output", w / "a_file" / "r.json"),
        "a_file",
    ),
    "ablation: layer out of range": ("eval", lambda w: evaluate(w, "--remove-layers", "7"), "7"),
    "ablation: duplicate layer": ("eval", lambda w: evaluate(w, "--remove-layers", "1,1"), "more than once"),
    "ablation: every layer": ("eval", lambda w: evaluate(w, "--remove-layers", "0,1"), "all 2 layers"),
    "ablation: empty calibration set": (
        "eval",
        lambda w: [
            "--model",
            w / "run" / "export",
            "--ablation",
            "sweep",
            "--ablation-data",
            w / "empty.txt",
            "--ablation-out",
            w / "abl",
        ],
        "empty",
    ),
    # python -m dyt_llama.plots
    "plots: not a run directory": (
        "plots",
        lambda w: [w / "emptydir", "--out", w / "plots"],
        "metrics.jsonl is missing",
    ),
    "plots: empty metrics": ("plots", lambda w: [w / "metrics_empty", "--out", w / "plots"], "no metrics"),
    "plots: output under a file": ("plots", lambda w: [w / "run", "--out", w / "a_file" / "plots"], "a_file"),
}


def snapshot(root: Path) -> dict:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and "cache" not in p.relative_to(root).parts
    }


def run_command(command: str, argv: list[str]) -> int:
    if command == "pretrain":
        from dyt_llama.train import main
    elif command == "convert":
        from dyt_llama.convert import main
    elif command == "plots":
        from dyt_llama.plots import main
    else:
        from dyt_llama.eval.cli import main
    try:
        return main([str(a) for a in argv])
    except SystemExit as e:  # argparse's own exits
        return e.code


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input(case, world, capsys):
    command, build, names = CASES[case]
    before = snapshot(world)
    capsys.readouterr()
    code = run_command(command, build(world))
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert code not in (0, None), f"{case}: exit {code}"
    assert len(errors) == 1 and names in errors[0], f"{case}: {err[-800:]}"
    assert "Traceback" not in err
    assert snapshot(world) == before, f"{case}: an existing output changed"
    print(f"| {case} | {command} | exit {code} | {errors[0][:150]} |")


@pytest.mark.parametrize(
    "argv",
    [
        ["pretrain.py", "--num_attention_heads", "5", "--data_files", "x.txt"],
        ["-m", "dyt_llama.convert", "/nonexistent/src", "/tmp/never-written"],
        ["-m", "dyt_llama.plots", "/nonexistent/run"],
    ],
)
def test_command_line_exit_and_debug(argv):
    """As a user sees it: exit 2 and one line; --debug shows the traceback instead."""
    done = subprocess.run([sys.executable, *argv], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 2 and done.stderr.startswith("error:") and done.stderr.count("\n") == 1, (
        done.stderr
    )
    debug = subprocess.run([sys.executable, *argv, "--debug"], cwd=REPO, capture_output=True, text=True)
    assert debug.returncode != 0 and "Traceback" in debug.stderr
    assert not Path("/tmp/never-written").exists()
    torch.manual_seed(0)
