import pytest
import torch

from mambaocr_hf import CHARSETS, MambaOCRTokenizer


@pytest.mark.parametrize(
    "name, size",
    [("digits", 10), ("lowercase_alphanumeric", 36), ("alphanumeric", 62), ("printable", 94), ("printable_space", 95)],
)
def test_named_charsets(name, size):
    tokenizer = MambaOCRTokenizer(charset=name)
    assert len(CHARSETS[name]) == size
    assert len(tokenizer) == size + 1
    assert tokenizer.convert_ids_to_tokens(0) == "<blank>"
    assert tokenizer.convert_tokens_to_ids(CHARSETS[name][0]) == 1  # the charset's order sets the ids


def test_the_line_charset_reads_spaces_as_a_class_of_their_own(tmp_path):
    tokenizer = MambaOCRTokenizer(charset="printable_space")
    assert CHARSETS["printable_space"][:94] == CHARSETS["printable"]  # printable's ids are kept, the space is new
    space = tokenizer.convert_tokens_to_ids(" ")
    assert space == 95 and space != tokenizer.blank_token_id
    ids = tokenizer("Exit 3, gate B.")["input_ids"]
    assert ids.count(space) == 3 and tokenizer.decode(ids, group_tokens=False) == "Exit 3, gate B."
    # CTC: two spaces need a blank between them, as any repeated class does; a blank alone is no space
    assert tokenizer.decode([11, space, space, 0, space, 12, 0, 0, 13]) == "a  bc"
    tokenizer.save_pretrained(tmp_path)
    assert MambaOCRTokenizer.from_pretrained(tmp_path)("a b")["input_ids"] == [11, space, 12]


def test_custom_charset_string_and_file(tmp_path):
    assert MambaOCRTokenizer(charset="abc").charset == "abc"
    path = tmp_path / "chars.txt"
    path.write_text("x\ny\n \nz\n", encoding="utf-8")
    tokenizer = MambaOCRTokenizer(charset=str(path))
    assert tokenizer.charset == "xy z"
    assert tokenizer.decode(tokenizer("y z")["input_ids"], group_tokens=False) == "y z"
    with pytest.raises(ValueError, match="repeats"):
        MambaOCRTokenizer(charset="abca")


def test_unknown_character_policies():
    mapped = MambaOCRTokenizer(unknown_char_policy="map")
    assert mapped.normalize_text("Café-Öl!") == "cafeol"
    dropped = MambaOCRTokenizer(unknown_char_policy="drop")
    assert dropped.normalize_text("Café") == "af"  # upper-case C and é are both outside the charset
    strict = MambaOCRTokenizer(unknown_char_policy="error")
    assert strict.normalize_text("cafe") == "cafe"
    with pytest.raises(ValueError, match=r"outside the tokenizer's charset: \['!', 'C'\]"):
        strict("Cafe!")
    with pytest.raises(ValueError, match="unknown_char_policy"):
        MambaOCRTokenizer(unknown_char_policy="ignore")
    assert MambaOCRTokenizer(char_map={"€": "e"}).normalize_text("€5") == "e5"
    upper = MambaOCRTokenizer(charset="ABC")
    assert upper.normalize_text("abc") == "ABC"


def test_ctc_decoding_collapses_repeats_then_drops_blanks():
    tokenizer = MambaOCRTokenizer()
    a, b = tokenizer.convert_tokens_to_ids(["a", "b"])
    assert tokenizer.decode([0, a, a, 0, a, b, b, 0]) == "aab"
    assert tokenizer.decode(torch.tensor([a, a, b])) == "ab"
    assert tokenizer.decode([a, a, b, -100, -100], group_tokens=False) == "aab"  # labels: no collapsing
    out = tokenizer.decode([0, a, a, 0, b], output_char_offsets=True)
    assert out["text"] == "ab"
    assert out["char_offsets"] == [
        {"char": "a", "start_frame": 1, "end_frame": 3},
        {"char": "b", "start_frame": 4, "end_frame": 5},
    ]
    assert tokenizer.batch_decode([[a, 0, b], [0, 0, 0]]) == ["ab", ""]
    with pytest.raises(ValueError, match="outside the vocabulary"):
        tokenizer.decode([99])


