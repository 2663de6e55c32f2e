"""Evaluation data: the Hub datasets lm-eval uses, or local copies in their original release formats.

Every reader returns rows in the *Hub* schema (the fields lm-eval's task YAMLs read), so one prompt builder
per task serves both sources. A bad file raises DataError naming the file, the line and the fix.
"""

import bz2
import csv
import json
import re
from pathlib import Path


class DataError(ValueError):
    """A missing or malformed data file (or an unreachable Hub dataset): one line, what and how to fix."""


def default_data_dir() -> Path | None:
    """`<repo>/../shared/data` when it exists next to this checkout, else None (load from the Hub)."""
    path = Path(__file__).resolve().parents[3] / "shared" / "data"
    return path if path.is_dir() else None


def load_hub(path: str, name: str | None, split: str) -> list[dict]:
    """The split lm-eval loads (`datasets.load_dataset(dataset_path, dataset_name)[split]`)."""
    import datasets

    try:
        return list(datasets.load_dataset(path, name, split=split))
    except Exception as e:  # offline, renamed, gated: all end the same way for the user
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DataError(
            f"could not load {path}{'/' + name if name else ''} [{split}] from the Hugging Face Hub ({first})"
            " — go online, or pass --data-dir with local copies"
        ) from None


# --- small readers that fail with the file and line ---


def _text(path: Path) -> str:
    if not path.is_file():
        raise DataError(f"data file {path} does not exist — check --data-dir / --task-data")
    try:
        if path.suffix == ".bz2":
            with bz2.open(path, "rt", encoding="utf-8") as f:
                return f.read()
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError, EOFError) as e:
        raise DataError(f"cannot read {path} ({e}) — is it the right file, uncorrupted?") from None


def _jsonl(path: Path, required: tuple[str, ...]) -> list[dict]:
    rows = []
    for i, line in enumerate(_text(path).splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}:{i}: not valid JSON ({e.msg}) — the file is malformed") from None
        _require(row, required, f"{path}:{i}")
        rows.append(row)
    if not rows:
        raise DataError(f"{path} holds no rows — is it the right file?")
    return rows


def _require(row, fields: tuple[str, ...], where: str) -> None:
    if not isinstance(row, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(row).__name__} — the file is malformed")
    missing = [f for f in fields if f not in row]
    if missing:
        raise DataError(
            f"{where}: missing field(s) {', '.join(missing)} — is it the right file for this task?"
        )


def _labels(path: Path, n: int, allowed: set[str]) -> list[str]:
    labels = _text(path).split()
    if len(labels) != n:
        raise DataError(f"{path} has {len(labels)} labels for {n} items — use the matching labels file")
    bad = next((x for x in labels if x not in allowed), None)
    if bad is not None:
        raise DataError(f"{path}: label {bad!r} is not one of {sorted(allowed)} — the file is malformed")
    return labels


# --- one reader per original format; each returns Hub-schema rows ---


def read_piqa(path: Path) -> list[dict]:
    """PIQA `valid.jsonl` ({goal, sol1, sol2}) with its `valid-labels.lst` beside it."""
    rows = _jsonl(path, ("goal", "sol1", "sol2"))
    if all("label" in r for r in rows):
        return [{**r, "label": int(r["label"])} for r in rows]
    labels = _labels(path.with_name(path.stem + "-labels.lst"), len(rows), {"0", "1"})
    return [{**r, "label": int(y)} for r, y in zip(rows, labels)]


def read_arc(path: Path) -> list[dict]:
    """AI2 ARC release jsonl: {id, question: {stem, choices: [{text, label}]}, answerKey}."""
    out = []
    for i, r in enumerate(_jsonl(path, ("question", "answerKey")), 1):
        if isinstance(r["question"], str):  # already the Hub schema
            out.append(r)
            continue
        q = r["question"]
        _require(q, ("stem", "choices"), f"{path}: row {i} question")
        out.append(
            {
                "id": r.get("id"),
                "question": q["stem"],
                "choices": {
                    "text": [c["text"] for c in q["choices"]],
                    "label": [c["label"] for c in q["choices"]],
                },
                "answerKey": r["answerKey"],
            }
        )
    return out


def read_boolq(path: Path) -> list[dict]:
    """SuperGLUE BoolQ jsonl; its label may be a string ("true"/"false"), a bool or 0/1."""
    out = []
    for i, r in enumerate(_jsonl(path, ("question", "passage", "label")), 1):
        label = {"true": 1, "false": 0, True: 1, False: 0}.get(r["label"])  # True == 1, False == 0 too
        if label is None:
            raise DataError(f"{path}:{i}: label {r['label']!r} is not true/false — the file is malformed")
        out.append({**r, "label": label})
    return out


_OBQA_CHOICE = re.compile(r"(?:^| )\(([A-D])\) ")


