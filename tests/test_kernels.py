"""DyT kernels: fused and Triton against the eager formula, impl resolution, torch.compile without breaks."""

import json
import os
import subprocess
import sys

import pytest
import torch

from dyt_llama import kernels
from dyt_llama.kernels import (
    IMPLS,
    compile_options,
    compiled,
    compiled_dyt,
    dyt,
    eager_dyt,
    fused_dyt,
    resolve_impl,
    triton_dyt,
)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def make_inputs(shape, bias, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    hidden = shape[-1]
    x = (torch.randn(shape, generator=g) * 2).to(dtype)
    params = [torch.tensor([0.7]), torch.randn(hidden, generator=g)]
    if bias:
        params.append(torch.randn(hidden, generator=g))
    return x, params, torch.randn(shape, generator=g).to(dtype)


def run(fn, x, params, grad_out):
    """Output and gradients (x first, then each parameter) of one forward/backward."""
    x = x.detach().requires_grad_()
    params = [p.detach().clone().requires_grad_() for p in params]
    y = fn(x, *params)
    y.backward(grad_out)
    return [y.detach(), x.grad] + [p.grad for p in params]


def assert_all_close(got, want, **tol):
    names = ["y", "dx", "dalpha", "dweight", "dbias"]
    for name, a, b in zip(names, got, want):
        assert a.shape == b.shape, name
        torch.testing.assert_close(a, b, msg=lambda m, name=name: f"{name}: {m}", **tol)


def assert_fused_equals_eager(x, params, grad_out):
    """The issue's bar: fused within 1e-6 of eager in float32, output and every gradient."""
    want = run(eager_dyt, x, params, grad_out)
    assert_all_close(run(fused_dyt, x, params, grad_out), want, rtol=1e-6, atol=1e-6)


def assert_matches_float64(fn, x, params, grad_out, tol=2e-6):
    """fn against eager DyT in float64, for kernels whose tanh is 2 * sigmoid(2z) - 1 (one exp instead of a
    slow vector tanh; |error| ~1e-7 per element in float32). The bar is tol per element: for y and dx
    relative to their largest magnitude, for the parameter gradients relative to the sum of the absolute
    terms that they add up (cancellation in a sum magnifies per-element errors, not per-term ones)."""
    got = run(fn, x, params, grad_out)
    x64, g64, (a64, w64, *b64) = x.double(), grad_out.double(), [p.double() for p in params]
    want = run(eager_dyt, x64, [a64, w64, *b64], g64)
    rows = tuple(range(x.dim() - 1))
    terms = [want[0], want[1], (g64 * w64 * x64).abs().sum(), g64.abs().sum(rows), g64.abs().sum(rows)]
    for name, a, b, term in zip(["y", "dx", "dalpha", "dweight", "dbias"], got, want, terms):
        assert a.dtype == x.dtype and a.shape == b.shape, name
        err, scale = (a.double() - b).abs().max().item(), term.abs().max().item()
        assert err <= tol * max(scale, 1.0), f"{name}: |err| {err:.3g} vs scale {scale:.3g}"


SHAPES = [(16,), (7, 16), (2, 5, 33), (3, 4, 6, 64)]


@pytest.mark.parametrize("bias", [False, True], ids=["nobias", "bias"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_fused_matches_eager_fp32(shape, bias):
    x, params, grad_out = make_inputs(shape, bias)
    assert_fused_equals_eager(x, params, grad_out)


@pytest.mark.parametrize("layout", ["transposed", "strided_channels", "expanded_grad"])
def test_fused_non_contiguous(layout):
    x, params, grad_out = make_inputs((5, 6, 32), bias=True)
    if layout == "transposed":
        x, grad_out = x.transpose(0, 1), grad_out.transpose(0, 1)
    elif layout == "strided_channels":
        x, grad_out = x[..., ::2], grad_out[..., ::2]
        params = [params[0], params[1][:16], params[2][:16]]
    else:  # what y.sum().backward() hands back: a stride-0 gradient
        grad_out = torch.ones(()).expand(x.shape)
    assert not x.is_contiguous() or not grad_out.is_contiguous()
    assert_fused_equals_eager(x, params, grad_out)


def test_fused_gradcheck_float64():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, 4, 5, dtype=torch.float64, generator=g, requires_grad=True)
    alpha = torch.tensor([0.8], dtype=torch.float64, requires_grad=True)
    weight = torch.randn(5, dtype=torch.float64, generator=g, requires_grad=True)
    bias = torch.randn(5, dtype=torch.float64, generator=g, requires_grad=True)
    assert torch.autograd.gradcheck(fused_dyt, (x, alpha, weight, bias))
    assert torch.autograd.gradcheck(fused_dyt, (x, alpha, weight))


def test_fused_saves_only_the_input():
    x, params, _ = make_inputs((4, 8, 32), bias=True)
    x.requires_grad_()
    params = [p.requires_grad_() for p in params]
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        fused_dyt(x, *params)
    assert [tuple(t.shape) for t in saved] == [(4, 8, 32), (1,), (32,)]  # x, alpha, weight: no tanh
    assert saved[0].data_ptr() == x.data_ptr()


def test_fused_partial_grads():
    """Frozen parameters or a constant input: only the requested gradients, still equal to eager."""
    x, (alpha, weight, bias), grad_out = make_inputs((6, 16), bias=True)
    for frozen in ("x", "alpha", "weight", "bias"):
        got, want = [], []
        for fn, out in ((fused_dyt, got), (eager_dyt, want)):
            leaves = {"x": x.clone(), "alpha": alpha.clone(), "weight": weight.clone(), "bias": bias.clone()}
            for name, t in leaves.items():
                t.requires_grad_(name != frozen)
            fn(*leaves.values()).backward(grad_out)
            out += [leaves[name].grad for name in leaves]
        for name, a, b in zip(("x", "alpha", "weight", "bias"), got, want):
            if name == frozen:
                assert a is None and b is None
            else:
                torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)


def test_fused_bfloat16_close_to_eager():
    x, params, grad_out = make_inputs((4, 8, 64), bias=True, dtype=torch.bfloat16)
    got = run(fused_dyt, x, params, grad_out)
    want = run(eager_dyt, x, params, grad_out)
    assert got[0].dtype == got[1].dtype == torch.bfloat16 and got[2].dtype == torch.float32
    assert_all_close(got, want, rtol=2e-2, atol=5e-2)


def test_dyt_dispatch_matches_eager():
    x, params, grad_out = make_inputs((2, 3, 16), bias=True)
    want = run(eager_dyt, x, params, grad_out)
    for impl in ("auto", "eager", "fused"):  # auto: "fused" at this size
        got = run(lambda *a, impl=impl: dyt(*a, impl=impl), x, params, grad_out)
        assert_all_close(got, want, rtol=1e-6, atol=1e-6)
    assert_matches_float64(lambda *a: dyt(*a, impl="compiled"), x, params, grad_out)


def test_auto_on_cpu_compiles_the_backward_of_large_tensors_only():
    alpha, weight = torch.tensor([0.5], requires_grad=True), torch.ones(256, requires_grad=True)
    small, large = torch.randn(4, 256), torch.randn(kernels.COMPILED_MIN_NUMEL // 256, 256)
    assert type(dyt(small, alpha, weight).grad_fn).__name__ == "FusedDyTBackward"
    y = dyt(large, alpha, weight)
    assert type(y.grad_fn).__name__ == "CompiledDyTBackward"
    torch.testing.assert_close(y, eager_dyt(large, alpha, weight), rtol=0, atol=0)  # ATen's forward
    y.sum().backward()
    assert alpha.grad is not None and weight.grad is not None


# --- compiled: Inductor kernels called from eager code ----------------------------------------------------
# Each signature (rank, dtype, bias, which gradients) compiles once per process (seconds), so a few cases.


def test_compiled_matches_eager():
    for shape, bias in (((7, 16), False), ((2, 5, 33), True), ((3, 4, 33), True)):  # the last: new sizes
        assert_matches_float64(compiled_dyt, *make_inputs(shape, bias))


def test_compiled_partial_grads_and_no_grad():
    x, (alpha, weight, bias), grad_out = make_inputs((6, 16), bias=True)
    leaves = [x.clone(), alpha.clone().requires_grad_(), weight.clone(), bias.clone()]  # only alpha trains
    compiled_dyt(*leaves).backward(grad_out)
    want = [t.detach().clone().requires_grad_(i == 1) for i, t in enumerate(leaves)]
    eager_dyt(*want).backward(grad_out)
    torch.testing.assert_close(leaves[1].grad, want[1].grad, rtol=1e-5, atol=1e-5)
    assert leaves[0].grad is None and leaves[2].grad is None
    with torch.inference_mode():  # evaluation: forward only
        y = compiled_dyt(x, alpha, weight, bias)
    torch.testing.assert_close(y, eager_dyt(x, alpha, weight, bias), rtol=1e-6, atol=1e-6)


def test_compiled_backward_is_deterministic():
    """Resumed runs are bitwise equal to uninterrupted ones on CPU: the kernel's reductions must not vary."""
    x, params, grad_out = make_inputs((64, 9, 64), bias=True)
    first, second = run(compiled_dyt, x, params, grad_out), run(compiled_dyt, x, params, grad_out)
    assert_all_close(first, second, rtol=0, atol=0)


def test_compiled_gradcheck_float64():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, 4, 5, dtype=torch.float64, generator=g, requires_grad=True)
    alpha = torch.tensor([0.8], dtype=torch.float64, requires_grad=True)
    weight = torch.randn(5, dtype=torch.float64, generator=g, requires_grad=True)
    assert torch.autograd.gradcheck(compiled_dyt, (x, alpha, weight))


def test_compiled_bad_input_raises_and_stays_enabled():
    x, (alpha, weight), _ = make_inputs((4, 16), bias=False)
    with pytest.raises(RuntimeError, match="size of tensor"):
        compiled_dyt(x, alpha, weight[:8])
    assert compiled.unavailable(torch.device("cpu")) is None and not compiled.failed()


def test_compiled_falls_back_to_fused_when_compiling_fails(monkeypatch):
    def broken(fn, signature):
        def call(*args):
            raise RuntimeError("InductorError: cannot find Python.h\nmore lines")

        return call

    monkeypatch.setattr(compiled, "_compiled", broken)
    monkeypatch.setattr(compiled, "_failure", None)  # restored afterwards: other tests keep the kernels
    x, params, grad_out = make_inputs((2, 5, 16), bias=True)
    with pytest.warns(UserWarning, match="fell back to 'fused'.*cannot find Python.h$") as record:
        got = run(compiled_dyt, x, params, grad_out)
    assert len(record) == 1  # once per process, not per call
    assert_all_close(got, run(fused_dyt, x, params, grad_out), rtol=0, atol=0)
    assert resolve_impl("auto", "cpu") == "fused"


# --- impl resolution ---------------------------------------------------------------------------------


def test_resolve_impl_names():
    assert IMPLS == ("auto", "eager", "fused", "compiled", "triton")
    assert resolve_impl("auto", "cpu") == "compiled"  # this machine has g++
    assert resolve_impl("compiled", "cpu") == "compiled"
    assert resolve_impl("eager", "cpu") == "eager"
    assert resolve_impl("fused", torch.device("cpu")) == "fused"
    with pytest.raises(ValueError, match="unknown DyT impl 'cuda'"):
        resolve_impl("cuda", "cpu")


def test_resolve_impl_auto_on_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(triton_dyt, "AVAILABLE", True)
    assert resolve_impl("auto", "cuda") == "triton"
    assert resolve_impl("triton", "cuda:0") == "triton"
    monkeypatch.setattr(triton_dyt, "AVAILABLE", False)
    assert resolve_impl("auto", "cuda") == "fused"


def test_resolve_impl_without_cxx(monkeypatch):
    monkeypatch.setenv("CXX", "no-such-c++")
    assert resolve_impl("auto", "cpu") == "fused"
    with pytest.raises(
        ValueError, match=r"^DyT impl 'compiled' cannot run on cpu: no C\+\+ compiler .*no-such-c\+\+"
    ):
        resolve_impl("compiled", "cpu")


@pytest.mark.skipif(triton_dyt.INTERPRETED, reason="this process interprets Triton on CPU")
def test_triton_unavailable_on_cpu():
    with pytest.raises(ValueError, match=r"^DyT impl 'triton' cannot run on cpu: .*CUDA") as err:
        resolve_impl("triton", "cpu")
    assert "\n" not in str(err.value)
    x, params, _ = make_inputs((2, 8), bias=False)
    with pytest.raises(ValueError, match="cannot run on cpu"):
        dyt(x, *params, impl="triton")


def test_triton_unavailable_without_package(monkeypatch):
    monkeypatch.setattr(triton_dyt, "AVAILABLE", False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    with pytest.raises(ValueError, match="`triton` package is not installed"):
        resolve_impl("triton", "cuda")


def test_compile_options():
    assert compile_options("cpu") == {"cpp.use_decompose_tanh": True}
    assert compile_options("cuda") == {}


# --- torch.compile -------------------------------------------------------------------------------------


class Block(torch.nn.Module):
    """A DyT between two matmuls, like its place in a decoder layer."""

    def __init__(self, impl, hidden=32):
        super().__init__()
        self.impl = impl
        self.up = torch.nn.Linear(hidden, hidden)
        self.alpha = torch.nn.Parameter(torch.tensor([0.6]))
        self.weight = torch.nn.Parameter(torch.linspace(0.5, 1.5, hidden))
        self.bias = torch.nn.Parameter(torch.linspace(-0.1, 0.1, hidden))
        self.down = torch.nn.Linear(hidden, hidden)

    def forward(self, x):
        return self.down(dyt(self.up(x), self.alpha, self.weight, self.bias, impl=self.impl))


@pytest.mark.parametrize("impl", ["auto", "fused"])
def test_compile_fullgraph_matches_eager(impl):
    torch.manual_seed(0)
    block = Block(impl)
    x = torch.randn(2, 5, 32)
    compiled = torch.compile(block, fullgraph=True)  # raises on any graph break
    got = compiled(x)
    got.square().sum().backward()
    got_grads = [p.grad.clone() for p in block.parameters()]
    block.zero_grad()
    want = block(x)
    want.square().sum().backward()
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    for a, b in zip(got_grads, [p.grad for p in block.parameters()]):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_compile_has_no_graph_break():
    explanation = torch._dynamo.explain(Block("auto"))(torch.randn(2, 5, 32))
    assert explanation.graph_break_count == 0 and explanation.graph_count == 1


def first(out):
    return out[0] if isinstance(out, tuple) else out


@pytest.mark.parametrize("impl", ["auto", "fused"])
def test_decoder_layer_compiles_fullgraph(impl, tiny_kwargs):
    """The training loop compiles each decoder layer with fullgraph=True: one graph, forward and backward.

    aot_eager traces both directions as Inductor would, without its minutes of C++ codegen on a small CPU.
    """
    from dyt_llama.config import DyTLlamaConfig
    from dyt_llama.model import DyTLlamaModel

    torch.manual_seed(0)
    model = DyTLlamaModel(
        DyTLlamaConfig(norm_type="dyt", dyt_impl=impl, **dict(tiny_kwargs, num_hidden_layers=1))
    )
    layer = model.layers[0]
    h = torch.randn(2, 8, tiny_kwargs["hidden_size"])
    pe = model.rotary_emb(h, torch.arange(8)[None].expand(2, -1))

    explanation = torch._dynamo.explain(layer)(h, position_embeddings=pe)
    assert explanation.graph_break_count == 0 and explanation.graph_count == 1
    compiled = torch.compile(layer, fullgraph=True, backend="aot_eager")
    got = first(compiled(h, position_embeddings=pe))
    got.square().sum().backward()
    grads = {name: p.grad.clone() for name, p in layer.named_parameters()}
    layer.zero_grad()
    want = first(layer(h, position_embeddings=pe))
    want.square().sum().backward()
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    for name, p in layer.named_parameters():
        torch.testing.assert_close(grads[name], p.grad, rtol=1e-5, atol=1e-5, msg=name)


# --- Triton: interpreted on CPU in a child process (TRITON_INTERPRET must precede the import), and on CUDA

# Ragged rows and channels with strided row loops; tiny; two column blocks.
TRITON_CASES = [((3, 100, 33), True), ((7, 16), False), ((6, 1500), True)]
TRITON_DTYPES = ["float32", "bfloat16", "float16"]
# |error| / largest magnitude for (y and dx, parameter gradients), against float64 math. The kernels round
# once, at the store; the interpreter truncates float32 -> bfloat16 (GPUs round to nearest), so bf16 gets
# a whole ulp.
TRITON_TOL = {"float32": (2e-6, 2e-6), "bfloat16": (1.6e-2, 1e-2), "float16": (2e-3, 2e-3)}
GRAD_NAMES = ["y", "dx", "dalpha", "dweight", "dbias"]


def case_key(dtype, shape, bias):
    return f"{dtype}-{'x'.join(map(str, shape))}-{bias}"


def triton_errors(device: str) -> dict:
    """Per case and tensor: [max |triton - float64 eager|, max |float64 eager|, triton's dtype, same shape]."""
    out = {}
    for dtype in TRITON_DTYPES:
        for shape, bias in TRITON_CASES:
            x, params, grad = make_inputs(shape, bias, getattr(torch, dtype))
            x, grad, params = x.to(device), grad.to(device), [p.to(device) for p in params]
            got = run(lambda *a: dyt(*a, impl="triton"), x, params, grad)
            # The reference sees the parameters rounded to x's dtype, as the eager formula and the kernel do.
            rounded = [p.to(x.dtype).double() for p in params]
            want = run(eager_dyt, x.double(), rounded, grad.double())
            out[case_key(dtype, shape, bias)] = {
                name: [
                    (a.double() - b).abs().max().item(),
                    b.abs().max().item(),
                    str(a.dtype),
                    a.shape == b.shape,
                ]
                for name, a, b in zip(GRAD_NAMES, got, want)
            }
    return out


def check_triton_case(errors: dict, dtype: str) -> None:
    act_tol, param_tol = TRITON_TOL[dtype]
    for name, (err, scale, got_dtype, same_shape) in errors.items():
        assert same_shape, name
        assert got_dtype == (f"torch.{dtype}" if name in ("y", "dx") else "torch.float32"), name
        tol = act_tol if name in ("y", "dx") else param_tol
        assert err <= tol * max(scale, 1.0), f"{dtype} {name}: |err| {err:.3g} vs scale {scale:.3g}"


_CHILD = """
import json, sys, torch
sys.path.insert(0, TESTS)
import test_kernels as t
from dyt_llama.kernels import dyt, resolve_impl, triton_dyt
assert triton_dyt.INTERPRETED and resolve_impl("triton", "cpu") == "triton"
try:  # float64 would silently drop to float32 math
    dyt(torch.zeros(2, 4, dtype=torch.float64), torch.ones(1), torch.ones(4), impl="triton")
    raise AssertionError("float64 accepted")
except ValueError as err:
    assert "float64" in str(err)
print("RESULT" + json.dumps(t.triton_errors("cpu")))
"""


@pytest.fixture(scope="module")
def triton_interpreted():
    if not triton_dyt.AVAILABLE:
        pytest.skip("triton is not installed")
    script = _CHILD.replace("TESTS", repr(os.path.join(REPO, "tests")))
    path = os.pathsep.join(filter(None, [REPO, os.environ.get("PYTHONPATH")]))
    env = dict(os.environ, TRITON_INTERPRET="1", PYTHONPATH=path)
    proc = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(s for s in proc.stdout.splitlines() if s.startswith("RESULT"))
    return json.loads(line[len("RESULT") :])


@pytest.mark.parametrize("dtype", TRITON_DTYPES)
@pytest.mark.parametrize("shape,bias", TRITON_CASES, ids=["ragged", "tiny", "two_col_blocks"])
def test_triton_interpreted_matches_eager(triton_interpreted, dtype, shape, bias):
    check_triton_case(triton_interpreted[case_key(dtype, shape, bias)], dtype)


@pytest.mark.skipif(not (torch.cuda.is_available() and triton_dyt.AVAILABLE), reason="needs CUDA and triton")
def test_triton_cuda_matches_eager():
    assert resolve_impl("auto", "cuda") == "triton"
    errors = triton_errors("cuda")
    for dtype in TRITON_DTYPES:
        for shape, bias in TRITON_CASES:
            check_triton_case(errors[case_key(dtype, shape, bias)], dtype)


def test_kernels_module_exports():
    assert set(kernels.__all__) >= {"dyt", "resolve_impl", "IMPLS", "eager_dyt", "fused_dyt"}
