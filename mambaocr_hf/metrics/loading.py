# Copyright 2026 The MambaOCR authors. Licensed under the Apache License, Version 2.0.
"""Load the `evaluate` modules shipped in this sub-package from their local folders, so they work offline
(`HF_HUB_OFFLINE=1`): `evaluate.load("cer")` would fetch the module from the Hub."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from transformers.utils import logging

if TYPE_CHECKING:
    import evaluate

logger = logging.get_logger(__name__)

_MODULES_DIR = Path(__file__).resolve().parent
EVALUATE_MODULES = ("cer", "wer", "word_accuracy", "ned")


def metric_module_path(name: str) -> Path:
    """The folder of a shipped `evaluate` module script.

    Args:
        name: One of `EVALUATE_MODULES`.

    Returns:
        The folder `mambaocr_hf/metrics/<name>`, which holds `<name>.py`.

    Raises:
        ValueError: If `name` is not a shipped module.
    """
    if name not in EVALUATE_MODULES:
        raise ValueError(f"unknown metric {name!r}: the shipped evaluate modules are {', '.join(EVALUATE_MODULES)}")
    return _MODULES_DIR / name


def load_metric(name: str, **kwargs: Any) -> evaluate.EvaluationModule:
    """Load a shipped metric with `evaluate.load` from its local folder, without network access.

    Args:
        name: One of `EVALUATE_MODULES`: `"cer"`, `"wer"`, `"word_accuracy"` (exact and case-insensitive
            alphanumeric) or `"ned"` (1 - NED).
        **kwargs: Passed to `evaluate.load` (e.g. `keep_in_memory=True`, `experiment_id`, `num_process`).

    Returns:
        The `evaluate.EvaluationModule`; its `compute(predictions=..., references=...)` returns a dict of floats.

    Raises:
        ValueError: If `name` is not a shipped module.
    """
    import evaluate  # imported here: `import mambaocr_hf.metrics` stays light for code that only needs the functions

    path = metric_module_path(name)
    logger.debug(f"Loading the {name} evaluate module from {path}")
    return evaluate.load(str(path), **kwargs)


def string_pair_metric_info(
    description: str, citation: str, inputs_description: str, reference_urls: list[str]
) -> evaluate.MetricInfo:
    """The `MetricInfo` of a shipped module: string predictions against string references."""
    import datasets
    import evaluate

    return evaluate.MetricInfo(
        description=description,
        citation=citation,
        inputs_description=inputs_description,
        features=datasets.Features({"predictions": datasets.Value("string"), "references": datasets.Value("string")}),
        reference_urls=reference_urls,
    )
