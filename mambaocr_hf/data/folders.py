# Copyright 2026 The MambaOCR authors. Licensed under the Apache License, Version 2.0.
"""Image folders with a `labels.tsv`: one `path<TAB>label` line per image, the path relative to the folder that
holds `labels.tsv` (absolute paths work too). A folder whose sub-folders each hold a `labels.tsv` is read as one
dataset."""

from __future__ import annotations

import os
from pathlib import Path

from .filters import SampleFilter, read_image_bytes
from .sharding import read_lines, split_path

LABELS_FILE = "labels.tsv"
_HEADER_NAMES = {"path", "file_name", "filename", "image", "file", "img"}


def find_label_files(path: str | os.PathLike) -> list[str]:
    """`labels.tsv` files at or under `path` (the file itself when `path` is one)."""
    path = Path(path)
    if path.is_file():
        return [os.fspath(path)]
    if (path / LABELS_FILE).is_file():
        return [os.fspath(path / LABELS_FILE)]
    return sorted(os.fspath(found) for found in path.rglob(LABELS_FILE))


def folder_examples(shards: list[tuple[str, int, int]], sample_filter: SampleFilter, verify_images: bool = True):
    """`datasets` generator: the samples of each `(labels.tsv, first byte, end byte)` range."""
    for labels_file, start, end in shards:
        folder = os.path.dirname(labels_file)
        for offset, line in read_lines(labels_file, start, end):
            if not line.strip():
                continue
            # a line that is not UTF-8 (bytes): its label is checked (and skipped) by the filter
            raw_path, tab, label = line.partition(b"\t" if isinstance(line, bytes) else "\t")
            relative, shown = split_path(raw_path)
            if offset == 0 and relative.strip().lower() in _HEADER_NAMES:
                continue  # a header line
            where = f"{labels_file}:byte {offset} ({shown})"
            if not tab:
                label = None  # no tab: the line has no label
            image_path = os.path.join(folder, relative)
            data = read_image_bytes(image_path)
            text = sample_filter.check_encoded(label, data, where, verify_images)
            if text is not None:
                yield {"image": {"bytes": data, "path": shown}, "text": text}


__all__ = ["LABELS_FILE", "find_label_files", "folder_examples"]
