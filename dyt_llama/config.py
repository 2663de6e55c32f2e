"""DyTLlamaConfig and the paper's DyT recipe for LLaMA: the alpha0-by-width table lives here, in one place."""

import math

from transformers import LlamaConfig

NORM_TYPES = ("rmsnorm", "dyt")
DYT_IMPLS = ("auto", "eager", "fused", "compiled", "triton")

# alpha0 (attention / FFN / final norm) by model width, from the official DyT LLaMA code (Zhu et al. 2025,
# Table 11). Depth does not change it; wider models want smaller alpha0.
ALPHA0_BY_WIDTH = {
    1024: (1.0, 1.0, 1.0),
    2048: (1.0, 0.5, 0.5),
    4096: (0.8, 0.2, 0.2),  # LLaMA 7B
    5120: (0.6, 0.15, 0.15),  # LLaMA 13B
    8192: (0.2, 0.05, 0.05),  # LLaMA 34B, 70B
}


def alpha0_for_width(hidden_size: int) -> tuple[float, float, float]:
    """(attn, ffn, final) alpha0 for a width: the table's row, linear in log-width between rows, clamped outside."""
    widths = sorted(ALPHA0_BY_WIDTH)
    if hidden_size <= widths[0]:
        return ALPHA0_BY_WIDTH[widths[0]]
    if hidden_size >= widths[-1]:
        return ALPHA0_BY_WIDTH[widths[-1]]
    hi = next(w for w in widths if w >= hidden_size)
    lo = widths[widths.index(hi) - 1]
    t = (math.log(hidden_size) - math.log(lo)) / (math.log(hi) - math.log(lo))
    return tuple(a + t * (b - a) for a, b in zip(ALPHA0_BY_WIDTH[lo], ALPHA0_BY_WIDTH[hi]))


def _check(field: str, value, ok: bool, allowed: str) -> None:
    if not ok:
        raise ValueError(f"DyTLlamaConfig.{field}={value!r} is invalid: {allowed}")


class DyTLlamaConfig(LlamaConfig):
    """LlamaConfig plus the choice of norm. With `norm_type="rmsnorm"` (the default) the model is exactly LLaMA.

    norm_type: "rmsnorm" or "dyt" (Dynamic Tanh at all three norm sites).
    dyt_alpha_init_attn / _ffn / _final: alpha0 of `input_layernorm`, `post_attention_layernorm` and `model.norm`;
        None takes the paper's width table, and the values used are stored so config.json records them.
    dyt_embed_scale: a learnable scalar on the embedding output, initialised to sqrt(hidden_size) (on for DyT).
    dyt_bias: the generic DyT form with a per-channel bias (the paper's vision code); off in its LLaMA code.
    dyt_impl: "auto", "eager", "fused", "compiled" or "triton"; every choice computes the same function.
    """

    model_type = "dyt_llama"

    norm_type: str = "rmsnorm"
    dyt_alpha_init_attn: float | None = None
    dyt_alpha_init_ffn: float | None = None
    dyt_alpha_init_final: float | None = None
    dyt_embed_scale: bool | None = None
    dyt_bias: bool = False
    dyt_impl: str = "auto"

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        self.validate_dyt()
        if self.norm_type == "dyt":
            table = alpha0_for_width(self.hidden_size)
            for name, default in zip(("attn", "ffn", "final"), table):
                if getattr(self, f"dyt_alpha_init_{name}") is None:
                    setattr(self, f"dyt_alpha_init_{name}", round(float(default), 6))
        if self.dyt_embed_scale is None:
            self.dyt_embed_scale = self.norm_type == "dyt"

    def validate_dyt(self) -> None:
        _check("norm_type", self.norm_type, self.norm_type in NORM_TYPES, f"choose one of {NORM_TYPES}")
        _check("dyt_impl", self.dyt_impl, self.dyt_impl in DYT_IMPLS, f"choose one of {DYT_IMPLS}")
        for name in ("attn", "ffn", "final"):
            field = f"dyt_alpha_init_{name}"
            value = getattr(self, field)
            number = isinstance(value, (int, float)) and not isinstance(value, bool)
            ok = value is None or (number and math.isfinite(value) and value > 0)
            _check(field, value, ok, "alpha0 must be a finite positive number (or None for the width table)")
        for field in ("dyt_embed_scale", "dyt_bias"):
            value = getattr(self, field)
            ok = isinstance(value, bool) or (field == "dyt_embed_scale" and value is None)
            _check(field, value, ok, "must be true or false")

    @property
    def dyt_alpha_inits(self) -> dict[str, float]:
        return {
            "attn": self.dyt_alpha_init_attn,
            "ffn": self.dyt_alpha_init_ffn,
            "final": self.dyt_alpha_init_final,
        }
