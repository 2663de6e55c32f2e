"""evaluate_lm.py's command line: zero-shot tasks and perplexity with lm-eval's numbers, and run comparison.

    python evaluate_lm.py --model DIR --tasks wikitext,hellaswag,piqa --limit 200
    python evaluate_lm.py --model DIR --corpus data.txt --max-length 512 --stride 256
    python evaluate_lm.py --compare runs/eval/dyt.json runs/eval/rms.json

Bad input ends in one line on stderr, `error: <what> — <how to fix>`, and exit code 2 (--debug: traceback).
"""

import argparse
import sys
import time
from pathlib import Path

from dyt_llama.cli import EXIT_USAGE, quiet_transformers, run_guarded

from .data import DataError, default_data_dir
from .tasks import TASKS

# Flags of the layer-removal ablations (dyt_llama.ablation adds them to build_parser); _run() hands the run
# to dyt_llama.ablation.run(args, model, tokenizer) when any is set.
ABLATION_FLAGS = ("remove_layers", "save_pruned", "ablation")


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, not argparse's usage block
        print(f"error: {message}" + ("" if " — " in message else " — see --help"), file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def _tasks(text: str) -> list[str]:
    names = [t.strip() for t in text.split(",") if t.strip()]
    if names == ["all"]:
        return list(TASKS)
    unknown = [t for t in names if t not in TASKS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown task {', '.join(unknown) or '(none)'} — choose from all, {', '.join(TASKS)}"
        )
    return names


def _limit(text: str) -> int | float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a number — use N documents or a fraction"
        ) from None
    if not value > 0:
        raise argparse.ArgumentTypeError(
            f"must be positive, got {text} — use N documents or a fraction in (0, 1)"
        )
    return int(value) if value >= 1 else value


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _task_file(text: str) -> tuple[str, str]:
    task, sep, path = text.partition("=")
    if not sep or task not in TASKS or not path:
        raise argparse.ArgumentTypeError(
            f"got {text!r} — write TASK=FILE with TASK one of {', '.join(TASKS)}"
        )
    return task, path


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="evaluate_lm.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--model", help="checkpoint directory or Hub name (any AutoModelForCausalLM)")
    p.add_argument("--tokenizer", help="tokenizer directory or Hub name, if not the model's")
    p.add_argument(
        "--tasks",
        type=_tasks,
        default=None,
        help=f"comma-separated, or 'all' (the default unless --corpus): {', '.join(TASKS)}",
    )
    p.add_argument(
        "--data-dir",
        default=None,
        help="local copies of the task data in their original formats; 'hub' loads lm-eval's Hub datasets "
        f"(default: {default_data_dir() or 'hub'})",
    )
    p.add_argument(
        "--task-data",
        type=_task_file,
        action="append",
        default=[],
        metavar="TASK=FILE",
        help="one task's data file, e.g. hellaswag=.../hellaswag_val_full.txt.bz2 (repeatable)",
    )
    p.add_argument("--corpus", help="also: token perplexity of a text file, or hf:DATASET[:CONFIG]:SPLIT")
    p.add_argument("--text-field", default="text", help="the column of an hf: corpus (default: text)")
    p.add_argument(
        "--stride", type=_positive, help="corpus: sliding windows every STRIDE tokens (default: disjoint)"
    )
    p.add_argument(
        "--limit", type=_limit, help="first N documents per task (or a fraction), as lm-eval's --limit"
    )
    p.add_argument("--batch-size", type=_positive, default=16, help="requests per forward pass (default 16)")
    p.add_argument("--max-length", type=_positive, help="context window (default: the model's, as lm-eval)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N, mps (default auto)")
    p.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"])
    p.add_argument(
        "--bootstrap-iters", type=int, default=100000, help="lm-eval's stderr bootstrap (lambada ppl)"
    )
    p.add_argument("--output", help="results JSON (default runs/eval/<model>-<time>.json)")
    p.add_argument("--log-samples", action="store_true", help="keep per-document log-likelihoods in the JSON")
    p.add_argument(
        "--compare", nargs="+", metavar="RESULTS.json", help="print these runs side by side and exit"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--debug", action="store_true", help="tracebacks instead of one-line errors")
    from dyt_llama.ablation.cli import add_ablation_args

    add_ablation_args(p)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    quiet_transformers()  # stderr carries our progress bars and the one-line errors, not load reports
    return run_guarded(lambda: _run(args), debug=args.debug)


def _run(args) -> int:
    from .results import format_compare, format_table, read_record, run_labels, write_record

    if args.compare:
        records = [read_record(p) for p in args.compare]
        print(format_compare(list(zip(run_labels(records, args.compare), records))))
        return 0
    if args.compare_ablation:
        from dyt_llama.ablation.cli import compare

        return compare(args)
    if not args.model:
        raise ValueError("--model is required — pass a checkpoint directory or Hub name (or --compare FILES)")
    if args.stride and not args.corpus:
        raise ValueError("--stride applies to --corpus only — add --corpus FILE or drop --stride")

    from .loading import load_model
    from .runner import prepare_tasks

    if args.no_progress:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    if args.output:  # an unwritable results path fails now, not after the evaluation
        _check_writable(Path(args.output))
    # the data first: a bad task or file fails in a second, not after loading the model
    prepared = prepare_tasks(_task_names(args), _data_dir(args), args.limit, dict(args.task_data))
    model, tokenizer = load_model(args.model, args.device, args.dtype, args.tokenizer)
    if model.device.type == "cpu":
        from dyt_llama.malloc import retain_freed_memory

        retain_freed_memory()  # every batch's logits would otherwise be faulted in afresh
    if any(getattr(args, f, None) for f in ABLATION_FLAGS):
        from dyt_llama import ablation

        return ablation.run(args, model, tokenizer)
    record = evaluate(args, model, tokenizer, prepared)
    out = write_record(record, args.output or _default_output(args.model))
    print(format_table(record))
    print(f"results: {out}", file=sys.stderr)
    return 0


def _task_names(args) -> list[str]:
    return args.tasks if args.tasks is not None else ([] if args.corpus else list(TASKS))


def _data_dir(args):
    return {None: "auto", "hub": None}.get(args.data_dir, args.data_dir)


def evaluate(args, model, tokenizer, prepared=None) -> dict:
    """Run what args ask for on a loaded model; returns the results record (also for ablation sweeps).
    `prepared` (runner.prepare_tasks) is read from args when not given."""
    from .loading import describe_model
    from .results import make_record
    from .runner import prepare_tasks, score_tasks
    from .scoring import resolve_max_length

    tasks, data_dir, task_data = _task_names(args), _data_dir(args), dict(args.task_data)
    if prepared is None:
        prepared = prepare_tasks(tasks, data_dir, args.limit, task_data)
    start = time.perf_counter()
    results = {}
    if args.corpus:
        results[f"corpus:{Path(args.corpus).name}"] = corpus_perplexity(args, model, tokenizer)
    results.update(
        score_tasks(
            model,
            tokenizer,
            prepared,
            batch_size=args.batch_size,
            progress=not args.no_progress,
            max_length=args.max_length,
            bootstrap_iters=args.bootstrap_iters,
            log_samples=args.log_samples,
        )
    )
    settings = {
        "tasks": tasks,
        "corpus": args.corpus,
        "stride": args.stride,
        "limit": args.limit,
        "num_fewshot": 0,
        "batch_size": args.batch_size,
        "max_length": args.max_length or resolve_max_length(model.config, tokenizer),
        "device": str(next(model.parameters()).device),
        "dtype": args.dtype,
        "data_dir": str(default_data_dir() if data_dir == "auto" else data_dir or "hub"),
        "task_data": task_data,
        "bootstrap_iters": args.bootstrap_iters,
        "seconds": round(time.perf_counter() - start, 2),
    }
    return make_record(describe_model(model, args.model), settings, results)


def corpus_perplexity(args, model, tokenizer) -> dict:
    """--corpus: a text file, or hf:DATASET[:CONFIG]:SPLIT whose rows are joined by blank lines (HF's recipe)."""
    from .perplexity import token_perplexity
    from .scoring import resolve_max_length

    if args.corpus.startswith("hf:"):
        from .data import load_hub

        parts = args.corpus[3:].split(":")
        if len(parts) not in (2, 3):
            raise ValueError(f"--corpus {args.corpus} — write hf:DATASET:SPLIT or hf:DATASET:CONFIG:SPLIT")
        rows = load_hub(parts[0], parts[1] if len(parts) == 3 else None, parts[-1])
        if rows and args.text_field not in rows[0]:
            raise DataError(f"{args.corpus} has no column {args.text_field!r} — pass --text-field")
        text = "\n\n".join(r[args.text_field] for r in rows)
    else:
        path = Path(args.corpus)
        if not path.is_file():
            raise DataError(f"--corpus {path} does not exist — pass a text file or hf:DATASET:SPLIT")
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise DataError(f"--corpus {path} is not UTF-8 text — pass a plain text file") from None
    ids = tokenizer(text)["input_ids"]
    max_length = args.max_length or resolve_max_length(model.config, tokenizer)
    result = token_perplexity(
        model, ids, max_length, args.stride, args.batch_size, progress=not args.no_progress
    )
    return {**result, "max_length": max_length, "stride": args.stride, "source": args.corpus}


def _check_writable(path: Path) -> None:
    parent = next((p for p in [path.parent, *path.parent.parents] if p.exists()), Path("."))
    if not parent.is_dir():
        raise ValueError(f"cannot write results to {path}: {parent} is a file — choose another --output")


def _default_output(model: str) -> Path:
    return Path("runs") / "eval" / f"{Path(model.rstrip('/')).name}-{time.strftime('%Y%m%d-%H%M%S')}.json"
