# Copyright 2026 The MambaOCR authors. Licensed under the Apache License, Version 2.0.
"""Hub-ready checkpoints: weights (safetensors), processor files, model code (via `auto_map`) and a model card."""

from __future__ import annotations

import json
import math
import os
import re
from importlib import resources
from pathlib import Path
from string import Template

from transformers.utils import logging

from .pipeline_mambaocr import save_pipeline_code

logger = logging.get_logger(__name__)

TEMPLATE_NAME = "model_card.md"


def _template_text() -> str:
    """The model-card template: package data (`templates/`), so every install carries it, `--user` ones too."""
    return (resources.files(__package__) / "templates" / TEMPLATE_NAME).read_text(encoding="utf-8")


def yaml_scalar(value) -> str:
    """`value` as a YAML scalar: quoted text, numbers (numpy and 0-d tensors too; NaN and infinities as YAML spells
    them), booleans and null."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return ".nan" if math.isnan(value) else (".inf" if value > 0 else "-.inf")
    return json.dumps(value)


def markdown_code(text: str) -> str:
    """`text` as a Markdown code span, whatever backticks it holds (a longer run of them delimits it)."""
    longest = max((len(run) for run in re.findall("`+", text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def _format_metrics(metrics: dict[str, float] | None) -> str:
    if not metrics:
        return "No evaluation was recorded for this checkpoint."
    rows = ["| metric | value |", "| --- | --- |"]
    for name, value in metrics.items():
        rows.append(f"| {name} | {value:.4f} |" if isinstance(value, float) else f"| {name} | {value} |")
    return "\n".join(rows)


def write_model_card(
    save_directory: str | os.PathLike,
    model,
    tokenizer,
    metrics: dict[str, float] | None = None,
    training_data: str | None = None,
    datasets: list[str] | None = None,
    base_model: str | None = None,
    repo_id: str | None = None,
    license: str = "apache-2.0",
) -> Path:
    """Write `README.md` (YAML metadata + description + metrics + usage) for a saved checkpoint."""
    config = model.config
    save_directory = Path(save_directory)
    # YAML values as JSON (a YAML subset): a name starting with "*" or holding ": " or " #" stays what it is
    datasets_yaml = "datasets:\n" + "\n".join(f"- {yaml_scalar(name)}" for name in datasets) if datasets else ""
    metrics_yaml = (
        "  metrics:\n" + "\n".join(f"    {json.dumps(k)}: {yaml_scalar(v)}" for k, v in metrics.items())
        if metrics
        else ""
    )
    text = Template(_template_text()).substitute(
        license=license,
        datasets_yaml=datasets_yaml,
        charset_yaml=json.dumps(tokenizer.charset),
        training_data_yaml=json.dumps(training_data or "not recorded"),
        metrics_yaml=metrics_yaml,
        model_name=repo_id or save_directory.name,
        backbone=config.backbone,
        frame_stride=config.frame_stride,
        sequence_model={"mamba": "bidirectional Mamba"}.get(config.sequence_model, config.sequence_model),
        num_layers=config.num_hidden_layers,
        hidden_size=config.hidden_size,
        vocab_chars=len(tokenizer.charset),
        charset=markdown_code(tokenizer.charset),
        num_parameters=f"{sum(p.numel() for p in model.parameters()) / 1e6:.1f} M",
        training_data=training_data or "not recorded",
        base_model=base_model or "none (trained from this configuration)",
        metrics_table=_format_metrics(metrics),
        repo_id=repo_id or str(save_directory),
    )
    # drop the blank lines that missing optional YAML entries leave
    head, _, body = text.partition("\n---\n\n")
    text = "\n".join(line for line in head.splitlines() if line.strip()) + "\n---\n\n" + body
    path = save_directory / "README.md"
    path.write_text(text, encoding="utf-8")
    return path


def save_checkpoint(
    model,
    processor,
    save_directory: str | os.PathLike,
    metrics: dict[str, float] | None = None,
    training_data: str | None = None,
    datasets: list[str] | None = None,
    base_model: str | None = None,
    push_to_hub: bool = False,
    repo_id: str | None = None,
    token: str | bool | None = None,
    private: bool | None = None,
    commit_message: str | None = None,
) -> Path:
    """Save a complete, Hub-ready checkpoint folder: `model.safetensors`, `config.json` with `auto_map`, the model
    code, the pipeline's code (`image-to-text` with `trust_remote_code`), the processor files and a `README.md` model
    card; optionally push it to `repo_id` (created, `private` if
    asked, where it does not exist), with `token` and `commit_message`."""
    if len(processor.tokenizer) != model.config.vocab_size:
        raise ValueError(
            f"The tokenizer has {len(processor.tokenizer)} entries but the model's CTC head has "
            f"{model.config.vocab_size} classes; they must match before saving."
        )
    save_directory = Path(save_directory)
    save_directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(save_directory)
    save_pipeline_code(save_directory)
    processor.save_pretrained(save_directory)
    write_model_card(
        save_directory,
        model,
        processor.tokenizer,
        metrics=metrics,
        training_data=training_data,
        datasets=datasets,
        base_model=base_model,
        repo_id=repo_id,
    )
    logger.info(f"Saved a Hub-ready MambaOCR checkpoint to {save_directory}.")
    if push_to_hub:
        from huggingface_hub import HfApi

        if not repo_id:
            raise ValueError("`push_to_hub=True` needs a `repo_id` such as 'your-name/mambaocr-demo'.")
        api = HfApi()
        api.create_repo(repo_id, exist_ok=True, token=token, private=private)
        api.upload_folder(
            repo_id=repo_id,
            folder_path=str(save_directory),
            token=token,
            commit_message=commit_message or "Upload MambaOCR checkpoint",
            ignore_patterns=["checkpoint-*", "checkpoint-*/**", "runs/**"],  # Trainer's resume state stays local
        )
    return save_directory


__all__ = ["save_checkpoint", "write_model_card"]
