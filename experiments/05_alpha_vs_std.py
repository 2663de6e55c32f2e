"""Part 5: each DyT's learned alpha against 1/std of its input, per layer, at the end of training.

python experiments/05_alpha_vs_std.py [--quick] [--out runs/experiments]

The paper (section 6, Figure 8) finds that alpha tracks 1/std of the activations entering DyT: it keeps
alpha * x in tanh's near-linear range, a learned normalization by a global scale. Here: part 1's DyT models,
the std of each site's input over held-out tokens (all tokens and channels together), against its alpha.
"""

import math
import time

import common
import matplotlib.pyplot as plt
import numpy as np
import torch

from dyt_llama.convert import norm_sites

KINDS = {"attn": ("o", "tab:red"), "ffn": ("s", "tab:blue"), "final": ("*", "black")}
EVAL_BLOCKS, QUICK_EVAL_BLOCKS = 32, 4


@torch.no_grad()
def input_stds(model, ids: torch.Tensor) -> dict[str, float]:
    """std of each norm site's input over all tokens and channels of `ids`, from forward pre-hooks."""
    sums: dict[str, list[float]] = {}

    def hook(name):
        def pre(module, args):
            x = args[0].double()
            s = sums.setdefault(name, [0.0, 0.0, 0])
            s[0] += float(x.sum())
            s[1] += float((x * x).sum())
            s[2] += x.numel()

        return pre

    handles = [m.register_forward_pre_hook(hook(name)) for name, m in norm_sites(model)]
    try:
        for i in range(0, len(ids), 8):
            model.model(input_ids=ids[i : i + 8], use_cache=False)
    finally:
        for h in handles:
            h.remove()
    return {k: math.sqrt(max(s[1] / s[2] - (s[0] / s[2]) ** 2, 0.0)) for k, s in sums.items()}


def main(argv=None) -> dict:
    ctx = common.setup(__doc__.split("\n")[0], argv)
    t0 = time.perf_counter()
    seeds = (common.PART1_QUICK if ctx.quick else common.PART1)["seeds"]
    configs = common.part1_configs(ctx)
    fig, axes = plt.subplots(1, len(configs) + 1, figsize=(3.6 * (len(configs) + 1), 3.4))
    results, all_pairs = {}, []
    for ax, (config, shape) in zip(axes, configs.items()):
        _, _, val = common.corpus(ctx, shape["seq_len"])
        ids = common.blocks_tensor(val, QUICK_EVAL_BLOCKS if ctx.quick else EVAL_BLOCKS)
        models = []
        for seed in seeds:
            record = common.part1_run(ctx, config, "dyt", seed)
            model = common.load_export(record["export"])
            stds = input_stds(model, ids)
            sites = {
                name: {"alpha": float(m.alpha), "input_std": stds[name], "alpha_times_std": float(m.alpha) * stds[name]}
                for name, m in norm_sites(model)
            }  # fmt: skip
            models.append({"run": record["name"], "sites": sites})
            for name, s in sites.items():
                kind = name.split(".")[-1]
                marker, color = KINDS[kind]
                ax.scatter(1 / s["input_std"], s["alpha"], marker=marker, color=color, s=18, alpha=0.8,
                           label=kind if seed == seeds[0] and (kind != "attn" or name == "layers.0.attn")
                           and (kind != "ffn" or name == "layers.0.ffn") else None)  # fmt: skip
                all_pairs.append((1 / s["input_std"], s["alpha"], config, name))
        inv = np.array([1 / s["input_std"] for m in models for s in m["sites"].values()])
        alpha = np.array([s["alpha"] for m in models for s in m["sites"].values()])
        results[config] = {
            "models": models,
            "pearson_log": float(np.corrcoef(np.log(inv), np.log(alpha))[0, 1]) if len(inv) > 2 else None,
            "pearson": float(np.corrcoef(inv, alpha)[0, 1]) if len(inv) > 2 else None,
            "alpha_times_std_median": float(np.median(alpha / inv)),
        }
        lo, hi = min(inv.min(), alpha.min()) / 1.5, max(inv.max(), alpha.max()) * 1.5
        ax.plot([lo, hi], [lo, hi], "k:", lw=0.8, label="alpha = 1/std")
        common.plain_log(ax, "x")
        common.plain_log(ax, "y")
        ax.set_xlabel("1 / std of the DyT input")
        ax.set_ylabel("learned alpha")
        ax.set_title(f"{config} (r of logs = {results[config]['pearson_log']:.2f})", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    # Per layer, seed 0 of the last config: alpha and 1/std side by side as the depth grows.
    ax = axes[-1]
    last = list(configs)[-1]
    sites = results[last]["models"][0]["sites"]
    for kind in ("attn", "ffn"):
        names = [n for n in sites if n.endswith(kind)]
        layers = [int(n.split(".")[1]) for n in names]
        _, color = KINDS[kind]
        ax.plot(layers, [sites[n]["alpha"] for n in names], "o-", color=color, label=f"alpha {kind}")
        ax.plot(
            layers,
            [1 / sites[n]["input_std"] for n in names],
            "o:",
            color=color,
            alpha=0.6,
            label=f"1/std {kind}",
        )
    common.plain_log(ax)
    ax.set_xlabel("layer")
    ax.set_title(f"{last}, seed {seeds[0]}: per layer", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    out = {
        "part": 5,
        "title": "learned alpha vs 1/std of the input",
        "command": common.script_command("05_alpha_vs_std.py", ctx),
        "configs": results,
        "pearson_log_all": float(np.corrcoef(np.log([p[0] for p in all_pairs]), np.log([p[1] for p in all_pairs]))[0, 1]),
        "figure": common.save_fig(ctx, fig, "05_alpha_vs_std"),
        "seconds": round(time.perf_counter() - t0, 1),
    }  # fmt: skip
    common.save_json(ctx, "05_alpha_vs_std", out)
    for config, r in results.items():
        print(
            f"{config}: r(log 1/std, log alpha) = {r['pearson_log']:.3f}, median alpha*std {r['alpha_times_std_median']:.3f}"
        )
    return out


if __name__ == "__main__":
    main()
