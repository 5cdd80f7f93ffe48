# Copyright 2026 The MambaOCR authors. Licensed under the Apache License, Version 2.0.
"""Initialise MambaOCR's sequence encoder from a pretrained transformers Mamba language model.

Our encoder block is `x + mixer(norm(x))` with the mixer's forward direction named and shaped as transformers'
`MambaMixer` (`in_proj`, `conv1d`, `x_proj`, `dt_proj`, `A_log`, `D`, `out_proj`) and the block norm as `MambaBlock`'s
`norm`, so layer `i` of a `MambaForCausalLM` (`backbone.layers.{i}.*`) maps one to one onto `encoder.layers.{i}.*` and
its `backbone.norm_f` onto `encoder.norm_f`. The word embeddings and the LM head are not used.

The reverse direction (`*_reverse`: its own `conv1d`, `x_proj`, `dt_proj`, `A_log`, `D`; it shares `in_proj` and
`out_proj`) has no counterpart in a causal LM. By default it starts as a copy of the forward direction: each layer then
runs the pretrained mixer once left to right and once right to left (each sequence reversed within its own length) and
averages the two, so both directions start from the language model's dynamics and diverge in training. `"fresh"`
keeps Mamba's usual initialisation for it instead.

This is the seed's "Mamba (with LoRA)" recipe: build the model with `config_from_mamba_lm`, load the layers with
`init_encoder_from_mamba_lm`, then fine-tune with LoRA on the Mamba projections while the adapters, `layer4`, the
projection and the head train fully (`peft_utils.build_lora_config(model, backbone_lora_stages=(),
full_stages=("layer4",))`).
"""

from __future__ import annotations

import os

import torch
from torch import nn
from transformers.utils import logging

from .configuration_mambaocr import MambaOCRConfig

logger = logging.get_logger(__name__)

MIXER_PARAMETERS = (
    "in_proj.weight", "in_proj.bias", "conv1d.weight", "conv1d.bias", "x_proj.weight", "dt_proj.weight",
    "dt_proj.bias", "A_log", "D", "out_proj.weight", "out_proj.bias",
)  # fmt: skip
# The reverse direction's own parameters, named after the forward ones they copy.
REVERSE_PARAMETERS = ("conv1d.weight", "conv1d.bias", "x_proj.weight", "dt_proj.weight", "dt_proj.bias", "A_log", "D")
REVERSE_INITS = ("copy", "fresh")


def _lm_config(lm):
    from transformers import AutoConfig

    if isinstance(lm, (str, os.PathLike)):
        return AutoConfig.from_pretrained(lm)
    return getattr(lm, "config", lm)


def config_from_mamba_lm(lm, num_layers: int | None = None, **overrides) -> MambaOCRConfig:
    """A `MambaOCRConfig` whose encoder has the shapes of the Mamba language model `lm` (a `MambaConfig`, a model, or
    a path / Hub id): width, expansion, state size, Δ rank, convolution and biases follow it; `num_layers` (default:
    all of the LM's) sets the depth. Other fields (`backbone`, `vocab_size`, ...) come from `overrides`.
    """
    config = _lm_config(lm)
    if getattr(config, "model_type", None) != "mamba":
        raise ValueError(
            f"Expected a Mamba (model_type 'mamba') language model config, got {getattr(config, 'model_type', config)!r}."
        )
    if config.intermediate_size % config.hidden_size:
        raise ValueError(
            f"The LM's intermediate_size ({config.intermediate_size}) is not a whole multiple of its hidden_size "
            f"({config.hidden_size}); MambaOCRConfig needs an integer `expand`."
        )
    num_layers = config.num_hidden_layers if num_layers is None else num_layers
    if not 1 <= num_layers <= config.num_hidden_layers:
        raise ValueError(f"`num_layers` must be in [1, {config.num_hidden_layers}] for this LM, got {num_layers}.")
    from_lm = {
        "sequence_model": "mamba",
        "hidden_size": config.hidden_size,
        "expand": config.intermediate_size // config.hidden_size,
        "state_size": config.state_size,
        "conv_kernel": config.conv_kernel,
        "time_step_rank": config.time_step_rank,
        "time_step_min": config.time_step_min,
        "time_step_max": config.time_step_max,
        "time_step_floor": config.time_step_floor,
        "use_bias": config.use_bias,
        "use_conv_bias": config.use_conv_bias,
        "layer_norm_epsilon": config.layer_norm_epsilon,
        "num_hidden_layers": num_layers,
    }
    clashing = {key for key in overrides if key in from_lm and key != "num_hidden_layers"}
    if clashing:
        raise ValueError(f"{sorted(clashing)} are set by the language model and cannot be overridden.")
    MambaOCRConfig.check_field_names(overrides)
    return MambaOCRConfig(**{**from_lm, **overrides})


