"""evaluate_lm.py's layer-removal flags: dyt_llama/eval/cli.py adds them and hands the run to `run`.

python evaluate_lm.py --model DIR --remove-layers 3,7 --tasks piqa --corpus text.txt
python evaluate_lm.py --model DIR --remove-layers 3 --save-pruned runs/pruned
python evaluate_lm.py --model DIR --ablation all --ablation-data text.txt --ablation-out runs/ablation/dyt
python evaluate_lm.py --compare-ablation runs/ablation/dyt/ablation.json runs/ablation/rms/ablation.json
"""

import argparse
import sys
import time
from pathlib import Path

from .protocols import PROTOCOLS
from .removal import parse_layers
from .report import model_name

DEFAULT_CALIB = ("wikitext-2-raw", "wiki.test.raw.canonical")  # under ../shared/data when present
DEFAULT_CALIB_TOKENS = 32768


def _layer_list(text: str) -> list[int]:
    try:
        return parse_layers(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _protocols(text: str) -> list[str]:
    names = [t.strip() for t in text.split(",") if t.strip()]
    if names == ["all"]:
        return list(PROTOCOLS)
    if not names or any(n not in PROTOCOLS for n in names):
        raise argparse.ArgumentTypeError(f"--ablation {text!r}: choose all, or from {', '.join(PROTOCOLS)}")
    return names


def _tokens(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--calib-tokens {text!r} is not an integer") from None
    if value < 2:
        raise argparse.ArgumentTypeError(f"--calib-tokens must be at least 2, got {value}")
    return value


def add_ablation_args(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("layer-removal ablations (dyt_llama.ablation)")
    g.add_argument(
        "--remove-layers",
        type=_layer_list,
        metavar="I,J",
        help="evaluate with these decoder layers (0-based) deleted",
    )
    g.add_argument(
        "--save-pruned",
        metavar="DIR",
        help="with --remove-layers: save the pruned checkpoint (reloads at the new depth)",
    )
    g.add_argument(
        "--ablation",
        type=_protocols,
        metavar="PROTOCOLS",
        help=f"all, or comma-separated from {', '.join(PROTOCOLS)}: JSON, CSV and PNGs",
    )
    g.add_argument(
        "--ablation-out",
        metavar="DIR",
        help="where --ablation / --compare-ablation write (default runs/ablation/<model>)",
    )
    g.add_argument(
        "--ablation-data",
        metavar="FILE",
        help="calibration text (default: --corpus, else ../shared/data/wikitext-2-raw test)",
    )
    g.add_argument(
        "--calib-tokens",
        type=_tokens,
        default=DEFAULT_CALIB_TOKENS,
        help=f"calibration tokens used (default {DEFAULT_CALIB_TOKENS})",
    )
    g.add_argument(
        "--compare-ablation", nargs="+", metavar="ABLATION.json", help="plot these runs side by side and exit"
    )


def _log(args, message: str) -> None:
    if not args.no_progress:
        print(message, file=sys.stderr, flush=True)


def calibration_ids(args, tokenizer) -> tuple[list[int], str]:
    """The calibration token stream, tokenized once: --ablation-data, else --corpus, else WikiText-2 test."""
    from dyt_llama.eval.data import default_data_dir

    path = args.ablation_data or (args.corpus if args.corpus and not args.corpus.startswith("hf:") else None)
    if path is None:
        root = default_data_dir()
        path = root.joinpath(*DEFAULT_CALIB) if root else None
        if path is None or not path.is_file():
            raise ValueError("no calibration text found — pass a text file with --ablation-data")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"calibration text {path} does not exist — pass a text file with --ablation-data"
        )
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"calibration text {path} is not UTF-8 — pass a plain text file") from None
    # Tokenize a prefix that surely holds enough tokens (a token is rarely over 16 characters), not the whole file.
    ids = tokenizer(text[: 16 * args.calib_tokens])["input_ids"][: args.calib_tokens]
    if len(ids) < 2:
        raise ValueError(
            f"calibration text {path} is empty (fewer than 2 tokens) — pass a text file with --ablation-data"
        )
    return ids, str(path)


def run(args, model, tokenizer) -> int:
    """evaluate_lm.py with --remove-layers / --save-pruned / --ablation on a loaded model."""
    if args.ablation and args.remove_layers:
        raise ValueError(
            "--ablation measures the full model — drop --remove-layers (or evaluate that with --remove-layers alone)"
        )
    if args.save_pruned and not args.remove_layers:
        raise ValueError("--save-pruned needs --remove-layers — say which layers to delete")
    if args.remove_layers:
        return run_removal(args, model, tokenizer)
    return run_ablation(args, model, tokenizer)


def run_removal(args, model, tokenizer) -> int:
    from dyt_llama.eval.cli import evaluate
    from dyt_llama.eval.results import format_table, write_record

    from .removal import check_removal, check_save_dir, decoder_layers, remove_layers, save_pruned

    L = len(decoder_layers(model))
    removed = check_removal(args.remove_layers, L)
    if args.save_pruned:
        check_save_dir(args.save_pruned)  # before any work
    remove_layers(model, removed)
    _log(args, f"removed layers {removed}: {L} -> {len(decoder_layers(model))} layers")
    if args.save_pruned:
        print(f"pruned checkpoint: {save_pruned(model, tokenizer, args.save_pruned)}", file=sys.stderr)
        if not (args.tasks or args.corpus):  # saving alone: no evaluation asked for
            return 0
    record = evaluate(args, model, tokenizer)
    record["model"]["removed_layers"] = removed
    name = model_name(args.model) + "-minus-" + "-".join(map(str, removed))
    out = write_record(
        record, args.output or Path("runs") / "eval" / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    )
    print(format_table(record))
    print(f"results: {out}", file=sys.stderr)
    return 0


def run_ablation(args, model, tokenizer) -> int:
    """--ablation: the chosen protocols on the full model; ablation.json, ablation.csv and PNGs."""
    from dyt_llama.eval.loading import describe_model
    from dyt_llama.eval.results import versions
    from dyt_llama.eval.scoring import resolve_max_length

    from .plots import plot_all
    from .protocols import Evaluator, calibration_blocks, run_protocols
    from .report import format_summary, label, write_csv, write_json

    t0 = time.perf_counter()
    ids, source = calibration_ids(args, tokenizer)
    max_length = args.max_length or resolve_max_length(model.config, tokenizer)
    blocks = calibration_blocks(ids, max_length)
    task_kwargs = dict(
        data_dir={None: "auto", "hub": None}.get(args.data_dir, args.data_dir),
        limit=args.limit,
        task_data=dict(args.task_data),
        max_length=args.max_length,
        bootstrap_iters=args.bootstrap_iters,
    )
    log = lambda m: _log(args, m)  # noqa: E731
    evaluator = Evaluator(
        model, tokenizer, ids, max_length, args.batch_size, args.tasks or [], task_kwargs, log
    )
    _log(
        args,
        f"ablation {','.join(args.ablation)}: {len(ids)} calibration tokens from {source}, windows of {max_length}",
    )
    results = run_protocols(evaluator, blocks, args.ablation, args.batch_size)
    settings = {
        "protocols": args.ablation,
        "calibration": source,
        "calibration_tokens": len(ids),
        "max_length": max_length,
        "tasks": args.tasks or [],
        "limit": args.limit,
        "batch_size": args.batch_size,
        "device": str(next(model.parameters()).device),
        "dtype": args.dtype,
        "seconds": round(time.perf_counter() - t0, 2),
    }
    record = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "model": describe_model(model, args.model),
        "settings": settings,
        "ablation": results,
        "versions": versions(),
    }
    out = Path(args.ablation_out or Path("runs") / "ablation" / model_name(args.model))
    written = [write_json(record, out / "ablation.json"), write_csv(record, out / "ablation.csv")]
    written += plot_all([(label(record), record)], out)
    print(format_summary([(label(record), record)]))
    print("wrote " + ", ".join(map(str, written)), file=sys.stderr)
    return 0


def compare(args) -> int:
    """--compare-ablation: several runs' plots side by side, and their summaries."""
    from .plots import plot_all
    from .report import format_summary, label, read_json

    records = [(label(r, p), r) for p in args.compare_ablation for r in [read_json(p)]]
    out = Path(args.ablation_out or Path("runs") / "ablation" / "compare")
    written = plot_all(records, out)
    print(format_summary(records))
    print("wrote " + ", ".join(map(str, written)), file=sys.stderr)
    return 0
