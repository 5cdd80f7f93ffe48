# Copyright 2026 The MambaOCR authors. Licensed under the Apache License, Version 2.0.
"""ONNX export of [`MambaOCRForCTC`] and a small ONNX Runtime runner for the exported graph.

The graph takes the processor's output, `pixel_values` `[batch, 3, 32, width]` (float32) and `pixel_mask`
`[batch, width]` (int64), and returns `logits` `[batch, frames, vocab]` and `frame_lengths` `[batch]`, with the batch
and the width dynamic. It is made by the dynamo exporter (`torch.onnx.export(..., dynamo=True)`): while exporting,
the model's selective scan switches to `selective_scan_export`, a `torch.scan` over 4-frame chunks that becomes an
ONNX `Scan` node, so the sequence length is dynamic too.

    >>> from mambaocr_hf.onnx_export import ONNXRecognizer, export_onnx
    >>> export_onnx(model, "onnx/model.onnx")  # doctest: +SKIP
    >>> recognizer = ONNXRecognizer("onnx/model.onnx")  # doctest: +SKIP
    >>> outputs = recognizer(**processor(images=images, return_tensors="np"))  # doctest: +SKIP
    >>> processor.batch_decode(outputs.logits, frame_lengths=outputs.frame_lengths)  # doctest: +SKIP
"""

from __future__ import annotations

import importlib.util
import os
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from transformers.utils import logging

logger = logging.get_logger(__name__)

INPUT_NAMES = ("pixel_values", "pixel_mask")
OUTPUT_NAMES = ("logits", "frame_lengths")
DEFAULT_OPSET = 20
MIN_OPSET = 18  # the dynamo exporter's operator library starts there
# sequence models whose export has been checked to follow a dynamic batch and width
EXPORTABLE_SEQUENCE_MODELS = ("mamba", "transformer", "none")
INSTALL_HINT = 'pip install "mambaocr-hf[onnx]"'


def require_onnx(runtime: bool = True) -> None:
    """Raise an `ImportError` that says what to install when the ONNX packages are missing."""
    needed = ["onnx", "onnxscript"] + (["onnxruntime"] if runtime else [])
    missing = [name for name in needed if importlib.util.find_spec(name) is None]
    if missing:
        raise ImportError(f"ONNX export needs {', '.join(missing)}, which is not installed: {INSTALL_HINT}")


def _require_onnxruntime() -> None:
    if importlib.util.find_spec("onnxruntime") is None:
        raise ImportError(f"Running an ONNX model needs onnxruntime, which is not installed: {INSTALL_HINT}")


