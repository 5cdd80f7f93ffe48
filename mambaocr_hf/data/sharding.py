# Copyright 2026 The MambaOCR authors. Licensed under the Apache License, Version 2.0.
"""Shards for streaming sources: the units that `datasets` shares out between DataLoader workers and DDP ranks.

Each source lists its shards (index ranges, byte ranges of an index file, or sample-index residues) in `gen_kwargs`;
`datasets` gives each rank and worker a disjoint subset, so no sample is read twice.
"""

from __future__ import annotations

import functools
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


def line_break(path: str | os.PathLike) -> bytes:
    """The line break of a text file: `b"\\r"` for old-Mac files (a carriage return and no line feed in the first
    64 KiB), else `b"\\n"` (Unix and Windows files; a Windows file's `\\r` is stripped from each line)."""
    stat = os.stat(path)
    return _line_break(os.path.abspath(path), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=256)
def _line_break(path: str, size: int, mtime_ns: int) -> bytes:  # once per file version, not once per shard
    with open(path, "rb") as handle:
        head = handle.read(1 << 16)
    return b"\r" if b"\r" in head and b"\n" not in head else b"\n"


def count_lines(path: str | os.PathLike) -> int:
    """Lines in a text file (a last line without a line break counts), read in 1 MiB blocks."""
    separator = line_break(path)
    count, last = 0, separator
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            count += block.count(separator)
            last = block[-1:]
    return count + (last != separator)


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
    separator = line_break(path)
    with open(path, "rb") as handle:
        readline = handle.readline if separator == b"\n" else _line_reader(handle, separator)
        if start > 0:
            handle.seek(start - 1)
            readline()  # the rest of the line holding byte start - 1 belongs to the previous range
        while (offset := handle.tell()) < end:
            line = readline()
            if not line:
                break
            line = line.rstrip(b"\r\n")
            if offset == 0:
                line = line.removeprefix(b"\xef\xbb\xbf")  # a UTF-8 byte-order mark
            try:
                yield offset, line.decode("utf-8")
            except UnicodeDecodeError:
                yield offset, line


def _line_reader(handle, separator: bytes):
    """`handle.readline` for another line break than `\\n` (a binary file's `readline` knows only that one): each
    call returns the next line with its break and leaves the file position just after it."""

    def readline() -> bytes:
        start, parts = handle.tell(), []
        while block := handle.read(4096):
            found = block.find(separator)
            if found >= 0:
                parts.append(block[: found + 1])
                handle.seek(start + sum(map(len, parts)))
                break
            parts.append(block)
        return b"".join(parts)

    return readline


def split_path(raw: str | bytes) -> tuple[str, str]:
    """A listed image path (as `read_lines` gave it) as `(path to open, path to show and store)`: a path that is not
    UTF-8 opens by its file-system bytes (`os.fsdecode`) and shows with replacement marks (Arrow stores UTF-8 only)."""
    if isinstance(raw, str):
        return raw, raw
    return os.fsdecode(raw), raw.decode("utf-8", errors="replace")


__all__ = [
    "MAX_SHARDS",
    "byte_ranges",
    "count_lines",
    "index_ranges",
    "line_break",
    "num_shards_for",
    "read_lines",
    "split_path",
]
