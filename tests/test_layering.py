"""Layering (issue #21): a checkpoint carries only the code inference needs, every module imports alone, and the
package's modules import each other without a cycle."""

import ast
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from transformers.dynamic_module_utils import check_imports

from mambaocr_hf import MambaOCRConfig, MambaOCRForCTC, MambaOCRProcessor, save_checkpoint

from .conftest import tiny_config_kwargs

PACKAGE = Path(__file__).resolve().parent.parent / "mambaocr_hf"

# What transformers copies into a checkpoint (the model's, the processor's and the pipeline's files and everything
# they import relatively): the model and its kernels, the processor's parts, the pipeline. Nothing of training,
# fine-tuning or publishing (peft_utils.py, hub.py, training.py, data/).
MODEL_FILES = {
    "configuration_mambaocr.py",
    "modeling_mambaocr.py",
    "selective_scan.py",
    "cpu_kernels.py",
    "cpu_kernels_source.py",
    "onednn.py",
    "backbone_cpu.py",
    "scan_paths.py",
    "model_loading.py",
    "freezing.py",
    "model_inputs.py",
    "bf16_inference.py",
}
CHECKPOINT_FILES = MODEL_FILES | {
    "tokenization_mambaocr.py",
    "image_processing_mambaocr.py",
    "processing_mambaocr.py",
    "decoding.py",
    "pipeline_mambaocr.py",
}


def _python_files(folder: Path) -> set[str]:
    return {path.name for path in folder.iterdir() if path.suffix == ".py"}


def test_a_checkpoint_carries_only_the_inference_code(tmp_path):
    model = MambaOCRForCTC(MambaOCRConfig(**tiny_config_kwargs()))
    save_checkpoint(model, MambaOCRProcessor.from_defaults(), tmp_path / "checkpoint")
    carried = _python_files(tmp_path / "checkpoint")
    assert carried == CHECKPOINT_FILES
    for name in sorted(carried):
        # every library a file imports is installed (transformers runs this check before it loads remote code), and
        # every file it imports relatively travelled with it
        relative = check_imports(tmp_path / "checkpoint" / name)
        assert {f"{module}.py" for module in relative} <= carried, name
    # the model alone (what `model.save_pretrained`, and so the Trainer, writes) carries the model files only
    model.save_pretrained(tmp_path / "model")
    assert _python_files(tmp_path / "model") == MODEL_FILES


def _modules() -> list[str]:
    """Every module of the package by its dotted name (packages by their own name; `__main__` scripts left out)."""
    names = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if parts[-1] != "__main__":
            names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


IMPORT_ALONE = textwrap.dedent(
    """
    import importlib, os, sys, traceback, types

    # the libraries once, here; each module is then imported in a forked child that has loaded no mambaocr_hf module
    # (transformers' lazy submodules and datasets too: imported in every child they took ~1.5 s each, 60 s in all)
    import numpy, PIL.Image, timm, torch, transformers  # noqa: F401
    import datasets, transformers.modeling_utils, transformers.pipelines, transformers.trainer  # noqa: F401

    root, names = sys.argv[1], sys.argv[2:]
    failed = []
    for name in names:
        pid = os.fork()
        if pid == 0:
            try:
                if name != "mambaocr_hf":
                    # the package without its __init__ (which imports everything and registers the Auto classes): the
                    # module gets only what it imports itself, as a checkpoint's code does
                    package = types.ModuleType("mambaocr_hf")
                    package.__path__ = [os.path.join(root, "mambaocr_hf")]
                    sys.modules["mambaocr_hf"] = package
                importlib.import_module(name)
            except BaseException:
                traceback.print_exc()
                os._exit(1)
            os._exit(0)
        _, status = os.waitpid(pid, 0)
        if status:
            failed.append(name)
    print("FAILED:", " ".join(failed))
    sys.exit(1 if failed else 0)
    """
)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="imports each module in a forked child")
def test_every_module_imports_alone(tmp_path):
    script = tmp_path / "import_alone.py"
    script.write_text(IMPORT_ALONE)
    result = subprocess.run(
        [sys.executable, str(script), str(PACKAGE.parent), *_modules()],
        cwd=tmp_path,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-500:] + result.stderr[-3000:]


def _relative_imports(module: str, path: Path) -> set[str]:
    """The package modules `module` imports relatively, at its top level and inside functions (transformers copies
    both kinds into checkpoints)."""
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    targets = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.ImportFrom) or node.level == 0:
            continue
        base = package[: len(package) - node.level + 1]
        if node.module:
            targets.add(".".join([*base, node.module]))
        else:  # `from . import name`: a submodule, or a name of the package's __init__
            for alias in node.names:
                candidate = ".".join([*base, alias.name])
                targets.add(candidate if candidate in _MODULE_PATHS else ".".join(base))
    return targets


_MODULE_PATHS = {
    name: PACKAGE.parent / Path(*name.split(".")) / "__init__.py"
    if (PACKAGE.parent / Path(*name.split("."))).is_dir()
    else (PACKAGE.parent / Path(*name.split("."))).with_suffix(".py")
    for name in _modules()
}


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle of `graph` as a list of nodes (the first repeated at the end), or None."""
    state: dict[str, str] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node], _ = "open", stack.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == "open":
                return stack[stack.index(target) :] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        state[node], _ = "done", stack.pop()
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_import_graph_has_no_cycle():
    graph = {name: _relative_imports(name, path) for name, path in _MODULE_PATHS.items()}
    unknown = {(name, target) for name, targets in graph.items() for target in targets if target not in graph}
    assert not unknown, f"relative imports of no module: {sorted(unknown)}"
    assert _find_cycle(graph) is None, " -> ".join(_find_cycle(graph))
    # the model's files import only their configuration, their kernels and libraries
    model_modules = {f"mambaocr_hf.{name.removesuffix('.py')}" for name in MODEL_FILES}
    for name in model_modules:
        assert graph[name] <= model_modules, (name, graph[name] - model_modules)


def test_the_cycle_finder_finds_cycles():
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None
