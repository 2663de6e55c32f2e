"""The three layer-removal protocols, each measured by the perplexity (and chosen zero-shot accuracies) of the
model with the layers actually removed: similarity is only a proxy for what removal costs.

- sweep (Curse of Depth, Sun et al. 2025): remove each layer alone;
- bi (ShortGPT, Men et al. 2024): Block Influence per layer; remove the n lowest-BI layers, n = 1..L-1;
- angular (Gromov et al. 2024): d(l, n) for every l, n; remove the n-layer block of smallest distance, and,
  as their baseline, the n layers before the final one.

Every removal is a `without_layers` swap on the one loaded model, and each distinct set of removed layers is
evaluated once, however many protocols ask for it.
"""

import time

import torch

from dyt_llama.eval.perplexity import token_perplexity
from dyt_llama.eval.results import SHOWN

from .removal import check_removal, decoder_layers, without_layers
from .similarity import best_blocks, drop_last, layer_similarity, lowest_bi

PROTOCOLS = ("sweep", "bi", "angular")


def calibration_blocks(ids: list[int], seq_len: int) -> torch.Tensor:
    """The token stream cut into full (N, seq_len) blocks for the hidden-state pass (one short block if the
    stream is shorter than seq_len)."""
    if len(ids) < 2:
        raise ValueError(
            "the calibration set is empty (fewer than 2 tokens) — pass a text file with --ablation-data"
        )
    n = len(ids) // seq_len
    if n == 0:
        return torch.tensor([ids], dtype=torch.long)
    return torch.tensor(ids[: n * seq_len], dtype=torch.long).view(n, seq_len)


def _task_summary(metrics: dict) -> dict:
    keep = [m for m in SHOWN if m in metrics]
    return {**{m: metrics[m] for m in keep}, **{f"{m}_stderr": metrics.get(f"{m}_stderr") for m in keep}}


class Evaluator:
    """Perplexity of the calibration tokens, and the chosen tasks, with a set of layers removed; memoized.

    ids: the calibration token stream, tokenized once by the caller; max_length: its perplexity windows.
    task_kwargs go to run_tasks (data_dir, limit, task_data, max_length, bootstrap_iters, ...). log: a
    callable that gets a line per evaluation.
    """

    def __init__(
        self,
        model,
        tokenizer,
        ids,
        max_length: int,
        batch_size: int = 8,
        tasks=(),
        task_kwargs=None,
        log=None,
    ):
        self.model, self.tokenizer, self.ids, self.log = model, tokenizer, ids, log
        self.max_length, self.batch_size = max_length, batch_size
        self.tasks, self.task_kwargs = list(tasks), dict(task_kwargs or {})
        self.num_layers = len(decoder_layers(model))
        self.cache: dict[tuple, dict] = {}
        self.seconds = 0.0

    def __call__(self, removed) -> dict:
        key = tuple(sorted(removed))
        if key not in self.cache:
            if key:
                check_removal(key, self.num_layers, "removal")
            t0 = time.perf_counter()
            with without_layers(self.model, list(key)) as model:
                ppl = token_perplexity(model, self.ids, self.max_length, None, self.batch_size)
                tasks = {}
                if self.tasks:
                    from dyt_llama.eval.runner import run_tasks

                    results = run_tasks(
                        model,
                        self.tokenizer,
                        self.tasks,
                        batch_size=self.batch_size,
                        progress=False,
                        **self.task_kwargs,
                    )
                    tasks = {name: _task_summary(m) for name, m in results.items()}
            self.cache[key] = {
                "removed": list(key),
                "perplexity": ppl["perplexity"],
                "loss": ppl["loss"],
                "tasks": tasks,
            }
            seconds = time.perf_counter() - t0
            self.seconds += seconds
            if self.log:
                self.log(f"  removed {list(key)}: perplexity {ppl['perplexity']:.3f} ({seconds:.1f}s)")
        return dict(self.cache[key])

    def measured(self, removed, base: dict) -> dict:
        """evaluate(removed) with its changes against the full model `base`."""
        out = self(removed)
        out["delta_perplexity"] = out["perplexity"] - base["perplexity"]
        out["delta_loss"] = out["loss"] - base["loss"]
        out["delta_tasks"] = {
            task: {m: v - base["tasks"][task][m] for m, v in metrics.items() if m in SHOWN and v is not None}
            for task, metrics in out["tasks"].items()
        }
        return out


def run_protocols(
    evaluator: Evaluator, blocks: torch.Tensor, protocols=PROTOCOLS, batch_size: int = 8
) -> dict:
    """Run the chosen protocols; returns the measurements (arrays as lists, ready for JSON)."""
    unknown = sorted(set(protocols) - set(PROTOCOLS))
    if unknown:
        raise ValueError(
            f"unknown ablation protocol {', '.join(unknown)} — choose from {', '.join(PROTOCOLS)}"
        )
    L = evaluator.num_layers
    if L < 2:
        raise ValueError(f"the model has {L} layer: removing layers needs at least 2")
    base = evaluator(())
    out = {"num_layers": L, "baseline": base}
    if "sweep" in protocols:
        out["sweep"] = [{"layer": i, **evaluator.measured([i], base)} for i in range(L)]
    if "bi" in protocols or "angular" in protocols:
        t0 = time.perf_counter()
        sim = layer_similarity(evaluator.model, blocks, batch_size)
        out["similarity"] = {
            "sequences": sim["sequences"],
            "tokens": sim["tokens"],
            "seconds": round(time.perf_counter() - t0, 3),
        }
        if "bi" in protocols:
            bi = sim["block_influence"]
            out["block_influence"] = [float(x) for x in bi]
            out["bi_removal"] = [{"n": n, **evaluator.measured(lowest_bi(bi, n), base)} for n in range(1, L)]
        if "angular" in protocols:
            D = sim["angular_distance"]
            out["angular_distance"] = [
                [None if x != x else float(x) for x in row] for row in D
            ]  # NaN -> null
            out["angular_removal"] = [{**b, **evaluator.measured(b["removed"], base)} for b in best_blocks(D)]
            out["drop_last"] = [{"n": n, **evaluator.measured(drop_last(L, n), base)} for n in range(1, L)]
    out["evaluations"] = len(evaluator.cache)
    out["evaluation_seconds"] = round(evaluator.seconds, 3)
    return out
