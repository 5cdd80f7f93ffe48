# Copyright 2026 The MambaOCR authors. Licensed under the Apache License, Version 2.0.
"""One entry point for every text-recognition source: `load_ocr_dataset` gives `{"image": PIL.Image, "text": str}`
rows through the `datasets` library, streaming by default. The sources read here (synthetic, LMDB, MJSynth,
`labels.tsv` folders) are sharded generators; those `datasets` loads itself are in `columns.py`."""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable

import datasets
from datasets import Dataset, IterableDataset
from datasets.fingerprint import Hasher
from transformers.utils import logging

from .columns import FEATURES, load_with_datasets, standardize_columns
from .filters import SampleFilter
from .folders import find_label_files, folder_examples
from .lmdb_io import find_lmdb_roots, lmdb_examples, lmdb_num_samples
from .mjsynth import annotation_file, find_mjsynth_root, mjsynth_examples
from .sharding import MAX_SHARDS, byte_ranges, count_lines, index_ranges, num_shards_for
from .synthetic import SyntheticConfig, SyntheticTextGenerator, synthetic_examples

logger = logging.get_logger(__name__)

LAYOUTS = ("synthetic", "lmdb", "mjsynth", "folder", "imagefolder", "parquet", "arrow", "hub")
SYNTHETIC_OPTIONS = (
    "num_samples",
    "seed",
    "font_dirs",
    "use_system_fonts",
    "use_package_fonts",
    "words",
    "max_length",
    "config",
)
_HUB_NAME = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
_SPLIT_ALIASES = {
    "train": ("train", "training"),
    "validation": ("validation", "val", "valid"),
    "val": ("val", "validation", "valid"),
    "test": ("test", "evaluation"),
}
# sub-folders that hold a held-out split: the training split never reads them (clovaai's LMDB release names its
# splits training/validation/evaluation)
_HELD_OUT_FOLDERS = {"val", "validation", "valid", "test", "evaluation"}


def split_folders(path: str) -> list[str]:
    """The split sub-folders (`train`, `val`, `test`, ... and their aliases) directly under a local folder `path`."""
    names = {name for aliases in _SPLIT_ALIASES.values() for name in aliases} | _HELD_OUT_FOLDERS
    if not os.path.isdir(path):
        return []
    return sorted(
        entry for entry in os.listdir(path) if entry.lower() in names and os.path.isdir(os.path.join(path, entry))
    )


def _split_folder(path: str, split: str | None) -> str:
    """`path/<split>` when it exists (`val` and `validation` stand for each other, as do `train` and `training`),
    else `path` for the training split; any other split must have its folder."""
    if split is None:
        return path
    for name in _SPLIT_ALIASES.get(split, (split,)):
        if os.path.isdir(os.path.join(path, name)):
            return os.path.join(path, name)
    if split == "train":
        return path
    raise FileNotFoundError(f"{path} has no folder for the split {split!r}.")


def _find_in_split(path: str, split: str | None, find: Callable[[str], list[str]]) -> list[str]:
    """What `find` (a finder of label files or LMDB roots) finds in the folder of `split` under `path`. When the
    training split reads `path` itself for want of a `train/` folder, held-out split sub-folders are left out: else
    their rows would leak into training."""
    if os.path.isfile(path):
        return find(path)
    folder = _split_folder(path, split)
    found = find(folder)
    if split != "train" or folder != path:
        return found
    kept = [item for item in found if os.path.relpath(item, path).split(os.sep)[0].lower() not in _HELD_OUT_FOLDERS]
    if len(kept) < len(found):
        left_out = sorted(set(found) - set(kept))
        logger.warning(
            f"{path} has no train/ folder: its training split reads the whole folder except the held-out split "
            f"folders ({', '.join(left_out)}). Put the training data in {os.path.join(path, 'train')} to be explicit."
        )
    return kept


