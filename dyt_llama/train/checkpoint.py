"""Checkpoints that survive a kill at any moment.

A training checkpoint is accelerate's full state (model, optimizer, scheduler, RNG states of every process) plus
our trainer_state.json (step, data position), written under a temporary name, given a manifest of sha256
checksums, and only then renamed into place. A directory without a valid manifest is never taken as a checkpoint.
"""

import hashlib
import json
import os
import shutil
from pathlib import Path

import torch

CHECKPOINTS = "checkpoints"
MANIFEST = "manifest.json"
TRAINER_STATE = "trainer_state.json"


class CorruptCheckpoint(ValueError):
    pass


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def replace_dir(tmp: Path, final: Path) -> None:
    """Move tmp to final; an existing final is moved aside first, so a kill never leaves neither."""
    old = final.parent / f".old-{final.name}"
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    _fsync_dir(final.parent)
    shutil.rmtree(old, ignore_errors=True)


def write_manifest(directory: Path) -> None:
    files = sorted(p for p in directory.rglob("*") if p.is_file() and p.name != MANIFEST)
    for p in files:  # the data must be on disk before the manifest vouches for it
        with p.open("rb") as f:
            os.fsync(f.fileno())
    entries = {
        str(p.relative_to(directory)): {"sha256": _sha256(p), "bytes": p.stat().st_size} for p in files
    }
    tmp = directory / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps({"files": entries}, indent=1), encoding="utf-8")
    with tmp.open("rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, directory / MANIFEST)


def verify(directory: str | Path) -> None:
    """Raise CorruptCheckpoint naming the first file that is missing, truncated or altered."""
    directory = Path(directory)
    manifest = directory / MANIFEST
    if not manifest.is_file():
        raise CorruptCheckpoint(f"checkpoint {directory} has no {MANIFEST} (an interrupted save?)")
    try:
        entries = json.loads(manifest.read_text(encoding="utf-8"))["files"]
    except (json.JSONDecodeError, KeyError, UnicodeDecodeError):
        raise CorruptCheckpoint(f"checkpoint {directory}: {MANIFEST} is unreadable") from None
    for name, entry in entries.items():
        path = directory / name
        if not path.is_file():
            raise CorruptCheckpoint(f"checkpoint {directory}: {name} is missing")
        if path.stat().st_size != entry["bytes"]:
            raise CorruptCheckpoint(
                f"checkpoint {directory}: {name} has {path.stat().st_size} bytes, expected {entry['bytes']}"
            )
        if _sha256(path) != entry["sha256"]:
            raise CorruptCheckpoint(f"checkpoint {directory}: {name} fails its sha256 check")


def step_dirs(output_dir: str | Path) -> list[Path]:
    """Finished checkpoint directories, newest first (temporary ones start with a dot and are skipped)."""
    root = Path(output_dir) / CHECKPOINTS
    if not root.is_dir():
        return []
    dirs = [p for p in root.iterdir() if p.is_dir() and p.name.startswith("step_")]
    return sorted(dirs, key=lambda p: int(p.name.split("_")[1]), reverse=True)


def find_resumable(output_dir: str | Path, resume: str, log=print) -> Path | None:
    """'latest': the newest checkpoint that passes its manifest, saying which ones were skipped and why.
    A path: that checkpoint, which must pass."""
    if resume != "latest":
        verify(resume)
        return Path(resume)
    for candidate in step_dirs(output_dir):
        try:
            verify(candidate)
            return candidate
        except CorruptCheckpoint as e:
            log(f"warning: {e}; falling back to the previous checkpoint")
    return None


def all_finite(model: torch.nn.Module) -> bool:
    return all(torch.isfinite(p).all() for p in model.parameters())


def save_checkpoint(
    accelerator, output_dir: str | Path, step: int, trainer_state: dict, keep_last: int
) -> Path:
    """Every process calls this (accelerate writes each process's RNG state)."""
    root = Path(output_dir) / CHECKPOINTS
    final = root / f"step_{step:08d}"
    tmp = root / f".tmp-step_{step:08d}"
    if accelerator.is_main_process:
        root.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)  # left by a killed save
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp), safe_serialization=True)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        (tmp / TRAINER_STATE).write_text(json.dumps(trainer_state, indent=1), encoding="utf-8")
        write_manifest(tmp)
        replace_dir(tmp, final)
        for old in step_dirs(output_dir)[keep_last:]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def load_checkpoint(accelerator, directory: Path) -> dict:
    accelerator.load_state(str(directory))
    return json.loads((directory / TRAINER_STATE).read_text(encoding="utf-8"))


def export_hf(accelerator, model, tokenizer, directory: str | Path) -> Path | None:
    """An ordinary HF checkpoint (safetensors + config + tokenizer), written atomically on the main process.
    Works from compiled, DDP and FSDP models: accelerate gathers the full state dict."""
    directory = Path(directory)
    state_dict = accelerator.get_state_dict(model)
    unwrapped = accelerator.unwrap_model(model)
    if accelerator.is_main_process:
        if not all(torch.isfinite(t).all() for t in state_dict.values() if t.is_floating_point()):
            raise FloatingPointError(f"not exporting to {directory}: the weights hold NaN or inf")
        tmp = directory.parent / f".tmp-{directory.name}"
        shutil.rmtree(tmp, ignore_errors=True)
        unwrapped.save_pretrained(tmp, state_dict=state_dict, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        write_manifest(tmp)
        replace_dir(tmp, directory)
    accelerator.wait_for_everyone()
    return directory
