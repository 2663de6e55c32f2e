"""pretrain.py's loop against transformers' Trainer: same model, data, batch, optimizer, schedule and steps.

    python bench/bench_trainer.py [--norm-type dyt|rmsnorm] [--steps 20] [--skip 5] [--repeats 2]
        [--ours-compile true|false] [--trainer-compile] [--out bench/results/trainer.json]

Our side is `dyt_llama.train.loop.train` itself, called in this process with the tiny config (what
`pretrain.py --config configs/tiny.yaml` runs), no evaluation or checkpoints inside the timed steps. The
Trainer side gets the model `build_model` makes from the same seed, the same packed token blocks (the
loop's `load_data`: the Shakespeare cache), the same batch size, the loop's AdamW and warmup+cosine
schedule (passed in as `optimizers=`), gradient clipping at the same norm, and the same number of steps.

Steady state: every full iteration of each loop is timestamped (ours: when its metrics row is written,
the last thing a step does; Trainer: `on_step_end`), the first `--skip` steps are dropped (startup,
allocator warm-up, compilation) and tokens/s is tokens per step over the median step interval. The two
run alternately, ABBA, so drifting background load hits both alike, each in a fresh process as users
run them (what our loop sets for its process, like glibc's malloc thresholds, stays out of Trainer's
runs); the ratio is the median over pairs. Whole-run wall time (startup, data, final evaluation, export) is reported alongside.

It also times, one by one, the step-internal extras our loop does that Trainer does not (or does
differently), so a gap can be traced to its cause: the batch gather from the memmap, the token count
reduce, the per-step getrusage, one .item() per DyT alpha, the JSONL write.
"""

import argparse
import contextlib
import datetime
import gc
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import transformers
from transformers import Trainer, TrainerCallback, TrainingArguments

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # runnable from a checkout without install
sys.path.insert(0, str(REPO / "bench"))
from bench_train_step import append_json, cpu_name  # noqa: E402

import dyt_llama.train.loop as loop  # noqa: E402
from dyt_llama.cli import quiet_transformers  # noqa: E402
from dyt_llama.data import batch_indices  # noqa: E402
from dyt_llama.train.args import parse_args as parse_train_args  # noqa: E402
from dyt_llama.train.metrics import MetricsLog, dyt_alphas, peak_memory_bytes  # noqa: E402
from dyt_llama.train.optim import build_optimizer, build_scheduler  # noqa: E402

TARGET = 1.2  # pretrain.py end to end, tokens/s against Trainer on the same model, data and batch
CLOCK = [time.perf_counter]  # what the step timestamps read; --cpu-time: process CPU seconds


class _SingleProcess:
    """What load_data needs of an Accelerator, for one process."""

    process_index, num_processes = 0, 1
    device = torch.device("cpu")

    def main_process_first(self):
        return contextlib.nullcontext()

    def reduce(self, t, reduction="sum"):
        return t


def settings(args, output_dir: Path):
    argv = [
        "--config", str(REPO / "configs" / "tiny.yaml"),
        "--norm_type", args.norm_type,
        "--max_steps", str(args.steps),
        "--output_dir", str(output_dir),
        "--overwrite", "true",
        "--eval_every", "0",
        "--save_every", "0",
        "--export_every", "0",
        "--report_to", "none",
        "--progress", "false",
        "--cache_dir", args.cache_dir,
    ]  # fmt: skip
    if args.data_files:
        argv += ["--data_files", args.data_files]
    if args.batch_size:
        argv += ["--batch_size", str(args.batch_size)]
    if args.ours_compile is not None:
        argv += ["--compile", args.ours_compile]
    return parse_train_args(argv)


def steady(stamps: list[float], skip: int, tokens_per_step: int) -> dict:
    """tokens/s from the step timestamps after the first `skip` steps (stamps[i] = end of step i+1)."""
    intervals = [b - a for a, b in zip(stamps[skip - 1 : -1], stamps[skip:])] if skip >= 1 else []
    if not intervals:
        raise ValueError(f"no steady-state steps: {len(stamps)} steps, skip {skip}")
    med = statistics.median(intervals)
    return {
        "steps_timed": len(intervals),
        "step_ms_median": med * 1e3,
        "tokens_per_s": tokens_per_step / med,
        "tokens_per_s_mean": tokens_per_step * len(intervals) / sum(intervals),
        "step_ms_all": [t * 1e3 for t in intervals],
    }


