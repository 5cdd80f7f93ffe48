# Copyright 2026 The MambaOCR authors. Licensed under the Apache License, Version 2.0.
"""LMDB in the layout of clovaai's deep-text-recognition-benchmark (`create_lmdb_dataset.py`), which most
scene-text releases use: `num-samples`, then `image-%09d` (encoded image bytes) and `label-%09d` (UTF-8) for the
1-based indices 1..num-samples."""

from __future__ import annotations

import io
import os
import threading
from collections.abc import Iterable
from pathlib import Path

import lmdb
from PIL import Image
from tqdm.auto import tqdm
from transformers.utils import logging

from .filters import SampleFilter, image_size

logger = logging.get_logger(__name__)

NUM_SAMPLES_KEY = b"num-samples"
_ENVIRONMENTS: dict[tuple[int, str], lmdb.Environment] = {}


def image_key(index: int) -> bytes:
    return b"image-%09d" % index


def label_key(index: int) -> bytes:
    return b"label-%09d" % index


def is_lmdb(path: str | os.PathLike) -> bool:
    return os.path.isfile(os.path.join(path, "data.mdb"))


def find_lmdb_roots(path: str | os.PathLike) -> list[str]:
    """The LMDB folders at or under `path` (a release such as `data_lmdb_release/training` holds several)."""
    path = os.fspath(path)
    if is_lmdb(path):
        return [path]
    return sorted(os.fspath(found.parent) for found in Path(path).rglob("data.mdb"))


_OPEN_LOCK = threading.Lock()


def _forget(root: str) -> None:
    """Close the cached environments of `root`, including those a forked process inherited from its parent (LMDB
    refuses to open a path twice in one process)."""
    for key in [key for key in _ENVIRONMENTS if key[1] == root]:
        _ENVIRONMENTS.pop(key).close()


class IncompleteLMDBError(ValueError):
    """An LMDB whose `data.mdb` cannot be read safely: shorter than its own header says (an interrupted copy or
    download), or not an LMDB at all."""


def _check_complete(root: str, env: lmdb.Environment) -> None:
    """Raise `IncompleteLMDBError` when `data.mdb` is shorter than the pages its header says it holds.

    LMDB maps the file into memory and trusts its header: reading a page past the end of a truncated file kills the
    process with SIGBUS (exit 135; in a DataLoader worker PyTorch blames shared memory) instead of raising.
    """
    data_file = os.path.join(root, "data.mdb")
    needed = (env.info()["last_pgno"] + 1) * env.stat()["psize"]
    size = os.path.getsize(data_file)
    if size < needed:
        raise IncompleteLMDBError(
            f"{data_file} is truncated: {size:,} bytes, but its header says the database holds {needed:,} bytes "
            "(an interrupted copy or download leaves this). Copy or download it again; reading it would crash the "
            "process (SIGBUS)."
        )


def open_lmdb(root: str) -> lmdb.Environment:
    """A read-only environment, opened once per process (an environment must not be used across a fork).

    Raises `IncompleteLMDBError` for a truncated or unreadable `data.mdb`.
    """
    root = os.path.abspath(root)
    key = (os.getpid(), root)
    with _OPEN_LOCK:  # threads of one process (a threaded reader) would otherwise open it twice, which LMDB refuses
        if key not in _ENVIRONMENTS:
            _forget(root)
            try:
                env = lmdb.open(
                    root, readonly=True, lock=False, readahead=False, meminit=False, max_readers=64, subdir=True
                )
            except lmdb.Error as error:  # e.g. a data.mdb cut shorter than its two header pages, or not an LMDB
                raise IncompleteLMDBError(
                    f"{os.path.join(root, 'data.mdb')} cannot be opened as an LMDB ({error}): it is incomplete or "
                    "not an LMDB. Copy or download it again."
                ) from None
            try:
                _check_complete(root, env)
            except BaseException:
                env.close()
                raise
            _ENVIRONMENTS[key] = env
        return _ENVIRONMENTS[key]


