import math
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

from dyt_llama import DyT, DyTLlamaConfig, DyTLlamaForCausalLM
from dyt_llama.norms import dyt_eager


def make(norm_type="dyt", seed=0, **kw):
    from tests.conftest import TINY

    torch.manual_seed(seed)
    return DyTLlamaForCausalLM(DyTLlamaConfig(norm_type=norm_type, **{**TINY, **kw})).eval()


def ids(batch=2, length=12, seed=1):
    return torch.randint(3, 128, (batch, length), generator=torch.Generator().manual_seed(seed))


def randomize_norms(model):
    """Trained-looking norm parameters, so parity checks do not pass on the init values alone."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "layernorm" in name or name.startswith("model.norm") or "embed_scale" in name:
                p.mul_(1 + 0.3 * torch.rand_like(p))


def test_rmsnorm_mode_is_llama(tiny_kwargs):
    ours = make("rmsnorm")
    randomize_norms(ours)
    llama = LlamaForCausalLM(LlamaConfig(**tiny_kwargs)).eval()
    assert list(llama.state_dict()) == list(ours.state_dict())
    llama.load_state_dict(ours.state_dict())
    x = ids()
    torch.testing.assert_close(ours(x).logits, llama(x).logits, rtol=0, atol=0)


def test_llama_checkpoint_loads_into_ours(tmp_path, tiny_kwargs):
    torch.manual_seed(0)
    llama = LlamaForCausalLM(LlamaConfig(**tiny_kwargs)).eval()
    llama.save_pretrained(tmp_path)
    ours = DyTLlamaForCausalLM.from_pretrained(tmp_path).eval()
    assert ours.config.norm_type == "rmsnorm"
    x = ids()
    torch.testing.assert_close(ours(x).logits, llama(x).logits, rtol=0, atol=0)


def test_dyt_module_is_the_papers_formula():
    norm = DyT(16, alpha_init=0.7)
    assert norm.alpha.shape == (1,) and norm.bias is None
    assert [n for n, _ in norm.named_parameters()] == ["alpha", "weight"]
    with torch.no_grad():
        norm.weight.copy_(torch.linspace(0.5, 1.5, 16))
    x = torch.randn(3, 5, 16, requires_grad=True)
    y = norm(x)
    expected = norm.weight * torch.tanh(0.7 * x)
    torch.testing.assert_close(y, expected)
    # Backward against the closed form: d/dx w*tanh(a x) = w*a*(1 - tanh^2).
    g = torch.randn_like(y)
    y.backward(g)
    t = torch.tanh(0.7 * x.detach())
    torch.testing.assert_close(x.grad, g * norm.weight.detach() * 0.7 * (1 - t**2))
    torch.testing.assert_close(
        norm.alpha.grad, (g * norm.weight.detach() * x.detach() * (1 - t**2)).sum().reshape(1)
    )
    torch.testing.assert_close(norm.weight.grad, (g * t).sum((0, 1)))


def test_dyt_with_bias_and_input_dtype():
    norm = DyT(8, alpha_init=0.5, bias=True)
    with torch.no_grad():
        norm.bias.fill_(0.25)
    x = torch.randn(4, 8)
    torch.testing.assert_close(norm(x), torch.tanh(0.5 * x) + 0.25)
    assert norm(x.to(torch.bfloat16)).dtype == torch.bfloat16
    assert norm(x.double()).dtype == torch.float64
    assert dyt_eager(x.half(), norm.alpha, norm.weight).dtype == torch.float16


def test_model_sites_take_their_alpha0():
    m = make(dyt_alpha_init_attn=0.8, dyt_alpha_init_ffn=0.2, dyt_alpha_init_final=0.1)
    for layer in m.model.layers:
        assert isinstance(layer.input_layernorm, DyT) and layer.input_layernorm.alpha.item() == pytest.approx(
            0.8
        )
        assert layer.post_attention_layernorm.alpha.item() == pytest.approx(0.2)
    assert m.model.norm.alpha.item() == pytest.approx(0.1)


def test_embed_scale_multiplies_embeddings():
    m = make()
    assert m.model.embed_scale.item() == pytest.approx(math.sqrt(64))
    x = ids()
    seen = {}
    m.model.layers[0].register_forward_pre_hook(
        lambda mod, args, kw: seen.update(h=args[0]), with_kwargs=True
    )
    m(x)
    torch.testing.assert_close(seen["h"], m.model.embed_tokens(x) * math.sqrt(64))
    assert make(dyt_embed_scale=False).model.embed_scale is None
    assert make("rmsnorm").model.embed_scale is None


def test_gradients_reach_alpha_weight_and_scale():
    m = make(dyt_bias=True).train()
    x = ids()
    m(x, labels=x).loss.backward()
    for name, p in m.named_parameters():
        if name.endswith(("alpha", "layernorm.weight", "norm.weight", "embed_scale", "layernorm.bias")):
            assert p.grad is not None and p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("norm_type", ["dyt", "rmsnorm"])
def test_round_trip(tmp_path, norm_type):
    import dyt_llama  # noqa: F401  registers the Auto classes

    m = make(norm_type)
    randomize_norms(m)
    m.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists() and not list(tmp_path.glob("*.bin"))
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    assert type(loaded) is DyTLlamaForCausalLM
    x = ids()
    torch.testing.assert_close(loaded(x).logits, m(x).logits, rtol=0, atol=0)


REMOTE = """
import sys
sys.modules["dyt_llama"] = None  # the package is not there: only the checkpoint's own code is
import torch
from transformers import AutoModelForCausalLM
m = AutoModelForCausalLM.from_pretrained(sys.argv[1], trust_remote_code=True).eval()
assert "dyt_llama" not in type(m).__module__.split(".")[0], type(m).__module__
x = torch.load(sys.argv[2], weights_only=True)
torch.save(m(x).logits, sys.argv[3])
"""


@pytest.mark.parametrize("norm_type", ["dyt", "rmsnorm"])
def test_trust_remote_code_without_the_package(tmp_path, norm_type):
    m = make(norm_type)
    randomize_norms(m)
    m.save_pretrained(tmp_path / "ckpt")
    assert {"config.py", "model.py", "norms.py"} <= {p.name for p in (tmp_path / "ckpt").iterdir()}
    x = ids()
    torch.save(x, tmp_path / "x.pt")
    env_free = subprocess.run(
        [
            sys.executable,
            "-c",
            REMOTE,
            str(tmp_path / "ckpt"),
            str(tmp_path / "x.pt"),
            str(tmp_path / "y.pt"),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin", "HF_HOME": str(tmp_path / "hf")},
    )
    assert env_free.returncode == 0, env_free.stderr[-2000:]
    torch.testing.assert_close(torch.load(tmp_path / "y.pt", weights_only=True), m(x).logits, rtol=0, atol=0)


def test_init_weights_on_every_path(tmp_path):
    kw = dict(dyt_alpha_init_attn=0.7, dyt_alpha_init_ffn=0.3, dyt_alpha_init_final=0.2)
    # from_config
    m = AutoModelForCausalLM.from_config(
        DyTLlamaConfig(
            norm_type="dyt",
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            vocab_size=128,
            **kw,
        )
    )
    # meta-device init, then materialised and initialised
    with torch.device("meta"):
        meta = DyTLlamaForCausalLM(m.config)
    meta.to_empty(device="cpu")
    meta.init_weights()
    # from_pretrained with the DyT parameters missing from the file
    m.save_pretrained(tmp_path)
    state = load_file(tmp_path / "model.safetensors")
    state = {k: v for k, v in state.items() if not k.endswith(("alpha", "embed_scale"))}
    save_file(state, tmp_path / "model.safetensors", metadata={"format": "pt"})
    missing = DyTLlamaForCausalLM.from_pretrained(tmp_path)
    for model in (m, meta, missing):
        assert model.model.layers[1].input_layernorm.alpha.item() == pytest.approx(0.7)
        assert model.model.layers[1].post_attention_layernorm.alpha.item() == pytest.approx(0.3)
        assert model.model.norm.alpha.item() == pytest.approx(0.2)
        assert model.model.norm.weight.eq(1).all()
        assert model.model.embed_scale.item() == pytest.approx(8.0)


@pytest.mark.parametrize("norm_type", ["dyt", "rmsnorm"])
def test_generate_with_cache_equals_without(norm_type):
    m = make(norm_type, num_hidden_layers=2)
    prompt = ids(batch=1, length=5)
    fast = m.generate(prompt, max_new_tokens=12, do_sample=False, use_cache=True, pad_token_id=0)
    slow = m.generate(prompt, max_new_tokens=12, do_sample=False, use_cache=False, pad_token_id=0)
    assert torch.equal(fast, slow) and fast.shape[1] == 17


def test_sdpa_equals_eager_and_gradient_checkpointing_matches():
    x = ids()
    eager = make(attn_implementation="eager")
    sdpa = make(attn_implementation="sdpa")
    assert sdpa.config._attn_implementation == "sdpa"
    torch.testing.assert_close(sdpa(x).logits, eager(x).logits, rtol=1e-4, atol=1e-5)

    plain, ckpt = make().train(), make().train()
    ckpt.activation_checkpointing_enable()
    for model in (plain, ckpt):
        model(x, labels=x).loss.backward()
    for (name, a), b in zip(plain.named_parameters(), ckpt.parameters()):
        torch.testing.assert_close(a.grad, b.grad, msg=name)
