"""What makes synthetic crops look like real ones: fonts (probed once, by family and category, never a missing
glyph), photo and procedural backgrounds, scene colours with contrast, composition, capture, and the pre-rendered
cache that keeps rendering off the training step."""

import os
import pickle
import shutil
import string
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mambaocr_hf import MambaOCRTokenizer
from mambaocr_hf.data import (
    PhotoBackgrounds,
    SyntheticConfig,
    SyntheticTextGenerator,
    find_fonts,
    load_ocr_dataset,
    scan_fonts,
)
from mambaocr_hf.data import fonts as fonts_module
from mambaocr_hf.data.backgrounds import PROCEDURAL_KINDS, luminance, procedural_background, text_color
from mambaocr_hf.data.cache import cache_synthetic_sources, synthetic_cache
from mambaocr_hf.data.filters import LabelNormalizer
from mambaocr_hf.data.text_sampler import TextSampler, load_words

from .conftest import load_script


@pytest.fixture(scope="module")
def package_fonts():
    return find_fonts(use_system_fonts=False)


def test_font_packages_of_the_synth_extra_are_many_families_and_categories(package_fonts):
    families = {font.family for font in package_fonts}
    assert len(package_fonts) >= 400 and len(families) >= 150
    categories = Counter(font.category for font in package_fonts)
    assert set(categories) == {"sans_serif", "condensed", "serif", "monospace", "handwriting", "display"}
    assert categories["condensed"] >= 10 and categories["display"] >= 15
    assert any(font.heavy for font in package_fonts) and not all(font.heavy for font in package_fonts)


def test_fonts_are_drawn_by_category_weight_then_family(package_fonts):
    generator = SyntheticTextGenerator(seed=0, use_system_fonts=False)
    rng = np.random.default_rng(0)
    picks = [generator._pick_font("Abc123", rng) for _ in range(1500)]
    by_category = Counter(font.category for font in picks)
    weights = generator.config.font_category_weights
    for category, weight in weights.items():
        assert abs(by_category[category] / len(picks) - weight) < 0.05, (category, by_category)
    # a family with many files (static weights) is drawn no more often than one with a single file
    by_family = Counter(font.family for font in picks if font.category == "sans_serif")
    assert max(by_family.values()) < 4 * len(picks) * weights["sans_serif"] / len(by_family)
    only_mono = SyntheticConfig(font_category_weights={"monospace": 1.0})
    mono = SyntheticTextGenerator(seed=0, use_system_fonts=False, config=only_mono)
    assert {mono._pick_font("abc", rng).category for _ in range(30)} == {"monospace"}
    with pytest.raises(ValueError, match="font_category_weights"):
        SyntheticConfig(font_category_weights={"gothic": 1.0})
    with pytest.raises(ValueError, match="font_category_weights.*not all 0"):
        SyntheticConfig(font_category_weights={"monospace": 0.0})


