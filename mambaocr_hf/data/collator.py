# Copyright 2026 The MambaOCR authors. Licensed under the Apache License, Version 2.0.
"""Batches `{"image", "text"}` rows into model inputs, dropping the samples a training step cannot use."""

from __future__ import annotations

import io

from PIL import Image, UnidentifiedImageError
from transformers.image_processing_utils import BatchFeature
from transformers.utils import logging

from ..image_processing_mambaocr import check_pad_to_multiple_of, to_pil_image
from .filters import SampleFilter, SkipSample, SkipStats, report_skip_counts, widen_for_ctc

NO_AUGMENT_KEY = "no_augment"  # a row with this key set to True is never augmented (a curriculum's easy words)

logger = logging.get_logger(__name__)

EMPTY_BATCH_POLICIES = ("raise", "reuse_last")


def _load_image(image, index: int) -> Image.Image:
    """A row's image as PIL (`{"bytes", "path"}` dicts from undecoded datasets are read too)."""
    if isinstance(image, dict):
        if image.get("bytes"):
            image = io.BytesIO(image["bytes"])
            with Image.open(image) as opened:
                opened.load()
                return to_pil_image(opened.copy(), index)
        image = image.get("path")
    if isinstance(image, (bytes, bytearray)):
        with Image.open(io.BytesIO(image)) as opened:
            opened.load()
            return to_pil_image(opened.copy(), index)
    return to_pil_image(image, index)


class OCRDataCollator:
    """`processor(images=..., text=..., return_tensors="pt")` over a list of `{"image", "text"}` rows, so a
    `DataLoader` or `Trainer` gets `pixel_values`, `pixel_mask` and `labels` (padded with -100).

    One bad sample never costs a training run: samples whose image cannot be read, whose label is empty, or whose
    label the tokenizer's unknown-character policy drops are left out of the batch, counted and logged. A crop too
    narrow for CTC to align its label (`ctc_frames_needed(label) > ctc_frames(width, height)`, an infinite loss
    otherwise) is stretched to the width it needs (`widen_for_ctc`), or left out when that width is past
    `max_width`. A batch left with no sample at all raises a `ValueError` naming the reasons
    (`empty_batch="raise"`, the default), or is replaced by the last good batch (`empty_batch="reuse_last"`, with a
    warning), for streams where a whole bad batch can happen and must not stop training.

    Args:
        processor (`MambaOCRProcessor`): the model's processor.
        check_ctc (`bool`, defaults to `True`): drop samples whose label is too long for CTC.
        unknown_char_policy (`str`, *optional*): overrides the tokenizer's (`"error"`, `"drop"` the sample, `"map"`).
        empty_batch (`str`, defaults to `"raise"`): what happens when every sample of a batch is bad.
        augment (callable, *optional*): applied to each image before it is checked and batched (`TextAugment` for
            training; leave it `None` for evaluation).
        widen (`bool`, defaults to `True`): stretch crops too narrow for their label's CTC frames instead of
            dropping them.
        pad_to_multiple_of (`int`, *optional*): pad each batch's width to a multiple of this many pixels (a multiple
            of the image processor's `width_multiple`). Fewer distinct shapes train faster on a CPU (oneDNN builds
            kernels per shape); the training scripts use 32.

    Example:

    ```python
    >>> from PIL import Image
    >>> from mambaocr_hf import MambaOCRProcessor
    >>> from mambaocr_hf.data import OCRDataCollator

    >>> collator = OCRDataCollator(MambaOCRProcessor.from_defaults())
    >>> batch = collator([{"image": Image.new("RGB", (64, 32)), "text": "ok"}, {"image": None, "text": "bad"}])
    >>> batch["pixel_values"].shape[0], collator.num_dropped
    (1, 1)
    ```
    """

    def __init__(
        self,
        processor,
        check_ctc: bool = True,
        unknown_char_policy: str | None = None,
        empty_batch: str = "raise",
        augment=None,
        widen: bool = True,
        pad_to_multiple_of: int | None = None,
    ):
        if empty_batch not in EMPTY_BATCH_POLICIES:
            raise ValueError(f"`empty_batch` must be one of {list(EMPTY_BATCH_POLICIES)}, got {empty_batch!r}.")
        self.processor = processor
        self.empty_batch = empty_batch
        self.augment = augment
        check_pad_to_multiple_of(pad_to_multiple_of, processor.image_processor.width_multiple)
        self.pad_to_multiple_of = pad_to_multiple_of
        # aspect ratios are the loaders' business: the collator keeps any image the model can take
        self.sample_filter = SampleFilter.from_processor(
            processor,
            unknown_char_policy=unknown_char_policy,
            check_ctc=check_ctc,
            widen=widen,
            min_aspect_ratio=0.0,
            max_aspect_ratio=float("inf"),
            name="OCRDataCollator",
        )
        self.sample_filter.stats = SkipStats("OCRDataCollator")  # this collator's own counts
        self._last_good: tuple[list, list] | None = None

    @property
    def dropped(self) -> dict[str, int]:
        """Samples this collator dropped so far (in this process), by reason."""
        return dict(self.sample_filter.skip_stats.counts)

    @property
    def num_dropped(self) -> int:
        return self.sample_filter.skip_stats.skipped

    def __call__(self, features: list[dict]) -> BatchFeature:
        images, texts, reasons = [], [], []
        for index, feature in enumerate(features):
            where = f"batch sample {index}"
            try:
                try:
                    image = _load_image(feature.get("image"), index)
                except FileNotFoundError as error:
                    raise SkipSample("missing_image", f"{where} ({error})") from None
                except Image.DecompressionBombError as error:
                    raise SkipSample(
                        "unreadable_image", f"{where} (too many pixels to decode safely: {error})"
                    ) from None
                except (ValueError, TypeError, OSError, UnidentifiedImageError) as error:
                    raise SkipSample("unreadable_image", f"{where} ({error})") from None
                label, change = self.sample_filter.label_and_change(feature.get("text"), where)
                if self.augment is not None and feature.get(NO_AUGMENT_KEY) is not True:
                    image = self.augment(image)
                self.sample_filter.geometry(label, image.size, where)
                if self.sample_filter.check_ctc and self.sample_filter.widen:
                    f = self.sample_filter
                    image = widen_for_ctc(image, label, f.image_height, f.frame_stride, f.max_width, f.min_width)
            except SkipSample as error:
                self.sample_filter.skip(error)
                reasons.append(error.reason)
                continue
            self.sample_filter.keep(change)
            images.append(image)
            texts.append(label)
        report_skip_counts()  # in a DataLoader worker: the training process's report sees this batch's counts
        if not images:
            if self.empty_batch == "reuse_last" and self._last_good is not None:
                logger.warning(
                    f"All {len(features)} samples of a batch were bad ({sorted(set(reasons))}); reusing the last "
                    "good batch so training goes on."
                )
                images, texts = self._last_good
            else:
                raise ValueError(
                    f"All {len(features)} samples of the batch are bad ({sorted(set(reasons))}; see the warnings "
                    "above): check the data source, or use OCRDataCollator(..., empty_batch='reuse_last')."
                )
        self._last_good = (images, texts)
        return self.processor(
            images=images, text=texts, return_tensors="pt", pad_to_multiple_of=self.pad_to_multiple_of
        )


__all__ = ["NO_AUGMENT_KEY", "OCRDataCollator"]
