"""Text-recognition metrics: hand-computed values, the scene-text alphanumeric protocol, edge cases, and the offline
evaluate modules agreeing with `compute_ocr_metrics`."""

import os
import random
import socket

import pytest

from mambaocr_hf.metrics import (
    EVALUATE_MODULES,
    METRIC_NAMES,
    compute_ocr_metrics,
    edit_distance,
    format_metrics_table,
    load_metric,
    metric_module_path,
    normalize_alnum,
)


def _random_corpus(seed: int, size: int = 300) -> tuple[list[str], list[str]]:
    """Short references with spaces, case, punctuation and non-ASCII, and predictions that corrupt some of them."""
    rng = random.Random(seed)
    alphabet = "abcXYZ019 !-_'éß中"
    references = ["".join(rng.choices(alphabet, k=rng.randint(0, 12))) for _ in range(size)]
    predictions = []
    for reference in references:
        chars = list(reference)
        for _ in range(rng.choice([0, 0, 1, 2, 4])):
            operation = rng.choice(["insert", "delete", "substitute", "case"])
            position = rng.randint(0, len(chars))
            if operation == "insert":
                chars.insert(position, rng.choice(alphabet))
            elif chars and position < len(chars):
                if operation == "delete":
                    del chars[position]
                elif operation == "substitute":
                    chars[position] = rng.choice(alphabet)
                else:
                    chars[position] = chars[position].swapcase()
        predictions.append("".join(chars))
    return predictions, references


@pytest.fixture(scope="module")
def evaluate_modules():
    return {name: load_metric(name, keep_in_memory=True) for name in EVALUATE_MODULES}


# --- edit distance and normalization ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "a, b, expected",
    [
        ("kitten", "sitting", 3),
        ("", "", 0),
        ("", "abc", 3),
        ("abc", "", 3),
        ("flaw", "lawn", 2),
        ("中文", "中", 1),
        (["the", "cat"], ["the", "hat", "sat"], 2),
    ],
)
@pytest.mark.parametrize("use_rapidfuzz", [True, False])
def test_edit_distance(a, b, expected, use_rapidfuzz):
    assert edit_distance(a, b, use_rapidfuzz=use_rapidfuzz) == expected
    assert edit_distance(b, a, use_rapidfuzz=use_rapidfuzz) == expected


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Hello", "hello"),
        ("It's-A_Test 42!", "itsatest42"),  # apostrophe, hyphen, underscore and space all go
        ("Café", "caf"),  # [^0-9a-z] after lower-casing: non-ASCII letters are removed, not folded
        ("!!?", ""),
        ("中文ABC", "abc"),
    ],
)
def test_normalize_alnum(text, expected):
    assert normalize_alnum(text) == expected


# --- compute_ocr_metrics: hand-computed values --------------------------------------------------------------------


def test_keys_and_perfect_predictions():
    metrics = compute_ocr_metrics(["abc", "de f"], ["abc", "de f"])
    assert tuple(metrics) == METRIC_NAMES
    assert metrics == {
        "cer": 0.0,
        "wer": 0.0,
        "word_accuracy": 1.0,
        "word_accuracy_ci_alnum": 1.0,
        "one_minus_ned": 1.0,
        "num_samples": 2,
    }


def test_cer_is_corpus_level():
    # 1 + 1 errors over 4 + 2 reference characters; the mean of per-sample CERs would be (1/4 + 1/2) / 2
    assert compute_ocr_metrics(["abcd", "x"], ["abce", "xy"])["cer"] == pytest.approx(2 / 6)
    assert compute_ocr_metrics(["hallo"], ["hello"])["cer"] == pytest.approx(0.2)
    assert compute_ocr_metrics(["sitting"], ["kitten"])["cer"] == pytest.approx(3 / 6)
    # insertions can push the CER above 1
    assert compute_ocr_metrics(["abc"], ["a"])["cer"] == pytest.approx(2.0)
    # characters are compared as they are: case, spaces and punctuation count
    assert compute_ocr_metrics(["Ab c!"], ["abc"])["cer"] == pytest.approx(3 / 3)


def test_wer_uses_whitespace_tokens():
    assert compute_ocr_metrics(["the cat sat"], ["the cat sat down"])["wer"] == pytest.approx(1 / 4)
    assert compute_ocr_metrics(["  the   cat\t"], ["the cat"])["wer"] == 0.0
    # "c" -> "d e f": one substitution and two insertions; 1 + 3 errors over 2 + 3 reference words
    assert compute_ocr_metrics(["a b", "c"], ["a c", "d e f"])["wer"] == pytest.approx(4 / 5)
    # a single-word pair is wrong as a whole, however small the character error
    assert compute_ocr_metrics(["hallo"], ["hello"])["wer"] == 1.0


def test_word_accuracy_exact_and_alnum_protocol():
    predictions = ["Hello!", "world", "", "CAFE", "it's", "l0ve", "!!", "a b"]
    references = ["hello", "world", "", "café", "ITS", "love", "?", "ab"]
    metrics = compute_ocr_metrics(predictions, references)
    # exact: only "world" and ""
    assert metrics["word_accuracy"] == pytest.approx(2 / 8)
    # alnum: Hello!, world, "", it's/ITS, !!/? (both empty) and "a b"/"ab" match; "cafe" != "caf", "l0ve" != "love"
    assert metrics["word_accuracy_ci_alnum"] == pytest.approx(6 / 8)


