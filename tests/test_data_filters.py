"""Sample checks shared by the data sources and the collator."""

import io
import logging
import pickle

import pytest
from PIL import Image

from mambaocr_hf import MambaOCRImageProcessor, MambaOCRProcessor, MambaOCRTokenizer
from mambaocr_hf.data import (
    BadSampleError,
    LabelNormalizer,
    OCRDataCollator,
    SampleFilter,
    ctc_frames,
    ctc_frames_needed,
    label_change_counts,
    skip_counts,
)
from mambaocr_hf.data.filters import image_size, reset_skip_counts


def _png(width, height):
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), "white").save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.parametrize("size", [(1, 50), (16, 32), (100, 32), (37, 13), (5000, 32), (640, 20), (9, 64), (3, 3)])
def test_ctc_frames_match_the_image_processor(size):
    processor = MambaOCRImageProcessor()
    assert ctc_frames(*size) == processor.target_width(*size) // 4
    custom = MambaOCRImageProcessor(image_height=48, min_width=8, max_width=512, width_multiple=8)
    assert ctc_frames(*size, image_height=48, min_width=8, max_width=512, frame_stride=8) == (
        custom.target_width(*size) // 8
    )


def test_ctc_frames_needed_counts_a_blank_between_repeats():
    assert ctc_frames_needed("abc") == 3
    assert ctc_frames_needed("hello") == 6  # "ll"
    assert ctc_frames_needed("aaa") == 5
    assert ctc_frames_needed("") == 0


def test_label_normalizer_policies():
    tokenizer = MambaOCRTokenizer()  # 36 lower-case alphanumerics
    assert LabelNormalizer.from_tokenizer(tokenizer)("Café-42") == "cafe42"  # map: fold, then remove
    assert LabelNormalizer.from_tokenizer(tokenizer, "drop")("Café") is None  # drop: the whole sample
    assert LabelNormalizer.from_tokenizer(tokenizer, "drop")("cafe") == "cafe"
    with pytest.raises(ValueError, match="outside the charset"):
        LabelNormalizer.from_tokenizer(tokenizer, "error")("Café")
    printable = LabelNormalizer.from_tokenizer(MambaOCRTokenizer(charset="printable"))
    assert printable("It´s CAFÉ!") == "ItsCAFE!"
    normalizer = LabelNormalizer("abc", char_map={"x": "a"})
    normalizer.fold("x")  # builds the folding tokenizer
    assert pickle.loads(pickle.dumps(normalizer)) == normalizer
    with pytest.raises(ValueError, match="unknown_char_policy"):
        LabelNormalizer("abc", "ignore")


def test_sample_filter_skips_and_counts_each_bad_case():
    reset_skip_counts()
    processor = MambaOCRProcessor.from_defaults()
    # widen=False: the CTC check drops narrow crops (by default they are widened instead, below)
    sample_filter = SampleFilter.from_processor(processor, unknown_char_policy="drop", name="unit", widen=False)
    good = _png(64, 32)
    assert sample_filter.check_encoded("  hello\r\n", good, "good") == "hello"
    assert sample_filter.check_encoded("Hello", good, "upper case") is None  # drop: no folding, as the tokenizer
    assert sample_filter.check_encoded("word", None, "missing") is None
    assert sample_filter.check_encoded("word", b"", "zero bytes") is None
    assert sample_filter.check_encoded("word", b"not an image", "garbage") is None
    assert sample_filter.check_encoded("word", _png(64, 32)[:60], "truncated") is None
    assert sample_filter.check_encoded("   ", good, "blank") is None
    assert sample_filter.check_encoded(None, good, "no label") is None
    assert sample_filter.check_encoded("héllo", good, "unknown") is None  # drop policy: the sample goes
    assert sample_filter.check_encoded("word", _png(2000, 4), "wide") is None
    assert sample_filter.check_encoded("word", _png(4, 64), "tall") is None
    assert sample_filter.check_encoded("abcdefgh", _png(16, 32), "narrow") is None  # 4 frames < 8
    assert sample_filter.check_encoded("aabb", _png(24, 32), "fits") == "aabb"  # 6 frames == 4 + 2 repeats
    assert sample_filter.check_encoded("aaabb", _png(24, 32), "repeats") is None  # needs 5 + 3
    assert skip_counts("unit") == {
        "missing_image": 1,
        "unreadable_image": 3,
        "empty_label": 2,
        "unknown_characters": 2,
        "extreme_aspect_ratio": 2,
        "label_too_long_for_ctc": 2,
    }
    assert sample_filter.skip_stats.kept == 2
    mapped = SampleFilter.from_processor(processor, name="unit-map")
    assert mapped.check_encoded("  Hello\r\n", good, "folded") == "hello"
    assert mapped.check_encoded("...", good, "only punctuation") is None
    assert skip_counts("unit-map") == {"label_emptied_by_charset": 1}
    widening = SampleFilter.from_processor(processor, name="unit-widen")
    assert widening.check_encoded("abcdefgh", _png(16, 32), "narrow") == "abcdefgh"  # the collator widens it
    assert widening.check_encoded("aaabb", _png(24, 32), "repeats") == "aaabb"
    assert skip_counts("unit-widen") == {}
    short = SampleFilter(max_label_length=3, name="unit-short")
    assert short.check_encoded("abcd", good, "long") is None
    assert skip_counts("unit-short") == {"label_too_long": 1}


