"""The zero-shot tasks, with lm-eval 0.4.13's data, prompts, choices and metrics.

Each builder is the harness's YAML written out in Python (lm_eval/tasks/<task>/): the context, the
continuations with their " " target delimiter, the gold index, and the choice strings that acc_norm divides
by. tests/test_eval_lmeval_parity.py checks every one against the harness's own request construction.
"""

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from . import compat, data


@dataclass
class Example:
    requests: list[tuple[str, str]]  # (context, continuation) per choice, as the harness sends them
    gold: int | None = None
    choices: list[str] | None = None  # lm-eval's doc_to_choice strings: acc_norm's lengths


@dataclass(frozen=True)
class Task:
    name: str
    output_type: str  # "multiple_choice", "loglikelihood" or "loglikelihood_rolling", as in lm-eval
    hub: tuple[str, str | None, str]  # (dataset_path, dataset_name, split) that lm-eval evaluates
    files: tuple[str, ...]  # local copies under --data-dir, in order of preference
    read: Callable[[Path], list[dict]]
    build: Callable[[dict], Example] | None  # None for wikitext, which perplexity.py scores
    metrics: tuple[str, ...]


def _choices(context: str, choices: list[str], gold: int) -> Example:
    return Example([(context, " " + c) for c in choices], gold, choices)


def build_hellaswag(doc: dict) -> Example:
    ctx = doc["ctx_a"] + " " + doc["ctx_b"].capitalize()
    query = compat.hellaswag_preprocess(doc["activity_label"] + ": " + ctx)
    return _choices(query, [compat.hellaswag_preprocess(e) for e in doc["endings"]], int(doc["label"]))


def build_piqa(doc: dict) -> Example:
    return _choices(f"Question: {doc['goal']}\nAnswer:", [doc["sol1"], doc["sol2"]], int(doc["label"]))


def build_arc(doc: dict) -> Example:
    labels = list(doc["choices"]["label"])
    return _choices(
        f"Question: {doc['question']}\nAnswer:", list(doc["choices"]["text"]), labels.index(doc["answerKey"])
    )


def build_winogrande(doc: dict) -> Example:
    # The choice fills the blank inside the context; the rest of the sentence is the one shared continuation
    # ("partial evaluation"), so only P(rest | prefix with option) is compared.
    blank = doc["sentence"].index("_")
    contexts = [doc["sentence"][:blank] + opt for opt in (doc["option1"], doc["option2"])]
    rest = " " + doc["sentence"][blank + 1 :].strip()
    return Example([(c, rest) for c in contexts], {"1": 0, "2": 1}[doc["answer"]], contexts)


def build_boolq(doc: dict) -> Example:
    return _choices(
        f"{doc['passage']}\nQuestion: {doc['question']}?\nAnswer:", ["no", "yes"], int(doc["label"])
    )


def build_openbookqa(doc: dict) -> Example:
    labels = list(doc["choices"]["label"])
    return _choices(
        doc["question_stem"], list(doc["choices"]["text"]), labels.index(doc["answerKey"].lstrip())
    )


def build_lambada(doc: dict) -> Example:
    words = doc["text"].split(" ")
    return Example([(" ".join(words[:-1]), " " + words[-1])])


