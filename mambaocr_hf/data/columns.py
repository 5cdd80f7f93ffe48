# Copyright 2026 The MambaOCR authors. Licensed under the Apache License, Version 2.0.
"""Sources that the `datasets` library loads itself (Hub datasets, parquet files, imagefolders with
`metadata.jsonl`, `save_to_disk` folders): their columns are mapped to `{"image", "text"}` and bad rows dropped."""

from __future__ import annotations

import os

import datasets
from datasets import Dataset, Features, IterableDataset, Value
from datasets import Image as ImageFeature

from .filters import SampleFilter
from .lmdb_io import encode_image
from .sharding import num_shards_for

# what every source yields
FEATURES = Features({"image": ImageFeature(), "text": Value("string")})
# column names that Hub and parquet text-recognition datasets use, in order of preference
IMAGE_COLUMNS = ("image", "img", "jpg", "jpeg", "png", "webp", "picture", "pixel_values")
TEXT_COLUMNS = ("text", "label", "labels", "word", "words", "transcription", "ground_truth", "gt", "caption", "txt")


def resolve_columns(features_or_names, columns: dict[str, str] | None = None) -> tuple[str, str]:
    """The `(image column, text column)` of a dataset.

    Args:
        features_or_names: the dataset's `Features`, or its column names.
        columns: an explicit mapping `{"image": <column>, "text": <column>}` (either key may be left out).

    An `Image` feature is the image column unless `columns` says otherwise; otherwise the first of `IMAGE_COLUMNS`
    and `TEXT_COLUMNS` present is used. Raises a `ValueError` naming the columns when one cannot be found.
    """
    columns = dict(columns or {})
    unknown_keys = set(columns) - {"image", "text"}
    if unknown_keys:
        raise ValueError(f"`columns` maps 'image' and 'text' to column names; got keys {sorted(unknown_keys)}.")
    features = features_or_names if isinstance(features_or_names, dict) else None
    names = list(features_or_names)
    for key, column in columns.items():
        if column not in names:
            raise ValueError(f"`columns` maps {key!r} to {column!r}, but the dataset has columns {names}.")
    image = columns.get("image")
    if image is None and features is not None:
        image = next((name for name in names if isinstance(features[name], ImageFeature)), None)
    image = image or next((name for name in IMAGE_COLUMNS if name in names), None)
    text = columns.get("text") or next((name for name in TEXT_COLUMNS if name in names and name != image), None)
    if image is None or text is None:
        missing = "an image" if image is None else "a text"
        raise ValueError(
            f"Cannot find {missing} column among {names}; pass columns={{'image': ..., 'text': ...}} "
            "(e.g. columns={'image': 'jpg', 'text': 'label'})."
        )
    return image, text


def _read_image(image, base_dir: str | None) -> tuple[bytes | None, str | None]:
    """Encoded bytes and path of a raw image value (`{"bytes", "path"}`, bytes, a path, or a PIL image)."""
    if isinstance(image, dict):
        data, path = image.get("bytes"), image.get("path")
    elif isinstance(image, (str, os.PathLike)):
        data, path = None, os.fspath(image)
    elif isinstance(image, (bytes, bytearray)):
        data, path = bytes(image), None
    elif image is None:
        return None, None
    else:
        return encode_image(image), None
    if data is None and path is not None:
        full = path if os.path.isabs(path) or base_dir is None else os.path.join(base_dir, path)
        try:
            with open(full, "rb") as handle:
                data = handle.read()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return None, path
        except OSError:
            return b"", path
    return data, path


def clean_batch(
    batch: dict,
    image_column: str,
    text_column: str,
    sample_filter: SampleFilter,
    verify_images: bool = True,
    label_names: list[str] | None = None,
    base_dir: str | None = None,
) -> dict:
    """Batched `map` function: `{"image": [...], "text": [...]}` with the good samples of `batch` only."""
    output = {"image": [], "text": []}
    for position, (image, text) in enumerate(zip(batch[image_column], batch[text_column])):
        if label_names is not None and isinstance(text, int):
            text = label_names[text] if 0 <= text < len(label_names) else None
        data, path = _read_image(image, base_dir)
        where = path or f"row {position} of a batch"
        label = sample_filter.check_encoded(text, data, where, verify_images)
        if label is not None:
            output["image"].append({"bytes": data, "path": path})
            output["text"].append(label)
    return output


