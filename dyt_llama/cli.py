"""One place that turns a user's mistake into one clear line and a non-zero exit code."""

import sys

EXIT_USAGE = 2

# What bad input raises: the message says what is wrong and how to fix it. Anything else is our bug and
# keeps its traceback.
USER_ERRORS = (
    ValueError,
    FileNotFoundError,
    FileExistsError,
    NotADirectoryError,
    PermissionError,
    OSError,
    KeyError,
)


def quiet_transformers() -> None:
    """Keep stderr for our messages: no per-load progress bars or load reports from transformers."""
    from transformers.utils import logging

    logging.disable_progress_bar()
    logging.set_verbosity_error()


def run_guarded(fn, debug: bool = False) -> int:
    """Run fn(); a user error prints `error: <first line>` to stderr and returns 2 (a traceback with --debug)."""
    try:
        result = fn()
    except USER_ERRORS as e:
        if debug:
            raise
        message = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        print(f"error: {message}", file=sys.stderr)
        return EXIT_USAGE
    return 0 if result is None else int(result)
