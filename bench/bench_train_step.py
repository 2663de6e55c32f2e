"""Training-step benchmark: the DyT model against the same-shape RMSNorm model and plain LlamaForCausalLM.

    python bench/bench_train_step.py [--configs tiny,60m] [--compile] [--device cpu|cuda] [--dtype float32|bf16]
        [--seq-len N] [--batch-size N] [--out bench/results/train_step.json]

For each config (model shape from configs/<name>.yaml) three models of identical shape are built from the
same seed: "dyt" (DyTLlamaForCausalLM, norm_type=dyt), "rmsnorm" (DyTLlamaForCausalLM, norm_type=rmsnorm:
our model in LLaMA mode) and "llama" (transformers' LlamaForCausalLM). A step is what the pretraining loop
does per optimizer step with one micro-batch: forward with the loop's own `micro_step_loss`, backward,
gradient clipping, AdamW (the loop's `build_optimizer`), zero_grad. Batches are random tokens.

Timing: the models take turns within every repeat (the order rotates), so background load lands on all of
them alike; a ratio is the median over repeats of the per-repeat ratio of two models' step times, and
tokens/s is batch * seq_len over the median step time. `--compile` adds a second mode in which every
decoder layer is `layer.compile(fullgraph=True)`'d, as pretrain.py --compile does.

Peak memory of a training step = the bytes that live across steps (parameters, buffers, AdamW state) plus
the peak of what the step allocates on top (activations saved for backward, gradients, temporaries). On
CUDA the second term is max_memory_allocated during the step minus memory_allocated before it. On CPU it
comes from the profiler's allocator trace (profile_memory=True reports the running total that c10's CPU
allocator holds, at every allocation and free made during the step): the same quantity as CUDA's, exact
and deterministic, which RSS is not (glibc keeps freed pages, threads have arenas, and a fresh process per
model would not share the warm-up). The profiled step is an extra, untimed step after the timed ones.

MFU (CUDA only): dyt_llama.train.metrics.flops_per_token (6N + 12*L*H*Q*T) times tokens/s over the device's
dense bf16 peak (H100/H200: 989 TFLOP/s).
"""

import argparse
import contextlib
import datetime
import gc
import importlib
import importlib.util
import json
import os
import platform
import statistics
import sys
import time
import types
from pathlib import Path

import torch
import transformers
from transformers import LlamaConfig, LlamaForCausalLM

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # runnable from a checkout without install
from dyt_llama.config import DyTLlamaConfig  # noqa: E402
from dyt_llama.malloc import retain_freed_memory  # noqa: E402
from dyt_llama.model import DyTLlamaForCausalLM  # noqa: E402


def train_module(name: str):
    """dyt_llama.train.<name>. The package's __init__ imports the loop, hence accelerate and datasets, which
    a bare GPU machine may lack; args, metrics and optim need neither, so they load from their files then."""
    try:
        return importlib.import_module(f"dyt_llama.train.{name}")
    except Exception:  # ImportError, or a broken install of one of those
        spec = importlib.util.spec_from_file_location(
            f"_bench_train_{name}", REPO / "dyt_llama" / "train" / f"{name}.py"
        )
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module


load_yaml = train_module("args").load_yaml
flops_per_token, peak_flops = train_module("metrics").flops_per_token, train_module("metrics").peak_flops
build_optimizer = train_module("optim").build_optimizer
try:
    from dyt_llama.train.loop import micro_step_loss
except Exception:  # the same call as the loop's (no KV cache: with one, every compiled layer recompiles)

    def micro_step_loss(model, batch: dict, num_items: torch.Tensor) -> torch.Tensor:
        ids, labels = batch["input_ids"], batch["labels"]
        return model(input_ids=ids, labels=labels, num_items_in_batch=num_items, use_cache=False).loss


MODELS = ("dyt", "rmsnorm", "llama")
# Opt-in: the RMSNorm model with every norm an identity, the ceiling that no norm's speed can pass.
CEILING = "nonorm"
LLAMA_VOCAB = 32000  # the shipped configs other than tiny use meta-llama/Llama-2-7b-hf's tokenizer
CPU_SHAPE = {"seq_len": 256, "batch_size": 4}  # CPU default for configs other than tiny (at most this)
QUICK = {"seq_len": 64, "batch_size": 2, "layers": 2, "vocab": 4096, "repeats": 2, "warmup": 1}

