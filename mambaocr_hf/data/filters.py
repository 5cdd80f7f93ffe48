# Copyright 2026 The MambaOCR authors. Licensed under the Apache License, Version 2.0.
"""Sample checks shared by every source and the collator: bad data is skipped and counted, never fatal (unless the
strict policy asks for an error)."""

from __future__ import annotations

import atexit
import contextlib
import io
import json
import logging as std_logging
import math
import multiprocessing.util
import os
import time
import unicodedata
import weakref
from collections import Counter
from dataclasses import dataclass, field

from PIL import Image, UnidentifiedImageError
from transformers.utils import logging

from ..image_processing_mambaocr import INFERENCE_MAX_WIDTH, target_width
from ..tokenization_mambaocr import check_unknown_char_policy

logger = logging.get_logger(__name__)

BAD_SAMPLE_POLICIES = ("skip", "raise")
SKIP_REASONS = {
    "missing_image": "the image file does not exist",
    "unreadable_image": "the image cannot be decoded (empty, truncated or not an image)",
    "empty_label": "the label is empty",
    "undecodable_label": "the label is not valid UTF-8 (re-save the labels as UTF-8)",
    "unknown_characters": "the label has characters outside the charset",
    "label_emptied_by_charset": "no character of the label is in the charset",
    "label_too_long": "the label is longer than max_label_length",
    "extreme_aspect_ratio": "the image's aspect ratio is extreme",
    "label_too_long_for_ctc": "the label needs more CTC frames than the image gives (raise max_width for long labels)",
}
# kept samples whose label was changed on the way: counted and logged like skips, but the sample trains
CHANGE_REASONS = {
    "characters_removed": (
        "characters outside the charset were removed from the label (unknown_char_policy='map'), so the sample trains "
        "on the shortened label; add them to the charset, or use unknown_char_policy='drop' to skip such samples"
    ),
}
_SUMMARY_EVERY = 1000


class BadSampleError(ValueError):
    """A sample that a strict policy refuses (the message names the sample and the reason)."""


class SkipSample(Exception):
    """Raised inside the checks for a sample to skip; `reason` is a key of `SKIP_REASONS`."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{detail}: {SKIP_REASONS[reason]}")
        self.reason = reason
        self.detail = detail


class SkipStats:
    """Counts the samples a source skipped, by reason, and logs them: the first of each reason with details, then a
    summary every 1000 skips and when the process exits. Kept samples whose label was changed (`CHANGE_REASONS`)
    are counted and logged the same way, in `changed`."""

    def __init__(self, name: str):
        self.name = name
        self.counts: Counter[str] = Counter()
        self.changed: Counter[str] = Counter()
        self.kept = 0
        _ALL_STATS.add(self)

    @property
    def skipped(self) -> int:
        """Samples skipped so far, all reasons together."""
        return sum(self.counts.values())

    def record(self, reason: str, detail: str) -> None:
        """Count a skipped sample (`reason` is a key of `SKIP_REASONS`)."""
        self._count(self.counts, reason, f"skipping {detail}: {SKIP_REASONS[reason]}", "skipped")
        if self.skipped % _SUMMARY_EVERY == 0:
            logger.warning(self.summary())

    def record_change(self, reason: str, detail: str) -> None:
        """Count a kept sample whose label was changed (`reason` is a key of `CHANGE_REASONS`)."""
        self._count(self.changed, reason, f"{detail}: {CHANGE_REASONS[reason]}", "changed")

    def _count(self, counter: Counter[str], reason: str, message: str, verb: str) -> None:
        """Count one sample; the first of its reason is logged with its details, the later ones only counted."""
        counter[reason] += 1
        _report_soon()
        if counter[reason] == 1:
            logger.warning(
                f"[{self.name}] {message}. Later samples {verb} for this reason are counted, not logged one by one."
            )

    def summary(self) -> str:
        reasons = ", ".join(f"{count} {reason}" for reason, count in sorted(self.counts.items()))
        total = self.kept + self.skipped
        text = f"[{self.name}] skipped {self.skipped} of {total} samples read so far ({reasons or 'none'})"
        if self.changed:
            changes = ", ".join(f"{count} {reason}" for reason, count in sorted(self.changed.items()))
            text += f"; kept with a changed label: {changes}"
        return text + "."


_STATS: dict[str, SkipStats] = {}
# every counter of this process (sources' and collators' own), for the report to the training process
_ALL_STATS: weakref.WeakSet[SkipStats] = weakref.WeakSet()


# Counts of other processes. DataLoader workers read and check the samples, so their counts live there; when the
# training process opens a report folder (`start_skip_report`, done by the trainer's `SkipReportCallback`), each
# other process that counts (its workers, forked or spawned, inherit the folder through the environment) writes its
# totals to `<folder>/<pid>.json`: at most once a second while counting, after each batch the collator makes, and
# when it exits.
SKIP_REPORT_ENV = "MAMBAOCR_SKIP_REPORT_DIR"
_REPORT = {"owner": None, "last": 0.0, "finalizer_pid": None}


def _clear_after_fork() -> None:
    """A forked process counts what it reads itself, from zero (its copies of the parent's counts are the parent's
    to report)."""
    for stats in list(_ALL_STATS):
        stats.counts.clear()
        stats.changed.clear()
        stats.kept = 0
    _REPORT["last"], _REPORT["finalizer_pid"] = 0.0, None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_clear_after_fork)


def start_skip_report(folder: str) -> None:
    """Make this process the one that collects the counts: the processes it starts (DataLoader workers) write theirs
    to `folder`, read back by `collect_skip_counts`."""
    os.makedirs(folder, exist_ok=True)
    os.environ[SKIP_REPORT_ENV] = folder
    _REPORT["owner"] = os.getpid()


def stop_skip_report(folder: str) -> None:
    """Close the report opened by `start_skip_report(folder)` (processes started later no longer write to it)."""
    if os.environ.get(SKIP_REPORT_ENV) == folder:
        del os.environ[SKIP_REPORT_ENV]
        _REPORT["owner"] = None


def _snapshot() -> dict:
    """This process's counts, by source: `{name: {"skipped": {...}, "changed": {...}, "kept": n}}`."""
    merged: dict[str, dict] = {}
    for stats in list(_ALL_STATS):
        if not (stats.kept or stats.counts or stats.changed):
            continue
        entry = merged.setdefault(stats.name, {"skipped": Counter(), "changed": Counter(), "kept": 0})
        entry["skipped"].update(stats.counts)
        entry["changed"].update(stats.changed)
        entry["kept"] += stats.kept
    return {
        name: {**entry, "skipped": dict(entry["skipped"]), "changed": dict(entry["changed"])}
        for name, entry in merged.items()
    }


