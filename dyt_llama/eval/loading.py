"""Load a causal LM and its tokenizer (ours with either norm, plain LLaMA, any AutoModelForCausalLM), and
describe it for the results file."""

from pathlib import Path

import torch

import dyt_llama  # noqa: F401  registers dyt_llama with the Auto classes: our checkpoints need no remote code
from dyt_llama.tokenizer import check_vocab_fits

DTYPES = {"auto": "auto", "float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "tokenizer_config.json", "vocab.json")


def pick_device(device: str = "auto") -> torch.device:
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise ValueError(f"--device {device!r} is not a device — use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {device} but CUDA is not available here — use --device cpu")
    return dev


def _first_line(e: Exception) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def load_model(path: str, device: str = "auto", dtype: str = "auto", tokenizer: str | None = None):
    """(model in eval mode on the device, tokenizer) from a directory or a Hub name."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if dtype not in DTYPES:
        raise ValueError(f"--dtype {dtype!r} is not one of {', '.join(DTYPES)}")
    local = Path(path)
    if local.exists() or path.startswith((".", "/", "~")):
        if not local.is_dir():
            raise ValueError(
                f"model directory {path} does not exist — pass a checkpoint directory or a Hub name"
            )
        if not (local / "config.json").is_file():
            raise ValueError(
                f"{path} has no config.json, so it holds no model — point --model at a checkpoint"
            )
        tok_dir = Path(tokenizer) if tokenizer else local
        if not any((tok_dir / f).is_file() for f in _TOKENIZER_FILES):
            raise ValueError(
                f"{tok_dir} has no tokenizer ({', '.join(_TOKENIZER_FILES)}) — save one there or pass --tokenizer"
            )
    dev = pick_device(device)
    try:
        tok = AutoTokenizer.from_pretrained(tokenizer or path)
    except Exception as e:
        raise ValueError(f"cannot load a tokenizer from {tokenizer or path} ({_first_line(e)})") from None
    try:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=DTYPES[dtype])
    except Exception as e:
        raise ValueError(f"cannot load a causal LM from {path} ({_first_line(e)})") from None
    check_vocab_fits(tok, model.get_input_embeddings().num_embeddings)
    return model.to(dev).eval(), tok


def describe_model(model, path: str | None = None) -> dict:
    """What the results file records about the model: its kind, norm and alpha0s, and size."""
    cfg = model.config
    info = {
        "path": path,
        "model_type": cfg.model_type,
        "architecture": type(model).__name__,
        "norm_type": getattr(cfg, "norm_type", "rmsnorm" if cfg.model_type == "llama" else None),
        "alpha0": getattr(cfg, "dyt_alpha_inits", None) if getattr(cfg, "norm_type", None) == "dyt" else None,
        "parameters": sum(p.numel() for p in model.parameters()),
        "hidden_size": getattr(cfg, "hidden_size", None),
        "num_hidden_layers": getattr(cfg, "num_hidden_layers", None),
        "vocab_size": getattr(cfg, "vocab_size", None),
        "max_position_embeddings": getattr(cfg, "max_position_embeddings", None),
        "dtype": str(model.dtype).removeprefix("torch."),
    }
    return info
