"""Plots of pretraining runs: loss curves (several runs overlaid) and DyT alpha trajectories.

python -m dyt_llama.plots runs/tiny-rms runs/tiny-dyt --out plots/
"""

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display needed
import matplotlib.pyplot as plt  # noqa: E402

from .cli import run_guarded  # noqa: E402
from .train.metrics import read_metrics  # noqa: E402


def load_run(run_dir: str | Path) -> list[dict]:
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir} is not a run directory: {path} is missing")
    rows = read_metrics(path)
    if not rows:
        raise ValueError(f"{path} holds no metrics yet")
    return rows


def plot_losses(runs: dict[str, list[dict]], out: Path) -> Path:
    """Train loss (thin) and validation loss (markers) per run against tokens seen."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for (name, rows), color in zip(runs.items(), plt.rcParams["axes.prop_cycle"].by_key()["color"] * 10):
        tokens = [r["tokens"] for r in rows]
        ax.plot(tokens, [r["loss"] for r in rows], color=color, alpha=0.5, lw=1, label=f"{name} train")
        val = [(r["tokens"], r["val_loss"]) for r in rows if "val_loss" in r]
        if val:
            ax.plot(*zip(*val), "o-", color=color, ms=4, label=f"{name} val")
    ax.set_xlabel("tokens")
    ax.set_ylabel("loss (nats/token)")
    ax.set_title("loss")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    path = out / "loss.png"
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_alphas(name: str, rows: list[dict], out: Path) -> Path | None:
    """One line per DyT site; attention sites solid, FFN dashed, the final norm black."""
    rows = [r for r in rows if "alpha" in r]
    if not rows:
        return None
    sites = list(rows[0]["alpha"])
    steps = [r["step"] for r in rows]
    layers = sorted({s.split(".")[1] for s in sites if s.startswith("layers.")}, key=int)
    cmap = plt.get_cmap("viridis", max(len(layers), 2))
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for site in sites:
        values = [r["alpha"][site] for r in rows]
        if site == "final":
            ax.plot(steps, values, color="black", lw=2, label="final")
            continue
        layer, kind = site.split(".")[1], site.split(".")[2]
        ax.plot(
            steps,
            values,
            color=cmap(layers.index(layer)),
            ls="-" if kind == "attn" else "--",
            lw=1,
            label=f"layer {layer} {kind}",
        )
    ax.set_xlabel("step")
    ax.set_ylabel("alpha")
    ax.set_title(f"DyT alpha per site: {name}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6, ncol=2)
    path = out / f"alpha_{name}.png"
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_runs(run_dirs: list[str], out: str | Path) -> list[Path]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    runs = {Path(d).resolve().name: load_run(d) for d in run_dirs}
    written = [plot_losses(runs, out)]
    written += [p for name, rows in runs.items() if (p := plot_alphas(name, rows, out))]
    return written


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m dyt_llama.plots", description="Plot pretraining runs.")
    p.add_argument("runs", nargs="+", help="run directories (output_dir of pretrain.py)")
    p.add_argument("--out", default="plots", help="directory for the PNGs")
    p.add_argument("--debug", action="store_true")
    args = p.parse_args(argv)

    def go():
        for path in plot_runs(args.runs, args.out):
            print(f"wrote {path}")

    return run_guarded(go, args.debug)


if __name__ == "__main__":
    raise SystemExit(main())
