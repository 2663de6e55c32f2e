"""Pretrain a LLaMA or DyT-LLaMA model: `accelerate launch pretrain.py --config configs/tiny.yaml [--key value ...]`.

Every setting is a dataclass field in dyt_llama/train/args.py; `--help` lists them.
"""

from dyt_llama.train import main

if __name__ == "__main__":
    raise SystemExit(main())
