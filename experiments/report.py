"""docs/results.md from the experiments' JSON results (OUT/0N_*.json, OUT/timings.json).

python experiments/report.py [--quick] [--out runs/experiments]

Only formatting happens here: every number comes from the JSON files, every figure from docs/img. The
closing remarks that need a reader's judgement live in experiments/notes.md and are copied in as they are.
With --quick the page goes to OUT/results.md, so CI never rewrites docs/.
"""

import json
import math
import os
import time
from pathlib import Path

import common

PARTS = (
    "01_dyt_vs_rmsnorm",
    "02_alpha_sensitivity",
    "03_embed_scale",
    "04_layer_removal",
    "05_alpha_vs_std",
    "06_convert_fit",
)
NOTES = Path(__file__).resolve().parent / "notes.md"


def f(x, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    return f"{x:.{digits}f}"


def signed(x, digits: int = 3) -> str:
    return "–" if x is None else f"{x:+.{digits}f}"


def table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def details(summary: str, body: str) -> str:
    return f"<details><summary>{summary}</summary>\n\n{body}\n</details>\n"


def commands(records: list[dict]) -> str:
    return "```bash\n" + "\n".join(r["command"] for r in records) + "\n```\n"


def figure(ctx, result: dict, alt: str) -> str:
    path = result["figure"]
    if ctx.quick:  # the page sits in OUT, the images in OUT/img
        path = os.path.relpath(common.REPO / "docs" / path, ctx.out)
    return f"![{alt}]({path})\n"


def load(ctx) -> dict:
    results = {}
    for name in (*PARTS, "timings"):
        path = ctx.out / f"{name}.json"
        if path.is_file():
            results[name] = json.loads(path.read_text())
    return results


# ----------------------------------------------------------------------------------------------
# the parts


def first_eval_gap(curves: dict) -> float | None:
    """Mean DyT - RMSNorm validation loss at the first evaluation of the seeds."""
    firsts = {n: [cv[0][1] for cv in curves[n] if cv] for n in ("rmsnorm", "dyt")}
    if not all(firsts.values()):
        return None
    return sum(firsts["dyt"]) / len(firsts["dyt"]) - sum(firsts["rmsnorm"]) / len(firsts["rmsnorm"])


def part1(ctx, r: dict) -> tuple[str, list]:
    rows, head = [], []
    for config, c in r["configs"].items():
        shape = c["shape"]
        vals = c["val_loss"]
        rows.append([
            f"{config} ({shape['hidden_size']}x{shape['num_hidden_layers']})",
            f"{c['steps']} x {c['tokens'] // c['steps'] if c['tokens'] else '?'} = {c['tokens']:,}",
            " / ".join(f(v) for v in vals["rmsnorm"]),
            " / ".join(f(v) for v in vals["dyt"]),
            " / ".join(signed(g) for g in c["gap_per_seed"]),
            signed(c["gap"]),
        ])  # fmt: skip
        same_sign = c["gap"] is not None and all(
            g is not None and (g > 0) == (c["gap"] > 0) for g in c["gap_per_seed"]
        )
        spread = max(abs(vals[n][0] - vals[n][-1]) for n in vals) if len(vals["dyt"]) > 1 else None
        if c["gap"] is not None:
            word = "worse" if c["gap"] > 0 else "better"
            head.append(
                f"{config}: DyT {word} by {abs(c['gap']):.3f} nats"
                + (" (both seeds)" if same_sign else " (the seeds disagree)")
            )
        c["_same_sign"], c["_spread"] = same_sign, spread
    text = table(
        ["config", "steps x tokens = tokens", "RMSNorm val loss (seed 0 / 1)", "DyT val loss (seed 0 / 1)",
         "gap DyT - RMSNorm per seed", "mean gap"],
        rows,
    )  # fmt: skip
    text += "\n"
    for config, c in r["configs"].items():
        if c["gap"] is None:
            text += f"- **{config}**: a run diverged: {c['diverged']}.\n"
            continue
        text += (
            f"- **{config}**: DyT ends {abs(c['gap']):.3f} nats/token {'above' if c['gap'] > 0 else 'below'} "
            f"RMSNorm ({'the same sign for both seeds' if c['_same_sign'] else 'the seeds disagree on the sign'}; "
            f"the two seeds of one norm differ by up to {c['_spread']:.3f}). "
        )
        first_gap = first_eval_gap(c["curves"])
        if first_gap is not None:
            text += f"At the first evaluation ({c['curves']['dyt'][0][0][0]:,} tokens) the gap was {first_gap:+.3f}.\n"
        else:
            text += "\n"
    text += "\n" + figure(ctx, r, "validation (markers) and training loss (faint) against tokens")
    text += "\n" + details(
        "the 8 training commands",
        commands(r["configs"][list(r["configs"])[0]]["runs"] + r["configs"][list(r["configs"])[-1]]["runs"]),
    )
    return text, head


def trend(best: list[float], grid: list[float]) -> str:
    """How the best value of a grid moves with width, in words, flagging a best value at the grid's edge."""
    values = ", ".join(f"{v:g}" for v in best)
    edge = {max(grid): "largest", min(grid): "smallest"}
    if len(set(best)) == 1:
        where = edge.get(best[0])
        return f"{values}, the same at every width" + (
            f" and the grid's {where} value, so the optimum may lie beyond the grid" if where else ""
        )
    if all(b <= a for a, b in zip(best, best[1:])):
        return f"{values}: falls with width, the table's direction"
    return f"{values}: does not fall with width"


def part2(ctx, r: dict) -> tuple[str, list]:
    attn, other = r["attn_grid"], r["other_grid"]
    rows = []
    for w in map(str, r["widths"]):
        b = r["best"][w]
        rows.append([w, f"{b['attn']:g} / {b['other']:g}" if b else "all diverged", f(b["val_loss"] if b else None),
                     f(r["grid"][w]["1,1"]["val_loss"]), f(r["rmsnorm"][w]), f(r["spread"].get(w)),
                     f(r["inverse_std_at_init"][w], 1)])  # fmt: skip
    text = table(
        ["width", "best alpha0 attn / other", "its val loss", "DyT at the table's 1 / 1", "RMSNorm val loss",
         "worst - best", "1 / (0.02 sqrt(d))"],
        rows,
    )  # fmt: skip
    text += "\n"
    for w in map(str, r["widths"]):
        grid, best = r["grid"][w], r["best"][w]
        body = []
        for o in other:
            cells = []
            for a in attn:
                g = grid[f"{a:g},{o:g}"]
                cell = "diverged" if g["diverged"] else f(g["val_loss"])
                is_best = best and g["attn"] == best["attn"] and g["other"] == best["other"]
                cells.append(f"**{cell}**" if is_best else cell)
            body.append([f"FFN & final {o:g}"] + cells)
        text += f"Width {w} (val loss; columns: attention alpha0):\n\n"
        text += table([""] + [f"attn {a:g}" for a in attn], body) + "\n"
    best_attn = [r["best"][str(w)]["attn"] for w in r["widths"] if r["best"][str(w)]]
    best_other = [r["best"][str(w)]["other"] for w in r["widths"] if r["best"][str(w)]]
    text += (
        f"- Best attention alpha0 by width: {trend(best_attn, attn)}. Best FFN/final alpha0: "
        f"{trend(best_other, other)}. The table gives 1 / 1 at all of these widths (<= 1024). One seed per "
        "grid point: cells closer than the seed-to-seed spread of part 3 (up to 0.09 nats) are not resolved. "
        "The last column is 1/std of what the first norm sees at initialisation (embeddings of std 0.02 times "
        "the sqrt(d) scale).\n"
    )
    if r.get("split"):
        rows = [[w, f"{v['value']:g}", f(v["neither"]), f(v["ffn_only"]), f(v["final_only"]), f(v["both"])]
                for w, v in r["split"].items()]  # fmt: skip
        text += "- Which norm wants the larger alpha0 (best attention alpha0; the FFN and final norms at 1 or at the "
        text += "best value, each alone):\n\n"
        text += (
            table(["width", "best value", "neither (1 / 1)", "FFN only", "final only", "both"], rows) + "\n"
        )
    if r["diverged"]:
        text += (
            "- Diverged: "
            + ", ".join(f"width {d['width']} at {d['attn']:g} / {d['other']:g}" for d in r["diverged"])
            + ".\n"
        )
    else:
        text += "- No setting diverged (no non-finite loss; every final loss below a uniform guess).\n"
    tiny = r.get("tiny") or {}
    if tiny:
        rows = [
            [k, " / ".join(f(v) for v in vals), f(tiny["mean"][k])] for k, vals in tiny["val_loss"].items()
        ]
        text += (
            f"\n**The best pair at width {r['widths'][-1]} on part 1's tiny config** (seeds "
            f"{' and '.join(map(str, tiny.get('seeds', [])))}, the same steps and data as part 1):\n\n"
            + table(["model", "val loss per seed", "mean"], rows)
        )
    text += "\n" + figure(ctx, r, "final validation loss over the alpha0 grid, per width; the tiny config")
    cmds = f"{r['example_command']}\n" + "\n".join(tiny.get("commands", []))
    text += "\n" + details("commands: one grid point (the others change the width and the alpha0 flags), the tiny runs",
                           f"```bash\n{cmds}\n```\n")  # fmt: skip
    head = [f"best attn/other alpha0 by width {'/'.join(map(str, r['widths']))}: "
            + ", ".join(f"{a:g}/{o:g}" for a, o in zip(best_attn, best_other))
            + f" (grids: attn {min(attn):g}-{max(attn):g}, other {min(other):g}-{max(other):g})"
            + f"; {len(r['diverged'])} of {len(r['widths']) * len(attn) * len(other)} diverged"]  # fmt: skip
    if tiny and None not in tiny["mean"].values():
        m = list(tiny["mean"].values())
        head.append(
            f"tiny config, val loss: RMSNorm {m[0]:.3f}, DyT table alpha0 {m[1]:.3f}, DyT {list(tiny['mean'])[2][5:]} {m[2]:.3f}"
        )
    return text, head


def part3(ctx, r: dict) -> tuple[str, list]:
    rows, cmds, gaps = [], [], []
    for w, e in r["widths"].items():
        ws, wo = e["with_scale"], e["without_scale"]
        rows.append([w, " / ".join(f(v) for v in ws["val_loss"]), " / ".join(f(v) for v in wo["val_loss"]),
                     signed(e["gap"]), " / ".join(f(v, 2) for v in ws["final_embed_scale"]), f(math.sqrt(int(w)), 2)])  # fmt: skip
        cmds += [ws["command"], wo["command"]]
        gaps.append(e["gap"])
    seeds = " / ".join(f"seed {s}" for s in r["seeds"])
    text = table(["width", f"with sqrt(d) scale ({seeds})", "without", "mean gain of the scale",
                  "learned scale at the end", "sqrt(d)"], rows)  # fmt: skip
    valid = [g for g in gaps if g is not None]
    helps = valid and all(g > 0 for g in valid)
    text += "\n- " + (
        "The scale helps at every width" if helps else
        "The scale hurts at every width" if valid and all(g < 0 for g in valid) else "Mixed: the scale helps at some widths only"
    ) + f" (gain = loss without - loss with; {', '.join(signed(g) for g in gaps)} for widths {', '.join(r['widths'])}).\n"  # fmt: skip
    text += "\n" + figure(ctx, r, "final validation loss with and without the embedding scale")
    text += "\n" + details(
        "the commands (seed 0; seed 1 adds --seed 1)", "```bash\n" + "\n".join(cmds) + "\n```\n"
    )
    head = ["sqrt(d) scale gain by width: " + ", ".join(signed(g) for g in gaps)]
    return text, head


def part4(ctx, r: dict) -> tuple[str, list]:
    text, head = "", []
    for config, e in r["configs"].items():
        L = len(e["rmsnorm"]["mean_sweep_ratio"])
        rows = [
            [i, f(e["rmsnorm"]["mean_sweep_ratio"][i], 2), f(e["dyt"]["mean_sweep_ratio"][i], 2)]
            for i in range(L)
        ]
        text += f"**{config}** ({L} layers, {e['eval_tokens']:,} held-out tokens; perplexity with the layer removed / "
        text += "full model's, mean of the seeds):\n\n"
        text += table(["removed layer", "RMSNorm", "DyT"], rows) + "\n"
        rows = []
        for k in range(L - 1):
            rows.append([k + 1,
                         str(e["rmsnorm"]["models"][0]["angular"][k]["removed"]), f(e["rmsnorm"]["mean_angular_ratio"][k], 2),
                         str(e["dyt"]["models"][0]["angular"][k]["removed"]), f(e["dyt"]["mean_angular_ratio"][k], 2),
                         f(e["rmsnorm"]["mean_drop_last_ratio"][k], 2), f(e["dyt"]["mean_drop_last_ratio"][k], 2)])  # fmt: skip
        text += table(["n", "RMSNorm block (seed 0)", "RMSNorm ratio", "DyT block (seed 0)", "DyT ratio",
                       "drop last n: RMSNorm", "drop last n: DyT"], rows) + "\n"  # fmt: skip
        hr, hd = e["rmsnorm"]["halves"], e["dyt"]["halves"]
        text += (
            f"- One layer of the first half removed costs x{hr['early']:.2f} (RMSNorm) and x{hd['early']:.2f} (DyT) "
            f"in perplexity; one of the second half (the last apart) x{hr['late']:.2f} and x{hd['late']:.2f}; "
            f"the last layer x{hr['last']:.2f} and x{hd['last']:.2f}. "
        )
        rms_robust, dyt_robust = hr["late"] < hr["early"], hd["late"] < hd["early"]
        text += (
            "Both keep the pre-LN pattern: later layers matter less.\n" if rms_robust and dyt_robust else
             "RMSNorm shows the pre-LN pattern (later layers matter less) and DyT does not.\n" if rms_robust else
             "DyT shows the pattern (later layers matter less) and RMSNorm does not.\n" if dyt_robust else
             "Neither shows the pattern at this depth: later layers matter as much as early ones.\n"
        )  # fmt: skip
        head.append(f"{config}: late/early layer-removal cost RMSNorm x{hr['late']:.2f}/x{hr['early']:.2f}, "
                    f"DyT x{hd['late']:.2f}/x{hd['early']:.2f}")  # fmt: skip
        text += "\n"
    text += figure(ctx, r, "perplexity ratio after removing layers")
    return text, head


def part5(ctx, r: dict) -> tuple[str, list]:
    rows = []
    for config, e in r["configs"].items():
        rows.append([config, f(e["pearson_log"], 2), f(e["pearson"], 2), f(e["alpha_times_std_median"], 2)])
    text = table(
        [
            "model (both seeds, every site)",
            "Pearson r of log alpha, log 1/std",
            "Pearson r",
            "median alpha * std",
        ],
        rows,
    )
    config = list(r["configs"])[-1]
    m = r["configs"][config]["models"][0]
    rows = [
        [n, f(s["alpha"], 3), f(1 / s["input_std"], 3), f(s["alpha_times_std"], 3)]
        for n, s in m["sites"].items()
    ]
    text += "\n" + details(
        f"per site, {m['run']}", table(["site", "alpha", "1/std of input", "alpha * std"], rows)
    )
    r_all = r["pearson_log_all"]
    text += (
        f"\n- Over all sites of all four models, r(log alpha, log 1/std) = {r_all:.2f}: "
        + ("alpha tracks 1/std, as the paper finds" if r_all > 0.7 else
           "a positive but loose relation" if r_all > 0.3 else "alpha does not track 1/std here")
        + f". alpha * std (1 would be an exact match) has a median of {r['configs'][config]['alpha_times_std_median']:.2f} on {config}.\n"
    )  # fmt: skip
    text += "\n" + figure(ctx, r, "learned alpha against 1/std of each DyT's input")
    return text, [f"r(log alpha, log 1/std) = {r_all:.2f} over all sites"]


def part6(ctx, r: dict) -> tuple[str, list]:
    rows = [[x["model"], f(x["val_loss"]), f(x["ppl"], 1)] for x in r["rows"]]
    text = table(["model", "held-out loss", "perplexity"], rows)
    by = {x["model"]: x for x in r["rows"]}
    seq = r["fits"]["DyT, fitted alpha + weight, sequential"]
    rows = [[n, f(s["alpha0"], 2), f(s["alpha"], 3), f(1 / s["input_std"], 3), f(s["rel_err_before"], 4), f(s["rel_err_after"], 4),
             f(s["weight_change"], 3)] for n, s in seq.items()]  # fmt: skip
    text += "\n" + details(
        "per site (sequential fit of alpha and weight)",
        table(
            [
                "site",
                "alpha0",
                "fitted alpha",
                "1/std of input",
                "rel. error before",
                "after",
                "weight change",
            ],
            rows,
        ),
    )
    ft = r["fine_tune"]
    rms, tab = by["RMSNorm (trained)"]["ppl"], by["DyT, table alpha0"]["ppl"]
    fit = by["DyT, fitted alpha + weight, sequential"]["ppl"]
    oneshot = by["DyT, fitted alpha + weight, one-shot"]["ppl"]
    text += (
        f"\n- The conversion with the table's alpha0 loses the model (perplexity {tab:.1f} against {rms:.1f}); the fit "
        f"brings it to {fit:.1f}. The sequential fit {'beats' if fit < oneshot else 'does not beat'} the one-shot fit "
        f"on the RMSNorm model's activations ({fit:.1f} vs {oneshot:.1f}).\n"
        f"- Fine-tune: {ft['steps']} steps of {ft['batch_size']} x {common.TINY['seq_len']} tokens at lr {ft['lr']:g} "
        f"({ft['tokens']:,} tokens, {ft['tokens'] / r['source_tokens']:.0%} of the pretraining tokens). The RMSNorm model is "
        "fine-tuned the same way as the control.\n"
    )  # fmt: skip
    text += "\n" + figure(ctx, r, "perplexity of the conversions; fine-tune curves; fitted alpha per site")
    text += "\n" + details(
        "commands",
        f"```bash\n{r['source_command']}   # the RMSNorm model\n{r['command']}   # conversion, fits, fine-tunes\n"
        f"{r['cli'].replace(str(common.REPO) + '/', '')}   # the same fit from the command line\n```\n",
    )
    head = [f"ppl RMSNorm {rms:.1f}; DyT table alpha0 {tab:.1f}; fitted {fit:.1f}; fitted + fine-tune "
            f"{by['DyT, fitted + ' + str(ft['steps']) + '-step fine-tune']['ppl']:.1f}"]  # fmt: skip
    return text, head


# ----------------------------------------------------------------------------------------------


def corpus_line(ctx) -> str:
    from dyt_llama.data import resolve_data_files

    files = resolve_data_files(ctx.data)
    _, train, val = common.corpus(ctx, 256 if not ctx.quick else 32)
    tokens = (len(train) + len(val)) * train.seq_len
    shown = os.path.relpath(ctx.data, common.REPO) if Path(ctx.data).is_absolute() else ctx.data
    return (
        f"{len(files)} text files (`{shown}`), {tokens:,} tokens with a {ctx.common['tokenizer_vocab_size']}-token "
        "SentencePiece BPE trained on them"
    )


def owner(run_name: str) -> str:
    """The script that first uses a run: part 1's models, part 3's extra micro runs, else part 2's grid."""
    if run_name.startswith("p1-"):
        return "01_dyt_vs_rmsnorm.py"
    if run_name.startswith("p2-"):
        return "02_alpha_sensitivity.py"
    if run_name.endswith("-noscale-s0") or run_name.endswith("-noscale-s1") or run_name.endswith("-s1"):
        return "03_embed_scale.py"
    return "02_alpha_sensitivity.py"


def earlier_runs(ctx, t: dict) -> dict[str, float]:
    """Training seconds, by script, of runs this invocation reused because an earlier one trained them."""
    started = time.mktime(time.strptime(t["started"], "%Y-%m-%d %H:%M")) if "started" in t else None
    out: dict[str, float] = {}
    for record_path in (ctx.out / "runs").glob("*/experiment.json"):
        if started is not None and record_path.stat().st_mtime < started:
            record = json.loads(record_path.read_text())
            out[owner(record["name"])] = out.get(owner(record["name"]), 0.0) + record["seconds"]
    return out


def runtime(ctx, t: dict | None) -> str:
    if not t:
        return "No timings.json: run `python experiments/run_all.py` for the runtime of each part.\n"
    earlier = earlier_runs(ctx, t)
    rows = []
    for script, p in t["parts"].items():
        est = p["seconds"] + earlier.get(script, 0.0)
        row = [script, f"{p['seconds'] / 60:.1f}", f"{p.get('cpu_seconds', 0) / 60:.1f}"]
        rows.append(row + [p["runs_trained"], p["runs_reused"], f"{est / 60:.1f}"])
    total = t["seconds"] + sum(earlier.values())
    rows.append(["**total** (with the report)", f"**{t['seconds'] / 60:.1f}**", f"{t.get('cpu_seconds', 0) / 60:.1f}",
                 "", "", f"**{total / 60:.1f}**"])  # fmt: skip
    text = table(
        ["script", "wall minutes", "CPU minutes", "runs trained", "runs reused", "from scratch (wall, est.)"],
        rows,
    )
    text += (
        f"\nStarted {t.get('started', '?')} on {t['cpus']} CPU cores with {t.get('threads', '?')} torch thread(s); "
        f"load average {t['loadavg_start'][0]:.1f} at the start and {t['loadavg_end'][0]:.1f} at the end (other jobs "
        "shared the machine whenever it was well above the threads used, and then wall time exceeds CPU time). "
        "A part's time is its training plus its measurements; part 1's eight models are trained once and reused "
        "by parts 4-6. \"From scratch\" adds the recorded training time of runs that an earlier, interrupted "
        "invocation had already trained (experiment.json of each run).\n"
    )  # fmt: skip
    return text


def main(argv=None) -> str:
    ctx = common.setup(__doc__.split("\n")[0], argv)
    results = load(ctx)
    heads, sections = {}, []
    makers = dict(zip(PARTS, (part1, part2, part3, part4, part5, part6)))
    titles = {
        "01_dyt_vs_rmsnorm": "1. DyT against RMSNorm",
        "02_alpha_sensitivity": "2. alpha0 sensitivity against width",
        "03_embed_scale": "3. The sqrt(d) embedding scale",
        "04_layer_removal": "4. Layer removal",
        "05_alpha_vs_std": "5. Learned alpha against 1/std of the input",
        "06_convert_fit": "6. DyT from a trained RMSNorm model",
    }
    for name in PARTS:
        if name not in results:
            sections.append(f"## {titles[name]}\n\nNot run yet: `python experiments/{name}.py`.\n")
            continue
        r = results[name]
        body, head = makers[name](ctx, r)
        heads[name] = head
        doc = (Path(__file__).resolve().parent / f"{name}.py").read_text().split('"""')[1].split("\n\n", 2)
        intro = doc[2].strip() if len(doc) > 2 else ""
        sections.append(f"## {titles[name]}\n\n{intro}\n\n`{r['command']}`\n\n{body}")

    paper = {
        "01_dyt_vs_rmsnorm": "LLaMA 7B: 1.59 (DyT) vs 1.60 (RMSNorm); 13B-70B within 0.01",
        "02_alpha_sensitivity": "wider models want smaller alpha0, FFN/final more than attention",
        "03_embed_scale": "the LLaMA runs use it (learnable, init sqrt(d))",
        "04_layer_removal": "pre-LN models lose little without a later layer (not tested with DyT in the paper)",
        "05_alpha_vs_std": "alpha tracks 1/std of its input (Fig. 8)",
        "06_convert_fit": "not in the paper",
    }
    head_rows = [[titles[n], paper[n], "<br>".join(heads[n])] for n in PARTS if n in heads]
    quick_note = "\n**--quick run: shapes and step counts that only check the scripts; the numbers mean nothing.**\n" if ctx.quick else ""  # fmt: skip
    notes = NOTES.read_text().strip() + "\n" if NOTES.is_file() and not ctx.quick else ""
    page = f"""# Results: DyT against RMSNorm at small scale, on CPU

Generated by `make experiments` (`python experiments/run_all.py`, {time.strftime("%Y-%m-%d")}) from the JSON
results in `runs/experiments/`; `python experiments/report.py` rewrites this page from them. Each part is also
a script of its own, shown with its section.
{quick_note}
**Setup.** {corpus_line(ctx)}; the last {ctx.common["val_fraction"]:.0%} of the token stream is the held-out split, and
"val loss" is the mean next-token loss on it in nats/token. AdamW (0.9/0.95, weight decay 0.1 on every
parameter, clip 1.0), lr 3e-3 with a linear warmup over a fifth of the steps then cosine to 0.1x, fp32 on
the CPU, DyT at all three sites with the sqrt(d) embedding scale unless said otherwise. The models are
0.3M-10M parameters trained on under a million tokens: this is the paper's recipe at a scale where a laptop
can check it, not a reproduction of its numbers.

## Headline

{table(["question", "paper", "here"], head_rows)}
## Runtime

{runtime(ctx, results.get("timings"))}
{chr(10).join(sections)}
{notes}"""
    path = (ctx.out if ctx.quick else common.REPO / "docs") / "results.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    print(f"wrote {path}", flush=True)
    return page


if __name__ == "__main__":
    main()
