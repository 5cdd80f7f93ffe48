# Copyright 2026 The MambaOCR authors. Licensed under the Apache License, Version 2.0.
"""bf16 inference that reads like float32, for `MambaOCRForCTC`: the CTC classifier runs in float32 under autocast
(`_classify`), and `forward_bf16` runs again in float32 the images whose greedy read hangs on a near-tie. Why, and
what was measured: docs/speed.md."""

from __future__ import annotations

import torch
from transformers.utils import ModelOutput

from .configuration_mambaocr import FP32_MARGIN
from .model_inputs import valid_pixels_from_mask


class MambaOCRBf16InferenceMixin:
    """bf16 inference for a model with a `classifier` whose forward returns `logits` and `frame_lengths`, as
    [`MambaOCRForCTC`] does."""

    def _classify(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """The classifier, in float32 for inference under autocast: bf16 rounds trained logits to steps of 1/16, so
        near-ties would flip, and the layer costs next to nothing. Training keeps autocast's dtype."""
        device_type = hidden_states.device.type
        if self.training or not torch.is_autocast_enabled(device_type):
            return self.classifier(hidden_states)
        weight_dtype = next(self.classifier.parameters()).dtype
        with torch.autocast(device_type, enabled=False):
            return self.classifier(hidden_states.to(weight_dtype))

    @torch.no_grad()
    def forward_bf16(
        self,
        pixel_values: torch.Tensor,
        pixel_mask: torch.Tensor | None = None,
        fp32_margin: float = FP32_MARGIN,
    ) -> ModelOutput:
        r"""
        Inference under bf16 autocast (CPUs with AVX-512 BF16 or AMX, and CUDA) that reads like float32: images with a
        valid frame whose two best logits are less than `fp32_margin` apart are run again in float32 and take those
        logits.

        Args:
            pixel_values (`torch.FloatTensor` of shape `(batch_size, num_channels, 32, width)`):
                As for `forward`.
            pixel_mask (`torch.LongTensor` of shape `(batch_size, width)`, *optional*):
                As for `forward`.
            fp32_margin (`float`, *optional*, defaults to 0.05):
                Logit gap below which a frame counts as a near-tie; `0` turns the re-run off.

        Returns:
            [`MambaOCRCTCOutput`] with float32 `logits`, `frame_lengths` and `fp32_rerun` (no loss).
        """
        if fp32_margin < 0:
            raise ValueError(f"`fp32_margin` must be >= 0, got {fp32_margin}.")
        device_type = pixel_values.device.type
        with torch.autocast(device_type, dtype=torch.bfloat16):
            outputs = self(pixel_values=pixel_values, pixel_mask=pixel_mask, return_dict=True)
        logits, frame_lengths = outputs.logits.float(), outputs.frame_lengths
        near_tie = torch.zeros(len(logits), dtype=torch.bool, device=logits.device)
        if fp32_margin > 0 and logits.shape[-1] > 1:
            best_two = logits.topk(2, dim=-1).values
            valid = torch.arange(logits.shape[1], device=logits.device)[None, :] < frame_lengths[:, None]
            near_tie = ((best_two[..., 0] - best_two[..., 1] < fp32_margin) & valid).any(dim=-1)
        if bool(near_tie.any()):
            rows = near_tie.nonzero().flatten()
            # only as wide as the widest of them (padding never changes an image's read)
            stride = self.config.frame_stride
            width = valid_pixels_from_mask(pixel_values, pixel_mask)[rows].max().item()
            width = min(pixel_values.shape[-1], -(-width // stride) * stride)
            with torch.autocast(device_type, enabled=False):
                again = self(
                    pixel_values=pixel_values[rows, ..., :width],
                    pixel_mask=None if pixel_mask is None else pixel_mask[rows, ..., :width],
                    return_dict=True,
                )
            logits[rows, : again.logits.shape[1]] = again.logits.float()
        return type(outputs)(logits=logits, frame_lengths=frame_lengths, fp32_rerun=near_tie)


__all__ = ["MambaOCRBf16InferenceMixin"]
