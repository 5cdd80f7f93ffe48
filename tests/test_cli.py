"""The `mambaocr` command / scripts/infer.py: inputs, formats, options and unreadable files."""

import json
import os
import shutil
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


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.fixture
def odd_names(tmp_path):
    """Images whose names are not UTF-8 or hold a tab or a line break (legal on Linux file systems)."""
    folder = tmp_path / "odd"
    folder.mkdir()
    names = [b"a_plain.png", b"b_caf\xe9.png", b"c_tab\there.png", b"d_new\nline.png", b"e_cr\rname.png", b"f_\\x.png"]
    for index, name in enumerate(names):
        Image.new("RGB", (40 + 10 * index, 32), "white").save(os.path.join(os.fsencode(folder), name), format="PNG")
    return folder, names


@pytest.mark.slow
def test_file_names_that_are_not_utf8_or_hold_tabs_are_escaped(checkpoint, odd_names, tmp_path, capsys):
    folder, names = odd_names
    out = tmp_path / "out.jsonl"
    assert main([str(folder), "--model", str(checkpoint), "--format", "jsonl", "--output", str(out), "--quiet"]) == 0
    lines = out.read_bytes().decode("utf-8").splitlines()  # valid UTF-8, one record per image
    assert len(lines) == len(names)
    assert sorted(os.path.basename(os.fsencode(json.loads(line)["path"])) for line in lines) == names
    # stdout too: valid UTF-8, the same records
    assert main([str(folder), "--model", str(checkpoint), "--format", "jsonl", "--quiet"]) == 0
    stdout = capsys.readouterr().out
    assert stdout.encode("utf-8").decode("utf-8").splitlines() == lines

    out = tmp_path / "out.tsv"
    assert main([str(folder), "--model", str(checkpoint), "--format", "tsv", "--output", str(out), "--quiet"]) == 0
    rows = out.read_bytes().decode("utf-8").split("\n")
    assert rows[-1] == "" and rows[0] == "path\ttext\tscore"
    rows = rows[1:-1]
    assert len(rows) == len(names) and all(row.count("\t") == 2 for row in rows)
    shown = sorted(os.path.basename(row.split("\t")[0]) for row in rows)
    assert shown == ["a_plain.png", "b_caf\\xe9.png", "c_tab\\there.png", "d_new\\nline.png", "e_cr\\rname.png"] + [
        "f_\\\\x.png"
    ]

    assert main([str(folder), "--model", str(checkpoint), "--quiet"]) == 0  # the table: one line per image
    table = capsys.readouterr().out.encode("utf-8").decode("utf-8").splitlines()
    assert len(table) == 1 + len(names) and any("b_caf\\xe9.png" in row for row in table)


def test_a_truncated_or_corrupt_weight_file_is_a_message(checkpoint, folder, tmp_path):
    truncated = tmp_path / "truncated"
    shutil.copytree(checkpoint, truncated)
    weights = truncated / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(SystemExit, match=r"weights in .*model\.safetensors: the file is truncated or corrupt"):
        main([str(folder), "--model", str(truncated)])

    pickled = tmp_path / "pickled"
    shutil.copytree(checkpoint, pickled)
    (pickled / "model.safetensors").unlink()
    (pickled / "pytorch_model.bin").write_bytes(b"\x80\x02not a pickle of tensors")
    with pytest.raises(SystemExit, match=r"weights in .*pytorch_model\.bin.*do not load it with weights_only=False"):
        main([str(folder), "--model", str(pickled)])
