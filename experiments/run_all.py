"""`make experiments`: every experiment script in order, then the report (docs/results.md).

python experiments/run_all.py [--quick] [--out runs/experiments]

The scripts run in this one process (no interpreter start per script) and share part 1's models through
the run cache (common.train_run). --quick: tiny shapes and a few steps, results and PNGs under OUT only;
CI's tests run it to check that every script runs and writes its outputs.
"""

import importlib.util
import json
import os
import sys
import time
from pathlib import Path

import common

SCRIPTS = (
    "01_dyt_vs_rmsnorm.py",
    "02_alpha_sensitivity.py",
    "03_embed_scale.py",
    "04_layer_removal.py",
    "05_alpha_vs_std.py",
    "06_convert_fit.py",
)
HERE = Path(__file__).resolve().parent


def load(script: str):
    """A script as a module (its name starts with a digit, so `import` cannot)."""
    spec = importlib.util.spec_from_file_location(script.removesuffix(".py").replace("-", "_"), HERE / script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = common.parser(__doc__.split("\n")[0]).parse_args(argv)
    ctx = common.Context(args)
    t0 = time.perf_counter()
    timings = {
        "quick": ctx.quick,
        "cpus": os.cpu_count(),
        "threads": ctx.threads,
        "loadavg_start": os.getloadavg(),
        "started": time.strftime("%Y-%m-%d %H:%M"),
        "parts": {},
    }
    cpu0 = time.process_time()
    for script in SCRIPTS:
        print(f"=== {script}", flush=True)
        t, c = time.perf_counter(), time.process_time()
        out = load(script).main(argv)
        timings["parts"][script] = {
            "seconds": round(time.perf_counter() - t, 1),
            "cpu_seconds": round(time.process_time() - c, 1),
            "runs_trained": out.get("runs_trained"),
            "runs_reused": out.get("runs_reused"),
        }
    timings["loadavg_end"] = os.getloadavg()
    timings["seconds"] = round(time.perf_counter() - t0, 1)
    timings["cpu_seconds"] = round(time.process_time() - cpu0, 1)
    (ctx.out / "timings.json").write_text(json.dumps(timings, indent=1), encoding="utf-8")
    load("report.py").main(argv)
    print(f"all parts done in {timings['seconds'] / 60:.1f} min", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