# The targets. CPU: fp32 on a 2-core machine; CUDA: bf16 + torch.compile on an H200.
TARGETS = {
    "dyt_vs_rmsnorm_tiny": 1.03,  # tokens/s, tiny config
    "dyt_vs_rmsnorm_any": 1.00,  # never slower, any shipped config
    "rmsnorm_vs_llama": 0.98,  # our model in rmsnorm mode against LlamaForCausalLM
    "dyt_mem_vs_rmsnorm": 1.00,  # DyT peak memory no more than RMSNorm's
    "mfu": 0.45,  # 350m or 1b, bf16, compiled
}
OPTIM_ARGS = types.SimpleNamespace(
    lr=3e-4,
    beta1=0.9,
    beta2=0.95,
    adam_eps=1e-8,
    weight_decay=0.1,
    weight_decay_policy="all",
    adamw_fused=True,
)
GRAD_CLIP = 1.0


# ----------------------------------------------------------------------------------------------
# models


def config_shape(name: str, args) -> dict:
    """The model shape and batch of configs/<name>.yaml, with the command line's overrides."""
    path = Path(name) if name.endswith((".yaml", ".yml")) else REPO / "configs" / f"{name}.yaml"
    cfg = load_yaml(str(path))
    vocab = cfg.get("vocab_size") or (
        LLAMA_VOCAB if cfg.get("tokenizer") else cfg.get("tokenizer_vocab_size")
    )
    shape = {
        "hidden_size": cfg.get("hidden_size", 256),
        "intermediate_size": cfg.get("intermediate_size", 688),
        "num_hidden_layers": cfg.get("num_hidden_layers", 4),
        "num_attention_heads": cfg.get("num_attention_heads", 4),
        "num_key_value_heads": cfg.get("num_key_value_heads") or cfg.get("num_attention_heads", 4),
        "vocab_size": vocab or 4096,
        "tie_word_embeddings": cfg.get("tie_word_embeddings", False),
    }
    alphas = {
        k: cfg[k] for k in ("dyt_alpha_init_attn", "dyt_alpha_init_ffn", "dyt_alpha_init_final") if k in cfg
    }
    seq_len, batch = cfg.get("seq_len", 256), cfg.get("batch_size", 16)
    if args.device == "cpu" and Path(path).stem != "tiny":  # the GPU configs' batches: hours on CPU
        seq_len, batch = min(seq_len, CPU_SHAPE["seq_len"]), min(batch, CPU_SHAPE["batch_size"])
    if args.quick:
        seq_len, batch = min(seq_len, QUICK["seq_len"]), min(batch, QUICK["batch_size"])
        shape["num_hidden_layers"] = min(shape["num_hidden_layers"], QUICK["layers"])
        shape["vocab_size"] = min(shape["vocab_size"], QUICK["vocab"])
    seq_len = args.seq_len or seq_len
    batch = args.batch_size or batch
    shape["num_hidden_layers"] = args.layers or shape["num_hidden_layers"]
    shape["vocab_size"] = args.vocab or shape["vocab_size"]
    shape["max_position_embeddings"] = seq_len
    return {
        "name": Path(path).stem,
        "shape": shape,
        "alphas": alphas,
        "seq_len": seq_len,
        "batch_size": batch,
    }


def build(kind: str, spec: dict, device: torch.device) -> torch.nn.Module:
    torch.manual_seed(0)  # same weights wherever the shapes agree
    shape = spec["shape"]
    with torch.device(device):  # initialised where it runs: a 1B model's init on the host takes a while
        if kind == "llama":
            model = LlamaForCausalLM(LlamaConfig(**shape))
        elif kind == CEILING:
            model = DyTLlamaForCausalLM(DyTLlamaConfig(norm_type="rmsnorm", **shape))
            for layer in model.model.layers:
                layer.input_layernorm = layer.post_attention_layernorm = torch.nn.Identity()
            model.model.norm = torch.nn.Identity()
        else:
            alphas = spec["alphas"] if kind == "dyt" else {}
            model = DyTLlamaForCausalLM(DyTLlamaConfig(norm_type=kind, **shape, **alphas))
    return model.to(device).train()


