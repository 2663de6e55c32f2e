"""Run lm-evaluation-harness itself on the local data files: the yardstick our numbers are checked against.

lm-eval's own task YAMLs are used unchanged except for where the documents come from: a jsonl in the Hub
schema written from the local copies by our readers. Needs the `eval` extra (lm-eval); only tests, the
bench and users who want the harness's own run import this module.

    from dyt_llama.eval.lmeval import run_lmeval
    out = run_lmeval("path/to/checkpoint", ["piqa", "wikitext"], limit=50, workdir="/tmp/lmeval")
"""

import json
from pathlib import Path

import dyt_llama  # noqa: F401  lets HFLM(pretrained=DIR) load our checkpoints without remote code

from .data import default_data_dir
from .tasks import get_task, load_docs, resolve_source

# lm-eval's YAML for each of our tasks, relative to lm_eval/tasks/
LMEVAL_YAML = {
    "wikitext": "wikitext/wikitext.yaml",
    "hellaswag": "hellaswag/hellaswag.yaml",
    "piqa": "piqa/piqa.yaml",
    "arc_easy": "arc/arc_easy.yaml",
    "arc_challenge": "arc/arc_challenge.yaml",
    "winogrande": "winogrande/default.yaml",
    "boolq": "super_glue/boolq/default.yaml",
    "openbookqa": "openbookqa/openbookqa.yaml",
    "lambada_openai": "lambada/lambada_openai.yaml",
}


def lmeval_yaml(task: str) -> dict:
    """lm-eval's task config, as its loader reads it (functions resolved)."""
    import lm_eval
    from lm_eval.tasks._yaml_loader import load_yaml

    return load_yaml(Path(lm_eval.__file__).parent / "tasks" / LMEVAL_YAML[task])


def local_task_config(task: str, jsonl: str | Path) -> dict:
    """lm-eval's config for `task` with its evaluation split read from `jsonl` (Hub schema) and no others."""
    cfg = lmeval_yaml(task)
    split = cfg.get("test_split") or cfg.get("validation_split")
    cfg.pop("tag", None)  # the local variant joins no group
    cfg.update(
        task=f"{task}_local",
        dataset_path="json",
        dataset_name=None,
        dataset_kwargs={"data_files": {split: str(Path(jsonl).resolve())}},
        training_split=None,
        validation_split=split if split != "test" else None,
        test_split=split if split == "test" else None,
        fewshot_split=None,
    )
    return cfg


def write_local_jsonl(task: str, path: str | Path, data_dir=None, limit=None, source=None) -> Path:
    """The documents our runner would score for `task` (same source, same --limit), as a Hub-schema jsonl."""
    t = get_task(task)
    docs = load_docs(
        t, resolve_source(t, default_data_dir() if data_dir is None else data_dir, source), limit
    )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for doc in docs:
            f.write(json.dumps(doc) + "\n")
    return path


def load_lmeval_tasks(tasks: list[str], workdir, data_dir=None, limit=None) -> dict:
    """lm-eval task objects (TaskManager.load) for `tasks`, reading the local documents, zero-shot."""
    from lm_eval.tasks import TaskManager

    configs = [
        local_task_config(t, write_local_jsonl(t, Path(workdir) / f"{t}.jsonl", data_dir, limit))
        for t in tasks
    ]
    loaded = TaskManager(include_defaults=False).load(configs)
    for task in loaded["tasks"].values():
        task.set_config(key="num_fewshot", value=0)
    return loaded


def evaluate_lmeval(lm, loaded: dict, bootstrap_iters: int = 100000) -> dict:
    """lm-eval's evaluate() with per-sample logging; results and samples keyed by our task names."""
    from lm_eval.evaluator import evaluate

    out = evaluate(lm, loaded, bootstrap_iters=bootstrap_iters, log_samples=True, verbosity="WARNING")
    strip = lambda d: {k.removesuffix("_local"): v for k, v in d.items()}  # noqa: E731
    return {"results": strip(out["results"]), "samples": strip(out["samples"])}


def run_lmeval(
    model,
    tasks: list[str],
    workdir,
    data_dir=None,
    limit=None,
    batch_size=16,
    bootstrap_iters=100000,
    device="cpu",
) -> dict:
    """lm-eval on the local data: `model` is a checkpoint path (HFLM(pretrained=...)) or an lm-eval LM.
    Returns {"results": ..., "samples": ...} as lm-eval reports them, keyed by our task names."""
    from lm_eval.models.huggingface import HFLM

    lm = (
        HFLM(pretrained=str(model), batch_size=batch_size, device=device)
        if isinstance(model, (str, Path))
        else model
    )
    return evaluate_lmeval(lm, load_lmeval_tasks(tasks, workdir, data_dir, limit), bootstrap_iters)


def per_request_loglikelihoods(samples: list[dict]) -> list[list[float]]:
    """lm-eval samples (log_samples=True) → per document, the log-likelihood of each request, in doc order."""
    out = []
    for s in sorted(samples, key=lambda s: s["doc_id"]):
        resps = s["filtered_resps"]  # [(ll, is_greedy), ...] per request, or [ll] for a rolling one
        out.append([float(r[0]) if isinstance(r, (list, tuple)) else float(r) for r in resps])
    return out