def report_skip_counts(force: bool = True) -> None:
    """Write this process's counts for the training process (a no-op there, and where no report is open); without
    `force`, at most once a second."""
    folder = os.environ.get(SKIP_REPORT_ENV)
    pid = os.getpid()
    if not folder or pid == _REPORT["owner"]:
        return
    now = time.monotonic()
    if not force and now - _REPORT["last"] < 1.0:
        return
    _REPORT["last"] = now
    if not os.path.isdir(folder):  # the training process closed it
        return
    if _REPORT["finalizer_pid"] != pid:  # a worker's last counts are written when it exits
        _REPORT["finalizer_pid"] = pid
        multiprocessing.util.Finalize(None, report_skip_counts, exitpriority=10)
    path = os.path.join(folder, f"{pid}.json")
    try:
        with open(path + ".tmp", "w", encoding="utf-8") as handle:
            json.dump(_snapshot(), handle)
        os.replace(path + ".tmp", path)  # the reader never sees half a file
    except OSError as error:  # the report must never stop the data
        logger.debug(f"Could not write the skip counts to {path}: {error}")


def _report_soon() -> None:
    if SKIP_REPORT_ENV in os.environ:
        report_skip_counts(force=False)


def collect_skip_counts(folder: str | None = None) -> dict:
    """The counts of this process and of the processes that reported to `folder` (default: the open report), added
    up by source: `{name: {"skipped": {reason: n}, "changed": {reason: n}, "kept": n}}`."""
    folder = folder or os.environ.get(SKIP_REPORT_ENV)
    reports = [_snapshot()]
    if folder and os.path.isdir(folder):
        for name in sorted(os.listdir(folder)):
            if name.endswith(".json") and name != f"{os.getpid()}.json":
                try:
                    with open(os.path.join(folder, name), encoding="utf-8") as handle:
                        reports.append(json.load(handle))
                except (OSError, ValueError):
                    continue
    totals: dict[str, dict] = {}
    for report in reports:
        for source, entry in report.items():
            total = totals.setdefault(source, {"skipped": Counter(), "changed": Counter(), "kept": 0})
            total["skipped"].update(entry.get("skipped", {}))
            total["changed"].update(entry.get("changed", {}))
            total["kept"] += int(entry.get("kept", 0))
    return {
        source: {"skipped": dict(entry["skipped"]), "changed": dict(entry["changed"]), "kept": entry["kept"]}
        for source, entry in sorted(totals.items())
    }


