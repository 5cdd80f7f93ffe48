# Copyright 2026 The MambaOCR authors. Licensed under the Apache License, Version 2.0.
"""MJSynth (Jaderberg et al. 2014, "Synthetic Data and Artificial Neural Networks for Natural Scene Text
Recognition"), as released in `mjsynth.tar.gz` / `90kDICT32px`.

The release holds `annotation_train.txt`, `annotation_val.txt`, `annotation_test.txt` (and `annotation.txt`, all of
them) with lines such as `./2697/6/466_MONIKER_49537.jpg 49537`: an image path relative to the root and a lexicon
index. The label is the part of the file name between its first and last underscore (`MONIKER`). A few thousand
files of the release are empty or corrupt; they are skipped and counted.
"""

from __future__ import annotations

import os
from pathlib import Path

from .filters import SampleFilter, read_image_bytes
from .sharding import read_lines, split_path

ANNOTATION_FILES = {
    "train": "annotation_train.txt",
    "val": "annotation_val.txt",
    "validation": "annotation_val.txt",
    "test": "annotation_test.txt",
    "all": "annotation.txt",
}
_SEARCH_DEPTH = 5  # the official archive unpacks to mnt/ramdisk/max/90kDICT32px/


def find_mjsynth_root(path: str | os.PathLike) -> str | None:
    """The folder at or below `path` (a few levels deep) that holds MJSynth's annotation files, or `None`."""
    path = Path(path)
    candidates = [path]
    for _ in range(_SEARCH_DEPTH):
        for folder in candidates:
            if any((folder / name).is_file() for name in set(ANNOTATION_FILES.values())):
                return os.fspath(folder)
        candidates = sorted(child for folder in candidates for child in folder.iterdir() if child.is_dir())[:64]
        if not candidates:
            break
    return None


def annotation_file(root: str, split: str | None) -> str:
    """The annotation file of `split` (`train` by default; `val`/`validation`, `test`, or `all`)."""
    split = split or "train"
    if split not in ANNOTATION_FILES:
        raise ValueError(f"MJSynth has the splits {sorted(ANNOTATION_FILES)}, not {split!r}.")
    path = os.path.join(root, ANNOTATION_FILES[split])
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{root} has no {ANNOTATION_FILES[split]} for the split {split!r}.")
    return path


def label_from_path(path: str) -> str | None:
    """`MONIKER` from `./2697/6/466_MONIKER_49537.jpg` (the name between its first and last underscore)."""
    stem = os.path.splitext(os.path.basename(path))[0]
    first, last = stem.find("_"), stem.rfind("_")
    if first < 0 or last <= first:
        return None
    return stem[first + 1 : last]


def mjsynth_examples(
    shards: list[tuple[str, int, int]], root: str, sample_filter: SampleFilter, verify_images: bool = True
):
    """`datasets` generator: the samples of each `(annotation file, first byte, end byte)` range."""
    for annotation, start, end in shards:
        for offset, line in read_lines(annotation, start, end):
            if not line.strip():
                continue
            # a path that is not UTF-8 is found by its bytes; the label read from it is then skipped as undecodable
            relative, shown = split_path(line.split()[0])
            where = f"{annotation}:byte {offset} ({shown})"
            label = label_from_path(relative)
            image_path = os.path.join(root, relative)
            data = read_image_bytes(image_path)
            text = sample_filter.check_encoded(label, data, where, verify_images)
            if text is not None:
                yield {"image": {"bytes": data, "path": shown}, "text": text}


__all__ = ["ANNOTATION_FILES", "annotation_file", "find_mjsynth_root", "label_from_path", "mjsynth_examples"]
