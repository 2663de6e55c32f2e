"""DyT kernels behind one entry point: `dyt(x, alpha, weight, bias, impl)`.

- "eager":  the formula in plain torch ops (autograd keeps x and tanh(alpha * x) for backward).
- "fused":  one autograd function that keeps only x and recomputes tanh in backward (any device).
- "compiled": "fused" whose backward is one Inductor kernel compiled from its formulas, run from eager code
            (CPU with a C++ compiler, or CUDA); see compiled.py.
- "triton": a forward/backward Triton kernel pair, one pass over memory each way (CUDA; on CPU only
            under TRITON_INTERPRET=1, which the tests use).
- "auto":   the fastest of these that the device runs, see `resolve_impl`.

All of them compute the same function in x's dtype. Inside torch.compile every choice traces "fused":
its forward and backward are plain formulas there, which Inductor fuses into a pass or two over memory per
direction (Triton on GPU, C++ on CPU), the Function pins what backward keeps to x, and on CPU the formulas
avoid Inductor's slow spots (see fused._tanh_traced and fused._column_sums).
"""

import os

import torch

from dyt_llama.kernels import compiled, triton_dyt
from dyt_llama.kernels.compiled import CompiledDyT, compiled_dyt
from dyt_llama.kernels.fused import FusedDyT, fused_dyt

IMPLS = ("auto", "eager", "fused", "compiled", "triton")
# "auto" on CPU takes "compiled" from this many elements up. Below it a compiled call's fixed cost (Dynamo's
# guards, ~80 us) outweighs the passes it saves: fwd+bwd at 64K floats 1.25x "fused"'s time, 256K 1.03x,
# 1M 0.58x (bench/bench_norm.py's machine, 2 threads).
COMPILED_MIN_NUMEL = 1 << 18

__all__ = [
    "COMPILED_MIN_NUMEL",
    "IMPLS",
    "CompiledDyT",
    "FusedDyT",
    "compile_options",
    "compiled_dyt",
    "dyt",
    "eager_dyt",
    "fused_dyt",
    "resolve_impl",
]


def eager_dyt(x: torch.Tensor, alpha: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None):
    """weight * tanh(alpha * x) [+ bias] in x's dtype: the reference every other impl matches."""
    out = torch.tanh(alpha.to(x.dtype) * x) * weight.to(x.dtype)
    return out if bias is None else out + bias.to(x.dtype)


def _triton_unavailable(device: torch.device) -> str | None:
    """Why the Triton kernels cannot run on `device`, or None when they can."""
    if not triton_dyt.AVAILABLE:
        return "the `triton` package is not installed"
    if device.type == "cuda":
        return None if torch.cuda.is_available() else "CUDA is not available"
    if device.type == "cpu":
        if triton_dyt.INTERPRETED:
            return None
        if os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"):
            return "TRITON_INTERPRET was set after dyt_llama.kernels was imported; set it before"
        return "it needs a CUDA device (or TRITON_INTERPRET=1 to interpret it on CPU)"
    return f"it does not support {device.type} tensors"


def resolve_impl(impl: str, device: torch.device | str) -> str:
    """The concrete impl ("eager", "fused", "compiled" or "triton") that `impl` means on `device`.

    Raises ValueError for an unknown name, and for "triton" or "compiled" where they cannot run.
    """
    if impl not in IMPLS:
        raise ValueError(f"unknown DyT impl {impl!r}: choose one of {IMPLS}")
    device = torch.device(device)
    if impl == "auto":
        # CUDA: the Triton pair, the only single pass each way. CPU: "compiled" when a C++ compiler is there
        # (and, in `dyt`, the tensor is large enough): its one-pass backward took the 9 norms of the tiny
        # config's eager training step (2-core Xeon, fp32) from 30-37 ms to 20-29 ms (profiler, alternating
        # runs). Otherwise "fused": half of eager's memory for backward, 3 full-size buffers to eager's 9.
        # The Triton interpreter is never chosen: it is for tests only.
        if device.type == "cuda" and _triton_unavailable(device) is None:
            return "triton"
        if device.type == "cpu" and compiled.unavailable(device) is None and not compiled.failed():
            return "compiled"
        return "fused"
    if impl == "triton":
        reason = _triton_unavailable(device)
        if reason is not None:
            raise ValueError(f"DyT impl 'triton' cannot run on {device}: {reason}")
    if impl == "compiled":
        reason = compiled.unavailable(device)
        if reason is not None:
            raise ValueError(f"DyT impl 'compiled' cannot run on {device}: {reason}")
    return impl


def dyt(
    x: torch.Tensor,
    alpha: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    impl: str = "auto",
) -> torch.Tensor:
    """DyT(x) = weight * tanh(alpha * x) [+ bias] over the last dim of x; alpha has shape (1,)."""
    if torch.compiler.is_compiling():
        if impl not in IMPLS:
            raise ValueError(f"unknown DyT impl {impl!r}: choose one of {IMPLS}")
        return FusedDyT.apply(x, alpha, weight, bias)
    chosen = resolve_impl(impl, x.device)
    if chosen == "compiled" and impl == "auto" and x.numel() < COMPILED_MIN_NUMEL:
        chosen = "fused"  # the same forward; the compiled backward pays off on large tensors only
    if chosen == "triton" and x.dtype not in triton_dyt.DTYPES:  # float64 would lose precision in float32
        if impl == "triton":
            raise ValueError(f"DyT impl 'triton' takes {triton_dyt.DTYPES} inputs, not {x.dtype}")
        chosen = "fused"
    if chosen == "fused":
        return FusedDyT.apply(x, alpha, weight, bias)
    if chosen == "compiled":
        return CompiledDyT.apply(x, alpha, weight, bias)
    if chosen == "triton":
        return triton_dyt.TritonDyT.apply(x, alpha, weight, bias)
    return eager_dyt(x, alpha, weight, bias)


def compile_options(device: torch.device | str) -> dict:
    """Inductor options for compiling a model (torch.compile(options=...)); optional.

    DyT itself no longer needs them: its traced formulas spell tanh with one exp on CPU. They make any other
    tanh in the graph do the same (Inductor's own CPU tanh is Sleef's 1-ulp one, 4-5x slower than exp).
    """
    return {"cpp.use_decompose_tanh": True} if torch.device(device).type == "cpu" else {}