def test_font_probes_are_cached_on_disk_and_bad_files_are_skipped_and_counted(tmp_path, monkeypatch, package_fonts):
    monkeypatch.setenv("MAMBAOCR_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(fonts_module, "_CACHE", fonts_module._ProfileCache())
    folder = tmp_path / "fonts"
    folder.mkdir()
    shutil.copy(package_fonts[0].path, folder / "good.ttf")
    (folder / "broken.ttf").write_bytes(b"\x00\x01\x00\x00 not really a font")
    scan = scan_fonts(folder, use_system_fonts=False, use_package_fonts=False)
    assert [font.path for font in scan.fonts] == [str((folder / "good.ttf").resolve())]
    assert scan.skipped["unreadable"] == (str((folder / "broken.ttf").resolve()),)
    assert "1 unreadable" in scan.summary()
    cache_file = fonts_module._ProfileCache.path()
    assert cache_file.is_file() and str(tmp_path / "cache") in str(cache_file)
    # a new process reads the probes from disk instead of rendering glyphs again
    fonts_module._discover.cache_clear()
    monkeypatch.setattr(fonts_module, "_CACHE", fonts_module._ProfileCache())
    monkeypatch.setattr(fonts_module, "_glyph_image", lambda *args: pytest.fail("probed again"))
    again = scan_fonts(folder, use_system_fonts=False, use_package_fonts=False)
    assert again.fonts == scan.fonts
    fonts_module._discover.cache_clear()


@pytest.mark.slow
def test_no_sample_uses_a_font_that_lacks_one_of_its_characters(package_fonts):
    # Bebas Neue has no lower case of its own and Press Start 2P no "€": with the printable charset and every font,
    # no label may hold a character its chosen font cannot draw
    generator = SyntheticTextGenerator(seed=5, charset="printable", use_system_fonts=False)
    from mambaocr_hf.data.fonts import missing_characters

    chosen = []
    original = generator._pick_font

    def spy(text, rng):
        font = original(text, rng)
        chosen.append((text, font))
        return font

    generator._pick_font = spy
    for index in range(80):
        generator.render(index)
    assert chosen
    for text, font in chosen:
        assert font is None or not missing_characters(font.path, text), (text, font)
    # with one font that lacks a character, strings holding it are never drawn (another string is drawn instead)
    ascii_printable = string.printable[:95]
    lacking = [font for font in package_fonts if missing_characters(font.path, ascii_printable)]
    if not lacking:
        pytest.skip("every installed font draws all of printable ASCII")
    lacking = lacking[0]
    missing = missing_characters(lacking.path, ascii_printable)
    only = SyntheticTextGenerator(
        seed=1, charset="printable", font_dirs=[lacking.path], use_system_fonts=False, use_package_fonts=False
    )
    assert only._pick_font(f"a{missing[0]}b", np.random.default_rng(0)) is None
    for index in range(40):
        assert not set(only.render(index)[1]) & set(missing)


def _photos(folder: Path, count: int = 3) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for index in range(count):
        pixels = (rng.random((80, 120, 3)) * 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"photo{index}.jpg")
    return folder


def test_photo_backgrounds_skip_bad_files_with_a_count_and_refuse_an_empty_folder(tmp_path):
    folder = _photos(tmp_path / "photos")
    (folder / "broken.jpg").write_bytes(b"nope")
    Image.new("RGB", (20, 20)).save(folder / "tiny.png")
    backgrounds = PhotoBackgrounds(folder)
    assert len(backgrounds) == 3 and backgrounds.skipped == {"unreadable": 1, "too_small": 1}
    patch = backgrounds.patch(40, 150, np.random.default_rng(0))
    assert patch.shape == (40, 150, 3) and patch.dtype == np.float32
    copy = pickle.loads(pickle.dumps(backgrounds))  # a DataLoader worker gets the file list, not the pixels
    assert copy._pixels == {} and len(copy) == 3 and copy.patch(10, 30, np.random.default_rng(1)).shape == (10, 30, 3)
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no photos here")
    with pytest.raises(ValueError, match="empty.*holds no usable photo"):
        PhotoBackgrounds([folder, empty])
    with pytest.raises(FileNotFoundError, match="missing"):
        PhotoBackgrounds(tmp_path / "missing")


def test_generator_uses_the_photos_it_is_given(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.new("RGB", (100, 100), (10, 200, 30)).save(folder / "green.png")  # a uniform green surface
    config = SyntheticConfig(background_dirs=[str(folder)], photo_background_p=1.0, neighbor_p=0.0, **_no_capture())
    generator = SyntheticTextGenerator(seed=0, config=config)
    assert generator.describe()["num_background_photos"] == 1
    image = np.asarray(generator.render(0)[0], dtype=np.float32)
    corners = np.concatenate([image[:2, :2].reshape(-1, 3), image[-2:, -2:].reshape(-1, 3)])
    assert np.abs(corners - [10, 200, 30]).max() < 40  # the crop's edges show the photo


def _no_capture() -> dict:
    names = ["small_text_p", "lighting_p", "blur_p", "defocus_p", "motion_blur_p", "noise_p", "jpeg_p"]
    names += ["low_resolution_p", "contrast_p", "color_cast_p", "squeeze_p"]
    return dict.fromkeys(names, 0.0)


@pytest.mark.parametrize("kind", PROCEDURAL_KINDS)
def test_procedural_backgrounds(kind):
    image = procedural_background(40, 160, np.random.default_rng(3), kind)
    assert image.shape == (40, 160, 3) and image.dtype == np.float32 and 0 <= image.min() <= image.max() <= 255
    with pytest.raises(ValueError, match="Unknown background kind"):
        procedural_background(4, 4, np.random.default_rng(0), "marble")


def test_text_colours_keep_the_contrast_asked_for():
    rng = np.random.default_rng(0)
    for _ in range(200):
        background = procedural_background(32, 64, rng)
        mask = np.zeros((32, 64), np.float32)
        mask[8:24, 8:56] = 1.0
        behind = float(luminance((background * mask[..., None]).sum((0, 1)) / mask.sum()))
        color = text_color(background, mask, rng, min_contrast=70.0)
        assert abs(float(luminance(color)) - behind) >= 69.0 or float(luminance(color)) in (0.0, 255.0)


def test_text_has_scene_statistics_and_covers_the_charset():
    tokenizer = MambaOCRTokenizer(charset=MambaOCRTokenizer(charset="printable").charset + " ")
    normalizer = LabelNormalizer.from_tokenizer(tokenizer, "map")
    sampler = TextSampler(normalizer.charset, normalizer.fold, load_words(None), max_length=25)
    rng = np.random.default_rng(0)
    texts = [sampler.sample(rng)[0] for _ in range(3000)]
    words = [text for text in texts if text.isalpha() and len(text) > 2]
    upper = sum(text.isupper() for text in words) / len(words)
    capitalised = sum(text[0].isupper() and text[1:].islower() for text in words) / len(words)
    assert 0.25 < upper < 0.5 and 0.15 < capitalised < 0.4
    assert any(text.count("-") == 1 and text.replace("-", "").isdigit() for text in texts)  # phone numbers
    assert any(" " in text for text in texts)  # two-word strings
    drawn = set("".join(texts))
    assert set(sampler.drawable) - {" "} <= drawn  # every drawable character appears


def test_every_ingredient_switches_off_and_config_is_validated():
    off = {name: 0.0 for name in vars(SyntheticConfig()) if name.endswith("_p")}
    plain = SyntheticTextGenerator(seed=2, config=SyntheticConfig(**off))
    image, text = plain.render(3)
    assert text and image.mode == "RGB"
    with pytest.raises(ValueError, match="neighbor_p"):
        SyntheticConfig(neighbor_p=1.5)
    assert SyntheticConfig(background_dirs="photos").background_dirs == ["photos"]


def test_loose_crops_show_neighbouring_text():
    """Crops are boxed like annotations: neighbouring words and lines show in them, margins are often loose, and
    now and then an end of the text is clipped."""
    generator = SyntheticTextGenerator(seed=0, config=SyntheticConfig(neighbor_p=1.0, loose_crop_p=1.0, clip_p=0.0))
    seen = []
    original = generator._paint
    generator._paint = lambda masks, rng: seen.append(masks) or original(masks, rng)
    for index in range(30):
        generator.render(index)
    with_neighbours = sum(masks[2] is not None and masks[2].getbbox() is not None for masks in seen)
    assert with_neighbours >= 15  # most crops show part of a neighbour
    rng = np.random.default_rng(0)
    ink, line = (100, 50, 300, 90), 40

    def margins(config):
        generator.config = config
        boxes = np.array([generator._crop_box(ink, (5, 5), line, rng) for _ in range(400)])
        return np.array([ink[0] - boxes[:, 0], boxes[:, 2] - ink[2]]).T  # left and right margins

    tight = margins(SyntheticConfig(loose_crop_p=0.0, clip_p=0.0))
    loose = margins(SyntheticConfig(loose_crop_p=1.0, clip_p=0.0))
    clipped = margins(SyntheticConfig(loose_crop_p=0.0, clip_p=1.0))
    assert tight.min() >= 0 and loose.mean() > 2 * tight.mean() and loose.max() > 0.7 * line
    assert (clipped.min(1) < 0).all() and clipped.min() >= -0.15 * line - 1
    # a narrow word ("l", "1") clipped at both ends keeps most of its ink: the box never crosses over
    generator.config = SyntheticConfig(loose_crop_p=0.0, clip_p=1.0)
    for _ in range(400):
        left, _, right, _ = generator._crop_box((100, 50, 104, 90), (5, 5), line, rng)
        assert right - left >= 2 and left <= 101 and right >= 103


def test_ink_boxes_hug_the_glyphs_as_annotators_draw_them():
    """With `ink_box_p` the box is drawn around the ink, not the font's line: the text fills more of the crop's
    height, as in ICDAR/IIIT5K/SVT crops."""
    rng = np.random.default_rng(0)
    ink, line = (100, 50, 300, 90), 40
    generator = SyntheticTextGenerator(seed=0, config=SyntheticConfig(ink_box_p=1.0, loose_crop_p=0.0, clip_p=0.0))
    for _ in range(100):
        _, top, _, bottom = generator._crop_box(ink, (12, 9), line, rng)
        assert 50 - 0.2 * line - 1 <= top <= 50 and 90 <= bottom <= 90 + 0.2 * line + 1  # the extents are left out
    generator.config = SyntheticConfig(ink_box_p=0.0, loose_crop_p=0.0, clip_p=0.0)
    for _ in range(100):
        _, top, _, bottom = generator._crop_box(ink, (12, 9), line, rng)
        assert top <= 50 - 12 and bottom >= 90 + 9  # the font's whole line

    def filled(config):  # the median share of the crop's height that the word's ink spans
        generator = SyntheticTextGenerator(seed=1, config=config)
        shares = []
        original = generator._paint
        generator._paint = lambda masks, rng: shares.append(_ink_share(masks[0])) or original(masks, rng)
        for index in range(40):
            generator.render(index)
        return float(np.median(shares))

    plain = {"neighbor_p": 0.0, "loose_crop_p": 0.0, "clip_p": 0.0, "rotate_p": 0.0, "perspective_p": 0.0}
    hugging = filled(SyntheticConfig(ink_box_p=1.0, **plain))
    lined = filled(SyntheticConfig(ink_box_p=0.0, **plain))
    assert hugging >= 0.7 and hugging > lined + 0.15


def _ink_share(mask):
    box = mask.getbbox()
    return 0.0 if box is None else (box[3] - box[1]) / mask.height


def test_a_render_that_fails_is_drawn_again_and_counted(caplog):
    """One bad sample never stops a training stream or a cache: the sample is drawn again from another random
    stream (still a function of its index); a render that never succeeds is a clear error."""
    generator = SyntheticTextGenerator(seed=0)
    paint, calls = generator._paint, []

    def fails_once(masks, rng):
        calls.append(1)
        if len(calls) == 1:
            raise ValueError("Coordinate 'right' is less than 'left'")
        return paint(masks, rng)

    generator._paint = fails_once
    image, text = generator.render(7)
    assert image.size[0] > 0 and text and generator.render_failures == 1
    assert "failed to render" in caplog.text and "Coordinate" in caplog.text  # the first is logged with its cause
    calls.clear()
    again, same = generator.render(7)  # deterministic: the same retry gives the same sample
    assert generator.render_failures == 2 and same == text and np.array_equal(np.asarray(again), np.asarray(image))

    def always_fails(masks, rng):
        raise ValueError("broken")

    generator._paint = always_fails
    with pytest.raises(ValueError, match="broken"):
        generator.render(8)


def test_synthetic_cache_renders_once_and_follows_the_generator(tmp_path):
    generator = SyntheticTextGenerator(seed=4)
    path = synthetic_cache(generator, 12, tmp_path, num_workers=1)
    rows = list(load_ocr_dataset(path))
    assert sorted(row["text"] for row in rows) == sorted(generator.render(i)[1] for i in range(12))
    stamp = os.stat(Path(path) / "data.mdb").st_mtime_ns
    assert (
        synthetic_cache(SyntheticTextGenerator(seed=4, split="train"), 12, tmp_path, num_workers=1) == path
    )  # reused, not rendered again
    assert os.stat(Path(path) / "data.mdb").st_mtime_ns == stamp
    other_generator = SyntheticTextGenerator(seed=4, config=SyntheticConfig(neighbor_p=0.0))
    other = synthetic_cache(other_generator, 12, tmp_path, num_workers=1)
    assert other != path  # another distribution, another cache
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".partial")]
    sources = cache_synthetic_sources("synthetic:0.6,/data/real:0.4", 12, tmp_path, num_workers=1, seed=4)
    assert sources == [(path, 0.6), ("/data/real", 0.4)]


