"""Part 1: DyT against RMSNorm on the tiny config and a larger small one, same data and tokens, two seeds.

python experiments/01_dyt_vs_rmsnorm.py [--quick] [--out runs/experiments]

The paper's claim: LLaMA 7B reaches 1.59 (DyT) vs 1.60 (RMSNorm) training loss. Here: the final validation
loss of each run, the DyT - RMSNorm gap per seed, and the validation curves overlaid.
"""

import statistics
import time

import common
import matplotlib.pyplot as plt

NORMS = ("rmsnorm", "dyt")
COLORS = {"rmsnorm": "tab:blue", "dyt": "tab:red"}


def main(argv=None) -> dict:
    ctx = common.setup(__doc__.split("\n")[0], argv)
    t0 = time.perf_counter()
    seeds = (common.PART1_QUICK if ctx.quick else common.PART1)["seeds"]
    results = {}
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    for ax, (config, shape) in zip(axes, common.part1_configs(ctx).items()):
        runs = {norm: [common.part1_run(ctx, config, norm, seed) for seed in seeds] for norm in NORMS}
        finals = {norm: [r["val_loss"] for r in rs] for norm, rs in runs.items()}
        gaps = [
            d - r if d is not None and r is not None else None
            for r, d in zip(finals["rmsnorm"], finals["dyt"])
        ]
        ok = all(v is not None for vs in finals.values() for v in vs)
        first = runs["rmsnorm"][0]
        results[config] = {
            "shape": shape,
            "steps": first["settings"]["max_steps"],
            "tokens": first["rows"][-1]["tokens"] if first["rows"] else None,
            "seeds": list(seeds),
            "val_loss": finals,
            "mean": {n: statistics.fmean(v) for n, v in finals.items()} if ok else None,
            "gap_per_seed": gaps,
            "gap": statistics.fmean(gaps) if ok else None,
            "diverged": {n: [r["diverged"] for r in rs] for n, rs in runs.items()},
            "curves": {n: [common.val_curve(r) for r in rs] for n, rs in runs.items()},
            "runs": [common.strip_rows(r) for rs in runs.values() for r in rs],
        }
        for norm, rs in runs.items():
            for seed, r in zip(seeds, rs):
                rows = r["rows"]
                ax.plot(
                    [x["tokens"] for x in rows],
                    [x["loss"] for x in rows],
                    color=COLORS[norm],
                    alpha=0.15,
                    lw=0.8,
                )
                curve = common.val_curve(r)
                if curve:
                    ax.plot(*zip(*curve), "o-" if seed == seeds[0] else "s--", color=COLORS[norm], ms=3, lw=1.2,
                            label=f"{norm} seed {seed} (val)")  # fmt: skip
        if ok:
            ax.set_ylim(
                min(min(v) for v in finals.values()) - 0.3, min(min(v) for v in finals.values()) + 3.0
            )
        ax.set_title(
            f"{config}: {shape['hidden_size']} wide, {shape['num_hidden_layers']} layers", fontsize=10
        )
        ax.set_xlabel("tokens")
        ax.set_ylabel("loss (nats/token)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    out = {
        "part": 1,
        "title": "DyT vs RMSNorm",
        "command": common.script_command("01_dyt_vs_rmsnorm.py", ctx),
        "configs": results,
        "figure": common.save_fig(ctx, fig, "01_dyt_vs_rmsnorm"),
        "seconds": round(time.perf_counter() - t0, 1),
    }
    common.save_json(ctx, "01_dyt_vs_rmsnorm", out)
    for config, r in results.items():
        print(f"{config}: rmsnorm {r['val_loss']['rmsnorm']}, dyt {r['val_loss']['dyt']}, gap {r['gap']}")
    return out


if __name__ == "__main__":
    main()