def test_characters_removed_by_the_map_policy_are_counted_and_logged(caplog):
    """Under the default "map" policy "ab€cd" trains as "abcd": the sample is kept (that is the policy), but it is
    now counted under its own reason and the first one is logged, as skips are. Folding alone ("É" → "e") is no
    removal."""
    reset_skip_counts()
    sample_filter = SampleFilter.from_processor(MambaOCRProcessor.from_defaults(), name="unit-removed")
    good = _png(96, 32)
    with caplog.at_level(logging.WARNING):
        assert sample_filter.check_encoded("ab€cd", good, "first") == "abcd"
        assert sample_filter.check_encoded("Éte\u0301", good, "folded") == "ete"  # case, accents: folded only
        assert sample_filter.check_encoded("x€y", good, "second") == "xy"
        assert sample_filter.check_encoded("q€", None, "skipped anyway") is None  # counted as a skip only
    assert label_change_counts("unit-removed") == {"characters_removed": 2}
    assert skip_counts("unit-removed") == {"missing_image": 1}
    assert sample_filter.skip_stats.kept == 3
    messages = [record.getMessage() for record in caplog.records if "trains as" in record.getMessage()]
    assert len(messages) == 1 and "'ab€cd' trains as 'abcd'" in messages[0] and "'€'" in messages[0]
    assert "kept with a changed label: 2 characters_removed" in sample_filter.skip_stats.summary()
    # the collator counts it too, for rows that did not come through a loader
    collator = OCRDataCollator(MambaOCRProcessor.from_defaults())
    collator([{"image": Image.new("RGB", (96, 32), "white"), "text": "ab€cd"}])
    assert collator.sample_filter.skip_stats.changed == {"characters_removed": 1}
    assert LabelNormalizer("abc").removed_characters("aé€b") == ["é", "€"]


def test_strict_policies_raise():
    strict = SampleFilter(bad_sample_policy="raise", name="strict")
    with pytest.raises(BadSampleError, match="cannot be decoded"):
        strict.check_encoded("word", b"garbage", "garbage")
    error_policy = SampleFilter.from_processor(MambaOCRProcessor.from_defaults(), unknown_char_policy="error")
    with pytest.raises(ValueError, match="outside the charset"):
        error_policy.check_encoded("héllo", _png(64, 32), "unknown")
    with pytest.raises(ValueError, match="bad_sample_policy"):
        SampleFilter(bad_sample_policy="ignore")


def test_decompression_bombs_are_skipped_not_fatal(monkeypatch, tmp_path):
    """PIL refuses images of more than 2 * MAX_IMAGE_PIXELS pixels (a `DecompressionBombError`, not an OSError): a
    source skips such a sample as unreadable, the collator leaves it out of its batch, inference names the file."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    bomb = _png(100, 32)  # 3200 pixels > 2 * 1000
    with pytest.raises(ValueError, match="too many pixels to decode safely.*MAX_IMAGE_PIXELS"):
        image_size(bomb)
    reset_skip_counts()
    sample_filter = SampleFilter.from_processor(MambaOCRProcessor.from_defaults(), name="unit-bomb")
    assert sample_filter.check_encoded("word", bomb, "bomb") is None
    assert sample_filter.check_encoded("word", _png(30, 32), "small") == "word"
    assert skip_counts("unit-bomb") == {"unreadable_image": 1}
    processor = MambaOCRProcessor.from_defaults()
    collator = OCRDataCollator(processor)
    batch = collator([{"image": {"bytes": bomb, "path": None}, "text": "bomb"}, {"image": _png(30, 32), "text": "ok"}])
    assert batch["pixel_values"].shape[0] == 1 and collator.dropped == {"unreadable_image": 1}
    path = tmp_path / "bomb.png"
    path.write_bytes(bomb)
    with pytest.raises(ValueError, match=r"Image 0: .*bomb.png.* too many pixels.*MAX_IMAGE_PIXELS"):
        processor(images=[str(path)])


def test_image_size_applies_exif_rotation():
    image = Image.new("RGB", (80, 20))
    exif = image.getexif()
    exif[0x0112] = 6  # rotated 90 degrees: seen as 20x80
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", exif=exif)
    assert image_size(buffer.getvalue()) == (20, 80)
    assert image_size(_png(7, 5), verify=False) == (7, 5)
