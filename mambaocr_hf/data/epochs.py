# Copyright 2026 The MambaOCR authors. Licensed under the Apache License, Version 2.0.
"""The epoch of a training stream, as DataLoader workers see it."""

from __future__ import annotations

import torch


class SharedEpoch:
    """An epoch number that a stream's copies in DataLoader worker processes read as the main process sets it.

    `Trainer` calls the training dataset's `set_epoch` in the main process. With `persistent_workers=True` the
    DataLoader keeps its worker processes, and the copies of the dataset they were given, from one epoch to the next,
    so an epoch kept as a plain attribute never reaches them: they would go on reading epoch 0 (a curriculum replayed
    at every epoch, the same batch order every epoch). Kept in a shared-memory tensor, as `datasets.IterableDataset`
    keeps its own, the value is one for all processes.
    """

    def __init__(self, epoch: int = 0):
        self._value = torch.tensor(int(epoch), dtype=torch.int64).share_memory_()

    def get(self) -> int:
        return int(self._value)

    def set(self, epoch: int) -> None:
        self._value.fill_(int(epoch))
