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
