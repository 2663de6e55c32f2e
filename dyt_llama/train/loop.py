"""The pretraining loop, on accelerate: one CPU process up to many GPUs (DDP, FSDP, DeepSpeed).

One optimizer step = grad_accum micro-batches on each of world_size processes. The loss of every micro-batch is
a token sum divided by the tokens of the whole window on all processes, so the gradient is the mean over the
window whatever the split: 4 x 1 accumulates to exactly what 1 x 4 computes, and 2 processes to what 1 does.
"""

import contextlib
import dataclasses
import json
import math
import shutil
import time
from pathlib import Path

import torch
import yaml
from accelerate import Accelerator
from accelerate.utils import set_seed
from tqdm.auto import tqdm

from ..config import DyTLlamaConfig
from ..data import StreamingBlocks, batch_indices, build_token_cache, load_text_dataset
from ..malloc import retain_freed_memory
from ..model import DyTLlamaForCausalLM
from ..tokenizer import check_vocab_fits, load_tokenizer, train_sentencepiece_bpe
from . import checkpoint as ckpt
from .metrics import MetricsLog, dyt_alphas, flops_per_token, peak_flops, peak_memory_bytes
from .optim import build_optimizer, build_scheduler

RUN_FILES = ("metrics.jsonl", ckpt.CHECKPOINTS, "export", "exports", "tb", "run_config.yaml")


class NonFiniteError(FloatingPointError):
    pass


def prepare_output_dir(output_dir: Path, resume: str | None, overwrite: bool) -> None:
    """Refuse to write over another run unless told to continue it (--resume) or replace it (--overwrite)."""
    if output_dir.exists() and not output_dir.is_dir():
        raise NotADirectoryError(f"output_dir {output_dir} is a file; choose a directory")
    existing = [name for name in RUN_FILES if (output_dir / name).exists()]
    if existing and not resume and not overwrite:
        raise FileExistsError(
            f"output_dir {output_dir} holds another run ({', '.join(existing)}); "
            "pass --resume latest to continue it or --overwrite to start over"
        )
    if overwrite and not resume:
        for name in existing:
            path = output_dir / name
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    output_dir.mkdir(parents=True, exist_ok=True)
    probe = output_dir / ".write-test"
    try:
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise PermissionError(f"output_dir {output_dir} is not writable: {e.strerror}") from None


class StepBatches:
    """This process's share of each step's global batch, as a function of the step: resume is exact."""

    def __init__(self, blocks, seed: int, global_batch: int, accelerator):
        self.blocks, self.seed, self.global_batch, self.acc = blocks, seed, global_batch, accelerator

    def __call__(self, step: int) -> dict:
        rank, world = self.acc.process_index, self.acc.num_processes
        return self.blocks.batch(
            batch_indices(len(self.blocks), self.seed, step, self.global_batch, rank, world)
        )

    def position(self) -> dict:
        return {"seed": self.seed, "global_batch": self.global_batch, "num_blocks": len(self.blocks)}


class StreamBatches:
    """The same for a streaming corpus: blocks in stream order, the stream position saved in checkpoints."""

    def __init__(self, blocks: StreamingBlocks, per_process: int):
        self.blocks, self.per_process, self._it = blocks, per_process, None

    def __call__(self, step: int) -> dict:
        self._it = self._it or iter(self.blocks)
        items = [next(self._it, None) for _ in range(self.per_process)]
        if items[-1] is None:
            raise ValueError(f"the stream ended at step {step}; lower max_steps or add data")
        return {k: torch.stack([item[k] for item in items]) for k in items[0]}

    def position(self) -> dict:
        return {"stream": self.blocks.state_dict()}


