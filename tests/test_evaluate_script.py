"""scripts/evaluate.py on a tiny saved model and a labels.tsv folder it writes itself."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from mambaocr_hf import MambaOCRConfig, MambaOCRForCTC, MambaOCRProcessor, save_checkpoint
from mambaocr_hf.configuration_mambaocr import FP32_MARGIN

from .conftest import load_script, tiny_config_kwargs

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_evaluate_script_reports_metrics(tmp_path):
    model = MambaOCRForCTC(MambaOCRConfig(**tiny_config_kwargs()))
    save_checkpoint(model, MambaOCRProcessor.from_defaults(), tmp_path / "model")
    data = tmp_path / "crops"
    data.mkdir()
    lines = []
    for index, word in enumerate(["abc", "hello", "42"]):
        image = Image.new("RGB", (24 * len(word), 32), "white")
        ImageDraw.Draw(image).text((4, 8), word, fill="black")
        image.save(data / f"{index}.png")
        lines.append(f"{index}.png\t{word}")
    # hard samples are evaluated (training would leave them out), one that cannot be read is counted as skipped
    Image.new("RGB", (16, 32), "white").save(data / "narrow.png")  # 4 frames for 10 characters: CTC cannot align
    Image.new("RGB", (2000, 4), "white").save(data / "flat.png")  # aspect ratio 500
    (data / "broken.png").write_bytes(b"not a png")
    lines += ["narrow.png\tabcdefghij", "flat.png\tpapa", "broken.png\tgone"]
    (data / "labels.tsv").write_text("\n".join(lines) + "\n")
    output = tmp_path / "metrics.json"
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "evaluate.py"), "--model", str(tmp_path / "model"), "--dataset",
         str(data), "--batch_size", "2", "--output", str(output), "--compare_bf16"],
        env={**os.environ, "HF_HUB_OFFLINE": "1"}, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    metrics = json.loads(output.read_text())
    assert metrics["num_samples"] == 5 and 0.0 <= metrics["cer"] and "word_accuracy_ci_alnum" in metrics
    assert metrics["num_skipped"] == 1 and metrics["skipped"] == {"unreadable_image": 1}
    assert "cer" in result.stdout and "1 samples could not be evaluated and are not in the metrics" in result.stdout
    comparison = metrics["bf16_comparison"]  # the same images through bf16 autocast, near-ties re-run in float32
    assert 0.0 <= comparison["same_text"] <= 1.0
    assert comparison["fp32_margin"] == FP32_MARGIN and 0 <= comparison["fp32_reruns"] <= 5
    assert comparison["model_ms_per_image"] > 0
    assert abs(comparison["cer_delta"] - (comparison["cer"] - metrics["cer"])) < 1e-9
    assert "identical text on" in result.stdout
    # a folder with split sub-folders needs --split: else its training split would be evaluated too
    (tmp_path / "splits" / "train").mkdir(parents=True)
    (tmp_path / "splits" / "val").mkdir()
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "evaluate.py"), "--model", str(tmp_path / "model"), "--dataset",
         str(tmp_path / "splits")],
        env={**os.environ, "HF_HUB_OFFLINE": "1"}, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 2 and "has split folders (train, val): pass --split" in result.stderr


@pytest.mark.slow
def test_evaluate_long_lines_with_beam_search_and_reliability(tmp_path):
    model = MambaOCRForCTC(MambaOCRConfig(**tiny_config_kwargs()))
    save_checkpoint(model, MambaOCRProcessor.from_defaults(), tmp_path / "model")
    output = tmp_path / "metrics.json"
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "evaluate.py"), "--model", str(tmp_path / "model"), "--long_lines",
         "2", "--min_chars", "60", "--max_width", "1024", "--beam_width", "3", "--reliability", "--output",
         str(output)],
        env={**os.environ, "HF_HUB_OFFLINE": "1"}, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    metrics = json.loads(output.read_text())
    assert metrics["num_samples"] == 2 and metrics["mean_label_length"] >= 60
    assert metrics["mean_width_px"] <= 1024
    assert [row["threshold"] for row in metrics["reliability"]][:2] == [0.0, 0.1]
    assert metrics["reliability"][0]["coverage"] == 1.0
    assert "| score ≥ | coverage |" in result.stdout


@pytest.mark.slow
def test_evaluate_several_sources_prints_one_table(tmp_path):
    model = MambaOCRForCTC(MambaOCRConfig(**tiny_config_kwargs()))
    save_checkpoint(model, MambaOCRProcessor.from_defaults(), tmp_path / "model")
    for name, words in (("set_a", ["abc", "hello"]), ("set_b", ["42", "xyz", "ok"])):
        folder = tmp_path / name
        folder.mkdir()
        lines = []
        for index, word in enumerate(words):
            image = Image.new("RGB", (24 * len(word), 32), "white")
            ImageDraw.Draw(image).text((4, 8), word, fill="black")
            image.save(folder / f"{index}.png")
            lines.append(f"{index}.png\t{word}")
        (folder / "labels.tsv").write_text("\n".join(lines) + "\n")
    output = tmp_path / "metrics.json"
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "evaluate.py"), "--model", str(tmp_path / "model"), "--dataset",
         str(tmp_path / "set_a"), str(tmp_path / "set_b"), "--output", str(output), "--predictions",
         str(tmp_path / "reads.tsv")],
        env={**os.environ, "HF_HUB_OFFLINE": "1"}, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    metrics = json.loads(output.read_text())
    a, b = (metrics["sources"][str(tmp_path / name)] for name in ("set_a", "set_b"))
    assert (a["num_samples"], b["num_samples"]) == (2, 3)
    mean = metrics["mean"]
    assert mean["num_samples"] == 5
    for key in ("cer", "word_accuracy", "word_accuracy_ci_alnum"):
        assert abs(mean[key] - (a[key] + b[key]) / 2) < 1e-9  # each set counts once, as benchmarks are averaged
    table = result.stdout[result.stdout.index("| source |") :].splitlines()
    assert "word acc. (ci alnum)" in table[0] and "exact case" in table[0] and "CER" in table[0]
    assert [row.split("|")[1].strip() for row in table[2:5]] == [
        str(tmp_path / "set_a"),
        str(tmp_path / "set_b"),
        "mean",
    ]
    # every read, for looking at the errors: one row per image, right or wrong as the metrics counted it
    with open(tmp_path / "reads.tsv", encoding="utf-8", newline="") as handle:
        reads = list(csv.DictReader(handle, delimiter="\t"))
    assert [(row["source"], row["index"], row["label"]) for row in reads] == [
        (str(tmp_path / "set_a"), "0", "abc"),
        (str(tmp_path / "set_a"), "1", "hello"),
        (str(tmp_path / "set_b"), "0", "42"),
        (str(tmp_path / "set_b"), "1", "xyz"),
        (str(tmp_path / "set_b"), "2", "ok"),
    ]
    assert [(int(row["width"]), int(row["height"])) for row in reads] == [
        (72, 32),
        (120, 32),
        (48, 32),
        (72, 32),
        (48, 32),
    ]
    for name, metric in ((str(tmp_path / "set_a"), a), (str(tmp_path / "set_b"), b)):
        rows = [row for row in reads if row["source"] == name]
        assert sum(int(row["correct"]) for row in rows) / len(rows) == metric["word_accuracy_ci_alnum"]
        assert all(0.0 <= float(row["score"]) <= 1.0 for row in rows)


def test_peer_recognisers_are_scored_like_ours(tmp_path):
    from .conftest import load_script

    folder = tmp_path / "crops"
    folder.mkdir()
    words = ["Exit", "42", "CAFE"]
    for index, word in enumerate(words):
        Image.new("RGB", (24 * len(word), 32), "white").save(folder / f"{index}.png")
    (folder / "labels.tsv").write_text("".join(f"{i}.png\t{w}\n" for i, w in enumerate(words)))
    script = load_script("evaluate_peers")
    reads = iter(["EXIT", "42", "cafe!"])  # right under the standard protocol, exact case only for "42"
    script.PEERS = {"fake": lambda: lambda image: next(reads)}
    results = script.main(["--dataset", str(folder), "--peers", "fake"])
    scores = results["fake"][str(folder)]
    assert scores["num_samples"] == 3 and scores["word_accuracy_ci_alnum"] == 1.0
    assert abs(scores["word_accuracy"] - 1 / 3) < 1e-9
    assert results["fake"]["mean"]["word_accuracy_ci_alnum"] == 1.0


def test_predictions_tsv_marks_reads_right_under_the_benchmark_protocol(tmp_path):
    evaluate = load_script("evaluate")
    reads = evaluate._Reads(
        references=["Hello!", "CAFE", "tab\there"],
        predictions=["hello", "cafe1", "tabhere"],
        scores=[0.9, 0.4, 0.7],
        sizes=[(90, 30), (60, 20), (120, 40)],
    )
    path = tmp_path / "reads.tsv"
    args = evaluate.parse_args(["--model", "unused", "--long_lines", "1", "--predictions", str(path)])
    with open(path, "w", encoding="utf-8", newline="") as handle:  # the header, as evaluate() writes it
        csv.writer(handle, delimiter="\t").writerow(evaluate.PREDICTION_COLUMNS)
    evaluate._write_predictions(args.predictions, "ic15 [val]", reads)
    with open(path, encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    # case and punctuation do not count, a wrong character does; a tab inside a label is quoted, not a new column
    assert [(row["label"], row["correct"]) for row in rows] == [("Hello!", "1"), ("CAFE", "0"), ("tab\there", "1")]
    assert [(row["height"], row["width"], row["score"]) for row in rows][1] == ("20", "60", "0.4000")
    assert {row["source"] for row in rows} == {"ic15 [val]"}
    # a file in a folder that does not exist is refused before the model is loaded, not after the evaluation
    for flag in ("--predictions", "--output"):
        with pytest.raises(SystemExit) as exit_info:
            evaluate.parse_args(["--model", "unused", "--long_lines", "1", flag, str(tmp_path / "missing" / "x")])
        assert exit_info.value.code == 2


def test_max_width_squeezes_dataset_images_as_the_processor_would(tmp_path):
    # the README's per-width cost of squeezing is measured by reading the same lines at several --max_width
    evaluate = load_script("evaluate")
    model = MambaOCRForCTC(MambaOCRConfig(**tiny_config_kwargs())).eval()
    folder = tmp_path / "lines"
    folder.mkdir()
    image = Image.new("RGB", (400, 32), "white")
    ImageDraw.Draw(image).text((4, 10), "a line of text that is wide", fill="black")
    image.save(folder / "line.png")
    (folder / "labels.tsv").write_text("line.png\ta line of text that is wide\n")
    widths = {}
    for flags in ([], ["--max_width", "128"]):
        processor = MambaOCRProcessor.from_defaults()
        args = evaluate.parse_args(["--model", "unused", "--dataset", str(folder), *flags])
        metrics = evaluate.evaluate(args, model, processor, None)
        assert metrics["num_samples"] == 1
        widths[tuple(flags)] = metrics["mean_width_px"]
    assert widths[()] == 400  # the checkpoint's own width reads it whole
    assert widths[("--max_width", "128")] == 128  # squeezed to the flag's width


def test_reads_are_width_sorted_into_batches_and_kept_in_the_rows_order(monkeypatch):
    evaluate = load_script("evaluate")
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    model = MambaOCRForCTC(MambaOCRConfig(**tiny_config_kwargs())).eval()
    processor = MambaOCRProcessor.from_defaults()
    widths = [40, 600, 64, 900, 48, 500, 80, 700]  # words and lines in arrival order
    rows = [
        {"image": Image.new("RGB", (width, 32), (index * 30, 90, 160)), "text": f"row{index}"}
        for index, width in enumerate(widths)
    ]
    batches = []
    call = processor.__call__
    monkeypatch.setattr(
        type(processor),
        "__call__",
        lambda self, images, **kw: batches.append([image.width for image in images]) or call(images=images, **kw),
    )
    args = evaluate.parse_args(["--model", "unused", "--long_lines", "1", "--batch_size", "2"])
    reads = evaluate._read_all(args, model, processor, iter(rows), len(rows))
    # each batch holds neighbours in width, not a word padded to a line
    assert batches == [[40, 48], [64, 80], [500, 600], [700, 900]]
    # ... and the reads come back in the rows' order, as one at a time (no padding) reads them
    assert reads.references == [row["text"] for row in rows]
    assert reads.sizes == [(width, 32) for width in widths]
    assert reads.widths == [min(width, 2048) for width in widths]
    batches.clear()
    one = evaluate._read_all(
        evaluate.parse_args(["--model", "unused", "--long_lines", "1", "--batch_size", "1"]),
        model,
        processor,
        iter(rows),
        None,
    )
    assert one.predictions == reads.predictions
    assert one.scores == pytest.approx(reads.scores, abs=1e-4)
