"""The synthetic source: fonts, text restricted to the charset, determinism, sharding, and the dataset writer script."""

import hashlib
import importlib.util
import io
import pickle
import shutil
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch

from mambaocr_hf import MambaOCRProcessor, MambaOCRTokenizer
from mambaocr_hf.data import (
    SyntheticConfig,
    SyntheticTextGenerator,
    find_fonts,
    load_ocr_dataset,
    split_for_rank,
)
from mambaocr_hf.data.filters import LabelNormalizer
from mambaocr_hf.data.synthetic import encode_image, synthetic_config_from
from mambaocr_hf.data.text_sampler import SCENE_TEXT_WORD_LENGTHS, TextSampler, load_words

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _private_datasets_cache(tmp_path, monkeypatch):
    """`datasets` builders leave lock files in their cache even when streaming: keep them out of ~/.cache."""
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "datasets_cache"))


@pytest.fixture(scope="module")
def generator():
    return SyntheticTextGenerator(seed=3)


def _digest(image):
    return hashlib.sha1(image.tobytes() + repr(image.size).encode()).hexdigest()


def test_default_fonts_cover_the_styles():
    fonts = find_fonts()
    assert len({font.path for font in fonts}) >= 20
    packaged = find_fonts(use_system_fonts=False)  # what `pip install` brings, whatever the machine has
    assert len(packaged) >= 20
    assert {"serif", "sans_serif", "monospace", "handwriting"} <= {font.category for font in packaged}
    assert len({(font.family, font.style) for font in fonts}) == len(fonts)


def test_user_font_folder(tmp_path):
    source = next(font for font in find_fonts(use_system_fonts=False) if font.category == "handwriting")
    shutil.copy(source.path, tmp_path / "mine.ttf")
    (tmp_path / "notes.txt").write_text("not a font")
    only_mine = find_fonts(tmp_path, use_system_fonts=False, use_package_fonts=False)
    assert [font.family for font in only_mine] == [source.family]
    generator = SyntheticTextGenerator(font_dirs=[tmp_path], use_system_fonts=False, use_package_fonts=False)
    assert generator.num_fonts == 1
    assert generator[0]["text"]
    with pytest.raises(FileNotFoundError):
        find_fonts(tmp_path / "missing")


