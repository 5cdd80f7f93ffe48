# Copyright 2026 The MambaOCR authors. Licensed under the Apache License, Version 2.0.
"""Parameter-efficient fine-tuning of MambaOCR with PEFT.

* `build_lora_config` / `get_peft_model`: LoRA on the Mamba projections (and the convolutions of chosen ResNet stages);
  the bottleneck adapters, the projection and the CTC head train fully through PEFT's `modules_to_save`, so that
  `save_pretrained` writes everything that changed and nothing else.
* `extend_charset`: add characters to the tokenizer and grow the CTC head, keeping the old rows (old predictions stay
  the same) and making the new rows trainable.
* `save_adapter` / `load_adapter`: an adapter folder with a model card and what `load_adapter` needs to check that the
  adapter fits a base (architecture, charset, base weights) and to resize the head of a base whose charset the
  adapter extended. Plain `PeftModel.from_pretrained(base, adapter_dir)` works too when the charset is unchanged.
"""

from __future__ import annotations

import json
import os
import unicodedata
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch
from torch import nn
from transformers.utils import logging

from .configuration_mambaocr import ADAPTER_INFO_NAME, BASE_FINGERPRINT_KEY
from .model_loading import base_fingerprint, base_state, warn_if_other_base
from .modeling_mambaocr import MambaOCRAdapter, MambaOCRForCTC

logger = logging.get_logger(__name__)

# The mixer's `nn.Linear` layers, by their transformers `MambaMixer` names. Each also stands for its `_reverse` twin.
MAMBA_LORA_TARGETS = ("in_proj", "x_proj", "dt_proj", "out_proj")
# Module groups trained fully (as PEFT `modules_to_save`) by default: together a few percent of the model.
DEFAULT_MODULES_TO_SAVE = ("adapters", "projection", "classifier")
# ResNet stages whose convolutions get LoRA by default: the last stage adapts most to a new domain.
DEFAULT_BACKBONE_LORA_STAGES = ("layer4",)
RESNET_STAGES = ("layer1", "layer2", "layer3", "layer4")
# `ADAPTER_INFO_NAME` (a constant of the configuration module: the modeling file reads it too) is written beside
# PEFT's files: what the adapter was trained on, to check that a base fits before loading.
# Fields of `MambaOCRConfig` that change parameter shapes: an adapter only fits a base that agrees on all of them.
ARCHITECTURE_FIELDS = (
    "backbone", "frame_stride", "adapter_size", "adapter_stages", "hidden_size", "sequence_model", "num_hidden_layers",
    "state_size", "intermediate_size", "conv_kernel", "time_step_rank", "bidirectional", "use_bias", "use_conv_bias",
    "num_channels",
)  # fmt: skip


def _require_peft():
    try:
        import peft
    except ImportError as error:  # pragma: no cover - peft is a declared dependency
        raise ImportError(
            "Parameter-efficient fine-tuning needs PEFT (a dependency of mambaocr-hf): `pip install peft`."
        ) from error
    return peft


