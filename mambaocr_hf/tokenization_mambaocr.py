# Copyright 2026 The MambaOCR authors. Licensed under the Apache License, Version 2.0.
"""Character-level CTC tokenizer for MambaOCR."""

from __future__ import annotations

import itertools
import json
import os
import string
import unicodedata

from transformers.tokenization_python import PreTrainedTokenizer
from transformers.utils import logging

logger = logging.get_logger(__name__)

VOCAB_FILES_NAMES = {"vocab_file": "vocab.json"}

# Named charsets. The order of a charset sets the token ids: the blank is id 0 and character i gets id i + 1.
CHARSETS = {
    "digits": string.digits,
    "lowercase_alphanumeric": string.digits + string.ascii_lowercase,  # 36: the scene-text benchmarks' protocol
    "alphanumeric": string.digits + string.ascii_lowercase + string.ascii_uppercase,  # 62
    "printable": string.digits + string.ascii_lowercase + string.ascii_uppercase + string.punctuation,  # 94
    # text lines: the word space is a class of its own (distinct from the CTC blank); it comes last, so the other 94
    # characters keep their `printable` ids
    "printable_space": string.digits + string.ascii_lowercase + string.ascii_uppercase + string.punctuation + " ",
}
DEFAULT_CHARSET = "lowercase_alphanumeric"
UNKNOWN_CHAR_POLICIES = ("error", "drop", "map")


def check_unknown_char_policy(policy: str) -> None:
    """Raise a `ValueError` naming the choices unless `policy` is one of `UNKNOWN_CHAR_POLICIES`."""
    if policy not in UNKNOWN_CHAR_POLICIES:
        raise ValueError(f"`unknown_char_policy` must be one of {list(UNKNOWN_CHAR_POLICIES)}, got {policy!r}.")


def resolve_charset(charset: str) -> str:
    """A charset given by name (`CHARSETS`), as the characters themselves, or as a text file holding them
    (one character per line, or all on one line)."""
    if charset in CHARSETS:
        return CHARSETS[charset]
    if os.path.isfile(charset):
        with open(charset, encoding="utf-8") as handle:
            charset = "".join(handle.read().splitlines())
    if not charset:
        raise ValueError(f"Empty charset; use one of {list(CHARSETS)} or a string of characters.")
    duplicates = sorted({c for c in charset if charset.count(c) > 1})
    if duplicates:
        raise ValueError(f"The charset repeats characters {duplicates}; each character must appear once.")
    return charset


