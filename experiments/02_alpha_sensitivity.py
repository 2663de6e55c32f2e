"""Part 2: alpha0 sensitivity against width: a grid of attention and other (FFN, final) alpha0 per width.

python experiments/02_alpha_sensitivity.py [--quick] [--out runs/experiments]

The paper's table (config.py) lowers alpha0 as the width grows, and more for the FFN and final norms than
for attention. Here: micro models 64, 128 and 256 wide (4 layers, seq 128, 60 steps of 2048 tokens, lr 3e-3),
each alpha0 pair trained once; the final validation loss, the best pair per width, and the pairs that diverge
(a non-finite loss, or a final loss above a uniform guess).
"""

import math
import time

import common
import matplotlib.pyplot as plt
import numpy as np

ATTN = (0.5, 1.0, 2.0, 4.0)
OTHER = (0.25, 1.0, 4.0)
QUICK_ATTN, QUICK_OTHER = (1.0, 4.0), (1.0,)


def main(argv=None) -> dict:
    ctx = common.setup(__doc__.split("\n")[0], argv)
    t0 = time.perf_counter()
    widths = common.QUICK_WIDTHS if ctx.quick else common.MICRO_WIDTHS
    attn_grid, other_grid = (QUICK_ATTN, QUICK_OTHER) if ctx.quick else (ATTN, OTHER)
    per_width, diverged, best, rms = {}, [], {}, {}
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
        best[width] = min(ok, key=lambda g: g["val_loss"]) if ok else None

    fig, axes = plt.subplots(1, len(widths), figsize=(3.2 * len(widths), 3.0), squeeze=False)
    finite = [g["val_loss"] for grid in per_width.values() for g in grid.values() if not g["diverged"]]
    vmin, vmax = (min(finite), min(finite) + 1.0) if finite else (0, 1)
    for ax, width in zip(axes[0], widths):
        m = np.full((len(other_grid), len(attn_grid)), np.nan)
        for g in per_width[width].values():
            m[other_grid.index(g["other"]), attn_grid.index(g["attn"])] = (
                np.nan if g["diverged"] else g["val_loss"]
            )
        im = ax.imshow(m, origin="lower", cmap="viridis_r", vmin=vmin, vmax=vmax, aspect="auto")
        for g in per_width[width].values():
            i, j = other_grid.index(g["other"]), attn_grid.index(g["attn"])
            text = "div" if g["diverged"] else f"{g['val_loss']:.2f}"
            bold = best[width] is g
            ax.text(j, i, text, ha="center", va="center", fontsize=7, color="white" if bold else "black",
                    fontweight="bold" if bold else "normal")  # fmt: skip
        ax.set_xticks(range(len(attn_grid)), [f"{a:g}" for a in attn_grid])
        ax.set_yticks(range(len(other_grid)), [f"{o:g}" for o in other_grid])
        ax.set_xlabel("alpha0 attention")
        ax.set_ylabel("alpha0 FFN & final")
        rms_text = f"{rms[width]:.2f}" if rms[width] is not None else "diverged"
        ax.set_title(f"width {width} (RMSNorm {rms_text})", fontsize=9)
    fig.colorbar(im, ax=axes[0].tolist(), shrink=0.8, label="val loss")
    figure = common.save_fig(ctx, fig, "02_alpha_sensitivity", tight=False)

    best_attn = [best[w]["attn"] for w in widths if best[w]]
    best_other = [best[w]["other"] for w in widths if best[w]]
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
        "best_attn_falls_with_width": all(b <= a for a, b in zip(best_attn, best_attn[1:]))
        if best_attn
        else None,
        "best_other_falls_with_width": all(b <= a for a, b in zip(best_other, best_other[1:]))
        if best_other
        else None,
        "spread": {
            str(w): (max(g["val_loss"] for g in grid.values() if not g["diverged"]) - best[w]["val_loss"])
            if best[w]
            else None
            for w, grid in per_width.items()
        },
        "diverged": diverged,
        "uniform_loss": math.log(ctx.common["tokenizer_vocab_size"]),
        "example_command": common.micro_run(ctx, widths[-1], "dyt", 1.0, 1.0)["command"],
        "figure": figure,
        "seconds": round(time.perf_counter() - t0, 1),
    }
    common.save_json(ctx, "02_alpha_sensitivity", out)
    for w in widths:
        print(f"width {w}: best {best[w]}, rmsnorm {rms[w]}")
    print(f"diverged: {diverged}")
    return out


if __name__ == "__main__":
    main()
