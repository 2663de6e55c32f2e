"""Dynamic Tanh, DyT(x) = weight * tanh(alpha * x) [+ bias]: the paper's drop-in replacement for RMSNorm."""

import torch
from torch import nn


def dyt_eager(x, alpha, weight, bias=None):
    # The input dtype throughout, as in the paper's code: no upcast, no statistics, no eps.
    out = torch.tanh(alpha.to(x.dtype) * x) * weight.to(x.dtype)
    return out if bias is None else out + bias.to(x.dtype)


try:  # the kernels ship with the package; a checkpoint's copied code (trust_remote_code) runs without them
    from dyt_llama.kernels import dyt as _dyt_kernel
except ImportError:
    _dyt_kernel = None


class DyT(nn.Module):
    """`alpha` is ONE learnable scalar (shape (1,)), `weight` is per channel; `bias` only in the generic form."""

    def __init__(self, hidden_size: int, alpha_init: float = 1.0, bias: bool = False, impl: str = "auto"):
        super().__init__()
        self.alpha_init = alpha_init
        self.impl = impl
        self.alpha = nn.Parameter(torch.full((1,), float(alpha_init)))
        self.weight = nn.Parameter(torch.ones(hidden_size))
        self.bias = nn.Parameter(torch.zeros(hidden_size)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if _dyt_kernel is None or self.impl == "eager":
            return dyt_eager(x, self.alpha, self.weight, self.bias)
        return _dyt_kernel(x, self.alpha, self.weight, self.bias, impl=self.impl)

    def reset_parameters(self) -> None:
        with torch.no_grad():
            self.alpha.fill_(self.alpha_init)
            self.weight.fill_(1.0)
            if self.bias is not None:
                self.bias.zero_()

    def extra_repr(self) -> str:
        return f"{tuple(self.weight.shape)}, alpha_init={self.alpha_init}, bias={self.bias is not None}"
