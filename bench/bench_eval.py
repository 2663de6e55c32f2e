"""Speed and agreement of our evaluator against lm-eval's HFLM: same model, tasks, documents and machine.

    .venv/bin/python bench/bench_eval.py                 # 50 documents of each zero-shot task
    .venv/bin/python bench/bench_eval.py --vocab-size 32000 --repeats 3 --threads 1

Builds a random LLaMA of configs/tiny.yaml's shape (4 layers, width 256, 4 heads, FFN 688) with a SentencePiece
BPE tokenizer trained on the shared text (4,096 pieces as tiny.yaml; 32,000 is LLaMA's vocabulary), saves it,
and scores the same local documents with lm-eval (HFLM(pretrained=DIR) + evaluate) and with run_tasks, in
one process, same batch size, same threads, timed alternately. Prints both times (median of --repeats), the
ratio and the largest per-request log-likelihood difference; appends a row to bench/results/eval.json.
Model loading is outside both timings; lm-eval's documents are loaded before its clock starts, ours are
read from the files inside ours (from the second repeat on, from run_tasks' in-process cache); tokenization,
scoring and metrics are inside both.
The ratio grows with the vocabulary: HFLM runs the LM head and log-softmax over every position.
"""

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import torch  # noqa: E402
from transformers import LlamaConfig, LlamaForCausalLM  # noqa: E402

from dyt_llama.eval import run_tasks  # noqa: E402
from dyt_llama.eval.data import default_data_dir  # noqa: E402
from dyt_llama.eval.lmeval import evaluate_lmeval, load_lmeval_tasks, per_request_loglikelihoods  # noqa: E402
from dyt_llama.eval.loading import load_model  # noqa: E402
from dyt_llama.tokenizer import train_sentencepiece_bpe  # noqa: E402

ZERO_SHOT = "hellaswag,piqa,arc_easy,arc_challenge,winogrande,boolq,openbookqa,lambada_openai"


def build_model(out: Path, vocab_size: int, layers: int, width: int, cache: Path) -> Path:
    data = default_data_dir()
    tok = train_sentencepiece_bpe(
        [data / "tinyshakespeare" / "input.txt", data / "war_and_peace" / "war_and_peace.txt"],
        vocab_size,
        cache,
    )
    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=width,
        intermediate_size=688 if width == 256 else width * 8 // 3 // 64 * 64 + 64,  # 688: configs/tiny.yaml
        num_hidden_layers=layers,
        num_attention_heads=max(1, width // 64),
        num_key_value_heads=max(1, width // 64),
        max_position_embeddings=2048,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
    )
    LlamaForCausalLM(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", default=ZERO_SHOT)
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--width", type=int, default=256)
    p.add_argument("--vocab-size", type=int, default=4096)
    p.add_argument("--repeats", type=int, default=3, help="time each side this many times, keep the median")
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--bootstrap-iters", type=int, default=1000, help="the same for both (lambada ppl stderr)")
    p.add_argument("--out", default=str(REPO / "bench" / "results" / "eval.json"))
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    tasks = args.tasks.split(",")
    load_start = os.getloadavg()

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model_dir = build_model(
            tmp / "model", args.vocab_size, args.layers, args.width, REPO / "runs" / "tokenizers"
        )
        from lm_eval.models.huggingface import HFLM

        hflm = HFLM(pretrained=str(model_dir), batch_size=args.batch_size, device="cpu")
        model, tokenizer = load_model(str(model_dir), device="cpu", dtype="auto")
        # lm-eval's documents are loaded (through `datasets`) before its clock starts; ours read theirs inside.
        loaded = load_lmeval_tasks(tasks, tmp / "lmeval", limit=args.limit)
        lmeval_s, ours_s = [], []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            theirs = evaluate_lmeval(hflm, loaded, args.bootstrap_iters)
            lmeval_s.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            ours = run_tasks(
                model,
                tokenizer,
                tasks,
                limit=args.limit,
                batch_size=args.batch_size,
                bootstrap_iters=args.bootstrap_iters,
                progress=False,
                log_samples=True,
            )
            ours_s.append(time.perf_counter() - t0)

    max_diff, n_requests, metric_diff = 0.0, 0, 0.0
    for task in tasks:
        their_lls = per_request_loglikelihoods(theirs["samples"][task])
        for mine, ref in zip(ours[task]["samples"], their_lls, strict=True):
            mine = mine.get("loglikelihoods") or [mine["loglikelihood"]]
            max_diff = max(max_diff, *(abs(a - b) for a, b in zip(mine, ref, strict=True)))
            n_requests += len(ref)
        for key, value in theirs["results"][task].items():
            metric = key.split(",")[0]
            if isinstance(value, float) and metric in ours[task] and ours[task][metric] is not None:
                metric_diff = max(metric_diff, abs(value - ours[task][metric]) / max(1.0, abs(value)))
    t_lmeval, t_ours = statistics.median(lmeval_s), statistics.median(ours_s)
    row = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": f"{platform.machine()} {os.cpu_count()} cpus, {args.threads} threads, "
        + (torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"),
        "model": f"random LLaMA {args.layers}x{args.width}, vocab {len(tokenizer)}, fp32",
        "tasks": tasks,
        "limit": args.limit,
        "requests": n_requests,
        "batch_size": args.batch_size,
        "lmeval_s": round(t_lmeval, 3),
        "ours_s": round(t_ours, 3),
        "repeats": {"lmeval_s": [round(t, 3) for t in lmeval_s], "ours_s": [round(t, 3) for t in ours_s]},
        "speedup": round(t_lmeval / t_ours, 2),
        "max_abs_loglik_diff": max_diff,
        "max_rel_metric_diff": metric_diff,
        "loadavg_start_end": [load_start[0], os.getloadavg()[0]],
        "versions": {"torch": torch.__version__, "lm_eval": __import__("lm_eval").__version__},
    }
    print(f"lm-eval HFLM: {t_lmeval:.2f} s   ours: {t_ours:.2f} s   speedup: {t_lmeval / t_ours:.2f}x")
    print(
        f"{n_requests} requests; max |loglik diff| {max_diff:.3g}; max relative metric diff {metric_diff:.3g}"
    )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    rows = json.loads(out.read_text()) if out.is_file() else []
    out.write_text(json.dumps([*rows, row], indent=2) + "\n")
    print(f"appended to {out}")


if __name__ == "__main__":
    main()