def test_one_minus_ned():
    # NED: hallo/hello 1/5, ""/"" 0 -> mean 0.1
    assert compute_ocr_metrics(["hallo", ""], ["hello", ""])["one_minus_ned"] == pytest.approx(0.9)
    # normalized by the longer string, so NED stays in [0, 1] where the CER would be 5
    assert compute_ocr_metrics(["abcdef"], ["a"])["one_minus_ned"] == pytest.approx(1 - 5 / 6)
    assert compute_ocr_metrics(["ab"], ["abcd"])["one_minus_ned"] == pytest.approx(0.5)
    assert compute_ocr_metrics(["abc"], [""])["one_minus_ned"] == 0.0


def test_empty_strings():
    both_empty = compute_ocr_metrics(["", ""], ["", ""])
    assert both_empty["cer"] == 0.0 and both_empty["wer"] == 0.0
    assert both_empty["word_accuracy"] == 1.0 and both_empty["word_accuracy_ci_alnum"] == 1.0
    assert both_empty["one_minus_ned"] == 1.0
    # every reference empty: the denominator is 1 (as jiwer), so the rates count the inserted characters / words
    only_insertions = compute_ocr_metrics(["abc", ""], ["", ""])
    assert only_insertions["cer"] == 3.0 and only_insertions["wer"] == 1.0
    assert only_insertions["one_minus_ned"] == pytest.approx(0.5)
    # an empty reference among others just adds its insertions to the corpus counts
    mixed = compute_ocr_metrics(["a", "xy"], ["a", ""])
    assert mixed["cer"] == 2.0 and mixed["wer"] == 1.0
    # an empty prediction deletes every reference character
    assert compute_ocr_metrics([""], ["abc"])["cer"] == 1.0


@pytest.mark.parametrize(
    "predictions, references, message",
    [
        (["a"], ["a", "b"], "same length"),
        (["a", "b"], ["a"], "same length"),
        ([], [], "empty"),
        (["a", None], ["a", "b"], "expected a str"),
    ],
)
def test_invalid_inputs_raise(predictions, references, message):
    with pytest.raises(ValueError, match=message):
        compute_ocr_metrics(predictions, references)


def test_rapidfuzz_and_pure_python_agree():
    predictions, references = _random_corpus(seed=0)
    assert compute_ocr_metrics(predictions, references, use_rapidfuzz=True) == compute_ocr_metrics(
        predictions, references, use_rapidfuzz=False
    )


def test_cer_and_wer_match_jiwer():
    jiwer = pytest.importorskip("jiwer")
    predictions, references = _random_corpus(seed=1)
    # jiwer strips strings, splits words on single spaces and refuses empty references: compare where that agrees
    pairs = [(" ".join(p.split()), " ".join(r.split())) for p, r in zip(predictions, references)]
    pairs = [(p, r) for p, r in pairs if r]
    predictions, references = [p for p, _ in pairs], [r for _, r in pairs]
    metrics = compute_ocr_metrics(predictions, references)
    assert metrics["cer"] == pytest.approx(jiwer.cer(references, predictions))
    assert metrics["wer"] == pytest.approx(jiwer.wer(references, predictions))


# --- format_metrics_table ------------------------------------------------------------------------------------------


def test_format_metrics_table():
    table = format_metrics_table({"cer": 0.012345, "word_accuracy_ci_alnum": 0.9, "num_samples": 3000})
    assert table == (
        "metric                 |  value\n"
        "-----------------------+-------\n"
        "cer                    | 0.0123\n"
        "word_accuracy_ci_alnum | 0.9000\n"
        "num_samples            |   3000"
    )
    assert format_metrics_table({"num_samples": 12.0}, precision=2).splitlines()[-1] == "num_samples |    12"
    lines = format_metrics_table(compute_ocr_metrics(["a"], ["b"])).splitlines()
    assert len(lines) == 2 + len(METRIC_NAMES)
    assert len({len(line) for line in lines}) == 1


# --- the offline evaluate modules ------------------------------------------------------------------------------------


def test_module_folders_are_packages_so_setuptools_installs_them():
    for name in EVALUATE_MODULES:
        folder = metric_module_path(name)
        assert (folder / f"{name}.py").is_file()
        assert (folder / "__init__.py").is_file()
    with pytest.raises(ValueError, match="unknown metric"):
        metric_module_path("bleu")


