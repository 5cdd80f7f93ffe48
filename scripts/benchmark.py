#!/usr/bin/env python
"""CPU speed of MambaOCR against its own ablations and transformers' OCR models, in one run and one table.

Every model runs in its own subprocess (so peak RSS is per model) with the same thread count; each figure is the
median of `--iters` timed iterations after `--warmup` untimed ones. Weights are random: speed does not depend on them.

    python scripts/benchmark.py --threads 2                 # the README's table
    python scripts/benchmark.py --models mambaocr bilstm    # a subset
    python scripts/benchmark.py --models mambaocr mambaocr-onnx   # PyTorch against ONNX Runtime
    python scripts/benchmark.py --paired mambaocr bilstm backbone  # ratios from alternating iterations

`--paired` answers "is A faster than B" on a machine that drifts: the named MambaOCR variants are built in one process
and timed iteration by iteration in turn (the order rotating), so each ratio to the reference (`bilstm` if named,
else the first) is the median of ratios of neighbouring iterations, with its interquartile range, at batch 32 × 32x128
and for the encoders alone at 32 / 128 / 512 frames, and a training step (forward and backward) on a batch padded
as training batches are (widths 64-128 px, padded to 128). No RSS there (the models share a process).

The table's first line names the CPU, the kernels torch dispatches to (AVX2, AVX512, ...) and whether it has native
bf16 (AVX-512 BF16 / AMX). Without it the bf16 rows would time an emulation slower than float32, so they are left out
unless named with `--models`.

`mambaocr-onnx` is the default model exported by `mambaocr_hf.onnx_export` (in a child process, so neither its time
nor its memory counts) and run by ONNX Runtime with `intra_op_num_threads` = `--threads`; it needs the `onnx` extra.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

BATCH = 32
WIDTHS = (128, 256, 512, 1024, 2048)
FRAMES = (32, 128, 512)

# name -> (kind, description, MambaOCRConfig kwargs or None, bf16)
MODELS = {
    "mambaocr": ("mambaocr", "MambaOCR (resnet34 + 2x bi-Mamba, default)", {}, False),
    "mambaocr-bf16": ("mambaocr", "MambaOCR default, bf16 autocast", {}, True),
    "bilstm": ("mambaocr", "same backbone + 2x BiLSTM (CRNN)", {"sequence_model": "bilstm"}, False),
    "bilstm_residual": (
        "mambaocr",
        "same backbone + 2x BiLSTM in residual blocks",
        {"sequence_model": "bilstm_residual"},
        False,
    ),
    "transformer": ("mambaocr", "same backbone + 2x transformer", {"sequence_model": "transformer"}, False),
    "backbone": ("mambaocr", "patched resnet34 alone (no encoder)", {"sequence_model": "none"}, False),
    "small": ("mambaocr", "MambaOCR small preset (resnet18)", {"preset": "small"}, False),
    "small-bf16": ("mambaocr", "MambaOCR small preset, bf16 autocast", {"preset": "small"}, True),
    "mambaocr-onnx": ("onnx", "MambaOCR default, ONNX Runtime", {}, False),
    "mgp-str-base": ("mgp-str", "transformers MGP-STR-base (32x128 fixed)", None, False),
    "trocr-small": ("trocr", "transformers TrOCR-small (384x384, 10 tokens)", None, False),
}
# the ONNX row needs the `onnx` extra
DEFAULT_MODELS = [name for name in MODELS if name != "mambaocr-onnx" or importlib.util.find_spec("onnxruntime")]


def _default_models(native_bf16: bool) -> list[str]:
    """Every row that runs here, the bf16 ones only where the CPU has native bf16."""
    return [name for name in DEFAULT_MODELS if native_bf16 or not MODELS[name][3]]


def _cpu() -> tuple[str, bool]:
    """A line naming this CPU and the kernels torch runs on it, and whether it has native bf16."""
    import platform

    import torch

    from mambaocr_hf.onednn import cpu_supports_bf16

    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            name = next(line.split(":", 1)[1].strip() for line in handle if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    native_bf16 = cpu_supports_bf16()
    capability = torch.backends.cpu.get_cpu_capability()
    return f"CPU: {name}, {os.cpu_count()} cores, torch kernels {capability}, native bf16: {native_bf16}", native_bf16


def _median_ms(fn: Callable[[], object], iters: int, warmup: int) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def _export_default_model(path: str) -> None:
    """Export the default MambaOCR (random weights) to `path`; run in its own process by the ONNX worker."""
    import torch

    from mambaocr_hf import MambaOCRConfig, MambaOCRForCTC
    from mambaocr_hf.onnx_export import export_onnx

    torch.manual_seed(0)
    export_onnx(MambaOCRForCTC(MambaOCRConfig()).eval(), path)


def _onnx_worker(iters: int, warmup: int, threads: int) -> dict:
    """The default model through ONNX Runtime, same rows as the PyTorch worker (no torch imported here)."""
    import tempfile

    import numpy as np
    import onnxruntime

    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "model.onnx")
        export = subprocess.run([sys.executable, __file__, "--export_onnx", path], capture_output=True, text=True)
        if export.returncode != 0:
            raise RuntimeError(f"ONNX export failed: {(export.stderr.strip().splitlines() or ['?'])[-1]}")
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        session = onnxruntime.InferenceSession(path, sess_options=options, providers=["CPUExecutionProvider"])
    generator = np.random.default_rng(0)

    def run(batch: int, width: int) -> Callable[[], object]:
        inputs = {
            "pixel_values": generator.standard_normal((batch, 3, 32, width), dtype=np.float32),
            "pixel_mask": np.ones((batch, width), dtype=np.int64),
        }
        return lambda: session.run(None, inputs)

    results["throughput"] = BATCH / _median_ms(run(BATCH, 128), iters, warmup) * 1000
    results["latency_ms"] = _median_ms(run(1, 128), iters, warmup)
    for width in WIDTHS:
        results[f"w{width}_ms"] = _median_ms(run(8, width), iters, warmup)
    results["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return results


def _build_mambaocr(name: str):
    from mambaocr_hf import MambaOCRConfig, MambaOCRForCTC

    kwargs = dict(MODELS[name][2])
    preset = kwargs.pop("preset", "base")
    return MambaOCRForCTC(MambaOCRConfig.from_preset(preset, **kwargs)).eval()


def _encoder_jobs(model) -> dict[int, Callable[[], object]]:
    """The encoder alone on a full batch of `frames` frames, for each of FRAMES (none for a model without one)."""
    import torch

    if model.config.sequence_model == "none":
        return {}
    jobs = {}
    for frames in FRAMES:
        hidden = torch.randn(BATCH, frames, model.config.hidden_size)
        lengths = torch.full((BATCH,), frames)
        jobs[frames] = lambda h=hidden, n=lengths: model.encoder(h, n)
    return jobs


def _train_step_job(model) -> Callable[[], object]:
    """One training step's forward and backward (no optimiser) on a padded batch of `BATCH` images 64-128 px wide, the
    padding given by the mask as the training collator gives it: the padding is what sends an LSTM over packed
    sequences to its frame-by-frame fallback, so inference timings at full width would not show it."""
    import torch

    generator = torch.Generator().manual_seed(0)
    pixel_values = torch.randn(BATCH, 3, 32, 128, generator=generator)
    stride = model.config.frame_stride  # whole frames, as the image processor pads
    widths = torch.linspace(64, 128, BATCH).long() // stride * stride
    pixel_mask = (torch.arange(128)[None, :] < widths[:, None]).long()
    labels = torch.randint(1, model.config.vocab_size, (BATCH, 6), generator=generator)

    def step() -> None:
        model.train()
        with torch.enable_grad():
            model(pixel_values, pixel_mask, labels=labels).loss.backward()
        model.zero_grad(set_to_none=True)
        model.eval()

    return step


def _paired_ratios(times: dict[str, list[float]], reference: str) -> dict[str, tuple[float, float, float]]:
    """Per model: the median and quartiles over iterations of (reference time / its time), i.e. its speed relative
    to the reference measured in the same moment."""
    ratios = {}
    for name, series in times.items():
        quartiles = statistics.quantiles([ref / own for ref, own in zip(times[reference], series)], n=4)
        ratios[name] = (quartiles[1], quartiles[0], quartiles[2])
    return ratios


def _paired_worker(names: list[str], iters: int, warmup: int) -> dict:
    """Time the named MambaOCR variants in turn, iteration by iteration (see the module docstring)."""
    import torch

    models = {name: _build_mambaocr(name) for name in names}
    pixel_values = torch.randn(BATCH, 3, 32, 128)
    whole = f"b{BATCH} 32x128"
    jobs: dict[str, dict[str, Callable[[], object]]] = {whole: {}}
    for name, model in models.items():
        jobs[whole][name] = lambda m=model: m(pixel_values)
        for frames, encode in _encoder_jobs(model).items():
            jobs.setdefault(f"encoder {frames} frames", {})[name] = encode
        jobs.setdefault(f"train step b{BATCH} 32x128 padded", {})[name] = _train_step_job(model)
    results = {}
    for job, fns in jobs.items():
        if len(fns) < 2:
            continue
        reference = "bilstm" if "bilstm" in fns else next(iter(fns))
        times: dict[str, list[float]] = {name: [] for name in fns}
        order = list(fns)
        with torch.no_grad():
            for index in range(warmup + iters):
                for name in order[index % len(order) :] + order[: index % len(order)]:
                    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=MODELS[name][3]):
                        start = time.perf_counter()
                        fns[name]()
                        if index >= warmup:
                            times[name].append(time.perf_counter() - start)
        ratios = _paired_ratios(times, reference)
        results[job] = {
            "reference": reference,
            "rows": {
                name: {"ms": statistics.median(times[name]) * 1000, "ratio": ratio[0], "q1": ratio[1], "q3": ratio[2]}
                for name, ratio in ratios.items()
            },
        }
    return results


def _format_paired(results: dict, threads: int, iters: int, cpu: str = "") -> str:
    lines = [
        *([cpu] if cpu else []),
        f"torch.set_num_threads({threads}); one process, models timed in turn; {iters} paired iterations after "
        "warm-up; random weights",
        "",
        "| job | model | median ms | speed vs reference (median of paired ratios) | interquartile range |",
        "|---|---|---|---|---|",
    ]
    for job, result in results.items():
        for name, row in result["rows"].items():
            reference = " (reference)" if name == result["reference"] else ""
            lines.append(
                f"| {job} | {name}{reference} | {row['ms']:.1f} | {row['ratio']:.3f} | {row['q1']:.3f}-{row['q3']:.3f} |"
            )
    return "\n".join(lines)


def _worker(name: str, iters: int, warmup: int) -> dict:
    import torch

    kind, _, kwargs, bf16 = MODELS[name]
    results: dict[str, float] = {}
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16)
    if kind == "mambaocr":
        model = _build_mambaocr(name)

        def run(batch: int, width: int) -> Callable[[], object]:
            pixel_values = torch.randn(batch, 3, 32, width)
            return lambda: model(pixel_values)

        with torch.no_grad(), autocast:
            results["throughput"] = BATCH / _median_ms(run(BATCH, 128), iters, warmup) * 1000
            results["latency_ms"] = _median_ms(run(1, 128), iters, warmup)
            for width in WIDTHS:
                results[f"w{width}_ms"] = _median_ms(run(8, width), iters, warmup)
            for frames, encode in _encoder_jobs(model).items():
                results[f"enc{frames}_ms"] = _median_ms(encode, iters, warmup)
    elif kind == "mgp-str":
        from transformers import MgpstrConfig, MgpstrForSceneTextRecognition

        model = MgpstrForSceneTextRecognition(MgpstrConfig()).eval()
        with torch.no_grad():
            batch = torch.randn(BATCH, 3, 32, 128)
            results["throughput"] = BATCH / _median_ms(lambda: model(batch), iters, warmup) * 1000
            single = torch.randn(1, 3, 32, 128)
            results["latency_ms"] = _median_ms(lambda: model(single), iters, warmup)
    elif kind == "trocr":
        from transformers import TrOCRConfig, VisionEncoderDecoderConfig, VisionEncoderDecoderModel, ViTConfig

        encoder = ViTConfig(
            hidden_size=384, num_hidden_layers=12, num_attention_heads=6, intermediate_size=1536, image_size=384
        )
        decoder = TrOCRConfig(
            vocab_size=64044, d_model=256, decoder_layers=6, decoder_attention_heads=8, decoder_ffn_dim=1024
        )
        config = VisionEncoderDecoderConfig.from_encoder_decoder_configs(encoder, decoder)
        config.decoder_start_token_id, config.pad_token_id, config.eos_token_id = 2, 1, None
        model = VisionEncoderDecoderModel(config).eval()

        def generate(batch: int) -> Callable[[], object]:
            pixel_values = torch.randn(batch, 3, 384, 384)
            return lambda: model.generate(pixel_values, max_new_tokens=10, min_new_tokens=10, do_sample=False)

        with torch.no_grad():
            results["throughput"] = BATCH / _median_ms(generate(BATCH), max(1, iters // 2), 1) * 1000
            results["latency_ms"] = _median_ms(generate(1), iters, warmup)
    results["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return results


def _format_table(rows: dict[str, dict], threads: int, cpu: str = "") -> str:
    reference = rows.get("bilstm", {}).get("throughput")
    header = (
        ["model", "img/s b32 32x128", "x bilstm", "latency b1 ms"]
        + [f"b8 w{w} ms" for w in WIDTHS]
        + ["w2048/w128"]
        + [f"enc {f}fr ms" for f in FRAMES]
        + ["peak RSS MB"]
    )
    lines = [
        *([cpu] if cpu else []),
        f"torch.set_num_threads({threads}); batch {BATCH}; median of timed iterations after warm-up; random weights",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    for name, result in rows.items():
        if "error" in result:
            lines.append(f"| {name} | error: {result['error'][:80]} |")
            continue

        def cell(key: str, fmt: str = "{:.1f}", result: dict = result) -> str:
            return fmt.format(result[key]) if key in result else "n/a"

        ratio = f"{result['throughput'] / reference:.2f}" if reference else "n/a"
        scaling = f"{result['w2048_ms'] / result['w128_ms']:.1f}" if "w2048_ms" in result else "n/a"
        cells = (
            [f"{name}: {MODELS[name][1]}", cell("throughput"), ratio, cell("latency_ms")]
            + [cell(f"w{w}_ms") for w in WIDTHS]
            + [scaling]
            + [cell(f"enc{f}_ms") for f in FRAMES]
            + [cell("peak_rss_mb", "{:.0f}")]
        )
        lines.append("| " + " | ".join(cells) + " |")
    torch_row, onnx_row = rows.get("mambaocr", {}), rows.get("mambaocr-onnx", {})
    if "throughput" in torch_row and "throughput" in onnx_row:
        lines += [
            "",
            f"ONNX Runtime / PyTorch (default model): {onnx_row['throughput'] / torch_row['throughput']:.2f}x the "
            f"img/s at b32 32x128, {torch_row['w2048_ms'] / onnx_row['w2048_ms']:.2f}x the speed at b8 32x2048.",
        ]
    return "\n".join(lines)


def _median_over_rounds(results: list[dict]) -> dict:
    """Per figure, the median over the rounds that produced it (a round that failed is an error only if all did)."""
    good = [result for result in results if "error" not in result]
    if not good:
        return results[0]
    return {key: statistics.median(result[key] for result in good if key in result) for key in good[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads for every model")
    parser.add_argument("--iters", type=int, default=5, help="timed iterations (median reported), at least 5")
    parser.add_argument("--warmup", type=int, default=2, help="untimed iterations first")
    parser.add_argument(
        "--models", nargs="+", default=None, choices=list(MODELS), help="default: all (bf16 rows: with native bf16)"
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="run every model this many times, interleaved (round r starts at model r), and report each figure's "
        "median over rounds: a shared machine drifts over minutes, which skews one-after-the-other ratios",
    )
    parser.add_argument(
        "--paired",
        nargs="+",
        default=None,
        choices=[name for name, spec in MODELS.items() if spec[0] == "mambaocr"],
        help="instead of the table: these MambaOCR variants in one process, timed in turn, ratios to bilstm (or the "
        "first) from paired iterations (use --iters 30 or more)",
    )
    parser.add_argument("--output", default=None, help="also write the results as JSON here")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--export_onnx", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.export_onnx:
        _export_default_model(args.export_onnx)
        return
    if args.worker and MODELS[args.worker][0] == "onnx":
        print(json.dumps(_onnx_worker(args.iters, args.warmup, args.threads)))
        return
    if args.worker:
        import torch

        torch.set_num_threads(args.threads)
        torch.manual_seed(0)
        print(json.dumps(_worker(args.worker, args.iters, args.warmup)))
        return

    if args.rounds < 1:
        parser.error(f"--rounds must be at least 1, got {args.rounds}.")
    cpu, native_bf16 = _cpu()
    print(cpu, file=sys.stderr)
    if args.paired:
        if len(set(args.paired)) < 2:
            parser.error("--paired needs at least two different models.")
        if not native_bf16 and any(MODELS[name][3] for name in args.paired):
            print("no native bf16 on this CPU: the bf16 variants time an emulation", file=sys.stderr)
        import torch

        torch.set_num_threads(args.threads)
        torch.manual_seed(0)
        results = _paired_worker(list(dict.fromkeys(args.paired)), max(5, args.iters), args.warmup)
        print(_format_paired(results, args.threads, max(5, args.iters), cpu))
        if args.output:
            with open(args.output, "w", encoding="utf-8") as handle:
                json.dump({"threads": args.threads, "paired": results}, handle, indent=2)
        return
    if args.models is None:
        args.models = _default_models(native_bf16)
        if not native_bf16:
            print(
                "no native bf16 on this CPU: the bf16 rows are left out (name them to time the emulation)",
                file=sys.stderr,
            )
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    runs: dict[str, list[dict]] = {name: [] for name in args.models}
    for round_index in range(args.rounds):
        order = args.models[round_index % len(args.models) :] + args.models[: round_index % len(args.models)]
        for name in order:
            print(f"benchmarking {name} (round {round_index + 1}/{args.rounds}) ...", file=sys.stderr, flush=True)
            command = [sys.executable, __file__, "--worker", name, "--threads", str(args.threads)]
            command += ["--iters", str(max(5, args.iters)), "--warmup", str(args.warmup)]
            result = subprocess.run(command, capture_output=True, text=True, env=env)
            if result.returncode != 0:
                runs[name].append(
                    {"error": result.stderr.strip().splitlines()[-1] if result.stderr.strip() else "failed"}
                )
            else:
                runs[name].append(json.loads(result.stdout.strip().splitlines()[-1]))
    rows = {name: _median_over_rounds(results) for name, results in runs.items()}
    table = _format_table(rows, args.threads, cpu)
    if args.rounds > 1:
        table += f"\n\nEach figure: median over {args.rounds} interleaved rounds."
    print(table)
    if args.output:
        with open(args.output, "w", encoding="utf-8") as handle:
            json.dump({"threads": args.threads, "results": rows}, handle, indent=2)


if __name__ == "__main__":
    main()
