"""scripts/benchmark.py's bookkeeping (the timings themselves are not tested: they belong to benchmark runs)."""

import subprocess
import sys

import pytest

from .conftest import ROOT, load_script


def test_rounds_report_each_figures_median():
    benchmark = load_script("benchmark")
    rounds = [{"throughput": 10.0, "enc32_ms": 5.0}, {"error": "killed"}, {"throughput": 30.0, "enc32_ms": 3.0},
              {"throughput": 20.0, "enc32_ms": 4.0}]  # fmt: skip
    assert benchmark._median_over_rounds(rounds) == {"throughput": 20.0, "enc32_ms": 4.0}
    assert benchmark._median_over_rounds([{"error": "killed"}]) == {"error": "killed"}


def test_rounds_must_be_positive():
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "benchmark.py"), "--rounds", "0"], capture_output=True, text=True
    )
    assert result.returncode == 2 and "--rounds must be at least 1" in result.stderr


def test_table_names_the_cpu_and_bf16_rows_need_native_bf16():
    benchmark = load_script("benchmark")
    cpu, native = benchmark._cpu()
    assert cpu.startswith("CPU: ") and f"native bf16: {native}" in cpu
    assert benchmark._format_table({"bilstm": {"throughput": 10.0}}, 2, cpu).splitlines()[0] == cpu
    emulated = benchmark._default_models(native_bf16=False)
    assert "mambaocr" in emulated and not any(name.endswith("-bf16") for name in emulated)
    assert {"mambaocr-bf16", "small-bf16"} <= set(benchmark._default_models(native_bf16=True))


def test_paired_ratios_compare_neighbouring_iterations():
    benchmark = load_script("benchmark")
    # the machine slows down step by step, and b always runs in the next, slower moment: b is 25-50% faster than
    # the reference in each pair, which the ratio of the two medians (3 / 3) would not show
    times = {"ref": [1.0, 2.0, 3.0, 4.0, 5.0], "b": [5.0, 1.5, 2.0, 3.0, 4.0]}
    ratios = benchmark._paired_ratios(times, "ref")
    assert ratios["ref"] == (1.0, 1.0, 1.0)
    assert ratios["b"][0] == pytest.approx(4 / 3) and ratios["b"][1] < 4 / 3 < ratios["b"][2]


@pytest.mark.slow
def test_paired_mode_needs_two_different_models():
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "benchmark.py"), "--paired", "bilstm", "bilstm"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2 and "--paired needs at least two different models" in result.stderr


@pytest.mark.slow
def test_paired_mode_times_each_variant_and_encoder(monkeypatch):
    benchmark = load_script("benchmark")
    tiny = {"backbone": "resnet10t", "hidden_size": 32, "state_size": 4, "adapter_size": 8}
    monkeypatch.setitem(benchmark.MODELS, "mambaocr", ("mambaocr", "tiny mamba", tiny, False))
    monkeypatch.setitem(
        benchmark.MODELS, "bilstm", ("mambaocr", "tiny bilstm", {**tiny, "sequence_model": "bilstm"}, False)
    )
    monkeypatch.setitem(
        benchmark.MODELS, "backbone", ("mambaocr", "tiny none", {**tiny, "sequence_model": "none"}, False)
    )
    monkeypatch.setattr(benchmark, "BATCH", 2)
    results = benchmark._paired_worker(["mambaocr", "bilstm", "backbone"], iters=5, warmup=1)
    assert list(results) == [
        "b2 32x128",
        "encoder 32 frames",
        "encoder 128 frames",
        "encoder 512 frames",
        "train step b2 32x128 padded",
    ]
    assert set(results["train step b2 32x128 padded"]["rows"]) == {"mambaocr", "bilstm", "backbone"}
    assert set(results["b2 32x128"]["rows"]) == {"mambaocr", "bilstm", "backbone"}
    assert set(results["encoder 32 frames"]["rows"]) == {"mambaocr", "bilstm"}  # no encoder in the backbone alone
    for result in results.values():
        assert result["reference"] == "bilstm" and result["rows"]["bilstm"]["ratio"] == 1.0
        for row in result["rows"].values():
            assert row["ms"] > 0 and row["q1"] <= row["ratio"] <= row["q3"]
    table = benchmark._format_paired(results, 2, 5)
    assert "| encoder 128 frames | bilstm (reference) |" in table