def detect_layout(source: str) -> str:
    """What `source` is: `"synthetic"`, a layout found on disk (`"lmdb"`, `"mjsynth"`, `"folder"` with
    `labels.tsv`, `"imagefolder"` with `metadata.jsonl`/`.csv`, `"parquet"`, `"arrow"` from `save_to_disk`), or
    `"hub"` for a name that is not a local path.

    Raises a `FileNotFoundError` for a path-like source that does not exist, and a `ValueError` for a folder in no
    known layout.
    """
    if source == "synthetic":
        return "synthetic"
    path = os.path.expanduser(source)
    if not os.path.exists(path):
        looks_like_path = source.startswith((".", "/", "~")) or source.count("/") > 1 or "\\" in source
        if _HUB_NAME.match(source) and not looks_like_path:
            return "hub"
        raise FileNotFoundError(f"No such dataset folder or file: {source!r}.")
    if os.path.isfile(path):
        name = os.path.basename(path)
        if name.endswith(".parquet"):
            return "parquet"
        if name.endswith(".tsv"):
            return "folder"
        if name.startswith("annotation") and name.endswith(".txt"):
            return "mjsynth"
        raise ValueError(f"Cannot tell the layout of the file {source!r}; pass a folder or `layout=`.")
    entries = set(os.listdir(path))
    if "data.mdb" in entries:
        return "lmdb"
    if entries & {"dataset_info.json", "dataset_dict.json", "state.json"}:
        return "arrow"
    if "labels.tsv" in entries:
        return "folder"
    if entries & {"metadata.jsonl", "metadata.csv"}:
        return "imagefolder"
    if find_mjsynth_root(path) is not None:
        return "mjsynth"
    files = [os.path.join(root, name) for root, _, names in os.walk(path) for name in names]
    names = {os.path.basename(file) for file in files}
    if "data.mdb" in names:
        return "lmdb"
    if "labels.tsv" in names:
        return "folder"
    if names & {"metadata.jsonl", "metadata.csv"}:
        return "imagefolder"
    if any(file.endswith(".parquet") for file in files):
        return "parquet"
    raise ValueError(
        f"{source!r} is in no layout this loader knows: expected an LMDB (data.mdb), MJSynth (annotation_*.txt), "
        "a folder with labels.tsv, an imagefolder with metadata.jsonl, parquet files, or a save_to_disk folder."
    )


def _from_generator(
    generator: Callable, gen_kwargs: dict, streaming: bool, split: str | None, cache_dir: str | None, fingerprint_parts
) -> Dataset | IterableDataset:
    """A dataset from a sharded generator: streamed, or written once to the cache (keyed by the source's files)."""
    split = datasets.NamedSplit(split or "train")
    if streaming:
        return IterableDataset.from_generator(generator, features=FEATURES, gen_kwargs=gen_kwargs, split=split)
    fingerprint = Hasher.hash([generator.__name__, fingerprint_parts, gen_kwargs])
    return Dataset.from_generator(
        generator, features=FEATURES, gen_kwargs=gen_kwargs, cache_dir=cache_dir, split=split, fingerprint=fingerprint
    )


def _stat(path: str) -> tuple:
    stat = os.stat(path)
    return (os.path.abspath(path), stat.st_size, stat.st_mtime_ns)


def _line_shards(files: list[str], max_shards: int | None) -> list[tuple[str, int, int]]:
    """Byte-range shards over several index files, in proportion to their number of lines."""
    lines = {file: count_lines(file) for file in files}
    total = sum(lines.values())
    wanted = num_shards_for(total, max_shards)
    shards = []
    for file in files:
        if lines[file]:
            share = min(max(1, round(wanted * lines[file] / total)), lines[file])
            shards.extend((file, start, end) for start, end in byte_ranges(file, share))
    return shards


def _load_synthetic(
    split: str | None,
    streaming: bool,
    sample_filter: SampleFilter,
    tokenizer,
    num_shards: int | None,
    cache_dir: str | None,
    options: dict,
) -> Dataset | IterableDataset:
    unknown = set(options) - set(SYNTHETIC_OPTIONS)
    if unknown:
        raise TypeError(f"Unexpected options for the synthetic source: {sorted(unknown)}.")
    num_samples = options.pop("num_samples", None)
    if num_samples is None and not streaming:
        raise ValueError("A non-streaming synthetic dataset needs `num_samples`.")
    config = options.pop("config", None)
    if isinstance(config, dict):
        config = SyntheticConfig(**config)
    generator = SyntheticTextGenerator(tokenizer=tokenizer, split=split, config=config, **options)
    shards = num_shards_for(num_samples, num_shards) if num_samples is not None else (num_shards or MAX_SHARDS)
    geometry_only = dataclasses.replace(sample_filter, normalizer=None, stats=None)
    gen_kwargs = {
        "shards": list(range(shards)),
        "num_shards": shards,
        "num_samples": num_samples,
        "generator": generator,
        "sample_filter": geometry_only,
        # a stream's bytes are decoded straight away: uncompressed BMP saves the PNG round trip (~0.5 ms of ~3.5 ms
        # per sample on one core, which the training step shares); a cached dataset keeps the smaller PNG
        "image_format": "bmp" if streaming else "png",
    }
    return _from_generator(synthetic_examples, gen_kwargs, streaming, split, cache_dir, generator.describe())