def lmdb_num_samples(root: str) -> int:
    with open_lmdb(root).begin(write=False) as txn:
        value = txn.get(NUM_SAMPLES_KEY)
    if value is None:
        raise ValueError(f"{root} is an LMDB without a 'num-samples' key: not in the clovaai layout.")
    try:
        count = int(value.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        count = -1
    if count < 0:
        raise ValueError(
            f"{root}: its 'num-samples' value {value[:40]!r} is not a count of samples (a non-negative integer "
            "written as ASCII digits). Rewrite it (mambaocr_hf.data.write_lmdb writes it), or put the number of "
            "samples there."
        )
    return count


def lmdb_examples(shards: list[tuple[str, int, int]], sample_filter: SampleFilter, verify_images: bool = True):
    """`datasets` generator: the samples of each `(root, first, stop)` index range (1-based, `stop` excluded)."""
    for root, first, stop in shards:
        with open_lmdb(root).begin(write=False) as txn:
            for index in range(first, stop):
                label = txn.get(label_key(index))
                data = txn.get(image_key(index))
                where = f"{root} sample {index}"
                # the label bytes as stored: the filter decodes them strictly (skips a label that is not UTF-8)
                text = sample_filter.check_encoded(label, data, where, verify_images)
                if text is not None:
                    yield {"image": {"bytes": data, "path": None}, "text": text}


def encode_image(image, image_format: str = "png") -> bytes:
    """Encoded bytes of a row's image: bytes and `{"bytes", "path"}` pass through, paths are read, PIL images and
    arrays are encoded (`"png"`, or `"jpg"` at quality 95)."""
    if isinstance(image, (bytes, bytearray, memoryview)):
        return bytes(image)
    if isinstance(image, dict):
        if image.get("bytes"):
            return image["bytes"]
        image = image.get("path")
    if isinstance(image, (str, os.PathLike)):
        with open(image, "rb") as handle:
            return handle.read()
    if not isinstance(image, Image.Image):
        from ..image_processing_mambaocr import to_pil_image

        image = to_pil_image(image)
    buffer = io.BytesIO()
    if image_format.lower() in ("jpg", "jpeg"):
        image.convert("RGB").save(buffer, format="JPEG", quality=95)
    else:
        image.save(buffer, format="PNG")
    return buffer.getvalue()


def _put_all(env: lmdb.Environment, items: list[tuple[bytes, bytes]]) -> lmdb.Environment:
    """Write `items` in one transaction, doubling the map size until they fit."""
    while True:
        try:
            with env.begin(write=True) as txn:
                for key, value in items:
                    txn.put(key, value)
            return env
        except lmdb.MapFullError:
            env.set_mapsize(env.info()["map_size"] * 2)


def write_lmdb(
    rows: Iterable[dict],
    output_dir: str | os.PathLike,
    image_format: str = "png",
    commit_every: int = 1000,
    overwrite: bool = False,
    total: int | None = None,
    show_progress: bool = True,
) -> int:
    """Write `{"image", "text"}` rows (any source, e.g. `load_ocr_dataset(...)`) as an LMDB that clovaai's
    `LmdbDataset` reads as-is.

    Encoded images are stored unchanged; PIL images and arrays are encoded as `image_format`. Rows whose image
    cannot be read or whose label is empty are skipped (and counted in a warning): the clovaai reader has no
    such checks.

    Args:
        rows: the samples.
        output_dir: the LMDB folder (created; `data.mdb` inside).
        image_format: `"png"` or `"jpg"`, for images that are not already encoded.
        commit_every: samples per write transaction.
        overwrite: replace an LMDB already at `output_dir`.
        total: number of rows, for the progress bar.
        show_progress: show a tqdm progress bar.

    Returns:
        The number of samples written (`num-samples`).
    """
    output_dir = os.fspath(output_dir)
    _forget(os.path.abspath(output_dir))
    if is_lmdb(output_dir):
        if not overwrite:
            raise FileExistsError(f"{output_dir} already holds an LMDB; pass overwrite=True to replace it.")
        for name in ("data.mdb", "lock.mdb"):
            if os.path.exists(os.path.join(output_dir, name)):
                os.remove(os.path.join(output_dir, name))
    os.makedirs(output_dir, exist_ok=True)
    env = lmdb.open(output_dir, map_size=64 << 20, subdir=True, lock=False, meminit=True, sync=True)
    count, skipped, pending = 0, 0, []
    try:
        for row in tqdm(rows, total=total, desc=f"Writing {output_dir}", unit="img", disable=not show_progress):
            try:
                data = encode_image(row["image"], image_format)
                image_size(data)
            except (OSError, ValueError, TypeError) as error:
                skipped += 1
                logger.debug(f"write_lmdb: skipping a row whose image cannot be read ({error}).")
                continue
            text = row.get("text")
            if not isinstance(text, str) or not text.strip():
                skipped += 1
                continue
            count += 1
            pending += [(image_key(count), data), (label_key(count), text.encode("utf-8"))]
            if count % commit_every == 0:
                env = _put_all(env, pending + [(NUM_SAMPLES_KEY, str(count).encode("ascii"))])
                pending = []
        env = _put_all(env, pending + [(NUM_SAMPLES_KEY, str(count).encode("ascii"))])
    finally:
        env.close()
    if skipped:
        logger.warning(f"write_lmdb: skipped {skipped} rows with an unreadable image or an empty label.")
    return count


__all__ = [
    "IncompleteLMDBError",
    "encode_image",
    "find_lmdb_roots",
    "is_lmdb",
    "lmdb_examples",
    "lmdb_num_samples",
    "write_lmdb",
]
