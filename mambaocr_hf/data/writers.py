# Copyright 2026 The MambaOCR authors. Licensed under the Apache License, Version 2.0.
"""Write samples in any of the layouts `load_ocr_dataset` reads: LMDB (clovaai), MJSynth, a `labels.tsv` folder,
or parquet (with the `datasets` features in its metadata, so `load_dataset("parquet", ...)` sees an `Image`
column)."""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Iterable, Iterator

import pyarrow as pa
import pyarrow.parquet as pq
from tqdm.auto import tqdm
from transformers.utils import logging

from .columns import FEATURES
from .lmdb_io import write_lmdb

logger = logging.get_logger(__name__)

FORMATS = ("lmdb", "mjsynth", "folder", "parquet")
_UNSAFE_IN_FILE_NAMES = set('<>:"/\\|?*\0')  # MJSynth keeps the label in the file name
_PARQUET_ROWS_PER_FILE = 10_000


def representable(label: str, format: str) -> bool:
    """Whether `format` can store `label` as it is (MJSynth: a portable file name; folder: one TSV field)."""
    if not label or label != label.strip():
        return False
    if format == "mjsynth":
        return not (set(label) & _UNSAFE_IN_FILE_NAMES) and label.isprintable() and label not in (".", "..")
    if format == "folder":
        return not set(label) & {"\t", "\n", "\r"}
    return True


def _write_mjsynth(samples: Iterator[tuple[bytes, str]], output_dir: str, split: str, extension: str) -> None:
    lexicon: dict[str, int] = {}
    lines = []
    for index, (data, label) in enumerate(samples):
        lexicon_index = lexicon.setdefault(label, len(lexicon))
        relative = f"./{index // 10000 + 1}/{index // 1000 % 10 + 1}/{index}_{label}_{lexicon_index}.{extension}"
        path = os.path.join(output_dir, relative)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as handle:
            handle.write(data)
        lines.append(f"{relative} {lexicon_index}\n")
    split_name = {"validation": "val"}.get(split, split)
    with open(os.path.join(output_dir, f"annotation_{split_name}.txt"), "w", encoding="utf-8", newline="\n") as handle:
        handle.writelines(lines)
    with open(os.path.join(output_dir, "lexicon.txt"), "w", encoding="utf-8", newline="\n") as handle:
        handle.writelines(f"{word}\n" for word in lexicon)


def _write_folder(samples: Iterator[tuple[bytes, str]], output_dir: str, extension: str) -> None:
    os.makedirs(os.path.join(output_dir, "images"), exist_ok=True)
    with open(os.path.join(output_dir, "labels.tsv"), "w", encoding="utf-8", newline="\n") as labels:
        for index, (data, label) in enumerate(samples):
            relative = f"images/{index:08d}.{extension}"
            with open(os.path.join(output_dir, relative), "wb") as handle:
                handle.write(data)
            labels.write(f"{relative}\t{label}\n")


def _write_parquet(samples: Iterator[tuple[bytes, str]], output_dir: str, split: str, num_samples: int) -> None:
    schema = pa.schema(
        [("image", pa.struct([("bytes", pa.binary()), ("path", pa.string())])), ("text", pa.string())],
        metadata={"huggingface": json.dumps({"info": {"features": FEATURES.to_dict()}})},
    )
    num_files = max(1, -(-num_samples // _PARQUET_ROWS_PER_FILE))
    for file_index in range(num_files):
        rows = list(itertools.islice(samples, _PARQUET_ROWS_PER_FILE))
        table = pa.table(
            {"image": [{"bytes": data, "path": None} for data, _ in rows], "text": [label for _, label in rows]},
            schema=schema,
        )
        pq.write_table(table, os.path.join(output_dir, f"{split}-{file_index:05d}-of-{num_files:05d}.parquet"))


def write_dataset(
    samples: Iterable[tuple[bytes, str]],
    output_dir: str | os.PathLike,
    format: str,
    num_samples: int,
    image_format: str = "jpg",
    split: str = "train",
    show_progress: bool = True,
) -> int:
    """Write the first `num_samples` storable samples of `samples` (`(encoded image, label)` pairs) to
    `output_dir` in `format`.

    Labels a format cannot store as they are (MJSynth: characters not allowed in file names; folder: tabs or line
    breaks) are skipped, and later samples take their place, so exactly `num_samples` are written when `samples`
    has enough.

    Args:
        samples: `(encoded image bytes, label)` pairs, e.g. from `SyntheticTextGenerator.encode`.
        output_dir: where to write (created; must be empty or absent).
        format: one of `FORMATS`.
        num_samples: how many samples to write.
        image_format: the extension of the image bytes (`"jpg"` or `"png"`), for file names.
        split: the split name (MJSynth annotation file, parquet file names).
        show_progress: show a tqdm progress bar.

    Returns:
        The number of samples written.
    """
    if format not in FORMATS:
        raise ValueError(f"`format` must be one of {list(FORMATS)}, got {format!r}.")
    output_dir = os.fspath(output_dir)
    if os.path.isdir(output_dir) and os.listdir(output_dir):
        raise FileExistsError(f"{output_dir} is not empty; pick a new folder.")
    os.makedirs(output_dir, exist_ok=True)
    skipped = 0

    def storable() -> Iterator[tuple[bytes, str]]:
        nonlocal skipped
        for data, label in samples:
            if representable(label, format):
                yield data, label
            else:
                skipped += 1

    progress = tqdm(total=num_samples, desc=f"Writing {format} to {output_dir}", unit="img", disable=not show_progress)

    def counted() -> Iterator[tuple[bytes, str]]:
        for sample in itertools.islice(storable(), num_samples):
            progress.update(1)
            yield sample

    written = 0
    try:
        if format == "lmdb":
            rows = ({"image": data, "text": label} for data, label in counted())
            written = write_lmdb(rows, output_dir, show_progress=False)
        else:
            stream = counted()
            if format == "mjsynth":
                _write_mjsynth(stream, output_dir, split, image_format)
            elif format == "folder":
                _write_folder(stream, output_dir, image_format)
            else:
                _write_parquet(stream, output_dir, split, num_samples)
            written = progress.n
    finally:
        progress.close()
    if skipped:
        logger.warning(f"Skipped {skipped} samples whose label the {format} layout cannot store as it is.")
    return written


__all__ = ["FORMATS", "representable", "write_dataset"]