class _ExportWrapper(nn.Module):
    """`(pixel_values, pixel_mask) -> (logits, frame_lengths)`: plain tensors in and out, as the exporter wants."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, pixel_values: torch.Tensor, pixel_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits, frame_lengths = self.model(pixel_values=pixel_values, pixel_mask=pixel_mask, return_dict=False)[:2]
        return logits, frame_lengths


def example_inputs(
    config: Any, batch: int = 2, width: int = 160, seed: int = 0, ragged: bool = True
) -> dict[str, torch.Tensor]:
    """Random `pixel_values` and a `pixel_mask` for `config`; with `ragged`, the images after the first are narrower
    (right-padded), as in a batch the processor pads."""
    generator = torch.Generator().manual_seed(seed)
    pixel_values = torch.randn(batch, config.num_channels, config.image_height, width, generator=generator)
    pixel_mask = torch.ones(batch, width, dtype=torch.long)
    if ragged:
        for index in range(1, batch):
            valid = max(1, width - (index * width) // (batch + 1))
            pixel_mask[index, valid:] = 0
            pixel_values[index, :, :, valid:] = 0.0
    return {"pixel_values": pixel_values, "pixel_mask": pixel_mask}


def _check_output_path(output_path: str | os.PathLike) -> Path:
    path = Path(output_path)
    if path.suffix != ".onnx":
        raise ValueError(f"The output must be an .onnx file, got {str(path)!r}.")
    if path.is_dir():
        raise ValueError(
            f"The output {str(path)!r} is a directory; give a file name such as {str(path / 'model.onnx')!r}."
        )
    directory = path.parent
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OSError(f"Cannot create the output directory {str(directory)!r}: {error.strerror or error}.") from error
    if not os.access(directory, os.W_OK):
        raise PermissionError(f"The output directory {str(directory)!r} is not writable.")
    return path


def export_onnx(
    model: nn.Module,
    output_path: str | os.PathLike,
    opset: int = DEFAULT_OPSET,
    example_batch: int = 2,
    example_width: int = 160,
    optimize: bool = True,
) -> Path:
    """Export a [`MambaOCRForCTC`] to an ONNX file with dynamic batch and width.

    Args:
        model: the model; exported in eval mode, on CPU, in float32 (it is put back as it was afterwards).
        output_path: the `.onnx` file to write (its directory is created). Models over 2 GB get their weights in
            a `.onnx.data` file beside it.
        opset: ONNX opset, at least 18.
        example_batch, example_width: shape of the example traced (any shape works afterwards; the batch must be at
            least 2 so that it is not taken for a constant 1).
        optimize: run onnxscript's graph optimiser (constant folding, dead code) on the result.

    Returns:
        The path written.
    """
    require_onnx(runtime=False)
    config = getattr(model, "config", None)
    if config is None or getattr(config, "model_type", None) != "mambaocr":
        raise TypeError(f"export_onnx exports a MambaOCRForCTC, got {type(model).__name__}.")
    if config.sequence_model not in EXPORTABLE_SEQUENCE_MODELS:
        raise ValueError(
            f"sequence_model={config.sequence_model!r} cannot be exported reliably yet (torch's exporter gives an LSTM "
            "model a graph that runs at any width only when it is the first LSTM model the process exports; later "
            f"ones fail in ONNX Runtime); exportable: {list(EXPORTABLE_SEQUENCE_MODELS)}."
        )
    model_code = sys.modules.get(type(model).__module__)
    # model code saved before ONNX support (a checkpoint's remote code) kept its scans in a `_SCANS` table without
    # "export"; later code has no `_SCANS` in the modeling file (its scans are chosen by `scan_paths.select_scan`)
    if config.sequence_model == "mamba" and "export" not in getattr(model_code, "_SCANS", {"export": None}):
        raise ValueError(
            f"The model's code ({type(model).__module__}, e.g. a checkpoint's remote code saved before ONNX support) has "
            "no export scan, so the graph would only run at the example's width. Load the checkpoint with the "
            "installed mambaocr_hf instead (`import mambaocr_hf` and no trust_remote_code)."
        )
    if not MIN_OPSET <= opset <= torch.onnx._constants.ONNX_MAX_OPSET:
        raise ValueError(f"opset must be in [{MIN_OPSET}, {torch.onnx._constants.ONNX_MAX_OPSET}], got {opset}.")
    if example_batch < 2 or example_width < 8 * config.frame_stride:
        raise ValueError("The export example needs batch >= 2 and a width of at least 8 frames.")
    path = _check_output_path(output_path)

    parameter = next(model.parameters())
    was_training, device, dtype = model.training, parameter.device, parameter.dtype
    model.eval().to(device="cpu", dtype=torch.float32)
    inputs = example_inputs(config, example_batch, example_width)
    dynamic_shapes = {"pixel_values": {0: "batch", 3: "width"}, "pixel_mask": {0: "batch", 1: "width"}}
    start = time.perf_counter()
    try:
        with torch.no_grad(), warnings.catch_warnings():
            # the exporter warns that it merged our axis names with the equal ones it derived: they are kept
            warnings.filterwarnings("ignore", message=r".*axis name.*will not be used")
            program = torch.onnx.export(
                _ExportWrapper(model).eval(),
                (inputs["pixel_values"], inputs["pixel_mask"]),
                dynamo=True,
                input_names=list(INPUT_NAMES),
                output_names=list(OUTPUT_NAMES),
                dynamic_shapes=dynamic_shapes,
                opset_version=opset,
                optimize=optimize,
                verbose=False,
            )
    finally:
        model.train(was_training).to(device=device, dtype=dtype)
    program.save(str(path), external_data=None)
    logger.info(f"Exported ONNX (opset {opset}) to {path} in {time.perf_counter() - start:.1f}s.")
    return path


@dataclass
class ONNXRecognizerOutput:
    """`logits` `[batch, frames, vocab]` (float32) and `frame_lengths` `[batch]` (int64), as numpy arrays; decode
    them with `processor.batch_decode(outputs.logits, frame_lengths=outputs.frame_lengths)`."""

    logits: np.ndarray
    frame_lengths: np.ndarray


class ONNXRecognizer:
    """Runs an exported MambaOCR graph with ONNX Runtime on the processor's output.

    Args:
        path: the `.onnx` file.
        intra_op_num_threads: ONNX Runtime's intra-op threads (`None`: its default, one per physical core).
        providers: execution providers (default: CPU).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        intra_op_num_threads: int | None = None,
        providers: list[str] | None = None,
    ):
        _require_onnxruntime()
        import onnxruntime

        if not Path(path).is_file():
            raise FileNotFoundError(f"No ONNX model at {str(path)!r}.")
        options = onnxruntime.SessionOptions()
        if intra_op_num_threads is not None:
            options.intra_op_num_threads = intra_op_num_threads
            options.inter_op_num_threads = 1
        self.session = onnxruntime.InferenceSession(
            str(path), sess_options=options, providers=providers or ["CPUExecutionProvider"]
        )
        names = [i.name for i in self.session.get_inputs()]
        if tuple(names) != INPUT_NAMES:
            raise ValueError(
                f"{str(path)!r} is not a MambaOCR export: its inputs are {names}, not {list(INPUT_NAMES)}."
            )

    def __call__(self, pixel_values: Any, pixel_mask: Any | None = None, **unused: Any) -> ONNXRecognizerOutput:
        """`pixel_values` `[batch, 3, 32, width]` and `pixel_mask` `[batch, width]` (numpy arrays or torch tensors;
        a missing mask means no padding). Other processor outputs (e.g. `labels`) are ignored."""
        pixel_values = _as_numpy(pixel_values, np.float32)
        if pixel_values.ndim != 4:
            raise ValueError(f"`pixel_values` must be [batch, channels, height, width], got {pixel_values.shape}.")
        if pixel_mask is None:
            pixel_mask = np.ones((pixel_values.shape[0], pixel_values.shape[-1]), dtype=np.int64)
        pixel_mask = _as_numpy(pixel_mask, np.int64)
        if pixel_mask.ndim == 3:  # [batch, height, width]
            pixel_mask = pixel_mask.max(axis=1)
        if pixel_mask.shape != (pixel_values.shape[0], pixel_values.shape[-1]):
            raise ValueError(
                f"`pixel_mask` must be [batch, width] matching pixel_values {pixel_values.shape}, got {pixel_mask.shape}."
            )
        if (pixel_mask.sum(-1) == 0).any():
            raise ValueError("Some images have no valid pixels (pixel_mask is all zero): zero-width input.")
        logits, frame_lengths = self.session.run(
            list(OUTPUT_NAMES), {"pixel_values": pixel_values, "pixel_mask": pixel_mask}
        )
        return ONNXRecognizerOutput(logits=logits, frame_lengths=frame_lengths)


