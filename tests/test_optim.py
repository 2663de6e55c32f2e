"""The optimizer and schedule: the paper's AdamW (decay on everything), warmup then cosine to 0.1x."""

import math
from types import SimpleNamespace

import pytest
import torch

from dyt_llama.config import DyTLlamaConfig
from dyt_llama.model import DyTLlamaForCausalLM
from dyt_llama.train.optim import build_optimizer, build_scheduler, param_groups
from tests.conftest import TINY


def settings(**overrides):
    base = dict(lr=1e-3, beta1=0.9, beta2=0.95, adam_eps=1e-8, weight_decay=0.1, weight_decay_policy="all")
    base.update(adamw_fused=True, warmup_steps=10, max_steps=100, min_lr_ratio=0.1)
    return SimpleNamespace(**{**base, **overrides})


@pytest.fixture
def model():
    torch.manual_seed(0)
    return DyTLlamaForCausalLM(DyTLlamaConfig(**TINY, norm_type="dyt"))


def test_all_policy_decays_every_parameter_including_alpha(model):
    groups = param_groups(model, 0.1, "all")
    assert len(groups) == 1 and groups[0]["weight_decay"] == 0.1
    assert {id(p) for p in groups[0]["params"]} == {id(p) for p in model.parameters()}


def test_skip_1d_leaves_gains_alpha_and_embed_scale_undecayed(model):
    decay, no_decay = param_groups(model, 0.1, "skip_1d")
    names = {id(p): n for n, p in model.named_parameters()}
    undecayed = {names[id(p)] for p in no_decay["params"]}
    assert no_decay["weight_decay"] == 0.0 and decay["weight_decay"] == 0.1
    assert "model.embed_scale" in undecayed and "model.norm.alpha" in undecayed
    assert all(n.endswith(("alpha", "weight", "embed_scale")) for n in undecayed)
    assert all(p.ndim >= 2 for p in decay["params"])


def test_adamw_settings_and_fused_kernel(model):
    opt = build_optimizer(model, settings())
    group = opt.param_groups[0]
    assert group["betas"] == (0.9, 0.95) and group["weight_decay"] == 0.1 and group["fused"] is True
    assert not build_optimizer(model, settings(adamw_fused=False)).param_groups[0]["fused"]


def test_fused_and_for_loop_adamw_take_the_same_steps(model):
    """The fused kernel is the same AdamW: after 5 steps on the same gradients the weights agree to float
    rounding (they are not bitwise equal: the kernel orders its arithmetic differently)."""
    twin = DyTLlamaForCausalLM(model.config)
    twin.load_state_dict(model.state_dict())
    fused, loop = build_optimizer(model, settings()), build_optimizer(twin, settings(adamw_fused=False))
    batch = torch.randint(0, TINY["vocab_size"], (2, 16))
    for _ in range(5):
        for m, opt in ((model, fused), (twin, loop)):
            m(input_ids=batch, labels=batch).loss.backward()
            opt.step()
            opt.zero_grad()
    for (name, a), b in zip(model.named_parameters(), twin.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)
    assert model.model.norm.alpha.item() != model.config.dyt_alpha_init_final  # alpha did move


def test_schedule_warms_up_linearly_then_cosine_to_the_floor():
    param = torch.nn.Parameter(torch.zeros(1))
    args = settings()
    opt = torch.optim.AdamW([param], lr=args.lr)
    sched = build_scheduler(opt, args)
    lrs = []
    for _ in range(args.max_steps + 1):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == 0.0 and lrs[5] == pytest.approx(0.5e-3) and lrs[10] == pytest.approx(1e-3)
    mid = 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5))  # halfway through the cosine
    assert lrs[55] == pytest.approx(1e-3 * mid)
    assert lrs[100] == pytest.approx(1e-4)  # 0.1x at max_steps
    assert all(b <= a for a, b in zip(lrs[10:], lrs[11:]))


def test_warmup_longer_than_the_run_is_cut_to_it():
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([param], lr=1.0)
    sched = build_scheduler(opt, settings(lr=1.0, warmup_steps=2000, max_steps=20))
    for _ in range(20):
        opt.step()
        sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(1.0)  # warmup ends at max_steps instead of never
