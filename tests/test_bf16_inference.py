"""bf16 inference that reads like float32: the classifier in float32 under autocast, and `forward_bf16`, which runs
again in float32 the images whose greedy read hangs on a near-tie. Through the model, the pipeline and the CLI."""

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import pipeline

from mambaocr_hf import MambaOCRConfig, MambaOCRForCTC, MambaOCRProcessor, save_checkpoint
from mambaocr_hf.cli import main

from .conftest import tiny_config_kwargs


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return MambaOCRForCTC(MambaOCRConfig(**tiny_config_kwargs())).eval()


def _batch(widths=(96, 40, 72, 24)):
    """Images of different widths padded to the widest, as the image processor gives them."""
    torch.manual_seed(1)
    widest = max(widths)
    pixel_values = torch.zeros(len(widths), 3, 32, widest)
    pixel_mask = torch.zeros(len(widths), widest, dtype=torch.long)
    for index, width in enumerate(widths):
        pixel_values[index, ..., :width] = torch.randn(3, 32, width)
        pixel_mask[index, :width] = 1
    return pixel_values, pixel_mask


def _smallest_gaps(logits, frame_lengths):
    """Per image: the smallest gap between the two best logits over its valid frames."""
    best_two = logits.float().topk(2, dim=-1).values
    gaps = best_two[..., 0] - best_two[..., 1]
    valid = torch.arange(logits.shape[1])[None, :] < frame_lengths[:, None]
    return gaps.masked_fill(~valid, float("inf")).amin(dim=-1)


@pytest.mark.slow
def test_classifier_is_float32_under_autocast_at_inference(model):
    pixel_values, pixel_mask = _batch()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(pixel_values, pixel_mask=pixel_mask).logits
    assert logits.dtype == torch.float32
    model.train()
    try:  # training keeps autocast's dtype
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert model(pixel_values, pixel_mask=pixel_mask).logits.dtype == torch.bfloat16
    finally:
        model.eval()


@pytest.mark.slow
def test_forward_bf16_reruns_exactly_the_near_ties_in_float32(model):
    pixel_values, pixel_mask = _batch()
    with torch.no_grad():
        expected = model(pixel_values, pixel_mask=pixel_mask).logits
        with torch.autocast("cpu", dtype=torch.bfloat16):
            plain = model(pixel_values, pixel_mask=pixel_mask)
    # no re-runs: plain autocast
    out = model.forward_bf16(pixel_values, pixel_mask=pixel_mask, fp32_margin=0.0)
    assert not out.fp32_rerun.any()
    torch.testing.assert_close(out.logits, plain.logits.float())
    assert out.logits.dtype == torch.float32 and torch.equal(out.frame_lengths, plain.frame_lengths)
    # a margin between the images' smallest gaps: those below it (among them the narrowest, which runs again in a
    # narrower batch) take float32's logits, the others keep bf16's
    gaps = _smallest_gaps(plain.logits, plain.frame_lengths)
    order = gaps.argsort()
    assert gaps[order[1]] < gaps[order[2]], "the random model should give distinct gaps"
    margin = float((gaps[order[1]] + gaps[order[2]]) / 2)
    out = model.forward_bf16(pixel_values, pixel_mask=pixel_mask, fp32_margin=margin)
    assert out.fp32_rerun.tolist() == (gaps < margin).tolist()
    for index in range(len(pixel_values)):
        reference = expected[index] if out.fp32_rerun[index] else plain.logits[index].float()
        torch.testing.assert_close(out.logits[index], reference, atol=2e-5, rtol=1e-4)
    # everything re-run: float32's reads, also without a pixel mask
    out = model.forward_bf16(pixel_values, pixel_mask=pixel_mask, fp32_margin=1e9)
    assert out.fp32_rerun.all()
    torch.testing.assert_close(out.logits, expected, atol=2e-5, rtol=1e-4)
    with torch.no_grad():
        unmasked = model(pixel_values[:1, ..., :96]).logits
    torch.testing.assert_close(model.forward_bf16(pixel_values[:1, ..., :96], fp32_margin=1e9).logits, unmasked)


def test_forward_bf16_rejects_a_negative_margin(model):
    with pytest.raises(ValueError, match="fp32_margin"):
        model.forward_bf16(torch.zeros(1, 3, 32, 32), fp32_margin=-1.0)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, model):
    path = tmp_path_factory.mktemp("ckpt")
    save_checkpoint(model, MambaOCRProcessor.from_defaults(), path)
    return path


def _images():
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 255, (32, width, 3), dtype=np.uint8)) for width in (90, 40, 150)]


@pytest.mark.slow
def test_pipeline_bf16_flag(checkpoint):
    reader = pipeline("scene-text-recognition", model=str(checkpoint))
    float32 = reader(_images(), batch_size=3)
    # every image re-run: float32's results; the weights stay float32
    rerun = reader(_images(), batch_size=3, bf16=True, fp32_margin=1e9)
    assert [r["generated_text"] for r in rerun] == [r["generated_text"] for r in float32]
    assert [r["score"] for r in rerun] == pytest.approx([r["score"] for r in float32], abs=1e-5)
    assert reader.model.dtype == torch.float32
    # plain autocast when nothing re-runs: the same as the model's own bf16 reads
    processor = MambaOCRProcessor.from_pretrained(checkpoint)
    inputs = processor(images=_images(), return_tensors="pt")
    out = reader.model.forward_bf16(**inputs, fp32_margin=0.0)
    expected = processor.batch_decode(out.logits, out.frame_lengths)
    assert [r["generated_text"] for r in reader(_images(), batch_size=3, bf16=True, fp32_margin=0)] == expected
    with pytest.raises(ValueError, match="fp32_margin"):
        reader(_images(), bf16=True, fp32_margin=-0.5)


@pytest.mark.slow
def test_cli_bf16(checkpoint, tmp_path, capsys):
    _images()[0].save(tmp_path / "a.png")
    args = [str(tmp_path / "a.png"), "--model", str(checkpoint), "--format", "tsv", "--quiet"]
    assert main(args) == 0
    float32 = capsys.readouterr().out
    assert main(args + ["--bf16", "--fp32_margin", "1e9"]) == 0
    assert capsys.readouterr().out == float32
    assert main(args + ["--bf16"]) == 0  # the model's default margin
    assert capsys.readouterr().out.splitlines()[1].startswith(str(tmp_path / "a.png") + "\t")
    with pytest.raises(SystemExit, match="--dtype"):
        main(args + ["--bf16", "--dtype", "bfloat16"])
    with pytest.raises(SystemExit, match="--fp32_margin"):
        main(args + ["--bf16", "--fp32_margin", "-1"])