def test_save_and_load(tmp_path):
    tokenizer = MambaOCRTokenizer(charset="printable", unknown_char_policy="error")
    tokenizer.save_pretrained(tmp_path)
    assert (tmp_path / "vocab.json").is_file()
    loaded = MambaOCRTokenizer.from_pretrained(tmp_path)
    assert loaded.get_vocab() == tokenizer.get_vocab()
    assert loaded.unknown_char_policy == "error"
    assert loaded("Hi!")["input_ids"] == tokenizer("Hi!")["input_ids"]


def test_bad_vocab_file(tmp_path):
    path = tmp_path / "vocab.json"
    path.write_text('{"a": 0, "<blank>": 1}', encoding="utf-8")
    with pytest.raises(ValueError, match="blank"):
        MambaOCRTokenizer(vocab_file=str(path))


def test_custom_blank_token_survives_save_and_load(tmp_path):
    # transformers 5 reads a saved `*_token` into `model_specific_special_tokens`: the blank must come back from there
    tokenizer = MambaOCRTokenizer(blank_token="[_]")
    tokenizer.save_pretrained(tmp_path)
    loaded = MambaOCRTokenizer.from_pretrained(tmp_path)
    assert loaded.blank_token == "[_]" and loaded.get_vocab() == tokenizer.get_vocab()
    assert loaded.decode([0, 11, 11, 0, 11]) == "aa"


def test_decomposed_accents_are_the_charset_characters(caplog):
    """NFD text ("e" + combining acute, as macOS file names and scraped labels have it) reads as the "é" it shows."""
    import unicodedata

    from mambaocr_hf.peft_utils import find_new_characters

    nfd = unicodedata.normalize("NFD", "café")
    assert len(nfd) == 5
    accented = MambaOCRTokenizer(charset="abcdefé", unknown_char_policy="error")
    assert accented.normalize_text(nfd) == "café"
    assert MambaOCRTokenizer().normalize_text(nfd) == "cafe"  # the default map policy folds the accent
    assert find_new_characters([nfd], MambaOCRTokenizer(charset="abcdef", unknown_char_policy="drop")) == "é"
    assert find_new_characters([nfd], accented) == ""


def test_unknown_characters_warn_once_and_added_tokens_are_refused(caplog):
    tokenizer = MambaOCRTokenizer()
    with caplog.at_level("WARNING"):
        for index in range(50):
            tokenizer.normalize_text(f"word {index}!")
    assert sum("outside the charset" in record.getMessage() for record in caplog.records) == 1
    with pytest.raises(ValueError, match="does not take added tokens.*extend_charset"):
        tokenizer.add_tokens(["€"])
    assert tokenizer.add_tokens(["a"]) == 0 and len(tokenizer) == 37  # a character of the charset adds nothing


def test_text_that_spells_a_special_token_is_characters():
    tokenizer = MambaOCRTokenizer(charset="printable")
    ids = tokenizer(["<blank>"])["input_ids"][0]
    assert len(ids) == 7 and 0 not in ids  # not the CTC blank, which would make the label empty
    assert tokenizer.decode(ids, group_tokens=False) == "<blank>"


def test_decode_batches_and_refuses_logits():
    tokenizer = MambaOCRTokenizer()
    assert tokenizer.decode([[11, 12], [13]]) == ["ab", "c"]  # transformers 5's decode takes a batch too
    assert tokenizer.batch_decode(torch.tensor([[11, 0, 11], [12, 12, 0]])) == ["aa", "b"]
    with pytest.raises(TypeError, match=r"processor.batch_decode\(logits\)"):
        tokenizer.batch_decode(torch.randn(1, 5, 37))
    with pytest.raises(TypeError, match=r"processor.batch_decode\(logits\)"):
        tokenizer.decode(torch.randn(5))