def test_synthetic_cache_removes_the_partial_renders_of_killed_processes(tmp_path):
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    orphan = tmp_path / f".synthetic_12_0123456789abcdef.{int(finished.stdout)}.partial"
    live = tmp_path / f".synthetic_12_fedcba9876543210.{os.getppid()}.partial"
    for folder in (orphan, live):
        folder.mkdir()
        (folder / "data.mdb").write_bytes(b"half a render")
    synthetic_cache(SyntheticTextGenerator(seed=4), 4, tmp_path, num_workers=1)
    assert not orphan.exists() and (live / "data.mdb").exists()


def test_preview_script_writes_contact_sheets_and_statistics(tmp_path, capsys):
    real = tmp_path / "real"
    real.mkdir()
    lines = []
    for index in range(4):
        Image.new("RGB", (60, 20), "white").save(real / f"{index}.png")
        lines.append(f"{index}.png\tword{index}")
    (real / "labels.tsv").write_text("\n".join(lines) + "\n")
    script = load_script("preview_synthetic")
    args = ["--output", str(tmp_path / "sheet.png"), "--num_samples", "8", "--real_dir", str(real), "--stats"]
    written = script.main(args)
    assert [path.name for path in written] == ["sheet.png", "sheet_real.png"]
    with Image.open(written[0]) as sheet, Image.open(written[1]) as real_sheet:
        assert sheet.width == real_sheet.width and sheet.height > 48
        assert len(np.unique(np.asarray(sheet.convert("L")))) > 20  # not a blank page
    table = capsys.readouterr().out.splitlines()
    rows = {line.split(" | ")[0].strip("| "): line.split(" | ")[1:] for line in table if line.startswith("| ")}
    assert "synthetic (n=8)" in rows["statistic"][0] and "real (n=4)" in rows["statistic"][1]
    # the real crops are blank white 60x20 images: no colour, no contrast, 3 px wide per character of "wordN"
    assert rows["saturation"][1].startswith("0 ") and rows["contrast"][1].startswith("0 ")
    assert rows["height"][1].startswith("20 ") and rows["width_per_char"][1].startswith("0.6 ")
    assert not rows["contrast"][0].startswith("0 ")  # synthetic text has contrast


def test_split_labels_script_is_deterministic_and_disjoint(tmp_path):
    source = tmp_path / "crops"
    source.mkdir()
    (source / "labels.tsv").write_text("".join(f"images/{i:04d}.jpg\tw{i}\n" for i in range(400)))
    script = load_script("split_labels")
    counts = script.main(["--source", str(source), "--output", str(tmp_path / "a"), "--val_fraction", "0.2"])
    script.main(["--source", str(source), "--output", str(tmp_path / "b"), "--val_fraction", "0.2"])
    train = (tmp_path / "a" / "train" / "labels.tsv").read_text().splitlines()
    val = (tmp_path / "a" / "val" / "labels.tsv").read_text().splitlines()
    assert (tmp_path / "b" / "val" / "labels.tsv").read_text().splitlines() == val
    assert counts == {"train": len(train), "val": len(val)} and 50 < len(val) < 110
    assert not set(train) & set(val) and len(train) + len(val) == 400
    assert all(line.startswith(str(source.resolve())) for line in val)
    with pytest.raises(FileNotFoundError, match="No labels.tsv"):
        script.main(["--source", str(tmp_path), "--output", str(tmp_path / "c")])
