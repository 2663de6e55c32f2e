"""Layer removal, Block Influence, angular distance and the ablation CLI, on tiny random models (CPU)."""

import copy
import json
import math

import pytest
import torch
from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from dyt_llama import DyTLlamaConfig, DyTLlamaForCausalLM
from dyt_llama.ablation import (
    Evaluator,
    best_blocks,
    calibration_blocks,
    decoder_layers,
    drop_last,
    layer_similarity,
    lowest_bi,
    remove_layers,
    run_protocols,
    save_pruned,
    without_layers,
)
from dyt_llama.eval.cli import main
from dyt_llama.eval.perplexity import token_perplexity

SHAPE = dict(
    vocab_size=128,
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=4,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=64,
)


def make(kind="dyt", seed=0, **kw):
    torch.manual_seed(seed)
    cfg = {**SHAPE, **kw}
    if kind == "llama":
        model = LlamaForCausalLM(LlamaConfig(**cfg))
    else:
        model = DyTLlamaForCausalLM(DyTLlamaConfig(norm_type=kind, **cfg))
    with torch.no_grad():  # larger weights than the 0.02 init, so that every layer changes the stream visibly
        for name, p in model.named_parameters():
            if p.ndim == 2 and "embed" not in name:
                p.mul_(4.0)
    return model.eval()


def ids(batch=2, length=12, seed=1):
    return torch.randint(3, 128, (batch, length), generator=torch.Generator().manual_seed(seed))


def logits(model, x):
    with torch.no_grad():
        return model(x).logits


@pytest.mark.parametrize("kind", ["dyt", "rmsnorm", "llama"])
def test_removal_equals_model_built_at_smaller_depth(kind):
    full = make(kind)
    x = ids()
    removed, keep = [1, 3], [0, 2]
    small = make(kind, seed=1, num_hidden_layers=2)
    # the small model gets the full model's weights, its layer j being the full model's layer keep[j]
    state = {}
    for key, value in full.state_dict().items():
        if key.startswith("model.layers."):
            i, rest = key.removeprefix("model.layers.").split(".", 1)
            if int(i) in keep:
                state[f"model.layers.{keep.index(int(i))}.{rest}"] = value
        else:
            state[key] = value
    small.load_state_dict(state, strict=True)
    remove_layers(full, removed)
    assert torch.equal(logits(full, x), logits(small, x))


def test_renumbering_config_and_kv_cache_generation():
    model = make("dyt")
    remove_layers(model, [1])
    assert [layer.self_attn.layer_idx for layer in decoder_layers(model)] == [0, 1, 2]
    assert model.config.num_hidden_layers == 3 and model.config.ablation_removed_layers == [1]
    remove_layers(model, [2])  # the third layer now is the original layer 3
    assert model.config.ablation_removed_layers == [1, 3]
    assert [layer.self_attn.layer_idx for layer in decoder_layers(model)] == [0, 1]
    x = ids(batch=1, length=6)
    kw = dict(max_new_tokens=8, do_sample=False, pad_token_id=0)
    with torch.no_grad():
        out = model(x, use_cache=True)
        assert len(out.cache.layers) == 2
        cached = model.generate(x, use_cache=True, **kw)
        uncached = model.generate(x, use_cache=False, **kw)
    assert torch.equal(cached, uncached)


def test_layer_types_of_sliding_window_models():
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    cfg = Qwen2Config(**SHAPE, use_sliding_window=True, sliding_window=4, max_window_layers=2)
    model = Qwen2ForCausalLM(cfg).eval()
    assert cfg.layer_types == ["full_attention"] * 2 + ["sliding_attention"] * 2
    remove_layers(model, [0, 3])
    assert model.config.layer_types == ["full_attention", "sliding_attention"]
    assert [layer.self_attn.layer_idx for layer in model.model.layers] == [0, 1]
    x = ids(batch=1, length=7)
    kw = dict(max_new_tokens=8, do_sample=False, pad_token_id=0)
    with torch.no_grad():
        assert torch.equal(model.generate(x, use_cache=True, **kw), model.generate(x, use_cache=False, **kw))


