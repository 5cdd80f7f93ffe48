"""scripts/benchmark.py's bookkeeping (the timings themselves are not tested: they belong to benchmark runs)."""

import subprocess
import sys

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
