"""Long text lines: lines rendered by the synthetic generator (spaces, punctuation, 10-120 characters), their
width in training batches, the CTC length check, and generated 200+ character lines read in one pass."""

import dataclasses
import importlib.util
import json
import logging
import random
import sys

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from mambaocr_hf import (
    CHARSETS,
    MambaOCRConfig,
    MambaOCRForCTC,
    MambaOCRImageProcessor,
    MambaOCRProcessor,
    MambaOCRTokenizer,
    save_checkpoint,
)
from mambaocr_hf.data import OCRDataCollator, SyntheticConfig, SyntheticTextGenerator, WidthBucketedDataset
from mambaocr_hf.data.filters import LabelNormalizer, SampleFilter, SkipStats
from mambaocr_hf.data.fonts import missing_characters
from mambaocr_hf.data.lines import render_long_line
from mambaocr_hf.data.synthetic import synthetic_config_from
from mambaocr_hf.data.text_sampler import TextSampler, load_words
from mambaocr_hf.presets import load_preset

from .conftest import ROOT, load_script, tiny_config_kwargs

LINE_CHARSET = "printable_space"


@pytest.fixture(scope="module")
def line_generator():
    config = SyntheticConfig(line_p=1.0, line_chars=(10, 120))
    return SyntheticTextGenerator(tokenizer=MambaOCRTokenizer(charset=LINE_CHARSET), seed=5, config=config)


def _sampler(charset):
    normalizer = LabelNormalizer.from_tokenizer(MambaOCRTokenizer(charset=charset), "map")
    return TextSampler(normalizer.charset, normalizer.fold, load_words(None), max_length=25), normalizer


def test_line_text_is_words_numbers_and_punctuation_one_space_apart():
    sampler, normalizer = _sampler(LINE_CHARSET)
    rng = np.random.default_rng(0)
    lines = [sampler.sample_line(rng, 10, 120) for _ in range(300)]
    for text, label in lines:
        assert label == text and 10 <= len(label) <= 120, text  # the space is in the charset: the label is the text
        assert "  " not in text and text == text.strip() and set(text) <= set(normalizer.charset)
    texts = " ".join(text for text, _ in lines)
    assert np.mean([text.count(" ") for text, _ in lines]) > 5  # several words a line
    assert set(texts) & set(",.;:!?()") and set(texts) & set("0123456789")  # punctuation and numbers
    lengths = [len(label) for _, label in lines]
    assert min(lengths) <= 20 and max(lengths) > 100  # every length bucket is drawn
    # a fixed length is met exactly, even one that no piece fills
    assert {len(sampler.sample_line(rng, 7, 7)[1]) for _ in range(50)} == {7}
    with pytest.raises(ValueError, match="min_chars <= max_chars"):
        sampler.sample_line(rng, 9, 3)


@pytest.mark.parametrize("charset", ["lowercase_alphanumeric", "printable"])
def test_without_a_space_in_the_charset_the_label_runs_the_words_together(charset):
    sampler, normalizer = _sampler(charset)
    rng = np.random.default_rng(1)
    lines = [sampler.sample_line(rng, 10, 60) for _ in range(100)]
    assert np.mean([text.count(" ") for text, _ in lines]) > 2  # the words are drawn apart ...
    for text, label in lines:
        assert " " not in label and label == normalizer.fold(text.replace(" ", ""))  # ... and labelled together
        assert 10 <= len(label) <= 60 and set(label) <= set(normalizer.charset)


def test_lines_are_rendered_by_the_word_pipeline_deterministically(line_generator):
    picked = []
    text_and_font = line_generator._text_and_font

    def recording(rng, line=False):
        text, label, info = text_and_font(rng, line)
        picked.append((text, info))
        return text, label, info

    line_generator._text_and_font = recording
    try:
        samples = [line_generator.render(index) for index in range(6)]
    finally:
        del line_generator._text_and_font
    for (image, label), (text, info) in zip(samples, picked):
        assert 10 <= len(label) <= 120 and " " in label and "  " not in label
        assert not missing_characters(info.path, text)  # the font draws every character, the space included
        assert image.mode == "RGB" and image.height >= 16
        assert image.width / image.height > 3  # a line, not a word crop
    again = line_generator.render(3)
    assert again[1] == samples[3][1] and again[0].tobytes() == samples[3][0].tobytes()
    other_split = SyntheticTextGenerator(
        tokenizer=line_generator.normalizer.folding_tokenizer, seed=5, split="test_lines", config=line_generator.config
    )
    assert [other_split.render(i)[1] for i in range(3)] != [label for _, label in samples[:3]]