def read_openbookqa(path: Path) -> list[dict]:
    """OpenBookQA release TSV: ID, Question Stem, Choices "(A) … (B) … (C) … (D) …", …, Answer Key."""
    lines = _text(path).splitlines()
    reader = csv.reader(lines, delimiter="\t", quoting=csv.QUOTE_NONE)
    header = next(reader, None)
    need = ("ID", "Question Stem", "Choices", "Answer Key")
    if header is None or any(h not in header for h in need):
        raise DataError(f"{path}: header must hold {', '.join(need)} — is it the OpenBookQA release TSV?")
    col = {h: header.index(h) for h in need}
    out = []
    for i, r in enumerate(reader, 2):
        if len(r) != len(header):
            raise DataError(f"{path}:{i}: {len(r)} columns, header has {len(header)} — the file is malformed")
        parts = _OBQA_CHOICE.split(r[col["Choices"]])
        if parts[0] != "" or len(parts) < 5:
            raise DataError(f"{path}:{i}: choices are not '(A) … (B) …' — the file is malformed")
        out.append(
            {
                "id": r[col["ID"]],
                "question_stem": r[col["Question Stem"]],
                "choices": {"text": parts[2::2], "label": parts[1::2]},
                "answerKey": r[col["Answer Key"]],
            }
        )
    if not out:
        raise DataError(f"{path} holds no rows — is it the right file?")
    return out


def read_winogrande(path: Path) -> list[dict]:
    """WinoGrande dev: the official `dev.jsonl` ({qID, sentence, option1, option2, answer}), or the key-renamed
    `dev.json` array ({id, …, correct_option}); a `dev-labels.lst` beside it wins over either's answer."""
    if path.suffix == ".json":
        try:
            rows = json.loads(_text(path))
        except json.JSONDecodeError as e:
            raise DataError(
                f"{path}: not valid JSON ({e.msg}, line {e.lineno}) — the file is malformed"
            ) from None
        if not isinstance(rows, list) or not rows:
            raise DataError(f"{path}: expected a non-empty JSON array — is it the right file?")
    else:
        rows = _jsonl(path, ())
    out = []
    for i, r in enumerate(rows, 1):
        _require(r, ("sentence", "option1", "option2"), f"{path}: item {i}")
        if "_" not in r["sentence"]:
            raise DataError(f"{path}: item {i} sentence has no '_' blank — the file is malformed")
        out.append({**r, "answer": str(r.get("answer", r.get("correct_option", "")))})
    labels_file = path.with_name(path.stem + "-labels.lst")
    if labels_file.is_file():
        for r, y in zip(out, _labels(labels_file, len(out), {"1", "2"})):
            r["answer"] = y
    bad = next((i for i, r in enumerate(out, 1) if r["answer"] not in ("1", "2")), None)
    if bad is not None:
        raise DataError(f"{path}: item {bad} has no answer 1/2 — add {labels_file.name} beside it")
    return out


def read_hellaswag(path: Path) -> list[dict]:
    """HellaSwag: the original jsonl (rowanz / Hub schema), or llama.cpp's 6-line text format (.txt[.bz2])."""
    if path.suffix == ".jsonl":
        return _jsonl(path, ("activity_label", "ctx_a", "ctx_b", "endings", "label"))
    lines = _text(path).split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if len(lines) % 6:
        raise DataError(
            f"{path}: {len(lines)} lines is not a multiple of 6 — is it llama.cpp's hellaswag text?"
        )
    out = []
    for k in range(0, len(lines), 6):
        head, label, *endings = lines[k : k + 6]
        if label not in ("0", "1", "2", "3") or ": " not in head:
            raise DataError(
                f"{path}:{k + 1}: not '<activity>: <context>' then a 0-3 label — the file is malformed"
            )
        out.append({**_split_hellaswag_context(head), "endings": endings, "label": label})
    return out


def _split_hellaswag_context(head: str) -> dict:
    """Undo llama.cpp's `activity_label: ctx` so the harness's `ctx_a + " " + ctx_b.capitalize()` applies.

    The text format lost where ctx_a ends. In ActivityNet items ctx_b is the lower-case fragment after the
    last sentence ("... on a roof. he"); WikiHow items have no ctx_b. On the 1,000 items that also exist in the
    original format this gives lm-eval's query every time.
    """
    activity, ctx = head.split(": ", 1)
    cut = ctx.rfind(". ")
    ctx_a, ctx_b = ("", ctx) if cut < 0 else (ctx[: cut + 1], ctx[cut + 2 :])
    if ctx_b[:1].islower():
        return {"activity_label": activity, "ctx_a": ctx_a, "ctx_b": ctx_b}
    return {"activity_label": activity, "ctx_a": ctx, "ctx_b": ""}


def read_lambada(path: Path) -> list[dict]:
    """OpenAI's LAMBADA test jsonl: {text}, the last word is the target."""
    return _jsonl(path, ("text",))


def read_wikitext(path: Path) -> list[dict]:
    """A raw WikiText file (`wiki.test.raw`) cut into pages as EleutherAI/wikitext_document_level does.

    Its loader starts a page at each top-level ` = Title = ` line and keeps the page text verbatim (heading
    and blank lines included); on the original test file this gives the 62 pages lm-eval scores.
    """
    data = _text(path).replace("\r\n", "\n").split("\n")
    pages, lines = [], []
    for line in data:
        heading = line.replace("= = =", "===").replace("= =", "==").strip()
        if heading.startswith("= ") and heading.strip().endswith(" ="):
            page = "\n".join(lines)
            if page.strip():
                pages.append({"page": page})
            lines = []
        lines.append(line)
    pages.append({"page": "\n".join(lines)})
    if len(pages) < 2:
        raise DataError(f"{path}: no ' = Title = ' headings — is it a raw WikiText file?")
    return pages