def load_data(data, accelerator, val_blocks_streaming: int):
    """(tokenizer, train blocks, val blocks). The main process tokenizes and caches first; the others then
    find the cache. A streaming corpus is packed on the fly and needs a given tokenizer."""
    if data.streaming:
        if not data.tokenizer:
            raise ValueError("streaming needs a tokenizer: set tokenizer to a name or path")
        texts = load_text_dataset(
            data.dataset, data.dataset_config, data.split, data.data_files, data.text_column, streaming=True
        )
        tokenizer = load_tokenizer(data.tokenizer)
        rank, world = accelerator.process_index, accelerator.num_processes
        stream = StreamingBlocks(texts, tokenizer, data.seq_len, rank, world, val_blocks=val_blocks_streaming)
        return tokenizer, stream, stream.val
    with accelerator.main_process_first():
        texts = load_text_dataset(
            data.dataset, data.dataset_config, data.split, data.data_files, data.text_column
        )
        if data.tokenizer:
            tokenizer = load_tokenizer(data.tokenizer)
        else:
            tokenizer = train_sentencepiece_bpe(
                (row["text"] for row in texts), data.tokenizer_vocab_size, Path(data.cache_dir) / "tokenizers"
            )
        train_blocks, val_blocks = build_token_cache(
            texts, tokenizer, data.seq_len, data.cache_dir, data.val_fraction, data.num_proc
        )
    return tokenizer, train_blocks, val_blocks


