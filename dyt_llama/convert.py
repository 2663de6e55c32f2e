"""Conversion between plain LLaMA checkpoints and ours.

    python -m dyt_llama.convert SRC DST --norm-type dyt      # LLaMA (or ours) -> ours with DyT norms
    python -m dyt_llama.convert SRC DST --norm-type rmsnorm  # LLaMA -> ours, exactly the same function
    python -m dyt_llama.convert SRC DST --to-llama           # ours (rmsnorm) -> a plain LlamaForCausalLM

LLaMA -> DyT replaces each RMSNorm by DyT with the RMSNorm's gain as `weight` and alpha0 from the config (the
paper's width table unless given); that is a new function, a starting point for fine-tuning. DyT -> LLaMA is
refused: no RMSNorm computes tanh.
"""

import argparse
import os
import shutil
import tempfile
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

from .cli import quiet_transformers, run_guarded
from .config import DyTLlamaConfig
from .model import DyTLlamaForCausalLM

# Config keys that describe the checkpoint file rather than the architecture.
_NOT_ARCHITECTURE = {
    "model_type",
    "architectures",
    "auto_map",
    "transformers_version",
    "_name_or_path",
    "dtype",
}


def _architecture(config) -> dict:
    """The LLaMA architecture of a config: no file bookkeeping, none of our norm settings."""
    return {
        k: v
        for k, v in config.to_dict().items()
        if k not in _NOT_ARCHITECTURE and k != "norm_type" and not k.startswith("dyt_")
    }


def _check_destination(dst: str, overwrite: bool) -> None:
    dst_path = Path(dst)
    if dst_path.exists() and (not dst_path.is_dir() or any(dst_path.iterdir())) and not overwrite:
        raise FileExistsError(f"{dst} exists and is not empty; choose another DST or pass --overwrite")


def _save_atomically(model, src: str, dst: str) -> None:
    """Write to a temporary sibling, then rename: an interrupted conversion never leaves a half checkpoint at DST."""
    dst_path = Path(dst)
    dst_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{dst_path.name}.", dir=dst_path.parent)
    try:
        model.save_pretrained(tmp)
        try:
            AutoTokenizer.from_pretrained(src).save_pretrained(tmp)
        except (OSError, ValueError):
            pass  # a checkpoint without a tokenizer converts to one without a tokenizer
        if dst_path.exists():
            shutil.rmtree(dst_path)
        os.replace(tmp, dst_path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def llama_to_ours(
    model: torch.nn.Module,
    norm_type: str = "dyt",
    alpha_attn: float | None = None,
    alpha_ffn: float | None = None,
    alpha_final: float | None = None,
    embed_scale: bool = False,
) -> DyTLlamaForCausalLM:
    """A LlamaForCausalLM (or ours) as DyTLlamaForCausalLM with the given norms.

    The embedding scale is off by default: switched on, it would multiply a trained model's embeddings by
    sqrt(d) and change what every layer sees.
    """
    config = DyTLlamaConfig(
        **_architecture(model.config),
        norm_type=norm_type,
        dyt_alpha_init_attn=alpha_attn,
        dyt_alpha_init_ffn=alpha_ffn,
        dyt_alpha_init_final=alpha_final,
        dyt_embed_scale=embed_scale if norm_type == "dyt" else False,
    )
    ours = DyTLlamaForCausalLM(config).to(model.dtype)
    state = {k: v for k, v in model.state_dict().items() if not k.endswith(("alpha", "embed_scale"))}
    missing, unexpected = ours.load_state_dict(state, strict=False)
    expected_missing = {k for k in ours.state_dict() if k.endswith(("alpha", "embed_scale", "bias"))}
    if unexpected or set(missing) - expected_missing:
        raise ValueError(f"not a LLaMA-shaped checkpoint: missing {missing}, unexpected {unexpected}")
    return ours


def ours_to_llama(model: torch.nn.Module) -> LlamaForCausalLM:
    """Ours with RMSNorm as a plain LlamaForCausalLM (the same function, the same weights)."""
    config = model.config
    if getattr(config, "norm_type", "rmsnorm") != "rmsnorm" or getattr(config, "dyt_embed_scale", False):
        raise ValueError(
            "cannot convert a DyT model (or one with an embedding scale) to plain LLaMA exactly: "
            "only norm_type='rmsnorm' without dyt_embed_scale converts"
        )
    llama = LlamaForCausalLM(LlamaConfig(**_architecture(config))).to(model.dtype)
    llama.load_state_dict(model.state_dict(), strict=True)
    return llama


def convert(
    src: str, dst: str, norm_type: str | None = None, to_llama: bool = False, overwrite: bool = False, **kw
):
    """Convert the checkpoint directory (or hub name) SRC into DST; returns the converted model."""
    _check_destination(dst, overwrite)
    try:  # a missing, truncated or foreign checkpoint is the user's to fix, whatever transformers raises
        config = AutoConfig.from_pretrained(src)
        model = AutoModelForCausalLM.from_pretrained(
            src, dtype=getattr(config, "dtype", None) or torch.float32
        )
    except Exception as e:
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ValueError(f"cannot load a causal LM from {src} ({reason})") from None
    out = ours_to_llama(model) if to_llama else llama_to_ours(model, norm_type or "dyt", **kw)
    _save_atomically(out, src, dst)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m dyt_llama.convert", description=__doc__.split("\n\n")[0])
    p.add_argument("src", help="LLaMA-family checkpoint directory or hub name")
    p.add_argument("dst", help="output directory (must not exist or be empty, unless --overwrite)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--norm-type", choices=("dyt", "rmsnorm"), default="dyt")
    mode.add_argument("--to-llama", action="store_true", help="ours (rmsnorm) -> plain LlamaForCausalLM")
    p.add_argument("--alpha-attn", type=float, help="alpha0 of input_layernorm (default: width table)")
    p.add_argument("--alpha-ffn", type=float, help="alpha0 of post_attention_layernorm")
    p.add_argument("--alpha-final", type=float, help="alpha0 of model.norm")
    p.add_argument("--embed-scale", action="store_true", help="add the learnable sqrt(d) embedding scale")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--debug", action="store_true", help="show the traceback of an error")
    args = p.parse_args(argv)
    quiet_transformers()
    kw = {}
    if not args.to_llama:
        kw = dict(
            alpha_attn=args.alpha_attn,
            alpha_ffn=args.alpha_ffn,
            alpha_final=args.alpha_final,
            embed_scale=args.embed_scale,
        )
    code = run_guarded(
        lambda: convert(args.src, args.dst, args.norm_type, args.to_llama, args.overwrite, **kw) and None,
        args.debug,
    )
    if code == 0:
        print(f"wrote {args.dst}")
    return code


if __name__ == "__main__":
    raise SystemExit(main())
