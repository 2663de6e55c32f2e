"""Norm-layer benchmark: DyT (eager, fused, compiled, Triton, torch.compile) against LlamaRMSNorm and F.rms_norm.

    python bench/bench_norm.py [--device cpu|cuda] [--dtype float32|bfloat16] [--out bench/results/norm.json]
    python bench/bench_norm.py --threads 1 --cpu-time   # on a shared CPU: counts only this process's work

Every layer runs in the same process, interleaved within each repeat so that background load hits all
of them alike; times are medians over the repeats and ratios are taken against the two RMSNorms of the
same run. Memory: bytes saved for backward (from saved_tensors_hooks, any device) and, on CUDA, the peak
allocated during forward+backward. GB/s counts the minimal traffic of a norm layer (forward reads x and
writes y, backward reads x and dy and writes dx: 5 tensors) against a device-to-device copy of x.
"""

import argparse
import datetime
import json
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
import transformers
from torch import nn
from transformers.models.llama.modeling_llama import LlamaRMSNorm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable from a checkout without install
from bench_train_step import cpu_name  # noqa: E402  (bench/ is on the path: this script's folder)

from dyt_llama.kernels import dyt, resolve_impl  # noqa: E402

SHAPES = {
    "cpu": [(8, 512, 512), (4, 1024, 1024), (2, 2048, 2048)],
    "cuda": [(8, 2048, 2048), (8, 4096, 4096), (4, 4096, 8192)],
}
CPU_TARGETS = {"vs_llama": 0.30, "vs_rms_norm": 0.45}  # fastest DyT fwd+bwd, fraction of each baseline
CUDA_TARGET_COPY_FRACTION = 0.85  # Triton DyT fwd+bwd bandwidth vs a device-to-device copy


class DyTLayer(nn.Module):
    def __init__(self, hidden: int, impl: str):
        super().__init__()
        self.impl = impl
        self.alpha = nn.Parameter(torch.full((1,), 0.5))
        self.weight = nn.Parameter(torch.ones(hidden))

    def forward(self, x):
        return dyt(x, self.alpha, self.weight, impl=self.impl)


class RMSNormLayer(nn.Module):
    """torch.nn.functional.rms_norm with LlamaRMSNorm's eps."""

    def __init__(self, hidden: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden))
        self.eps = eps

    def forward(self, x):
        return F.rms_norm(x, (x.shape[-1],), self.weight, self.eps)


def build_layers(
    hidden: int, device: torch.device, dtype: torch.dtype, compile_: bool
) -> dict[str, nn.Module]:
    layers = {
        "LlamaRMSNorm": LlamaRMSNorm(hidden),
        "F.rms_norm": RMSNormLayer(hidden),
        "DyT eager": DyTLayer(hidden, "eager"),
        "DyT fused": DyTLayer(hidden, "fused"),
    }
    for impl in ("compiled", "triton") if device.type == "cuda" else ("compiled",):
        try:
            resolve_impl(impl, device)
            layers[f"DyT {impl}"] = DyTLayer(hidden, impl)
        except ValueError as err:
            print(f"skipping DyT {impl}: {err}")
    layers = {name: layer.to(device=device, dtype=dtype) for name, layer in layers.items()}
    if compile_:  # the layer inside torch.compile: one static graph per shape
        layer = DyTLayer(hidden, "auto").to(device=device, dtype=dtype)
        layers["DyT torch.compile"] = torch.compile(layer, dynamic=False)
    return layers


class Clock:
    """Time marks that wait for the device first: wall clock, or this thread's CPU time.

    CPU time leaves out the time the OS gives other processes, which on a shared machine is most of the
    noise; it only measures all the work with a single thread (--threads 1).
    """

    def __init__(self, device: torch.device, cpu_time: bool = False):
        self.sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
        self.now = time.thread_time if cpu_time else time.perf_counter

    def __call__(self) -> float:
        self.sync()
        return self.now()


def saved_bytes(layer: nn.Module, x: torch.Tensor, grad: torch.Tensor) -> int:
    """Bytes of the distinct storages autograd keeps for backward (x itself counts when kept)."""
    storages = {}

    def pack(t):
        storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        y = layer(x)
    y.backward(grad)
    return sum(storages.values())


