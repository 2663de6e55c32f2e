"""DyT's backward as an Inductor-generated kernel called from eager code: one pass over x and grad.

`CompiledDyT` is `FusedDyT` (autograd keeps only x) whose backward calls a torch.compile'd version of the
formulas that a compiled model traces (`fused.backward_traced`). An eager model gets the kernel that
`torch.compile` would give it, without compiling the model.

Compiling happens at the first backward per signature (rank, dtype, which gradients; sizes turn dynamic
at the first change), takes seconds, and Inductor caches the result on disk for later processes. If it
fails, a warning says why and this process runs "fused" from then on.
"""

import functools
import os
import shutil
import types
import warnings

import torch
from torch.autograd.function import once_differentiable

from dyt_llama.kernels.fused import FusedDyT, backward_traced

_failure: str | None = None  # why compiling failed in this process; set once, after which "fused" runs


def missing_cxx() -> str | None:
    """The C++ compiler that Inductor's CPU backend calls (CXX, else g++) if it is not on PATH, else None."""
    cxx = os.environ.get("CXX", "g++")
    return None if _on_path(cxx) else cxx


def unavailable(device: torch.device) -> str | None:
    """Why Inductor cannot build DyT kernels for `device`, or None when it can."""
    if device.type == "cpu":
        cxx = missing_cxx()
        return None if cxx is None else f"no C++ compiler ({cxx} is not on PATH; install one or set CXX)"
    if device.type == "cuda":
        from dyt_llama.kernels import triton_dyt  # Inductor's GPU kernels are Triton

        return None if triton_dyt.AVAILABLE and torch.cuda.is_available() else "it needs CUDA and `triton`"
    return f"it does not support {device.type} tensors"


def failed() -> bool:
    """Whether compiling failed earlier in this process (CompiledDyT then runs "fused")."""
    return _failure is not None


@functools.cache
def _on_path(program: str) -> bool:
    return shutil.which(program) is not None


@functools.cache
def _compiled(fn, signature: tuple):
    """fn compiled for one signature (ranks, dtypes, devices, flags of its arguments).

    Dynamo caps the compiled versions per code object (8) and, with fullgraph=True, fails past that; a
    process that trains, evaluates and switches dtypes can have more signatures than that, so each gets
    its own copy of fn's code. dynamic=None: sizes specialise at first, and turn dynamic at the first change.
    """
    copy = types.FunctionType(fn.__code__.replace(), fn.__globals__, fn.__name__, fn.__defaults__)
    return torch.compile(copy, fullgraph=True, dynamic=None)


def _signature(args) -> tuple:
    return tuple((a.dim(), a.dtype, a.device.type) if isinstance(a, torch.Tensor) else a for a in args)


def _detached(args) -> list:
    # Autograd is this Function's job: the kernels see plain tensors (one guard less, no warnings about .grad).
    return [a.detach() if isinstance(a, torch.Tensor) else a for a in args]


def _run(fn, fallback, *args):
    """fn's compiled kernel on args; fallback() once compiling has failed in this process."""
    global _failure
    if _failure is not None:
        return fallback()
    try:
        with warnings.catch_warnings():  # compiling imports and traces torch internals that warn (and, under
            warnings.simplefilter("ignore")  # -W error, would fail): none of it is about the caller's code
            return _compiled(fn, _signature(args))(*_detached(args))
    except Exception as err:  # a broken toolchain or a missing header: keep going on the ATen path
        out = fallback()  # bad input raises here, with ATen's message, and leaves the kernels enabled
        _failure = f"{type(err).__name__}: {(str(err).strip().splitlines() or [''])[0]}"
        warnings.warn(f"DyT impl 'compiled' fell back to 'fused' in this process: {_failure}", stacklevel=3)
        return out


class CompiledDyT(FusedDyT):
    """FusedDyT (saves only x; ATen forward) whose backward is one Inductor kernel instead of 8 ATen passes.

    The forward stays ATen's: a compiled one was no faster here (0.47 ms either way at 1M floats, one pass
    against three that hit the cache), and ATen's gives eager's exact numbers to evaluation, uncompiled.
    """

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        x, alpha, weight = ctx.saved_tensors
        args = (grad, x, alpha, weight, ctx.needs_input_grad, ctx.bias_dtype)
        return _run(backward_traced, lambda: FusedDyT.backward(ctx, grad), *args)


def compiled_dyt(
    x: torch.Tensor, alpha: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None
):
    return CompiledDyT.apply(x, alpha, weight, bias)
