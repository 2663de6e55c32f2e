import json
import math

import pytest

from dyt_llama import ALPHA0_BY_WIDTH, DyTLlamaConfig, alpha0_for_width


def test_table_rows_are_the_papers():
    assert alpha0_for_width(1024) == (1.0, 1.0, 1.0)
    assert alpha0_for_width(2048) == (1.0, 0.5, 0.5)
    assert alpha0_for_width(4096) == (0.8, 0.2, 0.2)
    assert alpha0_for_width(5120) == (0.6, 0.15, 0.15)
    assert alpha0_for_width(8192) == (0.2, 0.05, 0.05)


def test_table_clamps_outside_and_interpolates_in_log_width():
    assert alpha0_for_width(64) == ALPHA0_BY_WIDTH[1024]
    assert alpha0_for_width(16384) == ALPHA0_BY_WIDTH[8192]
    # 2896 is about the geometric mean of 2048 and 4096: halfway in log-width.
    mid = alpha0_for_width(round(math.sqrt(2048 * 4096)))
    assert mid == pytest.approx((0.9, 0.35, 0.35), abs=1e-3)
    a, f, _ = alpha0_for_width(3072)
    t = math.log(3072 / 2048) / math.log(2)
    assert a == pytest.approx(1.0 + t * (0.8 - 1.0)) and f == pytest.approx(0.5 + t * (0.2 - 0.5))


def test_defaults_are_llama():
    c = DyTLlamaConfig()
    assert c.norm_type == "rmsnorm" and c.dyt_embed_scale is False and c.dyt_bias is False
    assert c.dyt_alpha_init_attn is None


def test_dyt_fills_alpha0_from_width_and_records_them(tmp_path):
    c = DyTLlamaConfig(norm_type="dyt", hidden_size=4096, num_attention_heads=32)
    assert c.dyt_alpha_inits == {"attn": 0.8, "ffn": 0.2, "final": 0.2}
    assert c.dyt_embed_scale is True
    c.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert (saved["dyt_alpha_init_attn"], saved["dyt_alpha_init_ffn"], saved["dyt_alpha_init_final"]) == (
        0.8,
        0.2,
        0.2,
    )
    assert DyTLlamaConfig.from_pretrained(tmp_path).dyt_alpha_inits == c.dyt_alpha_inits


def test_given_alpha0_wins_over_the_table():
    c = DyTLlamaConfig(norm_type="dyt", hidden_size=4096, num_attention_heads=32, dyt_alpha_init_ffn=0.3)
    assert c.dyt_alpha_inits == {"attn": 0.8, "ffn": 0.3, "final": 0.2}


@pytest.mark.parametrize(
    "field, value",
    [
        ("norm_type", "layernorm"),
        ("norm_type", 3),
        ("dyt_alpha_init_attn", 0.0),
        ("dyt_alpha_init_ffn", -1.0),
        ("dyt_alpha_init_final", float("nan")),
        ("dyt_alpha_init_attn", float("inf")),
        ("dyt_alpha_init_attn", "0.5"),
        ("dyt_alpha_init_attn", True),
        ("dyt_embed_scale", "yes"),
        ("dyt_bias", 1),
        ("dyt_impl", "cuda"),
    ],
)
def test_invalid_values_name_field_and_value(field, value):
    with pytest.raises(ValueError) as err:
        DyTLlamaConfig(norm_type="dyt", **{field: value}) if field != "norm_type" else DyTLlamaConfig(
            norm_type=value
        )
    message = str(err.value)
    assert field in message and repr(value) in message
