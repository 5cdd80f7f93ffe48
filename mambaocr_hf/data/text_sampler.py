# Copyright 2026 The MambaOCR authors. Licensed under the Apache License, Version 2.0.
"""The strings the synthetic generator renders, with scene-text statistics: words (upper case and capitalised as
often as lower case), two-word strings, numbers, prices, phone numbers, dates, short codes, punctuation and random
strings that cover every character of the charset, restricted to what the tokenizer's charset can label; and text
lines of such strings separated by spaces (`TextSampler.sample_line`)."""

from __future__ import annotations

import os
import string
from collections.abc import Callable, Collection, Mapping, Sequence
from importlib import resources

import numpy as np

_WORD_LISTS = ("nounlist.txt", "adjectivelist.txt", "verblist.txt")  # wonderwords' lists (MIT); never its profanity
_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_CURRENCIES = "$€£¥"
# kinds of string and how often each is drawn
TEXT_KINDS = {
    "word": 0.50,
    "two_words": 0.06,
    "alphanumeric": 0.08,
    "number": 0.08,
    "phone": 0.03,
    "code": 0.06,
    "date": 0.04,
    "price": 0.04,
    "punctuated": 0.07,
    "any_characters": 0.04,
}
# what a text line is made of, and how often each piece is drawn (words with punctuation, as in prose and on signs)
_LINE_PIECES = {
    "word": 0.74,
    "number": 0.07,
    "code": 0.05,
    "price": 0.03,
    "date": 0.03,
    "phone": 0.02,
    "punctuated": 0.04,
    "alphanumeric": 0.02,
}
# the case of a word drawn alone: signs and shop fronts are mostly capitals
WORD_CASES = {"upper": 0.35, "capitalised": 0.25, "lower": 0.40}
# the label lengths of the words of ICDAR 2003/2013, IIIT5K and SVT's training splits (10,867 crops, 3 characters
# and more): `word_length_weights="scene_text"` draws the word list's words with these lengths (mean 5.3, against
# the list's 7.0)
SCENE_TEXT_WORD_LENGTHS = {
    3: 0.189,
    4: 0.242,
    5: 0.159,
    6: 0.138,
    7: 0.115,
    8: 0.066,
    9: 0.041,
    10: 0.024,
    11: 0.013,
    12: 0.007,
    13: 0.004,
    14: 0.002,
}
# the case of a whole line: prose (first word capitalised), lower, Title Case, CAPITALS (signs), or mixed per word
_LINE_CASES = {"sentence": 0.45, "lower": 0.15, "title": 0.15, "upper": 0.15, "mixed": 0.10}
_TRAILING_MARKS = ",,,,..;:!?"  # after a word inside a line (commas most often)
_LINE_ENDS = "....!?:"  # at the end of a line


def check_weights(name: str, weights: Mapping[str, float], known: Collection[str]) -> tuple[list[str], np.ndarray]:
    """The names and normalised probabilities of `weights`, checked against the `known` names: a `ValueError`
    names the knob for an unknown name, a negative weight or weights that are all 0."""
    unknown = sorted(set(weights) - set(known))
    if unknown or any(weight < 0 for weight in weights.values()) or not any(weights.values()):
        raise ValueError(
            f"`{name}` takes non-negative weights, not all 0, for {list(known)}; got {dict(weights)}"
            + (f" (unknown: {unknown})." if unknown else ".")
        )
    names = [key for key in known if key in weights]
    probabilities = np.array([float(weights[key]) for key in names])
    return names, probabilities / probabilities.sum()


def length_weights(weights: Mapping[int | str, float]) -> dict[int, float]:
    """`{length: weight}` with integer lengths (JSON gives them as strings), checked."""
    try:
        lengths = {int(length): float(weight) for length, weight in weights.items()}
    except (AttributeError, TypeError, ValueError) as error:
        raise ValueError(
            f"`word_length_weights` maps word lengths to weights, e.g. {{3: 0.2, 4: 0.25}}, got {weights!r}."
        ) from error
    if any(length < 1 or weight < 0 for length, weight in lengths.items()) or not any(lengths.values()):
        raise ValueError(
            f"`word_length_weights` takes lengths of at least 1 and non-negative weights, not all 0, got {weights}."
        )
    return lengths


