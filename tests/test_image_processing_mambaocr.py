import logging

import numpy as np
import pytest
import torch
from PIL import Image

from mambaocr_hf import MambaOCRImageProcessor
from mambaocr_hf.image_processing_mambaocr import width_sorted_batches


@pytest.fixture
def processor():
    return MambaOCRImageProcessor()


def _text_like(width=100, height=40):
    array = np.full((height, width, 3), 255, dtype=np.uint8)
    array[height // 3 : 2 * height // 3, width // 4 : 3 * width // 4] = 0
    return array


def test_height_aspect_padding_and_mask(processor):
    batch = processor([Image.new("RGB", (100, 50)), Image.new("RGB", (10, 32))], return_tensors="pt")
    assert batch["pixel_values"].shape == (2, 3, 32, 64)
    assert batch["pixel_values"].dtype == torch.float32
    assert batch["pixel_mask"].tolist()[1][:16] == [1] * 16  # 10 px → min_width 16
    assert batch["pixel_mask"].sum(-1).tolist() == [64, 16]
    assert torch.all(batch["pixel_values"][1, :, :, 16:] == 0)  # padding is 0 after normalisation


def test_width_rounded_to_multiple_and_clamped(processor, caplog):
    assert processor.target_width(101, 32) == 104
    assert processor.target_width(5, 100) == 16
    with caplog.at_level(logging.WARNING):
        assert processor.target_width(10000, 32) == 2048
    narrow = MambaOCRImageProcessor(max_width=128)
    batch = narrow([Image.new("RGB", (1000, 32))], return_tensors="pt")
    assert batch["pixel_values"].shape[-1] == 128


def test_normalisation_uses_imagenet_statistics(processor):
    white = processor(Image.new("RGB", (32, 32), "white"), return_tensors="pt")["pixel_values"]
    expected = (1 - torch.tensor(processor.image_mean)) / torch.tensor(processor.image_std)
    assert torch.allclose(white[0, :, 0, 0], expected, atol=1e-5)


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA", "P", "CMYK", "1", "LA", "I;16", "I", "F"])
def test_pil_modes(processor, mode):
    base = Image.fromarray(_text_like())
    if mode == "I;16":
        image = Image.fromarray(np.asarray(base.convert("L")).astype(np.uint16) * 257)
        assert image.mode.startswith("I;16")
    elif mode in ("I", "F"):
        image = base.convert("L").convert(mode)
    else:
        image = base.convert(mode)
    out = processor(image, return_tensors="pt")["pixel_values"]
    reference = processor(base, return_tensors="pt")["pixel_values"]
    assert out.shape == reference.shape == (1, 3, 32, 80)
    # same picture in every mode (colour conversions and the 1-bit threshold allow a small difference)
    assert (out - reference).abs().mean() < 0.1


def test_rgba_is_composited_on_white(processor):
    transparent = Image.new("RGBA", (32, 32), (0, 0, 0, 0))
    out = processor(transparent, return_tensors="pt")["pixel_values"]
    white = processor(Image.new("RGB", (32, 32), "white"), return_tensors="pt")["pixel_values"]
    assert torch.allclose(out, white)


def test_numpy_and_torch_layouts(processor):
    hwc = _text_like()
    reference = processor(Image.fromarray(hwc), return_tensors="pt")["pixel_values"]
    variants = [
        hwc,
        hwc.transpose(2, 0, 1),  # CHW numpy
        torch.from_numpy(hwc.transpose(2, 0, 1).copy()),  # CHW uint8 tensor
        torch.from_numpy(hwc.transpose(2, 0, 1).copy()).float() / 255,  # CHW float tensor in [0, 1]
        hwc.astype(np.float32) / 255,  # HWC float in [0, 1]
        hwc.astype(np.uint16) * 257,  # 16-bit
    ]
    for variant in variants:
        out = processor(variant, return_tensors="pt")["pixel_values"]
        assert torch.allclose(out, reference, atol=0.02), type(variant)
    gray = processor(hwc[..., 0], return_tensors="pt")["pixel_values"]
    assert gray.shape == reference.shape
    batched = processor(np.stack([hwc, hwc]), return_tensors="pt")["pixel_values"]
    assert batched.shape[0] == 2


def test_grayscale_model_inputs():
    processor = MambaOCRImageProcessor(num_channels=1)
    assert processor(Image.new("RGB", (64, 32)), return_tensors="pt")["pixel_values"].shape == (1, 1, 32, 64)


def test_file_paths(processor, tmp_path):
    path = tmp_path / "word.png"
    Image.fromarray(_text_like()).save(path)
    assert processor(str(path), return_tensors="pt")["pixel_values"].shape == (1, 3, 32, 80)
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"not a png")
    with pytest.raises(ValueError, match="not a readable image"):
        processor(str(corrupt))
    with pytest.raises(FileNotFoundError, match="no such file"):
        processor(str(tmp_path / "missing.png"))


@pytest.mark.parametrize(
    "images, error, message",
    [
        ([], ValueError, "empty list"),
        (np.zeros((0, 10, 3), dtype=np.uint8), ValueError, "empty"),
        (np.zeros((32, 0), dtype=np.uint8), ValueError, "empty"),
        (Image.new("RGB", (0, 32)), ValueError, "empty"),
        ({"not": "an image"}, TypeError, "expected a PIL image"),
        (np.zeros((5, 5, 5, 5, 5)), ValueError, "not an image"),
    ],
)
def test_bad_inputs(processor, images, error, message):
    with pytest.raises(error, match=message):
        processor(images)


