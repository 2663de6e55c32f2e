"""DyT as a Triton kernel pair: one read of x per direction, float32 math, no atomics.

Forward reads x and writes y. Backward reads x and the output gradient, recomputes tanh, writes dx, and
reduces the weight/bias/alpha gradients in registers: each program walks a strided set of row blocks for
one column block and stores ONE partial row, so no two programs ever write the same address; a torch
`.sum(0)` over the few partial rows finishes the reduction.

Triton is imported here and only here; without it `AVAILABLE` is False and the package still imports.
`TRITON_INTERPRET=1` must be set before this module is imported: `triton.jit` reads it when it decorates.
"""

import os

import torch
from torch.autograd.function import once_differentiable

try:
    import triton
    import triton.language as tl
except ImportError:  # CPU-only installs: the eager and fused paths need no Triton
    triton = None

AVAILABLE = triton is not None
DTYPES = (torch.float32, torch.bfloat16, torch.float16)  # the math is float32 whatever the input
# Kernels decorated under TRITON_INTERPRET run in numpy on CPU tensors (the CPU tests use this).
INTERPRETED = AVAILABLE and os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")

if AVAILABLE:

    @triton.jit
    def _tanh(z):
        # exp form: libdevice tanh is not in the interpreter; |error| ~1e-7 near 0, exact +-1 at overflow.
        return 1.0 - 2.0 / (tl.exp(2.0 * z) + 1.0)

    @triton.jit
    def _dyt_fwd_kernel(
        X, Y, A, W, B, M, N, stride_x, stride_y,
        HAS_BIAS: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    ):  # fmt: skip
        rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
        rows64 = rows.to(tl.int64)[:, None]  # row * stride can pass 2**31 on large activations
        cols = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
        col_ok = cols < N
        mask = (rows[:, None] < M) & col_ok[None, :]
        x = tl.load(X + rows64 * stride_x + cols[None, :], mask=mask, other=0.0)
        # Parameters are rounded to x's dtype first, as the eager formula does; the math is float32.
        a = tl.load(A).to(x.dtype).to(tl.float32)
        w = tl.load(W + cols, mask=col_ok, other=0.0).to(x.dtype).to(tl.float32)
        y = _tanh(a * x.to(tl.float32)) * w[None, :]
        if HAS_BIAS:
            y += tl.load(B + cols, mask=col_ok, other=0.0).to(x.dtype).to(tl.float32)[None, :]
        tl.store(Y + rows64 * stride_y + cols[None, :], y.to(Y.dtype.element_ty), mask=mask)

    @triton.jit
    def _dyt_bwd_kernel(
        X, G, DX, A, W, PART_W, PART_B, PART_A, M, N, stride_x, stride_g, stride_dx,
        BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    ):  # fmt: skip
        pid_m, pid_n = tl.program_id(0), tl.program_id(1)
        num_m = tl.num_programs(0)
        cols = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
        col_ok = cols < N
        x_dtype = X.dtype.element_ty
        a = tl.load(A).to(x_dtype).to(tl.float32)
        w = tl.load(W + cols, mask=col_ok, other=0.0).to(x_dtype).to(tl.float32)
        acc_w = tl.zeros((BLOCK_M, BLOCK_N), tl.float32)  # sum of g * t
        acc_b = tl.zeros((BLOCK_M, BLOCK_N), tl.float32)  # sum of g
        acc_a = tl.zeros((BLOCK_M, BLOCK_N), tl.float32)  # sum of g * w * (1 - t^2) * x
        for start in range(pid_m * BLOCK_M, M, num_m * BLOCK_M):
            rows = start + tl.arange(0, BLOCK_M)
            rows64 = rows.to(tl.int64)[:, None]
            mask = (rows[:, None] < M) & col_ok[None, :]
            x = tl.load(X + rows64 * stride_x + cols[None, :], mask=mask, other=0.0).to(tl.float32)
            g = tl.load(G + rows64 * stride_g + cols[None, :], mask=mask, other=0.0).to(tl.float32)
            t = _tanh(a * x)
            d = g * w[None, :] * (1.0 - t * t)
            tl.store(DX + rows64 * stride_dx + cols[None, :], (d * a).to(DX.dtype.element_ty), mask=mask)
            acc_w += g * t
            acc_b += g
            acc_a += d * x
        # Masked lanes loaded zeros, so they add nothing to the sums.
        tl.store(PART_W + pid_m * N + cols, tl.sum(acc_w, axis=0), mask=col_ok)
        tl.store(PART_B + pid_m * N + cols, tl.sum(acc_b, axis=0), mask=col_ok)
        tl.store(PART_A + pid_m * tl.num_programs(1) + pid_n, tl.sum(tl.sum(acc_a, axis=1), axis=0))