def compile_layers(model: torch.nn.Module, options: dict) -> None:
    for layer in model.model.layers:  # what pretrain.py --compile does
        layer.compile(fullgraph=True, **({"options": options} if options else {}))


def compile_options_for(choice: str, device: torch.device) -> dict:
    if choice == "none":
        return {}
    from dyt_llama.kernels import compile_options  # the package's recommendation for code with DyT

    return compile_options(device)


class Trainee:
    """One model with its optimizer and the callable that runs one training step on a fixed batch."""

    def __init__(self, kind, spec, device, autocast_dtype, mode: str, options: dict, experiments=()):
        self.kind = kind
        self.model = build(kind, spec, device)
        if mode == "compiled":
            compile_layers(self.model, options)
            if "compile_loss" in experiments:  # lm_head's cross-entropy as one Inductor graph (an experiment)
                self.model.loss_function = torch.compile(self.model.loss_function, dynamic=False)
        self.optimizer = build_optimizer(self.model, OPTIM_ARGS)
        g = torch.Generator().manual_seed(1)
        ids = torch.randint(
            0, spec["shape"]["vocab_size"], (spec["batch_size"], spec["seq_len"]), generator=g
        )
        self.batch = {"input_ids": ids.to(device), "labels": ids.to(device)}
        self.num_items = (self.batch["labels"][:, 1:] != -100).sum()
        self.autocast = (
            (lambda: torch.autocast(device.type, dtype=autocast_dtype))
            if autocast_dtype is not None
            else contextlib.nullcontext
        )

    def step(self) -> None:
        with self.autocast():
            loss = micro_step_loss(self.model, self.batch, self.num_items)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), GRAD_CLIP)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def state_bytes(self) -> int:
        """Bytes that live across steps: parameters, buffers and optimizer state (distinct storages)."""
        tensors = [*self.model.parameters(), *self.model.buffers()]
        for state in self.optimizer.state.values():
            tensors += [t for t in state.values() if torch.is_tensor(t)]
        storages = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in tensors}
        return sum(storages.values())


# ----------------------------------------------------------------------------------------------
# measurement


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def step_peak_bytes(trainee: Trainee, device: torch.device) -> int:
    """Peak bytes allocated by one training step on top of what was allocated before it."""
    if device.type == "cuda":
        sync(device)
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        trainee.step()
        sync(device)
        return torch.cuda.max_memory_allocated(device) - before
    from torch._C._profiler import _EventType
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        trainee.step()
    allocations = []
    stack = list(prof.profiler.kineto_results.experimental_event_tree())
    while stack:
        event = stack.pop()
        stack.extend(event.children)
        if event.tag == _EventType.Allocation and event.extra_fields.device.type == "cpu":
            fields = event.extra_fields
            allocations.append((event.start_time_ns, fields.total_allocated, fields.alloc_size))
    if not allocations:
        return 0
    allocations.sort()
    # total_allocated is the allocator's running count of bytes allocated while profiling and still live
    # (it can start above 0 after an earlier profiled step); the first event tells us where it started.
    start = allocations[0][1] - allocations[0][2]
    return max(total for _, total, _ in allocations) - start


