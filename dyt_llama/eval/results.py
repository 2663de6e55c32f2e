"""The results file of a run (JSON), its readable table, and several runs side by side."""

import importlib.metadata
import json
import platform
import time
from pathlib import Path

from .data import DataError

# Metrics shown, in order; the rest of a task's entry (n, source, seconds, extra counts) stays in the JSON.
SHOWN = ("acc", "acc_norm", "perplexity", "loss", "word_perplexity", "byte_perplexity", "bits_per_byte")
LOWER_IS_BETTER = {"perplexity", "word_perplexity", "byte_perplexity", "bits_per_byte"}


def versions() -> dict:
    out = {"python": platform.python_version()}
    for pkg in ("dyt-llama", "torch", "transformers", "datasets", "tokenizers", "lm-eval"):
        try:
            out[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            out[pkg] = None
    return out


def make_record(model_info: dict, settings: dict, results: dict) -> dict:
    return {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "model": model_info,
        "settings": settings,
        "results": results,
        "versions": versions(),
    }


def write_record(record: dict, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2, default=str) + "\n")
    return path


def read_record(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"results file {path} does not exist — pass files written by evaluate_lm.py")
    try:
        record = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"{path} is not JSON ({e}) — pass files written by evaluate_lm.py") from None
    if not isinstance(record, dict) or not isinstance(record.get("results"), dict):
        raise DataError(f"{path} has no 'results' — pass files written by evaluate_lm.py")
    return record


def _rows(results: dict):
    for task, metrics in results.items():
        for m in SHOWN:
            if m in metrics:
                yield task, m, metrics[m], metrics.get(f"{m}_stderr"), metrics.get("n")


def _fmt(value, stderr=None) -> str:
    if value is None:
        return "-"
    digits = 4 if abs(value) < 10 else 2
    text = f"{value:.{digits}f}"
    return text + (f" ± {stderr:.{digits}f}" if stderr is not None else "")


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = lambda r: "| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths)) + " |"  # noqa: E731
    return "\n".join([line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, rows)])


def format_table(record: dict) -> str:
    """One run: task | metric | value ± stderr | n, as a markdown table."""
    rows = [
        [t, m + (" ↓" if m in LOWER_IS_BETTER else ""), _fmt(v, s), n]
        for t, m, v, s, n in _rows(record["results"])
    ]
    return _table(["task", "metric", "value ± stderr", "n"], rows)


def run_label(record: dict, path: str | Path | None = None) -> str:
    model = record.get("model") or {}
    where = Path(str(model.get("path") or path or "run"))
    name = f"{where.parent.name}/{where.name}" if where.name in ("export", "final", "model") else where.name
    norm = model.get("norm_type")
    return f"{name} ({norm})" if norm else name


def run_labels(records: list[dict], paths: list[str | Path]) -> list[str]:
    """A column title per run: model (norm), with the results file's name where two would read the same."""
    labels = [run_label(r, p) for r, p in zip(records, paths)]
    return [f"{lab} [{Path(p).stem}]" if labels.count(lab) > 1 else lab for lab, p in zip(labels, paths)]


def format_compare(records: list[tuple[str, dict]]) -> str:
    """Several runs side by side: a row per (task, metric), a column per run."""
    keys = list(dict.fromkeys((t, m) for _, r in records for t, m, *_ in _rows(r["results"])))
    rows = []
    for task, metric in keys:
        row = [task, metric + (" ↓" if metric in LOWER_IS_BETTER else "")]
        for _, r in records:
            entry = r["results"].get(task, {})
            row.append(_fmt(entry.get(metric), entry.get(f"{metric}_stderr")))
        rows.append(row)
    labels = [label for label, _ in records]
    ns = [", ".join(f"{t}={e.get('n')}" for t, e in r["results"].items()) for _, r in records]
    table = _table(["task", "metric", *labels], rows)
    if len(set(ns)) > 1:
        table += "\nnote: the runs scored different numbers of documents (--limit or data differ)"
    return table