class MambaOCRTokenizer(PreTrainedTokenizer):
    """
    Character-level CTC tokenizer: one id per character, id 0 for the CTC blank.

    Args:
        vocab_file (`str`, *optional*):
            A `vocab.json` (`{token: id}`) as written by `save_pretrained`. When given, `charset` is ignored.
        charset (`str`, *optional*, defaults to `"lowercase_alphanumeric"`):
            A named charset (`digits`, `lowercase_alphanumeric` (36), `alphanumeric` (62), `printable` (94 ASCII),
            `printable_space` (95: `printable` and the space, for text lines)), a string of characters, or a text
            file of them. Its order sets the ids.
        unknown_char_policy (`str`, *optional*, defaults to `"map"`):
            What happens to characters outside the charset when text is encoded:
            `"error"` raises a `ValueError` naming them; `"drop"` removes them;
            `"map"` first folds them (accents stripped by NFKD, case folded when the charset has only one case, and
            `char_map` applied), then removes what still does not fit.
        char_map (`dict[str, str]`, *optional*):
            Extra replacements used by the `"map"` policy, e.g. `{"€": "e"}`.
        blank_token (`str`, *optional*, defaults to `"<blank>"`):
            The CTC blank; it is also the padding token.

    Example:

    ```python
    >>> from mambaocr_hf import MambaOCRTokenizer

    >>> tokenizer = MambaOCRTokenizer()
    >>> ids = tokenizer("Café")["input_ids"]
    >>> tokenizer.decode(ids, group_tokens=False)
    'cafe'
    >>> tokenizer.decode([0, 13, 13, 0, 11, 0, 11, 0])  # CTC: collapse repeats, then drop blanks
    'caa'
    ```
    """

    vocab_files_names = VOCAB_FILES_NAMES
    model_input_names = ["input_ids", "attention_mask"]

    def __init__(
        self,
        vocab_file: str | None = None,
        charset: str = DEFAULT_CHARSET,
        unknown_char_policy: str = "map",
        char_map: dict[str, str] | None = None,
        blank_token: str = "<blank>",
        **kwargs,
    ):
        check_unknown_char_policy(unknown_char_policy)
        # transformers 5 reads a saved `*_token` entry into `model_specific_special_tokens`, not into the argument
        blank_token = (kwargs.get("model_specific_special_tokens") or {}).get("blank_token", blank_token)
        if vocab_file is not None:
            with open(vocab_file, encoding="utf-8") as handle:
                self.vocab: dict[str, int] = json.load(handle)
            if self.vocab.get(blank_token) != 0:
                raise ValueError(f"{vocab_file} must map the blank token {blank_token!r} to id 0.")
            if sorted(self.vocab.values()) != list(range(len(self.vocab))):
                raise ValueError(f"{vocab_file} must hold the ids 0..{len(self.vocab) - 1} exactly once each.")
        else:
            characters = resolve_charset(charset)
            self.vocab = {blank_token: 0, **{char: index + 1 for index, char in enumerate(characters)}}
        self.decoder = {index: token for token, index in self.vocab.items()}
        self.charset = "".join(self.decoder[i] for i in range(1, len(self.vocab)))
        self.unknown_char_policy = unknown_char_policy
        self.char_map = dict(char_map or {})
        self.blank_token = blank_token
        self._warned_unknown = False
        self._has_lower = any(c.islower() for c in self.charset)
        self._has_upper = any(c.isupper() for c in self.charset)
        kwargs.setdefault("pad_token", blank_token)
        kwargs.pop("charset", None)
        super().__init__(
            charset=self.charset,
            unknown_char_policy=unknown_char_policy,
            char_map=self.char_map,
            blank_token=blank_token,
            special_tokens_pattern="none",
            **kwargs,
        )

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    @property
    def blank_token_id(self) -> int:
        return 0

    def get_vocab(self) -> dict[str, int]:
        return dict(self.vocab, **self.added_tokens_encoder)

    def __len__(self) -> int:
        return len(self.vocab)

    def add_tokens(self, new_tokens, special_tokens: bool = False) -> int:
        """A CTC head has one class per character of the charset: new characters are added to the charset and the
        head together with `mambaocr_hf.extend_charset(model, processor, chars)`, not as added tokens (which the CTC
        decoder could not map back to a class). Characters already in the charset add nothing."""
        tokens = new_tokens if isinstance(new_tokens, (list, tuple)) else [new_tokens]
        unknown = [str(token) for token in tokens if str(token) not in self.vocab]
        if unknown and not special_tokens:
            raise ValueError(
                f"MambaOCRTokenizer does not take added tokens ({unknown}): use "
                "`mambaocr_hf.extend_charset(model, processor, characters)`, which grows the charset and the CTC head."
            )
        return super().add_tokens(new_tokens, special_tokens=special_tokens)

    # encoding

    def unknown_characters(self, text: str) -> list[str]:
        """Characters of `text` that are not in the charset (sorted, each once)."""
        return sorted({char for char in text if char not in self.vocab or char == self.blank_token})

    def _fold(self, char: str) -> str:
        char = self.char_map.get(char, char)
        if char in self.vocab:
            return char
        if not self._has_upper and char.lower() in self.vocab:
            return char.lower()
        if not self._has_lower and char.upper() in self.vocab:
            return char.upper()
        stripped = "".join(c for c in unicodedata.normalize("NFKD", char) if not unicodedata.combining(c))
        if stripped != char:
            return "".join(self._fold(c) for c in stripped)
        return char

    def normalize_text(self, text: str) -> str:
        """Apply the unknown-character policy to `text`: the label the model is trained on.

        Raises a `ValueError` under the `"error"` policy when `text` has characters outside the charset.
        """
        if not isinstance(text, str):
            raise TypeError(f"Text must be a str, got {type(text).__name__}.")
        if not text.isascii():  # "e" + combining acute (macOS file names, scraped labels) is the charset's "é"
            text = unicodedata.normalize("NFC", text)
        if self.unknown_char_policy == "map":
            text = "".join(self._fold(char) for char in text)
        unknown = self.unknown_characters(text)
        if not unknown:
            return text
        if self.unknown_char_policy == "error":
            raise ValueError(
                f"Text {text!r} has characters outside the tokenizer's charset: {unknown}. Use a charset that "
                "contains them (e.g. charset='printable'), or unknown_char_policy='map' / 'drop'."
            )
        if not self._warned_unknown:  # once per tokenizer, not once per distinct label
            self._warned_unknown = True
            logger.warning(
                f"Removing characters outside the charset (unknown_char_policy={self.unknown_char_policy!r}), "
                f"e.g. {unknown} in {text!r}; this is said once."
            )
        return "".join(char for char in text if char not in unknown)

    def tokenize(self, text: str, **kwargs) -> list[str]:
        # one token per character, always: the base class would first split out special tokens, so that the text
        # "<blank>" (in a printable charset) became the CTC blank instead of its seven characters
        return self._tokenize(text)

    def _tokenize(self, text: str, **kwargs) -> list[str]:
        return list(self.normalize_text(text))

    def _convert_token_to_id(self, token: str) -> int:
        return self.vocab[token]

    def _convert_id_to_token(self, index: int) -> str:
        if index not in self.decoder:
            raise ValueError(f"Token id {index} is outside the vocabulary of {len(self.vocab)} entries.")
        return self.decoder[index]

    # decoding

    def decode(
        self,
        token_ids,
        skip_special_tokens: bool = True,
        group_tokens: bool = True,
        output_char_offsets: bool = False,
        **kwargs,
    ) -> str | dict:
        """Turn ids into text.

        Args:
            token_ids: ids of one sequence (list, numpy array or tensor); ids < 0 (label padding) are ignored.
            group_tokens: CTC decoding: collapse runs of the same id, then drop blanks. Use `False` for labels.
            output_char_offsets: also return, per character, the `[start_frame, end_frame)` span that emitted it.

        Returns:
            The text, or `{"text": str, "char_offsets": [{"char", "start_frame", "end_frame"}, ...]}`.
        """
        if hasattr(token_ids, "tolist"):
            token_ids = token_ids.tolist()
        if isinstance(token_ids, int):
            token_ids = [token_ids]
        if token_ids and isinstance(token_ids[0], list):  # a batch, as transformers 5's `decode` takes one
            return self.batch_decode(
                token_ids,
                skip_special_tokens=skip_special_tokens,
                group_tokens=group_tokens,
                output_char_offsets=output_char_offsets,
                **kwargs,
            )
        if token_ids and isinstance(token_ids[0], float):
            raise TypeError(
                "decode() takes token ids, got floats: decode a model's logits with `processor.batch_decode(logits)` "
                "(or `logits.argmax(-1)` for the ids)."
            )
        chars, offsets, position = [], [], 0
        runs = itertools.groupby(token_ids) if group_tokens else ((i, iter([i])) for i in token_ids)
        for token_id, run in runs:
            length = len(list(run))
            start, position = position, position + length
            if token_id < 0 or token_id == self.blank_token_id:
                continue
            char = self._convert_id_to_token(int(token_id))
            if skip_special_tokens and char in self.all_special_tokens:
                continue
            chars.append(char)
            offsets.append({"char": char, "start_frame": start, "end_frame": position})
        text = "".join(chars)
        return {"text": text, "char_offsets": offsets} if output_char_offsets else text

    def batch_decode(self, sequences, **kwargs) -> list:
        """[`decode`] for each sequence of a batch (`[batch, length]` ids)."""
        if getattr(sequences, "ndim", 2) != 2 or (hasattr(sequences, "dtype") and "float" in str(sequences.dtype)):
            raise TypeError(
                f"batch_decode() takes `[batch, length]` token ids, got an array of shape {tuple(sequences.shape)} "
                f"and dtype {sequences.dtype}: decode a model's logits with `processor.batch_decode(logits)`."
            )
        if hasattr(sequences, "tolist"):
            sequences = sequences.tolist()
        return [self.decode(sequence, **kwargs) for sequence in sequences]

    def save_vocabulary(self, save_directory: str, filename_prefix: str | None = None) -> tuple[str]:
        if not os.path.isdir(save_directory):
            raise ValueError(f"Vocabulary path ({save_directory}) should be a directory.")
        vocab_file = os.path.join(save_directory, (filename_prefix + "-" if filename_prefix else "") + "vocab.json")
        with open(vocab_file, "w", encoding="utf-8") as handle:
            json.dump(self.vocab, handle, indent=2, ensure_ascii=False)
            handle.write("\n")
        return (vocab_file,)


__all__ = ["MambaOCRTokenizer", "CHARSETS"]
