# Copyright 2026 The MambaOCR authors. Licensed under the Apache License, Version 2.0.
"""Mixing sources with weights (the training script's `--dataset "synthetic:0.7,/data/real:0.3"`) and splitting a
dataset across DDP ranks."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence

import datasets
import torch
from datasets import Dataset, IterableDataset
from datasets.distributed import split_dataset_by_node
from transformers.utils import logging

from .collator import NO_AUGMENT_KEY
from .epochs import SharedEpoch
from .sources import SYNTHETIC_OPTIONS, detect_layout, load_ocr_dataset

logger = logging.get_logger(__name__)


def parse_source_spec(spec: str | Sequence) -> list[tuple[str, float]]:
    """`"synthetic:0.7,/data/real:0.3"` → `[("synthetic", 0.7), ("/data/real", 0.3)]`.

    A source without a weight gets 1. Also accepts a list of sources or of `(source, weight)` pairs.
    """
    if isinstance(spec, str):
        items = [item.strip() for item in spec.split(",") if item.strip()]
    else:
        items = list(spec)
    parsed = []
    for item in items:
        if isinstance(item, (tuple, list)):
            source, weight = item
        else:
            source, _, weight = item.rpartition(":")
            try:
                weight = float(weight)
            except ValueError:  # no weight: the colon (if any) is part of the source, e.g. C:\data
                source, weight = item, 1.0
            if not source:
                source, weight = item, 1.0
        if float(weight) <= 0:
            raise ValueError(f"Source weights must be positive, got {weight} for {source!r}.")
        parsed.append((str(source), float(weight)))
    if not parsed:
        raise ValueError(f"No source in {spec!r}.")
    return parsed


def interleave_sources(
    spec: str | Sequence,
    split: str | None = None,
    streaming: bool = True,
    seed: int = 0,
    stopping_strategy: str = "all_exhausted",
    **options,
) -> IterableDataset | Dataset:
    """Several sources mixed with weights, e.g. `"synthetic:0.7,/data/real:0.3"` (the `--dataset` argument).

    Each source is loaded by `load_ocr_dataset` with `options` (synthetic-only options go to the synthetic source,
    loader options to Hub/parquet/imagefolder sources); then `datasets.interleave_datasets` draws from source `i`
    with probability `weight_i / sum(weights)`. With `"all_exhausted"` (default) smaller sources are repeated until
    every source has been seen once (an unbounded synthetic source makes the mix unbounded).
    """
    sources = parse_source_spec(spec)
    known = set(load_ocr_dataset.__kwdefaults__)
    common = {key: value for key, value in options.items() if key in known}
    synthetic = {"seed": seed, **{key: value for key, value in options.items() if key in SYNTHETIC_OPTIONS}}
    loader = {key: value for key, value in options.items() if key not in known and key not in SYNTHETIC_OPTIONS}
    loaded = []
    for source, _ in sources:
        layout = common.get("layout") or detect_layout(source)
        extra = synthetic if layout == "synthetic" else loader if layout in ("hub", "parquet", "imagefolder") else {}
        loaded.append(load_ocr_dataset(source, split, streaming, **common, **extra))
    if len(loaded) == 1:
        return loaded[0]
    total = sum(weight for _, weight in sources)
    return datasets.interleave_datasets(
        loaded, probabilities=[weight / total for _, weight in sources], seed=seed, stopping_strategy=stopping_strategy
    )


class CurriculumStream(torch.utils.data.IterableDataset):
    """Every row of the finite stream `first`, then the rows of `then`: a curriculum for CTC training from scratch.

    A randomly initialised CTC recogniser sits on a plateau (it predicts blanks only) until it finds the alignment of
    frames to characters; it leaves it hundreds of steps sooner on clean, tight synthetic words (e.g. the synthetic
    source with `num_samples` and the light `SyntheticConfig` of scripts/configs/synthetic_light.json) than on
    realistic and augmented real crops.

    Both streams keep their own shuffling and sharding (DataLoader workers and ranks each read their part of `first`,
    then of `then`): joining them with `datasets.concatenate_datasets` instead would mix the curriculum into the
    whole run once shuffled, and splits a stream of thousands of shards shard by shard (minutes at start-up).
    `set_epoch` reaches both, as `Trainer` calls it, and `first` is read in the first epoch only: when `then` is
    finite and runs out (a synthetic cache, a folder), later epochs are `then` alone. Replaying the easy words at each
    epoch set the recipe back (run 3 in docs/accuracy.md: held-out accuracy fell 4-6 points after each replay). The
    rows of `first` are marked `NO_AUGMENT_KEY` (the training collator's augmentation leaves them as they are)
    unless `augment_first`.
    """

    def __init__(self, first: Iterable[dict], then: Iterable[dict], augment_first: bool = False):
        super().__init__()
        self.first = first
        self.then = then
        self.augment_first = augment_first
        self._epoch = SharedEpoch()  # seen by persistent DataLoader workers too

    @property
    def epoch(self) -> int:
        return self._epoch.get()

    def __iter__(self) -> Iterator[dict]:
        if self.epoch == 0:
            for row in self.first:
                # augmenting the easy words defeats them: with TextAugment on, the curriculum's 800 steps left the
                # loss at 3.80, without it at 3.20 (docs/training.md)
                yield row if self.augment_first else {**row, NO_AUGMENT_KEY: True}
        yield from self.then

    def set_epoch(self, epoch: int) -> None:
        self._epoch.set(epoch)
        for stream in (self.first, self.then):
            if hasattr(stream, "set_epoch"):
                stream.set_epoch(epoch)


def split_for_rank(
    dataset: IterableDataset | Dataset, rank: int | None = None, world_size: int | None = None
) -> IterableDataset | Dataset:
    """This process's part of `dataset` under DDP (`datasets.distributed.split_dataset_by_node`).

    `rank` and `world_size` default to `torch.distributed`'s when it is initialised, else to the `RANK` and
    `WORLD_SIZE` environment variables; with one process the dataset is returned as is. A streaming dataset whose
    number of shards is a multiple of `world_size` gives each rank whole shards; otherwise every rank reads all
    samples and keeps one in `world_size` (correct but slower; a warning says so).
    """
    if rank is None or world_size is None:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            rank, world_size = dist.get_rank(), dist.get_world_size()
        else:
            rank, world_size = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    if world_size <= 1:
        return dataset
    if not 0 <= rank < world_size:
        raise ValueError(f"Need 0 <= rank < world_size, got rank={rank}, world_size={world_size}.")
    if isinstance(dataset, IterableDataset) and dataset.num_shards % world_size:
        logger.warning(
            f"The dataset has {dataset.num_shards} shards, not a multiple of world_size={world_size}: every rank "
            "reads every sample and keeps 1 in world_size. Pass num_shards= a multiple of the world size."
        )
    return split_dataset_by_node(dataset, rank=rank, world_size=world_size)


__all__ = ["CurriculumStream", "interleave_sources", "parse_source_spec", "split_for_rank"]
