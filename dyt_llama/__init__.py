"""dyt-llama: LLaMA with Dynamic Tanh (DyT) in place of RMSNorm, on Hugging Face transformers.

Importing the package registers the config and models with the Auto classes, so our checkpoints load with
`AutoModelForCausalLM.from_pretrained(dir)` and no `trust_remote_code`.
"""

from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

from .config import ALPHA0_BY_WIDTH, DyTLlamaConfig, alpha0_for_width
from .model import DyTLlamaForCausalLM, DyTLlamaModel, DyTLlamaPreTrainedModel
from .norms import DyT

AutoConfig.register(DyTLlamaConfig.model_type, DyTLlamaConfig, exist_ok=True)
AutoModel.register(DyTLlamaConfig, DyTLlamaModel, exist_ok=True)
AutoModelForCausalLM.register(DyTLlamaConfig, DyTLlamaForCausalLM, exist_ok=True)

# save_pretrained also writes our code and an auto_map, so a user without this package can load a checkpoint
# with trust_remote_code=True.
DyTLlamaConfig.register_for_auto_class()
DyTLlamaModel.register_for_auto_class("AutoModel")
DyTLlamaForCausalLM.register_for_auto_class("AutoModelForCausalLM")

__all__ = [
    "ALPHA0_BY_WIDTH",
    "DyT",
    "DyTLlamaConfig",
    "DyTLlamaForCausalLM",
    "DyTLlamaModel",
    "DyTLlamaPreTrainedModel",
    "alpha0_for_width",
]