def test_line_p_mixes_lines_into_the_same_words():
    tokenizer = MambaOCRTokenizer(charset=LINE_CHARSET)
    words = SyntheticTextGenerator(tokenizer=tokenizer, seed=2)
    mixed = SyntheticTextGenerator(tokenizer=tokenizer, seed=2, config=SyntheticConfig(line_p=0.3))
    flags = [mixed.is_line(index) for index in range(400)]
    assert 0.22 < np.mean(flags) < 0.38 and not any(words.is_line(index) for index in range(400))
    word_index = flags.index(False)
    image, label = mixed.render(word_index)  # the samples that are not lines are the words they were
    expected_image, expected_label = words.render(word_index)
    assert label == expected_label and image.tobytes() == expected_image.tobytes()
    # a word-only generator describes itself as before (the synthetic cache's key does not change)
    assert "line_p" not in words.describe()["config"] and mixed.describe()["config"]["line_p"] == 0.3


def test_line_settings_are_validated():
    assert SyntheticConfig(line_chars=[5, 9]).line_chars == (5, 9)  # JSON gives a list
    with pytest.raises(ValueError, match="line_chars"):
        SyntheticConfig(line_chars=(20, 10))
    with pytest.raises(ValueError, match="line_p"):
        SyntheticConfig(line_p=1.5)


def _padding_ratio(widths, batch_size):
    """Pixels computed (every row padded to its batch's widest) over the rows' own pixels."""
    batches = [widths[start : start + batch_size] for start in range(0, len(widths), batch_size)]
    return sum(len(batch) * max(batch) for batch in batches) / sum(widths)


def test_width_buckets_keep_mixed_word_and_line_batches_tight():
    """A training stream of 80% words (32-256 px at height 32) and 20% lines (128-2048 px), batched as training
    does (32 a batch, a pool of 16 batches). Batched in arrival order nearly every batch holds a line (1 - 0.8^32)
    and pads 31 rows to it: about 5x the pixels. Bucketed, a batch spans a sixteenth of the pool's sorted widths:
    words with words, lines with lines of similar length, about 1.2x (1.16-1.23 over seeds); 1.3 is the bound."""
    rng = random.Random(0)
    widths = [rng.randint(128, 2048) if rng.random() < 0.2 else rng.randint(32, 256) for _ in range(3000)]
    rows = [{"image": width, "text": str(index)} for index, width in enumerate(widths)]
    bucketed = WidthBucketedDataset(rows, batch_size=32, width_of=lambda width: width, buffer_batches=16, seed=0)
    out = [row["image"] for row in bucketed]
    assert sorted(out) == sorted(widths)  # every row once
    assert _padding_ratio(widths, 32) > 4.5
    assert _padding_ratio(out, 32) < 1.3


def _line(width, label):
    return {"image": Image.new("RGB", (width, 32), "white"), "text": label}


def test_lines_too_long_for_the_ctc_frames_are_skipped_and_counted_never_truncated(caplog):
    """At max_width 1004 a line gets at most 251 frames. A wider line is squeezed (one warning, whatever the number
    of lines); one whose label needs more frames than that is skipped with its reason, in the loaders' filter and
    in the collator alike; a narrow crop whose label fits in max_width is stretched; labels keep every character."""
    processor = MambaOCRProcessor(
        image_processor=MambaOCRImageProcessor(max_width=1004), tokenizer=MambaOCRTokenizer(charset=LINE_CHARSET)
    )
    fits, too_long = " ".join("ab" * 60), "ab" * 130  # CTC needs 239 frames; 260 frames
    sample_filter = SampleFilter.from_processor(processor, name="lines test")
    sample_filter.stats = SkipStats("lines test")
    assert sample_filter.check_decoded(too_long, (1900, 32), "line 0") is None
    assert sample_filter.check_decoded(fits, (1900, 32), "line 1") == fits  # squeezed to 1004 px: 251 frames
    assert sample_filter.check_decoded(fits, (400, 32), "line 2") == fits  # 100 frames: the collator widens it
    assert dict(sample_filter.skip_stats.counts) == {"label_too_long_for_ctc": 1}
    collator = OCRDataCollator(processor)
    with caplog.at_level(logging.WARNING):
        batch = collator([_line(1900, too_long), _line(3000, fits), _line(2600, fits), _line(400, fits)])
    assert collator.dropped == {"label_too_long_for_ctc": 1}
    assert batch["pixel_values"].shape[0] == 3 and batch["pixel_values"].shape[-1] == 1004
    assert (batch["labels"] >= 0).sum(-1).tolist() == [len(fits)] * 3  # whole labels, never cut to the frames
    assert batch["pixel_mask"].sum(-1).tolist()[-1] >= 4 * len(fits)  # the narrow crop stretched: 239 frames
    squeezed = [r for r in caplog.records if "wider than max_width=1004" in r.getMessage()]
    assert len(squeezed) == 1