def _lm_state_dict(lm) -> dict[str, torch.Tensor]:
    """The LM's tensors with the `backbone.` prefix of `MambaForCausalLM` removed (a bare `MambaModel` has none)."""
    if isinstance(lm, (str, os.PathLike)):
        from transformers import MambaForCausalLM

        lm = MambaForCausalLM.from_pretrained(lm)
    if not isinstance(lm, nn.Module):
        raise TypeError(f"Expected a Mamba language model or its path, got {type(lm).__name__}.")
    state = lm.state_dict()
    return {key.removeprefix("backbone."): value for key, value in state.items()}


@torch.no_grad()
def init_encoder_from_mamba_lm(
    model, lm, num_layers: int | None = None, reverse_init: str = "copy", load_final_norm: bool = True
) -> list[str]:
    """Copy the first `num_layers` layers (default: as many as `model` has) of the Mamba language model `lm`
    (`MambaForCausalLM` / `MambaModel`, or a path / Hub id) into `model.encoder`, plus its final norm.

    Args:
        model: a `MambaOCRForCTC` built with `config_from_mamba_lm` (shapes must match).
        lm: the language model.
        num_layers: layers to copy; `model` must have exactly this many.
        reverse_init: `"copy"` (the reverse direction starts as the forward one) or `"fresh"` (Mamba's usual init).
        load_final_norm: also copy the LM's `norm_f` into `encoder.norm_f`.

    Returns:
        The names of the model parameters that were set.
    """
    if reverse_init not in REVERSE_INITS:
        raise ValueError(f"`reverse_init` must be one of {list(REVERSE_INITS)}, got {reverse_init!r}.")
    if model.config.sequence_model != "mamba":
        raise ValueError(f"The model's sequence model is {model.config.sequence_model!r}; it needs 'mamba'.")
    layers = model.encoder.layers
    num_layers = len(layers) if num_layers is None else num_layers
    if num_layers != len(layers):
        raise ValueError(
            f"The model has {len(layers)} encoder layers but {num_layers} LM layers were asked for: build it with "
            f"`config_from_mamba_lm(lm, num_layers={num_layers})`."
        )
    state = _lm_state_dict(lm)
    available = len({key.split(".")[1] for key in state if key.startswith("layers.")})
    if num_layers > available:
        raise ValueError(f"The language model has {available} layers; {num_layers} were asked for.")
    own = dict(model.named_parameters())
    loaded = []

    def assign(target: str, value: torch.Tensor) -> None:
        param = own[target]
        if param.shape != value.shape:
            raise ValueError(
                f"{target}: the LM tensor has shape {tuple(value.shape)} but the model's is {tuple(param.shape)}. "
                "Build the model with `config_from_mamba_lm(lm)` so that its encoder has the LM's shapes."
            )
        param.copy_(value.to(param.dtype))
        loaded.append(target)

    for index in range(num_layers):
        source, target = f"layers.{index}", f"encoder.layers.{index}"
        assign(f"{target}.norm.weight", state[f"{source}.norm.weight"])
        for name in MIXER_PARAMETERS:
            key = f"{source}.mixer.{name}"
            if key in state:
                assign(f"{target}.mixer.{name}", state[key])
        if model.config.bidirectional and reverse_init == "copy":
            for name in REVERSE_PARAMETERS:
                module, _, attribute = name.rpartition(".")
                key = f"{source}.mixer.{name}"
                if key in state:
                    reverse = f"{module}_reverse.{attribute}" if module else f"{attribute}_reverse"
                    assign(f"{target}.mixer.{reverse}", state[key])
    if load_final_norm and "norm_f.weight" in state:
        assign("encoder.norm_f.weight", state["norm_f.weight"])
    logger.info(
        f"Initialised {num_layers} encoder layers from the Mamba language model ({len(loaded)} tensors; reverse "
        f"direction: {reverse_init})."
    )
    return loaded


__all__ = ["REVERSE_INITS", "config_from_mamba_lm", "init_encoder_from_mamba_lm"]