if AVAILABLE and not INTERPRETED:
    # Tile height and warps are tuned once per channel count on the GPU; the tile width stays fixed since
    # it sets the grid's column count and with it the size of the partial sums.
    def _configs(pairs):
        return [triton.Config({"BLOCK_M": block_m}, num_warps=warps) for block_m, warps in pairs]

    _fwd_kernel = triton.autotune(_configs([(1, 4), (2, 4), (4, 4), (4, 8), (8, 8)]), key=["N"])(
        _dyt_fwd_kernel
    )
    _bwd_kernel = triton.autotune(_configs([(1, 4), (2, 4), (2, 8), (4, 8)]), key=["N"])(_dyt_bwd_kernel)
elif AVAILABLE:  # the interpreter cannot time configs: one fixed tile of about 4K elements
    _fwd_kernel, _bwd_kernel = _dyt_fwd_kernel, _dyt_bwd_kernel


def _launch_args(block_n: int) -> dict:
    """Meta-parameters the autotuner does not choose (all of them under the interpreter)."""
    if not INTERPRETED:
        return {"BLOCK_N": block_n}
    return {"BLOCK_N": block_n, "BLOCK_M": max(1, 4096 // block_n), "num_warps": 4}


def _block_n(n: int) -> int:
    return min(triton.next_power_of_2(n), 1024)


def _rows(t: torch.Tensor) -> torch.Tensor:
    """(rows, channels) view with unit channel stride; copies only when no such view exists."""
    t2 = t.reshape(-1, t.shape[-1])
    return t2 if t2.stride(-1) == 1 else t2.contiguous()


def _num_row_programs(m: int, col_programs: int, device: torch.device) -> int:
    """Enough programs to fill the device (4 per SM), few enough that the partial rows stay small."""
    if device.type == "cuda":
        target = 4 * torch.cuda.get_device_properties(device).multi_processor_count
    else:  # the interpreter runs programs one after another: fewer is faster
        target = 4
    return max(1, min(m, triton.cdiv(target, col_programs)))


class TritonDyT(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, alpha, weight, bias=None):
        x2 = _rows(x)
        m, n = x2.shape
        y = torch.empty((m, n), dtype=x.dtype, device=x.device)
        block_n = _block_n(n)
        cols = triton.cdiv(n, block_n)
        _fwd_kernel[lambda meta: (triton.cdiv(m, meta["BLOCK_M"]), cols)](
            x2, y, alpha, weight, weight if bias is None else bias, m, n, x2.stride(0), y.stride(0),
            HAS_BIAS=bias is not None, **_launch_args(block_n),
        )  # fmt: skip
        ctx.save_for_backward(x, alpha, weight)
        ctx.bias_dtype = None if bias is None else bias.dtype
        return y.view(x.shape)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        x, alpha, weight = ctx.saved_tensors
        x2, g2 = _rows(x), _rows(grad)
        m, n = x2.shape
        dx = torch.empty((m, n), dtype=x.dtype, device=x.device)
        block_n = _block_n(n)
        cols = triton.cdiv(n, block_n)
        rows = _num_row_programs(m, cols, x.device)
        part_w = torch.empty((rows, n), dtype=torch.float32, device=x.device)
        part_b = torch.empty_like(part_w)
        part_a = torch.empty((rows, cols), dtype=torch.float32, device=x.device)
        _bwd_kernel[(rows, cols)](
            x2, g2, dx, alpha, weight, part_w, part_b, part_a, m, n, x2.stride(0), g2.stride(0), dx.stride(0),
            **_launch_args(block_n),
        )  # fmt: skip
        d_alpha = part_a.sum().reshape(1).to(alpha.dtype)
        d_weight = part_w.sum(0).to(weight.dtype)
        d_bias = part_b.sum(0).to(ctx.bias_dtype) if ctx.bias_dtype is not None else None
        return dx.view(x.shape), d_alpha, d_weight, d_bias
