"""Pretraining settings as dataclasses: a YAML file gives them, `--key value` on the command line overrides them.

transformers' HfArgumentParser does the parsing, so every field below is a flag, and an unknown key in the YAML
or on the command line is an error.
"""

import dataclasses
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch
import yaml
from transformers import HfArgumentParser

from dyt_llama.kernels.compiled import missing_cxx


@dataclass
class ModelArgs:
    norm_type: str = field(default="rmsnorm", metadata={"help": "rmsnorm (exactly LLaMA) or dyt"})
    hidden_size: int = 256
    intermediate_size: int = 688
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    num_key_value_heads: int | None = None
    vocab_size: int | None = field(default=None, metadata={"help": "default: the tokenizer's size"})
    max_position_embeddings: int | None = field(default=None, metadata={"help": "default: seq_len"})
    rope_theta: float = 10000.0
    tie_word_embeddings: bool = False
    initializer_range: float = 0.02
    dyt_alpha_init_attn: float | None = field(
        default=None, metadata={"help": "default: the paper's width table"}
    )
    dyt_alpha_init_ffn: float | None = None
    dyt_alpha_init_final: float | None = None
    dyt_embed_scale: bool | None = field(default=None, metadata={"help": "default: on for dyt"})
    dyt_bias: bool = False
    dyt_impl: str = field(
        default="auto",
        metadata={"help": "auto, eager, fused, compiled or triton; auto: triton on CUDA, compiled on CPU"},
    )


@dataclass
class DataArgs:
    dataset: str | None = field(default=None, metadata={"help": "a Hugging Face dataset name"})
    dataset_config: str | None = None
    split: str = "train"
    data_files: str | None = field(
        default=None, metadata={"help": "local txt/json/jsonl/parquet files; globs, comma-separated"}
    )
    text_column: str = "text"
    streaming: bool = False
    seq_len: int = 256
    val_fraction: float = 0.01
    cache_dir: str = "data/cache"
    num_proc: int | None = None
    tokenizer: str | None = field(
        default=None, metadata={"help": "tokenizer name or path; unset: train a BPE"}
    )
    tokenizer_vocab_size: int = 4096


@dataclass
class TrainArgs:
    output_dir: str = "runs/tiny"
    seed: int = 0
    max_steps: int = 1000
    batch_size: int = field(default=16, metadata={"help": "sequences per process per micro-step"})
    grad_accum: int = 1
    tokens_per_step: int | None = field(
        default=None, metadata={"help": "set grad_accum to reach this many tokens"}
    )
    lr: float = 3e-4
    min_lr_ratio: float = 0.1
    warmup_steps: int = 2000
    weight_decay: float = 0.1
    weight_decay_policy: str = field(default="all", metadata={"help": "all (the paper) or skip_1d"})
    beta1: float = 0.9
    beta2: float = 0.95
    adam_eps: float = 1e-8
    adamw_fused: bool = field(
        default=True,
        metadata={"help": "torch's fused AdamW kernel (5x faster steps on CPU); false: torch's default"},
    )
    grad_clip: float = 1.0
    mixed_precision: str = field(
        default="auto", metadata={"help": "auto (bf16 where supported), no, bf16, fp16"}
    )
    compile: bool = False
    gradient_checkpointing: bool = False
    eval_every: int = 100
    eval_batches: int = 20
    log_every: int = 10
    save_every: int = 0
    keep_last: int = 3
    export_every: int = 0
    resume: str | None = field(default=None, metadata={"help": "'latest' or a checkpoint directory"})
    overwrite: bool = False
    nonfinite_policy: str = field(
        default="skip", metadata={"help": "skip (up to max_skips in a row) or stop"}
    )
    max_skips: int = 5
    report_to: str = field(default="tensorboard", metadata={"help": "an accelerate tracker, or none"})
    progress: bool = True
    debug: bool = False


ARG_CLASSES = (ModelArgs, DataArgs, TrainArgs)


class _Parser(HfArgumentParser):
    def error(self, message):  # one line through dyt_llama.cli, not argparse's usage block
        raise ValueError(f"{message}; run pretrain.py --help for the keys")


def _known_fields() -> dict[str, type]:
    return {f.name: cls for cls in ARG_CLASSES for f in dataclasses.fields(cls)}