def test_nan_is_refused_and_infinities_and_normalised_tensors_are_warned_about(processor, caplog, monkeypatch):
    """NaN read silently as black, infinities as black/white, and an already normalised tensor was clipped to
    near-black: each now says what to pass instead."""
    from mambaocr_hf import image_processing_mambaocr

    monkeypatch.setattr(image_processing_mambaocr, "_WARNED", set(), raising=False)
    image = _text_like().astype(np.float32) / 255
    nan = image.copy()
    nan[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match=r"Image 1: the float array holds NaN values.*Pass a finite image"):
        processor([image, nan])
    with pytest.raises(ValueError, match="NaN"):
        processor(torch.from_numpy(nan.transpose(2, 0, 1).copy()))
    with caplog.at_level(logging.WARNING):
        processor(image)  # floats in [0, 1]: no warning
        assert not caplog.records
        infinite = image.copy()
        infinite[0, :2] = np.inf
        processor(infinite)
        assert "6 infinite values" in caplog.text and "Pass a finite image" in caplog.text
        caplog.clear()
        mean = torch.tensor(processor.image_mean)[:, None, None]
        std = torch.tensor(processor.image_std)[:, None, None]
        normalised = (torch.from_numpy(image.transpose(2, 0, 1).copy()) - mean) / std
        processor(normalised)
        assert "fit neither [0, 1] nor [0, 255]" in caplog.text and "Pass the raw image" in caplog.text
        caplog.clear()
        processor(normalised)  # said once per process, not per image
        assert not caplog.records


def test_round_trip(tmp_path):
    processor = MambaOCRImageProcessor(max_width=512, min_width=24, resample="bicubic")
    processor.save_pretrained(tmp_path)
    loaded = MambaOCRImageProcessor.from_pretrained(tmp_path)
    assert (loaded.max_width, loaded.min_width, loaded.resample) == (512, 24, "bicubic")


def test_files_are_read_upright_by_their_exif_orientation(tmp_path):
    from PIL import Image as PILImage

    from mambaocr_hf.image_processing_mambaocr import to_pil_image

    image = PILImage.new("RGB", (100, 32), "white")
    exif = image.getexif()
    exif[0x0112] = 6  # Orientation: the camera was turned; show the pixels rotated by 90 degrees
    path = tmp_path / "rotated.jpg"
    image.save(path, exif=exif)
    assert to_pil_image(str(path)).size == (32, 100)
    # a PIL image carrying the same orientation is read the same way (as transformers' `load_image` does)
    with PILImage.open(path) as opened:
        assert to_pil_image(opened).size == (32, 100)


def test_bfloat16_tensors_and_impossible_widths():
    processor = MambaOCRImageProcessor()
    image = torch.rand(3, 32, 100)
    expected = processor(image, return_tensors="pt")["pixel_values"]
    assert torch.allclose(processor(image.bfloat16(), return_tensors="pt")["pixel_values"], expected, atol=0.05)
    with pytest.raises(
        ValueError, match="No width from min_width=17 to max_width=18 is a multiple of width_multiple=4"
    ):
        MambaOCRImageProcessor(min_width=17, max_width=18, width_multiple=4)
    with pytest.raises(ValueError, match="is a multiple of"):
        MambaOCRImageProcessor(min_width=2, max_width=3, width_multiple=4)


def test_pad_to_multiple_of_pads_the_batch_and_keeps_the_mask(processor):
    images = [Image.new("RGB", (100, 50)), Image.new("RGB", (10, 32))]
    plain = processor(images, return_tensors="pt")
    padded = processor(images, return_tensors="pt", pad_to_multiple_of=32)
    assert padded["pixel_values"].shape == (2, 3, 32, 64)  # 64 is already a multiple of 32
    padded = processor(images, return_tensors="pt", pad_to_multiple_of=48)
    assert padded["pixel_values"].shape == (2, 3, 32, 96)
    assert torch.equal(padded["pixel_values"][..., :64], plain["pixel_values"])
    assert torch.all(padded["pixel_values"][..., 64:] == 0)
    assert padded["pixel_mask"].sum(-1).tolist() == plain["pixel_mask"].sum(-1).tolist() == [64, 16]


@pytest.mark.parametrize("bad", [0, -32, 30, 2.5, True])
def test_pad_to_multiple_of_must_be_a_multiple_of_the_frame_stride(processor, bad):
    with pytest.raises(ValueError, match="pad_to_multiple_of"):
        processor([Image.new("RGB", (100, 50))], pad_to_multiple_of=bad)


def test_width_sorted_batches_group_neighbours_in_width():
    widths = [40, 600, 64, 900, 48, 500, 80]
    assert width_sorted_batches(widths, 2) == [[0, 4], [2, 6], [5, 1], [3]]  # a last, partial batch
    assert width_sorted_batches([32, 32, 16], 2) == [[2, 0], [1]]  # equal widths keep their order
    assert width_sorted_batches([], 4) == []
    with pytest.raises(ValueError, match="`batch_size` must be at least 1"):
        width_sorted_batches(widths, 0)
