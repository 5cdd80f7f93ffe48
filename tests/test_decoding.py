"""CTC decoding against brute force: every alignment of a small problem enumerated."""

import itertools
import math

import numpy as np
import pytest

from mambaocr_hf import MambaOCRProcessor
from mambaocr_hf.decoding import (
    CTCLexicon,
    character_mask,
    ctc_forced_alignment,
    ctc_log_likelihoods,
    ctc_prefix_beam_search,
    log_softmax,
)


def collapse(path, blank=0):
    return tuple(k for k, _ in itertools.groupby(path) if k != blank)


def brute_force(log_probs):
    """Exact P(labeling) for every labeling, and the best alignment of each: enumerate all vocab**frames paths."""
    frames, vocab = log_probs.shape
    totals, best = {}, {}
    for path in itertools.product(range(vocab), repeat=frames):
        logp = float(sum(log_probs[t, c] for t, c in enumerate(path)))
        label = collapse(path)
        totals[label] = np.logaddexp(totals.get(label, -math.inf), logp)
        if logp > best.get(label, (-math.inf, None))[0]:
            best[label] = (logp, path)
    return totals, best


def random_log_probs(frames, vocab, seed, sharpness=1.5):
    rng = np.random.default_rng(seed)
    return log_softmax(rng.normal(size=(frames, vocab)) * sharpness)


@pytest.mark.parametrize("frames,vocab,seed", [(1, 3, 0), (4, 3, 1), (5, 4, 2), (6, 3, 3)])
def test_likelihoods_match_brute_force(frames, vocab, seed):
    log_probs = random_log_probs(frames, vocab, seed)
    totals, _ = brute_force(log_probs)
    labels = list(totals)
    np.testing.assert_allclose(ctc_log_likelihoods(log_probs, labels), [totals[label] for label in labels], atol=1e-9)
    # a label that needs more frames than there are (repeats need a blank between them) is impossible
    assert ctc_log_likelihoods(log_probs, [(1,) * (frames + 1)])[0] == -math.inf


@pytest.mark.parametrize("frames,vocab,seed", [(4, 3, 4), (5, 4, 5), (6, 3, 6)])
def test_exhaustive_beam_search_is_exact(frames, vocab, seed):
    log_probs = random_log_probs(frames, vocab, seed)
    totals, _ = brute_force(log_probs)
    results = ctc_prefix_beam_search(log_probs, beam_width=10_000, token_min_logp=None, top_paths=len(totals))
    assert {label: pytest.approx(score, abs=1e-9) for label, score in results} == totals
    best = max(totals, key=totals.get)
    assert ctc_prefix_beam_search(log_probs, beam_width=10_000, token_min_logp=None)[0][0] == best


@pytest.mark.slow
def test_small_beam_finds_the_best_labeling_on_peaked_outputs():
    # a confident model's output: beam 5 (with pruning) agrees with the exact answer
    for seed in range(20):
        log_probs = random_log_probs(6, 4, 100 + seed, sharpness=4.0)
        totals, _ = brute_force(log_probs)
        assert ctc_prefix_beam_search(log_probs, beam_width=5)[0][0] == max(totals, key=totals.get)


def test_beam_search_can_beat_greedy():
    # the textbook case: greedy reads the blank, but "a" spread over both frames is more likely in total
    probs = np.array([[0.4, 0.35, 0.25], [0.4, 0.35, 0.25]])
    log_probs = np.log(probs)
    assert collapse(log_probs.argmax(-1)) == ()
    assert ctc_prefix_beam_search(log_probs, beam_width=4)[0][0] == (1,)


