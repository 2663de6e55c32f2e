"""Tasks without a model: prompts from hand-written documents, the local readers, lm-eval's helpers and specs."""

import bz2
import importlib.util
import json
import math
import random
from pathlib import Path

import pytest

from dyt_llama.eval import compat, data
from dyt_llama.eval.tasks import TASKS, apply_limit, get_task, load_docs, resolve_source

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
LM_EVAL = pytest.importorskip("lm_eval")
LM_EVAL_TASKS = Path(LM_EVAL.__file__).parent / "tasks"


def _module(rel: str):
    spec = importlib.util.spec_from_file_location(rel.replace("/", "_"), LM_EVAL_TASKS / rel)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# --- prompts, choices and gold from hand-written documents (Hub schema) ---

HAND_WRITTEN = {
    "hellaswag": (
        {
            "activity_label": "Roof shingle removal",
            "ctx_a": "A man is sitting on a roof.",
            "ctx_b": "he",
            "endings": [
                "is using wrap.",
                "is ripping tiles  off.",
                "[title] Holds a cube.",
                "starts pulling up roofing.",
            ],
            "label": "3",
        },
        [
            ("Roof shingle removal: A man is sitting on a roof. He", " is using wrap."),
            ("Roof shingle removal: A man is sitting on a roof. He", " is ripping tiles off."),
            # lm-eval strips before removing a leading tag, so this choice keeps a space: "  Holds"
            ("Roof shingle removal: A man is sitting on a roof. He", "  Holds a cube."),
            ("Roof shingle removal: A man is sitting on a roof. He", " starts pulling up roofing."),
        ],
        3,
    ),
    "piqa": (
        {"goal": "How do I open a jar?", "sol1": "Twist the lid.", "sol2": "Eat the lid.", "label": 0},
        [
            ("Question: How do I open a jar?\nAnswer:", " Twist the lid."),
            ("Question: How do I open a jar?\nAnswer:", " Eat the lid."),
        ],
        0,
    ),
    "arc_easy": (
        {
            "question": "Which is a gas?",
            "choices": {"text": ["ice", "steam", "rock"], "label": ["1", "2", "3"]},
            "answerKey": "2",
        },
        [
            ("Question: Which is a gas?\nAnswer:", " ice"),
            ("Question: Which is a gas?\nAnswer:", " steam"),
            ("Question: Which is a gas?\nAnswer:", " rock"),
        ],
        1,
    ),
    "winogrande": (
        {
            "sentence": "Sarah was better than Maria so _ got the easy cases.",
            "option1": "Sarah",
            "option2": "Maria",
            "answer": "2",
        },
        [
            ("Sarah was better than Maria so Sarah", " got the easy cases."),
            ("Sarah was better than Maria so Maria", " got the easy cases."),
        ],
        1,
    ),
    "boolq": (
        {"question": "is the sky blue", "passage": "Sky -- The sky is blue.", "label": 1},
        [
            ("Sky -- The sky is blue.\nQuestion: is the sky blue?\nAnswer:", " no"),
            ("Sky -- The sky is blue.\nQuestion: is the sky blue?\nAnswer:", " yes"),
        ],
        1,
    ),
    "openbookqa": (
        {
            "question_stem": "The sun is",
            "choices": {"text": ["cold", "a star", "wet", "small"], "label": ["A", "B", "C", "D"]},
            "answerKey": "B",
        },
        [
            ("The sun is", " cold"),
            ("The sun is", " a star"),
            ("The sun is", " wet"),
            ("The sun is", " small"),
        ],
        1,
    ),
    "lambada_openai": (
        {"text": "He went to the store .\n\nHe bought milk"},
        [("He went to the store .\n\nHe bought", " milk")],
        None,
    ),
}


@pytest.mark.parametrize("name", list(HAND_WRITTEN))
def test_prompt_and_choices_from_hand_written_example(name):
    doc, requests, gold = HAND_WRITTEN[name]
    ex = get_task(name).build(doc)
    assert ex.requests == requests
    assert ex.gold == gold


def test_acc_norm_lengths_are_the_choice_strings():
    ex = get_task("piqa").build(HAND_WRITTEN["piqa"][0])
    assert ex.choices == [
        "Twist the lid.",
        "Eat the lid.",
    ]  # no leading delimiter, as lm-eval's doc_to_choice
    wino = get_task("winogrande").build(HAND_WRITTEN["winogrande"][0])
    assert wino.choices == ["Sarah was better than Maria so Sarah", "Sarah was better than Maria so Maria"]


