# Copyright 2026 The MambaOCR authors. Licensed under the Apache License, Version 2.0.
"""What a MambaOCR model takes in, and the loss it trains with:

* `check_pixel_values`: `pixel_values` that are not a `[batch, channels, 32·k, width]` tensor are refused with a clear
  error that names the processor;
* `valid_pixels_from_mask` and `frame_lengths_from_pixels`: each image's true width (from `pixel_mask`) and its
  number of frames;
* `compute_ctc_loss`: the CTC loss in float32 with per-image lengths, after `check_labels` refused labels that cannot
  be trained on (ids outside the vocabulary, the blank, targets longer than their images allow).
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from .configuration_mambaocr import MambaOCRConfig
from .selective_scan import is_tracing


def frame_lengths_from_pixels(valid_pixels: torch.Tensor, frame_stride: int) -> torch.LongTensor:
    """Valid frames per image for the given valid pixel widths (the backbone's width reduction is `frame_stride`)."""
    return torch.div(valid_pixels + frame_stride - 1, frame_stride, rounding_mode="floor").long()


def check_pixel_values(pixel_values: torch.Tensor, config: MambaOCRConfig) -> None:
    if not isinstance(pixel_values, torch.Tensor):
        raise TypeError(
            f"`pixel_values` must be a torch.Tensor [batch, {config.num_channels}, {config.image_height}, width]; got "
            f"{type(pixel_values).__name__}. Use MambaOCRProcessor / MambaOCRImageProcessor to turn images into model "
            "inputs."
        )
    if pixel_values.dim() != 4 or pixel_values.shape[1] != config.num_channels:
        raise ValueError(
            f"`pixel_values` must be [batch, {config.num_channels}, height, width], got "
            f"{tuple(pixel_values.shape)}. Use MambaOCRImageProcessor to prepare images."
        )
    if pixel_values.shape[0] == 0 or pixel_values.shape[-1] == 0:
        raise ValueError(f"`pixel_values` is empty: shape {tuple(pixel_values.shape)}.")
    if pixel_values.shape[2] % 32:
        raise ValueError(
            f"`pixel_values` height must be a multiple of 32 (the model is built for {config.image_height}), "
            f"got {pixel_values.shape[2]}. Use MambaOCRImageProcessor to resize."
        )


def valid_pixels_from_mask(pixel_values: torch.Tensor, pixel_mask: torch.Tensor | None) -> torch.Tensor:
    """Each image's true width `[batch]`: its number of valid columns in `pixel_mask` (all columns without one)."""
    batch, _, _, width = pixel_values.shape
    if pixel_mask is None:
        return torch.full((batch,), width, dtype=torch.long, device=pixel_values.device)
    if pixel_mask.dim() == 3:  # [batch, height, width], as DETR-style processors give it
        pixel_mask = pixel_mask.amax(dim=1)
    if pixel_mask.shape != (batch, width):
        raise ValueError(
            f"`pixel_mask` must be [batch, width] or [batch, height, width] matching pixel_values {tuple(pixel_values.shape)}, "
            f"got {tuple(pixel_mask.shape)}."
        )
    # valid columns are a prefix: the processor pads on the right
    valid = pixel_mask.to(pixel_values.device).long().sum(dim=-1)
    if not is_tracing() and bool((valid == 0).any()):
        empty = (valid == 0).nonzero().flatten().tolist()
        raise ValueError(
            f"Images {empty} of the batch have no valid pixels (pixel_mask is all zero): zero-width input."
        )
    return valid


def compute_ctc_loss(
    logits: torch.Tensor, frame_lengths: torch.LongTensor, labels: torch.Tensor, config: MambaOCRConfig
) -> torch.Tensor:
    """CTC loss in float32 with per-image input lengths; `labels` padded with -100."""
    if labels.dim() != 2 or labels.shape[0] != logits.shape[0]:
        raise ValueError(
            f"`labels` must be [batch, target_length] with batch {logits.shape[0]}, got {tuple(labels.shape)}."
        )
    labels = labels.to(logits.device)
    label_mask = labels >= 0
    target_lengths = label_mask.sum(-1)
    flat_targets = labels.masked_select(label_mask)
    if not is_tracing():
        check_labels(labels, label_mask, target_lengths, frame_lengths, config)
    log_probs = F.log_softmax(logits, dim=-1, dtype=torch.float32).transpose(0, 1)  # [frames, batch, vocab]
    with torch.backends.cudnn.flags(enabled=False):
        return F.ctc_loss(
            log_probs,
            flat_targets,
            frame_lengths,
            target_lengths,
            blank=config.blank_id,
            reduction=config.ctc_loss_reduction,
            zero_infinity=config.ctc_zero_infinity,
        )


def check_labels(
    labels: torch.Tensor,
    label_mask: torch.Tensor,
    target_lengths: torch.Tensor,
    frame_lengths: torch.LongTensor,
    config: MambaOCRConfig,
) -> None:
    valid_ids = labels[label_mask]
    if valid_ids.numel() and int(valid_ids.max()) >= config.vocab_size:
        raise ValueError(
            f"Label id {int(valid_ids.max())} is outside the vocabulary (vocab_size={config.vocab_size}): "
            "the labels were made with a different tokenizer than this model's."
        )
    if bool((valid_ids == config.blank_id).any()):
        raise ValueError(f"Labels contain the CTC blank id {config.blank_id}; pad labels with -100 instead.")
    # CTC needs one frame per character plus a blank between repeated characters
    repeats = ((labels[:, 1:] == labels[:, :-1]) & label_mask[:, 1:]).sum(-1)
    needed = target_lengths + repeats
    too_long = (needed > frame_lengths.to(needed.device)).nonzero().flatten().tolist()
    if too_long:
        index = too_long[0]
        raise ValueError(
            f"Labels of samples {too_long} are longer than their images allow: sample {index} needs "
            f"{int(needed[index])} frames but its image gives {int(frame_lengths[index])} "
            f"({config.frame_stride} pixels per frame). Use wider images, or drop such samples "
            "(the training data pipeline filters them)."
        )


__all__ = [
    "check_labels",
    "check_pixel_values",
    "compute_ctc_loss",
    "frame_lengths_from_pixels",
    "valid_pixels_from_mask",
]