def _unwrap(model) -> MambaOCRForCTC:
    """The `MambaOCRForCTC` inside a `PeftModel` (or the model itself)."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    if not isinstance(inner, MambaOCRForCTC):
        raise TypeError(f"Expected a MambaOCRForCTC or a PeftModel around one, got {type(model).__name__}.")
    return inner


def _module_names(model: nn.Module, condition) -> list[str]:
    return [name for name, module in model.named_modules() if name and condition(name, module)]


def build_lora_config(
    model: MambaOCRForCTC,
    r: int = 8,
    lora_alpha: int | None = None,
    lora_dropout: float = 0.05,
    mamba_targets: Sequence[str] = MAMBA_LORA_TARGETS,
    backbone_lora_stages: Sequence[str] = DEFAULT_BACKBONE_LORA_STAGES,
    modules_to_save: Sequence[str] = DEFAULT_MODULES_TO_SAVE,
    full_stages: Sequence[str] = (),
    **lora_kwargs,
):
    """A PEFT `LoraConfig` for a `MambaOCRForCTC`.

    Args:
        model: the base model (its module names are resolved into the config).
        r, lora_alpha, lora_dropout: LoRA rank, scale numerator (defaults to `2 * r`) and dropout.
        mamba_targets: mixer layers that get LoRA, among `MAMBA_LORA_TARGETS`; each also covers its reverse-direction
            twin (`x_proj` → `x_proj_reverse`). The depthwise `conv1d` cannot take LoRA (PEFT needs the rank to be a
            multiple of its groups); train it fully by naming it in `modules_to_save` instead.
        backbone_lora_stages: ResNet stages whose convolutions (3×3, 1×1 and shortcut) get LoRA.
        modules_to_save: modules trained fully and saved whole: the groups `"adapters"` (every bottleneck adapter),
            `"projection"`, `"classifier"`, `"encoder_norms"`, or any module-name suffix PEFT understands (e.g.
            `"conv1d"`). The classifier must be among them when the charset was extended.
        full_stages: ResNet stages trained fully (their residual blocks become `modules_to_save`), e.g. `("layer4",)`
            for the "Mamba (with LoRA)" recipe; they must not also be in `backbone_lora_stages`.
        lora_kwargs: any other `LoraConfig` argument (`use_rslora`, `use_dora`, `init_lora_weights`, ...).
    """
    peft = _require_peft()
    model = _unwrap(model)
    for stage in (*backbone_lora_stages, *full_stages):
        if stage not in RESNET_STAGES:
            raise ValueError(f"Unknown ResNet stage {stage!r}; choose from {list(RESNET_STAGES)}.")
    overlap = set(backbone_lora_stages) & set(full_stages)
    if overlap:
        raise ValueError(
            f"Stages {sorted(overlap)} are asked to train both with LoRA and fully; name each in one of "
            "`backbone_lora_stages` and `full_stages` only."
        )
    unknown = set(mamba_targets) - set(MAMBA_LORA_TARGETS)
    if unknown:
        hint = " (`conv1d` is depthwise: put it in `modules_to_save`)" if "conv1d" in unknown else ""
        raise ValueError(f"`mamba_targets` may contain {list(MAMBA_LORA_TARGETS)}, got {sorted(unknown)}{hint}.")
    if mamba_targets and model.config.sequence_model != "mamba":
        raise ValueError(
            f"This model's sequence model is {model.config.sequence_model!r}, which has no Mamba projections: pass "
            "`mamba_targets=()` (and LoRA the backbone, or train the encoder through `modules_to_save`)."
        )

    names = {suffix for target in mamba_targets for suffix in (target, f"{target}_reverse")}
    target_modules = _module_names(
        model, lambda name, module: name.startswith("encoder.") and name.rsplit(".", 1)[-1] in names
    )
    target_modules += _module_names(
        model,
        lambda name, module: (
            isinstance(module, nn.Conv2d)
            and module.groups == 1
            and name.split(".")[:3] in (["backbone", "body", stage] for stage in backbone_lora_stages)
        ),
    )
    if not target_modules:
        raise ValueError("Nothing to put LoRA on: give `mamba_targets` and/or `backbone_lora_stages`.")
    grown_from = getattr(model, EXTENDED_FROM_ATTRIBUTE, None)
    if grown_from is not None and "classifier" not in modules_to_save:
        raise ValueError(
            f"The charset was extended ({grown_from} -> {model.config.vocab_size} classes), so the CTC head must "
            "train and be saved with the adapter: keep 'classifier' in `modules_to_save` (without it the new "
            "characters could never be learned)."
        )

    save = []
    for entry in modules_to_save:
        if entry == "adapters":
            save += _module_names(model, lambda name, module: isinstance(module, MambaOCRAdapter))
        elif entry == "encoder_norms":
            save += _module_names(model, lambda name, module: name.startswith("encoder.") and name.endswith("norm"))
            save += ["encoder.norm_f"] if hasattr(model.encoder, "norm_f") else []
        else:
            if not any(name == entry or name.endswith(f".{entry}") for name, _ in model.named_modules()):
                raise ValueError(f"`modules_to_save` entry {entry!r} names no module of this model.")
            save.append(entry)
    for stage in full_stages:  # blocks, not the stage: the backbone iterates a stage's blocks itself
        save += [f"backbone.body.{stage}.{index}" for index in range(len(getattr(model.backbone.body, stage)))]
    in_lora = [
        name for name in save if any(target.startswith(f"{name}.") or target == name for target in target_modules)
    ]
    if in_lora:
        raise ValueError(f"Modules {in_lora} are asked to train both with LoRA and fully (`modules_to_save`).")

    return peft.LoraConfig(
        r=r,
        lora_alpha=2 * r if lora_alpha is None else lora_alpha,
        lora_dropout=lora_dropout,
        target_modules=target_modules,
        modules_to_save=save or None,
        **lora_kwargs,
    )


def get_peft_model(model: MambaOCRForCTC, lora_config=None, adapter_name: str = "default", **config_kwargs):
    """Wrap `model` in a PEFT `PeftModel` with `lora_config` (by default `build_lora_config(model, **config_kwargs)`).

    Frozen BatchNorms keep their running statistics while training (`MambaOCRForCTC.train` keeps them in eval mode).
    """
    peft = _require_peft()
    if lora_config is None:
        lora_config = build_lora_config(model, **config_kwargs)
    elif config_kwargs:
        raise TypeError(f"Pass either `lora_config` or LoRA options, not both (got {sorted(config_kwargs)}).")
    # parameters frozen by an earlier freeze strategy would stay frozen inside `modules_to_save`: start clean
    for param in model.parameters():
        param.requires_grad = True
    peft_model = peft.get_peft_model(model, lora_config, adapter_name=adapter_name)
    peft_model.train(model.training)
    return peft_model


# -- charset extension ---------------------------------------------------------------------------------------------


def find_new_characters(texts: Iterable[str], tokenizer) -> str:
    """Characters of `texts` that the tokenizer can neither encode nor fold into its charset (its `"map"` policy folds
    case and accents), in order of first appearance."""
    new: dict[str, None] = {}
    for text in texts:
        for char in unicodedata.normalize("NFC", text):  # as the tokenizer reads it
            if char in tokenizer.vocab or char in new:
                continue
            folded = tokenizer._fold(char) if tokenizer.unknown_char_policy == "map" else char
            if not all(c in tokenizer.vocab for c in folded) or not folded:
                new[char] = None
    return "".join(new)


# set on a model by `extend_charset`: its CTC head's size before, the adapter's `base_vocab_size`
EXTENDED_FROM_ATTRIBUTE = "mambaocr_extended_from_vocab_size"


def extend_charset(model: MambaOCRForCTC, processor, new_characters: str):
    """Append `new_characters` to the processor's tokenizer (existing ids unchanged) and grow the model's CTC head to
    match (`MambaOCRForCTC.resize_vocab`: old predictions are kept, the new rows are trainable). Call it before `get_peft_model`,
    and keep `"classifier"` in `modules_to_save`.

    Returns the processor, with a new tokenizer (`processor.tokenizer` is replaced; the old object is not changed).
    """
    from .tokenization_mambaocr import MambaOCRTokenizer

    model = _unwrap(model)
    if hasattr(model, "peft_config") or any("lora_" in name for name, _ in model.named_parameters()):
        raise ValueError(
            "Extend the charset before wrapping the model with PEFT: the CTC head must have its final size when "
            "`modules_to_save` copies it."
        )
    tokenizer = processor.tokenizer
    if len(tokenizer) != model.config.vocab_size:
        raise ValueError(
            f"The tokenizer has {len(tokenizer)} entries but the CTC head {model.config.vocab_size} classes: they must "
            "match before the charset is extended."
        )
    duplicates = sorted({c for c in new_characters if c in tokenizer.vocab or new_characters.count(c) > 1})
    if duplicates:
        raise ValueError(f"Characters {duplicates} are already in the charset (or repeated); add each new one once.")
    if not new_characters:
        return processor
    processor.tokenizer = MambaOCRTokenizer(
        charset=tokenizer.charset + new_characters,
        unknown_char_policy=tokenizer.unknown_char_policy,
        char_map=tokenizer.char_map,
        blank_token=tokenizer.blank_token,
    )
    model.resize_vocab(len(processor.tokenizer))
    if getattr(model, EXTENDED_FROM_ATTRIBUTE, None) is None:  # the size before the first extension
        setattr(model, EXTENDED_FROM_ATTRIBUTE, len(tokenizer))
    logger.info(f"Extended the charset by {new_characters!r}: {len(tokenizer)} -> {len(processor.tokenizer)} classes.")
    return processor


# -- saving, checking and loading adapters --------------------------------------------------------------------------


def _adapter_info(model, tokenizer, base_model: str | None, base_vocab_size: int | None) -> dict:
    inner = _unwrap(model)
    return {
        "base_model": base_model,
        "base_fingerprint": base_fingerprint(model),
        "base_vocab_size": base_vocab_size or getattr(inner, EXTENDED_FROM_ATTRIBUTE, None) or inner.config.vocab_size,
        "vocab_size": inner.config.vocab_size,
        "charset": tokenizer.charset if tokenizer is not None else None,
        "architecture": {field: getattr(inner.config, field) for field in ARCHITECTURE_FIELDS},
    }


ADAPTER_CARD = """---
library_name: peft
base_model: {base_model_yaml}
pipeline_tag: image-to-text
license: {license}
tags:
- ocr
- scene-text-recognition
- mambaocr
- lora
- peft
{datasets_yaml}---