def test_arc_challenge_uses_the_same_prompt():
    doc, requests, gold = HAND_WRITTEN["arc_easy"]
    assert get_task("arc_challenge").build(doc).requests == requests


# --- the local copies, read in their original formats ---


@pytest.mark.parametrize(
    "name,count",
    [
        ("piqa", 1838),
        ("arc_easy", 2376),
        ("arc_challenge", 1172),
        ("winogrande", 1267),
        ("boolq", 3270),
        ("openbookqa", 500),
        ("hellaswag", 1000),
        ("lambada_openai", 5153),
        ("wikitext", 62),
    ],
)
def test_local_copies_read_whole(name, count):
    task = get_task(name)
    docs = load_docs(task, resolve_source(task, DATA))
    assert len(docs) == count
    if task.build:
        examples = [task.build(d) for d in docs]
        assert all(e.gold is None or 0 <= e.gold < len(e.requests) for e in examples)


def test_readers_convert_to_the_hub_schema():
    piqa = data.read_piqa(DATA / "piqa" / "valid.jsonl")
    assert {type(d["label"]) for d in piqa} == {int}
    boolq = data.read_boolq(DATA / "boolq" / "val.jsonl")
    assert sum(d["label"] for d in boolq) == 2033  # "true" -> 1
    obqa = data.read_openbookqa(DATA / "openbookqa" / "test.tsv")
    assert obqa[0]["question_stem"].startswith("A person wants to start saving money")
    assert obqa[0]["choices"] == {
        "text": [
            "make more phone calls",
            "quit eating lunch out",
            "buy less with monopoly money",
            "have lunch with friends",
        ],
        "label": ["A", "B", "C", "D"],
    }
    assert obqa[0]["answerKey"] == "B"
    arc = data.read_arc(DATA / "arc" / "ARC-Easy-Test.jsonl")
    assert isinstance(arc[0]["question"], str) and set(arc[0]["choices"]) == {"text", "label"}
    assert any(d["choices"]["label"][0] == "1" for d in arc)  # numeric labels kept, as on the Hub
    wino = data.read_winogrande(DATA / "winogrande" / "dev.json")
    labels = (DATA / "winogrande" / "dev-labels.lst").read_text().split()
    assert [d["answer"] for d in wino] == labels
    pages = data.read_wikitext(DATA / "wikitext-2-raw" / "wiki.test.raw.canonical")
    assert pages[0]["page"].startswith(" = Robert Boulter = \n")
    assert "".join(p["page"] + "\n" for p in pages)[:-1].strip() == (
        (DATA / "wikitext-2-raw" / "wiki.test.raw.canonical").read_text(encoding="utf-8").strip()
    )


def test_hellaswag_text_format_rebuilds_lmeval_prompts():
    """The llama.cpp file (all 10,042 items) against the original-format subset: queries always agree; an
    ending differs only where lm-eval keeps a space before a stripped leading tag."""
    full = data.read_hellaswag(DATA / "hellaswag" / "hellaswag_val_full.txt.bz2")
    assert len(full) == 10042
    build = get_task("hellaswag").build
    by_endings = {tuple(c.strip() for _, c in build(d).requests): build(d) for d in full}
    subset = [build(d) for d in data.read_hellaswag(DATA / "hellaswag" / "hellaswag_val_subset1000.jsonl")]
    found = [(ex, by_endings.get(tuple(c.strip() for _, c in ex.requests))) for ex in subset]
    assert all(other is not None for _, other in found)
    assert all(ex.requests[0][0] == other.requests[0][0] and ex.gold == other.gold for ex, other in found)
    exact = sum(ex.requests == other.requests for ex, other in found)
    assert exact >= 940, exact  # 941 of 1,000


# --- lm-eval's own helpers and specs ---


