"""`pipeline(...)`: the registered task, the checkpoint's custom `image-to-text` pipeline, batching, options and errors."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import pipeline

from mambaocr_hf import MambaOCRConfig, MambaOCRForCTC, MambaOCRPipeline, MambaOCRProcessor, save_checkpoint

from .conftest import WITHOUT_MAMBAOCR_PREAMBLE, make_hub_cache, run_in_threads, tiny_config_kwargs


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt")
    model = MambaOCRForCTC(MambaOCRConfig(**tiny_config_kwargs())).eval()
    save_checkpoint(model, MambaOCRProcessor.from_defaults(), path)
    return path


@pytest.fixture(scope="module")
def reader(checkpoint):
    return pipeline("scene-text-recognition", model=str(checkpoint))


def images():
    rng = np.random.default_rng(0)
    return [
        Image.fromarray(rng.integers(0, 255, (30, 90, 3), dtype=np.uint8)),
        rng.integers(0, 255, (40, 300), dtype=np.uint8),  # numpy, grayscale, wider
        torch.from_numpy(rng.random((3, 32, 20), dtype=np.float32)),  # torch, channels first, narrow
        Image.fromarray(rng.integers(0, 255, (64, 128, 3), dtype=np.uint8)).convert("RGBA"),
    ]


def assert_same_results(batched, single):
    assert [r["generated_text"] for r in batched] == [r["generated_text"] for r in single]
    assert [r["score"] for r in batched] == pytest.approx([r["score"] for r in single], abs=1e-5)


@pytest.mark.slow
def test_registered_task_returns_text_and_score(reader, checkpoint):
    assert isinstance(reader, MambaOCRPipeline)
    result = reader(images()[0])
    assert set(result) == {"generated_text", "score"}
    assert isinstance(result["generated_text"], str) and 0.0 <= result["score"] <= 1.0
    # the same as the processor + model route
    processor = MambaOCRProcessor.from_pretrained(checkpoint)
    model = MambaOCRForCTC.from_pretrained(checkpoint).eval()
    with torch.no_grad():
        out = model(**processor(images=images()[0], return_tensors="pt"))
    assert result["generated_text"] == processor.batch_decode(out.logits)[0]


@pytest.mark.slow
def test_batches_of_mixed_widths_match_one_by_one(reader):
    single = [reader(image) for image in images()]
    assert_same_results(reader(images(), batch_size=4), single)
    assert_same_results(reader(images(), batch_size=3), single)  # a last, partial batch


@pytest.mark.slow
def test_a_list_is_batched_in_order_of_width_and_answered_in_its_own(reader, monkeypatch):
    widths, forward = [], reader._forward
    monkeypatch.setattr(
        reader,
        "_forward",
        lambda inputs, **kw: widths.append(inputs["pixel_mask"].sum(-1).tolist()) or forward(inputs, **kw),
    )
    single = [reader(image) for image in images()]
    widths.clear()
    assert_same_results(reader(images(), batch_size=2), single)  # widths 96, 240, 20, 64 at height 32
    assert widths == [[20, 64], [96, 240]]  # not [96, 240] and [20, 64]: neighbours in width share a batch
    widths.clear()
    pools = [image for _ in range(3) for image in images()]  # 12 images
    monkeypatch.setattr("mambaocr_hf.pipeline_mambaocr.SORT_POOL_BATCHES", 2)  # pools of 4 images
    assert_same_results(reader(pools, batch_size=2), single * 3)
    assert widths == [[20, 64], [96, 240]] * 3  # each pool sorted on its own


@pytest.mark.slow
def test_tuples_batch_arrays_and_direct_construction(reader, checkpoint):
    single = [reader(image) for image in images()[:2]]
    assert_same_results(reader(tuple(images()[:2])), single)
    batch = np.stack([np.asarray(images()[0])] * 2)  # [2, H, W, C]
    assert_same_results(reader(batch), [single[0], single[0]])
    processor = MambaOCRProcessor.from_pretrained(checkpoint)
    direct = MambaOCRPipeline(
        model=reader.model,
        tokenizer=processor.tokenizer,
        image_processor=processor.image_processor,
        lexicon=["hello", "world"],
    )
    assert direct(images()[0])["generated_text"] in ("hello", "world")


def test_file_paths_and_generators(reader, tmp_path):
    paths = []
    for index, image in enumerate(images()[:2]):
        pil = image if isinstance(image, Image.Image) else Image.fromarray(image)
        paths.append(str(tmp_path / f"{index}.png"))
        pil.save(paths[-1])
    from_paths = reader(paths, batch_size=2)
    assert_same_results(from_paths, [reader(Image.open(p)) for p in paths])
    assert_same_results(list(reader((p for p in paths), batch_size=2)), from_paths)  # a generator streams


def test_char_details_give_frames_and_x_ranges(reader):
    image = images()[1]  # 300 px wide at height 40 -> 240 px at height 32
    result = reader(image, output_char_details=True)
    assert len(result["chars"]) == len(result["generated_text"])
    for char in result["chars"]:
        assert set(char) == {"char", "confidence", "start_frame", "end_frame", "x_start", "x_end"}
        assert 0 <= char["x_start"] < char["x_end"] <= 300
        assert char["x_start"] == pytest.approx(char["start_frame"] * 4 * 300 / 240, abs=0.1)
        assert 0.0 < char["confidence"] <= 1.0
    starts = [char["start_frame"] for char in result["chars"]]
    assert starts == sorted(starts)


@pytest.mark.slow
def test_decoding_options(reader):
    image = images()[1]
    greedy = reader(image)
    outputs = reader.forward(reader.preprocess(image))
    beam = reader.processor.batch_decode(outputs["logits"], outputs["frame_lengths"], beam_width=5)
    assert reader(image, beam_width=5)["generated_text"] == beam[0]
    only_digits = reader(image, allowed_chars="0123456789")["generated_text"]
    assert set(only_digits) <= set("0123456789")
    blocked = reader(image, blocked_chars=greedy["generated_text"][:1])["generated_text"]
    assert greedy["generated_text"][:1] not in blocked
    words = ["hello", "world", "mamba"]
    result = reader([image, images()[0]], lexicon=words, batch_size=2)
    assert all(r["generated_text"] in words for r in result)


def test_long_line_is_read_in_one_pass(reader):
    inputs = reader.preprocess(Image.new("RGB", (2048, 32), "white"))
    outputs = reader.forward(inputs)
    assert outputs["frame_lengths"].tolist() == [512]  # the whole 2048 px, no squeezing or truncation
    assert outputs["logits"].shape[1] == 512


@pytest.mark.slow
def test_dtype_and_device(checkpoint):
    reader = pipeline("scene-text-recognition", model=str(checkpoint), dtype=torch.bfloat16, device="cpu")
    assert reader.model.dtype == torch.bfloat16
    result = reader(images(), batch_size=2)
    assert len(result) == 4 and all(isinstance(r["generated_text"], str) for r in result)


def test_bad_inputs(reader, tmp_path):
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"not a png")
    with pytest.raises(ValueError, match="corrupt.png.*not a readable image"):
        reader(str(corrupt))
    with pytest.raises(FileNotFoundError, match="No such image file"):
        reader(str(tmp_path / "missing.png"))
    with pytest.raises(ValueError, match="No images given"):
        reader([])
    with pytest.raises(ValueError, match="is empty"):
        reader(np.zeros((0, 10, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match="charset lacks"):
        reader(images()[0], allowed_chars="ABC")
    with pytest.raises(ValueError, match="at least 1"):
        reader(images()[0], beam_width=0)
    with pytest.raises(TypeError, match="unexpected arguments"):
        reader(images()[0], max_new_tokens=5)


PIPELINE_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    from transformers import pipeline

    if sys.argv[2] == "scene-text-recognition":
        import mambaocr_hf  # the installed package registers the task
        reader = pipeline("scene-text-recognition", model=sys.argv[1])
    else:
        reader = pipeline("image-to-text", model=sys.argv[1], trust_remote_code=True)
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (40, 300), dtype=np.uint8), rng.integers(0, 255, (32, 64, 3), dtype=np.uint8)]
    print(json.dumps({"class": type(reader).__module__, "results": reader(images, batch_size=2)}))
    """
)