def test_without_layers_restores_the_exact_model():
    model = make("dyt")
    x = ids()
    before = logits(model, x)
    copy_removed = remove_layers(copy.deepcopy(model), [2])
    with without_layers(model, [2]) as pruned:
        assert pruned.config.num_hidden_layers == 3
        assert torch.equal(logits(pruned, x), logits(copy_removed, x))
    assert torch.equal(logits(model, x), before)
    assert model.config.num_hidden_layers == 4 and not hasattr(model.config, "ablation_removed_layers")
    assert [layer.self_attn.layer_idx for layer in decoder_layers(model)] == [0, 1, 2, 3]
    with pytest.raises(RuntimeError), without_layers(model, [0]):  # restored after an error too
        raise RuntimeError
    assert torch.equal(logits(model, x), before)


@pytest.mark.parametrize(
    "indices, message", [([4], "out of range"), ([1, 1], "more than once"), ([0, 1, 2, 3], "removes all 4")]
)
def test_bad_indices(indices, message):
    with pytest.raises(ValueError, match=message):
        remove_layers(make("dyt"), indices)


@pytest.mark.parametrize("kind", ["dyt", "llama"])
def test_pruned_checkpoint_reloads_at_the_new_depth(kind, tmp_path):
    model = remove_layers(make(kind), [1, 2])
    save_pruned(model, None, tmp_path / "pruned")
    reloaded, info = AutoModelForCausalLM.from_pretrained(tmp_path / "pruned", output_loading_info=True)
    assert not any(info[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys")), info
    assert reloaded.config.num_hidden_layers == 2 and len(decoder_layers(reloaded)) == 2
    x = ids()
    assert torch.equal(logits(reloaded.eval(), x), logits(model, x))
    # The check above is what catches the silent failure: a config left at the old depth reloads with
    # randomly initialised layers 2 and 3, which from_pretrained reports only as missing keys.
    cfg = json.loads((tmp_path / "pruned" / "config.json").read_text())
    (tmp_path / "pruned" / "config.json").write_text(json.dumps({**cfg, "num_hidden_layers": 4}))
    _, info = AutoModelForCausalLM.from_pretrained(tmp_path / "pruned", output_loading_info=True)
    assert any(k.startswith("model.layers.3.") for k in info["missing_keys"])
    with pytest.raises(FileExistsError):
        save_pruned(model, None, tmp_path / "pruned")


def brute_force_states(model, x):
    """h_0..h_L by running truncated copies of the model with the final norm taken out."""
    states = []
    for k in range(model.config.num_hidden_layers + 1):
        m = copy.deepcopy(model)
        m.model.norm = torch.nn.Identity()
        m.config.num_hidden_layers = k  # LlamaModel runs layers[:num_hidden_layers]
        with torch.no_grad():
            states.append(m.model(input_ids=x, use_cache=False).last_hidden_state.double())
    return states


def test_block_influence_and_angular_distance_against_brute_force():
    model = make("dyt")
    x = ids(batch=5, length=10)
    got = layer_similarity(model, x, batch_size=2)  # several batches: the running sums must add up
    h = brute_force_states(model, x)
    L = len(h) - 1

    def cos(a, b):
        return float(a @ b / (a.norm() * b.norm()))

    bi = [
        1 - sum(cos(h[i][s, t], h[i + 1][s, t]) for s in range(5) for t in range(10)) / 50 for i in range(L)
    ]
    assert got["block_influence"] == pytest.approx(bi, abs=1e-5)
    assert got["tokens"] == 50 and got["sequences"] == 5
    D = got["angular_distance"]
    for n in range(1, L + 1):
        for l in range(L + 1 - n):  # noqa: E741
            expect = (
                sum(math.acos(max(-1, min(1, cos(h[l][s, -1], h[l + n][s, -1])))) / math.pi for s in range(5))
                / 5
            )
            assert D[n - 1, l] == pytest.approx(expect, abs=1e-5)
        assert all(math.isnan(v) for v in D[n - 1, L + 1 - n :])
    assert min(bi) > 1e-3  # the layers do something, so the comparison is not of zeros


def test_protocols_pick_and_measure_the_right_removals():
    model = make("dyt")
    stream = ids(batch=1, length=200, seed=3)[0].tolist()
    ev = Evaluator(model, None, stream, max_length=40, batch_size=4)
    blocks = calibration_blocks(stream, 40)
    assert blocks.shape == (5, 40)
    out = run_protocols(ev, blocks, ["sweep", "bi", "angular"], batch_size=4)
    L = 4
    assert [e["layer"] for e in out["sweep"]] == list(range(L))
    # a swap-and-restore removal measures what a real one does
    ref = token_perplexity(remove_layers(copy.deepcopy(model), [2]), stream, 40, None, 4)["perplexity"]
    assert out["sweep"][2]["perplexity"] == pytest.approx(ref, rel=1e-6)
    base = token_perplexity(model, stream, 40, None, 4)["perplexity"]
    assert out["baseline"]["perplexity"] == pytest.approx(base, rel=1e-6)
    assert out["sweep"][2]["delta_perplexity"] == pytest.approx(ref - base, rel=1e-6)
    sim = layer_similarity(model, blocks, 4)
    assert [e["removed"] for e in out["bi_removal"]] == [
        lowest_bi(sim["block_influence"], n) for n in range(1, L)
    ]
    assert [(e["start"], e["removed"]) for e in out["angular_removal"]] == [
        (b["start"], b["removed"]) for b in best_blocks(sim["angular_distance"])
    ]
    assert (
        [e["removed"] for e in out["drop_last"]]
        == [drop_last(L, n) for n in range(1, L)]
        == [[2], [1, 2], [0, 1, 2]]
    )
    keys = {
        tuple(e["removed"]) for k in ("sweep", "bi_removal", "angular_removal", "drop_last") for e in out[k]
    }
    assert out["evaluations"] == len(keys | {()})  # each distinct removal evaluated once
    with pytest.raises(ValueError, match="empty"):
        calibration_blocks([5], 40)


def test_zero_shot_accuracies_beside_perplexity(shared_data):
    model = make("dyt", max_position_embeddings=512)
    tok = char_tokenizer()
    stream = ids(batch=1, length=120, seed=3)[0].tolist()
    kwargs = dict(data_dir=shared_data, limit=6, bootstrap_iters=0)
    ev = Evaluator(model, tok, stream, max_length=40, batch_size=8, tasks=["arc_easy"], task_kwargs=kwargs)
    base, one = ev(()), ev.measured([1], ev(()))
    assert base["tasks"]["arc_easy"].keys() >= {"acc", "acc_norm"}
    from dyt_llama.eval import run_tasks

    with without_layers(model, [1]):
        ref = run_tasks(model, tok, ["arc_easy"], progress=False, batch_size=8, **kwargs)["arc_easy"]
    assert one["tasks"]["arc_easy"]["acc_norm"] == ref["acc_norm"]
    delta = one["delta_tasks"]["arc_easy"]["acc"]
    assert delta == pytest.approx(ref["acc"] - base["tasks"]["arc_easy"]["acc"])


# --- the command line ---


def char_tokenizer():
    """A character-level fast tokenizer: ids 3..127 are printable ASCII, so any tiny model can read text."""
    from tokenizers import Tokenizer, models

    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, **{chr(c): c for c in range(32, 127)}}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny") / "tiny-dyt"
    make("dyt").save_pretrained(path)
    char_tokenizer().save_pretrained(path)
    text = path.parent / "calib.txt"
    text.write_text("The quick brown fox jumps over the lazy dog. " * 40)
    (path.parent / "empty.txt").write_text("")
    return path


def run_cli(capsys, *argv):
    rc = main([*map(str, argv), "--device", "cpu", "--no-progress"])
    return rc, capsys.readouterr()


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--remove-layers", "4"], "layer 4 is out of range — the model has layers 0..3"),
        (["--remove-layers", "1,1"], "lists layer 1 more than once"),
        (["--remove-layers", "0,1,2,3"], "removes all 4 layers"),
        (["--ablation", "sweep", "--ablation-data", "EMPTY"], "is empty"),
        (["--save-pruned", "x"], "--save-pruned needs --remove-layers"),
    ],
)
def test_cli_bad_input_is_one_line(model_dir, capsys, flags, message):
    flags = [str(model_dir.parent / "empty.txt") if f == "EMPTY" else f for f in flags]
    rc, out = run_cli(capsys, "--model", model_dir, *flags)
    last = out.err.strip().splitlines()[-1]  # (transformers' load progress bar may come before it)
    assert rc == 2 and last.startswith("error: ") and message in last
    assert out.err.count("error") == 1 and "Traceback" not in out.err


