import subprocess
import sys

import pytest
import torch
from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

from dyt_llama import DyT, DyTLlamaForCausalLM
from dyt_llama.convert import convert, llama_to_ours, ours_to_llama


@pytest.fixture
def llama_dir(tmp_path, tiny_kwargs):
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(**tiny_kwargs)).eval()
    with torch.no_grad():
        for layer in model.model.layers:
            layer.input_layernorm.weight.uniform_(0.5, 1.5)
    model.save_pretrained(tmp_path / "llama")
    return tmp_path / "llama"


def logits(model, seed=0):
    x = torch.randint(3, 128, (2, 10), generator=torch.Generator().manual_seed(seed))
    return model.eval()(x).logits


def test_llama_to_dyt_keeps_weights_and_sets_alpha0(llama_dir, tmp_path):
    llama = LlamaForCausalLM.from_pretrained(llama_dir)
    convert(str(llama_dir), str(tmp_path / "dyt"), norm_type="dyt", alpha_attn=0.6)
    ours = AutoModelForCausalLM.from_pretrained(tmp_path / "dyt")
    assert ours.config.norm_type == "dyt" and ours.config.dyt_embed_scale is False
    layer = ours.model.layers[0]
    assert isinstance(layer.input_layernorm, DyT) and layer.input_layernorm.alpha.item() == pytest.approx(0.6)
    assert layer.post_attention_layernorm.alpha.item() == pytest.approx(1.0)  # the table's value at width 64
    torch.testing.assert_close(layer.input_layernorm.weight, llama.model.layers[0].input_layernorm.weight)
    torch.testing.assert_close(layer.self_attn.q_proj.weight, llama.model.layers[0].self_attn.q_proj.weight)


def test_llama_to_ours_rmsnorm_and_back_is_exact(llama_dir, tmp_path):
    llama = LlamaForCausalLM.from_pretrained(llama_dir)
    convert(str(llama_dir), str(tmp_path / "ours"), norm_type="rmsnorm")
    ours = AutoModelForCausalLM.from_pretrained(tmp_path / "ours")
    assert type(ours) is DyTLlamaForCausalLM
    torch.testing.assert_close(logits(ours), logits(llama), rtol=0, atol=0)
    convert(str(tmp_path / "ours"), str(tmp_path / "back"), to_llama=True)
    back = AutoModelForCausalLM.from_pretrained(tmp_path / "back")
    assert type(back) is LlamaForCausalLM and back.config.model_type == "llama"
    assert not any(k.startswith("dyt_") or k == "norm_type" for k in back.config.to_dict())
    torch.testing.assert_close(logits(back), logits(llama), rtol=0, atol=0)


def test_dyt_to_llama_is_refused(llama_dir):
    dyt = llama_to_ours(LlamaForCausalLM.from_pretrained(llama_dir), "dyt")
    with pytest.raises(ValueError, match="cannot convert a DyT model"):
        ours_to_llama(dyt)


def test_command_line(llama_dir, tmp_path):
    def run(*a):
        return subprocess.run(
            [sys.executable, "-m", "dyt_llama.convert", *map(str, a)], capture_output=True, text=True
        )

    ok = run(llama_dir, tmp_path / "dyt", "--norm-type", "dyt", "--alpha-ffn", "0.25")
    assert ok.returncode == 0, ok.stderr
    assert AutoModelForCausalLM.from_pretrained(tmp_path / "dyt").config.dyt_alpha_init_ffn == 0.25
    before = (tmp_path / "dyt" / "model.safetensors").read_bytes()
    refused = run(tmp_path / "dyt", tmp_path / "llama2", "--to-llama")
    assert refused.returncode == 2 and refused.stderr.startswith("error: cannot convert a DyT model")
    assert "Traceback" not in refused.stderr and not (tmp_path / "llama2").exists()
    exists = run(llama_dir, tmp_path / "dyt", "--norm-type", "rmsnorm")
    assert exists.returncode == 2 and "--overwrite" in exists.stderr
    assert (tmp_path / "dyt" / "model.safetensors").read_bytes() == before
    missing = run(tmp_path / "nowhere", tmp_path / "x")
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1
