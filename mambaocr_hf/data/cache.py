# Copyright 2026 The MambaOCR authors. Licensed under the Apache License, Version 2.0.
"""Synthetic samples rendered by a pool of processes, and a pre-rendered cache of them that training reuses.

Rendering a realistic crop takes ~7 ms of one core; a CPU training step of 32 crops takes ~0.2-0.5 s on 2 cores, so a
DataLoader worker rendering on the fly takes a quarter to a whole core from the step. `synthetic_cache` renders a
fixed number of samples once (with every core, before training starts) into an LMDB that the stream then reads like
real crops, with fresh augmentation (`TextAugment`) each time a sample comes round again.
"""

from __future__ import annotations

import hashlib
import io
import json
import multiprocessing
import os
import shutil
import sys
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import numpy as np
from transformers.utils import logging

from ..image_processing_mambaocr import INFERENCE_MAX_WIDTH
from .fonts import cache_root
from .lines import render_long_line
from .synthetic import SyntheticTextGenerator
from .writers import write_dataset

logger = logging.get_logger(__name__)

_GENERATOR: SyntheticTextGenerator | None = None
CACHE_VERSION = 1


def _init_worker(generator: SyntheticTextGenerator) -> None:
    global _GENERATOR
    _GENERATOR = generator


def encode_line(
    generator: SyntheticTextGenerator, index: int, image_format: str, line_chars: tuple[int, int]
) -> tuple[bytes, str]:
    """Sample `index` as a text line: words side by side (`render_long_line`), `line_chars` characters at least (a
    length drawn per sample), at most `INFERENCE_MAX_WIDTH` (2048) px wide."""
    low, high = line_chars
    min_chars = int(np.random.default_rng([generator.seed, index, 11]).integers(low, high + 1))
    image, text = render_long_line(generator, index, min_chars=min_chars, max_width=INFERENCE_MAX_WIDTH)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG" if image_format == "jpg" else "PNG", quality=92)
    return buffer.getvalue(), text


def _encode(index: int, image_format: str, line_chars: tuple[int, int] | None = None) -> tuple[bytes, str]:
    if line_chars is None:
        return _GENERATOR.encode(index, image_format)
    return encode_line(_GENERATOR, index, image_format, line_chars)


def rendered_samples(
    generator: SyntheticTextGenerator,
    image_format: str = "jpg",
    num_workers: int = 1,
    line_chars: tuple[int, int] | None = None,
) -> Iterator[tuple[bytes, str]]:
    """Encoded samples 0, 1, 2, ... of `generator` in order (rendered by `num_workers` processes when > 1); text
    lines instead of words with `line_chars`."""
    indices = iter(range(sys.maxsize))
    if num_workers <= 1:
        _init_worker(generator)
        yield from (_encode(index, image_format, line_chars) for index in indices)
        return
    with multiprocessing.get_context("spawn").Pool(num_workers, _init_worker, (generator,)) as pool:
        yield from pool.imap(partial(_encode, image_format=image_format, line_chars=line_chars), indices, chunksize=8)


def default_cache_dir() -> Path:
    return cache_root() / "synthetic"


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):  # another user's process, or no such number: keep its files
        return True
    return True


def remove_orphaned_partials(folder: str | os.PathLike, pattern: str) -> None:
    """Removes what processes that were killed while writing left behind in `folder`: the files or folders matching
    `pattern` that are named `NAME.PID.SUFFIX` (written under that name, then renamed into place) and whose process
    is gone. A live process's partial stays."""
    for partial_path in Path(folder).glob(pattern):
        pid = partial_path.name.rsplit(".", 2)[-2]
        if pid.isdigit() and not _process_alive(int(pid)):
            if partial_path.is_dir():
                shutil.rmtree(partial_path, ignore_errors=True)
            else:
                partial_path.unlink(missing_ok=True)


def synthetic_cache(
    generator: SyntheticTextGenerator,
    num_samples: int,
    cache_dir: str | os.PathLike | None = None,
    num_workers: int | None = None,
) -> str:
    """The path of an LMDB holding samples `0..num_samples-1` of `generator` (JPEG, quality 95), rendered now by
    `num_workers` processes (default: every core) unless an earlier run left it.

    The folder is named by a hash of what the generator draws from (`describe()`: seed, split, charset, fonts,
    config) and `num_samples`, so a changed generator never reads a stale cache; it is written to a temporary
    folder and renamed when complete, so a killed run leaves no half cache behind.
    """
    if num_samples < 1:
        raise ValueError(f"`num_samples` must be at least 1, got {num_samples}.")
    description = json.dumps(
        {"version": CACHE_VERSION, "num_samples": num_samples, **generator.describe()}, sort_keys=True, default=str
    )
    key = hashlib.sha1(description.encode()).hexdigest()[:16]
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    target = root / f"synthetic_{num_samples}_{key}"
    if (target / "data.mdb").is_file():
        logger.info(f"Reusing the synthetic cache {target} ({num_samples} samples).")
        return str(target)
    root.mkdir(parents=True, exist_ok=True)
    remove_orphaned_partials(root, ".synthetic_*.*.partial")
    partial_dir = root / f".{target.name}.{os.getpid()}.partial"
    shutil.rmtree(partial_dir, ignore_errors=True)
    workers = num_workers or os.cpu_count() or 1
    logger.warning(f"Rendering {num_samples} synthetic samples into {target} with {workers} processes (once).")
    write_dataset(rendered_samples(generator, "jpg", workers), partial_dir, "lmdb", num_samples, image_format="jpg")
    (partial_dir / "synthetic.json").write_text(description, encoding="utf-8")
    try:
        os.replace(partial_dir, target)
    except OSError:  # another process finished the same cache first
        shutil.rmtree(partial_dir, ignore_errors=True)
    return str(target)


def cache_synthetic_sources(
    spec,
    num_samples: int,
    cache_dir: str | os.PathLike | None = None,
    num_workers: int | None = None,
    **generator_kwargs,
) -> list[tuple[str, float]]:
    """A training-source spec (`"synthetic:0.5,/data/real:0.5"`) with each `"synthetic"` source replaced by its
    pre-rendered cache (`synthetic_cache` of `num_samples` samples of `SyntheticTextGenerator(**generator_kwargs)`,
    training split), weights kept."""
    from .mixing import parse_source_spec

    sources = []
    for source, weight in parse_source_spec(spec):
        if source == "synthetic":
            generator = SyntheticTextGenerator(split="train", **generator_kwargs)
            source = synthetic_cache(generator, num_samples, cache_dir, num_workers)
        sources.append((source, weight))
    return sources


__all__ = [
    "cache_synthetic_sources",
    "default_cache_dir",
    "encode_line",
    "remove_orphaned_partials",
    "rendered_samples",
    "synthetic_cache",
]
