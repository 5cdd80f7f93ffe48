"""Shared fixtures: tiny configs so the suite runs in minutes on 2 CPU cores, and no network."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# The CPU scan kernels (built by the system C compiler on first use, ~1 s, then cached) run in every test, as they
# do for users.

import importlib.util  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import textwrap  # noqa: E402
import threading  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(2)


def tiny_config_kwargs(**overrides):
    """A small but complete MambaOCR: timm's 5M-parameter resnet10t (deep stem, avg-pool shortcuts), 2 Mamba
    layers of width 32."""
    kwargs = dict(
        backbone="resnet10t",
        hidden_size=32,
        num_hidden_layers=2,
        state_size=4,
        expand=2,
        adapter_size=8,
        hidden_dropout=0.0,
        num_attention_heads=2,
    )
    kwargs.update(overrides)
    return kwargs


ROOT = Path(__file__).resolve().parent.parent


def load_script(name: str):
    """`scripts/<name>.py` imported as a module (the scripts are not a package)."""
    spec = importlib.util.spec_from_file_location(f"{name}_script", ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


# The first lines of a script run in a subprocess where `mambaocr_hf` cannot be imported, as for a user who only has
# transformers and a checkpoint (its code comes from the checkpoint, through trust_remote_code).
WITHOUT_MAMBAOCR_PREAMBLE = textwrap.dedent(
    """
    import importlib.abc, sys

    class BlockMambaOCR(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name.split(".")[0] == "mambaocr_hf":
                raise ImportError("mambaocr_hf is not installed here")

    sys.meta_path.insert(0, BlockMambaOCR())
    """
)


def make_hub_cache(checkpoint, cache, repo_id: str = "org/mambaocr"):
    """Lay `checkpoint` out as the Hub cache holds `repo_id` after a download (point `HF_HUB_CACHE` at `cache`)."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    shutil.copytree(checkpoint, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    return cache


def run_in_threads(function, items, num_threads: int = 2) -> tuple[dict, list]:
    """`function(item)` for every item, the items dealt round-robin to `num_threads` threads started together; the
    results by item index and the exceptions raised."""
    results, errors = {}, []
    start = threading.Barrier(num_threads)

    def work(indices):
        start.wait()
        for index in indices:
            try:
                results[index] = function(items[index])
            except Exception as error:  # collected: a raise in a thread would not fail the test
                errors.append(error)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # switch threads often, as a busy server's calls interleave
    try:
        threads = [
            threading.Thread(target=work, args=(range(k, len(items), num_threads),)) for k in range(num_threads)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(interval)
    return results, errors