def time_mode(
    spec,
    mode,
    kinds,
    device,
    autocast_dtype,
    repeats,
    warmup,
    options,
    experiments=(),
    clock=time.perf_counter,
):
    """Interleaved step times of every model in one mode; then one untimed memory-profiled step each."""
    trainees = {}
    for kind in kinds:
        trainees[kind] = Trainee(kind, spec, device, autocast_dtype, mode, options, experiments)
    times = {kind: [] for kind in kinds}
    compile_s = {}
    for r in range(warmup + repeats):
        order = kinds[r % len(kinds) :] + kinds[: r % len(kinds)]  # rotate who goes first
        for kind in order:
            sync(device)
            t0 = clock()
            trainees[kind].step()
            sync(device)
            dt = clock() - t0
            if r == 0:
                compile_s[kind] = dt  # first step: compilation (compiled mode) and allocator warm-up
            if r >= warmup:
                times[kind].append(dt)
    out = {}
    for kind, trainee in trainees.items():
        state = trainee.state_bytes()
        peak = state + step_peak_bytes(trainee, device)
        out[kind] = {
            "times": times[kind],
            "first_step_s": compile_s[kind],
            "state_bytes": state,
            "peak_bytes": peak,
        }
        params = sum(p.numel() for p in trainee.model.parameters())
        out[kind]["params"] = params
        out[kind]["flops_per_token"] = flops_per_token(trainee.model, spec["seq_len"])
    del trainees
    # Every model compiles LlamaDecoderLayer.forward anew (its config is a guard), and Dynamo keeps 8
    # versions per code object: a run over several configs and modes would overflow that.
    torch._dynamo.reset()
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return out


def paired_ratio(slow: list[float], fast: list[float]) -> dict:
    """Median and quartiles over repeats of slow[i] / fast[i]: the speed of `fast` relative to `slow`.
    Also the ratio of the two fastest steps, which background load (it only ever adds time) moves least."""
    ratios = sorted(s / f for s, f in zip(slow, fast))
    q = statistics.quantiles(ratios, n=4, method="inclusive") if len(ratios) > 1 else [ratios[0]] * 3
    return {"median": statistics.median(ratios), "q1": q[0], "q3": q[2], "best": min(slow) / min(fast)}


def summarize(spec: dict, mode: str, raw: dict, device: torch.device) -> dict:
    tokens = spec["batch_size"] * spec["seq_len"]
    peak = peak_flops(device)
    models = {}
    for kind, r in raw.items():
        med = statistics.median(r["times"])
        models[kind] = {
            "step_ms": med * 1e3,
            "tokens_per_s": tokens / med,
            "peak_mem_mb": r["peak_bytes"] / 2**20,
            "state_mem_mb": r["state_bytes"] / 2**20,
            "first_step_s": r["first_step_s"],
            "params": r["params"],
            "flops_per_token": r["flops_per_token"],
            "mfu": r["flops_per_token"] * tokens / med / peak if peak else None,
            "step_ms_all": [t * 1e3 for t in r["times"]],
        }
    ratios = {}
    if "dyt" in raw and "rmsnorm" in raw:
        ratios["dyt_vs_rmsnorm"] = paired_ratio(raw["rmsnorm"]["times"], raw["dyt"]["times"])
        ratios["dyt_mem_vs_rmsnorm"] = raw["dyt"]["peak_bytes"] / raw["rmsnorm"]["peak_bytes"]
    if "rmsnorm" in raw and "llama" in raw:
        ratios["rmsnorm_vs_llama"] = paired_ratio(raw["llama"]["times"], raw["rmsnorm"]["times"])
    if "dyt" in raw and "llama" in raw:
        ratios["dyt_vs_llama"] = paired_ratio(raw["llama"]["times"], raw["dyt"]["times"])
    if CEILING in raw and "rmsnorm" in raw:  # what deleting the norms would gain: DyT's upper bound
        ratios["nonorm_vs_rmsnorm"] = paired_ratio(raw["rmsnorm"]["times"], raw[CEILING]["times"])
    return {
        "config": spec["name"],
        "mode": mode,
        "seq_len": spec["seq_len"],
        "batch_size": spec["batch_size"],
        "shape": spec["shape"],
        "models": models,
        "ratios": ratios,
        "checks": checks(spec, ratios, models, device),
    }


