"""Conversion between plain LLaMA checkpoints and ours.

    python -m dyt_llama.convert SRC DST --norm-type dyt      # LLaMA (or ours) -> ours with DyT norms
    python -m dyt_llama.convert SRC DST --norm-type rmsnorm  # LLaMA -> ours, exactly the same function
    python -m dyt_llama.convert SRC DST --to-llama           # ours (rmsnorm) -> a plain LlamaForCausalLM

LLaMA -> DyT replaces each RMSNorm by DyT with the RMSNorm's gain as `weight` and alpha0 from the config (the
paper's width table unless given); that is a new function, a starting point for fine-tuning. DyT -> LLaMA is
refused: no RMSNorm computes tanh.

`--fit-alpha CALIB.txt` (`fit_dyt_to_rmsnorm`) then fits each DyT's alpha and weight to the RMSNorm it replaces,
by least squares on the calibration text, site after site: a far closer start than the table's alpha0.
"""

import argparse
import json
import math
import os
import shutil
import tempfile
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

from .cli import quiet_transformers, run_guarded
from .config import DyTLlamaConfig
from .model import DyTLlamaForCausalLM
from .norms import DyT

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


# ----------------------------------------------------------------------------------------------
# Fitting DyT to a trained RMSNorm model


def norm_sites(model: torch.nn.Module) -> list[tuple[str, torch.nn.Module]]:
    """The norm modules of a LLaMA-family causal LM in forward order, named as the metrics name DyT sites:
    layers.0.attn (input_layernorm), layers.0.ffn (post_attention_layernorm), ..., final (model.norm)."""
    inner = model.model
    sites = []
    for i, layer in enumerate(inner.layers):
        sites += [
            (f"layers.{i}.attn", layer.input_layernorm),
            (f"layers.{i}.ffn", layer.post_attention_layernorm),
        ]
    return sites + [("final", inner.norm)]


class _StopForward(Exception):
    """Raised by a capture hook: nothing after the captured site is needed, so the forward ends there."""


@torch.no_grad()
def _capture(model, module, calib_input_ids: torch.Tensor, batch_size: int) -> torch.Tensor:
    """The input of `module` over the calibration blocks, as (tokens, hidden) float32 on the CPU."""
    got = []

    def hook(mod, args):
        h = args[0]
        got.append(h.detach().float().reshape(-1, h.shape[-1]).cpu())
        raise _StopForward

    device = next(model.parameters()).device
    handle = module.register_forward_pre_hook(hook)
    try:
        for i in range(0, len(calib_input_ids), batch_size):
            try:  # the decoder only: the LM head is never needed
                model.model(input_ids=calib_input_ids[i : i + batch_size].to(device), use_cache=False)
            except _StopForward:
                pass
    finally:
        handle.remove()
    return torch.cat(got)


def _dyt_residual(x, y, log_alpha: float, weight: torch.Tensor | None) -> float:
    """min over w of ||w * tanh(alpha x) - y||^2 (w per channel, closed form), or the residual with w fixed."""
    t = torch.tanh(math.exp(log_alpha) * x)
    if weight is None:
        ty, tt = (t * y).sum(0), (t * t).sum(0)
        return float((y * y).sum() - (ty * ty / tt.clamp_min(1e-30)).sum())
    return float(((weight * t - y) ** 2).sum())


