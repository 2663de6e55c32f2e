"""Part 6: DyT from a trained RMSNorm model: convert, fit each site's alpha (and weight), fine-tune briefly.

python experiments/06_convert_fit.py [--quick] [--out runs/experiments]

Part 1's tiny RMSNorm model (seed 0) is converted to DyT (RMSNorm gains become DyT weights). Held-out
perplexity of: the RMSNorm model; the conversion with the table's alpha0; with alpha fitted by least squares
to each RMSNorm's outputs on calibration text (alpha only, then alpha and weight, and that fit done one-shot
on the RMSNorm model's activations instead of sequentially); and after a short fine-tune of the table and
the fitted conversions, against the RMSNorm model fine-tuned the same way (more training helps any model).
The fit is `dyt_llama.convert.fit_dyt_to_rmsnorm`, also `python -m dyt_llama.convert SRC DST --fit-alpha FILE`.
"""

import math
import time

import common
import matplotlib.pyplot as plt
import torch

from dyt_llama.convert import fit_dyt_to_rmsnorm, llama_to_ours
from dyt_llama.data import batch_indices

CALIB_BLOCKS, QUICK_CALIB_BLOCKS = 64, 8
FT_STEPS, QUICK_FT_STEPS = 30, 3
FT_LR = 3e-4  # the pretraining run's final LR (3e-3 cosine to 0.1x): continue, don't restart


def fine_tune(model, train, steps: int, batch_size: int, seed: int = 1234) -> list[float]:
    """AdamW as in pretraining (0.9/0.95, weight decay 0.1, clip 1.0), constant LR after 5 warmup steps."""
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=FT_LR, betas=(0.9, 0.95), weight_decay=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 5))
    losses = []
    for step in range(steps):
        batch = train.batch(batch_indices(len(train), seed, step, batch_size, 0, 1))
        loss = model(input_ids=batch["input_ids"], labels=batch["labels"]).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
    model.eval()
    return losses


def main(argv=None) -> dict:
    ctx = common.setup(__doc__.split("\n")[0], argv)
    t0 = time.perf_counter()
    shape = common.part1_configs(ctx)["tiny"]
    rms_run = common.part1_run(ctx, "tiny", "rmsnorm", 0)
    dyt_run = common.part1_run(ctx, "tiny", "dyt", 0)
    _, train, val = common.corpus(ctx, shape["seq_len"])
    calib = common.blocks_tensor(train, QUICK_CALIB_BLOCKS if ctx.quick else CALIB_BLOCKS)
    held = common.blocks_tensor(val, 160)
    steps = QUICK_FT_STEPS if ctx.quick else FT_STEPS
    rms = common.load_export(rms_run["export"])

    rows, fits, curves = [], {}, {}

    def measure(name, model, seconds=None, **extra):
        loss = common.mean_loss(model, held)
        rows.append({"model": name, "val_loss": loss, "ppl": math.exp(loss), "seconds": seconds, **extra})
        print(f"{name}: val loss {loss:.4f}, ppl {math.exp(loss):.2f}", flush=True)

    measure("RMSNorm (trained)", rms)
    table = llama_to_ours(rms, "dyt")
    measure("DyT, table alpha0", table, alpha0=table.config.dyt_alpha_inits)
    variants = {
        "DyT, fitted alpha (weight = RMSNorm gain)": dict(fit_weight=False),
        "DyT, fitted alpha + weight, one-shot": dict(sequential=False),
        "DyT, fitted alpha + weight, sequential": dict(),
    }
    for name, kw in variants.items():
        model = llama_to_ours(rms, "dyt")
        t = time.perf_counter()
        fits[name] = fit_dyt_to_rmsnorm(rms, model, calib, **kw)
        measure(name, model, round(time.perf_counter() - t, 1))
    fitted = model  # the last: sequential, alpha + weight (the converter's default)

    bs = ctx.common["batch_size"]
    for name, model in (("RMSNorm", rms), ("DyT, table alpha0", table), ("DyT, fitted", fitted)):
        t = time.perf_counter()
        curves[name] = fine_tune(model, train, steps, bs)
        measure(f"{name} + {steps}-step fine-tune", model, round(time.perf_counter() - t, 1))
    rows.append({"model": "DyT trained from scratch (part 1)", "val_loss": dyt_run["val_loss"],
                 "ppl": math.exp(dyt_run["val_loss"]) if dyt_run["val_loss"] is not None else None})  # fmt: skip

    fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(12, 3.6))
    names = [r["model"] for r in rows]
    ppl = [r["ppl"] or float("nan") for r in rows]
    ax1.barh(
        range(len(rows)), ppl, color=["tab:blue" if n.startswith("RMSNorm") else "tab:red" for n in names]
    )
    for i, v in enumerate(ppl):
        ax1.text(v, i, f" {v:.1f}", va="center", fontsize=7)
    ax1.set_yticks(range(len(rows)), names, fontsize=7)
    ax1.invert_yaxis()
    common.plain_log(ax1, "x")
    ax1.set_xlabel("held-out perplexity")
    ax1.grid(alpha=0.3, axis="x")
    for name, losses in curves.items():
        ax2.plot(range(1, len(losses) + 1), losses, label=name)
    ax2.set_xlabel("fine-tune step")
    ax2.set_ylabel("train loss")
    ax2.set_title(f"fine-tune, lr {FT_LR:g}", fontsize=10)
    ax2.grid(alpha=0.3)
    ax2.legend(fontsize=7)
    seq = fits["DyT, fitted alpha + weight, sequential"]
    for kind, (marker, color) in {
        "attn": ("o", "tab:red"),
        "ffn": ("s", "tab:blue"),
        "final": ("*", "k"),
    }.items():
        pts = [(1 / s["input_std"], s["alpha"]) for n, s in seq.items() if n.endswith(kind)]
        ax3.scatter(*zip(*pts), marker=marker, color=color, label=kind)
    lims = [min(min(p) for s in seq.values() for p in [(1 / s["input_std"], s["alpha"])]) / 1.5,
            max(max(p) for s in seq.values() for p in [(1 / s["input_std"], s["alpha"])]) * 1.5]  # fmt: skip
    ax3.plot(lims, lims, "k:", lw=0.8, label="alpha = 1/std")
    common.plain_log(ax3, "x")
    common.plain_log(ax3, "y")
    ax3.set_xlabel("1 / std of the site's input")
    ax3.set_ylabel("fitted alpha")
    ax3.set_title("fitted alpha per site", fontsize=10)
    ax3.grid(alpha=0.3)
    ax3.legend(fontsize=7)
    out = {
        "part": 6,
        "title": "DyT from a trained RMSNorm model",
        "command": common.script_command("06_convert_fit.py", ctx),
        "source": rms_run["name"],
        "source_command": rms_run["command"],
        "source_tokens": rms_run["rows"][-1]["tokens"],
        "calibration_tokens": calib.numel(),
        "heldout_tokens": held.numel(),
        "fine_tune": {"steps": steps, "lr": FT_LR, "batch_size": bs, "tokens": steps * bs * shape["seq_len"]},
        "rows": rows,
        "fits": fits,
        "fine_tune_curves": curves,
        "cli": f"python -m dyt_llama.convert {rms_run['export']} OUT --fit-alpha CALIB.txt --fit-tokens 16384",
        "figure": common.save_fig(ctx, fig, "06_convert_fit"),
        "seconds": round(time.perf_counter() - t0, 1),
    }
    common.save_json(ctx, "06_convert_fit", out)
    return out


if __name__ == "__main__":
    main()
