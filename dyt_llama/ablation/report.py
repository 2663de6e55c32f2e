"""Every measurement of an ablation run as JSON (nested, the source for plots) and CSV (one long table), and a
short text summary for the terminal."""

import csv
import json
import math
from pathlib import Path

CSV_COLUMNS = ("model", "protocol", "layer", "start", "n_removed", "removed", "metric", "value")
REMOVAL_LISTS = ("sweep", "bi_removal", "angular_removal", "drop_last")


def model_name(path) -> str:
    """A short name for a model path: the directory's, or the run's for runs/<run>/export."""
    p = Path(str(path).rstrip("/"))
    return p.parent.name if p.name == "export" and p.parent.name else p.name


def label(record: dict, path=None) -> str:
    model = record.get("model") or {}
    name = model_name(model.get("path") or path or "model")
    norm = model.get("norm_type")
    return f"{name} ({norm})" if norm else name


def write_json(record: dict, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2, default=str, allow_nan=False) + "\n")
    return path


def read_json(path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"ablation results {path} do not exist — pass ablation.json files of --ablation runs"
        )
    try:
        record = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path} is not JSON ({e}) — pass ablation.json files of --ablation runs") from None
    if not isinstance(record, dict) or not isinstance(record.get("ablation"), dict):
        raise ValueError(f"{path} has no 'ablation' section — pass ablation.json files of --ablation runs")
    return record


def _metrics(entry: dict):
    """(metric, value) of one evaluated removal: perplexity, loss, their deltas, and task metrics."""
    for key in ("perplexity", "loss", "delta_perplexity", "delta_loss", "distance"):
        if key in entry:
            yield key, entry[key]
    for task, metrics in entry.get("tasks", {}).items():
        for m, v in metrics.items():
            yield f"{task}:{m}", v
    for task, metrics in entry.get("delta_tasks", {}).items():
        for m, v in metrics.items():
            yield f"delta:{task}:{m}", v


def csv_rows(record: dict):
    name, abl = label(record), record["ablation"]

    def row(protocol, metric, value, layer=None, start=None, removed=None):
        removed = removed if removed is not None else []
        text = " ".join(map(str, removed))
        return dict(zip(CSV_COLUMNS, (name, protocol, layer, start, len(removed), text, metric, value)))

    for metric, value in _metrics(abl["baseline"]):
        yield row("baseline", metric, value)
    for protocol in REMOVAL_LISTS:
        for entry in abl.get(protocol, []):
            for metric, value in _metrics(entry):
                yield row(protocol, metric, value, entry.get("layer"), entry.get("start"), entry["removed"])
    for layer, bi in enumerate(abl.get("block_influence", [])):
        yield row("block_influence", "block_influence", bi, layer=layer)
    for n, values in enumerate(abl.get("angular_distance", []), start=1):
        for start, d in enumerate(values):
            if d is not None:
                yield row(
                    "angular_distance", "angular_distance", d, start=start, removed=range(start, start + n)
                )


def write_csv(record: dict, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        writer.writerows(csv_rows(record))
    return path


def _f(x, digits=3) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def format_summary(records: list[tuple[str, dict]]) -> str:
    """The headline numbers of one or more runs, side by side."""
    lines = []
    for name, record in records:
        abl = record["ablation"]
        L = abl["num_layers"]
        lines.append(f"== {name}: {L} layers, baseline perplexity {_f(abl['baseline']['perplexity'])}")
        if "sweep" in abl:
            lines.append(
                "  sweep  Δppl per removed layer: "
                + "  ".join(f"{e['layer']}:{_f(e['delta_perplexity'], 2)}" for e in abl["sweep"])
            )
        if "block_influence" in abl:
            lines.append(
                "  Block Influence per layer:   "
                + "  ".join(f"{i}:{_f(b, 4)}" for i, b in enumerate(abl["block_influence"]))
            )
        for key, title in (
            ("bi_removal", "greedy BI"),
            ("angular_removal", "angular block"),
            ("drop_last", "drop last"),
        ):
            if key in abl:
                lines.append(
                    f"  {title:<13} n -> removed, ppl: "
                    + "  ".join(
                        f"{e['n']}->{e['removed']}, {_f(e['perplexity'], 2)}"
                        + (f" (d={_f(e['distance'])})" if "distance" in e else "")
                        for e in abl[key]
                    )
                )
    return "\n".join(lines)
