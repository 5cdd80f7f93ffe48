# Copyright 2026 The MambaOCR authors. Licensed under the Apache License, Version 2.0.
"""Width bucketing for streams: batches of similar widths, so little of each batch is padding."""

from __future__ import annotations

import bisect
import random
from collections.abc import Callable, Iterable, Iterator

import torch

from .epochs import SharedEpoch


class WidthBucketedDataset(torch.utils.data.IterableDataset):
    """Reorders a stream of `{"image", "text"}` rows so that consecutive `batch_size` rows have similar widths.

    Rows go into a pool of `batch_size * buffer_batches`, kept sorted by the width the model will see. Once the pool
    is full, every `batch_size` rows read release one batch: the `batch_size` pooled rows of the widths nearest to a
    randomly drawn pooled row. Every row is still used once; the DataLoader's batches then pad to a width close to
    their own (text crops vary from a few to hundreds of pixels wide, so padding to the widest of a random batch can
    double the work of a training step).

    The output is as steady as the input: one batch per `batch_size` rows read. Sorting a whole buffer and then
    emitting all of its batches at once would make a DataLoader worker go quiet while it refills the buffer, and
    the training step wait on it (with one worker on 2 cores: two of every 16 steps took ~1 s instead of 0.4 s).

    Args:
        dataset: the stream (a `datasets.IterableDataset` or any iterable of rows). Worker and rank sharding stay
            the stream's own.
        batch_size: the per-device batch size of the DataLoader that reads this dataset.
        width_of: maps a row's image to the width the model sees (e.g. from `MambaOCRImageProcessor.target_width`).
        buffer_batches: how many batches' rows the pool holds (more: tighter widths, less randomness).
        seed: which batches are drawn (each DataLoader worker adds its id).
    """

    def __init__(
        self,
        dataset: Iterable[dict],
        batch_size: int,
        width_of: Callable,
        buffer_batches: int = 16,
        seed: int = 0,
    ):
        super().__init__()
        if batch_size < 1 or buffer_batches < 1:
            raise ValueError("`batch_size` and `buffer_batches` must be positive.")
        self.dataset = dataset
        self.batch_size = batch_size
        self.width_of = width_of
        self.buffer_batches = buffer_batches
        self.seed = seed
        self._epoch = SharedEpoch()  # seen by persistent DataLoader workers too

    @property
    def epoch(self) -> int:
        return self._epoch.get()

    def _release(self, pool: list[tuple[int, int, dict]], rng: random.Random) -> Iterator[dict]:
        """Removes from the sorted `pool` the batch of widths nearest to a random pooled row, and yields its rows."""
        size = min(self.batch_size, len(pool))
        centre = rng.randrange(len(pool))
        start = min(max(centre - size // 2, 0), len(pool) - size)
        batch = pool[start : start + size]
        del pool[start : start + size]
        for _, _, row in batch:
            yield row

    def __iter__(self) -> Iterator[dict]:
        worker = torch.utils.data.get_worker_info()
        # a function of (seed, epoch, worker) alone, so a resumed run draws the batches the killed one would have
        rng = random.Random(f"{self.seed}-{self.epoch}-{worker.id if worker is not None else 0}")
        pool: list[tuple[int, int, dict]] = []  # (width, arrival, row), sorted; arrival breaks width ties
        capacity = self.batch_size * self.buffer_batches
        for arrival, row in enumerate(self.dataset):
            bisect.insort(pool, (self.width_of(row["image"]), arrival, row))
            if len(pool) == capacity:
                yield from self._release(pool, rng)
        while pool:
            yield from self._release(pool, rng)

    def set_epoch(self, epoch: int) -> None:
        """Forwarded to the stream (its shuffling) and used for the batch order, as `Trainer` calls it per epoch."""
        self._epoch.set(epoch)
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)


def model_width_of(image_processor) -> Callable:
    """`width_of` for `WidthBucketedDataset`: the width `image_processor` resizes an image to."""

    def width_of(image) -> int:
        width, height = image.size
        return image_processor.target_width(width, height)

    return width_of


__all__ = ["WidthBucketedDataset", "model_width_of"]
