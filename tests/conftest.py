"""Shared fixtures: tiny configs so the suite runs in minutes on 2 CPU cores, and no network."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# The torch.compile scan is tested on its own (test_selective_scan.py); elsewhere the eager scan keeps tests fast.
os.environ.setdefault("MAMBAOCR_DISABLE_COMPILE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(2)


def tiny_config_kwargs(**overrides):
    """A small but complete MambaOCR: timm's 5M-parameter resnet10t (deep stem, avg-pool shortcuts), 2 Mamba
    layers of width 32."""
    kwargs = dict(
        backbone="resnet10t",
        hidden_size=32,
        num_hidden_layers=2,
        state_size=4,
        expand=2,
        adapter_size=8,
        hidden_dropout=0.0,
        num_attention_heads=2,
    )
    kwargs.update(overrides)
    return kwargs


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
