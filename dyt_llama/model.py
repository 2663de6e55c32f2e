"""DyTLlamaModel / DyTLlamaForCausalLM: transformers' LLaMA with its three norm sites optionally DyT.

Attention, RoPE, MLP, KV cache, loss and generation are transformers' own; this file only swaps the norms and
adds the embedding scale of the paper's DyT runs. With norm_type="rmsnorm" the model is LlamaForCausalLM.
"""

import math

import torch
from torch import nn
from transformers import initialization as init
from transformers.models.llama.modeling_llama import (
    LlamaDecoderLayer,
    LlamaForCausalLM,
    LlamaModel,
    LlamaPreTrainedModel,
    LlamaRMSNorm,
    LlamaRotaryEmbedding,
)

from .config import DyTLlamaConfig
from .norms import DyT


def make_norm(config: DyTLlamaConfig, site: str) -> nn.Module:
    """The norm at one site: "attn" (input_layernorm), "ffn" (post_attention_layernorm) or "final" (model.norm)."""
    if config.norm_type == "rmsnorm":
        return LlamaRMSNorm(config.hidden_size, eps=config.rms_norm_eps)
    alpha0 = config.dyt_alpha_inits[site]
    return DyT(config.hidden_size, alpha_init=alpha0, bias=config.dyt_bias, impl=config.dyt_impl)


class DyTLlamaPreTrainedModel(LlamaPreTrainedModel):
    config: DyTLlamaConfig
    config_class = DyTLlamaConfig

    def _init_weights(self, module):
        super()._init_weights(module)
        # Through transformers' init functions, so from_config, missing keys and meta-device init all get them.
        if isinstance(module, DyT):
            init.constant_(module.alpha, module.alpha_init)
            init.ones_(module.weight)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, DyTLlamaModel) and module.embed_scale is not None:
            init.constant_(module.embed_scale, math.sqrt(module.config.hidden_size))


class DyTLlamaModel(DyTLlamaPreTrainedModel, LlamaModel):
    def __init__(self, config: DyTLlamaConfig):
        DyTLlamaPreTrainedModel.__init__(self, config)
        self.padding_idx = config.pad_token_id
        self.vocab_size = config.vocab_size
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size, self.padding_idx)
        self.layers = nn.ModuleList()
        for layer_idx in range(config.num_hidden_layers):
            layer = LlamaDecoderLayer(config, layer_idx)
            layer.input_layernorm = make_norm(config, "attn")
            layer.post_attention_layernorm = make_norm(config, "ffn")
            self.layers.append(layer)
        self.norm = make_norm(config, "final")
        self.rotary_emb = LlamaRotaryEmbedding(config=config)
        # DyT has no statistics to absorb the embeddings' 0.02 scale; the paper's LLaMA runs learn a scalar
        # on the embedding output, initialised to sqrt(d).
        self.embed_scale = (
            nn.Parameter(torch.full((1,), math.sqrt(config.hidden_size))) if config.dyt_embed_scale else None
        )
        self.gradient_checkpointing = False
        self.post_init()

    def forward(self, input_ids=None, inputs_embeds=None, **kwargs):
        if self.embed_scale is not None:  # scale given embeddings too, as Gemma does with its sqrt(d)
            if inputs_embeds is None and input_ids is not None:
                inputs_embeds = self.embed_tokens(input_ids)
            if inputs_embeds is not None:
                inputs_embeds = inputs_embeds * self.embed_scale.to(inputs_embeds.dtype)
            input_ids = None
        return LlamaModel.forward(self, input_ids=input_ids, inputs_embeds=inputs_embeds, **kwargs)


class DyTLlamaForCausalLM(DyTLlamaPreTrainedModel, LlamaForCausalLM):
    def __init__(self, config: DyTLlamaConfig):
        DyTLlamaPreTrainedModel.__init__(self, config)
        self.model = DyTLlamaModel(config)
        self.vocab_size = config.vocab_size
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()