def cuda_peak_bytes(layer: nn.Module, x: torch.Tensor, grad: torch.Tensor) -> int:
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    layer(x).backward(grad)
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() - base


def fwd_and_fwdbwd_time(layer: nn.Module, x0: torch.Tensor, grad: torch.Tensor, clock: Clock, inner: int):
    """Seconds per forward and per forward+backward, each averaged over `inner` back-to-back calls.

    On CUDA the calls are queued without a sync in between, so launch overhead hides behind the kernels
    as it does in training; on CPU one call, split into its forward and backward parts.
    """
    x = x0.detach().requires_grad_()
    if inner == 1:
        t0 = clock()
        y = layer(x)
        t1 = clock()
        y.backward(grad)
        t2 = clock()
        layer.zero_grad(set_to_none=True)
        return t1 - t0, t2 - t0
    t0 = clock()
    for _ in range(inner):
        layer(x)
    t1 = clock()
    for _ in range(inner):
        x.grad = None  # no accumulation kernels: each backward writes fresh gradients
        layer.zero_grad(set_to_none=True)
        layer(x).backward(grad)
    t2 = clock()
    return (t1 - t0) / inner, (t2 - t1) / inner


def bench_shape(shape, device, dtype, repeats, warmup, compile_, cpu_time=False) -> list[dict]:
    torch.manual_seed(0)
    x0 = torch.randn(shape, device=device, dtype=dtype)
    grad = torch.randn_like(x0)
    layers = build_layers(shape[-1], device, dtype, compile_)
    clock = Clock(device, cpu_time)
    inner = 10 if device.type == "cuda" else 1
    fwd = {name: [] for name in layers}
    fwdbwd = {name: [] for name in layers}
    copies = []
    for it in range(warmup + repeats):
        for name, layer in layers.items():  # interleaved: load spikes land on every layer
            f, fb = fwd_and_fwdbwd_time(layer, x0, grad, clock, inner)
            if it >= warmup:
                fwd[name].append(f)
                fwdbwd[name].append(fb)
        t0 = clock()
        for _ in range(inner):
            torch.empty_like(x0).copy_(x0)  # the bandwidth reference, in the same loop
        if it >= warmup:
            copies.append((clock() - t0) / inner)

    elem = x0.element_size() * x0.numel()
    copy_gbs = 2 * elem / statistics.median(copies) / 1e9
    med = {name: (statistics.median(fwd[name]), statistics.median(fwdbwd[name])) for name in layers}
    rows = []
    for name, layer in layers.items():
        f, fb = med[name]
        row = {
            "shape": list(shape),
            "layer": name,
            "fwd_ms": f * 1e3,
            "fwdbwd_ms": fb * 1e3,
            "fwd_vs_llama": f / med["LlamaRMSNorm"][0],
            "fwdbwd_vs_llama": fb / med["LlamaRMSNorm"][1],
            "fwd_vs_rms_norm": f / med["F.rms_norm"][0],
            "fwdbwd_vs_rms_norm": fb / med["F.rms_norm"][1],
            "saved_mb": saved_bytes(layer, x0.detach().requires_grad_(), grad) / 2**20,
            "peak_mb": cuda_peak_bytes(layer, x0.detach().requires_grad_(), grad) / 2**20
            if device.type == "cuda"
            else None,
            "fwdbwd_gbs": 5 * elem / fb / 1e9,
            "copy_gbs": copy_gbs,
        }
        row["fwdbwd_copy_fraction"] = row["fwdbwd_gbs"] / copy_gbs
        rows.append(row)
        layer.zero_grad(set_to_none=True)
    return rows


