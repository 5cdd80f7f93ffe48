# Copyright 2026 The MambaOCR authors. Licensed under the Apache License, Version 2.0.
"""How weights come into a MambaOCR model, and what is checked on the way:

* `load_backbone_weights`: ImageNet weights for the ResNet, from timm's hub entry or a local file;
* `check_vocab_matches_head` (`from_pretrained`) and the `load_state_dict` pre-hook `check_head_rows`: a tokenizer
  or a state dict whose number of classes differs from the CTC head's is refused with a clear error;
* the base fingerprint a MambaOCR adapter carries (see `peft_utils.save_adapter`): `base_fingerprint`,
  `warn_if_other_base`, read by the pre-hook `check_adapter_base` on PEFT's route and by `read_adapter` on
  transformers' `load_adapter` route.
"""

from __future__ import annotations

import hashlib
import json
import os

import timm
import torch
from torch import nn
from transformers.utils import cached_file, logging

from .configuration_mambaocr import ADAPTER_INFO_NAME, BASE_FINGERPRINT_KEY, MambaOCRConfig

logger = logging.get_logger(__name__)


def load_backbone_weights(body: nn.Module, config: MambaOCRConfig) -> None:
    """Load ImageNet weights into the timm ResNet `body` of a model of `config`: from `config.backbone_weights_path`
    (a local `.safetensors` / `.pth` / `.bin` file) or timm's hub entry."""
    path = config.backbone_weights_path
    if path:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"`backbone_weights_path` {path!r} does not exist.")
        if path.endswith(".safetensors"):
            from safetensors.torch import load_file

            state_dict = load_file(path)
        else:
            state_dict = torch.load(path, map_location="cpu", weights_only=True)
            state_dict = state_dict.get("state_dict", state_dict)
    else:
        try:
            pretrained = timm.create_model(
                config.backbone,
                pretrained=True,
                num_classes=0,
                global_pool="",
                in_chans=config.num_channels,  # timm adapts the RGB weights of the first convolution
                **config.backbone_kwargs,
            )
        except Exception as error:  # timm raises several kinds (connection, hub, missing weights)
            raise OSError(
                f"Could not fetch ImageNet weights for timm '{config.backbone}' ({type(error).__name__}: "
                f"{error}). Without network access, download them elsewhere (e.g. `timm.create_model("
                f"'{config.backbone}', pretrained=True)` then `safetensors.torch.save_file(model.state_dict(),"
                " 'backbone.safetensors')`) and pass `backbone_weights_path='backbone.safetensors'`, or set "
                "`use_pretrained_backbone=False` to train from scratch."
            ) from error
        state_dict = pretrained.state_dict()
    state_dict = {k: v for k, v in state_dict.items() if not k.startswith(("fc.", "head."))}
    first_conv = next(name for name, param in body.named_parameters() if param.dim() == 4)
    weight = state_dict.get(first_conv)
    if weight is not None and weight.shape[1] != config.num_channels:
        from timm.models import adapt_input_conv

        # RGB weights for a grayscale model (or the reverse), as timm adapts them when it loads pretrained ones
        state_dict[first_conv] = adapt_input_conv(config.num_channels, weight)
    missing, unexpected = body.load_state_dict(state_dict, strict=False)
    if missing:
        raise ValueError(
            f"The backbone weights do not fit timm '{config.backbone}': {len(missing)} tensors missing, "
            f"e.g. {missing[:3]}. Check that the file was saved from that architecture."
        )
    if unexpected:
        logger.warning(f"Ignored {len(unexpected)} unexpected backbone tensors, e.g. {unexpected[:3]}.")
    logger.info(f"Loaded ImageNet weights into the {config.backbone} backbone.")


def check_vocab_matches_head(config: MambaOCRConfig, path: str | os.PathLike, kwargs: dict) -> None:
    """A checkpoint whose tokenizer and CTC head disagree would decode garbage: refuse it with a clear error."""
    hub_kwargs = {
        k: kwargs[k] for k in ("cache_dir", "revision", "token", "local_files_only", "subfolder") if k in kwargs
    }
    vocab_file = cached_file(
        path,
        "vocab.json",
        _raise_exceptions_for_missing_entries=False,
        _raise_exceptions_for_connection_errors=False,
        **hub_kwargs,
    )
    if vocab_file is None:
        return
    with open(vocab_file, encoding="utf-8") as handle:
        vocab_size = len(json.load(handle))
    if vocab_size != config.vocab_size:
        raise ValueError(
            f"The checkpoint at {path} is inconsistent: its tokenizer (vocab.json) has {vocab_size} entries but the "
            f"model's CTC head has {config.vocab_size} classes. Save the model and tokenizer together (the head must "
            "have one row per vocab entry), or resize the head with `model.resize_vocab(...)` before saving."
        )