def get_skip_stats(name: str) -> SkipStats:
    """The process-wide skip counter of a source (created on first use)."""
    if name not in _STATS:
        _STATS[name] = SkipStats(name)
    return _STATS[name]


def skip_counts(name: str | None = None) -> dict:
    """Samples skipped in this process: `{reason: count}` for the source `name`, or `{source: {reason: count}}`.

    Counts live in the process that read the samples (a DataLoader worker counts its own); `collect_skip_counts`
    adds up those that workers reported to a training run (`SkipReportCallback`).
    """
    if name is not None:
        return dict(_STATS[name].counts) if name in _STATS else {}
    return {key: dict(stats.counts) for key, stats in _STATS.items()}


def label_change_counts(name: str | None = None) -> dict:
    """Kept samples whose label was changed in this process (`CHANGE_REASONS`, e.g. characters outside the charset
    removed under the `"map"` policy): `{reason: count}` for the source `name`, or `{source: {reason: count}}`."""
    if name is not None:
        return dict(_STATS[name].changed) if name in _STATS else {}
    return {key: dict(stats.changed) for key, stats in _STATS.items() if stats.changed}


def reset_skip_counts() -> None:
    """Forget all counts (tests, or a new epoch's report)."""
    _STATS.clear()


@atexit.register
def _log_summaries() -> None:
    for stats in _STATS.values():
        if stats.skipped or stats.changed:
            logger.warning(stats.summary())


@contextlib.contextmanager
def _quiet_tokenizer():
    """The tokenizer warns once per distinct removed text; the data layer counts instead, so silence it here."""
    tokenizer_logger = std_logging.getLogger("mambaocr_hf.tokenization_mambaocr")
    previous = tokenizer_logger.disabled
    tokenizer_logger.disabled = True
    try:
        yield
    finally:
        tokenizer_logger.disabled = previous


class LabelNormalizer:
    """Applies a tokenizer's charset to raw labels, with the data layer's meaning of the unknown-character policy.

    `"error"` raises on a label with characters outside the charset, `"drop"` drops the whole *sample* (the tokenizer's
    `"drop"` removes characters, but a label that no longer says what the image shows teaches the model to ignore
    text, so the data layer drops the sample instead), and `"map"` folds the label as the tokenizer does (accents,
    case, `char_map`) and removes what still does not fit: the label the model is trained on.

    Picklable and cheap to copy into DataLoader workers: the folding tokenizer is rebuilt lazily from the charset.
    """

    def __init__(
        self,
        charset: str,
        unknown_char_policy: str = "map",
        char_map: dict[str, str] | None = None,
        blank_token: str = "<blank>",
    ):
        check_unknown_char_policy(unknown_char_policy)
        self.charset = charset
        self.unknown_char_policy = unknown_char_policy
        self.char_map = dict(char_map or {})
        self.blank_token = blank_token
        self._charset_set = set(charset)
        self._tokenizer = None

    @classmethod
    def from_tokenizer(cls, tokenizer, unknown_char_policy: str | None = None) -> LabelNormalizer:
        """The normalizer of a `MambaOCRTokenizer` (its charset, `char_map` and, unless given, its policy)."""
        return cls(
            tokenizer.charset,
            unknown_char_policy or tokenizer.unknown_char_policy,
            getattr(tokenizer, "char_map", None),
            getattr(tokenizer, "blank_token", "<blank>"),
        )

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_tokenizer": None}

    def __eq__(self, other) -> bool:
        return isinstance(other, LabelNormalizer) and self.__getstate__() == other.__getstate__()

    @property
    def folding_tokenizer(self):
        """A `"map"`-policy tokenizer on the same charset (built on first use)."""
        if self._tokenizer is None:
            from ..tokenization_mambaocr import MambaOCRTokenizer

            self._tokenizer = MambaOCRTokenizer(
                charset=self.charset, unknown_char_policy="map", char_map=self.char_map, blank_token=self.blank_token
            )
        return self._tokenizer

    def unknown_characters(self, text: str) -> list[str]:
        """Characters of `text` outside the charset (sorted, each once)."""
        return sorted({char for char in text if char not in self._charset_set})

    def fold(self, text: str) -> str:
        """`text` folded into the charset: what the tokenizer's `"map"` policy trains on."""
        if not self.unknown_characters(text):
            return text
        with _quiet_tokenizer():
            return self.folding_tokenizer.normalize_text(text)

    def removed_characters(self, text: str) -> list[str]:
        """Characters of `text` that the `"map"` policy removes (sorted, each once): those left outside the charset
        once accents, case and `char_map` are folded (`"é"` folds to `"e"` and is not removed, `"€"` is)."""
        if not self.unknown_characters(text):
            return []
        tokenizer = self.folding_tokenizer
        if not text.isascii():  # as `normalize_text`: "e" + combining acute is one "é"
            text = unicodedata.normalize("NFC", text)
        return sorted({char for char in text if tokenizer.unknown_characters(tokenizer._fold(char))})

    def __call__(self, text: str) -> str | None:
        """The label for `text`, or `None` when the `"drop"` policy drops the sample.

        Raises a `ValueError` under the `"error"` policy when `text` has characters outside the charset.
        """
        unknown = self.unknown_characters(text)
        if not unknown:
            return text
        if self.unknown_char_policy == "error":
            raise ValueError(
                f"Label {text!r} has characters outside the charset: {unknown}. Use a charset that contains them, "
                "or unknown_char_policy='map' (fold them) / 'drop' (skip such samples)."
            )
        if self.unknown_char_policy == "drop":
            return None
        return self.fold(text)


