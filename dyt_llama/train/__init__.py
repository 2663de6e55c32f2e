"""Pretraining: settings (args), the loop, checkpoints, optimizer and schedule, metrics."""

import sys

from ..cli import quiet_transformers, run_guarded
from .args import DataArgs, ModelArgs, TrainArgs, parse_args
from .loop import NonFiniteError, train

EXIT_NONFINITE = 3


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    quiet_transformers()
    parsed = {}
    code = run_guarded(lambda: parsed.update(args=parse_args(argv)), debug)
    if code:
        return code
    if not parsed["args"][2].progress:
        import datasets

        datasets.disable_progress_bars()
    try:
        return run_guarded(lambda: train(*parsed["args"]) and None, debug)
    except NonFiniteError as e:
        if debug:
            raise
        print(f"error: {e}", file=sys.stderr)
        return EXIT_NONFINITE


__all__ = ["DataArgs", "ModelArgs", "NonFiniteError", "TrainArgs", "main", "parse_args", "train"]