@pytest.mark.parametrize("seed", range(6))
def test_lexicon_search_returns_the_most_likely_lexicon_word(seed):
    log_probs = random_log_probs(5, 4, 200 + seed)
    totals, _ = brute_force(log_probs)
    words = [(1, 2), (2,), (3, 3), (1, 2, 3), (2, 1, 1)]
    lexicon = CTCLexicon(["ab", "b", "cc", "abc", "baa"], words)
    expected = max(words, key=lambda w: totals.get(w, -math.inf))
    label, score = ctc_prefix_beam_search(log_probs, beam_width=10_000, lexicon=lexicon, token_min_logp=None)[0]
    assert label == expected
    assert score == pytest.approx(totals[expected])
    # beam of 1: the trie may lose every word, then the whole lexicon is scored exactly
    assert ctc_prefix_beam_search(log_probs, beam_width=1, lexicon=lexicon)[0][0] in words


def test_lexicon_fallback_scores_every_word_exactly():
    log_probs = np.log(np.array([[0.05, 0.9, 0.05], [0.05, 0.9, 0.05], [0.9, 0.05, 0.05]]))
    lexicon = CTCLexicon(["bb", "b"], [(2, 2), (2,)])  # "a" dominates; no lexicon word survives a beam of 1
    label, score = ctc_prefix_beam_search(log_probs, beam_width=1, lexicon=lexicon)[0]
    assert label == (2,)
    assert score == pytest.approx(ctc_log_likelihoods(log_probs, [(2,)])[0])


@pytest.mark.parametrize("frames,vocab,seed", [(1, 3, 7), (4, 3, 8), (6, 3, 9)])
def test_forced_alignment_is_the_best_alignment(frames, vocab, seed):
    log_probs = random_log_probs(frames, vocab, seed)
    _, best = brute_force(log_probs)
    for label, (logp, _) in best.items():
        path = ctc_forced_alignment(log_probs, label)
        assert collapse(path) == label
        assert sum(log_probs[t, c] for t, c in enumerate(path)) == pytest.approx(logp)
    with pytest.raises(ValueError, match="needs 3 frames"):
        ctc_forced_alignment(log_probs[:1], (1, 1))


def test_character_mask():
    vocab = {"<blank>": 0, "a": 1, "b": 2, "1": 3}
    assert character_mask(vocab, None, None) is None
    assert character_mask(vocab, "1", None).tolist() == [True, False, False, True]
    assert character_mask(vocab, None, "ab").tolist() == [True, False, False, True]
    with pytest.raises(ValueError, match=r"`allowed_chars` has characters the model's charset lacks: \['Z'\]"):
        character_mask(vocab, "aZ", None)


# --- through the processor -----------------------------------------------------------------------------------------


def logits_for(processor, text, frames, confidence=8.0):
    """Logits that spell `text` one character per frame with blanks between, then blanks."""
    logits = np.zeros((frames, len(processor.tokenizer)), dtype=np.float32)
    ids = processor.tokenizer.convert_tokens_to_ids(list(text))
    path = [0] * frames
    for position, token in enumerate(ids):
        path[2 * position + 1] = token
    logits[np.arange(frames), path] = confidence
    return logits


def test_processor_beam_matches_greedy_on_clear_output():
    processor = MambaOCRProcessor.from_defaults()
    logits = np.stack([logits_for(processor, "hello", 16), logits_for(processor, "world", 16)])
    greedy = processor.batch_decode(logits, output_char_details=True)
    beam = processor.batch_decode(logits, output_char_details=True, beam_width=8)
    assert greedy.text == beam.text == ["hello", "world"]
    assert beam.scores == pytest.approx(greedy.scores)
    assert [c["start_frame"] for c in beam.char_details[0]] == [1, 3, 5, 7, 9]