def test_compat_copies_equal_lm_eval_helpers():
    from lm_eval import utils
    from lm_eval.api import metrics

    wikitext = _module("wikitext/preprocess_wikitext.py")
    pages = data.read_wikitext(DATA / "wikitext-2-raw" / "wiki.test.raw.canonical")
    for p in pages:
        assert compat.wikitext_detokenizer(p["page"]) == wikitext.wikitext_detokenizer(p)
        assert compat.count_words(p["page"]) == len(__import__("re").split(r"\s+", p["page"]))
    hellaswag = _module("hellaswag/utils.py")
    for line in (DATA / "hellaswag" / "hellaswag_val_subset1000.jsonl").read_text().splitlines()[:300]:
        doc = json.loads(line)
        for text in [doc["ctx"], *doc["endings"]]:
            assert compat.hellaswag_preprocess(text) == hellaswag.preprocess(text)
    rng = random.Random(0)
    for _ in range(200):
        tokens = [rng.randrange(100) for _ in range(rng.randrange(0, 60))]
        max_len = rng.randrange(1, 20)
        ctx = rng.randrange(1, max_len + 1)
        ours = list(
            map(compat.make_disjoint_window, compat.get_rolling_token_windows(tokens, -1, max_len, ctx))
        )
        theirs = list(
            map(utils.make_disjoint_window, utils.get_rolling_token_windows(tokens, -1, max_len, ctx))
        )
        assert ours == theirs
    xs = [rng.gauss(-3, 1) for _ in range(37)]
    assert compat.mean_stderr(xs) == metrics.mean_stderr(xs)
    assert compat.perplexity(xs) == metrics.perplexity(xs)
    pairs = [(x, rng.randrange(1, 9)) for x in xs]
    assert compat.weighted_perplexity(pairs) == metrics.weighted_perplexity(pairs)
    assert compat.bits_per_byte(pairs) == metrics.bits_per_byte(pairs)


def test_bootstrap_stderr_is_lm_evals_draw_for_draw(monkeypatch):
    from lm_eval.api import metrics

    monkeypatch.setenv("DISABLE_MULTIPROC", "1")
    xs = [random.Random(1).gauss(-4, 2) for _ in range(23)]
    xs = [x + 0.01 * i for i, x in enumerate(xs)]
    theirs = metrics.bootstrap_stderr(metrics.perplexity, xs, iters=2000)
    assert compat.bootstrap_stderr_perplexity(xs, iters=2000) == pytest.approx(theirs, rel=1e-9)


@pytest.mark.parametrize("name", list(TASKS))
def test_task_spec_matches_lm_eval_yaml(name):
    from dyt_llama.eval.lmeval import lmeval_yaml

    cfg = lmeval_yaml(name)
    task = TASKS[name]
    assert task.hub == (
        cfg["dataset_path"],
        cfg.get("dataset_name"),
        cfg.get("test_split") or cfg["validation_split"],
    )
    assert task.output_type == cfg["output_type"]
    assert task.metrics == tuple(m["metric"] for m in cfg["metric_list"])


# --- sources: Hub by lm-eval's names, local files, limits ---


@pytest.mark.parametrize("name", list(TASKS))
def test_hub_loading_uses_lm_evals_names(monkeypatch, name):
    """The Hub path, fed the local rows through a real `datasets.Dataset` (Arrow types and all)."""
    import datasets

    task = get_task(name)
    local = load_docs(task, resolve_source(task, DATA), limit=4)
    calls = []

    def fake_load_dataset(path, name=None, split=None, **kw):
        calls.append((path, name, split))
        return datasets.Dataset.from_list(local)

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    docs = load_docs(task, resolve_source(task, None), limit=3)
    assert calls == [task.hub]
    if task.build:
        assert [task.build(d).requests for d in docs] == [task.build(d).requests for d in local[:3]]
    else:
        assert [d["page"] for d in docs] == [d["page"] for d in local[:3]]


def test_hub_offline_is_one_clear_error(monkeypatch):
    import datasets

    def offline(*a, **k):
        raise ConnectionError("Couldn't reach 'Rowan/hellaswag' on the Hub\n(LocalEntryNotFoundError)")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(data.DataError) as e:
        load_docs(get_task("hellaswag"), "hub")
    assert "\n" not in str(e.value) and "Rowan/hellaswag" in str(e.value) and "--data-dir" in str(e.value)


