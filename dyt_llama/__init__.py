"""dyt-llama: LLaMA with Dynamic Tanh (DyT) in place of RMSNorm, on Hugging Face transformers."""