def test_processor_lexicon_allow_and_block_lists():
    processor = MambaOCRProcessor.from_defaults()
    logits = logits_for(processor, "he1lo", 16, confidence=3.0)
    # the "1" frame also leans towards "l"
    logits[5, processor.tokenizer.convert_tokens_to_ids("l")] = 2.5
    assert processor.batch_decode(logits[None]) == ["he1lo"]
    assert processor.batch_decode(logits[None], blocked_chars="0123456789") == ["hello"]
    assert processor.batch_decode(logits[None], allowed_chars="helo") == ["hello"]
    lexicon = processor.build_lexicon(["Hello", "help", "yellow"])  # normalised like labels: lower-case
    out = processor.batch_decode(logits[None], lexicon=lexicon, output_char_details=True)
    assert out.text == ["hello"]
    assert 0.0 < out.scores[0] < 1.0
    assert processor.batch_decode(logits[None], lexicon=["help", "yellow"]) in (["help"], ["yellow"])


def test_processor_decodes_long_lines_without_truncation():
    processor = MambaOCRProcessor.from_defaults()
    text = ("the quick brown fox jumps over the lazy dog " * 6).replace(" ", "")[:240]
    logits = logits_for(processor, text, 512)[None]  # a 32x2048 image gives 512 frames
    assert processor.batch_decode(logits) == [text]
    assert processor.batch_decode(logits, beam_width=4) == [text]


def test_processor_decoding_errors():
    processor = MambaOCRProcessor.from_defaults()
    with pytest.raises(ValueError, match="need logits"):
        processor.batch_decode(np.zeros((1, 4), dtype=np.int64), beam_width=4)
    with pytest.raises(ValueError, match="lexicon is empty"):
        processor.build_lexicon([])
    with pytest.raises(FileNotFoundError, match="Lexicon file"):
        processor.build_lexicon("/nonexistent/words.txt")
    with pytest.raises(ValueError, match="no character of the model's charset"):
        processor.build_lexicon(["ok", "!!!"])
    with pytest.raises(ValueError, match="`beam_width` must be at least 1"):
        ctc_prefix_beam_search(np.zeros((2, 3)), beam_width=0)


def test_no_read_when_no_lexicon_word_fits():
    processor = MambaOCRProcessor.from_defaults()
    logits = logits_for(processor, "hello", 16)[None]
    # 3 frames cannot hold any 5-letter word: an empty read with zero confidence, not a crash
    out = processor.batch_decode(logits[:, :3], lexicon=["hello", "world"], output_char_details=True)
    assert out.text == [""] and out.scores == [0.0] and out.char_details == [[]]
    # every word needs a blocked character: the same
    assert processor.batch_decode(logits, lexicon=["hello"], blocked_chars="h") == [""]
    # zero frames with beam search
    empty = np.zeros((1, 0, len(processor.tokenizer)), dtype=np.float32)
    assert processor.batch_decode(empty, beam_width=3, output_char_details=True).text == [""]
    assert ctc_forced_alignment(np.zeros((0, 3)), ()).shape == (0,)


def test_constraints_that_leave_nothing_to_read_are_errors(caplog):
    vocab = {"<blank>": 0, "a": 1, "b": 2}
    with pytest.raises(ValueError, match="leave no character"):
        character_mask(vocab, None, "ab")
    with pytest.raises(ValueError, match="`allowed_chars` is empty"):
        character_mask(vocab, "", None)
    processor = MambaOCRProcessor.from_defaults()
    from transformers.testing_utils import CaptureLogger
    from transformers.utils import logging

    with CaptureLogger(logging.get_logger("mambaocr_hf.decoding")) as captured:
        lexicon = processor.build_lexicon(["new york", "Café", "hello"])
    assert lexicon.words == ["newyork", "cafe", "hello"]
    assert "'new york' -> 'newyork'" in captured.out and "Café" not in captured.out  # accents fold, no warning


def test_decode_one_image_with_options():
    processor = MambaOCRProcessor.from_defaults()
    logits = logits_for(processor, "hello", 16)
    out = processor.decode(logits, frame_lengths=12, beam_width=4, output_char_details=True)
    assert out.text == "hello" and 0 < out.scores <= 1
    assert processor.decode(logits, frame_lengths=3) == "h"
