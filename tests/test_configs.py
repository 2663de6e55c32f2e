"""The shipped configs: every one parses, and the LLaMA ones carry the paper's recipe."""

import pytest
import yaml

from dyt_llama.config import DyTLlamaConfig
from dyt_llama.train.args import parse_args
from tests.conftest import REPO

CONFIGS = sorted((REPO / "configs").glob("*.yaml"))

# The paper's LLaMA settings: alpha0 attention / FFN / final, and the peak LR.
PAPER = {
    "llama7b": ((0.8, 0.2, 0.2), 3e-4, 4096),
    "llama13b": ((0.6, 0.15, 0.15), 3e-4, 5120),
    "llama34b": ((0.2, 0.05, 0.05), 1.5e-4, 8192),
    "llama70b": ((0.2, 0.05, 0.05), 1.5e-4, 8192),
}


def test_every_model_config_is_shipped():
    names = {p.stem for p in CONFIGS}
    assert names == {"tiny", "60m", "125m", "350m", "1b", *PAPER}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
@pytest.mark.parametrize("norm", ["rmsnorm", "dyt"])
def test_config_parses_with_either_norm(path, norm):
    model, data, train = parse_args(["--config", str(path), "--norm_type", norm])
    assert model.norm_type == norm and data.seq_len > 1 and train.max_steps > 0
    # The alpha0 written into the config is what the width table gives (or the config's explicit values).
    config = DyTLlamaConfig(
        norm_type="dyt",
        hidden_size=model.hidden_size,
        intermediate_size=model.intermediate_size,
        num_hidden_layers=model.num_hidden_layers,
        num_attention_heads=model.num_attention_heads,
    )
    explicit = (model.dyt_alpha_init_attn, model.dyt_alpha_init_ffn, model.dyt_alpha_init_final)
    if None not in explicit:
        assert explicit == tuple(config.dyt_alpha_inits.values()), (path.stem, explicit)


@pytest.mark.parametrize("name", sorted(PAPER))
def test_llama_configs_follow_the_paper(name):
    (alpha0, lr, width) = PAPER[name]
    model, data, train = parse_args(["--config", str(REPO / "configs" / f"{name}.yaml")])
    assert model.hidden_size == width
    assert (model.dyt_alpha_init_attn, model.dyt_alpha_init_ffn, model.dyt_alpha_init_final) == alpha0
    assert train.lr == lr and train.min_lr_ratio == 0.1 and train.warmup_steps == 2000
    assert (train.beta1, train.beta2, train.weight_decay, train.weight_decay_policy) == (
        0.9,
        0.95,
        0.1,
        "all",
    )
    assert train.grad_clip == 1.0 and train.mixed_precision == "bf16"
    assert data.seq_len == 4096 and train.tokens_per_step == 4 * 1024 * 1024


@pytest.mark.parametrize(
    "name, kind",
    [
        ("single", "NO"),
        ("ddp", "MULTI_GPU"),
        ("fsdp", "FSDP"),
        ("deepspeed_zero3", "DEEPSPEED"),
        ("cpu_2proc", "MULTI_GPU"),
    ],
)
def test_accelerate_configs(name, kind):
    config = yaml.safe_load((REPO / "configs" / "accelerate" / f"{name}.yaml").read_text())
    assert config["distributed_type"] == kind
    if name == "fsdp":
        fsdp = config["fsdp_config"]
        assert fsdp["fsdp_transformer_layer_cls_to_wrap"] == "LlamaDecoderLayer"
        assert fsdp["fsdp_auto_wrap_policy"] == "TRANSFORMER_BASED_WRAP"
    if name == "deepspeed_zero3":
        assert config["deepspeed_config"]["zero_stage"] == 3
    if name == "cpu_2proc":
        assert config["num_processes"] == 2 and config["mixed_precision"] == "no"  # gloo on CPUs
