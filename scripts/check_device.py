#!/usr/bin/env python
"""Check MambaOCR's scan paths and mixed precision on one device, and time them: the GPU checks of the speed issue.

    python scripts/check_device.py                        # CUDA if there is one, else the CPU
    python scripts/check_device.py --device cpu --output check.json

1. **Scan paths agree.** Every selective-scan path this device can run (`fused`, the mamba-ssm kernels, which `auto`
   takes on CUDA when they import; `compiled`, the CPU kernels; `chunked`, the pure-PyTorch scan) against
   `reference`, the plain sequential recurrence, in float32: the scan functions alone at several lengths (1 included)
   and the whole model on a mixed-width batch, its logits and the gradients of its CTC loss. A path passes when the
   largest difference, relative to the largest value, is within `--tolerance` (1e-3 by default, the issue's bar).
2. **Mixed precision runs.** Forward and backward under `torch.autocast` in float16 and bfloat16 (CUDA; bfloat16 on a
   CPU with native bf16): the loss and every gradient finite, and how far the logits are from float32's.
3. **Speed.** Images per second at `--batch` × 32x`--width` for each path and dtype, median of `--iters` timed
   iterations after `--warmup` (CUDA synchronised), random weights.

Needs only torch, transformers and timm besides this package (no datasets): it runs from a checkout with
`PYTHONPATH=.`. Exits with status 1 when a check fails.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable

import torch

from mambaocr_hf import MambaOCRConfig, MambaOCRForCTC
from mambaocr_hf.cpu_kernels import bidirectional_scan, kernels_available
from mambaocr_hf.onednn import cpu_supports_bf16
from mambaocr_hf.scan_paths import select_scan
from mambaocr_hf.selective_scan import (
    fused_kernels_available,
    selective_scan_chunked,
    selective_scan_fused,
    selective_scan_reference,
)
from mambaocr_hf.training import parse_config_overrides

SCAN_LENGTHS = (1, 7, 64, 300)


def available_paths(device: torch.device) -> list[str]:
    """The scan paths this device runs, beside `reference`."""
    if device.type == "cuda":
        return ["fused", "chunked"] if fused_kernels_available() else ["chunked"]
    return (["compiled"] if kernels_available() else []) + ["chunked"]


def _relative_error(value: torch.Tensor, reference: torch.Tensor) -> float:
    return float((value.float() - reference.float()).abs().max() / reference.float().abs().max().clamp(min=1e-12))


def _scan_inputs(length: int, device: torch.device, batch: int = 2, channels: int = 16, state: int = 8) -> dict:
    generator = torch.Generator().manual_seed(length)

    def randn(*shape: int, scale: float = 1.0) -> torch.Tensor:
        return (torch.randn(*shape, generator=generator) * scale).to(device)

    return {
        "u": randn(batch, length, channels),
        "delta": randn(batch, length, channels, scale=0.5),
        "A": -torch.exp(randn(channels, state, scale=0.5)),
        "B": randn(batch, length, state),
        "C": randn(batch, length, state),
        "D": randn(channels),
        "z": randn(batch, length, channels),
        "delta_bias": randn(channels, scale=0.1),
    }


def _run_scan(path: str, inputs: dict) -> torch.Tensor:
    if path == "reference":
        return selective_scan_reference(**inputs)
    if path == "chunked":
        return selective_scan_chunked(**inputs)
    if path == "fused":
        return selective_scan_fused(**inputs)
    # the CPU kernels take both directions stacked and Δ from a low-rank input; one direction, Δ given
    u, delta, z = inputs["u"], inputs["delta"], inputs["z"]
    batch, length, channels = u.shape
    projected = torch.cat([u.new_zeros(batch, length, 1), inputs["B"], inputs["C"]], dim=-1)[None]
    lengths = torch.full((batch,), length, dtype=torch.long)
    return bidirectional_scan(
        u[None], projected, u.new_zeros(1, channels, 1), inputs["A"][None], inputs["D"][None], z,
        inputs["delta_bias"][None], lengths, delta[None],
    )  # fmt: skip


def check_scans(paths: list[str], device: torch.device, tolerance: float) -> list[dict]:
    """Each path's output and input gradients against the sequential reference, at several lengths."""
    rows = []
    for length in SCAN_LENGTHS:
        results = {}
        for path in ["reference", *paths]:
            inputs = {k: v.clone().requires_grad_(True) for k, v in _scan_inputs(length, device).items()}
            output = _run_scan(path, inputs)
            output.backward(torch.ones_like(output))
            results[path] = (output.detach(), {k: v.grad for k, v in inputs.items()})
        reference_out, reference_grads = results["reference"]
        for path in paths:
            out, grads = results[path]
            error = max(
                [_relative_error(out, reference_out)]
                + [_relative_error(grads[k], reference_grads[k]) for k in grads if grads[k] is not None]
            )
            rows.append({"check": f"scan, length {length}", "path": path, "error": error, "ok": error <= tolerance})
    return rows