def build_model(model_args, tokenizer, seq_len: int) -> DyTLlamaForCausalLM:
    fields = dataclasses.asdict(model_args)
    rope_theta = fields.pop("rope_theta")
    fields["vocab_size"] = fields["vocab_size"] or len(tokenizer)
    fields["max_position_embeddings"] = fields["max_position_embeddings"] or seq_len
    check_vocab_fits(tokenizer, fields["vocab_size"])
    config = DyTLlamaConfig(
        **fields,
        rope_parameters={"rope_type": "default", "rope_theta": rope_theta},
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return DyTLlamaForCausalLM(config)


def mixed_precision(choice: str) -> str:
    if choice != "auto":
        return choice
    return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no"


def window_tokens(batches: list[dict], accelerator) -> torch.Tensor:
    """Tokens that carry a loss in this accumulation window, summed over every process."""
    n = sum((b["labels"][:, 1:] != -100).sum() for b in batches)
    return accelerator.reduce(torch.as_tensor(n, device=accelerator.device), reduction="sum")


def micro_step_loss(model, batch: dict, num_items: torch.Tensor) -> torch.Tensor:
    """Sum of token losses / tokens of the whole window (transformers' num_items_in_batch does exactly that)."""
    # use_cache=False: a training step needs no KV cache, and building one makes every compiled layer
    # recompile (a fullgraph failure past torch._dynamo's recompile limit of 8 layers).
    return model(
        input_ids=batch["input_ids"], labels=batch["labels"], num_items_in_batch=num_items, use_cache=False
    ).loss


@torch.no_grad()
def evaluate(model, val_blocks, batch_size: int, max_batches: int, accelerator) -> dict:
    """Token-weighted mean loss over the first max_batches * batch_size validation blocks, split over ranks."""
    model.eval()
    n = min(len(val_blocks), max_batches * batch_size * accelerator.num_processes)
    mine = list(range(n))[accelerator.process_index :: accelerator.num_processes]
    total = torch.zeros(2, dtype=torch.float64, device=accelerator.device)
    for i in range(0, len(mine), batch_size):
        batch = {k: v.to(accelerator.device) for k, v in val_blocks.batch(mine[i : i + batch_size]).items()}
        tokens = (batch["labels"][:, 1:] != -100).sum()
        loss = model(**batch, use_cache=False).loss.double()
        total += torch.stack([loss * tokens, tokens.double()])
    total = accelerator.reduce(total, reduction="sum")
    model.train()
    loss = (total[0] / total[1]).item()
    return {"val_loss": loss, "val_ppl": math.exp(min(loss, 700))}


def train(model_args, data_args, args) -> dict:
    output_dir = Path(args.output_dir)
    accelerator = Accelerator(
        # Without an accelerator, say so: launched as several processes they then join over gloo.
        cpu=not torch.accelerator.is_available(),
        mixed_precision=mixed_precision(args.mixed_precision),
        step_scheduler_with_optimizer=False,  # we step it once per optimizer step, whatever the process count
        log_with=None if args.report_to == "none" else args.report_to,
        project_dir=str(output_dir / "tb"),
    )
    if accelerator.device.type == "cpu":
        retain_freed_memory()  # ~15% of a CPU step went to faulting in freshly mapped activations
    log = accelerator.print
    if accelerator.is_main_process:
        prepare_output_dir(output_dir, args.resume, args.overwrite)
    accelerator.wait_for_everyone()
    set_seed(args.seed)

    world = accelerator.num_processes
    tokenizer, train_blocks, val_blocks = load_data(
        data_args, accelerator, args.eval_batches * args.batch_size * world
    )
    set_seed(args.seed)  # the initial weights depend on the seed alone, not on what data loading drew
    model = build_model(model_args, tokenizer, data_args.seq_len)
    if args.gradient_checkpointing:
        model.activation_checkpointing_enable()
    if args.compile:
        for layer in model.model.layers:  # per decoder layer: small graphs, compiled once, no graph breaks
            layer.compile(fullgraph=True)

    grad_accum = args.grad_accum
    if args.tokens_per_step:
        grad_accum = max(1, round(args.tokens_per_step / (data_args.seq_len * args.batch_size * world)))
    global_batch = args.batch_size * grad_accum * world
    optimizer = build_optimizer(model, args)
    scheduler = build_scheduler(optimizer, args)
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)

    if data_args.streaming:
        source = StreamBatches(train_blocks, args.batch_size * grad_accum)
    else:
        source = StepBatches(train_blocks, args.seed, global_batch, accelerator)
    state = {"step": 0, "consecutive_skips": 0, "skipped_steps": 0, "tokens_seen": 0}
    if args.resume:
        found = ckpt.find_resumable(output_dir, args.resume, log=log)
        if found is not None:
            state = ckpt.load_checkpoint(accelerator, found)
            if data_args.streaming:
                train_blocks.load_state_dict(state["data"]["stream"])
            elif state["data"] != source.position():
                raise ValueError(
                    f"checkpoint {found} was trained with data {state['data']}, this run has "
                    f"{source.position()}; resume with the same seed, batch settings and data"
                )
            log(f"resumed from {found} at step {state['step']}")
        else:
            log(f"no checkpoint in {output_dir}; starting from scratch")

    hparams = resolved_flat(model_args, data_args, args)
    if accelerator.is_main_process:
        (output_dir / "run_config.yaml").write_text(
            yaml.safe_dump(hparams, sort_keys=False), encoding="utf-8"
        )
    metrics = MetricsLog(output_dir / "metrics.jsonl", state["step"], enabled=accelerator.is_main_process)
    if args.report_to != "none":
        accelerator.init_trackers("pretrain", config=hparams)

    unwrapped = accelerator.unwrap_model(model)
    flops_token = flops_per_token(unwrapped, data_args.seq_len)
    peak = peak_flops(accelerator.device)
    tokens_per_step = global_batch * data_args.seq_len
    bar = tqdm(
        total=args.max_steps,
        initial=state["step"],
        disable=not (args.progress and accelerator.is_local_main_process),
        desc="pretrain",
        dynamic_ncols=True,
    )
    model.train()
    last = {}
    while state["step"] < args.max_steps:
        step = state["step"]
        t0 = time.perf_counter()
        mine = source(step)
        batches = [
            {k: v[i : i + args.batch_size].to(accelerator.device) for k, v in mine.items()}
            for i in range(0, len(mine["input_ids"]), args.batch_size)
        ]
        num_items = window_tokens(batches, accelerator)
        loss_sum = torch.zeros((), device=accelerator.device)
        for i, batch in enumerate(batches):
            sync = i == len(batches) - 1
            with accelerator.no_sync(model) if not sync else contextlib.nullcontext():
                loss = micro_step_loss(model, batch, num_items)
                # DDP averages gradients over processes; the loss is already a mean over all of them.
                accelerator.backward(loss * world)
            loss_sum += loss.detach()
        loss_value = accelerator.reduce(loss_sum, reduction="sum").item()
        grad_norm = accelerator.clip_grad_norm_(model.parameters(), args.grad_clip)
        grad_norm = float(grad_norm) if grad_norm is not None else float("nan")

        finite = math.isfinite(loss_value) and math.isfinite(grad_norm)
        if finite:
            optimizer.step()
            scheduler.step()
            state["consecutive_skips"] = 0
        else:
            what = f"loss={loss_value}" if not math.isfinite(loss_value) else f"grad_norm={grad_norm}"
            state["consecutive_skips"] += 1
            state["skipped_steps"] += 1
            if args.nonfinite_policy == "stop" or state["consecutive_skips"] > args.max_skips:
                reason = (
                    "nonfinite_policy=stop"
                    if args.nonfinite_policy == "stop"
                    else f"more than max_skips={args.max_skips} in a row"
                )
                raise NonFiniteError(
                    f"non-finite {what} at step {step + 1} ({reason}); no checkpoint written for it"
                )
            log(
                f"warning: non-finite {what} at step {step + 1}; step skipped ({state['consecutive_skips']} in a row)"
            )
        optimizer.zero_grad(set_to_none=True)
        state["step"] = step + 1
        state["tokens_seen"] += tokens_per_step
        state["data"] = source.position()
        dt = time.perf_counter() - t0

        row = {
            "step": state["step"],
            "loss": loss_value,
            "lr": scheduler.get_last_lr()[0],
            "grad_norm": grad_norm,
            "tokens": state["tokens_seen"],
            "tokens_per_s": tokens_per_step / dt,
            "peak_mem_bytes": peak_memory_bytes(accelerator.device),
            "skipped": not finite,
        }
        if peak:
            row["mfu"] = flops_token * tokens_per_step / dt / (peak * world)
        alphas = dyt_alphas(unwrapped)
        if alphas:
            row["alpha"] = alphas
        if getattr(unwrapped.model, "embed_scale", None) is not None:
            row["embed_scale"] = float(unwrapped.model.embed_scale.detach().float().item())
        if args.eval_every and (state["step"] % args.eval_every == 0 or state["step"] == args.max_steps):
            row.update(evaluate(model, val_blocks, args.batch_size, args.eval_batches, accelerator))
        metrics.write(row)
        last = row
        if args.report_to != "none" and (state["step"] % args.log_every == 0 or "val_loss" in row):
            accelerator.log({k: v for k, v in row.items() if isinstance(v, (int, float))}, step=state["step"])
        bar.update(1)
        bar.set_postfix(
            loss=f"{loss_value:.3f}", **({"val": f"{row['val_loss']:.3f}"} if "val_loss" in row else {})
        )

        if args.save_every and state["step"] % args.save_every == 0:
            _check_finite_weights(unwrapped, state["step"])
            ckpt.save_checkpoint(accelerator, output_dir, state["step"], state, args.keep_last)
        if args.export_every and state["step"] % args.export_every == 0:
            ckpt.export_hf(
                accelerator, model, tokenizer, output_dir / "exports" / f"step_{state['step']:08d}"
            )
    bar.close()

    if "val_loss" not in last:
        last = {**last, **evaluate(model, val_blocks, args.batch_size, args.eval_batches, accelerator)}
    _check_finite_weights(unwrapped, state["step"])
    if args.save_every and not (output_dir / ckpt.CHECKPOINTS / f"step_{state['step']:08d}").exists():
        ckpt.save_checkpoint(accelerator, output_dir, state["step"], state, args.keep_last)
    ckpt.export_hf(accelerator, model, tokenizer, output_dir / "export")
    summary = {
        "step": state["step"],
        "val_loss": last.get("val_loss"),
        "val_ppl": last.get("val_ppl"),
        "skipped_steps": state["skipped_steps"],
        "export": str(output_dir / "export"),
    }
    if accelerator.is_main_process:
        (output_dir / "summary.json").write_text(json.dumps(summary, indent=1), encoding="utf-8")
    log(f"done: step {summary['step']}, val_loss {summary['val_loss']:.4f}, export in {summary['export']}")
    accelerator.end_training()
    return summary


def _check_finite_weights(model, step: int) -> None:
    if not ckpt.all_finite(model):
        raise NonFiniteError(f"the weights hold NaN or inf at step {step}; nothing saved")


def resolved_flat(*arg_objects) -> dict:
    """Every setting of the run, flat; None and other non-scalars as strings so trackers take them."""
    out = {}
    for obj in arg_objects:
        for k, v in dataclasses.asdict(obj).items():
            out[k] = v if isinstance(v, (int, float, str, bool)) else str(v)
    return out
