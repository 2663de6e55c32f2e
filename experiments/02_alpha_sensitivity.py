"""Part 2: alpha0 sensitivity against width: a grid of attention and other (FFN, final) alpha0 per width.

python experiments/02_alpha_sensitivity.py [--quick] [--out runs/experiments]

The paper's table (config.py) lowers alpha0 as the width grows, and more for the FFN and final norms than
for attention; at every width here (<= 1024) it gives 1 / 1. Here: micro models 64, 128 and 256 wide
(4 layers, seq 128, 60 steps of 2048 tokens, lr 3e-3), each alpha0 pair trained once; the final validation
loss, the best pair per width, and the pairs that diverge (a non-finite loss, or a final loss above a
uniform guess). Then two checks of the best pair: which of the FFN and final norms wants the larger alpha0
(each alone at the best value, the other at 1), and the tiny config of part 1 trained with the best pair of
the widest micro model (the same width), two seeds, against part 1's RMSNorm and table-alpha0 DyT runs.
"""

import math
import statistics
import time

import common
import matplotlib.pyplot as plt
import numpy as np

ATTN = (0.5, 1.0, 4.0)
OTHER = (0.25, 1.0, 2.0, 4.0, 8.0)
QUICK_ATTN, QUICK_OTHER = (1.0, 4.0), (1.0, 4.0)


def heatmap(ax, grid: dict, best: dict | None, attn_grid, other_grid, vmin, vmax):
    m = np.full((len(other_grid), len(attn_grid)), np.nan)
    for g in grid.values():
        m[other_grid.index(g["other"]), attn_grid.index(g["attn"])] = (
            np.nan if g["diverged"] else g["val_loss"]
        )
    im = ax.imshow(m, origin="lower", cmap="viridis_r", vmin=vmin, vmax=vmax, aspect="auto")
    for g in grid.values():
        i, j = other_grid.index(g["other"]), attn_grid.index(g["attn"])
        text = "div" if g["diverged"] else f"{g['val_loss']:.2f}"
        bold = best is g
        ax.text(j, i, text, ha="center", va="center", fontsize=7, color="white" if bold else "black",
                fontweight="bold" if bold else "normal")  # fmt: skip
    ax.set_xticks(range(len(attn_grid)), [f"{a:g}" for a in attn_grid])
    ax.set_yticks(range(len(other_grid)), [f"{o:g}" for o in other_grid])
    ax.set_xlabel("alpha0 attention")
    return im


def falls(values: list[float]) -> bool | None:
    return all(b <= a for a, b in zip(values, values[1:])) if values else None