def test_render_long_line_is_deterministic_and_long():
    generator = SyntheticTextGenerator(seed=3)
    image, text = render_long_line(generator, 0, min_chars=200)
    assert len(text) >= 200 and image.size == (2048, 32)
    again, same = render_long_line(generator, 0, min_chars=200)
    assert same == text and again.tobytes() == image.tobytes()
    natural, _ = render_long_line(generator, 1, min_chars=20, max_width=None)
    assert natural.height == 32 and natural.width < 2048


@pytest.mark.slow
def test_a_200_character_line_goes_through_the_model_in_one_pass():
    generator = SyntheticTextGenerator(seed=3)
    image, text = render_long_line(generator, 0, min_chars=200)
    processor = MambaOCRProcessor.from_defaults()
    inputs = processor(images=[image], text=[text], return_tensors="pt")
    assert inputs["pixel_values"].shape[-1] == 2048  # not squeezed further
    model = MambaOCRForCTC(MambaOCRConfig(**tiny_config_kwargs())).eval()
    with torch.no_grad():
        outputs = model(**inputs)
    assert outputs.frame_lengths.tolist() == [512]
    assert torch.isfinite(outputs.loss)  # the 200+ character label fits the 512 frames: CTC can align it
    decoded = processor.batch_decode(outputs.logits, outputs.frame_lengths, output_char_details=True)
    assert max(c["end_frame"] for c in decoded.char_details[0]) <= 512