TASKS: dict[str, Task] = {
    t.name: t
    for t in [
        Task(
            "wikitext",
            "loglikelihood_rolling",
            ("EleutherAI/wikitext_document_level", "wikitext-2-raw-v1", "test"),
            ("wikitext-2-raw/wiki.test.raw.canonical", "wikitext-2-raw/wiki.test.raw"),
            data.read_wikitext,
            None,
            ("word_perplexity", "byte_perplexity", "bits_per_byte"),
        ),
        Task(
            "hellaswag",
            "multiple_choice",
            ("Rowan/hellaswag", None, "validation"),
            # the full original jsonl if a user has it; else the 1,000-item original-format subset, whose
            # prompts are exactly lm-eval's (the llama.cpp text file has all 10,042 items: --task-data)
            ("hellaswag/hellaswag_val.jsonl", "hellaswag/hellaswag_val_subset1000.jsonl"),
            data.read_hellaswag,
            build_hellaswag,
            ("acc", "acc_norm"),
        ),
        Task(
            "piqa",
            "multiple_choice",
            ("baber/piqa", None, "validation"),
            ("piqa/valid.jsonl",),
            data.read_piqa,
            build_piqa,
            ("acc", "acc_norm"),
        ),
        Task(
            "arc_easy",
            "multiple_choice",
            ("allenai/ai2_arc", "ARC-Easy", "test"),
            ("arc/ARC-Easy-Test.jsonl",),
            data.read_arc,
            build_arc,
            ("acc", "acc_norm"),
        ),
        Task(
            "arc_challenge",
            "multiple_choice",
            ("allenai/ai2_arc", "ARC-Challenge", "test"),
            ("arc/ARC-Challenge-Test.jsonl",),
            data.read_arc,
            build_arc,
            ("acc", "acc_norm"),
        ),
        Task(
            "winogrande",
            "multiple_choice",
            ("allenai/winogrande", "winogrande_xl", "validation"),
            ("winogrande/dev.jsonl", "winogrande/dev.json"),
            data.read_winogrande,
            build_winogrande,
            ("acc",),
        ),
        Task(
            "boolq",
            "multiple_choice",
            ("aps/super_glue", "boolq", "validation"),
            ("boolq/val.jsonl",),
            data.read_boolq,
            build_boolq,
            ("acc",),
        ),
        Task(
            "openbookqa",
            "multiple_choice",
            ("allenai/openbookqa", "main", "test"),
            ("openbookqa/test.tsv",),
            data.read_openbookqa,
            build_openbookqa,
            ("acc", "acc_norm"),
        ),
        Task(
            "lambada_openai",
            "loglikelihood",
            ("EleutherAI/lambada_openai", "default", "test"),
            ("lambada/lambada_test.jsonl",),
            data.read_lambada,
            build_lambada,
            ("perplexity", "acc"),
        ),
    ]
}


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r} — choose from {', '.join(TASKS)}")
    return TASKS[name]


def resolve_source(task: Task, data_dir: Path | None, path: Path | None = None) -> str | Path:
    """Where a task's data comes from: an explicit file, the first local copy under data_dir, or the Hub."""
    if path is not None:
        return Path(path)
    if data_dir is None:
        return "hub"
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise data.DataError(f"--data-dir {data_dir} is not a directory — point it at the local data folder")
    for rel in task.files:
        if (data_dir / rel).is_file():
            return data_dir / rel
    raise data.DataError(
        f"no local copy of {task.name} under {data_dir} (looked for {', '.join(task.files)})"
        f" — add it, pass --task-data {task.name}=FILE, or use --data-dir hub"
    )


def load_docs(task: Task, source: str | Path, limit: int | float | None = None) -> list[dict]:
    """The task's documents in Hub schema, cut to lm-eval's --limit (first N, or a fraction rounded up)."""
    docs = data.load_hub(*task.hub) if source == "hub" else _read(task.name, *_file_key(Path(source)))
    return [dict(d) for d in docs[: apply_limit(len(docs), limit)]]  # copies: the cache stays intact


def _file_key(path: Path) -> tuple:
    stat = path.stat() if path.is_file() else None
    return str(path), stat and (stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=32)
def _read(name: str, path: str, version) -> tuple[dict, ...]:
    # Cached while the file is unchanged: ablation sweeps evaluate many models on the same documents.
    return tuple(TASKS[name].read(Path(path)))


def apply_limit(n: int, limit: int | float | None) -> int:
    if limit is None:
        return n
    if limit <= 0:
        raise ValueError(
            f"--limit must be positive, got {limit} — use N >= 1 documents or a fraction in (0, 1)"
        )
    return min(n, math.ceil(n * limit) if limit < 1 else int(limit))