def ctc_frames(
    width: int,
    height: int,
    image_height: int = 32,
    min_width: int = 16,
    max_width: int = INFERENCE_MAX_WIDTH,
    frame_stride: int = 4,
) -> int:
    """Frames the model gives an image of `width`×`height`: its width once resized to `image_height` (aspect kept,
    clamped to `[min_width, max_width]`, rounded up to a multiple of `frame_stride`; the image processor's
    `target_width`) over `frame_stride`."""
    return target_width(width, height, image_height, min_width, max_width, frame_stride) // frame_stride


def ctc_frames_needed(label: str) -> int:
    """Frames CTC needs to emit `label`: one per character plus a blank between each pair of equal neighbours."""
    return len(label) + sum(a == b for a, b in zip(label, label[1:]))


def widen_for_ctc(
    image: Image.Image,
    label: str,
    image_height: int = 32,
    frame_stride: int = 4,
    max_width: int = INFERENCE_MAX_WIDTH,
    min_width: int = 16,
) -> Image.Image:
    """`image` stretched horizontally so that, resized to `image_height`, it gives the frames CTC needs to emit
    `label` (`ctc_frames_needed`); unchanged when it already does, and never wider than `max_width` at that height.
    """
    needed = ctc_frames_needed(label)
    width, height = image.size
    if ctc_frames(width, height, image_height, min_width, max_width, frame_stride) >= needed:
        return image
    target = min(needed * frame_stride, max_width)  # the width wanted at `image_height`
    new_width = max(width, math.ceil((target + 0.5) * height / image_height))
    return image.resize((new_width, height), Image.Resampling.BICUBIC)


def read_image_bytes(path: str) -> bytes | None:
    """The bytes of an image file: `None` when there is no file at `path` (a "missing_image" skip), `b""` when it
    cannot be read (an "unreadable_image" skip)."""
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return None
    except OSError:
        return b""


def image_size(data: bytes, verify: bool = True) -> tuple[int, int]:
    """`(width, height)` of encoded image bytes, as the image will be seen (EXIF rotation applied).

    Raises a `ValueError` when the bytes are not a readable, non-empty image; with `verify` the pixels are decoded
    too, which catches truncated files.
    """
    if not data:
        raise ValueError("the file is empty (0 bytes)")
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
            if verify:
                image.load()
            if image.getexif().get(Image.ExifTags.Base.Orientation, 1) in (5, 6, 7, 8):
                width, height = height, width
    except Image.DecompressionBombError as error:
        raise ValueError(
            f"too many pixels to decode safely ({error} Raise PIL.Image.MAX_IMAGE_PIXELS to read it)"
        ) from error
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise ValueError(f"not a readable image ({error})") from error
    if width == 0 or height == 0:
        raise ValueError(f"the image is empty ({width}x{height})")
    return width, height