@pytest.fixture(scope="module")
def evaluate():
    """scripts/evaluate.py as a module (registered, as its dataclasses need)."""
    spec = importlib.util.spec_from_file_location("evaluate_script", ROOT / "scripts" / "evaluate.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        del sys.modules[spec.name]


@pytest.fixture(scope="module")
def line_checkpoint(tmp_path_factory):
    """A tiny untrained model with the line charset (its reads are noise; the report's shape is what is tested)."""
    folder = tmp_path_factory.mktemp("line_model")
    tokenizer = MambaOCRTokenizer(charset=LINE_CHARSET)
    model = MambaOCRForCTC(MambaOCRConfig(**tiny_config_kwargs(vocab_size=len(tokenizer))))
    save_checkpoint(model, MambaOCRProcessor(image_processor=MambaOCRImageProcessor(), tokenizer=tokenizer), folder)
    return folder


def _labels_folder(folder, labels):
    folder.mkdir()
    rows = []
    for index, label in enumerate(labels):
        image = Image.new("RGB", (8 * len(label) + 8, 32), "white")
        ImageDraw.Draw(image).text((4, 10), label, fill="black")
        image.save(folder / f"{index}.png")
        rows.append(f"{index}.png\t{label}")
    (folder / "labels.tsv").write_text("\n".join(rows) + "\n")
    return folder


def test_evaluate_reports_line_accuracy_by_length_on_line_sets(evaluate, line_checkpoint, tmp_path, capsys):
    lines = ["Exit 3, gate B.", "Sale: $9.99 on all items today", "x " * 30, "The quick brown fox. " * 4]
    lines = _labels_folder(tmp_path / "lines", [line.strip() for line in lines])  # 15, 30, 59 and 83 characters
    output = tmp_path / "lines.json"
    evaluate.main(
        ["--model", str(line_checkpoint), "--dataset", str(lines), "--output", str(output), "--threads", "1"]
    )
    metrics = json.loads(output.read_text())
    assert metrics["line_accuracy"] == metrics["word_accuracy"] and metrics["num_samples"] == 4
    buckets = metrics["length_buckets"]
    assert [row["bucket"] for row in buckets] == ["<=20", "21-40", "41-80", ">80"]
    assert [row["num_samples"] for row in buckets] == [1, 1, 1, 1]
    assert all(0.0 <= row["cer"] and 0.0 <= row["line_accuracy"] <= 1.0 for row in buckets)
    assert "| characters | lines | line accuracy | CER |" in capsys.readouterr().out
    # a word set gets no length table unless asked for
    words = _labels_folder(tmp_path / "words", ["abc", "exit", "42"])
    evaluate.main(
        ["--model", str(line_checkpoint), "--dataset", str(words), "--output", str(output), "--threads", "1"]
    )
    assert "length_buckets" not in json.loads(output.read_text())
    argv = ["--model", str(line_checkpoint), "--dataset", str(words), "--output", str(output), "--length_buckets"]
    evaluate.main([*argv, "--threads", "1"])
    assert json.loads(output.read_text())["length_buckets"][0]["num_samples"] == 3


def test_evaluate_long_lines_renders_text_lines_when_the_charset_has_the_space(evaluate, line_checkpoint, tmp_path):
    output = tmp_path / "long.json"
    argv = ["--model", str(line_checkpoint), "--long_lines", "2", "--min_chars", "90", "--max_width", "1024"]
    evaluate.main([*argv, "--output", str(output), "--threads", "1"])
    metrics = json.loads(output.read_text())
    assert metrics["num_samples"] == 2 and metrics["mean_label_length"] == 90  # rendered lines: exactly 90
    assert metrics["mean_width_px"] <= 1024 and "line_accuracy" in metrics
    assert [row["num_samples"] for row in metrics["length_buckets"]] == [0, 0, 0, 2]


LINES_PRESET = ROOT / "scripts" / "configs" / "lines_cpu.json"


def test_the_lines_preset_mixes_lines_into_words(monkeypatch):
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import train
    finally:
        sys.path.pop(0)
    monkeypatch.setattr(sys, "argv", ["train.py", str(LINES_PRESET), "--max_steps", "3"])
    model_args, data_args, _ = train._parse_args()
    assert model_args.preset == "small-narrow" and " " in CHARSETS[model_args.charset]
    config = synthetic_config_from(data_args.synthetic_config)
    assert config.line_p == 0.2 and config.line_chars == (10, 120)
    assert synthetic_config_from(str(LINES_PRESET)) == config  # the scripts' --synthetic_config reads it too
    # 120 characters at ~12-17 px each (height 32) stay under max_width: lines are not squeezed in training
    assert model_args.max_width == 2048


def test_the_scene_text_recipe_with_lines_is_the_recipe_plus_lines(monkeypatch):
    """`scene_text_lines_cpu.json` extends `scene_text_cpu.json` with lines mixed in: what lines need (the space in
    the charset, widths up to 2,048 px, the generator's lines) and the steps that fit its 2 hours, nothing else, so
    the two recipes do not drift apart."""
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import train
    finally:
        sys.path.pop(0)
    configs = ROOT / "scripts" / "configs"
    written = json.loads((configs / "scene_text_lines_cpu.json").read_text())
    assert written.pop("extends") == "scene_text_cpu.json"
    assert set(written) == {"charset", "max_width", "synthetic_config", "max_steps", "output_dir"}
    words, lines = (load_preset(configs / name) for name in ("scene_text_cpu.json", "scene_text_lines_cpu.json"))
    assert lines == {**words, **written}
    monkeypatch.setattr(sys, "argv", ["train.py", str(configs / "scene_text_lines_cpu.json"), "--max_steps", "3"])
    model_args, data_args, _ = train._parse_args()
    assert " " in CHARSETS[model_args.charset] and model_args.max_width == 2048
    config = synthetic_config_from(data_args.synthetic_config)
    assert config.line_p == 0.1 and config.line_chars == (10, 40)
    assert dataclasses.replace(config, line_p=0.0, line_chars=SyntheticConfig().line_chars) == SyntheticConfig()


def test_preview_shows_whole_lines(tmp_path):
    script = load_script("preview_synthetic")
    output = tmp_path / "lines.png"
    argv = ["--output", str(output), "--num_samples", "4", "--charset", LINE_CHARSET]
    script.main([*argv, "--synthetic_config", '{"line_p": 1.0, "line_chars": [60, 80]}'])
    with Image.open(output) as sheet:  # one line a row, as wide as the model reads
        assert sheet.size == (script.LINE_CELL[0], 4 * (script.LINE_CELL[1] + script.LABEL_HEIGHT + 6))
        assert len(np.unique(np.asarray(sheet.convert("L"))[:, 300:])) > 20  # past a word's cell (220 px)
