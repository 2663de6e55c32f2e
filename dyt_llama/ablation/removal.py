"""Deleting decoder layers from a LLaMA-family model, for good or for the length of a `with` block.

Works on any Hugging Face causal LM that keeps its decoder layers in `model.model.layers` (LLaMA, ours,
Mistral, Qwen2, ...). Deleting a layer is more than dropping it from the ModuleList:

- each attention's `layer_idx` is renumbered: the KV cache is indexed by it, so a stale index writes a
  layer's keys into another layer's slot (or past the end of the cache);
- `config.num_hidden_layers` is lowered: the model's forward runs `layers[:num_hidden_layers]`, DynamicCache
  sizes itself from it, and a saved checkpoint must reload at the new depth rather than refill the missing
  layers with random weights;
- `config.layer_types` (and `mlp_layer_types`), one entry per layer, lose the deleted layers' entries.
"""

import contextlib
from pathlib import Path

from torch import nn

PER_LAYER_LISTS = ("layer_types", "mlp_layer_types")
REMOVED_KEY = "ablation_removed_layers"  # in config.json: the original indices of the deleted layers
_CONFIG_KEYS = ("num_hidden_layers", *PER_LAYER_LISTS, REMOVED_KEY)


def decoder_layers(model) -> nn.ModuleList:
    """The ModuleList of decoder layers of a causal LM (`model.model.layers`) or of a bare decoder."""
    for owner in (getattr(model, "model", None), model):
        layers = getattr(owner, "layers", None)
        if isinstance(layers, nn.ModuleList):
            return layers
    raise ValueError(f"{type(model).__name__} has no model.layers — only LLaMA-family decoders are supported")


def layers_owner(model) -> nn.Module:
    inner = getattr(model, "model", None)
    return inner if isinstance(getattr(inner, "layers", None), nn.ModuleList) else model


def check_removal(indices, num_layers: int, what: str = "--remove-layers") -> list[int]:
    """The indices, sorted, or a ValueError that says what is wrong with them."""
    indices = list(indices)
    if not indices:
        raise ValueError(f"{what} names no layer — give indices such as 3,7")
    for i in indices:
        if isinstance(i, bool) or not isinstance(i, int):
            raise ValueError(f"{what}: {i!r} is not a layer index — give integers such as 3,7")
        if not 0 <= i < num_layers:
            raise ValueError(f"{what}: layer {i} is out of range — the model has layers 0..{num_layers - 1}")
    dup = sorted({i for i in indices if indices.count(i) > 1})
    if dup:
        raise ValueError(f"{what} lists layer {dup[0]} more than once — name each layer once")
    if len(indices) == num_layers:
        raise ValueError(f"{what} removes all {num_layers} layers — keep at least one")
    return sorted(indices)


def parse_layers(text: str) -> list[int]:
    """Parse "3,7" into [3, 7]; the range checks need the model, so check_removal does them."""
    try:
        return [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise ValueError(f"--remove-layers {text!r} is not a comma-separated list of layer indices") from None


def _snapshot(model) -> dict:
    """What remove_layers changes, so that without_layers can put it back."""
    owner, config = layers_owner(model), model.config
    layers = decoder_layers(model)
    return {
        "owner": owner,
        "layers": layers,
        "layer_idx": [
            (m, m.layer_idx) for m in layers.modules() if isinstance(getattr(m, "layer_idx", None), int)
        ],
        "config": {k: getattr(config, k) for k in _CONFIG_KEYS if hasattr(config, k)},
    }


def _restore(model, snap: dict) -> None:
    snap["owner"].layers = snap["layers"]
    for module, idx in snap["layer_idx"]:
        module.layer_idx = idx
    config = model.config
    if hasattr(config, REMOVED_KEY) and REMOVED_KEY not in snap["config"]:
        delattr(config, REMOVED_KEY)
    for key, value in snap["config"].items():
        setattr(config, key, value)


def remove_layers(model, indices):
    """Delete decoder layers `indices` (numbered as in the model now) in place; returns the same model.

    In place because the layers are most of the model: copy.deepcopy(model) first to keep the original.
    config.ablation_removed_layers accumulates the deleted layers' original indices across calls.
    """
    config = model.config
    if getattr(config, "is_heterogeneous", False):
        raise ValueError("per-layer (heterogeneous) configs are not supported by layer removal")
    layers = decoder_layers(model)
    n = len(layers)
    if config.num_hidden_layers != n:
        raise ValueError(
            f"config.num_hidden_layers={config.num_hidden_layers} but the model holds {n} layers"
        )
    removed = set(check_removal(indices, n))
    keep = [i for i in range(n) if i not in removed]
    for new_idx, old_idx in enumerate(keep):
        for m in layers[old_idx].modules():
            if isinstance(getattr(m, "layer_idx", None), int):
                m.layer_idx = new_idx
    layers_owner(model).layers = nn.ModuleList([layers[i] for i in keep])
    before = list(getattr(config, REMOVED_KEY, None) or [])
    original = [i for i in range(n + len(before)) if i not in set(before)]  # each current layer's first index
    setattr(config, REMOVED_KEY, sorted({*before, *(original[i] for i in removed)}))
    config.num_hidden_layers = len(keep)
    for key in PER_LAYER_LISTS:
        values = getattr(config, key, None)
        if isinstance(values, (list, tuple)) and len(values) == n:
            setattr(config, key, [values[i] for i in keep])
    return model


@contextlib.contextmanager
def without_layers(model, indices):
    """Run the body with layers `indices` deleted, then put the model back exactly as it was.

    For sweeps: swapping the ModuleList costs nothing, where a deepcopy per removal copies the whole model.
    """
    snap = _snapshot(model)
    try:
        yield remove_layers(model, indices) if indices else model
    finally:
        _restore(model, snap)


def check_save_dir(directory) -> Path:
    """A checkpoint goes into a new or empty directory, never over another model."""
    directory = Path(directory)
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise FileExistsError(f"--save-pruned {directory} exists and is not empty — choose a new directory")
    return directory


def save_pruned(model, tokenizer, directory) -> Path:
    """save_pretrained of the (pruned) model and its tokenizer; the checkpoint reloads at the new depth."""
    directory = check_save_dir(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    if tokenizer is not None:
        tokenizer.save_pretrained(directory)
    return directory
