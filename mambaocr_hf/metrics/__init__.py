# Copyright 2026 The MambaOCR authors. Licensed under the Apache License, Version 2.0.
"""Text-recognition metrics: `compute_ocr_metrics` (CER, WER, word accuracy exact and case-insensitive
alphanumeric, 1 - NED), line accuracy and CER by label length (`length_bucket_metrics`), tables to print them, and
offline `evaluate` modules (`load_metric`). The model files never import this package."""

from .loading import EVALUATE_MODULES, load_metric, metric_module_path
from .ocr_metrics import (
    LENGTH_BUCKETS,
    METRIC_NAMES,
    OCRCounts,
    compute_ocr_metrics,
    corpus_counts,
    edit_distance,
    format_length_buckets_table,
    format_metrics_table,
    format_reliability_table,
    format_sources_table,
    length_bucket_metrics,
    mean_over_sources,
    normalize_alnum,
    score_reliability,
)

__all__ = [
    "EVALUATE_MODULES",
    "LENGTH_BUCKETS",
    "METRIC_NAMES",
    "OCRCounts",
    "compute_ocr_metrics",
    "corpus_counts",
    "edit_distance",
    "format_length_buckets_table",
    "format_metrics_table",
    "format_reliability_table",
    "format_sources_table",
    "length_bucket_metrics",
    "load_metric",
    "mean_over_sources",
    "metric_module_path",
    "normalize_alnum",
    "score_reliability",
]