@dataclass
class SampleFilter:
    """Checks one sample's label and image size; used by every source and by `OCRDataCollator`.

    Args:
        normalizer: applies the tokenizer's charset and unknown-character policy; `None` keeps labels as they are.
        image_height, min_width, max_width, frame_stride: the image processor's resizing (for the CTC check).
        check_ctc: skip samples whose label needs more frames than the resized image gives (`ctc_frames_needed`
            > `ctc_frames`): CTC cannot align them and their loss would be infinite.
        widen: keep such a sample instead when stretching it to the width its label needs stays within
            `max_width` (`OCRDataCollator` stretches it, `widen_for_ctc`): narrow crops of long words are common in
            real data, and dropping them biases training toward short words.
        min_aspect_ratio, max_aspect_ratio: skip images whose width / height is outside this range (very tall crops
            are usually vertical text; very long ones are squeezed past recognition). `max_aspect_ratio=None` means
            twice the ratio the processor starts squeezing at (`2 * max_width / image_height`).
        max_label_length: skip labels longer than this (`None`: no limit).
        bad_sample_policy: `"skip"` (count and go on) or `"raise"` (a `BadSampleError` at the first bad sample).
        name: the source, in logs and `skip_counts`.
    """

    normalizer: LabelNormalizer | None = None
    image_height: int = 32
    min_width: int = 16
    max_width: int = INFERENCE_MAX_WIDTH
    frame_stride: int = 4
    check_ctc: bool = True
    widen: bool = True
    min_aspect_ratio: float = 0.1
    max_aspect_ratio: float | None = None
    max_label_length: int | None = None
    bad_sample_policy: str = "skip"
    name: str = "data"
    stats: SkipStats | None = field(default=None, repr=False, compare=False)

    def __post_init__(self):
        if self.bad_sample_policy not in BAD_SAMPLE_POLICIES:
            raise ValueError(
                f"`bad_sample_policy` must be one of {list(BAD_SAMPLE_POLICIES)}, got {self.bad_sample_policy!r}."
            )
        if self.max_aspect_ratio is None:
            self.max_aspect_ratio = 2 * self.max_width / self.image_height

    @classmethod
    def from_processor(cls, processor=None, tokenizer=None, image_processor=None, **kwargs) -> SampleFilter:
        """A filter matching a `MambaOCRProcessor` (or its tokenizer / image processor given separately).

        `unknown_char_policy` in `kwargs` overrides the tokenizer's policy.
        """
        tokenizer = tokenizer or getattr(processor, "tokenizer", None)
        image_processor = image_processor or getattr(processor, "image_processor", None)
        policy = kwargs.pop("unknown_char_policy", None)
        if tokenizer is not None:
            kwargs.setdefault("normalizer", LabelNormalizer.from_tokenizer(tokenizer, policy))
        elif policy is not None:
            raise ValueError("`unknown_char_policy` needs a tokenizer (or processor) to know the charset.")
        if image_processor is not None:
            kwargs.setdefault("image_height", image_processor.image_height)
            kwargs.setdefault("min_width", image_processor.min_width)
            kwargs.setdefault("max_width", image_processor.max_width)
            kwargs.setdefault("frame_stride", image_processor.width_multiple)
        return cls(**kwargs)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "stats": None}

    @property
    def skip_stats(self) -> SkipStats:
        """The counter this filter reports to (the process-wide one of its `name` unless one was set)."""
        if self.stats is None:
            self.stats = get_skip_stats(self.name)
        return self.stats

    def label(self, text, where: str = "sample") -> str:
        """The cleaned label of a sample (raises `SkipSample` for a bad one).

        Labels read from files come as `bytes` (or as `str` decoded with `surrogateescape`): they are decoded as
        UTF-8 strictly, never with replacement characters that would silently train a wrong label. A label whose
        characters outside the charset are removed (`"map"` policy) is counted as `characters_removed`.
        """
        label, change = self.label_and_change(text, where)
        if change is not None:
            self.skip_stats.record_change(*change)
        return label

    def label_and_change(self, text, where: str = "sample") -> tuple[str, tuple[str, str] | None]:
        """`label`, without counting the change it made: the cleaned label and `(reason, detail)` when the label was
        changed (a key of `CHANGE_REASONS`), for the caller to count once the sample is kept (`keep`)."""
        if isinstance(text, (bytes, bytearray, memoryview)):
            try:
                text = bytes(text).decode("utf-8")
            except UnicodeDecodeError as error:
                raise SkipSample("undecodable_label", f"{where} (label bytes {bytes(text)[:40]!r}: {error})") from None
        elif isinstance(text, str) and not text.isascii():
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:  # lone surrogates: bytes that were not UTF-8, kept by surrogateescape
                shown = text.encode("utf-8", "surrogateescape")[:40]
                raise SkipSample("undecodable_label", f"{where} (label bytes {shown!r})") from None
        if text is None or not isinstance(text, str):
            raise SkipSample("empty_label", f"{where} (label {text!r})")
        text = text.strip()  # surrounding whitespace (a trailing "\r", a stray space) is never part of the text
        if not text:
            raise SkipSample("empty_label", where)
        change = None
        if self.normalizer is not None:
            try:
                label = self.normalizer(text)
            except ValueError as error:  # the "error" policy: say which sample, or a large file cannot be fixed
                raise ValueError(f"{where}: {error}") from None
            if label is None:
                unknown = self.normalizer.unknown_characters(text)
                raise SkipSample("unknown_characters", f"{where} (label {text!r}, characters {unknown})")
            if not label:
                raise SkipSample("label_emptied_by_charset", f"{where} (label {text!r})")
            if label != text and self.normalizer.unknown_char_policy == "map":
                removed = self.normalizer.removed_characters(text)
                if removed:
                    detail = f"{where}: label {text!r} trains as {label!r} (removed {removed})"
                    change = ("characters_removed", detail)
            text = label
        if self.max_label_length is not None and len(text) > self.max_label_length:
            raise SkipSample("label_too_long", f"{where} (label {text!r}, {len(text)} > {self.max_label_length})")
        return text, change

    def geometry(self, label: str, size: tuple[int, int], where: str = "sample") -> None:
        """Check the image size against the label (raises `SkipSample` for a bad one)."""
        width, height = size
        ratio = width / height
        if not self.min_aspect_ratio <= ratio <= self.max_aspect_ratio:
            raise SkipSample(
                "extreme_aspect_ratio",
                f"{where} ({width}x{height}, ratio {ratio:.3g} outside "
                f"[{self.min_aspect_ratio:.3g}, {self.max_aspect_ratio:.3g}])",
            )
        if self.check_ctc:
            frames = ctc_frames(width, height, self.image_height, self.min_width, self.max_width, self.frame_stride)
            needed = ctc_frames_needed(label)
            if needed > frames and not (self.widen and needed <= self.max_width // self.frame_stride):
                widest = self.max_width // self.frame_stride
                limit = f", and max_width={self.max_width} at most {widest}" if self.widen and needed > widest else ""
                raise SkipSample(
                    "label_too_long_for_ctc",
                    f"{where} (label {label!r} needs {needed} frames, a {width}x{height} image gives {frames}{limit})",
                )

    def skip(self, error: SkipSample) -> None:
        """Count a bad sample, or raise under the strict policy."""
        if self.bad_sample_policy == "raise":
            raise BadSampleError(f"[{self.name}] bad sample: {error} (bad_sample_policy='raise').") from None
        self.skip_stats.record(error.reason, error.detail)

    def keep(self, change: tuple[str, str] | None = None) -> None:
        """Count a good sample (for the "skipped N of M" summaries), and the change made to its label if any."""
        self.skip_stats.kept += 1
        if change is not None:
            self.skip_stats.record_change(*change)

    def check_decoded(self, text, size: tuple[int, int], where: str) -> str | None:
        """The label of a sample whose image size is known, or `None` when it is skipped."""
        try:
            label, change = self.label_and_change(text, where)
            self.geometry(label, size, where)
        except SkipSample as error:
            self.skip(error)
            return None
        self.keep(change)
        return label

    def check_encoded(self, text, data: bytes | None, where: str, verify: bool = True) -> str | None:
        """The label of a sample given as encoded image bytes, or `None` when it is skipped.

        `data=None` means the image file is missing.
        """
        try:
            label, change = self.label_and_change(text, where)
            if data is None:
                raise SkipSample("missing_image", where)
            try:
                size = image_size(data, verify)
            except ValueError as error:
                raise SkipSample("unreadable_image", f"{where} ({error})") from None
            self.geometry(label, size, where)
        except SkipSample as error:
            self.skip(error)
            return None
        self.keep(change)
        return label


__all__ = [
    "BadSampleError",
    "CHANGE_REASONS",
    "SKIP_REASONS",
    "SkipSample",
    "LabelNormalizer",
    "SampleFilter",
    "SkipStats",
    "ctc_frames",
    "ctc_frames_needed",
    "collect_skip_counts",
    "image_size",
    "label_change_counts",
    "report_skip_counts",
    "reset_skip_counts",
    "skip_counts",
    "start_skip_report",
    "stop_skip_report",
    "widen_for_ctc",
]
