"""ONNX export: the graph follows any batch and width (padding included), matches PyTorch, and the script works end to
end. One export of a tiny checkpoint (through the script) serves every test of the module."""

import importlib.util
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

import onnx  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

from mambaocr_hf import MambaOCRConfig, MambaOCRForCTC, MambaOCRProcessor, modeling_mambaocr, save_checkpoint  # noqa: E402
from mambaocr_hf.onnx_export import (  # noqa: E402
    ONNXRecognizer,
    example_inputs,
    export_onnx,
    max_abs_logit_diff,
    require_onnx,
)
from mambaocr_hf.selective_scan import selective_scan_export, selective_scan_reference  # noqa: E402

from .conftest import load_script, tiny_config_kwargs  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


export_script = load_script("export_onnx")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A tiny checkpoint and its export by `scripts/export_onnx.py` (examples are 2 x 32x160)."""
    directory = tmp_path_factory.mktemp("onnx")
    torch.manual_seed(0)
    model = MambaOCRForCTC(MambaOCRConfig(**tiny_config_kwargs())).eval()
    save_checkpoint(model, MambaOCRProcessor.from_defaults(), directory / "checkpoint")
    output = directory / "exported" / "model.onnx"
    code = export_script.main(["--model", str(directory / "checkpoint"), "--output", str(output), "--check"])
    assert code == 0
    return model, output


@pytest.mark.slow
def test_script_writes_a_self_contained_folder(exported, capsys):
    model, output = exported
    files = {path.name for path in output.parent.iterdir()}
    assert {"model.onnx", "vocab.json", "processor_config.json"} <= files
    # the processor comes back from the export folder alone and its output runs through ONNX Runtime
    processor = MambaOCRProcessor.from_pretrained(output.parent)
    images = []
    for word in ("onnx", "a", "mambaocr"):
        image = Image.new("RGB", (20 * len(word), 32), "white")
        ImageDraw.Draw(image).text((2, 8), word, fill="black")
        images.append(image)
    inputs = processor(images=images, return_tensors="np")
    outputs = ONNXRecognizer(output, intra_op_num_threads=2)(**inputs)
    with torch.no_grad():
        reference = model(**processor(images=images, return_tensors="pt"))
    assert np.array_equal(outputs.frame_lengths, reference.frame_lengths.numpy())
    assert processor.batch_decode(outputs.logits, frame_lengths=outputs.frame_lengths) == processor.batch_decode(
        reference.logits, frame_lengths=reference.frame_lengths
    )


@pytest.mark.slow
def test_graph_has_dynamic_batch_width_and_a_scan_loop(exported):
    graph = onnx.load(str(exported[1])).graph
    dims = {
        value.name: [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim] for value in graph.input
    }
    assert dims == {"pixel_values": ["batch", 3, 32, "width"], "pixel_mask": ["batch", "width"]}
    assert [value.name for value in graph.output] == ["logits", "frame_lengths"]
    assert sum(node.op_type == "Scan" for node in graph.node) == 2  # one per Mamba layer: the length is not unrolled


@pytest.mark.parametrize(
    "batch,width,ragged",
    [(1, 4, False), (1, 37, False), (5, 333, True), (2, 2048, True)],
    ids=["one-frame", "odd-width", "mixed-widths", "long"],
)
@pytest.mark.slow
def test_onnx_matches_pytorch_on_unseen_shapes(exported, batch, width, ragged):
    model, output = exported
    recognizer = ONNXRecognizer(output, intra_op_num_threads=2)
    inputs = example_inputs(model.config, batch, width, seed=width, ragged=ragged)
    assert max_abs_logit_diff(model, recognizer, inputs) < 1e-3


@pytest.mark.slow
def test_padding_does_not_change_an_image_in_onnx(exported):
    """An image's logits are the same alone and padded into a wider batch (the masks are in the graph)."""
    model, output = exported
    recognizer = ONNXRecognizer(output, intra_op_num_threads=2)
    batch = example_inputs(model.config, 2, 200, seed=1)
    narrow = int(batch["pixel_mask"][1].sum())
    alone = recognizer(batch["pixel_values"][1:, :, :, :narrow])
    padded = recognizer(**batch)
    frames = int(alone.frame_lengths[0])
    assert int(padded.frame_lengths[1]) == frames
    assert np.abs(padded.logits[1, :frames] - alone.logits[0]).max() < 1e-4


