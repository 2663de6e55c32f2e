"""What a run reports: JSONL metrics per step, tokens/s, MFU against the accelerator's peak, memory, alphas."""

import json
import os
import resource
import sys
from pathlib import Path

import torch

# Dense bf16 peak FLOP/s by device name (no sparsity). No entry: no MFU (CPUs, unknown parts).
PEAK_BF16_FLOPS = {
    "H200": 989e12,
    "H100": 989e12,
    "A100": 312e12,
    "L40S": 362e12,
    "A10G": 125e12,
    "4090": 165e12,
}


def peak_flops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAK_BF16_FLOPS.items() if k in name), None)


def flops_per_token(model, seq_len: int) -> float:
    """6N for the weights' matmuls plus 12*L*H*Q*T for attention (PaLM's appendix B); embeddings excluded."""
    config = model.config
    n = sum(p.numel() for name, p in model.named_parameters() if "embed_tokens" not in name)
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    return 6 * n + 12 * config.num_hidden_layers * config.num_attention_heads * head_dim * seq_len


def peak_memory_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return rss if sys.platform == "darwin" else rss * 1024


def dyt_alphas(model) -> dict[str, float]:
    """Each DyT's alpha by site, e.g. {"layers.0.attn": 0.81, ..., "final": 0.97}: the paper's alpha trajectories."""
    out = {}
    for name, p in model.named_parameters():
        if name.endswith(".alpha") and p.numel() == 1:
            site = name.replace("model.", "", 1).removesuffix(".alpha")
            site = site.replace("input_layernorm", "attn").replace("post_attention_layernorm", "ffn")
            out["final" if site == "norm" else site] = float(p.detach().float().item())
    return out


class MetricsLog:
    """Appends one JSON object per line. On resume, the lines after the checkpoint's step are dropped, so a
    resumed run's file equals an uninterrupted run's (a torn last line from a kill is dropped too)."""

    def __init__(self, path: str | Path, resume_step: int | None, enabled: bool = True):
        self.path = Path(path)
        self.enabled = enabled
        if enabled:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._truncate_after(resume_step or 0)

    def _truncate_after(self, step: int) -> None:
        if not self.path.exists():
            return
        keep = []
        for line in self.path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if row.get("step", 0) <= step:
                keep.append(line)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text("".join(line + "\n" for line in keep), encoding="utf-8")
        os.replace(tmp, self.path)

    def write(self, row: dict) -> None:
        if self.enabled:
            with self.path.open("a", encoding="utf-8") as f:
                f.write(json.dumps(row) + "\n")


def read_metrics(path: str | Path) -> list[dict]:
    rows = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows
