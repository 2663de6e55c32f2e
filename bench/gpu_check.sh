#!/usr/bin/env bash
# The GPU check: every H200 measurement of the speed targets in one command, in well under 8 minutes.
#
#   bash bench/gpu_check.sh                       # on the GPU machine (CUDA, bf16)
#   bash bench/gpu_check.sh --device cpu --quick  # smoke test of every part on CPU at tiny sizes
#
# Parts, in order of importance, each under `timeout` and cut to what is left of the budget:
#   wheels      pip-installs .whl/*.whl if that folder exists (packages the machine lacks)
#   norm        bench/bench_norm.py, bf16: Triton DyT fwd+bwd GB/s against a device-to-device copy
#   mfu_350m    bench/bench_train_step.py, 350m config, DyT model, bf16 autocast, per-layer compile: MFU
#   mfu_1b      the same for the 1b config
#   base_350m   optional, only with time left: the 350m RMSNorm model and LlamaForCausalLM for context
# Results: one JSON, $OUT/gpu_check.json when $OUT is set, else bench/results/gpu_check.json (each part's own
# JSON and log beside it in gpu_check_parts/), and a pass/fail table against the targets:
# Triton DyT fwd+bwd >= 85% of copy bandwidth (every shape), MFU >= 45% (350m or 1b).
# Exit status: 0 every target passes, 1 a target fails, 2 a part failed or timed out.
# GPU_CHECK_BUDGET_S (default 420) bounds the whole run; PYTHON picks the interpreter (default python3).

set -uo pipefail
cd "$(dirname "$0")/.." || exit 2

DEVICE=cuda
QUICK=0
while [ $# -gt 0 ]; do
  case "$1" in
    --device) DEVICE=$2; shift 2 ;;
    --quick) QUICK=1; shift ;;
    -h | --help) sed -n '2,19p' "$0"; exit 0 ;;
    *) echo "gpu_check: unknown argument $1" >&2; exit 2 ;;
  esac
done

PY=${PYTHON:-python3}
RESULTS=${OUT:-bench/results}
PARTS=$RESULTS/gpu_check_parts
BUDGET=${GPU_CHECK_BUDGET_S:-420}
START=$(date +%s)
mkdir -p "$PARTS" || exit 2
rm -f "$PARTS"/*.json "$PARTS"/*.log
STATUS=$PARTS/status.tsv
: >"$STATUS"
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false

elapsed() { echo $(($(date +%s) - START)); }

# run_part NAME LIMIT_S [optional] -- COMMAND...: run under timeout, cut to the budget left (20 s are kept
# for the merge); an optional part only runs when its whole limit still fits.
run_part() {
  local name=$1 limit=$2 optional=0
  shift 2
  if [ "$1" = optional ]; then optional=1; shift; fi
  [ "$1" = -- ] && shift
  local left=$((BUDGET - $(elapsed) - 20))
  if [ "$left" -lt 30 ] || { [ "$optional" = 1 ] && [ "$left" -lt "$limit" ]; }; then
    echo "== $name: skipped, $(elapsed) s of the ${BUDGET} s budget used"
    printf '%s\tskipped\t0\t0\n' "$name" >>"$STATUS"
    return
  fi
  [ "$limit" -gt "$left" ] && limit=$left
  echo "== $name (at most ${limit} s; $(elapsed) s elapsed)"
  local t0
  t0=$(date +%s)
  timeout -k 10 "$limit" "$@" 2>&1 | tee "$PARTS/$name.log"
  local rc=${PIPESTATUS[0]}
  printf '%s\t%s\t%s\t%s\n' "$name" "$rc" "$(($(date +%s) - t0))" "$limit" >>"$STATUS"
  [ "$rc" = 0 ] || echo "== $name: exit status $rc$([ "$rc" = 124 ] && echo ' (timed out)')"
}

if compgen -G ".whl/*.whl" >/dev/null; then
  # Everything in .whl/, from there alone; if their dependencies are not all there, without them.
  run_part wheels 90 -- bash -c '"$0" -m pip install -q --no-index --find-links .whl .whl/*.whl ||
    "$0" -m pip install -q --no-index --no-deps .whl/*.whl' "$PY"
fi
if command -v nvidia-smi >/dev/null; then
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv >"$PARTS/nvidia-smi.txt" 2>&1
fi

if [ "$QUICK" = 1 ]; then
  NORM_ARGS=(--dtype float32 --shapes 2x64x256 --repeats 2 --warmup 1 --no-compile)
  STEP_ARGS=(--dtype bf16 --quick)
else
  NORM_ARGS=(--dtype bfloat16 --repeats 20 --warmup 3 --no-compile)
  STEP_ARGS=(--dtype bf16)
fi

run_part norm 100 -- "$PY" bench/bench_norm.py --device "$DEVICE" "${NORM_ARGS[@]}" --out "$PARTS/norm.json"
run_part mfu_350m 160 -- "$PY" bench/bench_train_step.py --device "$DEVICE" "${STEP_ARGS[@]}" \
  --configs 350m --modes compiled --models dyt --out "$PARTS/mfu_350m.json"
run_part mfu_1b 140 -- "$PY" bench/bench_train_step.py --device "$DEVICE" "${STEP_ARGS[@]}" \
  --configs 1b --modes compiled --models dyt --out "$PARTS/mfu_1b.json"
run_part base_350m 150 optional -- "$PY" bench/bench_train_step.py --device "$DEVICE" "${STEP_ARGS[@]}" \
  --configs 350m --modes compiled --models rmsnorm,llama --out "$PARTS/base_350m.json"

RESULT=$RESULTS/gpu_check.json
GPU_CHECK_ELAPSED=$(elapsed) "$PY" - "$PARTS" "$RESULT" "$DEVICE" "$QUICK" <<'PYTHON'
"""Merge the parts' JSON into one, print the table against the targets, exit 0 / 1 / 2."""
import datetime
import json
import os
import sys
from pathlib import Path

parts_dir, result_path, device, quick = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], sys.argv[4] == "1"
COPY_FRACTION, MFU = 0.85, 0.45


def load(name):
    path = parts_dir / f"{name}.json"
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data[-1] if isinstance(data, list) and data else data  # train_step files are lists of runs


status = {}
for line in (parts_dir / "status.tsv").read_text().splitlines():
    name, rc, seconds, limit = line.split("\t")
    status[name] = {"rc": rc, "seconds": int(seconds), "limit_s": int(limit)}
smi = parts_dir / "nvidia-smi.txt"
result = {
    "bench": "gpu_check",
    "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    "device": device,
    "quick": quick,
    "nvidia_smi": smi.read_text().strip() if smi.exists() else None,
    "elapsed_s": int(os.environ.get("GPU_CHECK_ELAPSED", 0)),
    "parts": status,
    "norm": load("norm"),
    "train_step": {name: load(name) for name in ("mfu_350m", "mfu_1b", "base_350m")},
    "checks": [],
}
checks = result["checks"]

norm = result["norm"] or {}
fractions = {}
for s in norm.get("summary", []):
    if "triton_copy_fraction" in s:
        fractions["x".join(map(str, s["shape"]))] = s["triton_copy_fraction"]
if not fractions:  # an older bench_norm without the summary field: the rows hold the same number
    for r in norm.get("rows", []):
        if r.get("layer") == "DyT triton" and "fwdbwd_copy_fraction" in r:
            fractions["x".join(map(str, r["shape"]))] = r["fwdbwd_copy_fraction"]
for shape, f in fractions.items():
    checks.append({"check": f"Triton DyT fwd+bwd / copy GB/s, {shape}", "value": f, "target": COPY_FRACTION,
                   "pass": f >= COPY_FRACTION, "fmt": "pct"})
if not fractions:
    checks.append({"check": "Triton DyT fwd+bwd / copy GB/s", "value": None, "target": COPY_FRACTION,
                   "pass": False, "fmt": "pct", "note": "no Triton rows (part failed, or no CUDA/Triton)"})

mfus = []
for name, run in result["train_step"].items():
    for row in (run or {}).get("rows", []):
        for kind, m in row["models"].items():
            label = f"{row['config']} {kind} {row['mode']} {run['dtype']}: MFU, {m['tokens_per_s']:.0f} tokens/s"
            checks.append({"check": label, "value": m.get("mfu"), "target": MFU if kind == "dyt" else None,
                           "pass": None, "fmt": "pct"})
            if kind == "dyt":
                mfus.append(m.get("mfu"))
best = max((m for m in mfus if m is not None), default=None)
checks.append({"check": "best DyT MFU, 350m or 1b", "value": best, "target": MFU,
               "pass": best is not None and best >= MFU, "fmt": "pct"})
bandwidth_ok = bool(fractions) and all(f >= COPY_FRACTION for f in fractions.values())
result["pass"] = {"bandwidth": bandwidth_ok, "mfu": best is not None and best >= MFU}
failed_parts = [n for n, s in status.items() if s["rc"] not in ("0", "skipped")]
result["failed_parts"] = failed_parts

result_path.parent.mkdir(parents=True, exist_ok=True)
result_path.write_text(json.dumps(result, indent=1) + "\n")

print(f"\nGPU check on {device}{' (quick smoke test)' if quick else ''}, {result['elapsed_s']} s")
if result["nvidia_smi"]:
    print(result["nvidia_smi"].splitlines()[-1])
print(f"{'part':<12} {'status':>8} {'seconds':>8}")
for name, s in status.items():
    rc = {"0": "ok", "124": "timeout", "skipped": "skipped"}.get(s["rc"], f"rc {s['rc']}")
    print(f"{name:<12} {rc:>8} {s['seconds']:>8}")
print(f"\n{'check':<62} {'value':>8} {'target':>8}  result")
for c in checks:
    value = f"{c['value'] * 100:7.1f}%" if c["value"] is not None else f"{'-':>8}"
    target = f">={c['target'] * 100:.0f}%" if c["target"] is not None else ""
    verdict = "" if c["pass"] is None else ("PASS" if c["pass"] else "FAIL")
    print(f"{c['check']:<62} {value:>8} {target:>8}  {verdict}")
print(f"\nbandwidth target: {'PASS' if result['pass']['bandwidth'] else 'FAIL'};"
      f" MFU target: {'PASS' if result['pass']['mfu'] else 'FAIL'}"
      + (f"; failed parts: {', '.join(failed_parts)}" if failed_parts else ""))
print(f"wrote {result_path}")
sys.exit(2 if failed_parts else 0 if all(result["pass"].values()) else 1)
PYTHON
