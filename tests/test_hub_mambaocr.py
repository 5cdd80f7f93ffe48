"""Auto classes, remote code and Hub-cache loading: what a transformers user does with a checkpoint."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from PIL import Image
from transformers import (
    AutoConfig,
    AutoImageProcessor,
    AutoModel,
    AutoModelForCTC,
    AutoProcessor,
    AutoTokenizer,
)

from mambaocr_hf import (
    MambaOCRConfig,
    MambaOCRForCTC,
    MambaOCRImageProcessor,
    MambaOCRProcessor,
    MambaOCRTokenizer,
    save_checkpoint,
)

from .conftest import WITHOUT_MAMBAOCR_PREAMBLE, make_hub_cache, tiny_config_kwargs


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt")
    model = MambaOCRForCTC(MambaOCRConfig(**tiny_config_kwargs())).eval()
    save_checkpoint(
        model,
        MambaOCRProcessor.from_defaults(),
        path,
        metrics={"cer": 0.05, "word_accuracy": 0.9},
        training_data="synthetic words",
        datasets=["synthetic"],
    )
    return path, model


def _inputs():
    processor = MambaOCRProcessor.from_defaults()
    return processor(images=[Image.new("RGB", (90, 30), "white"), Image.new("L", (40, 40))], return_tensors="pt")


def test_checkpoint_layout(checkpoint):
    path, _ = checkpoint
    files = set(os.listdir(path))
    assert {"model.safetensors", "config.json", "vocab.json", "tokenizer_config.json", "README.md"} <= files
    assert {"modeling_mambaocr.py", "configuration_mambaocr.py", "selective_scan.py"} <= files
    assert not any(name.endswith((".bin", ".pt", ".pth", ".ckpt")) for name in files)  # safetensors only
    auto_map = json.loads((path / "config.json").read_text())["auto_map"]
    assert auto_map == {
        "AutoConfig": "configuration_mambaocr.MambaOCRConfig",
        "AutoModel": "modeling_mambaocr.MambaOCRForCTC",
        "AutoModelForCTC": "modeling_mambaocr.MambaOCRForCTC",
    }


def test_model_card(checkpoint):
    card = (checkpoint[0] / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: transformers\npipeline_tag: image-to-text\nlicense: apache-2.0\n")
    assert 'datasets:\n- "synthetic"\nmambaocr:\n  charset: "0123456789abcdefghijklmnopqrstuvwxyz"' in card
    assert '  metrics:\n    "cer": 0.05\n    "word_accuracy": 0.9\n---' in card
    assert "| cer | 0.0500 |" in card and "| word_accuracy | 0.9000 |" in card
    assert "0123456789abcdefghijklmnopqrstuvwxyz" in card and "resnet10t" in card
    assert "AutoModel.from_pretrained" in card


def test_model_card_metadata_survives_odd_names(tmp_path):
    """Dataset names and metric values are written as quoted YAML: a name starting with "*" or holding " #" or ": "
    stays itself, and a charset with backticks stays one code span."""
    from huggingface_hub import ModelCard

    from mambaocr_hf.hub import markdown_code, write_model_card

    model = MambaOCRForCTC(MambaOCRConfig(**tiny_config_kwargs()))
    names = ["*.lmdb", "crops #2", "mjsynth:/data/mj"]
    path = write_model_card(tmp_path, model, MambaOCRProcessor.from_defaults().tokenizer, {"cer": 0.1, "note": "a: b"},
                            datasets=names)  # fmt: skip
    metadata = ModelCard.load(path).data.to_dict()
    assert metadata["datasets"] == names and metadata["mambaocr"]["metrics"] == {"cer": 0.1, "note": "a: b"}
    import numpy as np

    from mambaocr_hf.hub import yaml_scalar

    assert [yaml_scalar(v) for v in (np.float32(0.25), torch.tensor(3), float("nan"), None, "a: b")] == [
        "0.25", "3", ".nan", "null", '"a: b"'
    ]  # fmt: skip
    assert markdown_code("a`b") == "``a`b``" and markdown_code("`x") == "`` `x ``" and markdown_code("ab") == "`ab`"


@pytest.mark.slow
def test_model_card_template_ships_as_package_data(tmp_path):
    """The template is package data: a wheel and an sdist carry it inside `mambaocr_hf/`, nothing is installed under
    `sys.prefix/share` (which a `--user` install does not use), and an install outside the venv's prefix (here a
    `--target` folder) writes model cards."""
    import shutil
    import tarfile
    import zipfile

    root = Path(__file__).resolve().parent.parent
    source = tmp_path / "source"
    for name in ("setup.cfg", "pyproject.toml", "README.md"):
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(root / name, source / name)
    shutil.copytree(root / "mambaocr_hf", source / "mambaocr_hf", ignore=shutil.ignore_patterns("__pycache__"))
    built = []
    for hook in ("build_wheel", "build_sdist"):  # one process each: setuptools keeps state between the two
        build = f"import sys; from setuptools import build_meta; print(build_meta.{hook}(sys.argv[1]))"
        result = subprocess.run([sys.executable, "-c", build, str(tmp_path / "dist")], cwd=source,
                                capture_output=True, text=True, timeout=300)  # fmt: skip
        assert result.returncode == 0, result.stderr[-3000:]
        built.append(result.stdout.split()[-1])
    wheel_name, sdist_name = built
    with zipfile.ZipFile(tmp_path / "dist" / wheel_name) as wheel:
        names = wheel.namelist()
    assert "mambaocr_hf/templates/model_card.md" in names and not any(".data/data/" in name for name in names)
    with tarfile.open(tmp_path / "dist" / sdist_name) as sdist:
        assert any(name.endswith("/mambaocr_hf/templates/model_card.md") for name in sdist.getnames())

    target = tmp_path / "target"
    with zipfile.ZipFile(tmp_path / "dist" / wheel_name) as wheel:
        wheel.extractall(target)  # what `pip install --target` lays out; the dependencies come from this venv
    script = textwrap.dedent(
        """
        import sys, torch, mambaocr_hf
        from mambaocr_hf import MambaOCRConfig, MambaOCRForCTC, MambaOCRProcessor, save_checkpoint
        assert mambaocr_hf.__file__.startswith(sys.argv[1]), mambaocr_hf.__file__
        model = MambaOCRForCTC(MambaOCRConfig(backbone="resnet10t", hidden_size=32, adapter_size=8))
        save_checkpoint(model, MambaOCRProcessor.from_defaults(), sys.argv[2])
        """
    )
    env = {**os.environ, "PYTHONPATH": str(target), "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([sys.executable, "-c", script, str(target), str(tmp_path / "ckpt")], env=env,
                            cwd=tmp_path, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "AutoModel.from_pretrained" in (tmp_path / "ckpt" / "README.md").read_text()


@pytest.mark.slow
def test_auto_classes_round_trip(checkpoint):
    path, model = checkpoint
    assert isinstance(AutoConfig.from_pretrained(path), MambaOCRConfig)
    assert isinstance(AutoTokenizer.from_pretrained(path), MambaOCRTokenizer)
    assert isinstance(AutoImageProcessor.from_pretrained(path), MambaOCRImageProcessor)
    processor = AutoProcessor.from_pretrained(path)
    assert isinstance(processor, MambaOCRProcessor)
    inputs = _inputs()
    with torch.no_grad():
        expected = model(**inputs).logits
        for auto in (AutoModel, AutoModelForCTC):
            loaded = auto.from_pretrained(path).eval()
            assert isinstance(loaded, MambaOCRForCTC)
            assert torch.equal(loaded(**inputs).logits, expected)


def test_save_checkpoint_refuses_mismatched_vocab(checkpoint, tmp_path):
    with pytest.raises(ValueError, match="must match"):
        save_checkpoint(checkpoint[1], MambaOCRProcessor.from_defaults(charset="printable"), tmp_path)


REMOTE_SCRIPT = WITHOUT_MAMBAOCR_PREAMBLE + textwrap.dedent(
    """
    import torch
    from transformers import AutoModel, AutoProcessor
    from PIL import Image

    model = AutoModel.from_pretrained(sys.argv[1], trust_remote_code=True).eval()
    processor = AutoProcessor.from_pretrained(sys.argv[1], trust_remote_code=True)
    assert "mambaocr_hf" not in sys.modules
    inputs = processor(images=[Image.new("RGB", (90, 30), "white"), Image.new("L", (40, 40))], return_tensors="pt")
    with torch.no_grad():
        torch.save(model(**inputs).logits, sys.argv[2])
    print(type(model).__module__, processor.batch_decode(torch.load(sys.argv[2])))
    """
)


def _run_isolated(tmp_path, model_ref, env_extra):
    script = tmp_path / "load.py"
    script.write_text(REMOTE_SCRIPT)
    out = tmp_path / "logits.pt"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", **env_extra}
    env.pop("PYTHONPATH", None)
    result = subprocess.run(
        [sys.executable, str(script), str(model_ref), str(out)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout, torch.load(out)


@pytest.mark.slow
def test_remote_code_loads_without_the_package(checkpoint, tmp_path):
    path, model = checkpoint
    stdout, logits = _run_isolated(tmp_path, path, {"HF_MODULES_CACHE": str(tmp_path / "modules")})
    assert "transformers_modules" in stdout
    with torch.no_grad():
        assert torch.allclose(logits, model(**_inputs()).logits, atol=1e-6)


@pytest.mark.slow
def test_load_by_repo_id_from_the_local_hub_cache(checkpoint, tmp_path):
    """Lay the checkpoint out as the Hub cache holds `org/mambaocr`, then load it by repo id offline."""
    path, model = checkpoint
    cache = make_hub_cache(path, tmp_path / "hub")
    env = {"HF_HUB_CACHE": str(cache), "HF_MODULES_CACHE": str(tmp_path / "modules")}
    _, logits = _run_isolated(tmp_path, "org/mambaocr", env)
    with torch.no_grad():
        assert torch.allclose(logits, model(**_inputs()).logits, atol=1e-6)
    # and with the package installed, through the registered Auto classes (no remote code)
    script = tmp_path / "installed.py"
    script.write_text(
        textwrap.dedent(
            """
        import sys, torch
        import mambaocr_hf
        from transformers import AutoModel, AutoProcessor
        model = AutoModel.from_pretrained("org/mambaocr")
        processor = AutoProcessor.from_pretrained("org/mambaocr")
        assert type(model) is mambaocr_hf.MambaOCRForCTC and type(processor) is mambaocr_hf.MambaOCRProcessor
        """
        )
    )
    result = subprocess.run(
        [sys.executable, str(script)],
        env={**os.environ, "HF_HUB_OFFLINE": "1", **env},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]


def test_push_to_hub_creates_the_repo_as_asked_and_uploads_the_folder(tmp_path, monkeypatch):
    import huggingface_hub

    calls = []

    class FakeApi:
        def create_repo(self, repo_id, **kwargs):
            calls.append(("create_repo", repo_id, kwargs))

        def upload_folder(self, **kwargs):
            calls.append(("upload_folder", kwargs["repo_id"], kwargs))

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    model = MambaOCRForCTC(MambaOCRConfig(**tiny_config_kwargs()))
    processor = MambaOCRProcessor.from_defaults()
    save_checkpoint(model, processor, tmp_path / "out", push_to_hub=True, repo_id="me/ocr", token="t", private=True)
    (_, repo, create), (_, uploaded, upload) = calls
    assert repo == uploaded == "me/ocr" and create == {"exist_ok": True, "token": "t", "private": True}
    assert upload["folder_path"] == str(tmp_path / "out") and upload["token"] == "t"
    assert "checkpoint-*" in upload["ignore_patterns"]  # the Trainer's resume state stays local
    with pytest.raises(TypeError):  # a misspelt Hub option is an error, not a public repo
        save_checkpoint(model, processor, tmp_path / "out", push_to_hub=True, repo_id="me/ocr", privat=True)
    with pytest.raises(ValueError, match="needs a `repo_id`"):
        save_checkpoint(model, processor, tmp_path / "out", push_to_hub=True)
