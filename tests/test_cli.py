"""The `mambaocr` command / scripts/infer.py: inputs, formats, options and unreadable files."""

import json
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import pipeline

from mambaocr_hf import MambaOCRConfig, MambaOCRForCTC, MambaOCRProcessor, save_checkpoint
from mambaocr_hf.cli import expand_inputs, main

from .conftest import tiny_config_kwargs

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt")
    save_checkpoint(
        MambaOCRForCTC(MambaOCRConfig(**tiny_config_kwargs())).eval(), MambaOCRProcessor.from_defaults(), path
    )
    return path


@pytest.fixture
def folder(tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / "crops" / "sub").mkdir(parents=True)
    for name, width in (("crops/a.png", 80), ("crops/sub/b.jpg", 150), ("crops/c.png", 40)):
        Image.fromarray(rng.integers(0, 255, (32, width, 3), dtype=np.uint8)).save(tmp_path / name)
    (tmp_path / "crops" / "broken.png").write_bytes(b"\x89PNG truncated")
    (tmp_path / "crops" / "notes.txt").write_text("not an image")
    return tmp_path / "crops"


def test_expand_inputs(folder):
    files, missing = expand_inputs([str(folder), str(folder / "*.png"), str(folder / "nothing*.png")])
    names = [Path(f).name for f in files]
    # folder: sorted, recursive, images only; the glob's files were already there, and are read once
    assert names == ["a.png", "broken.png", "c.png", "b.jpg"]
    assert missing == [str(folder / "nothing*.png")]
    files, _ = expand_inputs([str(folder / "c.png"), str(folder / "sub" / ".." / "c.png"), str(folder)])
    assert [Path(f).name for f in files] == ["c.png", "a.png", "broken.png", "b.jpg"]


def test_jsonl_output_matches_the_pipeline_and_skips_unreadable_files(checkpoint, folder, tmp_path, caplog):
    out = tmp_path / "out.jsonl"
    code = main(
        [str(folder), "--model", str(checkpoint), "--format", "jsonl", "--output", str(out), "--batch_size", "2"]
    )
    assert code == 0
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [Path(r["path"]).name for r in records] == ["a.png", "c.png", "b.jpg"]
    assert "broken.png" in caplog.text and "1 of 4 files could not be read" in caplog.text
    reader = pipeline("scene-text-recognition", model=str(checkpoint))
    for record in records:
        expected = reader(record["path"])
        assert record["text"] == expected["generated_text"]
        assert record["score"] == pytest.approx(expected["score"], abs=1e-5)


def test_table_tsv_and_decoding_options(checkpoint, folder, tmp_path, capsys):
    lexicon = tmp_path / "words.txt"
    lexicon.write_text("hello\nworld\n")
    assert main([str(folder / "a.png"), "--model", str(checkpoint), "--lexicon", str(lexicon), "--quiet"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["path", "text", "score"]
    assert table[1].split()[1] in ("hello", "world")
    args = [str(folder / "c.png"), "--model", str(checkpoint), "--format", "tsv", "--allowed_chars", "0123456789"]
    assert main(args + ["--beam_width", "4"]) == 0
    header, row = capsys.readouterr().out.splitlines()
    assert header == "path\ttext\tscore"
    path, text, score = row.split("\t")
    assert set(text) <= set("0123456789") and 0 <= float(score) <= 1


def test_char_details_in_jsonl(checkpoint, folder, capsys):
    assert main([str(folder / "sub"), "--model", str(checkpoint), "--format", "jsonl", "--char_details"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert len(record["chars"]) == len(record["text"])
    assert all(0 <= c["x_start"] < c["x_end"] <= 150 for c in record["chars"])


def test_errors(checkpoint, folder, tmp_path, caplog):
    assert main([str(folder / "broken.png"), "--model", str(checkpoint)]) == 1  # nothing readable
    assert main([str(tmp_path / "nothing_here"), "--model", str(checkpoint)]) == 1
    assert "No input images found" in caplog.text
    with pytest.raises(SystemExit, match="is not a file"):
        main([str(folder), "--model", str(checkpoint), "--lexicon", str(tmp_path / "missing.txt")])
    with pytest.raises(SystemExit, match="Could not load the model"):
        main([str(folder), "--model", str(tmp_path / "no_model")])
    with pytest.raises(SystemExit, match="is a folder: give the path of the file to write"):
        main([str(folder), "--model", str(checkpoint), "--output", str(tmp_path)])
    if not torch.cuda.is_available():
        with pytest.raises(SystemExit, match="Could not put the model on --device 'cuda'"):
            main([str(folder), "--model", str(checkpoint), "--device", "cuda"])
    with pytest.raises(SystemExit, match="its folder does not exist"):
        main([str(folder), "--model", str(checkpoint), "--output", str(tmp_path / "nowhere" / "out.tsv")])
    with pytest.raises(SystemExit, match="--char_details needs --format jsonl"):
        main([str(folder), "--model", str(checkpoint), "--char_details"])
    with pytest.raises(SystemExit, match="--beam_width must be at least 1"):
        main([str(folder), "--model", str(checkpoint), "--beam_width", "0"])
    with pytest.raises(SystemExit, match="charset lacks"):
        main([str(folder), "--model", str(checkpoint), "--allowed_chars", "ABC"])


def test_console_entry_point_and_script(checkpoint, folder):
    (command,) = [e for e in entry_points(group="console_scripts") if e.name == "mambaocr"]
    assert command.value == "mambaocr_hf.cli:main"
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "infer.py"), str(folder / "a.png"), "--model", str(checkpoint)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "a.png" in result.stdout
