"""Part 3: DyT with and without the learnable sqrt(d) scalar on the embedding output.

python experiments/03_embed_scale.py [--quick] [--out runs/experiments]

DyT has no statistics to undo the embeddings' 0.02 scale, so the paper's LLaMA runs multiply the embedding
output by a learnable scalar initialised to sqrt(d). Here: the micro models of part 2 at alpha0 = 1 (the
table's value at these widths), two seeds, with and without it; the final validation loss and where the
learned scalar ends.
"""

import statistics
import time

import common
import matplotlib.pyplot as plt

SEEDS = (0, 1)


def main(argv=None) -> dict:
    ctx = common.setup(__doc__.split("\n")[0], argv)
    t0 = time.perf_counter()
    widths = common.QUICK_WIDTHS if ctx.quick else common.MICRO_WIDTHS
    seeds = SEEDS[:1] if ctx.quick else SEEDS
    results = {}
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(9, 3.4))
    for width in widths:
        entry = {}
        for scale in (True, False):
            runs = [common.micro_run(ctx, width, "dyt", 1.0, 1.0, seed, embed_scale=scale) for seed in seeds]
            vals = [r["val_loss"] for r in runs]
            key = "with_scale" if scale else "without_scale"
            entry[key] = {
                "val_loss": vals,
                "mean": statistics.fmean(vals) if None not in vals else None,
                "diverged": [r["diverged"] for r in runs],
                "final_embed_scale": [r["rows"][-1].get("embed_scale") if r["rows"] else None for r in runs],
                "command": runs[0]["command"],
            }
            x = [width * (1.03 if scale else 0.97)] * len(vals)
            ax.scatter(x, [v if v is not None else float("nan") for v in vals], marker="o" if scale else "x",
                       color="tab:red" if scale else "tab:gray",
                       label=("with sqrt(d) scale" if scale else "without") if width == widths[0] else None)  # fmt: skip
            if width == widths[-1]:
                rows = runs[0]["rows"]
                ax2.plot([r["step"] for r in rows], [r["loss"] for r in rows], color="tab:red" if scale else "tab:gray",
                         label="with sqrt(d) scale" if scale else "without")  # fmt: skip
        w, wo = entry["with_scale"]["mean"], entry["without_scale"]["mean"]
        entry["gap"] = wo - w if w is not None and wo is not None else None  # > 0: the scale helps
        results[str(width)] = entry
    common.plain_log(ax, "x")
    ax.set_xticks(list(widths), [str(w) for w in widths])
    ax.set_xlabel("width")
    ax.set_ylabel("final val loss")
    ax.set_title("DyT: embedding scale on / off", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax2.set_xlabel("step")
    ax2.set_ylabel("train loss")
    ax2.set_title(f"width {widths[-1]}, seed {seeds[0]}", fontsize=10)
    ax2.grid(alpha=0.3)
    ax2.legend(fontsize=8)
    out = {
        "part": 3,
        "title": "the embedding scale",
        "command": common.script_command("03_embed_scale.py", ctx),
        "seeds": list(seeds),
        "widths": {str(w): results[str(w)] for w in widths},
        "figure": common.save_fig(ctx, fig, "03_embed_scale"),
        "seconds": round(time.perf_counter() - t0, 1),
    }
    common.save_json(ctx, "03_embed_scale", out)
    for w in widths:
        r = results[str(w)]
        print(f"width {w}: with {r['with_scale']['val_loss']}, without {r['without_scale']['val_loss']}")
    return out


if __name__ == "__main__":
    main()