def checks(spec: dict, ratios: dict, models: dict, device: torch.device) -> dict:
    """Pass/fail against the issue's targets that apply to this row."""
    out = {}
    if device.type == "cpu":
        if "dyt_vs_rmsnorm" in ratios:
            key = "dyt_vs_rmsnorm_tiny" if spec["name"] == "tiny" else "dyt_vs_rmsnorm_any"
            out[key] = ratios["dyt_vs_rmsnorm"]["median"] >= TARGETS[key]
        if "rmsnorm_vs_llama" in ratios:
            out["rmsnorm_vs_llama"] = ratios["rmsnorm_vs_llama"]["median"] >= TARGETS["rmsnorm_vs_llama"]
    if "dyt_mem_vs_rmsnorm" in ratios:
        out["dyt_mem_vs_rmsnorm"] = ratios["dyt_mem_vs_rmsnorm"] <= TARGETS["dyt_mem_vs_rmsnorm"]
    mfus = [m["mfu"] for m in models.values() if m["mfu"] is not None]
    if mfus:
        out["mfu"] = max(mfus) >= TARGETS["mfu"]
    return out


def print_row(row: dict) -> None:
    print(
        f"\n{row['config']} [{row['mode']}] batch {row['batch_size']} x seq {row['seq_len']}"
        f" ({row['batch_size'] * row['seq_len']} tokens/step)"
        + (", times in process CPU seconds" if row.get("clock") == "cpu" else "")
    )
    head = f"{'model':<8} {'step ms':>9} {'tokens/s':>10} {'peak MB':>9} {'state MB':>9} {'1st step s':>10} {'MFU':>6}"
    print(head)
    print("-" * len(head))
    for kind, m in row["models"].items():
        mfu = f"{m['mfu'] * 100:5.1f}%" if m["mfu"] is not None else f"{'-':>6}"
        print(
            f"{kind:<8} {m['step_ms']:9.1f} {m['tokens_per_s']:10.1f} {m['peak_mem_mb']:9.1f}"
            f" {m['state_mem_mb']:9.1f} {m['first_step_s']:10.1f} {mfu}"
        )
    for name, r in row["ratios"].items():
        if isinstance(r, dict):
            print(
                f"  {name:<20} {r['median']:.3f}x  (quartiles {r['q1']:.3f} .. {r['q3']:.3f};"
                f" fastest steps {r['best']:.3f}x)"
            )
        else:
            print(f"  {name:<20} {r:.3f}x")
    for name, ok in row["checks"].items():
        print(f"  target {name:<22} {'PASS' if ok else 'FAIL'}")


# ----------------------------------------------------------------------------------------------
# main


