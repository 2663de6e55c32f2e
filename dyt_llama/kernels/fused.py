"""Fused DyT as one autograd function: saves only the input, recomputes tanh in backward.

Eager DyT keeps two full-size tensors for backward (x for the alpha gradient and tanh(alpha*x) for the
rest); this keeps only x. Run eagerly, each direction uses in-place ops so that its passes share one
buffer. Traced by torch.compile, it gives Inductor plain formulas to fuse instead (see `forward_traced`, `backward_traced`).
"""

import torch
from torch.autograd.function import once_differentiable


def _acc_dtype(dtype: torch.dtype) -> torch.dtype:
    """Reductions accumulate in at least float32, whatever the input dtype."""
    return torch.promote_types(dtype, torch.float32)


def _sum_rows(t: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
    """Sum over the leading dims (none for a 1-D input: `sum(())` would reduce everything)."""
    return t.sum(dims, dtype=_acc_dtype(t.dtype)) if dims else t.to(_acc_dtype(t.dtype))


def _sum_of_product(a: torch.Tensor, b: torch.Tensor, out: torch.Tensor | None) -> torch.Tensor:
    """sum(a * b) over all elements; a BLAS dot when both are plainly laid out (no full-size temporary)."""
    if a.dtype in (torch.float32, torch.float64) and a.is_contiguous() and b.is_contiguous():
        return torch.dot(a.view(-1), b.view(-1))
    prod = torch.mul(a, b, out=out) if out is not None else a * b
    return prod.sum(dtype=_acc_dtype(a.dtype))


def _column_sums(t: torch.Tensor) -> torch.Tensor:
    """Per-channel sums over all leading dims, as the compiler should emit them.

    On CPU a GEMV (ones @ rows) streams memory row by row; Inductor's own column reduction walks it column
    by column, 3x slower as measured here, and the GEMV made the compiled backward about 20% faster.
    """
    acc = _acc_dtype(t.dtype)
    rows = t.reshape(-1, t.shape[-1]).to(acc)
    if t.device.type == "cpu" and t.dim() > 1:
        return (rows.new_ones(1, rows.shape[0]) @ rows).view(-1)
    return rows.sum(0)


def _tanh_traced(z: torch.Tensor) -> torch.Tensor:
    """tanh as the compiler should emit it.

    On CPU Inductor's tanh is Sleef's 1-ulp tanh, 4-5x slower than its exp and the main cost of a compiled
    DyT there; 2 * sigmoid(2z) - 1 compiles to one exp (|error| ~1e-7, exactly +-1 at the ends).
    """
    return 2 * torch.sigmoid(2 * z) - 1 if z.device.type == "cpu" else torch.tanh(z)


def forward_traced(x, alpha, weight, bias=None):
    """The forward as out-of-place formulas, for torch.compile: one pass over x."""
    y = _tanh_traced(alpha.to(x.dtype) * x) * weight.to(x.dtype)
    return y if bias is None else y + bias.to(x.dtype)


def backward_traced(grad, x, alpha, weight, needs, bias_dtype):
    """The backward as out-of-place formulas: torch.compile fuses them into one pass over x and grad
    (plus, on CPU, GEMVs for the channel sums)."""
    need_x, need_alpha, need_weight, need_bias = needs
    a, w = alpha.to(x.dtype), weight.to(x.dtype)
    t = _tanh_traced(a * x)
    d = grad * w * (1 - t * t)
    d_x = d * a if need_x else None
    d_alpha = (d * x).sum(dtype=_acc_dtype(x.dtype)).reshape(1).to(alpha.dtype) if need_alpha else None
    d_weight = _column_sums(grad * t).to(weight.dtype) if need_weight else None
    d_bias = _column_sums(grad).to(bias_dtype) if need_bias else None
    return d_x, d_alpha, d_weight, d_bias


class FusedDyT(torch.autograd.Function):
    """y = tanh(alpha * x) * weight [+ bias], computed in x's dtype; gradients for x, alpha, weight, bias."""

    @staticmethod
    def forward(ctx, x, alpha, weight, bias=None):
        ctx.save_for_backward(x, alpha, weight)
        ctx.bias_dtype = None if bias is None else bias.dtype
        if torch.compiler.is_compiling():
            return forward_traced(x, alpha, weight, bias)
        a, w = alpha.to(x.dtype), weight.to(x.dtype)
        y = torch.mul(x, a).tanh_()
        if bias is None:
            return y.mul_(w)
        return torch.addcmul(bias.to(x.dtype), y, w, out=y)

    @staticmethod
    @once_differentiable  # the in-place recompute is not itself differentiable
    def backward(ctx, grad):
        x, alpha, weight = ctx.saved_tensors
        if torch.compiler.is_compiling():
            return backward_traced(grad, x, alpha, weight, ctx.needs_input_grad, ctx.bias_dtype)
        need_x, need_alpha, need_weight, need_bias = ctx.needs_input_grad
        rows = tuple(range(x.dim() - 1))  # weight and bias are shared by every leading index
        a, w = alpha.to(x.dtype), weight.to(x.dtype)

        t = torch.mul(x, a).tanh_()
        scratch = None  # one full-size temporary, reused for both products that are reduced
        d_weight = d_bias = d_x = d_alpha = None
        if need_weight:
            scratch = grad * t
            d_weight = _sum_rows(scratch, rows).to(weight.dtype)
        if need_bias:
            d_bias = _sum_rows(grad, rows).to(ctx.bias_dtype)
        if need_x or need_alpha:
            # d = grad * weight * (1 - t^2), written over t: tanh_backward is grad * (1 - t^2) in one pass.
            d = torch.ops.aten.tanh_backward.grad_input(grad, t, grad_input=t).mul_(w)
            if need_alpha:
                d_alpha = _sum_of_product(d, x, scratch).reshape(1).to(alpha.dtype)
            if need_x:
                d_x = d.mul_(a)
        return d_x, d_alpha, d_weight, d_bias


def fused_dyt(x: torch.Tensor, alpha: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None):
    return FusedDyT.apply(x, alpha, weight, bias)