def run_ours(args, workdir: Path) -> dict:
    """The pretraining loop itself, with a MetricsLog that timestamps every row."""
    model_args, data_args, train_args = settings(args, workdir / "ours")
    stamps, inner = [], []

    class TimedLog(MetricsLog):
        def write(self, row: dict) -> None:
            super().write(row)
            stamps.append(CLOCK[0]())
            inner.append(row["tokens_per_s"])  # the loop's own dt: data fetch .. zero_grad

    original = loop.MetricsLog
    loop.MetricsLog = TimedLog
    try:
        t0, c0 = time.perf_counter(), CLOCK[0]()
        loop.train(model_args, data_args, train_args)
        wall = time.perf_counter() - t0
    finally:
        loop.MetricsLog = original
    tokens = train_args.batch_size * data_args.seq_len
    out = steady(stamps, args.skip, tokens)
    out["inner_tokens_per_s"] = statistics.median(inner[args.skip :])  # what metrics.jsonl reports
    out["wall_s"] = wall
    out["startup_s"] = stamps[0] - c0
    out["compile"] = train_args.compile  # per decoder layer
    return out


def run_trainer(args, workdir: Path) -> dict:
    model_args, data_args, train_args = settings(args, workdir / "trainer")
    tokenizer, train_blocks, _ = loop.load_data(data_args, _SingleProcess(), 0)
    loop.set_seed(train_args.seed)
    model = loop.build_model(model_args, tokenizer, data_args.seq_len)
    optimizer = build_optimizer(model, train_args)
    scheduler = build_scheduler(optimizer, train_args)
    stamps = []

    class Stamp(TrainerCallback):
        def on_step_end(self, *_, **__):
            stamps.append(CLOCK[0]())

    hf_args = TrainingArguments(
        output_dir=str(workdir / "trainer"),
        max_steps=train_args.max_steps,
        per_device_train_batch_size=train_args.batch_size,
        gradient_accumulation_steps=train_args.grad_accum,
        max_grad_norm=train_args.grad_clip,
        logging_steps=train_args.log_every,
        save_strategy="no",
        eval_strategy="no",
        report_to="none",
        disable_tqdm=True,
        use_cpu=not torch.cuda.is_available(),
        bf16=loop.mixed_precision(train_args.mixed_precision) == "bf16",
        seed=train_args.seed,
        dataloader_num_workers=0,
        torch_compile=args.trainer_compile,
    )
    trainer = Trainer(
        model=model,
        args=hf_args,
        train_dataset=train_blocks,
        optimizers=(optimizer, scheduler),
        callbacks=[Stamp()],
    )
    t0, c0 = time.perf_counter(), CLOCK[0]()
    trainer.train()
    wall = time.perf_counter() - t0
    tokens = train_args.batch_size * data_args.seq_len
    out = steady(stamps, args.skip, tokens)
    out["wall_s"] = wall
    out["startup_s"] = stamps[0] - c0
    out["torch_compile"] = args.trainer_compile  # Trainer compiles the whole model
    del trainer, model, optimizer
    gc.collect()
    return out


def loop_extras(args, workdir: Path) -> dict:
    """Milliseconds per call of what our loop does per step on top of forward/backward/optimizer."""
    model_args, data_args, train_args = settings(args, workdir / "extras")
    acc = _SingleProcess()
    tokenizer, train_blocks, _ = loop.load_data(data_args, acc, 0)
    model = loop.build_model(model_args, tokenizer, data_args.seq_len)
    from accelerate import Accelerator

    accelerator = Accelerator(cpu=not torch.cuda.is_available())
    batch = train_blocks.batch(batch_indices(len(train_blocks), 0, 0, train_args.batch_size))
    log = MetricsLog(workdir / "extras" / "metrics.jsonl", 0)
    row = {"step": 1, "loss": 3.0, "alpha": dyt_alphas(model), "tokens_per_s": 1.0}
    calls = {
        "batch gather (memmap, 16 blocks)": lambda: train_blocks.batch(
            batch_indices(len(train_blocks), 0, 7, train_args.batch_size)
        ),
        "window_tokens (count + reduce)": lambda: loop.window_tokens([batch], accelerator),
        "accelerator.reduce(loss).item()": lambda: accelerator.reduce(
            torch.zeros(()), reduction="sum"
        ).item(),
        "peak_memory_bytes (getrusage)": lambda: peak_memory_bytes(torch.device("cpu")),
        "dyt_alphas (.item() per alpha)": lambda: dyt_alphas(model),
        "MetricsLog.write (open/append)": lambda: log.write(row),
    }
    out = {}
    for name, fn in calls.items():
        fn()
        n = 200
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        out[name] = (time.perf_counter() - t0) / n * 1e3
    return out