# {name}

A LoRA adapter (PEFT) for the MambaOCR scene-text recognizer `{base_model}`: LoRA of rank {r} on {lora_on}; trained
fully and saved whole: {saved_whole}.

- **Base model**: `{base_model}` (weights fingerprint `{fingerprint}`)
- **Training data**: {training_data}
- **Trainable parameters**: {trainable:,} of {total:,} ({percent:.2f}%)
- **Adapter size**: {adapter_bytes}
- **Charset**: {charset_note}

## Evaluation

{metrics_table}

## Use

```python
import mambaocr_hf  # registers MambaOCR with the Auto classes
from peft import PeftModel
from transformers import AutoModel, AutoProcessor

base = AutoModel.from_pretrained("{base_model}")
model = PeftModel.from_pretrained(base, "{repo_id}").eval()
processor = AutoProcessor.from_pretrained("{processor_source}")
# or, with checks that the base fits and charset extensions handled:
# model = mambaocr_hf.peft_utils.load_adapter("{base_model}", "{repo_id}")

merged = model.merge_and_unload()  # a plain MambaOCRForCTC, saves as a normal checkpoint
```
"""


def write_adapter_card(
    save_directory: str | os.PathLike,
    peft_model,
    metrics: dict[str, float] | None = None,
    training_data: str | None = None,
    datasets: list[str] | None = None,
    repo_id: str | None = None,
    license: str = "apache-2.0",
) -> Path:
    """Write the adapter folder's `README.md`: base model, data, metrics, sizes and how to load it."""
    from .hub import _format_metrics, yaml_scalar

    save_directory = Path(save_directory)
    info = json.loads((save_directory / ADAPTER_INFO_NAME).read_text(encoding="utf-8"))
    config = next(iter(peft_model.peft_config.values()))
    mamba = sorted({name.rsplit(".", 1)[-1] for name in config.target_modules if name.startswith("encoder.")})
    stages = sorted({name.split(".")[2] for name in config.target_modules if name.startswith("backbone.body.")})
    lora_on = "; ".join(
        part
        for part in (
            "the Mamba projections " + ", ".join(f"`{name}`" for name in mamba) if mamba else "",
            "the convolutions of ResNet " + ", ".join(f"`{stage}`" for stage in stages) if stages else "",
        )
        if part
    )
    saved = sorted(
        {name.split(".")[0] if name.startswith("backbone.adapters") else name for name in config.modules_to_save or []}
    )
    saved = ["backbone adapters" if name == "backbone" else name for name in saved]
    trainable = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
    total = sum(t.numel() for t in base_state(peft_model).values())
    adapter_bytes = sum(f.stat().st_size for f in save_directory.glob("adapter_model.*"))
    extended = info["vocab_size"] != info["base_vocab_size"]
    charset_note = (
        f"extended from {info['base_vocab_size'] - 1} to {info['vocab_size'] - 1} characters (the processor saved here "
        "has the new ones); load with `mambaocr_hf.peft_utils.load_adapter`, which resizes the base's head"
        if extended
        else f"the base's ({info['vocab_size'] - 1} characters)"
    )
    text = ADAPTER_CARD.format(
        base_model=info["base_model"] or "unknown",
        license=license,
        base_model_yaml=yaml_scalar(info["base_model"] or "unknown"),
        datasets_yaml="datasets:\n" + "".join(f"- {yaml_scalar(name)}\n" for name in datasets) if datasets else "",
        name=repo_id or save_directory.name,
        r=config.r,
        lora_on=lora_on or "nothing",
        saved_whole=", ".join(f"`{name}`" for name in saved) or "nothing",
        fingerprint=info["base_fingerprint"],
        training_data=training_data or "not recorded",
        trainable=trainable,
        total=total,
        percent=100 * trainable / max(total, 1),
        adapter_bytes=f"{adapter_bytes / 1e6:.2f} MB" if adapter_bytes else "not saved yet",
        charset_note=charset_note,
        metrics_table=_format_metrics(metrics),
        repo_id=repo_id or str(save_directory),
        processor_source=(repo_id or str(save_directory)) if extended else (info["base_model"] or "base"),
    )
    path = save_directory / "README.md"
    path.write_text(text, encoding="utf-8")
    return path


