# Copyright 2026 The MambaOCR authors. Licensed under the Apache License, Version 2.0.
"""CTC decoding for MambaOCR: greedy, prefix beam search, lexicon / allow-list / block-list constraints, the CTC
likelihood of given labels, and forced alignment.

Everything works on one image's `[frames, vocab]` log-probabilities in numpy; the processor calls it per image.

Why hand-written: `pyctcdecode` targets word-level language models (KenLM, hotwords) and cannot restrict the output to
a lexicon, and torchaudio's flashlight decoder left torchaudio in 2.9. A character-level prefix beam search with a
trie is short; `tests/test_decoding.py` checks it, the likelihood and the alignment against brute-force enumeration
of every alignment on small cases.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence

import numpy as np
from transformers.utils import logging

logger = logging.get_logger(__name__)

NEG_INF = float("-inf")


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Log-probabilities over the last axis, in float64 (`-inf` logits stay impossible)."""
    logits = np.asarray(logits, dtype=np.float64)
    top = np.max(logits, axis=-1, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    shifted = logits - top
    with np.errstate(divide="ignore"):
        return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def _logaddexp(a: float, b: float) -> float:
    if a == NEG_INF:
        return b
    if b == NEG_INF:
        return a
    if a > b:
        return a + math.log1p(math.exp(b - a))
    return b + math.log1p(math.exp(a - b))


class _TrieNode:
    __slots__ = ("children", "word")

    def __init__(self):
        self.children: dict[int, _TrieNode] = {}
        self.word: str | None = None


class CTCLexicon:
    """A set of allowed output words, stored as a trie over token ids, for lexicon-constrained decoding.

    Build it once with [`CTCLexicon.from_words`] (or `MambaOCRProcessor.build_lexicon`) and reuse it: the decoder
    then only follows prefixes of lexicon words and returns a whole word, as in the lexicon-based columns of the
    scene-text literature.

    Args:
        words: the words as the tokenizer normalises them (e.g. lower-cased for a lower-case charset).
        token_ids: the token ids of each word.
    """

    def __init__(self, words: Sequence[str], token_ids: Sequence[Sequence[int]]):
        if len(words) == 0:
            raise ValueError("The lexicon is empty: give at least one word (or decode without `lexicon`).")
        self.root = _TrieNode()
        self.words: list[str] = []
        self.token_ids: list[tuple[int, ...]] = []
        for word, ids in zip(words, token_ids):
            node = self.root
            for token_id in ids:
                node = node.children.setdefault(int(token_id), _TrieNode())
            if node.word is None:
                node.word = word
                self.words.append(word)
                self.token_ids.append(tuple(int(i) for i in ids))

    def __len__(self) -> int:
        return len(self.words)

    @classmethod
    def from_words(cls, words: Iterable[str] | str | os.PathLike, tokenizer) -> CTCLexicon:
        """A lexicon from words (or a text file with one word per line) encoded with `tokenizer` (a
        `MambaOCRTokenizer`). Words that are empty after the tokenizer's normalisation are rejected with an error
        naming them, so a lexicon never silently contains words the model cannot spell."""
        if isinstance(words, (str, os.PathLike)):
            path = os.fspath(words)
            if not os.path.isfile(path):
                raise FileNotFoundError(
                    f"Lexicon file {path!r} does not exist; pass a text file with one word per line, or a list of "
                    "words."
                )
            with open(path, encoding="utf-8") as handle:
                words = [line.strip() for line in handle]
        words = [word for word in words if word and word.strip()]
        normalized = [tokenizer.normalize_text(word) for word in words]
        unusable = [word for word, norm in zip(words, normalized) if not norm]
        if unusable:
            raise ValueError(
                f"{len(unusable)} lexicon words have no character of the model's charset (e.g. {unusable[:5]}); "
                "remove them or use a model whose charset covers them."
            )
        changed = [f"{word!r} -> {norm!r}" for word, norm in zip(words, normalized) if len(norm) != len(word)]
        if changed:
            logger.warning(
                f"{len(changed)} lexicon words lose characters the model's charset lacks, so the decoder can only "
                f"return them shortened (e.g. {', '.join(changed[:3])})."
            )
        ids = [tokenizer.convert_tokens_to_ids(list(norm)) for norm in normalized]
        return cls(normalized, ids)


def character_mask(vocab: dict[str, int], allowed_chars: str | None, blocked_chars: str | None) -> np.ndarray | None:
    """Boolean `[vocab]` mask of the classes decoding may emit (the blank always), or `None` when unconstrained.

    Raises a `ValueError` naming characters of `allowed_chars` / `blocked_chars` that are not in the vocabulary (a
    typo there would otherwise be ignored)."""
    if allowed_chars is not None and not allowed_chars:
        raise ValueError("`allowed_chars` is empty: nothing could be read. Pass the characters to allow, or None.")
    if not allowed_chars and not blocked_chars:
        return None
    size = max(vocab.values()) + 1
    blank_id = 0
    for name, chars in (("allowed_chars", allowed_chars), ("blocked_chars", blocked_chars)):
        unknown = sorted({c for c in chars or "" if c not in vocab})
        if unknown:
            raise ValueError(
                f"`{name}` has characters the model's charset lacks: {unknown}. The charset is "
                f"{''.join(sorted(k for k in vocab if len(k) == 1))!r}."
            )
    mask = np.zeros(size, dtype=bool) if allowed_chars else np.ones(size, dtype=bool)
    for c in allowed_chars or "":
        mask[vocab[c]] = True
    for c in blocked_chars or "":
        mask[vocab[c]] = False
    if not mask[1:].any():
        raise ValueError("`allowed_chars` / `blocked_chars` leave no character to read; allow at least one.")
    mask[blank_id] = True
    return mask


def apply_character_mask(logits: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """Logits with the classes outside `mask` made impossible (renormalised by the softmax after it)."""
    if mask is None:
        return logits
    return np.where(mask, logits, NEG_INF)


def greedy_path(log_probs: np.ndarray) -> np.ndarray:
    """The most likely class of each frame `[frames]` (best-path decoding)."""
    return log_probs.argmax(-1)


def ctc_prefix_beam_search(
    log_probs: np.ndarray,
    beam_width: int = 10,
    blank_id: int = 0,
    lexicon: CTCLexicon | None = None,
    token_min_logp: float | None = -9.0,
    top_paths: int = 1,
) -> list[tuple[tuple[int, ...], float]]:
    """CTC prefix beam search.

    Args:
        log_probs: `[frames, vocab]` log-probabilities of one image (valid frames only).
        beam_width: prefixes kept after each frame. With a beam at least as large as the number of distinct prefixes
            the search is exact: each returned score is the labeling's probability summed over all its alignments.
        blank_id: the CTC blank.
        lexicon: only prefixes of its words are followed and only whole words are returned.
        token_min_logp: at each frame, characters with a log-probability below this are not tried (the frame's most
            likely character always is); `None` tries every character. `-9.0` (p < 1.2e-4) changes nothing in
            practice and makes long lines fast.
        top_paths: how many labelings to return.

    Returns:
        Up to `top_paths` `(token_ids, log_probability)`, best first. With a lexicon and no word reachable within the
        beam, the lexicon's words are scored exactly by [`ctc_log_likelihoods`] instead.
    """
    if beam_width < 1:
        raise ValueError(f"`beam_width` must be at least 1, got {beam_width}.")
    frames, vocab = log_probs.shape
    beams: dict[tuple[int, ...], tuple[float, float]] = {(): (0.0, NEG_INF)}  # prefix -> (log p blank, log p char)
    nodes: dict[tuple[int, ...], _TrieNode] = {(): lexicon.root} if lexicon is not None else {}
    characters = np.array([i for i in range(vocab) if i != blank_id])
    for t in range(frames):
        frame = log_probs[t].tolist()
        scores = log_probs[t, characters]
        if token_min_logp is None:
            candidates = characters
        else:
            candidates = characters[scores >= min(token_min_logp, scores.max())]
        candidates = [int(c) for c in candidates if frame[c] > NEG_INF]
        step: dict[tuple[int, ...], list[float]] = {}
        for prefix, (p_blank, p_char) in beams.items():
            total = _logaddexp(p_blank, p_char)
            same = step.setdefault(prefix, [NEG_INF, NEG_INF])
            same[0] = _logaddexp(same[0], total + frame[blank_id])  # a blank keeps the prefix
            last = prefix[-1] if prefix else None
            if last is not None:  # the last character repeated without a blank in between
                same[1] = _logaddexp(same[1], p_char + frame[last])
            node = nodes.get(prefix)
            for c in candidates:
                if node is not None:
                    child = node.children.get(c)
                    if child is None:
                        continue
                extended = prefix + (c,)
                target = step.setdefault(extended, [NEG_INF, NEG_INF])
                # a repeated character needs a blank between (only p_blank extends); any other extends from both
                target[1] = _logaddexp(target[1], (p_blank if c == last else total) + frame[c])
                if node is not None:
                    nodes[extended] = child
        ranked = sorted(step.items(), key=lambda item: _logaddexp(*item[1]), reverse=True)
        beams = dict(ranked[:beam_width])

    results = [(prefix, _logaddexp(*scores)) for prefix, scores in beams.items()]
    if lexicon is not None:
        results = [(prefix, score) for prefix, score in results if nodes[prefix].word is not None]
        if not results:  # no word completed within the beam: score the whole lexicon exactly
            scores = ctc_log_likelihoods(log_probs, lexicon.token_ids, blank_id=blank_id)
            order = [i for i in np.argsort(-scores, kind="stable")[:top_paths] if scores[i] > NEG_INF]
            # no word fits at all (the image has too few frames for any, or their characters are blocked): no read
            return [(lexicon.token_ids[i], float(scores[i])) for i in order] or [((), NEG_INF)]
    results.sort(key=lambda item: item[1], reverse=True)
    return results[:top_paths]


def _extended_labels(labels: Sequence[Sequence[int]], blank_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Blank-interleaved labels `[words, 2 * longest + 1]` (padded with blanks) and each word's state count."""
    longest = max((len(label) for label in labels), default=0)
    extended = np.full((len(labels), 2 * longest + 1), blank_id, dtype=np.int64)
    for i, label in enumerate(labels):
        extended[i, 1 : 2 * len(label) : 2] = label
    return extended, np.array([2 * len(label) + 1 for label in labels])


def ctc_log_likelihoods(log_probs: np.ndarray, labels: Sequence[Sequence[int]], blank_id: int = 0) -> np.ndarray:
    """`log P(label | image)` of each label (summed over all CTC alignments), for many labels at once: the CTC
    forward algorithm vectorised over labels. `-inf` where a label needs more frames than there are."""
    frames = log_probs.shape[0]
    if len(labels) == 0:
        return np.zeros(0)
    extended, states = _extended_labels(labels, blank_id)
    words, width = extended.shape
    emit = log_probs[:, extended]  # [frames, words, states]
    # a state may skip its predecessor when it is a character different from the one two states back
    skip = np.zeros((words, width), dtype=bool)
    skip[:, 2:] = (extended[:, 2:] != blank_id) & (extended[:, 2:] != extended[:, :-2])
    alpha = np.full((words, width), NEG_INF)
    if frames == 0:
        return np.where(states == 1, 0.0, NEG_INF)
    alpha[:, 0] = emit[0, :, 0]
    if width > 1:
        alpha[:, 1] = emit[0, :, 1]
    for t in range(1, frames):
        stay = alpha
        step = np.concatenate([np.full((words, 1), NEG_INF), alpha[:, :-1]], axis=1)
        jump = np.concatenate([np.full((words, 2), NEG_INF), alpha[:, :-2]], axis=1)
        jump = np.where(skip, jump, NEG_INF)
        with np.errstate(invalid="ignore"):
            alpha = np.logaddexp(np.logaddexp(stay, step), jump) + emit[t]
    rows = np.arange(words)
    last = alpha[rows, states - 1]
    before_last = np.where(states > 1, alpha[rows, np.maximum(states - 2, 0)], NEG_INF)
    return np.logaddexp(last, before_last)


def ctc_forced_alignment(log_probs: np.ndarray, label: Sequence[int], blank_id: int = 0) -> np.ndarray:
    """The most likely alignment (one class per frame, `[frames]`) that collapses to `label` (Viterbi).

    Raises a `ValueError` when the label cannot be aligned (it needs more frames than there are)."""
    frames = log_probs.shape[0]
    if frames == 0 and len(label) == 0:
        return np.zeros(0, dtype=np.int64)
    extended, _ = _extended_labels([label], blank_id)
    extended = extended[0]
    width = len(extended)
    needed = len(label) + sum(1 for a, b in zip(label, label[1:]) if a == b)
    if needed > frames:
        raise ValueError(f"A label of {len(label)} characters needs {needed} frames; the image gives {frames}.")
    emit = log_probs[:, extended]  # [frames, states]
    skip = np.zeros(width, dtype=bool)
    skip[2:] = (extended[2:] != blank_id) & (extended[2:] != extended[:-2])
    score = np.full(width, NEG_INF)
    score[0] = emit[0, 0]
    if width > 1:
        score[1] = emit[0, 1]
    back = np.zeros((frames, width), dtype=np.int64)
    states = np.arange(width)
    for t in range(1, frames):
        from_previous = np.full(width, NEG_INF)
        from_previous[1:] = score[:-1]
        from_two_back = np.full(width, NEG_INF)
        from_two_back[2:] = score[:-2]
        candidates = np.stack([score, from_previous, np.where(skip, from_two_back, NEG_INF)])
        choice = candidates.argmax(0)
        back[t] = states - choice
        score = candidates[choice, states] + emit[t]
    state = width - 1 if width == 1 or score[width - 1] >= score[width - 2] else width - 2
    path = np.empty(frames, dtype=np.int64)
    for t in range(frames - 1, -1, -1):
        path[t] = extended[state]
        state = back[t, state]
    return path


__all__ = [
    "CTCLexicon",
    "apply_character_mask",
    "character_mask",
    "ctc_forced_alignment",
    "ctc_log_likelihoods",
    "ctc_prefix_beam_search",
    "greedy_path",
    "log_softmax",
]