def setup(args) -> None:
    """Per process: threads, clock, quiet logs."""
    quiet_transformers()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.cpu_time:
        CLOCK[0] = time.process_time
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _child(who: str, args, workdir: Path, results) -> None:
    setup(args)
    results.put(run_ours(args, workdir) if who == "ours" else run_trainer(args, workdir))


def run_fresh(who: str, args, workdir: Path) -> dict:
    """One run in a new process, as users run either: settings a run makes for its process (our loop keeps
    freed memory on CPU, see dyt_llama.malloc) do not leak into the other side's runs."""
    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    child = ctx.Process(target=_child, args=(who, args, workdir, results))
    child.start()
    result = results.get()
    child.join()
    return result


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--norm-type", default="dyt", choices=["dyt", "rmsnorm"])
    p.add_argument("--steps", type=int, default=20, help="optimizer steps per run")
    p.add_argument("--skip", type=int, default=5, help="first steps left out of the steady state")
    p.add_argument("--repeats", type=int, default=2, help="ABBA pairs of (ours, Trainer) runs")
    p.add_argument("--batch-size", type=int, default=None, help="default: the tiny config's 16")
    p.add_argument(
        "--ours-compile", choices=["true", "false"], default=None, help="override the tiny config's compile"
    )
    p.add_argument(
        "--trainer-compile", action="store_true", help="Trainer's torch_compile=True (default off)"
    )
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    p.add_argument(
        "--cpu-time",
        action="store_true",
        help="step times in process CPU seconds (robust under load with 1 thread)",
    )
    p.add_argument("--data-files", default=None, help="default: the tiny config's data/shakespeare/*.txt")
    p.add_argument("--cache-dir", default=str(REPO / "data" / "cache"))
    p.add_argument("--out", default="bench/results/trainer.json", help="JSON list; this run is appended")
    args = p.parse_args(argv)
    if args.steps <= args.skip + 1:
        p.error("--steps must be more than --skip + 1")
    setup(args)
    runs = {"ours": [], "trainer": []}
    with tempfile.TemporaryDirectory(prefix="bench-trainer-") as tmp:
        workdir = Path(tmp)
        extras = loop_extras(args, workdir)
        for r in range(args.repeats):
            order = ("ours", "trainer") if r % 2 == 0 else ("trainer", "ours")  # ABBA
            for who in order:
                result = run_fresh(who, args, workdir)
                runs[who].append(result)
                print(
                    f"repeat {r} {who:<8} steady {result['tokens_per_s']:8.1f} tokens/s"
                    f" (median step {result['step_ms_median']:.0f} ms over {result['steps_timed']} steps),"
                    f" startup {result['startup_s']:.1f} s, wall {result['wall_s']:.1f} s",
                    flush=True,
                )
    ratios = [o["tokens_per_s"] / t["tokens_per_s"] for o, t in zip(runs["ours"], runs["trainer"])]
    ours_tps = statistics.median(r["tokens_per_s"] for r in runs["ours"])
    trainer_tps = statistics.median(r["tokens_per_s"] for r in runs["trainer"])
    ratio = statistics.median(ratios)
    step_ms = statistics.median(r["step_ms_median"] for r in runs["ours"])
    result = {
        "bench": "trainer",
        "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": {
            "cpu": cpu_name(),
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "loadavg_end": os.getloadavg(),
        },
        "settings": vars(args),
        "ours": runs["ours"],
        "trainer": runs["trainer"],
        "ours_tokens_per_s": ours_tps,
        "trainer_tokens_per_s": trainer_tps,
        "ratio": ratio,
        "ratios": ratios,
        "target": TARGET,
        "meets_target": ratio >= TARGET,
        "loop_extras_ms": extras,
    }
    print(
        f"\nours {ours_tps:.1f} tokens/s, Trainer {trainer_tps:.1f} tokens/s: {ratio:.3f}x (target >= {TARGET}x)"
    )
    print("  per pair: " + ", ".join(f"{x:.3f}" for x in ratios))
    inner = statistics.median(r["inner_tokens_per_s"] for r in runs["ours"])
    print(f"  ours as metrics.jsonl reports it (loop's own dt, wall clock): {inner:.1f} tokens/s")
    print(f"  target pretrain.py >= {TARGET}x Trainer: {'PASS' if ratio >= TARGET else 'FAIL'}")
    print(f"\nour loop's per-step extras (ms per call; a step is ~{step_ms:.0f} ms):")
    for name, ms in extras.items():
        print(f"  {name:<36} {ms:8.3f} ms")
    append_json(Path(args.out), result)
    print(f"appended to {args.out}")
    return result


if __name__ == "__main__":
    main()
