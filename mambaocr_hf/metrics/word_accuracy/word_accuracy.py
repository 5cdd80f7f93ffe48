# Copyright 2026 The MambaOCR authors. Licensed under the Apache License, Version 2.0.
"""Word accuracy for text recognition, exact and with the scene-text benchmark protocol, as a self-contained
`evaluate` module (loaded offline by `mambaocr_hf.metrics.load_metric("word_accuracy")`; it imports nothing from the
package)."""

import re

import datasets
import evaluate

_CITATION = """\
@inproceedings{baek2019wrong,
    author = {Baek, Jeonghun and Kim, Geewook and Lee, Junyeop and Park, Sungrae and Han, Dongyoon and Yun, Sangdoo and
              Oh, Seong Joon and Lee, Hwalsuk},
    title = {What Is Wrong With Scene Text Recognition Model Comparisons? Dataset and Model Analysis},
    booktitle = {International Conference on Computer Vision (ICCV)},
    year = {2019}
}
@inproceedings{bautista2022parseq,
    author = {Bautista, Darwin and Atienza, Rowel},
    title = {Scene Text Recognition with Permuted Autoregressive Sequence Models},
    booktitle = {European Conference on Computer Vision (ECCV)},
    year = {2022}
}
"""

_DESCRIPTION = """\
Word accuracy: the fraction of predictions that equal their reference. `word_accuracy` compares the strings exactly;
`word_accuracy_ci_alnum` follows the scene-text benchmark protocol of clovaai's deep-text-recognition-benchmark and
PARSeq: both strings are lower-cased and every character outside [0-9a-z] is removed before comparing (two strings
that become empty match).
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `str`): recognized texts.
    references (`list` of `str`): ground-truth texts, one per prediction.
Returns:
    word_accuracy (`float`): fraction of exact matches, in [0, 1].
    word_accuracy_ci_alnum (`float`): fraction of case-insensitive alphanumeric matches, in [0, 1].
Examples:
    >>> accuracy = mambaocr_hf.metrics.load_metric("word_accuracy")
    >>> accuracy.compute(predictions=["Hello!", "world"], references=["hello", "world"])
    {'word_accuracy': 0.5, 'word_accuracy_ci_alnum': 1.0}
"""

_NOT_ALNUM = re.compile(r"[^0-9a-z]")


def _normalize_alnum(text: str) -> str:
    """Lower-case, then drop every character outside [0-9a-z]."""
    return _NOT_ALNUM.sub("", text.lower())


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class WordAccuracy(evaluate.Metric):
    """Exact and case-insensitive alphanumeric word accuracy."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": datasets.Value("string")}
            ),
            reference_urls=[
                "https://github.com/clovaai/deep-text-recognition-benchmark",
                "https://github.com/baudm/parseq",
            ],
        )

    def _compute(self, predictions: list[str], references: list[str]) -> dict[str, float]:
        if not references:
            raise ValueError("predictions and references are empty: there is nothing to evaluate")
        exact = sum(p == r for p, r in zip(predictions, references))
        alnum = sum(_normalize_alnum(p) == _normalize_alnum(r) for p, r in zip(predictions, references))
        return {"word_accuracy": exact / len(references), "word_accuracy_ci_alnum": alnum / len(references)}
