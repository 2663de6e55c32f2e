"""Fitting DyT to a trained RMSNorm model (dyt_llama.convert.fit_dyt_to_rmsnorm and `--fit-alpha`)."""

import json
import math

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from dyt_llama import DyT
from dyt_llama.convert import calibration_ids, fit_dyt_site, fit_dyt_to_rmsnorm, llama_to_ours, main
from dyt_llama.train import main as pretrain

TRAIN_ARGS = [
    "--hidden_size", "32", "--intermediate_size", "64", "--num_hidden_layers", "2", "--num_attention_heads", "4",
    "--seq_len", "32", "--tokenizer_vocab_size", "320", "--val_fraction", "0.1",
    "--batch_size", "8", "--lr", "1e-2", "--warmup_steps", "5", "--max_steps", "60", "--eval_every", "60",
    "--eval_batches", "2", "--report_to", "none", "--progress", "false",
]  # fmt: skip


def test_fit_recovers_a_synthetic_site():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2048, 16, generator=g) * torch.linspace(0.2, 3.0, 16)
    weight = torch.rand(16, generator=g) + 0.5
    y = weight * torch.tanh(0.7 * x)
    alpha, w = fit_dyt_site(x, y)
    assert alpha == pytest.approx(0.7, rel=1e-3)
    torch.testing.assert_close(w, weight, rtol=1e-3, atol=1e-3)
    # With the weight given, only alpha is searched; a tiny search budget still finds it on a subsample.
    alpha, w = fit_dyt_site(x, y + 1e-3 * torch.randn(y.shape, generator=g), weight, max_search_elements=4096)
    assert alpha == pytest.approx(0.7, rel=1e-2) and w is not None
    torch.testing.assert_close(w, weight)


@pytest.fixture(scope="module")
def trained_rms(tmp_path_factory, shared_data):
    """A 2-layer RMSNorm model trained for 60 steps, its tokenizer, calibration and held-out text."""
    d = tmp_path_factory.mktemp("fit")
    text = (shared_data / "tinyshakespeare" / "input.txt").read_text()
    (d / "train.txt").write_text(text[:150_000])
    (d / "calib.txt").write_text(text[150_000:170_000])
    (d / "heldout.txt").write_text(text[170_000:190_000])
    argv = [*TRAIN_ARGS, "--data_files", str(d / "train.txt"), "--cache_dir", str(d / "cache")]
    assert pretrain([*argv, "--output_dir", str(d / "run")]) == 0
    return d, d / "run" / "export"


def perplexity(model, ids):
    with torch.no_grad():
        return math.exp(model.eval()(input_ids=ids, labels=ids).loss.item())


def test_fitted_conversion_beats_the_table_alpha0(trained_rms):
    d, export = trained_rms
    rms = AutoModelForCausalLM.from_pretrained(export).eval()
    tok = AutoTokenizer.from_pretrained(export)
    calib = calibration_ids(tok, (d / "calib.txt").read_text(), 2048, 32)
    held = calibration_ids(tok, (d / "heldout.txt").read_text(), 2048, 32)
    assert calib.shape == (64, 32)

    table = llama_to_ours(rms, "dyt")
    fitted = llama_to_ours(rms, "dyt")
    report = fit_dyt_to_rmsnorm(rms, fitted, calib)
    assert list(report) == ["layers.0.attn", "layers.0.ffn", "layers.1.attn", "layers.1.ffn", "final"]
    for site in report.values():
        assert site["rel_err_after"] < site["rel_err_before"] and site["weight_change"] > 0
    ppl_rms, ppl_table, ppl_fit = perplexity(rms, held), perplexity(table, held), perplexity(fitted, held)
    assert ppl_fit < ppl_table, (ppl_rms, ppl_table, ppl_fit)
    assert ppl_fit < 1.5 * ppl_rms, (ppl_rms, ppl_fit)  # close to the model it imitates

    alpha_only = llama_to_ours(rms, "dyt")
    report = fit_dyt_to_rmsnorm(rms, alpha_only, calib, fit_weight=False, sequential=False)
    assert all(s["weight_change"] == 0 for s in report.values())
    torch.testing.assert_close(alpha_only.model.norm.weight, rms.model.norm.weight)
    assert perplexity(alpha_only, held) < ppl_table


def test_fit_refuses_a_dyt_source(trained_rms):
    rms = AutoModelForCausalLM.from_pretrained(trained_rms[1])
    dyt = llama_to_ours(rms, "dyt")
    with pytest.raises(ValueError, match="must use RMSNorm"):
        fit_dyt_to_rmsnorm(dyt, llama_to_ours(rms, "dyt"), torch.zeros(1, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="DyT conversion"):
        fit_dyt_to_rmsnorm(rms, llama_to_ours(rms, "rmsnorm"), torch.zeros(1, 4, dtype=torch.long))


def test_command_line_fit_alpha(trained_rms, tmp_path, capsys):
    d, export = trained_rms
    dst = tmp_path / "dyt"
    assert main([str(export), str(dst), "--fit-alpha", str(d / "calib.txt"), "--fit-tokens", "512"]) == 0
    fit = json.loads((dst / "dyt_fit.json").read_text())
    assert fit["tokens"] == 512 and fit["fit_weight"] is True
    model = AutoModelForCausalLM.from_pretrained(dst)
    norm = model.model.layers[0].input_layernorm
    assert isinstance(norm, DyT) and norm.alpha.item() == pytest.approx(
        fit["sites"]["layers.0.attn"]["alpha"]
    )
    assert norm.alpha.item() != pytest.approx(1.0)

    keep = tmp_path / "keep"
    assert main([str(export), str(keep), "--fit-alpha", str(d / "calib.txt"), "--fit-keep-weight"]) == 0
    assert json.loads((keep / "dyt_fit.json").read_text())["fit_weight"] is False

    capsys.readouterr()
    assert main([str(export), str(tmp_path / "x"), "--norm-type", "rmsnorm", "--fit-alpha", "calib.txt"]) == 2
    assert "needs --norm-type dyt" in capsys.readouterr().err
    assert main([str(export), str(tmp_path / "y"), "--fit-alpha", str(tmp_path / "missing.txt")]) == 2
    assert "not found" in capsys.readouterr().err
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()