def save_adapter(
    peft_model,
    save_directory: str | os.PathLike,
    processor=None,
    base_model: str | None = None,
    base_vocab_size: int | None = None,
    metrics: dict[str, float] | None = None,
    training_data: str | None = None,
    datasets: list[str] | None = None,
    repo_id: str | None = None,
) -> Path:
    """Save an adapter folder: PEFT's `adapter_config.json` and `adapter_model.safetensors` (LoRA weights and the
    `modules_to_save` modules only), `mambaocr_adapter.json` (what the adapter fits), a model card, and the processor
    when the charset was extended (`base_vocab_size`, by default the size `extend_charset` grew the head from, smaller
    than the model's head)."""
    save_directory = Path(save_directory)
    inner = _unwrap(peft_model)
    if base_model is not None:
        for config in peft_model.peft_config.values():
            config.base_model_name_or_path = base_model
    # the CTC head is saved through `modules_to_save`; PEFT's embedding-layer detection does not apply to it
    peft_model.save_pretrained(save_directory, save_embedding_layers=False)
    tokenizer = processor.tokenizer if processor is not None else None
    if tokenizer is not None and len(tokenizer) != inner.config.vocab_size:
        raise ValueError(
            f"The tokenizer has {len(tokenizer)} entries but the CTC head {inner.config.vocab_size} classes; extend "
            "both with `extend_charset`."
        )
    base_model = base_model or next(iter(peft_model.peft_config.values())).base_model_name_or_path
    info = _adapter_info(peft_model, tokenizer, base_model, base_vocab_size)
    (save_directory / ADAPTER_INFO_NAME).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    _embed_base_fingerprint(save_directory, info["base_fingerprint"])
    if info["vocab_size"] != info["base_vocab_size"]:
        if processor is None:
            logger.warning(
                f"The charset was extended ({info['base_vocab_size']} -> {info['vocab_size']} classes) but no "
                "processor was given: the adapter is saved without the tokenizer that reads its new classes. Pass "
                "`processor=` to save it too."
            )
        else:
            processor.save_pretrained(save_directory)
    write_adapter_card(save_directory, peft_model, metrics, training_data, datasets, repo_id)
    logger.info(f"Saved the MambaOCR adapter to {save_directory}.")
    return save_directory


