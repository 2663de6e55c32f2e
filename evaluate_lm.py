"""Perplexity and zero-shot evaluation with lm-eval's numbers: `python evaluate_lm.py --help`."""

from dyt_llama.eval.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