@pytest.mark.slow
def test_export_scan_has_a_dynamic_length(tmp_path, chunk_size=3):
    """The scan alone, exported at length 10, runs at lengths 1..50 (also not multiples of the chunk)."""

    class Scan(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.A = torch.nn.Parameter(-torch.exp(torch.randn(6, 3)))
            self.D = torch.nn.Parameter(torch.randn(6))
            self.delta_bias = torch.nn.Parameter(torch.randn(6) * 0.5)

        def forward(self, u, delta, B, C, z):
            return selective_scan_export(u, delta, self.A, B, C, self.D, z, self.delta_bias, chunk_size=chunk_size)

    def inputs(batch, length):
        return (
            torch.randn(batch, length, 6),
            torch.randn(batch, length, 6) - 1.0,
            torch.randn(batch, length, 3),
            torch.randn(batch, length, 3),
            torch.randn(batch, length, 6),
        )

    names = ["u", "delta", "B", "C", "z"]
    module = Scan().eval()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*axis name.*will not be used")
        program = torch.onnx.export(
            module,
            inputs(2, 10),
            dynamo=True,
            input_names=names,
            dynamic_shapes={name: {0: "batch", 1: "length"} for name in names},
            verbose=False,
        )
    program.save(str(tmp_path / "scan.onnx"))
    import onnxruntime

    session = onnxruntime.InferenceSession(str(tmp_path / "scan.onnx"), providers=["CPUExecutionProvider"])
    for batch, length in [(1, 1), (3, 3), (2, 4), (1, 9), (2, 50)]:
        args = inputs(batch, length)
        (result,) = session.run(None, {name: value.numpy() for name, value in zip(names, args)})
        expected = selective_scan_reference(
            args[0], args[1], module.A, args[2], args[3], module.D, args[4], module.delta_bias
        )
        assert result.shape == (batch, length, 6)
        assert np.abs(result - expected.detach().numpy()).max() < 1e-5


# bad inputs


def test_script_refuses_a_missing_model(tmp_path, capsys):
    code = export_script.main(["--model", str(tmp_path / "nowhere"), "--output", str(tmp_path / "model.onnx")])
    assert code == 2
    assert "no such directory" in capsys.readouterr().err


@pytest.mark.slow
def test_script_reports_a_truncated_weight_file(exported, tmp_path, capsys):
    checkpoint = tmp_path / "checkpoint"
    shutil.copytree(exported[1].parent.parent / "checkpoint", checkpoint)
    weights = checkpoint / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    code = export_script.main(["--model", str(checkpoint), "--output", str(tmp_path / "out" / "model.onnx")])
    assert code == 2
    assert f"weights in {weights}: the file is truncated or corrupt" in capsys.readouterr().err


@pytest.mark.slow
def test_export_refuses_an_unwritable_output(exported, tmp_path):
    model, _ = exported
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    with pytest.raises(OSError, match="Cannot create the output directory"):
        export_onnx(model, blocker / "sub" / "model.onnx")
    with pytest.raises(ValueError, match=r"\.onnx file"):
        export_onnx(model, tmp_path / "model.bin")
    with pytest.raises(ValueError, match="opset"):
        export_onnx(model, tmp_path / "model.onnx", opset=11)


@pytest.mark.slow
def test_script_reports_an_unwritable_output(exported, tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    checkpoint = exported[1].parent.parent / "checkpoint"
    code = export_script.main(["--model", str(checkpoint), "--output", str(blocker / "model.onnx")])
    assert code == 2
    assert "Cannot create the output directory" in capsys.readouterr().err


def test_missing_onnx_packages_say_what_to_install(monkeypatch):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "onnxruntime" else real_find_spec(name, *a)
    )
    with pytest.raises(ImportError, match=r'pip install "mambaocr-hf\[onnx\]"'):
        require_onnx()
    with pytest.raises(ImportError, match="onnxruntime"):
        ONNXRecognizer("model.onnx")


def test_unsupported_models_are_refused(tmp_path, monkeypatch):
    for sequence_model in ("bilstm", "bilstm_residual"):
        lstm = MambaOCRForCTC(MambaOCRConfig(**tiny_config_kwargs(sequence_model=sequence_model)))
        with pytest.raises(ValueError, match=f"sequence_model='{sequence_model}' cannot be exported"):
            export_onnx(lstm, tmp_path / "model.onnx")
    # model code from before ONNX support (e.g. an old checkpoint's remote code) has a scan table without an export scan
    monkeypatch.setattr(modeling_mambaocr, "_SCANS", {"chunked": None}, raising=False)
    with pytest.raises(ValueError, match="no export scan"):
        export_onnx(MambaOCRForCTC(MambaOCRConfig(**tiny_config_kwargs())), tmp_path / "model.onnx")
    with pytest.raises(TypeError, match="MambaOCRForCTC"):
        export_onnx(torch.nn.Linear(2, 2), tmp_path / "model.onnx")


@pytest.mark.slow
def test_recognizer_checks_its_inputs(exported, tmp_path):
    recognizer = ONNXRecognizer(exported[1])
    pixel_values = np.zeros((2, 3, 32, 40), dtype=np.float32)
    with pytest.raises(ValueError, match="pixel_mask"):
        recognizer(pixel_values, np.ones((2, 39), dtype=np.int64))
    with pytest.raises(ValueError, match="no valid pixels"):
        recognizer(pixel_values, np.zeros((2, 40), dtype=np.int64))
    with pytest.raises(ValueError, match="pixel_values"):
        recognizer(pixel_values[0])
    with pytest.raises(FileNotFoundError):
        ONNXRecognizer(tmp_path / "missing.onnx")
