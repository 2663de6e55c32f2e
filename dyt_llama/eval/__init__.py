"""Evaluation with lm-evaluation-harness's numbers: perplexity and zero-shot tasks, batched for speed.

    from dyt_llama.eval import run_tasks, token_perplexity, wikitext_perplexity
    results = run_tasks(model, tokenizer, ["wikitext", "hellaswag", "piqa"], limit=100)

lm-eval itself is not needed at run time (its helpers are in compat.py); it is the `eval` extra, used by the
parity tests and bench/bench_eval.py.
"""

from .perplexity import token_perplexity, wikitext_perplexity
from .runner import run_tasks
from .scoring import Scorer, resolve_max_length
from .tasks import TASKS

__all__ = ["TASKS", "Scorer", "resolve_max_length", "run_tasks", "token_perplexity", "wikitext_perplexity"]