def _batch(config: MambaOCRConfig, batch: int, width: int, device: torch.device) -> dict:
    generator = torch.Generator().manual_seed(0)
    pixel_values = torch.randn(batch, 3, 32, width, generator=generator)
    pixel_mask = torch.ones(batch, width, dtype=torch.long)
    for index in range(batch):  # mixed widths: the padded frames must not change the valid ones
        pixel_mask[index, width - (index * width) // (2 * batch) :] = 0
    labels = torch.randint(1, config.vocab_size, (batch, 4), generator=generator)
    return {"pixel_values": pixel_values.to(device), "pixel_mask": pixel_mask.to(device), "labels": labels.to(device)}


def _model_pass(model: MambaOCRForCTC, inputs: dict, path: str, dtype: torch.dtype | None = None) -> tuple:
    model.config.scan_implementation = "auto" if path == "fused" else path
    model.zero_grad(set_to_none=True)
    device_type = inputs["pixel_values"].device.type
    with torch.autocast(device_type, dtype=dtype or torch.float32, enabled=dtype is not None):
        outputs = model(**inputs)
    outputs.loss.backward()
    grads = {name: p.grad.detach().clone() for name, p in model.named_parameters() if p.grad is not None}
    return outputs.loss.detach(), outputs.logits.detach().float(), grads


def check_model(
    model: MambaOCRForCTC, paths: list[str], inputs: dict, tolerance: float, dtypes: list[torch.dtype]
) -> list[dict]:
    """The whole model: each path against `reference` in float32, then each autocast dtype against float32."""
    reference_loss, reference_logits, reference_grads = _model_pass(model, inputs, "reference")
    rows = []
    for path in paths:
        loss, logits, grads = _model_pass(model, inputs, path)
        errors = [_relative_error(logits, reference_logits)]
        errors += [_relative_error(grads[name], grad) for name, grad in reference_grads.items()]
        error = max(errors)
        rows.append({"check": "model logits and gradients", "path": path, "error": error, "ok": error <= tolerance})
    for dtype in dtypes:
        loss, logits, grads = _model_pass(model, inputs, paths[0], dtype)
        finite = bool(torch.isfinite(loss)) and all(bool(torch.isfinite(g).all()) for g in grads.values())
        agreement = float((logits.argmax(-1) == reference_logits.argmax(-1)).float().mean())
        rows.append({
            "check": f"autocast {str(dtype).removeprefix('torch.')}: loss and gradients finite",
            "path": paths[0], "error": _relative_error(logits, reference_logits), "ok": finite,
            "frame_argmax_agreement": agreement,
        })  # fmt: skip
    return rows


def _median_seconds(fn: Callable[[], object], device: torch.device, iters: int, warmup: int) -> float:
    def synchronize() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for _ in range(warmup):
        fn()
    synchronize()
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        fn()
        synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def time_paths(
    model: MambaOCRForCTC, paths: list[str], dtypes: list, batch: int, width: int, iters: int, warmup: int
) -> list[dict]:
    device = next(model.parameters()).device
    pixel_values = torch.randn(batch, 3, 32, width, device=device)
    rows = []
    for path in paths:
        for dtype in [None, *dtypes]:
            model.config.scan_implementation = "auto" if path == "fused" else path
            with torch.no_grad(), torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
                seconds = _median_seconds(lambda: model(pixel_values), device, iters, warmup)
            name = "float32" if dtype is None else str(dtype).removeprefix("torch.")
            rows.append({"path": path, "dtype": name, "images_per_second": batch / seconds, "ms": seconds * 1000})
    return rows


def format_report(header: str, checks: list[dict], timings: list[dict], batch: int, width: int) -> str:
    lines = [header, "", "| check | path | max relative difference | result |", "|---|---|---|---|"]
    for row in checks:
        extra = (
            f", frame argmax agreement {row['frame_argmax_agreement']:.3f}" if "frame_argmax_agreement" in row else ""
        )
        result = "pass" if row["ok"] else "FAIL"
        lines.append(f"| {row['check']} | {row['path']} | {row['error']:.2e} | {result}{extra} |")
    if timings:
        lines += ["", f"| path | dtype | img/s, b{batch} 32x{width} | ms per batch |", "|---|---|---|---|"]
        lines += [f"| {r['path']} | {r['dtype']} | {r['images_per_second']:.1f} | {r['ms']:.2f} |" for r in timings]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--preset", default="base", help="named variant: base, small or small-narrow")
    parser.add_argument("--config_overrides", default=None, help="e.g. 'hidden_size=128,num_hidden_layers=1'")
    parser.add_argument("--tolerance", type=float, default=1e-3, help="largest relative difference that passes")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--check_batch", type=int, default=4, help="batch of the float32 parity checks")
    parser.add_argument("--iters", type=int, default=20, help="timed iterations (0: no timing)")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (CPU)")
    parser.add_argument("--output", default=None, help="also write the results as JSON here")
    args = parser.parse_args(argv)

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda, but torch sees no CUDA device here: pass --device cpu.")
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    config = MambaOCRConfig.from_preset(args.preset, **parse_config_overrides(args.config_overrides))
    model = MambaOCRForCTC(config).to(device).eval()  # no dropout: passes differ by the scan path alone
    paths = available_paths(device)
    if device.type == "cuda":
        dtypes = [torch.float16, torch.bfloat16]
        name = torch.cuda.get_device_name(device)
    else:
        dtypes = [torch.bfloat16] if cpu_supports_bf16() else []
        name = f"CPU, {torch.get_num_threads()} threads, native bf16: {cpu_supports_bf16()}"
    auto = select_scan(MambaOCRConfig(), device).name
    header = (
        f"{name}; torch {torch.__version__}; mamba-ssm kernels: {fused_kernels_available()}; `auto` takes the "
        f"{auto!r} path here; tolerance {args.tolerance:g}"
    )
    print(header, file=sys.stderr, flush=True)
    checks = check_scans(paths, device, args.tolerance)
    checks += check_model(model, paths, _batch(config, args.check_batch, args.width, device), args.tolerance, dtypes)
    timings = []
    if args.iters > 0:
        timings = time_paths(model, paths, dtypes, args.batch, args.width, args.iters, args.warmup)
    print(format_report(header, checks, timings, args.batch, args.width))
    if args.output:
        with open(args.output, "w", encoding="utf-8") as handle:
            json.dump({"header": header, "checks": checks, "timings": timings}, handle, indent=2)
    return 0 if all(row["ok"] for row in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
