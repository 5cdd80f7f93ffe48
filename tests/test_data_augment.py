"""Training-crop augmentation (RandAugment for text), only on training batches, and narrow crops widened for CTC
instead of dropped."""

import numpy as np
import pytest
from PIL import Image, ImageDraw
from transformers import TrainingArguments

from mambaocr_hf import MambaOCRConfig, MambaOCRForCTC, MambaOCRProcessor
from mambaocr_hf.data import OCRDataCollator, SampleFilter, TextAugment, resolve_augment, widen_for_ctc
from mambaocr_hf.data.augment import OPS
from mambaocr_hf.data.filters import SkipSample, ctc_frames, ctc_frames_needed
from mambaocr_hf.training import TrainingStreamArguments, make_ocr_trainer

from .conftest import tiny_config_kwargs


def _word(text="HELLO", size=(120, 40)):
    image = Image.new("RGB", size, (200, 190, 170))
    ImageDraw.Draw(image).text((8, 12), text, fill=(20, 20, 60))
    return image


@pytest.mark.parametrize("op", sorted(OPS))
def test_each_op_keeps_an_rgb_crop_that_still_holds_the_text(op):
    image = _word()
    out = TextAugment(num_ops=1, p=1.0, ops=[op], magnitude=9, seed=0)(image)
    assert out.mode == "RGB" and out.height >= 0.8 * image.height and out.width >= 0.8 * image.width
    if op not in ("rotate", "shear", "perspective"):
        assert out.size == image.size


def test_augment_is_random_per_call_reproducible_per_seed_and_validated():
    image = _word()
    first = [np.asarray(TextAugment(seed=3)(image)) for _ in range(1)]
    again = TextAugment(seed=3)
    assert np.array_equal(np.asarray(again(image)), first[0])
    outputs = {np.asarray(again(image)).tobytes() for _ in range(8)}
    assert len(outputs) > 4  # each call draws new ops and magnitudes
    assert TextAugment(p=0.0, seed=0)(image) is image
    with pytest.raises(ValueError, match="Unknown augmentation ops"):
        TextAugment(ops=["mirror"])
    with pytest.raises(ValueError, match="num_ops"):
        TextAugment(num_ops=20)


def test_auto_augments_real_crops_only():
    assert resolve_augment("auto", ["synthetic"]) is None
    assert isinstance(resolve_augment("auto", ["synthetic", "/data/crops"]), TextAugment)
    assert isinstance(resolve_augment("text", ["synthetic"]), TextAugment)
    assert resolve_augment("none", ["/data/crops"]) is None
    with pytest.raises(ValueError, match="augment"):
        resolve_augment("heavy", [])
    options = TrainingStreamArguments().stream_options("synthetic:0.5,/data/crops:0.5")
    assert isinstance(options["augment"], TextAugment)
    assert TrainingStreamArguments().stream_options([("synthetic", 1.0)])["augment"] is None


class _Marker:
    """An 'augmentation' that paints the image black, to see which batches went through it."""

    def __call__(self, image):
        return Image.new("RGB", image.size, "black")


def test_only_training_batches_are_augmented(tmp_path):
    model = MambaOCRForCTC(MambaOCRConfig(**tiny_config_kwargs()))
    processor = MambaOCRProcessor.from_defaults()
    rows = [{"image": _word("abc", (60, 32)), "text": "abc"} for _ in range(4)]
    args = TrainingArguments(
        output_dir=str(tmp_path),
        per_device_train_batch_size=2,
        report_to=[],
        use_cpu=True,
        remove_unused_columns=False,
    )
    trainer = make_ocr_trainer(model, processor, args, rows, rows, group_by_width=False, augment=_Marker())
    train_batch = next(iter(trainer.get_train_dataloader()))
    eval_batch = next(iter(trainer.get_eval_dataloader()))
    for values, mask in zip(train_batch["pixel_values"], train_batch["pixel_mask"].bool()):
        assert values[..., mask].max() < -1.5  # black everywhere the image is (ImageNet-normalised)
    for values, mask in zip(eval_batch["pixel_values"], eval_batch["pixel_mask"].bool()):
        assert values[..., mask].max() > 0.5  # evaluation sees the images as they are (a light background)
    assert trainer.data_collator.augment is None


def test_narrow_crops_with_long_labels_are_widened_not_dropped():
    processor = MambaOCRProcessor.from_defaults()
    label = "abcdefghijklmnop"  # 16 frames needed
    narrow = _word("x", (30, 40))  # 30x40 -> 24 px at height 32 -> 6 frames
    assert ctc_frames(30, 40) < ctc_frames_needed(label)
    wide = widen_for_ctc(narrow, label)
    assert wide.height == 40 and ctc_frames(*wide.size) >= ctc_frames_needed(label)
    assert widen_for_ctc(wide, label) is wide  # already wide enough: unchanged
    collator = OCRDataCollator(processor)
    batch = collator([{"image": narrow, "text": label}, {"image": _word("ok", (60, 32)), "text": "ok"}])
    assert batch["pixel_values"].shape[0] == 2 and collator.num_dropped == 0
    frames = batch["pixel_mask"][0].sum().item() / 4
    assert frames >= ctc_frames_needed(label)
    # the loaders keep such a sample too; past max_width it is still skipped, and widen=False drops it as before
    keeping = SampleFilter(max_width=256)
    keeping.geometry(label, narrow.size)
    # the message names the limit that bites: max_width when widening cannot help, else the image
    with pytest.raises(SkipSample, match=r"gives 6, and max_width=32 at most 8\): the label needs more CTC frames"):
        SampleFilter(max_width=32).geometry(label, narrow.size)
    with pytest.raises(SkipSample, match=r"image gives 6\): the label needs more CTC frames"):
        SampleFilter(widen=False).geometry(label, narrow.size)
