# Copyright 2026 The MambaOCR authors. Licensed under the Apache License, Version 2.0.
"""Processor for MambaOCR: the image processor and the CTC tokenizer behind one object."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from transformers.image_processing_utils import BatchFeature
from transformers.processing_utils import ProcessorMixin
from transformers.utils import ModelOutput


@dataclass
class MambaOCRDecoderOutput(ModelOutput):
    """
    Decoded text with confidences, from [`MambaOCRProcessor.batch_decode`] with `output_char_details=True`.

    Args:
        text (`list[str]`): the recognised text of each image.
        scores (`list[float]`): word confidence in [0, 1]: the lowest per-frame probability of the greedy path over
            the image's valid frames, so one doubtful character (or a doubtful gap, where a character may be missing)
            lowers it. Use it to reject uncertain reads.
        char_details (`list[list[dict]]`): per character, `char`, `confidence` (its peak probability) and the
            `[start_frame, end_frame)` span that emitted it (frame `f` covers input columns
            `[f * frame_stride, (f + 1) * frame_stride)` of the resized image).
    """

    text: list[str] | None = None
    scores: list[float] | None = None
    char_details: list[list[dict]] | None = None


def _to_numpy(values) -> np.ndarray:
    if hasattr(values, "detach"):  # torch tensor; bf16/fp16 logits are read as float32
        values = values.detach().cpu()
        values = values.float() if values.is_floating_point() else values
        return values.numpy()
    return np.asarray(values)


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


class MambaOCRProcessor(ProcessorMixin):
    r"""
    Wraps a [`MambaOCRImageProcessor`] and a [`MambaOCRTokenizer`].

    `processor(images=..., text=...)` gives `pixel_values`, `pixel_mask` and, with text, `labels` padded with -100;
    `processor.batch_decode(outputs.logits)` gives the text of each image.

    Example:

    ```python
    >>> import torch
    >>> from PIL import Image
    >>> from mambaocr_hf import MambaOCRConfig, MambaOCRForCTC, MambaOCRProcessor

    >>> processor = MambaOCRProcessor.from_defaults()
    >>> model = MambaOCRForCTC(MambaOCRConfig(backbone="resnet18", hidden_size=64)).eval()
    >>> inputs = processor(images=[Image.new("RGB", (120, 32), "white")], text=["hello"], return_tensors="pt")
    >>> inputs["labels"].tolist()
    [[18, 15, 22, 22, 25]]
    >>> with torch.no_grad():
    ...     logits = model(inputs["pixel_values"], inputs["pixel_mask"]).logits
    >>> len(processor.batch_decode(logits))
    1
    ```
    """

    def __init__(self, image_processor=None, tokenizer=None, **kwargs):
        super().__init__(image_processor, tokenizer, **kwargs)

    @classmethod
    def from_defaults(cls, **tokenizer_kwargs) -> MambaOCRProcessor:
        """The processor matching `MambaOCRConfig()`: default image processor and tokenizer (charset options may be
        passed, e.g. `charset="printable"`)."""
        from .image_processing_mambaocr import MambaOCRImageProcessor
        from .tokenization_mambaocr import MambaOCRTokenizer

        return cls(image_processor=MambaOCRImageProcessor(), tokenizer=MambaOCRTokenizer(**tokenizer_kwargs))

    def __call__(self, images=None, text=None, return_tensors: str | None = None, **kwargs) -> BatchFeature:
        """Model inputs for `images` and, when `text` is given, `labels` (character ids padded with -100)."""
        if images is None and text is None:
            raise ValueError("Pass `images`, `text` or both.")
        data = {}
        if images is not None:
            data.update(self.image_processor(images, **kwargs))
        if text is not None:
            texts = [text] if isinstance(text, str) else list(text)
            if images is not None and len(texts) != len(data["pixel_values"]):
                raise ValueError(f"Got {len(data['pixel_values'])} images but {len(texts)} texts.")
            ids = [self.tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
            longest = max((len(i) for i in ids), default=0)
            data["labels"] = np.array([i + [-100] * (longest - len(i)) for i in ids], dtype=np.int64).reshape(
                len(ids), longest
            )
        return BatchFeature(data, tensor_type=return_tensors)

    def batch_decode(self, sequences, frame_lengths=None, output_char_details: bool = False, **kwargs):
        """Decode model outputs.

        Args:
            sequences: `logits` `[batch, frames, vocab]` (greedy CTC decoding), or predicted ids `[batch, frames]`.
            frame_lengths: valid frames per image (`outputs.frame_lengths`). Optional: the model already makes
                padded frames certain blanks.
            output_char_details: return a [`MambaOCRDecoderOutput`] with word scores and per-character details
                (needs logits).

        Returns:
            `list[str]`, or a [`MambaOCRDecoderOutput`].
        """
        array = _to_numpy(sequences)
        if array.ndim == 2 and not np.issubdtype(array.dtype, np.floating):
            if output_char_details:
                raise ValueError("`output_char_details` needs logits, not ids: confidences come from probabilities.")
            return self.tokenizer.batch_decode(array, **kwargs)
        if array.ndim != 3:
            raise ValueError(
                f"Expected logits [batch, frames, vocab] or ids [batch, frames], got shape {array.shape}."
            )
        vocab = len(self.tokenizer)
        if array.shape[-1] != vocab:
            raise ValueError(
                f"The logits have {array.shape[-1]} classes but the tokenizer has {vocab}: the model and the processor "
                "come from different checkpoints (or the model's head was not resized after the charset changed)."
            )
        if frame_lengths is not None:
            frame_lengths = np.asarray(frame_lengths.tolist() if hasattr(frame_lengths, "tolist") else frame_lengths)
        else:
            frame_lengths = np.full(array.shape[0], array.shape[1])
        ids = array.argmax(-1)
        if not output_char_details:
            return [self.tokenizer.decode(ids[i, : frame_lengths[i]], **kwargs) for i in range(len(ids))]
        texts, scores, details = [], [], []
        for i in range(len(ids)):
            length = int(frame_lengths[i])
            probs = _softmax(array[i, :length].astype(np.float64))  # [frames, vocab]
            best = probs.max(-1)
            decoded = self.tokenizer.decode(ids[i, :length], output_char_offsets=True, **kwargs)
            chars = [
                {**offset, "confidence": float(best[offset["start_frame"] : offset["end_frame"]].max())}
                for offset in decoded["char_offsets"]
            ]
            texts.append(decoded["text"])
            scores.append(float(best.min()) if length else 0.0)
            details.append(chars)
        return MambaOCRDecoderOutput(text=texts, scores=scores, char_details=details)

    def decode(self, sequence, **kwargs):
        """Decode a single image's logits `[frames, vocab]` or ids `[frames]`."""
        result = self.batch_decode(_to_numpy(sequence)[None], **kwargs)
        if isinstance(result, MambaOCRDecoderOutput):
            return MambaOCRDecoderOutput(
                text=result.text[0], scores=result.scores[0], char_details=result.char_details[0]
            )
        return result[0]

    @property
    def model_input_names(self) -> list[str]:
        return self.image_processor.model_input_names + ["labels"]


__all__ = ["MambaOCRProcessor", "MambaOCRDecoderOutput"]