def test_load_metric_works_offline(monkeypatch):
    assert os.environ.get("HF_HUB_OFFLINE") == "1"

    def no_network(*args, **kwargs):
        raise AssertionError("load_metric tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    metric = load_metric("cer")
    assert metric.compute(predictions=["hallo"], references=["hello"]) == {"cer": pytest.approx(0.2)}
    assert "Levenshtein" in metric.description and metric.citation
    assert set(metric.features) == {"predictions", "references"}
    with pytest.raises(ValueError, match="unknown metric"):
        load_metric("bleu")


@pytest.mark.parametrize("seed", [0, 1])
def test_evaluate_modules_match_compute_ocr_metrics(evaluate_modules, seed):
    predictions, references = _random_corpus(seed=seed)
    # make sure the edge cases are in the corpus
    predictions += ["", "abc", "Hello!", "!!"]
    references += ["", "", "hello", "?"]
    expected = compute_ocr_metrics(predictions, references)
    results = {}
    for module in evaluate_modules.values():
        results.update(module.compute(predictions=predictions, references=references))
    assert results.pop("ned") == pytest.approx(1 - results["one_minus_ned"])
    assert results == {name: value for name, value in expected.items() if name != "num_samples"}


def test_evaluate_modules_hand_computed(evaluate_modules):
    predictions, references = ["Hello!", "the cat", ""], ["hello", "the hat sat", ""]
    assert evaluate_modules["word_accuracy"].compute(predictions=predictions, references=references) == {
        "word_accuracy": pytest.approx(1 / 3),
        "word_accuracy_ci_alnum": pytest.approx(2 / 3),
    }
    # characters: Hello!/hello 2, "the cat"/"the hat sat" 5 -> 7 / 16
    assert evaluate_modules["cer"].compute(predictions=predictions, references=references) == {
        "cer": pytest.approx(7 / 16)
    }
    # words: Hello!/hello 1, "the cat"/"the hat sat" 2 -> 3 / 4
    assert evaluate_modules["wer"].compute(predictions=predictions, references=references) == {
        "wer": pytest.approx(3 / 4)
    }
    # NED: 2/6, 5/11, 0
    ned = (2 / 6 + 5 / 11) / 3
    assert evaluate_modules["ned"].compute(predictions=predictions, references=references) == {
        "one_minus_ned": pytest.approx(1 - ned),
        "ned": pytest.approx(ned),
    }


@pytest.mark.parametrize("name", EVALUATE_MODULES)
def test_evaluate_modules_reject_bad_inputs(evaluate_modules, name):
    with pytest.raises(ValueError):
        evaluate_modules[name].compute(predictions=["a"], references=["a", "b"])
    with pytest.raises(ValueError, match="empty"):
        evaluate_modules[name].compute(predictions=[], references=[])


def test_score_reliability():
    from mambaocr_hf.metrics import format_reliability_table, score_reliability

    predictions = ["a", "b", "c", "x"]
    references = ["a", "b", "z", "y"]
    rows = score_reliability(predictions, references, [0.95, 0.7, 0.5, 0.05], thresholds=(0.0, 0.6, 0.9))
    assert [(r["threshold"], r["coverage"], r["accuracy"], r["num_in_bin"]) for r in rows] == [
        (0.0, 1.0, 0.5, 2),
        (0.6, 0.5, 1.0, 1),
        (0.9, 0.25, 1.0, 1),
    ]
    assert rows[0]["bin_accuracy"] == 0.0  # the two low-score reads are both wrong
    assert "| 0.60 | 0.500 | 1.000 | 1 | 1.000 |" in format_reliability_table(rows)
    assert score_reliability(["a"], ["a"], [0.5], thresholds=(0.0, 0.9))[1]["accuracy"] is None  # nothing kept
    with pytest.raises(ValueError, match="2 scores"):
        score_reliability(predictions, references, [0.1, 0.2])


def test_length_buckets_of_text_lines():
    from mambaocr_hf.metrics import format_length_buckets_table, length_bucket_metrics

    references = ["a" * 5, "b" * 20, "c" * 21, "d" * 40, "e" * 80, "f" * 81, "g" * 120]
    predictions = ["a" * 5, "b" * 19, "c" * 21, "x" * 40, "e" * 80, "f" * 81, "g" * 100]
    rows = length_bucket_metrics(predictions, references)
    assert [(r["bucket"], r["min_chars"], r["max_chars"], r["num_samples"]) for r in rows] == [
        ("<=20", 1, 20, 2),
        ("21-40", 21, 40, 2),
        ("41-80", 41, 80, 1),
        (">80", 81, None, 2),
    ]
    assert [r["line_accuracy"] for r in rows] == [0.5, 0.5, 1.0, 0.5]  # every character right, or the line is wrong
    assert [r["cer"] for r in rows] == [1 / 25, 40 / 61, 0.0, 20 / 201]  # corpus CER within each bucket
    assert length_bucket_metrics(["ab"], ["ab"], bounds=(10,)) == [
        {"bucket": "<=10", "min_chars": 1, "max_chars": 10, "num_samples": 1, "line_accuracy": 1.0, "cer": 0.0},
        {"bucket": ">10", "min_chars": 11, "max_chars": None, "num_samples": 0, "line_accuracy": None, "cer": None},
    ]
    table = format_length_buckets_table(rows + [length_bucket_metrics(["a"], ["a"], bounds=(1,))[1]])
    assert "| 21-40 | 2 | 50.00% | 0.6557 |" in table and "| >1 | 0 | — | — |" in table
    with pytest.raises(ValueError, match="increasing"):
        length_bucket_metrics(["a"], ["a"], bounds=(40, 20))