def _load_lmdb(
    path: str,
    split: str | None,
    streaming: bool,
    sample_filter: SampleFilter,
    num_shards: int | None,
    cache_dir: str | None,
    verify_images: bool,
) -> Dataset | IterableDataset:
    roots = _find_in_split(path, split, find_lmdb_roots)
    if not roots:
        raise FileNotFoundError(f"No LMDB (data.mdb) under {path!r} for the split {split!r}.")
    sizes = {root: lmdb_num_samples(root) for root in roots}
    total = sum(sizes.values())
    shards = []
    for root in roots:
        if sizes[root]:
            share = max(1, round(num_shards_for(total, num_shards) * sizes[root] / total))
            shards.extend((root, first, stop) for first, stop in index_ranges(1, sizes[root] + 1, share))
    logger.info(f"LMDB {path}: {total} samples in {len(roots)} database(s), {len(shards)} shards.")
    gen_kwargs = {"shards": shards, "sample_filter": sample_filter, "verify_images": verify_images}
    stats = [_stat(os.path.join(root, "data.mdb")) for root in roots]
    return _from_generator(lmdb_examples, gen_kwargs, streaming, split, cache_dir, stats)


def _load_mjsynth(
    path: str,
    split: str | None,
    streaming: bool,
    sample_filter: SampleFilter,
    num_shards: int | None,
    cache_dir: str | None,
    verify_images: bool,
) -> Dataset | IterableDataset:
    if os.path.isfile(path):
        root, annotation = os.path.dirname(path), path
    else:
        root = find_mjsynth_root(path)
        if root is None:
            raise FileNotFoundError(f"No MJSynth annotation files under {path!r}.")
        annotation = annotation_file(root, split)
    shards = _line_shards([annotation], num_shards)
    gen_kwargs = {"shards": shards, "root": root, "sample_filter": sample_filter, "verify_images": verify_images}
    return _from_generator(mjsynth_examples, gen_kwargs, streaming, split, cache_dir, [_stat(annotation)])


def _load_folder(
    path: str,
    split: str | None,
    streaming: bool,
    sample_filter: SampleFilter,
    num_shards: int | None,
    cache_dir: str | None,
    verify_images: bool,
) -> Dataset | IterableDataset:
    files = _find_in_split(path, split, find_label_files)
    if not files:
        raise FileNotFoundError(f"No labels.tsv under {path!r} for the split {split!r}.")
    shards = _line_shards(files, num_shards)
    if not shards:
        raise ValueError(
            f"{', '.join(files)} hold no lines: write one `image path<TAB>label` line per image into labels.tsv."
        )
    gen_kwargs = {"shards": shards, "sample_filter": sample_filter, "verify_images": verify_images}
    return _from_generator(folder_examples, gen_kwargs, streaming, split, cache_dir, [_stat(file) for file in files])


