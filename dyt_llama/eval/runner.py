"""run_tasks: load each task's documents, score them in one batched pass, aggregate as lm-eval does."""

import time
from pathlib import Path

import numpy as np

from . import compat
from .data import DataError, default_data_dir
from .perplexity import wikitext_metrics
from .scoring import Scorer
from .tasks import Example, Task, get_task, load_docs, resolve_source

AUTO = "auto"  # data_dir: <repo>/../shared/data when present, else the Hub


def run_tasks(
    model,
    tokenizer,
    tasks: list[str],
    data_dir: str | Path | None = AUTO,
    limit: int | float | None = None,
    batch_size: int = 16,
    progress: bool = True,
    *,
    task_data: dict[str, str | Path] | None = None,
    max_length: int | None = None,
    bootstrap_iters: int = 100000,
    log_samples: bool = False,
) -> dict[str, dict]:
    """Evaluate `model` on `tasks` (names from tasks.TASKS, wikitext included) zero-shot, as lm-eval would.

    data_dir: local copies in their original formats ("auto": <repo>/../shared/data if it exists; None: the
    Hub); task_data maps a task to one file, overriding data_dir. limit: the first N documents of each task
    (or a fraction). batch_size: requests per forward pass. bootstrap_iters: lm-eval's bootstrap for the
    lambada perplexity stderr (0 turns stderrs off, as in lm-eval).
    Returns {task: {metric: value, metric_stderr: value or None, n, source, seconds[, samples]}}.
    """
    prepared = prepare_tasks(tasks, data_dir, limit, task_data)
    return score_tasks(
        model, tokenizer, prepared, batch_size, progress, max_length, bootstrap_iters, log_samples
    )


def prepare_tasks(tasks: list[str], data_dir=AUTO, limit=None, task_data=None) -> list[tuple]:
    """Read and build every task's documents: a bad task name or file fails here, before any model loads."""
    data_dir = default_data_dir() if data_dir == AUTO else data_dir
    task_data = task_data or {}
    unknown = sorted(set(task_data) - set(tasks))
    if unknown:
        raise ValueError(
            f"--task-data names {', '.join(unknown)}, which is not in --tasks — add it or drop it"
        )
    prepared = []
    for name in dict.fromkeys(tasks):
        task = get_task(name)
        source = resolve_source(task, data_dir, task_data.get(name))
        docs = load_docs(task, source, limit)
        prepared.append((task, source, docs, _build(task, docs, source)))
    return prepared


def score_tasks(
    model,
    tokenizer,
    prepared,
    batch_size=16,
    progress=True,
    max_length=None,
    bootstrap_iters=100000,
    log_samples=False,
) -> dict[str, dict]:
    scorer = Scorer(model, tokenizer, batch_size=batch_size, max_length=max_length, progress=progress)
    results = {}
    for task, source, docs, examples in prepared:
        t0 = time.perf_counter()
        if task.output_type == "loglikelihood_rolling":
            metrics = wikitext_metrics(scorer, [d["page"] for d in docs], desc=task.name)
            per_doc = metrics.pop("per_document")
            for m in task.metrics:
                metrics[f"{m}_stderr"] = None  # the harness has no stderr for these ("N/A")
            samples = [{"loglikelihood": ll} for ll in per_doc]
        else:
            greedy = task.output_type == "loglikelihood"  # lambada's acc; multiple choice has no use for it
            scores = scorer.loglikelihood([ex.requests for ex in examples], desc=task.name, greedy=greedy)
            metrics, samples = aggregate(task, examples, scores, bootstrap_iters)
        metrics.update(n=len(docs), source=str(source), seconds=round(time.perf_counter() - t0, 3))
        if log_samples:
            metrics["samples"] = samples
        results[task.name] = metrics
    return results


def _build(task: Task, docs: list[dict], source) -> list[Example] | None:
    if task.build is None:
        if any(not isinstance(d.get("page"), str) for d in docs):
            raise DataError(f"{source}: {task.name} documents need a 'page' text — is it the right file?")
        return None
    examples = []
    for i, doc in enumerate(docs):
        try:
            examples.append(task.build(doc))
        except (KeyError, ValueError, TypeError, AttributeError, IndexError) as e:
            raise DataError(
                f"{source}: document {i} does not fit {task.name} ({type(e).__name__}: {e})"
                " — is it the right file for this task?"
            ) from None
    return examples


def aggregate(task: Task, examples: list[Example], scores, bootstrap_iters: int = 100000):
    """Per-document results and their aggregation, as lm-eval's process_results + aggregation + stderr."""
    per_metric: dict[str, list] = {m: [] for m in task.metrics}
    samples = []
    for ex, choice_scores in zip(examples, scores):
        lls = np.array([ll for ll, _ in choice_scores])
        if task.output_type == "loglikelihood":
            ll, greedy = choice_scores[0]
            per_metric["perplexity"].append(ll)
            per_metric["acc"].append(int(greedy))
            samples.append({"loglikelihood": ll, "greedy": greedy})
            continue
        pred = int(np.argmax(lls))
        per_metric["acc"].append(1.0 if pred == ex.gold else 0.0)
        if "acc_norm" in per_metric:  # per character of the choice, without the " " delimiter
            lengths = np.array([float(len(c)) for c in ex.choices])
            per_metric["acc_norm"].append(1.0 if int(np.argmax(lls / lengths)) == ex.gold else 0.0)
        samples.append({"loglikelihoods": lls.tolist(), "gold": ex.gold, "pred": pred})
    metrics = {}
    for name, items in per_metric.items():
        if name == "perplexity":
            metrics[name] = compat.perplexity(items)
            stderr = (
                compat.bootstrap_stderr_perplexity(items, bootstrap_iters) if bootstrap_iters > 0 else None
            )
        else:
            metrics[name] = compat.mean(items)
            stderr = compat.mean_stderr(items) if bootstrap_iters > 0 else None
        metrics[f"{name}_stderr"] = stderr if len(items) > 1 else None
    return metrics, samples