def fit_dyt_site(
    x: torch.Tensor,
    y: torch.Tensor,
    weight: torch.Tensor | None = None,
    max_search_elements: int = 1 << 22,
    grid: int = 33,
    iters: int = 40,
) -> tuple[float, torch.Tensor]:
    """Least-squares DyT for one site: (alpha, weight) minimizing ||weight * tanh(alpha * x) - y||^2.

    x, y: (tokens, channels) inputs and outputs of the norm to imitate. weight=None fits the per-channel
    weight too (for a given alpha it is linear least squares, closed form per channel:
    w_c = sum(t_c y_c) / sum(t_c^2) with t = tanh(alpha x)); a given weight is kept as it is. alpha is a
    1-D search on the remaining residual: a log-spaced grid over alpha * std(x) in [1e-2, 1e2] brackets the
    minimum and golden-section search narrows it (the residual is smooth in log alpha; no derivatives needed).
    The search runs on at most max_search_elements elements (an even subsample of the tokens); the final
    weight uses them all.
    """
    x, y = x.float(), y.float()
    rows = max(1, min(len(x), max_search_elements // max(1, x.shape[1])))
    pick = torch.linspace(0, len(x) - 1, rows).long() if rows < len(x) else slice(None)
    xs, ys = x[pick], y[pick]
    w_fixed = None if weight is None else weight.detach().float().cpu()
    scale = float(xs.std().clamp_min(1e-12))
    logs = [math.log(10 ** (-2 + 4 * k / (grid - 1)) / scale) for k in range(grid)]
    losses = [_dyt_residual(xs, ys, la, w_fixed) for la in logs]
    k = min(range(grid), key=losses.__getitem__)
    lo, hi = logs[max(k - 1, 0)], logs[min(k + 1, grid - 1)]
    g = (math.sqrt(5) - 1) / 2
    c, d = hi - g * (hi - lo), lo + g * (hi - lo)
    fc, fd = _dyt_residual(xs, ys, c, w_fixed), _dyt_residual(xs, ys, d, w_fixed)
    for _ in range(iters):
        if fc < fd:
            hi, d, fd = d, c, fc
            c = hi - g * (hi - lo)
            fc = _dyt_residual(xs, ys, c, w_fixed)
        else:
            lo, c, fc = c, d, fd
            d = lo + g * (hi - lo)
            fd = _dyt_residual(xs, ys, d, w_fixed)
    alpha = math.exp((lo + hi) / 2)
    if w_fixed is not None:
        return alpha, w_fixed
    t = torch.tanh(alpha * x)
    tt = (t * t).sum(0)
    w = (t * y).sum(0) / tt.clamp_min(1e-30)
    return alpha, torch.where(tt > 0, w, torch.zeros_like(w))


@torch.no_grad()
def fit_dyt_to_rmsnorm(
    rms_model: torch.nn.Module,
    dyt_model: torch.nn.Module,
    calib_input_ids: torch.Tensor,
    fit_weight: bool = True,
    sequential: bool = True,
    batch_size: int = 8,
    log=None,
) -> dict:
    """Fit each DyT of `dyt_model` (a conversion of `rms_model`) to the RMSNorm it replaced; in place.

    calib_input_ids: (N, T) token ids of calibration text. For each site in forward order (layer 0's attention
    norm, its FFN norm, layer 1's, ..., the final norm), forward hooks capture the site's input x and the
    RMSNorm output y on the calibration tokens, and `fit_dyt_site` sets alpha (and, with fit_weight, the
    per-channel weight; otherwise the RMSNorm gain stays the weight) to minimize ||w * tanh(alpha x) - y||^2.

    Sequential, on the converted model's own activations: x is captured in `dyt_model` with every earlier site
    already fitted, and y is the RMSNorm applied to that same x. That x is the input this DyT will see at
    inference; the RMSNorm model's activations differ by the approximation error of all earlier sites, and a
    site fitted to those is fitted to inputs it never gets (GPTQ quantizes layer by layer for the same reason).
    sequential=False fits every site on the RMSNorm model's activations instead (one pass, for comparison).

    Returns {site: {alpha0, alpha, input_std, rel_err_before, rel_err_after, weight_change}}, where rel_err is
    ||DyT(x) - y||^2 / ||y||^2 on the calibration tokens before and after the fit, and weight_change the
    relative change of the weight (0 without fit_weight).
    """
    if getattr(rms_model.config, "norm_type", "rmsnorm") != "rmsnorm":
        raise ValueError("the model to imitate must use RMSNorm (norm_type rmsnorm or a plain LLaMA)")
    rms_sites, dyt_sites = norm_sites(rms_model), norm_sites(dyt_model)
    if len(rms_sites) != len(dyt_sites) or not all(isinstance(m, DyT) for _, m in dyt_sites):
        raise ValueError("dyt_model must be a DyT conversion of rms_model (llama_to_ours(..., 'dyt'))")
    calib_input_ids = torch.as_tensor(calib_input_ids, dtype=torch.long)
    if calib_input_ids.ndim != 2 or calib_input_ids.numel() == 0:
        raise ValueError("calib_input_ids must be a non-empty (N, T) tensor of token ids")
    rms_model.eval()
    dyt_model.eval()
    report = {}
    for (name, rms), (_, dyt) in zip(rms_sites, dyt_sites):
        x = _capture(
            dyt_model if sequential else rms_model, dyt if sequential else rms, calib_input_ids, batch_size
        )
        y = torch.cat([rms(x[i : i + 4096].to(rms.weight)).float().cpu() for i in range(0, len(x), 4096)])
        w_old = dyt.weight.detach().float().cpu().clone()
        alpha_old = float(dyt.alpha)
        norm_y = max(float((y * y).sum()), 1e-30)
        before = float(((w_old * torch.tanh(alpha_old * x) - y) ** 2).sum()) / norm_y
        alpha, w = fit_dyt_site(x, y, None if fit_weight else w_old)
        dyt.alpha.fill_(alpha)
        dyt.weight.copy_(w.to(dyt.weight))
        after = float(((w * torch.tanh(alpha * x) - y) ** 2).sum()) / norm_y
        report[name] = {
            "alpha0": alpha_old,
            "alpha": alpha,
            "input_std": float(x.std()),
            "rel_err_before": before,
            "rel_err_after": after,
            "weight_change": float((w - w_old).norm() / w_old.norm().clamp_min(1e-30)),
        }
        if log:
            log(f"{name}: alpha {alpha_old:.3g} -> {alpha:.4g}, rel. error {before:.4f} -> {after:.4f}")
    return report


def calibration_ids(tokenizer, text: str, num_tokens: int, seq_len: int) -> torch.Tensor:
    """The first num_tokens tokens of a text as (N, seq_len) blocks (one shorter block if that is all)."""
    ids = tokenizer(text[: 16 * num_tokens])["input_ids"][:num_tokens]  # ~16 characters a token at most
    if len(ids) < 2:
        raise ValueError("the calibration text holds fewer than 2 tokens; give a longer text file")
    n = len(ids) // seq_len
    if n == 0:
        return torch.tensor([ids], dtype=torch.long)
    return torch.tensor(ids[: n * seq_len], dtype=torch.long).view(n, seq_len)


def convert(
    src: str,
    dst: str,
    norm_type: str | None = None,
    to_llama: bool = False,
    overwrite: bool = False,
    fit_text: str | None = None,
    fit_tokens: int = 16384,
    fit_weight: bool = True,
    **kw,
):
    """Convert the checkpoint directory (or hub name) SRC into DST; returns the converted model.

    fit_text: a calibration text file; the DyT sites are then fitted to the source's RMSNorms on its first
    fit_tokens tokens (`fit_dyt_to_rmsnorm`; fit_weight=False keeps the RMSNorm gains as weights), and the
    per-site report is written to DST/dyt_fit.json.
    """
    if fit_text is not None and (to_llama or (norm_type or "dyt") != "dyt"):
        raise ValueError("--fit-alpha fits DyT sites: it needs --norm-type dyt")
    if fit_text is not None and not Path(fit_text).is_file():
        raise FileNotFoundError(f"calibration text {fit_text} not found; give a text file to --fit-alpha")
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
    report = None
    if fit_text is not None:
        report = _fit_from_text(model, out, src, fit_text, fit_tokens, fit_weight)
    _save_atomically(out, src, dst)
    if report is not None:
        (Path(dst) / "dyt_fit.json").write_text(json.dumps(report, indent=1), encoding="utf-8")
    return out


def _fit_from_text(rms_model, dyt_model, src: str, fit_text: str, fit_tokens: int, fit_weight: bool) -> dict:
    try:
        tokenizer = AutoTokenizer.from_pretrained(src)
    except (OSError, ValueError):
        raise ValueError(
            f"--fit-alpha tokenizes the calibration text with SRC's tokenizer; {src} has none"
        ) from None
    try:
        text = Path(fit_text).read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"calibration text {fit_text} is not UTF-8; give a plain text file") from None
    seq_len = min(getattr(rms_model.config, "max_position_embeddings", None) or 2048, 2048)
    ids = calibration_ids(tokenizer, text, fit_tokens, seq_len)
    sites = fit_dyt_to_rmsnorm(rms_model, dyt_model, ids, fit_weight=fit_weight)
    return {"calibration": str(fit_text), "tokens": ids.numel(), "fit_weight": fit_weight, "sites": sites}


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
    p.add_argument(
        "--fit-alpha",
        metavar="CALIB_TEXT_FILE",
        help="fit each DyT's alpha and weight to the RMSNorm it replaces on this text (least squares)",
    )
    p.add_argument("--fit-tokens", type=int, default=16384, help="calibration tokens for --fit-alpha")
    p.add_argument("--fit-keep-weight", action="store_true", help="fit alpha only; weight = the RMSNorm gain")
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
        lambda: (
            convert(
                args.src,
                args.dst,
                args.norm_type,
                args.to_llama,
                args.overwrite,
                fit_text=args.fit_alpha,
                fit_tokens=args.fit_tokens,
                fit_weight=not args.fit_keep_weight,
                **kw,
            )
            and None
        ),
        args.debug,
    )
    if code == 0:
        print(f"wrote {args.dst}")
    return code


if __name__ == "__main__":
    raise SystemExit(main())