def _as_numpy(values: Any, dtype: type) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    return np.ascontiguousarray(values, dtype=dtype)


def max_abs_logit_diff(model: nn.Module, recognizer: ONNXRecognizer, inputs: dict[str, torch.Tensor]) -> float:
    """Largest difference between PyTorch's and ONNX Runtime's logits over the valid frames of `inputs`."""
    with torch.no_grad():
        reference = model(**inputs, return_dict=True)
    outputs = recognizer(**inputs)
    if not np.array_equal(outputs.frame_lengths, reference.frame_lengths.numpy()):
        raise AssertionError(
            f"frame_lengths differ: ONNX {outputs.frame_lengths.tolist()}, PyTorch {reference.frame_lengths.tolist()}."
        )
    logits = reference.logits.float().numpy()
    if outputs.logits.shape != logits.shape:
        raise AssertionError(f"logits shapes differ: ONNX {outputs.logits.shape}, PyTorch {logits.shape}.")
    valid = np.arange(logits.shape[1])[None, :] < outputs.frame_lengths[:, None]  # [batch, frames]
    return float(np.abs(outputs.logits - logits)[valid].max())


def validate_onnx(
    model: nn.Module,
    path: str | os.PathLike,
    shapes: tuple[tuple[int, int], ...] = ((1, 96), (3, 300)),
    intra_op_num_threads: int | None = None,
) -> list[tuple[int, int, float]]:
    """Compare the exported graph with the PyTorch model on random batches of `(batch, width)` (right-padded, mixed
    widths when batch > 1; none of the export example's shape): `[(batch, width, max abs logit difference)]`."""
    recognizer = ONNXRecognizer(path, intra_op_num_threads=intra_op_num_threads)
    parameter = next(model.parameters())
    was_training, device, dtype = model.training, parameter.device, parameter.dtype
    model.eval().to(device="cpu", dtype=torch.float32)
    try:
        return [
            (
                batch,
                width,
                max_abs_logit_diff(model, recognizer, example_inputs(model.config, batch, width, seed=width)),
            )
            for batch, width in shapes
        ]
    finally:
        model.train(was_training).to(device=device, dtype=dtype)


__all__ = [
    "DEFAULT_OPSET",
    "EXPORTABLE_SEQUENCE_MODELS",
    "ONNXRecognizer",
    "ONNXRecognizerOutput",
    "example_inputs",
    "export_onnx",
    "max_abs_logit_diff",
    "require_onnx",
    "validate_onnx",
]
