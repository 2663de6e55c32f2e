import os
from pathlib import Path

import pytest
import torch

# Two cores are shared by pytest workers: one thread each keeps them from fighting.
torch.set_num_threads(1)
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

TINY = dict(
    vocab_size=128,
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=3,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=64,
)


@pytest.fixture
def tiny_kwargs():
    return dict(TINY)


@pytest.fixture(scope="session")
def shared_data():
    assert SHARED_DATA.is_dir(), f"{SHARED_DATA} is missing: tests need ../shared/data beside the repo"
    return SHARED_DATA
