"""The batched scorer against brute force, perplexity against hand computation, the CLI end to end."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

from dyt_llama import DyTLlamaConfig, DyTLlamaForCausalLM
from dyt_llama.eval import Scorer, compat, run_tasks, token_perplexity, wikitext_perplexity
from dyt_llama.eval.cli import main
from dyt_llama.eval.tasks import get_task, load_docs, resolve_source
from dyt_llama.tokenizer import train_sentencepiece_bpe

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
SMALL = dict(
    hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2
)


def small_tokenizer(out: Path):
    """The project's tokenizer recipe (SentencePiece BPE, no BOS added), small."""
    return train_sentencepiece_bpe(DATA / "tinyshakespeare" / "input.txt", 512, out, max_sentences=4000)


def with_bos(tokenizer, out: Path):
    """The same vocabulary, adding BOS like LLaMA's tokenizer: exercises HFLM's BOS handling."""
    tokenizer.save_pretrained(out)
    return AutoTokenizer.from_pretrained(out, add_bos_token=True)


@pytest.fixture(scope="session")
def tokenizer(tmp_path_factory):
    return small_tokenizer(tmp_path_factory.mktemp("spm"))


@pytest.fixture(scope="session")
def bos_tokenizer(tokenizer, tmp_path_factory):
    return with_bos(tokenizer, tmp_path_factory.mktemp("spm-bos"))


def make_model(kind: str, vocab: int, max_len: int = 128, seed: int = 0):
    torch.manual_seed(seed)
    if kind.startswith("llama"):
        impl = "eager" if kind == "llama-eager" else "sdpa"
        cfg = LlamaConfig(
            vocab_size=vocab, max_position_embeddings=max_len, attn_implementation=impl, **SMALL
        )
        return LlamaForCausalLM(cfg).eval()
    norm = kind.removeprefix("dyt-")
    cfg = DyTLlamaConfig(vocab_size=vocab, max_position_embeddings=max_len, norm_type=norm, **SMALL)
    model = DyTLlamaForCausalLM(cfg).eval()
    with torch.no_grad():  # trained-looking norm parameters, not the init values
        for name, p in model.named_parameters():
            if "norm" in name or "embed_scale" in name:
                p.mul_(1 + 0.3 * torch.rand_like(p))
    return model


def brute_force(model, tokenizer, requests, max_length):
    """One forward per request, full logits, HFLM's tokenization written out naively."""
    out = []
    prefix = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    for context, continuation in requests:
        if context == "":
            cont = tokenizer.encode(continuation, add_special_tokens=False)
            ctx = [prefix] if cont[0] != prefix else cont[:1]
            cont = cont if cont[0] != prefix else cont[1:]
        else:
            n = len(context) - len(context.rstrip())
            if n:
                context, continuation = context[:-n], context[-n:] + continuation
            ctx = tokenizer.encode(context)
            cont = tokenizer.encode(context + continuation)[len(ctx) :]
        inp = (ctx + cont)[-(max_length + 1) :][:-1]
        with torch.no_grad():
            logp = torch.log_softmax(model(torch.tensor([inp])).logits[0].float(), -1)[-len(cont) :]
        target = torch.tensor(cont)
        out.append(
            (
                float(logp[torch.arange(len(cont)), target].double().sum()),
                bool((logp.argmax(-1) == target).all()),
            )
        )
    return out


def task_requests(
    names=("hellaswag", "piqa", "arc_challenge", "winogrande", "boolq", "openbookqa", "lambada_openai"),
):
    groups = []
    for name in names:
        task = get_task(name)
        groups += [task.build(d).requests for d in load_docs(task, resolve_source(task, DATA), limit=3)]
    # the edges: a trailing space, a tokenization that merges across the boundary, no context, truncation
    groups += [
        [("The cat sat on the ", "mat."), ("The cat sat on the ", "hat.")],
        [("Hel", "lo there"), ("Hel", "p me")],
        [("", " Hello world"), ("", "Goodbye")],
        [(" ".join(["word"] * 200), " end"), (" ".join(["word"] * 200), " stop here now")],
    ]
    return groups