def default_words() -> list[str]:
    """English words from the `wonderwords` package (nouns, adjectives, verbs; about 8,700)."""
    words: list[str] = []
    for name in _WORD_LISTS:
        text = (resources.files("wonderwords") / "assets" / name).read_text(encoding="utf-8")
        words.extend(line.strip() for line in text.splitlines() if line.strip())
    return sorted(set(words))


def load_words(words: str | os.PathLike | Sequence[str] | None) -> list[str]:
    """A word list: the default one (`None`), a text file with one word per line, or the words themselves."""
    if words is None:
        return default_words()
    if isinstance(words, (str, os.PathLike)):
        with open(words, encoding="utf-8") as handle:
            return [line.strip() for line in handle if line.strip()]
    return [word for word in words if word]


class TextSampler:
    """Draws strings whose every character maps into the charset, with their labels.

    A character may be drawn when `normalize` maps it to exactly one charset character: with a lower-case charset
    upper-case letters are drawn too (and labelled in lower case), accented letters fold to their base letter, and
    characters that would be dropped (spaces or punctuation a charset lacks) are never drawn, so the label always
    says what the image shows.

    Args:
        charset: the tokenizer's characters.
        normalize: the tokenizer's folding (`MambaOCRTokenizer.normalize_text` under the `"map"` policy).
        words: the word list (`load_words`).
        max_length: longest label drawn.
        kind_weights: how often each kind of string is drawn (`TEXT_KINDS`: words, two-word strings, numbers,
            prices, codes, ...); defaults to `TEXT_KINDS`' own weights.
        case_weights: how often a word drawn alone is in capitals, capitalised or lower case (`WORD_CASES`).
        word_length_weights: how often a word of each length is drawn (`{length: weight}`, then uniformly among
            the list's words of that length), or `None` for every word of the list equally often.
    """

    def __init__(
        self,
        charset: str,
        normalize: Callable[[str], str],
        words: Sequence[str],
        max_length: int = 25,
        kind_weights: Mapping[str, float] | None = None,
        case_weights: Mapping[str, float] | None = None,
        word_length_weights: Mapping[int | str, float] | None = None,
    ) -> None:
        if max_length < 1:
            raise ValueError(f"`max_length` must be at least 1, got {max_length}.")
        self._kinds, self._kind_p = check_weights(
            "kind_weights", TEXT_KINDS if kind_weights is None else kind_weights, TEXT_KINDS
        )
        cases = dict(
            zip(*check_weights("case_weights", WORD_CASES if case_weights is None else case_weights, WORD_CASES))
        )
        upper, capitalised = cases.get("upper", 0.0), cases.get("capitalised", 0.0)
        self._case_thresholds = (upper, upper + capitalised)  # upper, then capitalised, else lower
        self.charset = charset
        self.normalize = normalize
        self.max_length = max_length
        candidates = set(charset) | {c.upper() for c in charset} | {c.lower() for c in charset}
        candidates |= set(string.printable[:95]) | set(_CURRENCIES)
        self.drawable = "".join(sorted(c for c in candidates if self._maps_to_one(c)))
        if not self.drawable:
            raise ValueError(f"No character can be drawn for the charset {charset!r}.")
        self._drawable_set = set(self.drawable)
        self.letters = "".join(c for c in self.drawable if c.isalpha())
        self.digits = "".join(c for c in self.drawable if c.isdigit())
        self.alphanumerics = self.letters + self.digits
        self.punctuation = "".join(c for c in self.drawable if c in string.punctuation)
        self.words = [word for word in words if self.can_draw(word)]
        self._words_by_length: tuple[list[list[str]], np.ndarray] | None = None
        if word_length_weights is not None and self.words:  # (a charset without letters draws no words)
            self._words_by_length = self._group_by_length(word_length_weights)
        self._has_upper = any(c.isupper() for c in self.drawable)
        self._has_lower = any(c.islower() for c in self.drawable)
        # a line's words are drawn apart whatever the charset; its label has the spaces only when the charset does
        self.has_space = " " in self._drawable_set

    def _maps_to_one(self, char: str) -> bool:
        if char.isspace() and char != " ":
            return False
        try:
            folded = self.normalize(char)
        except ValueError:
            return False
        return len(folded) == 1 and folded in self.charset

    def can_draw(self, text: str) -> bool:
        """Whether every character of `text` can be drawn (and `text` is not blank or too long)."""
        return 0 < len(text) <= self.max_length and text.strip() == text and set(text) <= self._drawable_set

    def label(self, text: str) -> str:
        """The label of a drawn string."""
        return self.normalize(text)

    # kinds of string; each returns a candidate that `sample` checks with `can_draw`

    def _group_by_length(self, weights: Mapping[int | str, float]) -> tuple[list[list[str]], np.ndarray]:
        """The list's words grouped by the lengths `weights` names, with each group's probability (lengths the
        list has no word of are left out); a `ValueError` when it has no word of any of them."""
        lengths = length_weights(weights)
        groups: dict[int, list[str]] = {}
        for word in self.words:
            length = len(self.label(word))
            if lengths.get(length, 0) > 0:
                groups.setdefault(length, []).append(word)
        if not groups:
            raise ValueError(
                f"The word list has no word of the lengths `word_length_weights` draws ({sorted(lengths)}); its "
                f"words are {min(map(len, self.words))}-{max(map(len, self.words))} characters long."
            )
        ordered = sorted(groups)
        probabilities = np.array([lengths[length] for length in ordered])
        return [groups[length] for length in ordered], probabilities / probabilities.sum()

    def _case(self, word: str, rng: np.random.Generator) -> str:
        choice = rng.random()
        if choice < self._case_thresholds[0] and self._has_upper:
            return word.upper()
        if choice < self._case_thresholds[1] and self._has_upper:
            return word[:1].upper() + word[1:]
        return word.lower() if self._has_lower else word

    def _list_word(self, rng: np.random.Generator) -> str:
        """A word of the list: uniformly, or first a length by `word_length_weights`."""
        if self._words_by_length is None:
            return self.words[rng.integers(len(self.words))]
        groups, probabilities = self._words_by_length
        group = groups[rng.choice(len(groups), p=probabilities)]
        return group[rng.integers(len(group))]

    def _word(self, rng: np.random.Generator) -> str:
        if not self.words:
            return self._alphanumeric(rng)
        return self._case(self._list_word(rng), rng)

    def _two_words(self, rng: np.random.Generator) -> str:
        joiner = " -'&/."[rng.integers(6)]
        if joiner not in self._drawable_set:
            joiner = ""
        return self._word(rng) + joiner + self._word(rng)

    def _random_string(self, alphabet: str, rng: np.random.Generator, low: int = 1, high: int = 10) -> str:
        if not alphabet:
            return ""
        length = int(rng.integers(low, high + 1))
        return "".join(alphabet[i] for i in rng.integers(len(alphabet), size=length))

    def _alphanumeric(self, rng: np.random.Generator) -> str:
        alphabet = self.alphanumerics if rng.random() < 0.7 else (self.letters or self.digits)
        return self._random_string(alphabet or self.drawable, rng)

    def _number(self, rng: np.random.Generator) -> str:
        digits = int(rng.integers(1, 8))
        number = str(int(rng.integers(10 ** (digits - 1) if digits > 1 else 0, 10**digits)))
        choice = rng.random()
        if choice < 0.3 and "," in self._drawable_set and len(number) > 3:
            number = f"{int(number):,}"
        elif choice < 0.6:
            separator = "." if rng.random() < 0.7 else ","
            number += separator + str(int(rng.integers(0, 100))).zfill(2)
        if rng.random() < 0.1:
            number = "-+"[rng.integers(2)] + number
        if rng.random() < 0.1:
            number += "%"
        return number

    def _date(self, rng: np.random.Generator) -> str:
        day, month, year = int(rng.integers(1, 29)), int(rng.integers(1, 13)), int(rng.integers(1950, 2040))
        forms = [
            f"{day:02d}/{month:02d}/{year}",
            f"{year}-{month:02d}-{day:02d}",
            f"{day:02d}.{month:02d}.{year % 100:02d}",
            f"{month}/{day}/{year % 100:02d}",
            f"{day} {self._case(_MONTHS[month - 1], rng)} {year}",
            f"{self._case(_MONTHS[month - 1], rng)} {day}",
            f"{day:02d}:{month:02d}",  # a time of day, near enough
        ]
        drawable = [form for form in forms if set(form) <= self._drawable_set]
        if not drawable:
            return f"{day:02d}{month:02d}{year}"
        return drawable[rng.integers(len(drawable))]

    def _price(self, rng: np.random.Generator) -> str:
        amount = f"{rng.integers(0, 10 ** int(rng.integers(1, 5)))}"
        if rng.random() < 0.7:
            amount += ("." if rng.random() < 0.6 else ",") + f"{int(rng.integers(0, 100)):02d}"
        symbols = [c for c in _CURRENCIES if c in self._drawable_set]
        if not symbols:
            return amount
        symbol = symbols[rng.integers(len(symbols))]
        return symbol + amount if rng.random() < 0.7 else amount + symbol

    def _phone(self, rng: np.random.Generator) -> str:
        digits = lambda count: "".join(str(d) for d in rng.integers(0, 10, size=count))  # noqa: E731
        forms = [
            f"{digits(3)}-{digits(4)}",
            f"({digits(3)}) {digits(3)}-{digits(4)}",
            f"{digits(3)}.{digits(3)}.{digits(4)}",
            f"+{digits(2)} {digits(3)} {digits(4)}",
            f"0{digits(2)} {digits(4)} {digits(4)}",
            digits(int(rng.integers(7, 12))),
        ]
        drawable = [form for form in forms if set(form) <= self._drawable_set]
        return drawable[rng.integers(len(drawable))] if drawable else digits(8)

    def _code(self, rng: np.random.Generator) -> str:
        """Short codes of signs and labels: 'A12', 'B-4', 'EXIT 3', 'km/h', 'No.5', '24H'."""
        upper = "".join(c for c in self.letters if c.isupper()) or self.letters
        if not upper:
            return self._number(rng)
        letters = lambda count: "".join(upper[i] for i in rng.integers(len(upper), size=count))  # noqa: E731
        number = str(int(rng.integers(1, 1000)))
        forms = [
            letters(1) + number,
            letters(int(rng.integers(1, 4))) + "-" + number,
            number + letters(1),
            letters(2) + number + letters(1),
            f"No.{number}",
            f"{number}H",
            f"{self._word(rng).upper()} {number}",
            "km/h",
            f"{number}kg",
            f"{number}m",
        ]
        drawable = [form for form in forms if self.can_draw(form)]
        return drawable[rng.integers(len(drawable))] if drawable else self._alphanumeric(rng)

    def _punctuated(self, rng: np.random.Generator) -> str:
        if not self.punctuation:
            return self._word(rng)
        word = self._word(rng)
        mark = self.punctuation[rng.integers(len(self.punctuation))]
        forms = [word + mark, mark + word, f"({word})", f'"{word}"', f"{word}'s", f"#{rng.integers(1, 1000)}"]
        forms += [f"{word}{mark}{self._word(rng)}", f"{word}{mark}{mark}", f"@{word}"]
        return forms[rng.integers(len(forms))]

    def _any_characters(self, rng: np.random.Generator) -> str:
        return self._random_string(self.drawable.replace(" ", ""), rng, 1, 8)

    def sample(self, rng: np.random.Generator) -> tuple[str, str]:
        """One string to draw and its label."""
        for _ in range(20):
            kind = self._kinds[rng.choice(len(self._kinds), p=self._kind_p)]
            text = getattr(self, f"_{kind}")(rng)
            if self.can_draw(text) and self.label(text):
                return text, self.label(text)
        text = self._random_string(self.alphanumerics or self.drawable.replace(" ", ""), rng, 1, self.max_length)
        return text, self.label(text)

    # text lines

    def can_draw_line(self, text: str) -> bool:
        """Whether `text` can be drawn as a line: every character drawable (the space always is: without it in the
        charset, the label leaves it out), single spaces between non-blank pieces."""
        return (
            bool(text)
            and text == " ".join(text.split(" "))
            and all(text.split(" "))
            and set(text.replace(" ", "")) <= self._drawable_set
        )

    def line_label(self, text: str) -> str:
        """The label of a drawn line: `label`, without the spaces when the charset has none (a gap between words
        is then no character the model can emit, as in the scene-text benchmarks' labels)."""
        return self.label(text if self.has_space else text.replace(" ", ""))

    def _line_length(self, piece: str) -> int:
        return len(piece) if self.has_space else len(piece) - piece.count(" ")

    def _line_word(self, rng: np.random.Generator, case: str, first: bool) -> str:
        word = self._list_word(rng) if self.words else self._alphanumeric(rng)
        if case == "mixed" or not (self._has_upper and self._has_lower):
            word = self._case(word, rng)
        elif case == "upper":
            word = word.upper()
        elif case == "title" or (case == "sentence" and first):
            word = word[:1].upper() + word[1:].lower()
        else:
            word = word.lower()
        choice = rng.random()
        if choice < 0.12:  # a comma, full stop, ... after the word
            marks = [mark for mark in _TRAILING_MARKS if mark in self._drawable_set]
            word += marks[rng.integers(len(marks))] if marks else ""
        elif choice < 0.16:  # a word in brackets or quotes
            pairs = [pair for pair in ("()", '""', "''", "[]") if set(pair) <= self._drawable_set]
            if pairs:
                pair = pairs[rng.integers(len(pairs))]
                word = pair[0] + word + pair[1]
        elif choice < 0.19 and "-" in self._drawable_set and self.words:  # a hyphenated compound
            word += "-" + self.words[rng.integers(len(self.words))].lower()
        return word

    def _line_piece(self, rng: np.random.Generator, case: str, first: bool) -> str:
        """One piece of a line (a word with its punctuation, a number, a date, ...), or "" when none can be drawn."""
        kinds = list(_LINE_PIECES)
        probabilities = np.array(list(_LINE_PIECES.values()))
        for _ in range(10):
            kind = kinds[rng.choice(len(kinds), p=probabilities / probabilities.sum())]
            piece = self._line_word(rng, case, first) if kind == "word" else getattr(self, f"_{kind}")(rng)
            if case == "upper" and self._has_upper and self.can_draw_line(piece.upper()):
                piece = piece.upper()
            if self.can_draw_line(piece) and self.line_label(piece):
                return piece
        return ""

    def sample_line(self, rng: np.random.Generator, min_chars: int, max_chars: int) -> tuple[str, str]:
        """A text line to draw and its label, of `min_chars` to `max_chars` label characters (a length drawn
        uniformly): words with punctuation, numbers, prices, dates and codes, one space apart, in one case style for
        the whole line (prose, lower, Title, CAPITALS or mixed). Every character is one the charset labels; the
        space is in the label only when the charset has it (`line_label`)."""
        if not 1 <= min_chars <= max_chars:
            raise ValueError(f"A line needs 1 <= min_chars <= max_chars, got {min_chars} and {max_chars}.")
        target = int(rng.integers(min_chars, max_chars + 1))
        cases = list(_LINE_CASES)
        case = cases[rng.choice(len(cases), p=np.array(list(_LINE_CASES.values())))]
        separator = 1 if self.has_space else 0
        pieces: list[str] = []
        length, misses = 0, 0
        while length < target and misses < 8:  # pieces that fit; a few misses at the end, then the line is full
            piece = self._line_piece(rng, case, first=not pieces)
            size = self._line_length(piece) + (separator if pieces else 0)
            if not piece or length + size > target:
                misses += 1
                continue
            pieces.append(piece)
            length += size
        ends = [mark for mark in _LINE_ENDS if mark in self._drawable_set]
        if pieces and ends and length < target and pieces[-1][-1].isalnum() and rng.random() < 0.4:
            pieces[-1] += ends[rng.integers(len(ends))]
            length += 1
        if length < min_chars:  # too few pieces fitted: a code of the characters missing completes the line
            missing = min_chars - length
            alphabet = self.alphanumerics or self.drawable.replace(" ", "")
            if pieces and missing > separator:
                pieces.append(self._random_string(alphabet, rng, missing - separator, missing - separator))
            elif pieces:
                pieces[-1] += self._random_string(alphabet, rng, missing, missing)
            else:
                pieces.append(self._random_string(alphabet, rng, missing, missing))
        text = " ".join(pieces)
        return text, self.line_label(text)


__all__ = [
    "SCENE_TEXT_WORD_LENGTHS",
    "TEXT_KINDS",
    "WORD_CASES",
    "TextSampler",
    "check_weights",
    "default_words",
    "length_weights",
    "load_words",
]