def main(argv=None) -> dict:
    ctx = common.setup(__doc__.split("\n")[0], argv)
    t0 = time.perf_counter()
    widths = common.QUICK_WIDTHS if ctx.quick else common.MICRO_WIDTHS
    attn_grid, other_grid = (QUICK_ATTN, QUICK_OTHER) if ctx.quick else (ATTN, OTHER)
    per_width, diverged, best, rms, split = {}, [], {}, {}, {}
    for width in widths:
        rms[width] = common.micro_run(ctx, width, "rmsnorm")["val_loss"]
        grid = {}
        for a in attn_grid:
            for o in other_grid:
                r = common.micro_run(ctx, width, "dyt", a, o)
                grid[f"{a:g},{o:g}"] = {
                    "attn": a,
                    "other": o,
                    "val_loss": r["val_loss"],
                    "diverged": r["diverged"],
                }
                if r["diverged"]:
                    diverged.append({"width": width, "attn": a, "other": o, "val_loss": r["val_loss"]})
        per_width[width] = grid
        ok = [g for g in grid.values() if not g["diverged"]]
        best[width] = b = min(ok, key=lambda g: g["val_loss"]) if ok else None
        if b and b["other"] != 1.0:  # FFN alone at the best value, then the final norm alone
            ffn = common.micro_run(ctx, width, "dyt", b["attn"], b["other"], final=1.0)
            fin = common.micro_run(ctx, width, "dyt", b["attn"], 1.0, final=b["other"])
            split[width] = {"value": b["other"], "ffn_only": ffn["val_loss"], "final_only": fin["val_loss"],
                            "both": b["val_loss"], "neither": grid[f"{b['attn']:g},1"]["val_loss"]}  # fmt: skip

    # The best pair of the widest micro model (256, the tiny config's width) on the tiny config itself.
    pair = (best[widths[-1]]["attn"], best[widths[-1]]["other"]) if best[widths[-1]] else None
    seeds = (common.PART1_QUICK if ctx.quick else common.PART1)["seeds"]
    tiny = {}
    if pair:
        runs = {
            "rmsnorm": [common.part1_run(ctx, "tiny", "rmsnorm", s) for s in seeds],
            "dyt, table alpha0": [common.part1_run(ctx, "tiny", "dyt", s) for s in seeds],
            f"dyt, alpha0 {pair[0]:g} / {pair[1]:g}": [
                common.part1_run(ctx, "tiny", "dyt", s, pair) for s in seeds
            ],
        }
        tiny = {
            "alpha0": list(pair),
            "seeds": list(seeds),
            "val_loss": {k: [r["val_loss"] for r in rs] for k, rs in runs.items()},
            "curves": {k: [common.val_curve(r) for r in rs] for k, rs in runs.items()},
            "commands": [r["command"] for r in runs[f"dyt, alpha0 {pair[0]:g} / {pair[1]:g}"]],
        }
        tiny["mean"] = {
            k: statistics.fmean(v) if None not in v else None for k, v in tiny["val_loss"].items()
        }

    fig, axes = plt.subplots(1, len(widths) + 1, figsize=(3.1 * (len(widths) + 1), 3.2), squeeze=False)
    finite = [g["val_loss"] for grid in per_width.values() for g in grid.values() if not g["diverged"]]
    vmin, vmax = (min(finite), max(finite)) if finite else (0, 1)
    for ax, width in zip(axes[0], widths):
        im = heatmap(ax, per_width[width], best[width], attn_grid, other_grid, vmin, vmax)
        rms_text = f"{rms[width]:.2f}" if rms[width] is not None else "diverged"
        ax.set_title(f"width {width} (RMSNorm {rms_text})", fontsize=9)
    axes[0][0].set_ylabel("alpha0 FFN & final")
    fig.colorbar(
        im, ax=axes[0][: len(widths)].tolist(), shrink=0.8, label="val loss", location="left", pad=0.12
    )
    ax = axes[0][-1]
    colors = {"rmsnorm": "tab:blue", "dyt, table alpha0": "tab:red"}
    for name, curves in tiny.get("curves", {}).items():
        for i, curve in enumerate(curves):
            if curve:
                ax.plot(*zip(*curve), "o-" if i == 0 else "s--", ms=3, color=colors.get(name, "tab:green"),
                        label=name if i == 0 else None)  # fmt: skip
    shape = common.part1_configs(ctx)["tiny"]
    ax.set_title(f"tiny config ({shape['hidden_size']} x {shape['num_hidden_layers']}), val loss", fontsize=9)
    ax.set_xlabel("tokens")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    figure = common.save_fig(ctx, fig, "02_alpha_sensitivity", tight=False)

    best_attn = [best[w]["attn"] for w in widths if best[w]]
    best_other = [best[w]["other"] for w in widths if best[w]]
    init_range = (
        0.02  # ModelArgs.initializer_range: the embeddings' std, times sqrt(d) by the embedding scale
    )
    out = {
        "part": 2,
        "title": "alpha0 sensitivity against width",
        "command": common.script_command("02_alpha_sensitivity.py", ctx),
        "widths": list(widths),
        "attn_grid": list(attn_grid),
        "other_grid": list(other_grid),
        "steps": common.QUICK_STEPS if ctx.quick else common.MICRO_STEPS,
        "grid": {str(w): g for w, g in per_width.items()},
        "rmsnorm": {str(w): v for w, v in rms.items()},
        "best": {str(w): b for w, b in best.items()},
        "best_attn_falls_with_width": falls(best_attn),
        "best_other_falls_with_width": falls(best_other),
        "inverse_std_at_init": {str(w): 1 / (init_range * math.sqrt(w)) for w in widths},
        "spread": {
            str(w): max(g["val_loss"] for g in grid.values() if not g["diverged"]) - best[w]["val_loss"]
            for w, grid in per_width.items()
            if best[w]
        },
        "split": {str(w): v for w, v in split.items()},
        "tiny": tiny,
        "diverged": diverged,
        "uniform_loss": math.log(ctx.common["tokenizer_vocab_size"]),
        "example_command": common.micro_run(ctx, widths[-1], "dyt", 1.0, 1.0)["command"],
        "figure": figure,
        "seconds": round(time.perf_counter() - t0, 1),
    }
    common.save_json(ctx, "02_alpha_sensitivity", out)
    for w in widths:
        print(f"width {w}: best {best[w]}, rmsnorm {rms[w]}, split {split.get(w)}")
    print(f"tiny: {tiny.get('mean')}")
    print(f"diverged: {diverged}")
    return out


if __name__ == "__main__":
    main()
