"""Block Influence (ShortGPT) and angular distance (Gromov et al.) from one forward pass per batch.

h_l is the input of decoder layer l (l = 0..L-1) and h_L the output of the last layer, all taken with forward
hooks on the decoder layers. Not `output_hidden_states[-1]`: that is after the final norm, a tanh in a DyT
model, which would make the last layer look different from the others for a reason that is not the layer.

    BI_l     = 1 - mean over tokens of cos(h_l, h_{l+1})                       (Men et al. 2024, ShortGPT)
    d(l, n)  = mean over sequences of arccos(cos(h_l, h_{l+n}) at the last token) / pi   (Gromov et al. 2024)

d(l, n) is small when layers l..l+n-1 together change little: that block is the one to remove for n.
"""

import math

import numpy as np
import torch
import torch.nn.functional as F

from .removal import decoder_layers, layers_owner


class _Probe:
    """Hooks that see each h_l as it passes and keep only what the statistics need: the running sum of
    token cosines between consecutive states, and each state's last token."""

    def __init__(self, layers):
        self.num_layers = len(layers)
        self.cos_sum = torch.zeros(self.num_layers, dtype=torch.float64)
        self.tokens = 0
        self.last: list[list[torch.Tensor]] = [[] for _ in range(self.num_layers + 1)]
        self._prev = None
        self.handles = [
            layer.register_forward_pre_hook(self._pre_hook(i), with_kwargs=True)
            for i, layer in enumerate(layers)
        ]
        self.handles.append(layers[-1].register_forward_hook(self._post_hook))

    def _pre_hook(self, i):
        def hook(module, args, kwargs):
            self._visit(i, args[0] if args else kwargs["hidden_states"])

        return hook

    def _post_hook(self, module, args, output):
        self._visit(self.num_layers, output[0] if isinstance(output, tuple) else output)

    def _visit(self, i: int, h: torch.Tensor) -> None:
        h = h.detach().float()
        self.last[i].append(h[:, -1].double().cpu())
        if i > 0:  # the previous state is h_{i-1}: layers run in order
            self.cos_sum[i - 1] += F.cosine_similarity(self._prev, h, dim=-1).double().sum().cpu()
        else:
            self.tokens += h.shape[0] * h.shape[1]
        self._prev = h if i < self.num_layers else None

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


def angular_matrix(last: torch.Tensor) -> np.ndarray:
    """(N, L+1, d) last-token states -> D of shape (L, L): D[n-1, l] = d(l, n), NaN where l + n > L."""
    num_layers = last.shape[1] - 1
    unit = last / last.norm(dim=-1, keepdim=True).clamp_min(1e-30)
    D = np.full((num_layers, num_layers), np.nan)
    for n in range(1, num_layers + 1):
        for l in range(num_layers - n + 1):  # noqa: E741 (l is the papers' name)
            cos = (unit[:, l] * unit[:, l + n]).sum(-1).clamp(-1.0, 1.0)
            D[n - 1, l] = float((torch.arccos(cos) / math.pi).mean())
    return D


@torch.inference_mode()
def layer_similarity(model, blocks: torch.Tensor, batch_size: int = 8) -> dict:
    """Block Influence per layer and the angular-distance matrix over `blocks` (N, T) of token ids.

    Returns {block_influence: (L,) array, angular_distance: (L, L) array with D[n-1, l] = d(l, n),
    sequences, tokens}. The sequences are full blocks (no padding), so every token and every last token counts.
    """
    if blocks.ndim != 2 or blocks.numel() == 0:
        raise ValueError("the calibration set is empty — give more text (or a longer --calib-tokens)")
    layers = decoder_layers(model)
    owner = layers_owner(model)  # the decoder without the LM head: the logits are not needed here
    device = next(model.parameters()).device
    probe = _Probe(layers)
    try:
        for start in range(0, len(blocks), batch_size):
            owner(input_ids=blocks[start : start + batch_size].to(device), use_cache=False)
    finally:
        probe.remove()
    last = torch.stack([torch.cat(states) for states in probe.last], dim=1)
    return {
        "block_influence": (1.0 - probe.cos_sum / probe.tokens).numpy(),
        "angular_distance": angular_matrix(last),
        "sequences": int(last.shape[0]),
        "tokens": int(probe.tokens),
    }


def best_blocks(D: np.ndarray) -> list[dict]:
    """For each n = 1..L-1, Gromov et al.'s choice: the start l* of the n-layer block with the smallest d(l, n)."""
    out = []
    for n in range(1, D.shape[0]):
        row = D[n - 1]
        start = int(np.nanargmin(row))
        out.append(
            {"n": n, "start": start, "distance": float(row[start]), "removed": list(range(start, start + n))}
        )
    return out


def lowest_bi(bi: np.ndarray, n: int) -> list[int]:
    """ShortGPT's pruning: the n layers of lowest Block Influence (ties to the earlier layer), ranked once on
    the full model."""
    order = sorted(range(len(bi)), key=lambda i: (float(bi[i]), i))
    return sorted(order[:n])


def drop_last(num_layers: int, n: int) -> list[int]:
    """The simple baseline of Gromov et al.: the n layers just before the final one (which is kept)."""
    return list(range(num_layers - 1 - n, num_layers - 1))