def test_cli_bad_index_syntax(model_dir, capsys):
    with pytest.raises(SystemExit) as e:
        run_cli(capsys, "--model", model_dir, "--remove-layers", "1,x")
    assert e.value.code == 2 and "not a comma-separated list" in capsys.readouterr().err


def test_cli_ablation_outputs_and_comparison(model_dir, capsys, tmp_path):
    calib = model_dir.parent / "calib.txt"
    common = ["--model", model_dir, "--ablation-data", calib, "--calib-tokens", 400, "--max-length", 32]
    rc, out = run_cli(capsys, *common, "--ablation", "all", "--ablation-out", tmp_path / "a")
    assert rc == 0, out.err
    record = json.loads((tmp_path / "a" / "ablation.json").read_text())
    abl = record["ablation"]
    assert abl["num_layers"] == 4 and len(abl["sweep"]) == 4 and len(abl["block_influence"]) == 4
    assert record["settings"]["calibration_tokens"] == 400
    csv_text = (tmp_path / "a" / "ablation.csv").read_text()
    for protocol in ("baseline", "sweep", "block_influence", "angular_distance", "bi_removal", "drop_last"):
        assert f",{protocol}," in csv_text
    pngs = ["sweep_delta_ppl.png", "block_influence.png", "angular_distance.png", "ppl_vs_removed.png"]
    assert all((tmp_path / "a" / p).stat().st_size > 0 for p in pngs)
    json_a = tmp_path / "a" / "ablation.json"
    rc, out = run_cli(capsys, "--compare-ablation", json_a, json_a, "--ablation-out", tmp_path / "cmp")
    assert rc == 0 and all((tmp_path / "cmp" / p).is_file() for p in pngs)
    assert out.out.count("baseline perplexity") == 2


def test_cli_remove_and_save_pruned(model_dir, capsys, tmp_path):
    calib = model_dir.parent / "calib.txt"
    rc, out = run_cli(
        capsys,
        *("--model", model_dir, "--remove-layers", "0,2", "--save-pruned", tmp_path / "p"),
        *("--corpus", calib, "--max-length", 32, "--output", tmp_path / "r.json"),
    )
    assert rc == 0, out.err
    record = json.loads((tmp_path / "r.json").read_text())
    assert record["model"]["removed_layers"] == [0, 2] and record["model"]["num_hidden_layers"] == 2
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "p")
    assert reloaded.config.num_hidden_layers == 2 and reloaded.config.ablation_removed_layers == [0, 2]
    # the pruned checkpoint scores the corpus exactly as the in-memory pruned model did
    rc, out = run_cli(
        capsys,
        "--model",
        tmp_path / "p",
        "--corpus",
        calib,
        "--max-length",
        32,
        "--output",
        tmp_path / "s.json",
    )
    ppl = [
        json.loads((tmp_path / f).read_text())["results"]["corpus:calib.txt"]["perplexity"]
        for f in ("r.json", "s.json")
    ]
    assert ppl[0] == pytest.approx(ppl[1], rel=1e-6)
