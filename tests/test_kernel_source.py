"""The C kernels' source: `cpu_kernels.c` is the source of truth, compiles without warnings, and the copy that
checkpoints carry (`cpu_kernels_source.py`) is the one `make fix-copies` generates from it."""

import os
import platform
import shutil
import subprocess

import pytest

from mambaocr_hf import cpu_kernels_source

from .conftest import ROOT, load_script

C_FILE = ROOT / "mambaocr_hf" / "cpu_kernels.c"


def test_the_generated_copy_matches_the_c_file():
    assert cpu_kernels_source.SOURCE == "\n" + C_FILE.read_text(encoding="utf-8")
    assert load_script("check_copies").check_copies() == [], "run `make fix-copies`"


def test_check_copies_finds_and_fixes_a_drift(tmp_path):
    check = load_script("check_copies")
    (tmp_path / "mambaocr_hf").mkdir()
    (tmp_path / "mambaocr_hf" / "cpu_kernels.c").write_text("int answer(void) { return 42; }\n")
    assert check.check_copies(root=tmp_path) == ["mambaocr_hf/cpu_kernels_source.py"]  # missing
    assert check.check_copies(fix=True, root=tmp_path) == ["mambaocr_hf/cpu_kernels_source.py"]
    assert check.check_copies(root=tmp_path) == []
    (tmp_path / "mambaocr_hf" / "cpu_kernels.c").write_text("int answer(void) { return 43; }\n")
    assert check.check_copies(root=tmp_path) == ["mambaocr_hf/cpu_kernels_source.py"]  # edited
    with pytest.raises(ValueError, match="raw triple-quoted"):
        check.render("x.c", "SOURCE", 'const char* s = """;')


def _compiler() -> str:
    compiler = os.environ.get("CC", "cc")
    if shutil.which(compiler) is None:
        pytest.skip(f"no C compiler ({compiler!r}) on this machine: the model runs the eager PyTorch scan there")
    return compiler


def _compile(compiler: str, flags: list[str], output) -> subprocess.CompletedProcess:
    command = [compiler, "-Wall", "-Wextra", "-Werror", "-O2", *flags, "-c", str(C_FILE), "-o", str(output)]
    return subprocess.run(command, capture_output=True, text=True, timeout=300)


def test_the_c_file_compiles_with_warnings_as_errors(tmp_path):
    compiler = _compiler()
    probe = tmp_path / "probe.c"
    probe.write_text("int main(void) { return 0; }\n")
    openmp = subprocess.run([compiler, "-fopenmp", "-c", str(probe), "-o", str(tmp_path / "probe.o")]).returncode == 0
    # without OpenMP the kernels build too (serially), its pragmas then being unknown
    flags = ["-fopenmp"] if openmp else ["-Wno-unknown-pragmas"]
    result = _compile(compiler, flags, tmp_path / "portable.o")
    assert result.returncode == 0, result.stderr[-3000:]
    if platform.machine() in ("x86_64", "AMD64"):  # the AVX-512 code path, whatever this CPU has
        result = _compile(compiler, [*flags, "-mavx512f", "-mavx512dq"], tmp_path / "avx512.o")
        assert result.returncode == 0, result.stderr[-3000:]
