# Copyright 2026 The MambaOCR authors. Licensed under the Apache License, Version 2.0.
"""Processor for MambaOCR: the image processor and the CTC tokenizer behind one object."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from transformers.image_processing_utils import BatchFeature
from transformers.processing_utils import ProcessorMixin
from transformers.utils import ModelOutput

from .decoding import (
    CTCLexicon,
    apply_character_mask,
    character_mask,
    ctc_forced_alignment,
    ctc_prefix_beam_search,
    greedy_path,
    log_softmax,
)


@dataclass
class MambaOCRDecoderOutput(ModelOutput):
    """
    Decoded text with confidences, from [`MambaOCRProcessor.batch_decode`] with `output_char_details=True`.

    Args:
        text (`list[str]`): the recognised text of each image.
        scores (`list[float]`): word confidence in [0, 1]: the lowest per-frame probability of the decoded alignment
            (the greedy path, or the best alignment of the beam search's text) over the image's valid frames, so one doubtful character (or a doubtful gap, where a character may be missing)
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

    def build_lexicon(self, words) -> CTCLexicon:
        """A [`CTCLexicon`] for `batch_decode(..., lexicon=...)` from words or a file with one word per line, encoded
        with this tokenizer. Build it once and reuse it across batches."""
        return CTCLexicon.from_words(words, self.tokenizer)

    def batch_decode(
        self,
        sequences,
        frame_lengths=None,
        output_char_details: bool = False,
        beam_width: int = 1,
        lexicon=None,
        allowed_chars: str | None = None,
        blocked_chars: str | None = None,
        token_min_logp: float | None = -9.0,
        **kwargs,
    ):
        """Decode model outputs.

        Args:
            sequences: `logits` `[batch, frames, vocab]`, or predicted ids `[batch, frames]` (greedy only).
            frame_lengths: valid frames per image (`outputs.frame_lengths`). Optional: the model already makes
                padded frames certain blanks.
            output_char_details: return a [`MambaOCRDecoderOutput`] with word scores and per-character details
                (needs logits).
            beam_width: 1 for greedy (best-path) decoding; more for CTC prefix beam search, which sums the
                probability of all alignments of each candidate text.
            lexicon: restrict the output to these words (a list, a file with one word per line, or a
                [`CTCLexicon`] from [`build_lexicon`]); uses beam search (`beam_width` 10 if it is 1).
            allowed_chars / blocked_chars: only emit these characters / never emit these (e.g. `"0123456789"` for
                numbers); the other classes' probabilities are renormalised, so scores are then relative to the
                allowed characters (a rejection threshold chosen without constraints does not carry over).
            token_min_logp: beam search prunes characters below this log-probability at each frame.

        Returns:
            `list[str]`, or a [`MambaOCRDecoderOutput`]. Scores: the lowest per-frame probability along the decoded
            alignment (the greedy path, or the best alignment of the beam's text).
        """
        array = _to_numpy(sequences)
        constrained = beam_width > 1 or lexicon is not None or allowed_chars or blocked_chars
        if array.ndim == 2 and not np.issubdtype(array.dtype, np.floating):
            if output_char_details or constrained:
                raise ValueError(
                    "Confidences, beam search and character constraints need logits `[batch, frames, vocab]`, not "
                    "predicted ids."
                )
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
        if not output_char_details and not constrained:
            ids = array.argmax(-1)
            return [self.tokenizer.decode(ids[i, : frame_lengths[i]], **kwargs) for i in range(len(ids))]
        if lexicon is not None and not isinstance(lexicon, CTCLexicon):
            lexicon = self.build_lexicon(lexicon)
        if lexicon is not None and beam_width == 1:
            beam_width = 10
        mask = character_mask(self.tokenizer.get_vocab(), allowed_chars, blocked_chars)
        blank_id = self.tokenizer.blank_token_id
        texts, scores, details = [], [], []
        for i in range(array.shape[0]):
            length = int(frame_lengths[i])
            log_probs = log_softmax(apply_character_mask(array[i, :length], mask))  # [frames, vocab]
            if beam_width > 1:
                label, label_log_prob = ctc_prefix_beam_search(
                    log_probs, beam_width, blank_id, lexicon=lexicon, token_min_logp=token_min_logp
                )[0]
                if label_log_prob == float("-inf"):  # no lexicon word fits this image: no read, zero confidence
                    texts.append("")
                    scores.append(0.0)
                    details.append([])
                    continue
                path = ctc_forced_alignment(log_probs, label, blank_id)
            else:
                path = greedy_path(log_probs)
            decoded = self.tokenizer.decode(path, output_char_offsets=True, **kwargs)
            texts.append(decoded["text"])
            if not output_char_details:
                continue
            path_probs = np.exp(log_probs[np.arange(length), path])
            chars = [
                {
                    **offset,
                    "confidence": float(
                        np.exp(
                            log_probs[offset["start_frame"] : offset["end_frame"], path[offset["start_frame"]]]
                        ).max()
                    ),
                }
                for offset in decoded["char_offsets"]
            ]
            scores.append(float(path_probs.min()) if length else 0.0)
            details.append(chars)
        if not output_char_details:
            return texts
        return MambaOCRDecoderOutput(text=texts, scores=scores, char_details=details)

    def decode(self, sequence, **kwargs):
        """Decode a single image's logits `[frames, vocab]` or ids `[frames]` (options as in [`batch_decode`];
        `frame_lengths` may be a number)."""
        if kwargs.get("frame_lengths") is not None and np.ndim(_to_numpy(kwargs["frame_lengths"])) == 0:
            kwargs["frame_lengths"] = [int(_to_numpy(kwargs["frame_lengths"]))]
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