def machine(device: torch.device) -> dict:
    info = {
        "host": platform.node(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "cpu": cpu_name(),
        "loadavg_start": os.getloadavg(),
    }
    if device.type == "cuda":
        info["device_name"] = torch.cuda.get_device_name(device)
        info["cuda"] = torch.version.cuda
        try:
            import triton

            info["triton"] = triton.__version__
        except ImportError:
            info["triton"] = None
    return info


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor()


def append_json(path: Path, row: dict, replace_last: bool = False) -> None:
    """The file holds a JSON list of runs; a new run is appended (or replaces the last: a run's update)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = []
    if path.exists():
        try:
            rows = json.loads(path.read_text())
        except json.JSONDecodeError:
            rows = []
        rows = rows if isinstance(rows, list) else [rows]
    if replace_last and rows:
        rows.pop()
    rows.append(row)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(rows, indent=1) + "\n")
    os.replace(tmp, path)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--configs", default="tiny", help="comma-separated names under configs/ (or yaml paths)")
    p.add_argument(
        "--models",
        default=",".join(MODELS),
        help=f"subset of {','.join(MODELS)}, or {CEILING} (every norm an identity: the ceiling for DyT)",
    )
    p.add_argument(
        "--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cpu", "cuda"]
    )
    p.add_argument(
        "--dtype", default=None, choices=["float32", "bf16"], help="default: bf16 on CUDA, else fp32"
    )
    p.add_argument("--compile", action="store_true", help="also time per-layer compiled models")
    p.add_argument("--modes", default=None, help="eager,compiled (overrides --compile)")
    p.add_argument(
        "--compile-options",
        default="none",
        choices=["none", "dyt"],
        help="none: as pretrain.py; dyt: dyt_llama.kernels.compile_options (tanh decomposed on CPU)",
    )
    p.add_argument("--seq-len", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--layers", type=int, default=None, help="override num_hidden_layers")
    p.add_argument("--vocab", type=int, default=None, help="override vocab_size")
    p.add_argument("--repeats", type=int, default=None, help="timed steps per model (default 7 CPU, 10 CUDA)")
    p.add_argument(
        "--warmup", type=int, default=None, help="untimed steps per model first (default 2, 3 compiled)"
    )
    p.add_argument(
        "--adamw-fused", choices=["true", "false"], default="true", help="as pretrain.py's adamw_fused"
    )
    p.add_argument("--compile-loss", action="store_true", help="compiled mode: compile the loss function too")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    p.add_argument(
        "--cpu-time",
        action="store_true",
        help="time steps in process CPU seconds: with --threads 1, ratios that a loaded machine barely moves",
    )
    p.add_argument("--quick", action="store_true", help="smoke test: 2 layers, short batches, 2 repeats")
    p.add_argument("--out", default="bench/results/train_step.json", help="JSON list; this run is appended")
    return p.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: CUDA is not available")
    dtype = args.dtype or ("bf16" if device.type == "cuda" else "float32")
    autocast_dtype = torch.bfloat16 if dtype == "bf16" else None
    modes = args.modes.split(",") if args.modes else (["eager", "compiled"] if args.compile else ["eager"])
    kinds = [k for k in args.models.split(",") if k]
    unknown = set(kinds) - {*MODELS, CEILING} | set(modes) - {"eager", "compiled"}
    if unknown:
        raise SystemExit(f"unknown model(s) or mode(s): {sorted(unknown)}")
    repeats = args.repeats or (QUICK["repeats"] if args.quick else 10 if device.type == "cuda" else 7)
    experiments = ["compile_loss"] if args.compile_loss else []
    OPTIM_ARGS.adamw_fused = args.adamw_fused == "true"
    if device.type == "cpu":
        retain_freed_memory()  # as pretrain.py does on CPU, for every model alike
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.cpu_time and device.type != "cpu":
        raise SystemExit("--cpu-time measures CPU steps; on CUDA the wall clock is the measure")
    clock = time.process_time if args.cpu_time else time.perf_counter
    options = compile_options_for(args.compile_options, device)
    if device.type == "cuda":
        torch.set_float32_matmul_precision("high")  # TF32 for any fp32 matmul left outside autocast

    result = {
        "bench": "train_step",
        "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "device": args.device,
        "dtype": dtype,
        "machine": machine(device),
        "settings": {
            "repeats": repeats,
            "compile_options": args.compile_options,
            "quick": args.quick,
            "optimizer": "AdamW " + json.dumps(vars(OPTIM_ARGS)),
            "experiments": experiments,
            "clock": "process_time (CPU seconds)" if args.cpu_time else "wall",
            "grad_clip": GRAD_CLIP,
        },
        "targets": TARGETS,
        "rows": [],
    }
    out = Path(args.out)
    for name in args.configs.split(","):
        spec = config_shape(name, args)
        for mode in modes:
            warmup = args.warmup if args.warmup is not None else (QUICK["warmup"] if args.quick else 2)
            warmup = max(warmup, 1) + (1 if mode == "compiled" and args.warmup is None else 0)
            t0 = time.perf_counter()
            raw = time_mode(
                spec, mode, kinds, device, autocast_dtype, repeats, warmup, options, experiments, clock
            )
            row = summarize(spec, mode, raw, device)
            row["wall_s"] = time.perf_counter() - t0
            row["clock"] = "cpu" if args.cpu_time else "wall"
            result["rows"].append(row)
            print_row(row)
            result["machine"]["loadavg_end"] = os.getloadavg()
            append_json(
                out, result, replace_last=len(result["rows"]) > 1
            )  # saved row by row: a timeout keeps some
    print(
        f"\nload average {result['machine']['loadavg_start'][0]:.2f} -> {result['machine']['loadavg_end'][0]:.2f}"
    )
    print(f"appended to {out}")
    return result


if __name__ == "__main__":
    main()