def _embed_base_fingerprint(save_directory: Path, fingerprint: str) -> None:
    """Add the base's fingerprint to PEFT's adapter weights: `PeftModel.from_pretrained` reads those and not
    `mambaocr_adapter.json`, and the model's load hook checks it there (see `model_loading.check_adapter_base`)."""
    from safetensors.torch import load_file, save_file

    path = save_directory / "adapter_model.safetensors"
    if not path.is_file():  # `safe_serialization=False` in PEFT: the json still carries it for `load_adapter`
        return
    tensors = load_file(path)
    tensors[f"base_model.model.{BASE_FINGERPRINT_KEY}"] = torch.tensor(
        list(fingerprint.encode("ascii")), dtype=torch.uint8
    )
    save_file(tensors, path, metadata={"format": "pt"})


def _carries_base_fingerprint(adapter_dir: Path) -> bool:
    return f"base_model.model.{BASE_FINGERPRINT_KEY}" in _adapter_tensor_shapes(adapter_dir)


def _adapter_tensor_shapes(adapter_dir: Path) -> dict[str, tuple[int, ...]]:
    from safetensors import safe_open

    path = adapter_dir / "adapter_model.safetensors"
    if not path.is_file():
        return {}
    with safe_open(path, framework="pt") as handle:
        return {key: tuple(handle.get_slice(key).get_shape()) for key in handle.keys()}


