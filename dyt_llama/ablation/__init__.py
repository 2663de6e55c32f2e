"""Layer-removal ablations: which decoder layers matter, in a DyT model and in an RMSNorm one.

    from dyt_llama.ablation import remove_layers, without_layers, layer_similarity
    with without_layers(model, [3]):          # the model minus layer 3, put back on exit
        ...
    remove_layers(model, [3, 7])              # for good (in place); save_pruned(model, tokenizer, dir)

Protocols (protocols.py): the single-layer sweep (Curse of Depth), Block Influence (ShortGPT) and angular
distance (Gromov et al.), each measured by the perplexity of the model with the layers actually removed.
On the command line: `python evaluate_lm.py --model DIR --ablation all` (see cli.py).
"""

from .cli import add_ablation_args, compare, run, run_ablation, run_removal
from .protocols import PROTOCOLS, Evaluator, calibration_blocks, run_protocols
from .removal import check_removal, decoder_layers, parse_layers, remove_layers, save_pruned, without_layers
from .similarity import angular_matrix, best_blocks, drop_last, layer_similarity, lowest_bi

__all__ = [
    "PROTOCOLS",
    "Evaluator",
    "add_ablation_args",
    "angular_matrix",
    "best_blocks",
    "calibration_blocks",
    "check_removal",
    "compare",
    "decoder_layers",
    "drop_last",
    "layer_similarity",
    "lowest_bi",
    "parse_layers",
    "remove_layers",
    "run",
    "run_ablation",
    "run_protocols",
    "run_removal",
    "save_pruned",
    "without_layers",
]