def load_ocr_dataset(
    source: str,
    split: str | None = None,
    streaming: bool = True,
    *,
    layout: str | None = None,
    processor=None,
    tokenizer=None,
    image_processor=None,
    unknown_char_policy: str | None = None,
    bad_sample_policy: str = "skip",
    check_ctc: bool = True,
    widen: bool = True,
    min_aspect_ratio: float = 0.1,
    max_aspect_ratio: float | None = None,
    max_label_length: int | None = None,
    verify_images: bool = True,
    columns: dict[str, str] | None = None,
    num_shards: int | None = None,
    cache_dir: str | None = None,
    **options,
) -> IterableDataset | Dataset:
    """Load a text-recognition source as `{"image": PIL.Image, "text": str}` rows.

    Args:
        source: `"synthetic"` (rendered on the fly), a local path (an LMDB in clovaai's layout, an MJSynth root, a
            folder with `labels.tsv`, an imagefolder with `metadata.jsonl`, parquet files, or a `save_to_disk`
            folder; told apart by what is on disk), or a Hub dataset name.
        split: `train` (default), `val`/`validation`, `test`, ...: a sub-folder of that name, MJSynth's
            annotation file, or the Hub split. For the synthetic source another split gives other samples.
        streaming: an `IterableDataset` read lazily (default), or a `Dataset` written to the `datasets` cache.
        layout: force a layout (one of `LAYOUTS`) instead of detecting it.
        processor, tokenizer, image_processor: the model's processor (or its parts): the tokenizer's charset and
            unknown-character policy clean the labels, the image processor's sizes drive the CTC length check.
            Without a tokenizer, labels are kept as they are (the synthetic source then uses the default charset).
        unknown_char_policy: overrides the tokenizer's: `"error"` raises, `"drop"` skips the sample, `"map"` folds
            the label into the charset (see `LabelNormalizer`).
        bad_sample_policy: `"skip"` bad samples (counted and logged) or `"raise"` at the first one.
        check_ctc, widen, min_aspect_ratio, max_aspect_ratio, max_label_length: sample checks (see `SampleFilter`;
            with `widen`, crops too narrow for their label are kept for the collator to stretch).
        verify_images: decode every image while reading, to skip truncated files (else only the header is read).
        columns: for Hub, parquet and imagefolder data: `{"image": <column>, "text": <column>}` when the names are
            not standard (`resolve_columns`).
        num_shards: most shards to cut the source in (default `MAX_SHARDS`; a source never has more shards than
            samples). Shards are what DataLoader workers and DDP ranks share out.
        cache_dir: the `datasets` cache (non-streaming datasets and Hub downloads).
        options: for `"synthetic"`: `num_samples` (unbounded by default when streaming), `seed`, `font_dirs`,
            `use_system_fonts`, `use_package_fonts`, `words`, `max_length`, `config` (`SyntheticConfig` or dict);
            for Hub, parquet and imagefolder data: extra `datasets.load_dataset` arguments (`name`, `revision`,
            `data_files`, ...).

    Returns:
        A `datasets.IterableDataset` (or `Dataset`) with features `{"image": Image(), "text": Value("string")}`.

    Example:

    ```python
    >>> from mambaocr_hf import MambaOCRProcessor
    >>> from mambaocr_hf.data import load_ocr_dataset

    >>> processor = MambaOCRProcessor.from_defaults()
    >>> dataset = load_ocr_dataset("synthetic", processor=processor, num_samples=4, seed=0)
    >>> [sorted(row) for row in dataset.take(2)]
    [['image', 'text'], ['image', 'text']]
    ```
    """
    layout = layout or detect_layout(source)
    if layout not in LAYOUTS:
        raise ValueError(f"`layout` must be one of {list(LAYOUTS)}, got {layout!r}.")
    tokenizer = tokenizer or getattr(processor, "tokenizer", None)
    path = os.path.expanduser(source) if layout not in ("synthetic", "hub") else source
    sample_filter = SampleFilter.from_processor(
        processor,
        tokenizer=tokenizer,
        image_processor=image_processor,
        unknown_char_policy=unknown_char_policy,
        bad_sample_policy=bad_sample_policy,
        check_ctc=check_ctc,
        widen=widen,
        min_aspect_ratio=min_aspect_ratio,
        max_aspect_ratio=max_aspect_ratio,
        max_label_length=max_label_length,
        name=f"{layout}:{source}" + (f"[{split}]" if split else ""),
    )
    if layout == "synthetic":
        return _load_synthetic(split, streaming, sample_filter, tokenizer, num_shards, cache_dir, dict(options))
    if layout in ("lmdb", "mjsynth", "folder"):
        if options:
            raise TypeError(f"Unexpected options for a {layout} source: {sorted(options)}.")
        loader = {"lmdb": _load_lmdb, "mjsynth": _load_mjsynth, "folder": _load_folder}[layout]
        return loader(path, split, streaming, sample_filter, num_shards, cache_dir, verify_images)
    dataset = load_with_datasets(layout, path, split, streaming, num_shards, cache_dir, options)
    base_dir = path if layout in ("imagefolder", "parquet", "arrow") and os.path.isdir(path) else None
    return standardize_columns(dataset, sample_filter, columns, verify_images, base_dir)


__all__ = ["LAYOUTS", "SYNTHETIC_OPTIONS", "detect_layout", "load_ocr_dataset", "split_folders"]