def read_adapter_info(adapter_dir: str | os.PathLike) -> dict | None:
    path = Path(adapter_dir) / ADAPTER_INFO_NAME
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def check_adapter_compatibility(model, adapter_dir: str | os.PathLike, check_base_weights: bool = True) -> None:
    """Raise a `ValueError` saying what differs when the adapter at `adapter_dir` cannot fit `model` (another
    architecture, another charset size); with `check_base_weights`, warn when the base weights differ from those it
    was trained on (loading the adapter warns too)."""
    adapter_dir = Path(adapter_dir)
    if not (adapter_dir / "adapter_config.json").is_file():
        raise FileNotFoundError(f"{adapter_dir} holds no adapter_config.json: it is not a PEFT adapter folder.")
    inner = _unwrap(model)
    info = read_adapter_info(adapter_dir)
    if info is not None:
        differing = {
            field: (value, getattr(inner.config, field, None))
            for field, value in info["architecture"].items()
            if value != getattr(inner.config, field, None)
        }
        if differing:
            details = ", ".join(f"{k}: adapter {a!r} vs model {b!r}" for k, (a, b) in differing.items())
            raise ValueError(
                f"The adapter at {adapter_dir} was trained on a different base architecture ({details}). Load it on "
                f"its base model, {info.get('base_model') or 'named in adapter_config.json'}."
            )
    head_rows = [
        shape[0]
        for key, shape in _adapter_tensor_shapes(adapter_dir).items()
        if key.startswith("base_model.model.classifier.") and key.endswith("bias")
    ]
    adapter_vocab = info["vocab_size"] if info is not None else next(iter(head_rows), None)
    if adapter_vocab is not None and adapter_vocab != inner.config.vocab_size:
        grown = info is not None and info["base_vocab_size"] == inner.config.vocab_size
        raise ValueError(
            f"The adapter at {adapter_dir} has a CTC head of {adapter_vocab} classes but the model has "
            f"{inner.config.vocab_size}: "
            + (
                "the adapter extended the base's charset. Load it with `mambaocr_hf.peft_utils.load_adapter(base, "
                "adapter_dir)`, which grows the base's head to match, and use the processor saved with the adapter."
                if grown
                else "it was trained with another charset. Load it on the base it was trained from."
            )
        )
    if check_base_weights and info is not None and info.get("base_fingerprint"):
        warn_if_other_base(model, info["base_fingerprint"], f"at {adapter_dir}", info.get("base_model"))


def load_adapter(
    base, adapter_dir: str | os.PathLike, adapter_name: str = "default", is_trainable: bool = False, **kwargs
):
    """Load the adapter at `adapter_dir` onto `base` after checking that it fits (`check_adapter_compatibility`).

    Args:
        base: a base checkpoint (path or Hub id), a `MambaOCRForCTC`, or a `PeftModel` that already holds adapters
            (the new one is added under `adapter_name`; switch with `model.set_adapter(name)`).
        adapter_dir: the adapter folder.
        adapter_name: name of the adapter in the `PeftModel`.
        is_trainable: load it for further training.
        kwargs: passed to `AutoModel.from_pretrained` when `base` is a path.

    Returns:
        The `PeftModel`. When the adapter extended the charset, the base's head is grown first exactly as training
        grew it; take the processor from `load_adapter_processor(adapter_dir)`.
    """
    peft = _require_peft()
    adapter_dir = Path(adapter_dir)
    if isinstance(base, (str, os.PathLike)):
        from transformers import AutoModel

        base = AutoModel.from_pretrained(base, **kwargs)
    info = read_adapter_info(adapter_dir)
    # adapter weights that carry the base's fingerprint are checked as they load (by the model's load hook)
    check_base_weights = not _carries_base_fingerprint(adapter_dir)
    if isinstance(base, peft.PeftModel):
        check_adapter_compatibility(base, adapter_dir, check_base_weights)
        base.load_adapter(str(adapter_dir), adapter_name=adapter_name, is_trainable=is_trainable)
        return base
    inner = _unwrap(base)
    if info is not None and info["base_vocab_size"] == inner.config.vocab_size < info["vocab_size"]:
        inner.resize_vocab(info["vocab_size"])
    check_adapter_compatibility(base, adapter_dir, check_base_weights)
    return peft.PeftModel.from_pretrained(base, str(adapter_dir), adapter_name=adapter_name, is_trainable=is_trainable)