def check_head_rows(module: nn.Module, state_dict: dict, prefix: str, *args) -> None:
    """`load_state_dict` pre-hook: a CTC head with another number of classes (e.g. a PEFT adapter saved after its
    charset was extended) cannot load; say why and what to do instead of a bare size mismatch."""
    head = prefix + "classifier."
    for key, value in state_dict.items():
        # every bias under the head (its own, a PEFT `modules_to_save` copy's, a LoRA `lora_B`'s) has one entry a class
        if key.startswith(head) and key.endswith("bias") and value.dim() == 1:
            if value.shape[0] != module.config.vocab_size:
                raise ValueError(
                    f"The weights being loaded have a CTC head of {value.shape[0]} classes ({key}) but this model has "
                    f"{module.config.vocab_size} (`config.vocab_size`): they were saved with another charset. For a "
                    "PEFT adapter whose charset was extended, load it with `mambaocr_hf.peft_utils.load_adapter(base, "
                    "adapter_dir)` (it resizes the head) or call `model.resize_vocab(...)` first, and use the "
                    "tokenizer saved with the adapter."
                )


def base_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The base model's own tensors by their original names, whether or not PEFT wraps the model or injected its
    layers."""
    model = model.get_base_model() if hasattr(model, "get_base_model") else model
    state = {}
    for name, tensor in model.state_dict().items():
        if "lora_" in name or ".modules_to_save." in name:
            continue
        state[name.replace(".base_layer.", ".").replace(".original_module.", ".")] = tensor
    return state


def base_fingerprint(model: nn.Module) -> str:
    """A short hash of the base weights (the CTC head excepted, which a charset extension resizes): an adapter trained
    on one base means nothing on another of the same shape."""
    digest = hashlib.sha256()
    for name, tensor in sorted(base_state(model).items()):
        if name.startswith("classifier."):
            continue
        digest.update(name.encode())
        digest.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def warn_if_other_base(model: nn.Module, trained_on: str, adapter: str, base_model: str | None = None) -> bool:
    """Warn (and return True) when `model`'s base weights are not those (fingerprint `trained_on`) the adapter was
    trained on: it loads, since the shapes fit, but its predictions are not the fine-tuned ones."""
    fingerprint = base_fingerprint(model)
    if fingerprint == trained_on:
        return False
    logger.warning(
        f"The base weights differ from those the adapter {adapter} was trained on (fingerprint {fingerprint} vs "
        f"{trained_on}" + (f", base {base_model!r}" if base_model else "") + "): its predictions will not be the "
        "fine-tuned ones unless this is the same base in another precision."
    )
    return True


def check_adapter_base(module: nn.Module, state_dict: dict, prefix: str, *args) -> None:
    """`load_state_dict` pre-hook: the route of PEFT (`PeftModel.from_pretrained`, `PeftModel.load_adapter`, so also
    `peft_utils.load_adapter`). Takes the base fingerprint out of an adapter's weights (it is no model tensor) and
    warns if this base is another one."""
    fingerprint = state_dict.pop(prefix + BASE_FINGERPRINT_KEY, None)
    if fingerprint is not None:
        warn_if_other_base(module, bytes(fingerprint.tolist()).decode("ascii", "replace"), "being loaded")


def read_adapter(
    peft_model_id: str | None, adapter_state_dict: dict | None, hub_kwargs: dict
) -> tuple[dict, dict | None, str | None]:
    """For transformers' `load_adapter` route: what the MambaOCR adapter at `peft_model_id` says of its base
    (`mambaocr_adapter.json`, `{}` for other adapters), its weights with the base fingerprint taken out (`None`: let
    transformers read them), and that fingerprint (from the weights, else from the json of older adapters). transformers
    loads the adapter's weights with its own loader (no `load_state_dict` hook runs), so the fingerprint is taken out
    here."""
    found = {
        name: cached_file(
            peft_model_id,
            name,
            _raise_exceptions_for_missing_entries=False,
            _raise_exceptions_for_connection_errors=False,
            **hub_kwargs,
        )
        for name in (ADAPTER_INFO_NAME, "adapter_model.safetensors")
        if peft_model_id is not None
    }
    info = {}
    if found.get(ADAPTER_INFO_NAME) is not None:
        with open(found[ADAPTER_INFO_NAME], encoding="utf-8") as handle:
            info = json.load(handle)
    key = f"base_model.model.{BASE_FINGERPRINT_KEY}"
    weights = found.get("adapter_model.safetensors")
    if adapter_state_dict is None and weights is not None:
        from safetensors import safe_open

        with safe_open(weights, framework="pt") as handle:
            carries_fingerprint = key in handle.keys()
        if carries_fingerprint:
            from safetensors.torch import load_file

            adapter_state_dict = load_file(weights)
    trained_on = None
    if adapter_state_dict is not None and key in adapter_state_dict:
        adapter_state_dict = dict(adapter_state_dict)
        trained_on = bytes(adapter_state_dict.pop(key).tolist()).decode("ascii", "replace")
    return info, adapter_state_dict, trained_on or info.get("base_fingerprint")


__all__ = [
    "base_fingerprint",
    "base_state",
    "check_adapter_base",
    "check_head_rows",
    "check_vocab_matches_head",
    "load_backbone_weights",
    "read_adapter",
    "warn_if_other_base",
]