@pytest.mark.parametrize("charset", ["lowercase_alphanumeric", "printable", "digits", "aeiou-."])
def test_text_is_restricted_to_the_charset(charset):
    tokenizer = MambaOCRTokenizer(charset=charset)
    normalizer = LabelNormalizer.from_tokenizer(tokenizer, "map")
    sampler = TextSampler(normalizer.charset, normalizer.fold, load_words(None), max_length=12)
    rng = np.random.default_rng(0)
    for _ in range(300):
        text, label = sampler.sample(rng)
        assert label and len(label) <= 12 and set(label) <= set(tokenizer.charset), (text, label)
        assert normalizer.fold(text) == label and len(text) == len(label)  # the label says what is drawn
    if charset == "lowercase_alphanumeric":
        assert set(sampler.drawable) == set("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
        assert len(sampler.words) > 5000


def _text_statistics(sampler: TextSampler, count: int = 2000) -> dict[str, float]:
    rng = np.random.default_rng(0)
    texts = [sampler.sample(rng)[0] for _ in range(count)]
    words = [text for text in texts if text.isalpha()]
    return {
        "words": len(words) / count,
        "upper": sum(word.isupper() for word in words) / len(words),
        "lower": sum(word.islower() for word in words) / len(words),
        "mean_word_length": float(np.mean([len(word) for word in words])),
    }


def test_text_statistics_follow_the_kind_case_and_length_weights():
    normalizer = LabelNormalizer.from_tokenizer(MambaOCRTokenizer(), "map")
    words = load_words(None)
    default = _text_statistics(TextSampler(normalizer.charset, normalizer.fold, words))
    scene = TextSampler(
        normalizer.charset,
        normalizer.fold,
        words,
        kind_weights={"word": 0.9, "number": 0.1},
        case_weights={"upper": 0.6, "capitalised": 0.3, "lower": 0.1},
        word_length_weights=SCENE_TEXT_WORD_LENGTHS,
    )
    stats = _text_statistics(scene)
    assert default["words"] < 0.8 and stats["words"] > 0.87
    assert 0.5 < stats["upper"] < 0.7 and stats["lower"] < 0.15 and default["lower"] > 0.3
    assert default["mean_word_length"] > 6.5 and 4.8 < stats["mean_word_length"] < 5.8
    only_four = TextSampler(
        normalizer.charset, normalizer.fold, words, kind_weights={"word": 1}, word_length_weights={"4": 1}
    )
    rng = np.random.default_rng(1)
    assert {len(only_four.sample(rng)[1]) for _ in range(50)} == {4}
    with pytest.raises(ValueError, match="kind_weights.*unknown: \\['words'\\]"):
        TextSampler(normalizer.charset, normalizer.fold, words, kind_weights={"words": 1.0})
    with pytest.raises(ValueError, match="case_weights"):
        TextSampler(normalizer.charset, normalizer.fold, words, case_weights={"upper": 0, "lower": 0})
    with pytest.raises(ValueError, match="word_length_weights"):
        TextSampler(normalizer.charset, normalizer.fold, words, word_length_weights={"four": 1})
    with pytest.raises(ValueError, match="no word of the lengths"):
        TextSampler(normalizer.charset, normalizer.fold, words, word_length_weights={40: 1})
    with pytest.raises(ValueError, match="kind_weights"):
        TextSampler(normalizer.charset, normalizer.fold, words, kind_weights={})
    digits = LabelNormalizer.from_tokenizer(MambaOCRTokenizer(charset="digits"), "map")  # no words to draw
    digit_sampler = TextSampler(digits.charset, digits.fold, words, word_length_weights=SCENE_TEXT_WORD_LENGTHS)
    assert digit_sampler.sample(rng)[1].isdigit()


def test_text_weights_reach_the_generator_from_a_json_config(tmp_path):
    path = tmp_path / "scene.json"
    path.write_text(
        '{"text_kind_weights": {"word": 1}, "word_case_weights": {"upper": 1}, "word_length_weights": {"5": 1}}'
    )
    config = synthetic_config_from(str(path))
    assert config.word_length_weights == {5: 1.0}  # JSON's string keys become lengths
    generator = SyntheticTextGenerator(seed=0, config=config)
    texts = [generator.sampler.sample(np.random.default_rng(i))[0] for i in range(20)]
    assert all(len(text) == 5 and text.isupper() for text in texts)
    assert SyntheticConfig(word_length_weights="scene_text").word_length_weights == "scene_text"
    for bad in (
        {"text_kind_weights": {"prose": 1}},
        {"word_case_weights": {"title": 1}},
        {"word_length_weights": "short"},
    ):
        with pytest.raises(ValueError, match=next(iter(bad))):
            SyntheticConfig(**bad)


def test_samples_are_deterministic_per_seed_split_and_index(generator):
    again = SyntheticTextGenerator(seed=3)
    for index in (0, 1, 17, 123456):
        first, second = generator.render(index), again.render(index)
        assert first[1] == second[1] and _digest(first[0]) == _digest(second[0])
    other_seed = SyntheticTextGenerator(seed=4)
    other_split = SyntheticTextGenerator(seed=3, split="validation")
    renders = [_digest(generator.render(i)[0]) for i in range(8)]
    assert renders != [_digest(other_seed.render(i)[0]) for i in range(8)]
    assert renders != [_digest(other_split.render(i)[0]) for i in range(8)]
    assert len(set(renders)) == 8
    copied = pickle.loads(pickle.dumps(generator))  # what a DataLoader worker gets
    assert _digest(copied.render(5)[0]) == _digest(generator.render(5)[0])
    with pytest.raises(IndexError):
        generator.render(-1)


def test_images_are_small_rgb_crops_with_varied_fonts(generator):
    samples = [generator[i] for i in range(60)]
    heights = [sample["image"].height for sample in samples]
    assert all(sample["image"].mode == "RGB" for sample in samples)
    assert 28 <= np.median(heights) <= 56 and max(heights) < 128
    categories = {generator._pick_font("abc", np.random.default_rng(i)).category for i in range(40)}
    assert len(categories) >= 4
    assert generator.describe()["num_fonts"] == generator.num_fonts


def test_all_caps_fonts_get_upper_case_labels():
    bebas = [font for font in find_fonts(use_system_fonts=False) if font.family == "Bebas Neue"]
    if not bebas:
        pytest.skip("the Bebas Neue font package is not installed")
    generator = SyntheticTextGenerator(
        charset="alphanumeric", font_dirs=[bebas[0].path], use_system_fonts=False, use_package_fonts=False
    )
    labels = [generator.render(i)[1] for i in range(30)]
    assert all(label == label.upper() for label in labels)


def test_config_is_validated():
    with pytest.raises(ValueError, match="min_height"):
        SyntheticConfig(min_height=40, max_height=30)
    plain = SyntheticConfig(**{name: 0.0 for name in vars(SyntheticConfig()) if name.endswith("_p")})
    image, text = SyntheticTextGenerator(seed=0, config=plain).render(0)
    assert image.size[0] > 0 and text


@pytest.mark.slow
def test_synthetic_dataset_rows_match_the_generator(generator):
    processor = MambaOCRProcessor.from_defaults()
    dataset = load_ocr_dataset("synthetic", processor=processor, num_samples=12, seed=3)
    assert isinstance(dataset, datasets.IterableDataset) and dataset.num_shards == 12
    rows = list(dataset)
    assert [row["text"] for row in rows] == [generator.render(i)[1] for i in range(12)]
    assert [_digest(row["image"].convert("RGB")) for row in rows] == [
        _digest(generator.render(i)[0]) for i in range(12)
    ]
    # a stream's images travel uncompressed (decoded at once, never stored): lossless, as the digests show
    assert {row["image"].format for row in rows} == {"BMP"}
    unbounded = load_ocr_dataset("synthetic", processor=processor, seed=3, num_shards=100)
    # an unbounded stream reads its first shard without end: indices 0, 100, 200, ...
    assert [row["text"] for row in unbounded.take(3)] == [generator.render(i)[1] for i in (0, 100, 200)]
    with pytest.raises(ValueError, match="num_samples"):
        load_ocr_dataset("synthetic", streaming=False)
    with pytest.raises(TypeError, match="columns_typo"):
        load_ocr_dataset("synthetic", columns_typo=1)


def test_synthetic_non_streaming(tmp_path):
    table = load_ocr_dataset("synthetic", streaming=False, num_samples=5, seed=1, cache_dir=str(tmp_path))
    assert isinstance(table, datasets.Dataset) and table.num_rows == 5
    assert table[4]["text"] == SyntheticTextGenerator(seed=1)[4]["text"]
    # the cached table keeps the smaller PNG bytes, with the generator's pixels
    stored = table.cast_column("image", datasets.Image(decode=False))[4]["image"]["bytes"]
    assert stored.startswith(b"\x89PNG")
    assert _digest(table[4]["image"].convert("RGB")) == _digest(SyntheticTextGenerator(seed=1).render(4)[0])
    with pytest.raises(ValueError, match="'png', 'jpg' or 'bmp'"):
        encode_image(SyntheticTextGenerator(seed=1).render(4)[0], "webp")


def _identity(rows):
    return rows


@pytest.mark.slow
def test_workers_and_ranks_never_render_the_same_sample(generator):
    dataset = load_ocr_dataset("synthetic", num_samples=16, seed=3, num_shards=4)
    expected = sorted(_digest(generator.render(i)[0]) for i in range(16))
    seen = []
    for rank in range(2):
        part = split_for_rank(dataset, rank=rank, world_size=2)
        loader = torch.utils.data.DataLoader(part, batch_size=None, num_workers=2, collate_fn=_identity)
        digests = [_digest(row["image"].convert("RGB")) for row in loader]
        assert len(digests) == len(set(digests)) == 8
        seen += digests
    assert sorted(seen) == expected


def _load_script():
    spec = importlib.util.spec_from_file_location("make_synthetic_dataset", ROOT / "scripts/make_synthetic_dataset.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _tree(folder):
    return {
        path.relative_to(folder).as_posix(): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()
    }


@pytest.mark.parametrize("format", ["lmdb", "mjsynth", "folder", "parquet"])
def test_make_synthetic_dataset_is_byte_identical_and_loadable(tmp_path, format):
    script = _load_script()
    args = ["--num_samples", "12", "--format", format, "--seed", "7", "--no_system_fonts"]
    script.main(["--output_dir", str(tmp_path / "a"), *args])
    script.main(["--output_dir", str(tmp_path / "b"), *args])
    first, second = _tree(tmp_path / "a"), _tree(tmp_path / "b")
    assert first and first == second
    generator = SyntheticTextGenerator(seed=7, use_system_fonts=False)
    expected = [generator.render(i)[1] for i in range(12)]
    assert sorted(row["text"] for row in load_ocr_dataset(str(tmp_path / "a"))) == sorted(expected)
    if format == "folder":  # the encoded images are the generator's, as JPEG
        image = datasets.Image().decode_example({"bytes": first["images/00000003.jpg"], "path": None})
        assert image.size == generator.render(3)[0].size
        assert io.BytesIO(first["images/00000003.jpg"]).read(2) == b"\xff\xd8"


def test_make_synthetic_dataset_writes_text_lines(tmp_path):
    script = _load_script()
    args = ["--num_samples", "3", "--format", "folder", "--seed", "7", "--no_system_fonts", "--line_chars", "40", "60"]
    args += ["--charset", "printable_space", "--split", "test_lines"]
    config = '{"rotate_p": 0.0, "blur_p": 0.0}'
    script.main(["--output_dir", str(tmp_path / "a"), *args, "--synthetic_config", config])
    script.main(["--output_dir", str(tmp_path / "b"), *args, "--synthetic_config", config])
    assert _tree(tmp_path / "a") == _tree(tmp_path / "b")
    rows = list(load_ocr_dataset(str(tmp_path / "a")))
    assert len(rows) == 3
    for row in rows:  # text lines drawn as one string, with their spaces
        assert 40 <= len(row["text"]) <= 60 and " " in row["text"] and row["image"].width > 3 * row["image"].height
    tokenizer = MambaOCRTokenizer(charset="printable_space")
    config = SyntheticConfig(rotate_p=0.0, blur_p=0.0, line_p=1.0, line_chars=(40, 60))
    generator = SyntheticTextGenerator(tokenizer, seed=7, split="test_lines", use_system_fonts=False, config=config)
    assert sorted(row["text"] for row in rows) == sorted(generator.render(i)[1] for i in range(3))
    # the lines written before: word crops pasted side by side at height 32, labels without spaces
    pasted = ["--num_samples", "2", "--format", "folder", "--no_system_fonts", "--line_chars", "40", "60"]
    script.main(["--output_dir", str(tmp_path / "p"), *pasted, "--pasted_lines"])
    for row in load_ocr_dataset(str(tmp_path / "p")):
        assert len(row["text"]) >= 40 and row["image"].height == 32 and row["image"].width <= 2048
    with pytest.raises(SystemExit, match="MIN <= MAX"):
        script.main(["--output_dir", str(tmp_path / "c"), "--num_samples", "1", "--line_chars", "9", "3"])
    with pytest.raises(SystemExit, match="line_p"):
        script.main(["--output_dir", str(tmp_path / "c"), "--num_samples", "1", "--line_p", "1.5"])
