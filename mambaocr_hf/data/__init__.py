# Copyright 2026 The MambaOCR authors. Licensed under the Apache License, Version 2.0.
"""The data layer: every text-recognition source as `{"image": PIL.Image, "text": str}` rows through the
`datasets` library (streaming by default), synthetic text rendered on the fly, LMDB conversion, and a collator that
turns rows into model inputs. The model files never import this package."""

from .augment import TextAugment, resolve_augment
from .backgrounds import PhotoBackgrounds
from .bucketing import WidthBucketedDataset, model_width_of
from .collator import OCRDataCollator
from .columns import FEATURES, resolve_columns
from .filters import (
    BadSampleError,
    LabelNormalizer,
    SampleFilter,
    ctc_frames,
    ctc_frames_needed,
    label_change_counts,
    reset_skip_counts,
    skip_counts,
    widen_for_ctc,
)
from .fonts import FontInfo, find_fonts, scan_fonts
from .lmdb_io import write_lmdb
from .mixing import CurriculumStream, interleave_sources, parse_source_spec, split_for_rank
from .sources import detect_layout, load_ocr_dataset
from .synthetic import SyntheticConfig, SyntheticTextGenerator
from .writers import write_dataset

__all__ = [
    "CurriculumStream",
    "FEATURES",
    "BadSampleError",
    "FontInfo",
    "LabelNormalizer",
    "OCRDataCollator",
    "PhotoBackgrounds",
    "SampleFilter",
    "SyntheticConfig",
    "SyntheticTextGenerator",
    "TextAugment",
    "ctc_frames",
    "ctc_frames_needed",
    "detect_layout",
    "find_fonts",
    "interleave_sources",
    "label_change_counts",
    "load_ocr_dataset",
    "parse_source_spec",
    "reset_skip_counts",
    "resolve_augment",
    "resolve_columns",
    "scan_fonts",
    "skip_counts",
    "split_for_rank",
    "widen_for_ctc",
    "write_dataset",
    "write_lmdb",
    "WidthBucketedDataset",
    "model_width_of",
]
