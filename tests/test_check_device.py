"""scripts/check_device.py: the scan-path and mixed-precision checks that a GPU session runs, here on the CPU."""

import json

import pytest
import torch

from mambaocr_hf import scan_paths
from mambaocr_hf.cpu_kernels import kernels_available

from .conftest import load_script

TINY = "backbone=resnet10t,hidden_size=32,state_size=4,adapter_size=8"
ARGS = ["--device", "cpu", "--config_overrides", TINY, "--check_batch", "2", "--width", "64", "--batch", "2",
        "--iters", "1", "--warmup", "0"]  # fmt: skip


@pytest.mark.slow
def test_every_cpu_path_matches_the_reference(tmp_path, capsys):
    check = load_script("check_device")
    assert check.main([*ARGS, "--output", str(tmp_path / "check.json")]) == 0
    result = json.loads((tmp_path / "check.json").read_text())
    paths = ["compiled", "chunked"] if kernels_available() else ["chunked"]
    assert {row["path"] for row in result["checks"]} == set(paths)
    assert all(row["ok"] and row["error"] <= 1e-3 for row in result["checks"])
    assert {f"scan, length {n}" for n in check.SCAN_LENGTHS} < {row["check"] for row in result["checks"]}
    assert [row["path"] for row in result["timings"] if row["dtype"] == "float32"] == paths
    assert "| model logits and gradients | chunked |" in capsys.readouterr().out


@pytest.mark.slow
def test_a_wrong_scan_path_fails_the_check(monkeypatch, tmp_path):
    check = load_script("check_device")
    wrong = lambda *args, **kwargs: check.selective_scan_reference(*args, **kwargs) * 1.01  # noqa: E731
    monkeypatch.setattr(check, "selective_scan_chunked", wrong)
    rows = check.check_scans(["chunked"], torch.device("cpu"), 1e-3)
    assert not any(row["ok"] for row in rows) and all(0.005 < row["error"] < 0.05 for row in rows)
    monkeypatch.undo()
    # the model check reads the scan the model runs: the scans alone pass, the model fails
    monkeypatch.setitem(scan_paths.SCANS, "chunked", wrong)
    assert check.main([*ARGS, "--iters", "0", "--output", str(tmp_path / "check.json")]) == 1
    rows = json.loads((tmp_path / "check.json").read_text())["checks"]
    failed = [(row["check"], row["path"]) for row in rows if not row["ok"]]
    assert failed == [("model logits and gradients", "chunked")]


def test_cuda_without_a_gpu_is_a_clear_error(capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    check = load_script("check_device")
    with pytest.raises(SystemExit):
        check.main(["--device", "cuda"])
    assert "torch sees no CUDA device here: pass --device cpu" in capsys.readouterr().err