def test_sources_and_limits(tmp_path):
    task = get_task("piqa")
    assert resolve_source(task, None) == "hub"
    assert resolve_source(task, DATA) == DATA / "piqa" / "valid.jsonl"
    assert resolve_source(task, DATA, tmp_path / "x.jsonl") == tmp_path / "x.jsonl"
    with pytest.raises(data.DataError, match="--task-data piqa=FILE"):
        resolve_source(task, tmp_path)
    with pytest.raises(data.DataError, match="not a directory"):
        resolve_source(task, tmp_path / "nope")
    assert apply_limit(10, None) == 10 and apply_limit(10, 3) == 3 and apply_limit(10, 30) == 10
    assert apply_limit(10, 0.25) == 3  # lm-eval rounds a fraction up
    with pytest.raises(ValueError, match="positive"):
        apply_limit(10, 0)
    with pytest.raises(ValueError, match="unknown task"):
        get_task("mmlu")


MALFORMED = [
    ("piqa", "valid.jsonl", '{"goal": "a", "sol1": "b", "sol2": "c"}\n{"goal": oops}\n', "not valid JSON"),
    ("piqa", "valid.jsonl", '{"goal": "a", "sol1": "b", "sol2": "c"}\n', "labels"),  # no labels file
    ("arc_easy", "ARC-Easy-Test.jsonl", '{"id": "x", "answerKey": "A"}\n', "missing field(s) question"),
    ("openbookqa", "test.tsv", "id\tstem\n1\tx\n", "header"),
    (
        "openbookqa",
        "test.tsv",
        "ID\tQuestion Stem\tChoices\tAnswer Key\n1\tx\tA) a B) b\tA\n",
        "choices are not",
    ),
    ("hellaswag", "h.txt.bz2", None, "multiple of 6"),
    (
        "winogrande",
        "dev.json",
        '[{"sentence": "no blank", "option1": "a", "option2": "b", "answer": "1"}]',
        "blank",
    ),
    ("boolq", "val.jsonl", '{"question": "q", "passage": "p", "label": "maybe"}\n', "not true/false"),
    ("lambada_openai", "l.jsonl", "", "holds no rows"),
    ("wikitext", "w.raw", "just text\nno headings\n", "headings"),
    (
        "arc_easy",
        "ARC-Easy-Test.jsonl",
        '{"question": "q", "choices": {"text": ["a"], "label": ["A"]}, "answerKey": "Z"}\n',
        "does not fit arc_easy",
    ),
]


@pytest.mark.parametrize("name,filename,content,message", MALFORMED)
def test_malformed_data_is_one_clear_error(tmp_path, name, filename, content, message):
    from dyt_llama.eval.runner import _build

    path = tmp_path / filename
    if content is None:
        path.write_bytes(bz2.compress(b"Label: ctx\n0\na\nb\nc\n"))
    else:
        path.write_text(content)
    task = get_task(name)
    with pytest.raises(data.DataError) as e:
        docs = load_docs(task, path)
        _build(task, docs, path)
    assert message in str(e.value) and "\n" not in str(e.value) and " — " in str(e.value)


def test_missing_file_is_one_clear_error(tmp_path):
    with pytest.raises(data.DataError, match="does not exist"):
        load_docs(get_task("lambada_openai"), tmp_path / "missing.jsonl")


def test_default_data_dir_is_shared_data():
    assert data.default_data_dir() == DATA


def test_aggregate_acc_norm_divides_by_choice_characters():
    from dyt_llama.eval.runner import aggregate
    from dyt_llama.eval.tasks import Example

    task = get_task("piqa")
    # choice 0 wins on raw log-likelihood, choice 1 per character: acc and acc_norm disagree
    examples = [Example([("q", " a"), ("q", " bbbbbbbbbb")], gold=1, choices=["a", "bbbbbbbbbb"])] * 2
    metrics, samples = aggregate(task, examples, [[(-2.0, None), (-5.0, None)]] * 2)
    assert metrics["acc"] == 0.0 and metrics["acc_norm"] == 1.0
    assert metrics["acc_stderr"] == 0.0 and samples[0] == {
        "loglikelihoods": [-2.0, -5.0],
        "gold": 1,
        "pred": 0,
    }
    lambada = get_task("lambada_openai")
    metrics, _ = aggregate(
        lambada, [Example([("a", " b")])] * 3, [[(-1.0, True)], [(-2.0, False)], [(-3.0, True)]]
    )
    assert metrics["acc"] == pytest.approx(2 / 3) and metrics["perplexity"] == pytest.approx(math.exp(2.0))