def load_yaml(path: str) -> dict:
    """A config file as a flat dict. Sections (model:, data:, train:) are allowed and flattened."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"config file {path} not found; see configs/ for the shipped ones")
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise ValueError(f"config file {path} is not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(raw, dict):
        raise ValueError(f"config file {path} must be a mapping of keys to values, not {type(raw).__name__}")
    flat = {}
    for key, value in raw.items():
        if key in ("model", "data", "train") and isinstance(value, dict):
            flat.update(value)
        else:
            flat[key] = value
    unknown = sorted(set(flat) - set(_known_fields()))
    if unknown:
        raise ValueError(
            f"config file {path}: unknown key(s) {', '.join(unknown)}; run pretrain.py --help for the keys"
        )
    return flat


def _check_types(values: dict, source: str) -> None:
    """YAML values must already have the field's type: a typo like `lr: 3e-4x` is an error, not a string."""
    fields = {f.name: f for cls in ARG_CLASSES for f in dataclasses.fields(cls)}
    for key, value in values.items():
        if value is None:
            continue
        annotation = str(fields[key].type)
        ok = (
            ("bool" in annotation and isinstance(value, bool))
            or ("int" in annotation and isinstance(value, int) and not isinstance(value, bool))
            or ("float" in annotation and isinstance(value, (int, float)) and not isinstance(value, bool))
            or ("str" in annotation and isinstance(value, str))
        )
        if not ok:
            raise ValueError(f"{source}: {key}={value!r} has the wrong type; expected {annotation}")


def parse_args(argv: list[str] | None = None) -> tuple[ModelArgs, DataArgs, TrainArgs]:
    """`--config FILE` first, then every other flag overrides what the file says."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _Parser(ARG_CLASSES, prog="pretrain.py", description="Pretrain a LLaMA / DyT-LLaMA model.")
    parser.add_argument("--config", help="a YAML file under configs/")
    known, _ = parser.parse_known_args(argv)
    if known.config:
        defaults = load_yaml(known.config)
        _check_types(defaults, known.config)
        parser.set_defaults(**defaults)
    *dataclasses_, _namespace = parser.parse_args_into_dataclasses(argv, return_remaining_strings=False)
    model, data, train = dataclasses_[:3]
    validate(model, data, train)
    return model, data, train


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


def validate(model: ModelArgs, data: DataArgs, train: TrainArgs) -> None:
    """Checks that need no data or model: one message each, naming the key and the fix."""
    _require(model.norm_type in ("rmsnorm", "dyt"), f"norm_type={model.norm_type!r}: choose rmsnorm or dyt")
    _require(
        model.hidden_size > 0 and model.num_attention_heads > 0,
        "hidden_size and num_attention_heads must be > 0",
    )
    _require(
        model.hidden_size % model.num_attention_heads == 0,
        f"hidden_size={model.hidden_size} is not divisible by num_attention_heads={model.num_attention_heads}",
    )
    kv = model.num_key_value_heads or model.num_attention_heads
    _require(
        model.num_attention_heads % kv == 0,
        f"num_attention_heads={model.num_attention_heads} is not divisible by num_key_value_heads={kv}",
    )
    _require(model.num_hidden_layers > 0, "num_hidden_layers must be > 0")
    _require(data.seq_len > 1, "seq_len must be > 1")
    if model.max_position_embeddings is not None:
        _require(
            data.seq_len <= model.max_position_embeddings,
            f"seq_len={data.seq_len} is over max_position_embeddings={model.max_position_embeddings}; "
            "lower seq_len or raise max_position_embeddings",
        )
    _require(0 < data.val_fraction < 1, f"val_fraction={data.val_fraction} must be between 0 and 1")
    _require(data.dataset or data.data_files, "no data: set dataset (a Hub name) or data_files (local files)")
    _require(
        train.max_steps > 0 and train.batch_size > 0 and train.grad_accum > 0,
        "max_steps, batch_size and grad_accum must be > 0",
    )
    _require(train.lr > 0 and math.isfinite(train.lr), f"lr={train.lr} must be a positive number")
    _require(0 <= train.min_lr_ratio <= 1, "min_lr_ratio must be in [0, 1]")
    _require(
        train.weight_decay_policy in ("all", "skip_1d"),
        f"weight_decay_policy={train.weight_decay_policy!r}: all or skip_1d",
    )
    _require(
        train.nonfinite_policy in ("skip", "stop"),
        f"nonfinite_policy={train.nonfinite_policy!r}: skip or stop",
    )
    _require(
        train.mixed_precision in ("auto", "no", "bf16", "fp16"),
        f"mixed_precision={train.mixed_precision!r}: auto, no, bf16 or fp16",
    )
    _require(train.keep_last >= 1, "keep_last must be >= 1")
    if train.compile and not torch.cuda.is_available():
        cxx = missing_cxx()
        _require(
            cxx is None,
            f"compile=true on CPU needs a C++ compiler for torch.compile, and {cxx} is not on PATH; "
            "install one (or set CXX) or pass --compile false",
        )