def print_table(rows: list[dict]) -> None:
    head = (
        f"{'shape':>16} {'layer':<16} {'fwd ms':>8} {'f+b ms':>8} {'f/Llama':>8} {'f+b/Llama':>9}"
        f" {'f/rms':>6} {'f+b/rms':>8} {'saved MB':>8} {'peak MB':>8} {'f+b GB/s':>8} {'/copy':>6}"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        peak = f"{r['peak_mb']:8.1f}" if r["peak_mb"] is not None else f"{'-':>8}"
        print(
            f"{'x'.join(map(str, r['shape'])):>16} {r['layer']:<16} {r['fwd_ms']:8.2f} {r['fwdbwd_ms']:8.2f}"
            f" {r['fwd_vs_llama']:8.2f} {r['fwdbwd_vs_llama']:9.2f} {r['fwd_vs_rms_norm']:6.2f}"
            f" {r['fwdbwd_vs_rms_norm']:8.2f} {r['saved_mb']:8.1f} {peak} {r['fwdbwd_gbs']:8.1f}"
            f" {r['fwdbwd_copy_fraction']:6.2f}"
        )


def summarize(rows: list[dict], device: torch.device, dtype: torch.dtype) -> list[dict]:
    """Per shape: the fastest DyT against both baselines, and the Triton kernels against a copy."""
    out = []
    for shape in dict.fromkeys(tuple(r["shape"]) for r in rows):
        dyts = [r for r in rows if tuple(r["shape"]) == shape and r["layer"].startswith("DyT")]
        best = min(dyts, key=lambda r: r["fwdbwd_ms"])
        line = {
            "shape": list(shape),
            "fastest_dyt": best["layer"],
            "fwdbwd_vs_llama": best["fwdbwd_vs_llama"],
            "fwdbwd_vs_rms_norm": best["fwdbwd_vs_rms_norm"],
        }
        if device.type == "cpu" and dtype == torch.float32:  # the CPU targets are stated for fp32
            line["meets_cpu_target"] = (
                best["fwdbwd_vs_llama"] <= CPU_TARGETS["vs_llama"]
                and best["fwdbwd_vs_rms_norm"] <= CPU_TARGETS["vs_rms_norm"]
            )
        triton = [r for r in dyts if r["layer"] == "DyT triton"]
        if triton:
            line["triton_copy_fraction"] = triton[0]["fwdbwd_copy_fraction"]
            line["meets_cuda_target"] = triton[0]["fwdbwd_copy_fraction"] >= CUDA_TARGET_COPY_FRACTION
        out.append(line)
    return out


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    p.add_argument("--out", default="bench/results/norm.json", help="JSON row written here")
    p.add_argument("--shapes", default=None, help="e.g. 8x512x512,4x1024x1024 (default: per device)")
    p.add_argument("--repeats", type=int, default=7, help="timed repeats per layer; the median is reported")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument(
        "--cpu-time", action="store_true", help="time with this thread's CPU time (CPU, --threads 1 only)"
    )
    p.add_argument("--no-compile", action="store_true", help="skip the torch.compile'd DyT")
    args = p.parse_args(argv)

    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.cpu_time and (device.type != "cpu" or torch.get_num_threads() != 1):
        p.error("--cpu-time counts one thread's work: use it with --device cpu --threads 1")
    if device.type == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: CUDA is not available")
    shapes = (
        [tuple(int(d) for d in s.split("x")) for s in args.shapes.split(",")]
        if args.shapes
        else SHAPES[device.type]
    )
    rows = []
    for shape in shapes:
        rows += bench_shape(
            shape, device, dtype, args.repeats, args.warmup, not args.no_compile, args.cpu_time
        )
        print_table([r for r in rows if tuple(r["shape"]) == shape])
        print()
    summary = summarize(rows, device, dtype)
    for s in summary:
        extra = "".join(f" {k}={v}" for k, v in s.items() if k.startswith(("meets", "triton")))
        print(
            f"{'x'.join(map(str, s['shape']))}: fastest {s['fastest_dyt']}: fwd+bwd "
            f"{s['fwdbwd_vs_llama']:.2f}x LlamaRMSNorm, {s['fwdbwd_vs_rms_norm']:.2f}x F.rms_norm{extra}"
        )
    result = {
        "bench": "norm",
        "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "device": args.device,
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name(),
        "threads": torch.get_num_threads(),
        "clock": "thread_cpu_time" if args.cpu_time else "wall",
        "dtype": args.dtype,
        "repeats": args.repeats,
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
        "rows": rows,
        "summary": summary,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {out}")
    return result


if __name__ == "__main__":
    main()