@pytest.mark.slow
@pytest.mark.parametrize("task", ["image-to-text", "scene-text-recognition"])
def test_both_routes_from_a_folder_and_from_the_hub_cache(checkpoint, reader, tmp_path, task):
    """`image-to-text` through the checkpoint's custom pipeline without the package installed, and the registered
    `scene-text-recognition` task with it; each from a local folder and by repo id from the local Hub cache."""
    import json

    cache = make_hub_cache(checkpoint, tmp_path / "hub")
    script = tmp_path / "run.py"
    script.write_text((WITHOUT_MAMBAOCR_PREAMBLE if task == "image-to-text" else "") + PIPELINE_SCRIPT)
    rng = np.random.default_rng(0)
    expected = [
        reader(rng.integers(0, 255, (40, 300), dtype=np.uint8)),
        reader(rng.integers(0, 255, (32, 64, 3), dtype=np.uint8)),
    ]
    for model_ref in (str(checkpoint), "org/mambaocr"):
        env = {
            **os.environ,
            "HF_HUB_OFFLINE": "1",
            "HF_HUB_CACHE": str(cache),
            "HF_MODULES_CACHE": str(tmp_path / "m"),
        }
        env.pop("PYTHONPATH", None)
        result = subprocess.run(
            [sys.executable, str(script), model_ref, task],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        output = json.loads(result.stdout.strip().splitlines()[-1])
        expected_module = "transformers_modules" if task == "image-to-text" else "mambaocr_hf.pipeline_mambaocr"
        assert output["class"].startswith(expected_module)
        assert_same_results(output["results"], expected)


@pytest.mark.slow
def test_pipeline_called_from_several_threads(reader):
    """Issue 20 item 13: one pipeline serving several threads (as a web server's workers do), each reading padded
    batches of images of mixed widths, gives what sequential calls give."""
    rng = np.random.default_rng(1)
    requests = [
        [rng.integers(0, 255, (32, int(width), 3), dtype=np.uint8) for width in rng.integers(8, 160, size=size)]
        for size in [1, 2, 3, 4] * 4
    ]
    expected = [reader(images, batch_size=4) for images in requests]
    results, errors = run_in_threads(lambda images: reader(images, batch_size=4), requests, num_threads=3)
    assert not errors, f"{len(errors)} calls raised, e.g. {errors[0]!r}"
    assert sorted(results) == list(range(len(requests)))
    for index, result in results.items():
        assert_same_results(result, expected[index])
