"""PNGs of ablation runs, one panel per model so that two models (DyT and RMSNorm) sit side by side.

sweep_delta_ppl.png     change in perplexity when each layer alone is removed
block_influence.png     BI per layer
angular_distance.png    d(l, n) heat map, l across and n up, the chosen block of each n marked
ppl_vs_removed.png      perplexity against layers removed: greedy BI, contiguous angular, drop-last
"""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on servers and CI
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

# (key, legend, marker, line style): the styles differ so that strategies choosing the same layers stay visible
STRATEGIES = (
    ("bi_removal", "greedy BI", "o", "-"),
    ("angular_removal", "contiguous angular", "s", "--"),
    ("drop_last", "drop last", "^", ":"),
)


def _panels(records, key, title, sharey=True):
    """A figure with one axis per record that has `key`; None when none has it."""
    have = [(name, r["ablation"]) for name, r in records if key in r["ablation"]]
    if not have:
        return None, []
    fig, axes = plt.subplots(1, len(have), figsize=(5.2 * len(have), 4), sharey=sharey, squeeze=False)
    fig.suptitle(title)
    return fig, list(zip(axes[0], have))


def _save(fig, path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)


def plot_sweep(records, path):
    fig, panels = _panels(records, "sweep", "Single-layer removal: change in perplexity")
    if fig is None:
        return None
    for ax, (name, abl) in panels:
        layers = [e["layer"] for e in abl["sweep"]]
        deltas = [e["delta_perplexity"] for e in abl["sweep"]]
        ax.bar(layers, deltas, color=["tab:red" if d > 0 else "tab:green" for d in deltas])
        ax.set_yscale("symlog", linthresh=max(1.0, 0.01 * abl["baseline"]["perplexity"]))
        ax.axhline(0, color="k", lw=0.8)
        ax.set(
            title=f"{name}\nbaseline ppl {abl['baseline']['perplexity']:.2f}",
            xlabel="removed layer",
            ylabel="Δ perplexity",
        )
        ax.set_xticks(layers)
    return _save(fig, path)


def plot_bi(records, path):
    fig, panels = _panels(records, "block_influence", "Block Influence (1 - cos(input, output)) per layer")
    if fig is None:
        return None
    for ax, (name, abl) in panels:
        bi = abl["block_influence"]
        ax.bar(range(len(bi)), bi, color="tab:blue")
        ax.set(title=name, xlabel="layer", ylabel="Block Influence")
        ax.set_xticks(range(len(bi)))
    return _save(fig, path)


def plot_angular(records, path):
    fig, panels = _panels(
        records, "angular_distance", "Angular distance d(l, n) between the inputs of layers l and l+n"
    )
    if fig is None:
        return None
    mats = [np.array(abl["angular_distance"], dtype=float) for _, (_, abl) in panels]  # None -> nan
    vmax = max(np.nanmax(D) for D in mats)  # one colour scale, so that the panels compare
    for (ax, (name, abl)), D in zip(panels, mats):
        L = D.shape[0]
        extent = (-0.5, L - 0.5, 0.5, L + 0.5)
        image = ax.imshow(
            D, origin="lower", cmap="viridis_r", vmin=0, vmax=vmax, extent=extent, aspect="auto"
        )
        if L <= 16:  # small models: the numbers themselves
            for n in range(1, L + 1):
                for start in range(L + 1 - n):
                    d = D[n - 1, start]
                    color = "w" if d > vmax / 2 else "k"
                    ax.text(start, n, f"{d:.2f}", ha="center", va="center", fontsize=7, color=color)
        for e in abl.get("angular_removal", []):  # the block chosen for each n: a red frame
            ax.add_patch(Rectangle((e["start"] - 0.5, e["n"] - 0.5), 1, 1, fill=False, ec="r", lw=2))
        ax.set(
            title=f"{name}\n(red: the block removed for each n)",
            xlabel="first layer l",
            ylabel="block size n",
        )
        ax.set_xticks(range(L))
        ax.set_yticks(range(1, L + 1))
        fig.colorbar(image, ax=ax, label="arccos(cos) / π")
    return _save(fig, path)


def plot_removal_curves(records, path):
    have = [(name, r) for name, r in records if any(k in r["ablation"] for k, *_ in STRATEGIES)]
    if not have:
        return None
    fig, axes = plt.subplots(1, len(have), figsize=(5.2 * len(have), 4), sharey=True, squeeze=False)
    fig.suptitle("Perplexity against layers removed")
    for ax, (name, record) in zip(axes[0], have):
        abl = record["ablation"]
        for key, title, marker, style in STRATEGIES:
            if key in abl:
                ax.plot(
                    [0] + [e["n"] for e in abl[key]],
                    [abl["baseline"]["perplexity"]] + [e["perplexity"] for e in abl[key]],
                    marker=marker,
                    ls=style,
                    mfc="none",
                    label=title,
                )
        ax.axhline(abl["baseline"]["perplexity"], color="gray", ls="-.", lw=0.8, label="full model")
        ax.set_yscale("log")
        ax.set(title=name, xlabel="layers removed", ylabel="perplexity")
        ax.set_xticks(range(abl["num_layers"]))
        ax.legend()
    return _save(fig, path)


def plot_all(records: list[tuple[str, dict]], out_dir) -> list[Path]:
    """Every plot the records have data for, into out_dir; returns the paths written."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    plots = (
        (plot_sweep, "sweep_delta_ppl.png"),
        (plot_bi, "block_influence.png"),
        (plot_angular, "angular_distance.png"),
        (plot_removal_curves, "ppl_vs_removed.png"),
    )
    return [p for fn, name in plots if (p := fn(records, out_dir / name)) is not None]