def load_adapter_processor(adapter_dir: str | os.PathLike, base: str | None = None):
    """The processor to use with an adapter: the one saved with it (charset extended), else the base's."""
    from transformers import AutoProcessor

    adapter_dir = Path(adapter_dir)
    if (adapter_dir / "processor_config.json").is_file() or (adapter_dir / "vocab.json").is_file():
        return AutoProcessor.from_pretrained(adapter_dir)
    info = read_adapter_info(adapter_dir) or {}
    base = base or info.get("base_model")
    if base is None:
        raise ValueError(f"{adapter_dir} holds no processor and names no base model: pass `base=`.")
    return AutoProcessor.from_pretrained(base)


def merge_and_save(peft_model, processor, save_directory: str | os.PathLike, **checkpoint_kwargs) -> MambaOCRForCTC:
    """Merge the LoRA weights into the base, drop PEFT's wrappers and save a plain, Hub-ready checkpoint (see
    `mambaocr_hf.save_checkpoint`). Returns the merged `MambaOCRForCTC`."""
    from .hub import save_checkpoint

    merged = peft_model.merge_and_unload()
    save_checkpoint(merged, processor, save_directory, **checkpoint_kwargs)
    return merged


def peft_parameter_table(peft_model) -> str:
    """Trainable / total parameters per module group of a PEFT-wrapped MambaOCR, with how each group trains. Totals
    count the base weights once plus the LoRA weights (not PEFT's copies of the fully trained modules)."""
    groups: dict[str, list[int]] = {}
    kinds: dict[str, set[str]] = {}

    def group_of(name: str) -> str:
        if name.startswith("backbone.body."):
            stage = name.split(".")[2]
            return f"backbone.{stage}" if stage in RESNET_STAGES else "backbone.stem"
        if name.startswith("backbone.adapters"):
            return "backbone.adapters"
        return name.split(".")[0]

    for name, param in peft_model.named_parameters():
        name = name.removeprefix("base_model.model.")
        copy = ".modules_to_save." in name
        lora = "lora_" in name
        clean = name.replace(".base_layer.", ".").replace(".original_module.", ".")
        clean = clean.split(".modules_to_save.")[0] if copy else clean
        counts = groups.setdefault(group_of(clean), [0, 0])
        counts[0] += param.numel() if param.requires_grad else 0
        counts[1] += 0 if copy else param.numel()
        if param.requires_grad:
            kinds.setdefault(group_of(clean), set()).add("LoRA" if lora else "full")
    rows = [("group", "trainable", "total", "how")]
    for name, (trainable, total) in groups.items():
        rows.append((name, f"{trainable:,}", f"{total:,}", "+".join(sorted(kinds.get(name, ()))) or "frozen"))
    trainable = sum(t for t, _ in groups.values())
    total = sum(n for _, n in groups.values())
    rows.append(("all", f"{trainable:,}", f"{total:,}", f"{100 * trainable / max(total, 1):.2f}% trainable"))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    return "\n".join(f"{a:<{widths[0]}}  {b:>{widths[1]}}  {c:>{widths[2]}}  {d}" for a, b, c, d in rows)


__all__ = [
    "DEFAULT_BACKBONE_LORA_STAGES",
    "DEFAULT_MODULES_TO_SAVE",
    "MAMBA_LORA_TARGETS",
    "base_fingerprint",
    "build_lora_config",
    "check_adapter_compatibility",
    "extend_charset",
    "find_new_characters",
    "get_peft_model",
    "load_adapter",
    "load_adapter_processor",
    "merge_and_save",
    "peft_parameter_table",
    "read_adapter_info",
    "save_adapter",
    "write_adapter_card",
]
