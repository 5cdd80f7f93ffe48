# Copyright 2026 The MambaOCR authors. Licensed under the Apache License, Version 2.0.
"""Shards for streaming sources: the units that `datasets` shares out between DataLoader workers and DDP ranks.

Each source lists its shards (index ranges, byte ranges of an index file, or sample-index residues) in `gen_kwargs`;
`datasets` gives each rank and worker a disjoint subset, so no sample is read twice.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

# 2^6 * 3^2 * 5 * 7: divisible by every usual world size (1-10, 12, 14, 16, 32, 64, ...), so `split_dataset_by_node`
# can hand whole shards to each rank instead of making every rank read everything and keep 1 sample in world_size.
MAX_SHARDS = 20160


def num_shards_for(num_items: int, max_shards: int | None = None) -> int:
    """How many shards `num_items` items get: one per item up to `max_shards` (default `MAX_SHARDS`)."""
    return max(1, min(num_items, max_shards or MAX_SHARDS))


def index_ranges(start: int, stop: int, num_shards: int) -> list[tuple[int, int]]:
    """`[start, stop)` cut into `num_shards` contiguous ranges of near-equal size (empty ones dropped)."""
    total = stop - start
    bounds = [start + total * i // num_shards for i in range(num_shards + 1)]
    return [(low, high) for low, high in zip(bounds, bounds[1:]) if high > low]


def count_lines(path: str | os.PathLike) -> int:
    """Lines in a text file (a last line without a newline counts), read in 1 MiB blocks."""
    count, last = 0, b"\n"
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            count += block.count(b"\n")
            last = block[-1:]
    return count + (last != b"\n")


def byte_ranges(path: str | os.PathLike, num_shards: int) -> list[tuple[int, int]]:
    """A text file's bytes cut into `num_shards` ranges; a line belongs to the range holding its first byte."""
    size = os.path.getsize(path)
    bounds = [size * i // num_shards for i in range(num_shards + 1)]
    return [(low, high) for low, high in zip(bounds, bounds[1:]) if high > low]


def read_lines(path: str | os.PathLike, start: int, end: int) -> Iterator[tuple[int, str | bytes]]:
    """`(byte offset, line)` of each line whose first byte lies in `[start, end)`, without its line break.

    A line that is not valid UTF-8 comes as `bytes`, for the caller to skip or read as file-system bytes: decoding
    it with replacement characters would turn its label into another one without a word.
    """
    with open(path, "rb") as handle:
        if start > 0:
            handle.seek(start - 1)
            handle.readline()  # the rest of the line holding byte start - 1 belongs to the previous range
        while (offset := handle.tell()) < end:
            line = handle.readline()
            if not line:
                break
            line = line.rstrip(b"\r\n")
            if offset == 0:
                line = line.removeprefix(b"\xef\xbb\xbf")  # a UTF-8 byte-order mark
            try:
                yield offset, line.decode("utf-8")
            except UnicodeDecodeError:
                yield offset, line


def split_path(raw: str | bytes) -> tuple[str, str]:
    """A listed image path (as `read_lines` gave it) as `(path to open, path to show and store)`: a path that is not
    UTF-8 opens by its file-system bytes (`os.fsdecode`) and shows with replacement marks (Arrow stores UTF-8 only)."""
    if isinstance(raw, str):
        return raw, raw
    return os.fsdecode(raw), raw.decode("utf-8", errors="replace")


__all__ = ["MAX_SHARDS", "byte_ranges", "count_lines", "index_ranges", "num_shards_for", "read_lines", "split_path"]
