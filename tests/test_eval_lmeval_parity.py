"""Parity with lm-evaluation-harness itself, run in-process on a tiny model and the local data (slow).

lm-eval's HFLM loads our DyT checkpoint by path (pretrained=DIR) and runs its own task YAMLs on the local
files: that is also the "works inside lm-eval" check. Every request string, every per-request
log-likelihood and every metric (with its stderr) must match ours.
"""

import pytest

from dyt_llama.eval import Scorer, compat, run_tasks
from dyt_llama.eval.tasks import TASKS, get_task, load_docs, resolve_source
from tests.test_eval_scoring import DATA, make_model, small_tokenizer, task_requests, with_bos

lm_eval = pytest.importorskip("lm_eval")

pytestmark = pytest.mark.slow
LIMIT = 5
TOL = 1e-4  # per-request log-likelihood, absolute


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    return small_tokenizer(tmp_path_factory.mktemp("spm"))


@pytest.fixture(scope="module")
def dyt_checkpoint(tok, tmp_path_factory):
    path = tmp_path_factory.mktemp("dyt-ckpt")
    make_model("dyt-dyt", len(tok)).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def test_every_task_matches_lm_eval(dyt_checkpoint, tmp_path):
    """lm-eval (HFLM from the checkpoint directory) and ours (our loader) on the same documents: the same
    requests, log-likelihoods and metrics. One test, so parallel workers do not each run lm-eval."""
    from dyt_llama.eval.lmeval import per_request_loglikelihoods, run_lmeval
    from dyt_llama.eval.loading import load_model

    names = list(TASKS)
    theirs = run_lmeval(dyt_checkpoint, names, tmp_path, limit=LIMIT, batch_size=8, bootstrap_iters=1000)
    model, tokenizer = load_model(str(dyt_checkpoint), device="cpu")
    assert type(model).__name__ == "DyTLlamaForCausalLM"
    ours = run_tasks(
        model,
        tokenizer,
        names,
        limit=LIMIT,
        batch_size=8,
        progress=False,
        bootstrap_iters=1000,
        log_samples=True,
    )
    for name in names:
        check_requests(name, theirs["samples"][name])
        their_lls = per_request_loglikelihoods(theirs["samples"][name])
        for mine, ref in zip(ours[name]["samples"], their_lls, strict=True):
            mine = mine.get("loglikelihoods") or [mine["loglikelihood"]]
            assert mine == pytest.approx(ref, abs=TOL, rel=1e-9), name
        for key, value in theirs["results"][name].items():
            if "," not in key:
                continue
            metric = key.split(",")[0]
            if value == "N/A":
                assert ours[name][metric] is None, (name, metric)
            elif metric.endswith("_stderr") or "perplexity" in metric or metric == "bits_per_byte":
                assert ours[name][metric] == pytest.approx(value, rel=1e-6), (name, metric)
            else:
                assert ours[name][metric] == value, (name, metric)  # accuracies: the same decisions


def check_requests(name: str, samples: list[dict]) -> None:
    task = get_task(name)
    docs = load_docs(task, resolve_source(task, DATA), LIMIT)
    samples = sorted(samples, key=lambda s: s["doc_id"])
    assert len(samples) == len(docs) == LIMIT, name
    for doc, sample in zip(docs, samples):
        args = [tuple(a) for a in sample["arguments"]]
        if task.build is None:  # wikitext: the detokenized page is the one request
            assert args == [(compat.wikitext_detokenizer(doc["page"]),)], name
            continue
        ex = task.build(doc)
        assert args == ex.requests, name
        if ex.gold is not None:  # lm-eval logs the gold index, or winogrande's shared continuation
            assert sample["target"] in (ex.gold, ex.requests[ex.gold][1].lstrip()), name


def test_hflm_agrees_on_edge_requests_with_a_bos_tokenizer(tok, tmp_path):
    """HFLM's loglikelihood and loglikelihood_rolling called directly, LLaMA-style BOS tokenizer: trailing
    spaces, a tokenization that merges across the boundary, empty contexts, left truncation, rolling windows."""
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM

    bos_tokenizer = with_bos(tok, tmp_path)
    model = make_model("llama", len(tok), max_len=48)
    hflm = HFLM(pretrained=model, tokenizer=bos_tokenizer, batch_size=4, device="cpu")
    groups = task_requests(("hellaswag", "piqa", "winogrande", "lambada_openai"))
    requests = [r for g in groups for r in g]
    # lm-eval asserts on continuations longer than max_length; keep what it can score
    scorer = Scorer(model, bos_tokenizer, batch_size=6, progress=False)
    keep = [r for r, (_, c) in zip(requests, scorer.encode_requests(requests)) if len(c) <= scorer.max_length]
    assert len(keep) > 20
    instances = [Instance("loglikelihood", {}, r, i) for i, r in enumerate(keep)]
    theirs = hflm.loglikelihood(instances, disable_tqdm=True)
    ours = [x for g in scorer.loglikelihood([[r] for r in keep]) for x in g]
    shared = [x for g in scorer.loglikelihood(groups_of(keep, 3)) for x in g]
    for (a, ga), (b, gb), (c, gc) in zip(theirs, ours, shared):
        assert b == pytest.approx(a, abs=TOL) and c == pytest.approx(a, abs=TOL)
        assert ga == gb == gc
    texts = [
        p["page"][:2000]
        for p in load_docs(get_task("wikitext"), resolve_source(get_task("wikitext"), DATA), 2)
    ]
    rolling = hflm.loglikelihood_rolling(
        [Instance("loglikelihood_rolling", {}, (t,), i) for i, t in enumerate(texts)], True
    )
    assert [ll for ll, _ in scorer.loglikelihood_rolling(texts)] == pytest.approx(rolling, rel=1e-7)


def groups_of(items, n):
    return [items[i : i + n] for i in range(0, len(items), n)]
