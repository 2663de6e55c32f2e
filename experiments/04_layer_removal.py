"""Part 4: layer removal on part 1's DyT and RMSNorm models (dyt_llama.ablation).

python experiments/04_layer_removal.py [--quick] [--out runs/experiments]

Pre-LN transformers lose little when a later layer is removed and much when an early one is (Gromov et al.
2024; Sun et al. 2025, "Curse of Depth"). Does the DyT model keep that? Two protocols of the ablation module,
each measured by the perplexity of held-out text with the layers actually removed: the single-layer sweep,
and Gromov et al.'s angular-distance block removal (the n consecutive layers whose input and output are
closest) with their drop-the-last-n baseline.
"""

import statistics
import time

import common
import matplotlib.pyplot as plt

from dyt_llama.ablation import Evaluator, calibration_blocks, run_protocols

NORMS = ("rmsnorm", "dyt")
COLORS = {"rmsnorm": "tab:blue", "dyt": "tab:red"}
EVAL_TOKENS, QUICK_EVAL_TOKENS = 8192, 1024


def ablate(ctx, record: dict, ids: list[int], seq_len: int) -> dict:
    model = common.load_export(record["export"])
    evaluator = Evaluator(model, None, ids, seq_len, batch_size=8)
    res = run_protocols(evaluator, calibration_blocks(ids, seq_len), ("sweep", "angular"))
    base = res["baseline"]["perplexity"]
    return {
        "run": record["name"],
        "num_layers": res["num_layers"],
        "baseline_ppl": base,
        "sweep_ratio": [s["perplexity"] / base for s in res["sweep"]],
        "angular": [{"n": b["n"], "removed": b["removed"], "ratio": b["perplexity"] / base} for b in res["angular_removal"]],
        "drop_last": [{"n": b["n"], "removed": b["removed"], "ratio": b["perplexity"] / base} for b in res["drop_last"]],
        "evaluation_seconds": res["evaluation_seconds"],
    }  # fmt: skip


def late_vs_early(ratios: list[float]) -> dict:
    """Mean perplexity ratio of removing one layer of the first half against one of the second half (the last
    layer apart: it feeds the final norm and head directly, and is no 'later middle' layer)."""
    L = len(ratios)
    early, late = ratios[: L // 2], ratios[L // 2 : L - 1] or ratios[L // 2 :]
    return {"early": statistics.fmean(early), "late": statistics.fmean(late), "last": ratios[-1]}


def main(argv=None) -> dict:
    ctx = common.setup(__doc__.split("\n")[0], argv)
    t0 = time.perf_counter()
    seeds = (common.PART1_QUICK if ctx.quick else common.PART1)["seeds"]
    configs = common.part1_configs(ctx)
    results = {}
    fig, axes = plt.subplots(2, len(configs), figsize=(4.6 * len(configs), 6.2), squeeze=False)
    for col, (config, shape) in enumerate(configs.items()):
        seq_len = shape["seq_len"]
        _, _, val = common.corpus(ctx, seq_len)
        n_tokens = QUICK_EVAL_TOKENS if ctx.quick else EVAL_TOKENS
        ids = (
            val.tokens[val.start * seq_len : (val.start + len(val)) * seq_len][:n_tokens].astype(int).tolist()
        )
        entry = {"eval_tokens": len(ids)}
        for norm in NORMS:
            models = [ablate(ctx, common.part1_run(ctx, config, norm, seed), ids, seq_len) for seed in seeds]
            L = models[0]["num_layers"]
            sweep = [statistics.fmean(m["sweep_ratio"][i] for m in models) for i in range(L)]
            angular = [statistics.fmean(m["angular"][k]["ratio"] for m in models) for k in range(L - 1)]
            drop = [statistics.fmean(m["drop_last"][k]["ratio"] for m in models) for k in range(L - 1)]
            entry[norm] = {
                "models": models,
                "mean_sweep_ratio": sweep,
                "mean_angular_ratio": angular,
                "mean_drop_last_ratio": drop,
                "halves": late_vs_early(sweep),
            }
            c = COLORS[norm]
            axes[0][col].plot(range(L), sweep, "o-", color=c, label=norm)
            for m in models:
                axes[0][col].plot(range(L), m["sweep_ratio"], ".", color=c, alpha=0.4)
            n = list(range(1, L))
            axes[1][col].plot(n, angular, "s-", color=c, label=f"{norm}: angular block")
            axes[1][col].plot(n, drop, "^--", color=c, alpha=0.6, label=f"{norm}: drop last n")
        common.plain_log(axes[0][col])
        axes[0][col].set_title(f"{config}: remove one layer", fontsize=10)
        axes[0][col].set_xlabel("removed layer")
        axes[0][col].set_ylabel("perplexity / full model's")
        common.plain_log(axes[1][col])
        axes[1][col].set_title(f"{config}: remove n layers", fontsize=10)
        axes[1][col].set_xlabel("layers removed (n)")
        axes[1][col].set_ylabel("perplexity / full model's")
        for ax in axes[:, col]:
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
        results[config] = entry
    out = {
        "part": 4,
        "title": "layer removal",
        "command": common.script_command("04_layer_removal.py", ctx),
        "seeds": list(seeds),
        "configs": results,
        "figure": common.save_fig(ctx, fig, "04_layer_removal"),
        "seconds": round(time.perf_counter() - t0, 1),
    }
    common.save_json(ctx, "04_layer_removal", out)
    for config, entry in results.items():
        for norm in NORMS:
            print(f"{config} {norm}: sweep ratios {[round(x, 2) for x in entry[norm]['mean_sweep_ratio']]}")
    return out


if __name__ == "__main__":
    main()