@pytest.mark.parametrize("kind", ["llama", "llama-eager", "dyt-dyt", "dyt-rmsnorm"])
@pytest.mark.parametrize("batch_size", [1, 7, 64])
def test_batched_scorer_equals_brute_force(tokenizer, kind, batch_size):
    model = make_model(kind, len(tokenizer))
    groups = task_requests()
    scorer = Scorer(model, tokenizer, batch_size=batch_size, progress=False)
    got = scorer.loglikelihood(groups)
    want = brute_force(model, tokenizer, [r for g in groups for r in g], scorer.max_length)
    flat = [x for g in got for x in g]
    assert len(flat) == len(want)
    for (ll, greedy), (ll_ref, greedy_ref) in zip(flat, want):
        assert ll == pytest.approx(ll_ref, abs=1e-4)
        assert greedy == greedy_ref


def test_unshared_and_full_logits_paths_agree(tokenizer):
    """Without prefix sharing (flash attention) and for a model without logits_to_keep: same numbers."""

    class NoKeep(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner, self.config = inner, inner.config

        def forward(self, input_ids, attention_mask=None, position_ids=None, use_cache=None):
            return self.inner(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids)

    model = make_model("llama", len(tokenizer))
    groups = task_requests(("hellaswag", "winogrande"))
    ref = Scorer(model, tokenizer, batch_size=8, progress=False).loglikelihood(groups)
    unshared = Scorer(model, tokenizer, batch_size=8, progress=False)
    unshared.share_prefix = False
    no_keep = Scorer(NoKeep(model), tokenizer, batch_size=8, progress=False)
    for other in (unshared.loglikelihood(groups), no_keep.loglikelihood(groups)):
        for a, b in zip([x for g in ref for x in g], [x for g in other for x in g]):
            assert a[0] == pytest.approx(b[0], abs=1e-4) and a[1] == b[1]
    assert no_keep._logits_to_keep is False


def test_bos_tokenizer_requests_and_rolling(tokenizer, bos_tokenizer):
    model = make_model("llama", len(tokenizer))
    scorer = Scorer(model, bos_tokenizer, batch_size=5, progress=False)
    groups = task_requests(("piqa", "lambada_openai"))
    got = [x for g in scorer.loglikelihood(groups) for x in g]
    want = brute_force(model, bos_tokenizer, [r for g in groups for r in g], scorer.max_length)
    assert [g[0] for g in got] == pytest.approx([w[0] for w in want], abs=1e-4)
    # a text that already starts with the BOS string gets no second BOS, as in HFLM
    assert scorer.encode(["<s> hi", " hi"]) == [
        bos_tokenizer.encode("<s> hi", add_special_tokens=False),
        bos_tokenizer.encode(" hi"),
    ]


def _manual_rolling(model, token_list, prefix, max_len):
    total = 0.0
    for ctx, cont in map(
        compat.make_disjoint_window, compat.get_rolling_token_windows(token_list, prefix, max_len, 1)
    ):
        inp = (ctx + cont)[-(max_len + 1) :][:-1]
        with torch.no_grad():
            logp = torch.log_softmax(model(torch.tensor([inp])).logits[0], -1)[-len(cont) :]
        total += float(logp[torch.arange(len(cont)), torch.tensor(cont)].sum())
    return total


@pytest.mark.parametrize("bos", [False, True])
def test_wikitext_perplexity_is_lm_evals_rolling_computation(tokenizer, bos_tokenizer, bos):
    tok = bos_tokenizer if bos else tokenizer
    model = make_model("dyt-dyt", len(tok), max_len=32)
    pages = [
        p["page"][:1500]
        for p in load_docs(get_task("wikitext"), resolve_source(get_task("wikitext"), DATA), 3)
    ]
    got = wikitext_perplexity(model, tok, pages, batch_size=6)
    lls = [
        _manual_rolling(model, tok.encode(compat.wikitext_detokenizer(p)), tok.bos_token_id, 32)
        for p in pages
    ]
    words = sum(compat.count_words(p) for p in pages)
    nbytes = sum(len(p.encode()) for p in pages)
    assert got["per_document"] == pytest.approx(lls, rel=1e-6)
    assert got["word_perplexity"] == pytest.approx(math.exp(-sum(lls) / words), rel=1e-6)
    assert got["byte_perplexity"] == pytest.approx(math.exp(-sum(lls) / nbytes), rel=1e-6)
    assert got["bits_per_byte"] == pytest.approx(-sum(lls) / nbytes / math.log(2), rel=1e-6)
    assert got["tokens"] == sum(len(tok.encode(compat.wikitext_detokenizer(p))) for p in pages)


@pytest.mark.parametrize("stride", [None, 16, 40])
def test_token_perplexity_matches_hand_computation(stride):
    model = make_model("llama", 200, max_len=40)
    ids = torch.randint(0, 200, (333,), generator=torch.Generator().manual_seed(3))
    got = token_perplexity(model, ids, max_length=40, stride=stride, batch_size=4)
    # Hugging Face's perplexity recipe: windows of 40 every `stride`, labels only on the new tokens
    nll, count, prev_end = 0.0, 0, 0
    for begin in range(0, len(ids), stride or 40):
        end = min(begin + 40, len(ids))
        x = ids[begin:end][None]
        labels = x.clone()
        labels[:, : max(0, prev_end - begin)] = -100
        with torch.no_grad():
            loss = model(x, labels=labels).loss
        n = int((labels[:, 1:] != -100).sum())
        nll, count, prev_end = nll + float(loss) * n, count + n, end
        if end == len(ids):
            break
    assert got["tokens"] == count == (332 if stride in (16,) else 333 - math.ceil(333 / 40))  # 40: disjoint
    assert got["loss"] == pytest.approx(nll / count, rel=1e-5)
    assert got["perplexity"] == pytest.approx(math.exp(nll / count), rel=1e-5)


def test_token_perplexity_rejects_bad_input():
    model = make_model("llama", 50)
    with pytest.raises(ValueError, match="1-D"):
        token_perplexity(model, [[1, 2, 3]], 8)
    with pytest.raises(ValueError, match="stride"):
        token_perplexity(model, list(range(20)), 8, stride=9)


def test_run_tasks_every_task(tokenizer):
    model = make_model("dyt-dyt", len(tokenizer))
    names = [
        "wikitext",
        "hellaswag",
        "piqa",
        "arc_easy",
        "arc_challenge",
        "winogrande",
        "boolq",
        "openbookqa",
        "lambada_openai",
    ]
    res = run_tasks(
        model, tokenizer, names, limit=2, batch_size=16, progress=False, bootstrap_iters=100, log_samples=True
    )
    assert list(res) == names
    for name in names:
        r = res[name]
        assert r["n"] == 2 and Path(r["source"]).is_file() and len(r["samples"]) == 2
        for metric in get_task(name).metrics:
            assert math.isfinite(r[metric]) and f"{metric}_stderr" in r
    assert res["wikitext"]["bits_per_byte_stderr"] is None  # lm-eval: "N/A"
    assert 0 <= res["piqa"]["acc"] <= 1 and res["piqa"]["acc_stderr"] is not None


def test_bootstrap_iters_zero_gives_no_stderr(tokenizer):
    model = make_model("llama", len(tokenizer))
    res = run_tasks(model, tokenizer, ["lambada_openai"], limit=3, progress=False, bootstrap_iters=0)[
        "lambada_openai"
    ]
    assert res["perplexity_stderr"] is None and res["acc_stderr"] is None and math.isfinite(res["perplexity"])


# --- the command line ---


@pytest.fixture(scope="module")
def checkpoints(tokenizer, tmp_path_factory):
    dirs = {}
    for norm in ("dyt", "rmsnorm"):
        d = tmp_path_factory.mktemp(norm)
        make_model(f"dyt-{norm}", len(tokenizer)).save_pretrained(d)
        tokenizer.save_pretrained(d)
        dirs[norm] = d
    return dirs


def test_cli_writes_results_and_compares(checkpoints, tmp_path, capsys):
    outs = {}
    for norm, d in checkpoints.items():
        outs[norm] = tmp_path / f"{norm}.json"
        argv = [
            "--model",
            str(d),
            "--tasks",
            "piqa,lambada_openai",
            "--limit",
            "3",
            "--output",
            str(outs[norm]),
        ]
        assert main([*argv, "--no-progress", "--bootstrap-iters", "100"]) == 0
    table = capsys.readouterr().out
    assert "| piqa" in table and "acc_norm" in table and "perplexity ↓" in table
    record = json.loads(outs["dyt"].read_text())
    assert record["model"]["norm_type"] == "dyt" and set(record["model"]["alpha0"]) == {
        "attn",
        "ffn",
        "final",
    }
    assert record["model"]["parameters"] > 0 and record["versions"]["torch"]
    assert record["settings"]["limit"] == 3 and record["settings"]["batch_size"] == 16
    assert record["results"]["piqa"]["n"] == 3 and "acc_stderr" in record["results"]["piqa"]
    assert main(["--compare", str(outs["dyt"]), str(outs["rmsnorm"])]) == 0
    compare = capsys.readouterr().out
    assert "(dyt)" in compare and "(rmsnorm)" in compare and compare.count("| piqa") == 2


def test_cli_corpus_perplexity(checkpoints, tmp_path, capsys):
    text = tmp_path / "corpus.txt"
    text.write_text((DATA / "tinyshakespeare" / "input.txt").read_text()[:3000])
    out = tmp_path / "c.json"
    argv = [
        "--model",
        str(checkpoints["rmsnorm"]),
        "--corpus",
        str(text),
        "--max-length",
        "32",
        "--stride",
        "16",
    ]
    assert main([*argv, "--output", str(out), "--no-progress"]) == 0
    result = json.loads(out.read_text())["results"]["corpus:corpus.txt"]
    assert result["stride"] == 16 and result["max_length"] == 32 and result["perplexity"] > 1
    assert "loss" in capsys.readouterr().out


def _bad(tmp_path, checkpoints):
    empty = tmp_path / "empty"
    empty.mkdir()
    no_tok = tmp_path / "no_tok"
    no_tok.mkdir()
    (no_tok / "config.json").write_text((checkpoints["dyt"] / "config.json").read_text())
    bad = tmp_path / "valid.jsonl"
    bad.write_text("{not json\n")
    model = str(checkpoints["dyt"])
    return {
        "unknown task": (["--model", model, "--tasks", "piqa,mmlu"], "unknown task mmlu"),
        "missing file": (
            ["--model", model, "--tasks", "piqa", "--task-data", f"piqa={tmp_path}/nope.jsonl"],
            "does not exist",
        ),
        "malformed file": (
            ["--model", model, "--tasks", "piqa", "--task-data", f"piqa={bad}"],
            "not valid JSON",
        ),
        "no model": (["--model", str(empty), "--tasks", "piqa"], "no config.json"),
        "no tokenizer": (["--model", str(no_tok), "--tasks", "piqa"], "has no tokenizer"),
        "missing dir": (["--model", str(tmp_path / "gone"), "--tasks", "piqa"], "does not exist"),
        "limit 0": (["--model", model, "--limit", "0"], "argument --limit: must be positive"),
        "bad compare": (["--compare", str(bad)], "is not JSON"),
        "stray task-data": (
            ["--model", model, "--tasks", "boolq", "--task-data", f"piqa={bad}"],
            "not in --tasks",
        ),
    }


def _exit_code(argv):
    try:
        return main(argv)
    except SystemExit as e:  # argparse-level errors exit from parse_args
        return e.code


@pytest.mark.parametrize(
    "case",
    [
        "unknown task",
        "missing file",
        "malformed file",
        "no model",
        "no tokenizer",
        "missing dir",
        "limit 0",
        "bad compare",
        "stray task-data",
    ],
)
def test_cli_bad_input_is_one_line_and_exit_2(checkpoints, tmp_path, capsys, case):
    argv, message = _bad(tmp_path, checkpoints)[case]
    assert _exit_code([*argv, "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and message in err, err


@pytest.mark.slow
def test_evaluate_lm_script_exits_2_with_one_line(tmp_path):
    """The thin front end, in a fresh interpreter: the exit status and one line on stderr."""
    (tmp_path / "m").mkdir()
    proc = subprocess.run(
        [sys.executable, str(REPO / "evaluate_lm.py"), "--model", str(tmp_path / "m"), "--tasks", "piqa"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()] and "no config.json" in proc.stderr