def standardize_columns(
    dataset: Dataset | IterableDataset,
    sample_filter: SampleFilter,
    columns: dict[str, str] | None = None,
    verify_images: bool = True,
    base_dir: str | None = None,
) -> Dataset | IterableDataset:
    """Map a dataset's columns to `{"image", "text"}` and drop the bad samples (see `resolve_columns`)."""
    features = dataset.features
    if features is None:  # a streaming dataset whose features are only known once read
        first = next(iter(dataset.take(1)), None)
        if first is None:
            raise ValueError("The dataset is empty.")
        names = list(first)
    else:
        names = features
    image_column, text_column = resolve_columns(names, columns)
    dataset = dataset.select_columns([image_column, text_column])
    label_names = None
    if features is not None:
        if isinstance(features[image_column], ImageFeature):
            dataset = dataset.cast_column(image_column, ImageFeature(decode=False))
        if isinstance(features[text_column], datasets.ClassLabel):
            label_names = features[text_column].names
    fn_kwargs = {
        "image_column": image_column,
        "text_column": text_column,
        "sample_filter": sample_filter,
        "verify_images": verify_images,
        "label_names": label_names,
        "base_dir": base_dir,
    }
    kwargs = {"batched": True, "batch_size": 64, "fn_kwargs": fn_kwargs, "remove_columns": [image_column, text_column]}
    if isinstance(dataset, IterableDataset):
        # a streaming map with `features` would take its output as already decoded: cast afterwards instead
        return dataset.map(clean_batch, **kwargs).cast(FEATURES)
    return dataset.map(clean_batch, features=FEATURES, **kwargs)


def _offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE or datasets.config.HF_HUB_OFFLINE)


def load_with_datasets(
    layout: str,
    path: str,
    split: str | None,
    streaming: bool,
    num_shards: int | None,
    cache_dir: str | None,
    options: dict,
) -> Dataset | IterableDataset:
    """Load a Hub name, parquet files, an imagefolder or a `save_to_disk` folder with `datasets` (columns as they
    are; `standardize_columns` maps them). A Hub dataset that cannot be loaded raises an `OSError` saying why,
    offline mode included."""
    split = split or "train"
    if layout == "arrow":
        if options:
            raise TypeError(f"Unexpected options for a save_to_disk folder: {sorted(options)}.")
        dataset = datasets.load_from_disk(path)
        if isinstance(dataset, datasets.DatasetDict):
            if split not in dataset:
                raise ValueError(f"{path} has the splits {list(dataset)}, not {split!r}.")
            dataset = dataset[split]
        if streaming:
            dataset = dataset.to_iterable_dataset(num_shards=num_shards_for(len(dataset), num_shards or 64))
        return dataset
    if layout == "hub":
        try:
            return datasets.load_dataset(path, split=split, streaming=streaming, cache_dir=cache_dir, **options)
        except Exception as error:
            hint = (
                "HF_HUB_OFFLINE is set, so nothing can be downloaded: download the dataset where there is network "
                "(e.g. `hf download --repo-type dataset NAME --local-dir DIR`) and pass DIR instead"
                if _offline()
                else "check the name, the split and your network access"
            )
            raise OSError(
                f"{path!r} is not a local path, and loading it as a Hub dataset (split {split!r}) failed: {hint}. "
                f"Cause: {type(error).__name__}: {error}"
            ) from error
    if layout == "parquet":
        location = {"data_files": {split: path}} if os.path.isfile(path) else {"data_dir": path}
        return datasets.load_dataset(
            "parquet", split=split, streaming=streaming, cache_dir=cache_dir, **location, **options
        )
    return datasets.load_dataset(
        "imagefolder", data_dir=path, split=split, streaming=streaming, cache_dir=cache_dir, **options
    )


__all__ = [
    "FEATURES",
    "IMAGE_COLUMNS",
    "TEXT_COLUMNS",
    "clean_batch",
    "load_with_datasets",
    "resolve_columns",
    "standardize_columns",
]
