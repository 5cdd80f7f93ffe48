# Copyright 2026 The MambaOCR authors. Licensed under the Apache License, Version 2.0.
"""Width bucketing for streams: batches of similar widths, so little of each batch is padding."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Iterator

import torch


class WidthBucketedDataset(torch.utils.data.IterableDataset):
    """Reorders a stream of `{"image", "text"}` rows so that consecutive `batch_size` rows have similar widths.

    Rows are read into a buffer of `batch_size * buffer_batches`, sorted by the width the model will see, cut into
    batches, and the batches are yielded in random order. Every row is still used once; the DataLoader's batches then
    pad to a width close to their own (text crops vary from a few to hundreds of pixels wide, so padding to the
    widest of a random batch can double the work of a training step).

    Args:
        dataset: the stream (a `datasets.IterableDataset` or any iterable of rows). Worker and rank sharding stay
            the stream's own.
        batch_size: the per-device batch size of the DataLoader that reads this dataset.
        width_of: maps a row's image to the width the model sees (e.g. from `MambaOCRImageProcessor.target_width`).
        buffer_batches: how many batches are sorted together (more: tighter widths, less randomness).
        seed: order of the batches within a buffer (each DataLoader worker adds its id).
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

    def _flush(self, buffer: list[dict], rng: random.Random) -> Iterator[dict]:
        buffer.sort(key=lambda row: self.width_of(row["image"]))
        batches = [buffer[i : i + self.batch_size] for i in range(0, len(buffer), self.batch_size)]
        rng.shuffle(batches)
        for batch in batches:
            yield from batch

    def __iter__(self) -> Iterator[dict]:
        worker = torch.utils.data.get_worker_info()
        rng = random.Random(self.seed + (worker.id if worker is not None else 0))
        buffer: list[dict] = []
        capacity = self.batch_size * self.buffer_batches
        for row in self.dataset:
            buffer.append(row)
            if len(buffer) == capacity:
                yield from self._flush(buffer, rng)
                buffer = []
        if buffer:
            yield from self._flush(buffer, rng)

    def set_epoch(self, epoch: int) -> None:
        """Forwarded to the stream (its shuffling) and used for the batch order, as `Trainer` calls it per epoch."""
        self.seed += epoch
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)


def model_width_of(image_processor) -> Callable:
    """`width_of` for `WidthBucketedDataset`: the width `image_processor` resizes an image to."""

    def width_of(image) -> int:
        width, height = image.size
        return image_processor.target_width(width, height)

    return width_of


__all__ = ["WidthBucketedDataset", "model_width_of"]
