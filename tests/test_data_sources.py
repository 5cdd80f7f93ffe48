"""The on-disk sources (LMDB, MJSynth, labels.tsv folders, imagefolder, parquet, save_to_disk) and the Hub path, on
tiny fixtures built here; plus mixing sources and splitting them across DataLoader workers and DDP ranks."""

import io
import json
import os

import datasets
import lmdb
import pytest
import torch
from PIL import Image

from mambaocr_hf import MambaOCRProcessor
from mambaocr_hf.data import (
    BadSampleError,
    detect_layout,
    interleave_sources,
    load_ocr_dataset,
    parse_source_spec,
    resolve_columns,
    skip_counts,
    split_for_rank,
    write_lmdb,
)
from mambaocr_hf.data.filters import reset_skip_counts
from mambaocr_hf.data.mjsynth import label_from_path

WORDS = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet", "kilo", "lima"]


@pytest.fixture(autouse=True)
def _private_datasets_cache(tmp_path, monkeypatch):
    """`datasets` builders leave lock files in their cache even when streaming: keep them out of ~/.cache."""
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "datasets_cache"))


@pytest.fixture(scope="module")
def processor():
    return MambaOCRProcessor.from_defaults()


@pytest.fixture(autouse=True)
def _fresh_counts():
    reset_skip_counts()


def _encoded(width=64, height=32, color="white", format="PNG"):
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buffer, format=format)
    return buffer.getvalue()


def _write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as handle:
        handle.write(data)


def _texts(dataset):
    return [row["text"] for row in dataset]


# labels.tsv folders


@pytest.fixture
def tsv_folder(tmp_path):
    """Good rows and one of each bad case."""
    root = tmp_path / "real"
    lines = []
    for index, word in enumerate(WORDS[:4]):
        _write(str(root / f"images/{index}.png"), _encoded(32 + 8 * index))
        lines.append(f"images/{index}.png\t{word}")
    _write(str(root / "images/zero.png"), b"")
    _write(str(root / "images/corrupt.png"), _encoded()[:50])
    _write(str(root / "images/wide.png"), _encoded(2000, 4))
    _write(str(root / "images/narrow.png"), _encoded(16, 32))
    _write(str(root / "images/accent.jpg"), _encoded(96, 32, format="JPEG"))
    lines += [
        "images/missing.png\tmike",
        "images/zero.png\tnovember",
        "images/corrupt.png\toscar",
        "images/0.png\t",
        "images/1.png",
        "images/wide.png\tpapa",
        "images/narrow.png\tquebecquebec",
        "images/accent.jpg\tRomé-O!",
        "",
    ]
    (root / "labels.tsv").write_text("path\tlabel\n" + "\n".join(lines) + "\n", encoding="utf-8")
    return str(root)


def test_folder_rows_labels_and_bad_data(tsv_folder, processor):
    assert detect_layout(tsv_folder) == "folder"
    dataset = load_ocr_dataset(tsv_folder, processor=processor, widen=False)
    assert isinstance(dataset, datasets.IterableDataset)
    rows = list(dataset)
    assert [row["text"] for row in rows] == WORDS[:4] + ["romeo"]
    assert all(isinstance(row["image"], Image.Image) for row in rows)
    assert [row["image"].width for row in rows[:4]] == [32, 40, 48, 56]
    assert skip_counts(f"folder:{tsv_folder}") == {
        "missing_image": 1,
        "unreadable_image": 2,
        "empty_label": 2,
        "extreme_aspect_ratio": 1,
        "label_too_long_for_ctc": 1,
    }
    reset_skip_counts()
    # by default the narrow crop is kept, for the collator to widen to the frames its label needs
    assert "quebecquebec" in [row["text"] for row in load_ocr_dataset(tsv_folder, processor=processor)]
    reset_skip_counts()
    dropping = load_ocr_dataset(tsv_folder, processor=processor, unknown_char_policy="drop", widen=False)
    assert _texts(dropping) == WORDS[:4]
    assert skip_counts(f"folder:{tsv_folder}")["unknown_characters"] == 1
    with pytest.raises(ValueError, match="outside the charset"):
        list(load_ocr_dataset(tsv_folder, processor=processor, unknown_char_policy="error"))
    with pytest.raises(BadSampleError, match="does not exist"):
        list(load_ocr_dataset(tsv_folder, processor=processor, bad_sample_policy="raise"))


def test_labels_that_are_not_utf8_are_skipped_not_garbled(tmp_path, processor):
    """A latin-1 "café" read with replacement characters would train the label "caf?" without a word: labels are
    decoded strictly and skipped as `undecodable_label` (or refused under `bad_sample_policy="raise"`), in every
    source that reads label bytes. A file name that is not UTF-8 is still found (file-system bytes)."""
    folder = tmp_path / "folder"
    _write(str(folder / "a.png"), _encoded())
    _write(os.path.join(os.fsencode(folder), b"b\xe9.png"), _encoded())
    lines = [b"a.png\tgood", b"a.png\tcaf\xe9", b"b\xe9.png\tbee", b"a.png\tfine"]
    (folder / "labels.tsv").write_bytes(b"\n".join(lines) + b"\n")
    assert _texts(load_ocr_dataset(str(folder), processor=processor)) == ["good", "bee", "fine"]
    assert skip_counts(f"folder:{folder}") == {"undecodable_label": 1}
    # Arrow stores text as UTF-8: the cached form keeps that file's path with a replacement mark
    cached = load_ocr_dataset(str(folder), processor=processor, streaming=False, cache_dir=str(tmp_path / "cache"))
    assert cached["text"] == ["good", "bee", "fine"]
    with pytest.raises(BadSampleError, match=r"labels.tsv:byte 11 \(a.png\).*b'caf\\xe9'.*not valid UTF-8"):
        list(load_ocr_dataset(str(folder), processor=processor, bad_sample_policy="raise"))

    root = str(tmp_path / "lmdb")
    env = lmdb.open(root, map_size=1 << 24)
    with env.begin(write=True) as txn:
        for index, label in enumerate([b"good", b"caf\xe9", "café".encode()], start=1):
            txn.put(b"image-%09d" % index, _encoded())
            txn.put(b"label-%09d" % index, label)
        txn.put(b"num-samples", b"3")
    env.close()
    assert _texts(load_ocr_dataset(root)) == ["good", "café"]
    assert skip_counts(f"lmdb:{root}") == {"undecodable_label": 1}

    mjsynth = tmp_path / "mjsynth"
    _write(str(mjsynth / "1/1/0_Word_1.jpg"), _encoded(format="JPEG"))
    _write(os.path.join(os.fsencode(mjsynth), b"1/1/1_Caf\xe9_1.jpg"), _encoded(format="JPEG"))
    (mjsynth / "annotation_train.txt").write_bytes(b"./1/1/0_Word_1.jpg 1\n./1/1/1_Caf\xe9_1.jpg 1\n")
    assert _texts(load_ocr_dataset(str(mjsynth))) == ["Word"]
    assert skip_counts(f"mjsynth:{mjsynth}") == {"undecodable_label": 1}


def test_folder_without_tokenizer_keeps_labels_and_finds_nested_label_files(tmp_path, tsv_folder):
    other = tmp_path / "second" / "set"
    _write(str(other / "a.png"), _encoded())
    (other / "labels.tsv").write_text("a.png\tMixed Case 1\n", encoding="utf-8")
    assert "Romé-O!" in _texts(load_ocr_dataset(tsv_folder))
    assert _texts(load_ocr_dataset(str(tmp_path / "second"))) == ["Mixed Case 1"]
    assert detect_layout(str(tmp_path)) == "folder"
    assert len(_texts(load_ocr_dataset(str(tmp_path), widen=False))) == 6  # both labels.tsv files
    assert len(_texts(load_ocr_dataset(str(tmp_path)))) == 7  # and the narrow crop, kept to be widened


@pytest.mark.parametrize("line_break", [b"\r", b"\r\n", b"\n"])
def test_labels_tsv_line_breaks_of_every_platform(tmp_path, processor, line_break):
    """Old-Mac files (CR only) were read as one line: one sample with a label made of every line. Each line break
    is read as such, also when the file is cut into shards (DataLoader workers)."""
    folder = tmp_path / "folder"
    for index in range(len(WORDS)):
        _write(str(folder / f"{index}.png"), _encoded())
    lines = [b"path\tlabel"] + [f"{index}.png\t{word}".encode() for index, word in enumerate(WORDS)]
    (folder / "labels.tsv").write_bytes(line_break.join(lines) + line_break)
    assert _texts(load_ocr_dataset(str(folder), processor=processor)) == WORDS
    sharded = load_ocr_dataset(str(folder), processor=processor, num_shards=5)
    assert sharded.num_shards == 5 and _texts(sharded) == WORDS
    assert skip_counts(f"folder:{folder}") == {}


def test_split_folders_and_non_streaming(tmp_path, processor):
    for split, words in (("train", WORDS[:3]), ("val", WORDS[3:5])):
        folder = tmp_path / split
        for index in range(len(words)):
            _write(str(folder / f"{index}.png"), _encoded())
        (folder / "labels.tsv").write_text("".join(f"{i}.png\t{w}\n" for i, w in enumerate(words)), encoding="utf-8")
    assert _texts(load_ocr_dataset(str(tmp_path), split="train")) == WORDS[:3]
    assert _texts(load_ocr_dataset(str(tmp_path), split="validation")) == WORDS[3:5]
    with pytest.raises(FileNotFoundError, match="split 'test'"):
        load_ocr_dataset(str(tmp_path), split="test")
    table = load_ocr_dataset(str(tmp_path), split="val", streaming=False, cache_dir=str(tmp_path / "cache"))
    assert isinstance(table, datasets.Dataset) and table.num_rows == 2
    assert table[1]["text"] == WORDS[4] and table[1]["image"].size == (64, 32)


def test_training_split_never_reads_held_out_folders(tmp_path, processor, caplog):
    """A root with val/ but no train/ folder: the training split reads the rest of the root, never val/ (its rows
    would leak into training); clovaai's LMDB release names its splits training/validation/evaluation."""
    for folder, words in (("shop_signs", WORDS[:2]), ("receipts", WORDS[2:4]), ("val", WORDS[4:6])):
        for index in range(len(words)):
            _write(str(tmp_path / folder / f"{index}.png"), _encoded())
        (tmp_path / folder / "labels.tsv").write_text("".join(f"{i}.png\t{w}\n" for i, w in enumerate(words)))
    assert sorted(_texts(load_ocr_dataset(str(tmp_path), split="train", processor=processor))) == sorted(WORDS[:4])
    assert "val" in caplog.text and "no train/ folder" in caplog.text
    assert _texts(load_ocr_dataset(str(tmp_path), split="val", processor=processor)) == WORDS[4:6]
    assert len(_texts(load_ocr_dataset(str(tmp_path), processor=processor))) == 6  # no split: everything
    release = tmp_path / "release"
    for folder, words in (("training/MJ", WORDS[:3]), ("validation", WORDS[3:5]), ("evaluation/IIIT", WORDS[5:6])):
        rows = [{"image": _encoded(), "text": word} for word in words]
        write_lmdb(rows, release / folder, show_progress=False)
    assert _texts(load_ocr_dataset(str(release), split="train", processor=processor)) == WORDS[:3]
    assert _texts(load_ocr_dataset(str(release), split="validation", processor=processor)) == WORDS[3:5]
    assert _texts(load_ocr_dataset(str(release), split="test", processor=processor)) == WORDS[5:6]


def test_empty_labels_file_and_error_policy_name_the_place(tmp_path, processor):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "labels.tsv").write_text("")
    with pytest.raises(ValueError, match="hold no lines"):
        load_ocr_dataset(str(tmp_path / "empty"), processor=processor)
    _write(str(tmp_path / "crops" / "0.png"), _encoded())
    _write(str(tmp_path / "crops" / "1.png"), _encoded())
    (tmp_path / "crops" / "labels.tsv").write_text("0.png\tfine\n1.png\tnaïve\n", encoding="utf-8")
    rows = load_ocr_dataset(str(tmp_path / "crops"), processor=processor, unknown_char_policy="error")
    with pytest.raises(ValueError, match=r"labels\.tsv:byte 11 \(1\.png\): Label 'naïve' has characters outside"):
        list(rows)


# LMDB


def clovaai_read(root):
    """How clovaai's deep-text-recognition-benchmark `LmdbDataset` reads an LMDB (without its charset filter)."""
    env = lmdb.open(root, max_readers=32, readonly=True, lock=False, readahead=False, meminit=False)
    samples = []
    with env.begin(write=False) as txn:
        for index in range(1, int(txn.get(b"num-samples")) + 1):
            label = txn.get(b"label-%09d" % index).decode("utf-8")
            buffer = io.BytesIO()
            buffer.write(txn.get(b"image-%09d" % index))
            buffer.seek(0)
            samples.append((Image.open(buffer).convert("RGB"), label))
    env.close()
    return samples


def test_write_lmdb_is_readable_by_clovaai_and_by_the_loader(tmp_path, processor):
    rows = [{"image": _encoded(40 + i), "text": word} for i, word in enumerate(WORDS[:5])]
    rows.insert(2, {"image": b"not an image", "text": "zulu"})
    rows.insert(3, {"image": _encoded(), "text": " "})
    rows.append({"image": Image.new("L", (50, 30)), "text": "Ünïcode"})
    root = str(tmp_path / "lmdb")
    assert write_lmdb(rows, root, show_progress=False) == 6
    assert sorted(os.listdir(root)) == ["data.mdb"]
    samples = clovaai_read(root)
    assert [label for _, label in samples] == WORDS[:5] + ["Ünïcode"]
    assert [image.width for image, _ in samples[:5]] == [40, 41, 42, 43, 44]
    assert detect_layout(root) == "lmdb"
    assert _texts(load_ocr_dataset(root, processor=processor)) == WORDS[:5] + ["unicode"]
    with pytest.raises(FileExistsError):
        write_lmdb(rows, root, show_progress=False)
    # converting a source to LMDB: the loader's rows written back
    copy = str(tmp_path / "copy")
    assert write_lmdb(load_ocr_dataset(root), copy, show_progress=False) == 6
    assert [label for _, label in clovaai_read(copy)] == WORDS[:5] + ["Ünïcode"]


def test_lmdb_opens_once_when_threads_race(tmp_path):
    """A threaded reader (datasets can read shards in threads) opens the environment once: LMDB refuses a second open
    of the same path in one process."""
    import threading

    from mambaocr_hf.data import lmdb_io

    root = str(tmp_path / "lmdb")
    write_lmdb([{"image": _encoded(), "text": "ab"}] * 4, root, show_progress=False)
    for _ in range(5):
        lmdb_io._forget(os.path.abspath(root))  # as in a freshly forked worker
        barrier, opened, errors = threading.Barrier(8), [], []

        def open_it(barrier=barrier, opened=opened, errors=errors):
            barrier.wait()
            try:
                opened.append(lmdb_io.open_lmdb(root))
            except Exception as error:  # any failure is the finding
                errors.append(error)

        threads = [threading.Thread(target=open_it) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not errors and len({id(environment) for environment in opened}) == 1


def test_lmdb_reader_skips_bad_entries(tmp_path, processor):
    root = str(tmp_path / "raw")
    env = lmdb.open(root, map_size=1 << 24)
    with env.begin(write=True) as txn:
        entries = [(_encoded(), b"good"), (b"", b"empty"), (b"\x00garbage", b"garbage"), (_encoded(), b"")]
        for index, (image, label) in enumerate(entries, start=1):
            txn.put(b"image-%09d" % index, image)
            txn.put(b"label-%09d" % index, label)
        txn.put(b"label-%09d" % 5, b"no image")  # the image key is missing
        txn.put(b"num-samples", b"5")
    env.close()
    assert _texts(load_ocr_dataset(root, processor=processor)) == ["good"]
    assert skip_counts(f"lmdb:{root}") == {"unreadable_image": 2, "empty_label": 1, "missing_image": 1}


@pytest.mark.slow
def test_truncated_lmdb_is_a_clear_error_not_a_crash(tmp_path):
    """A data.mdb cut short (an interrupted copy) used to kill the process with SIGBUS when read: now opening it
    names the file and says to copy it again. Read in a subprocess so a crash cannot take pytest down."""
    import subprocess
    import sys

    root = tmp_path / "lmdb"
    rows = [{"image": _encoded(color=(index, index, index)), "text": f"w{index}"} for index in range(200)]
    write_lmdb(rows, root, show_progress=False)
    data_file = root / "data.mdb"
    with open(data_file, "r+b") as handle:
        handle.truncate(data_file.stat().st_size // 2)
    script = (
        "import sys\n"
        "from mambaocr_hf.data import load_ocr_dataset\n"
        "try:\n"
        "    rows = list(load_ocr_dataset(sys.argv[1]))\n"
        "except ValueError as error:\n"
        "    print(error)\n"
        "    sys.exit(3)\n"
        "print('read', len(rows))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(root)], capture_output=True, text=True, timeout=120, env=os.environ
    )
    assert result.returncode == 3, (result.returncode, result.stdout, result.stderr[-2000:])
    assert str(data_file) in result.stdout and "truncated" in result.stdout and "again" in result.stdout

    # cut below its two header pages: lmdb refuses it, and that is said the same way
    with open(data_file, "r+b") as handle:
        handle.truncate(1000)
    from mambaocr_hf.data.lmdb_io import IncompleteLMDBError

    with pytest.raises(IncompleteLMDBError, match="data.mdb.*again"):
        load_ocr_dataset(str(root))


@pytest.mark.parametrize("value", [b"many", b"-3", b"\xff1"])
def test_lmdb_num_samples_that_is_not_a_count_is_a_clear_error(tmp_path, value):
    root = str(tmp_path / "lmdb")
    env = lmdb.open(root, map_size=1 << 24)
    with env.begin(write=True) as txn:
        txn.put(b"image-%09d" % 1, _encoded())
        txn.put(b"label-%09d" % 1, b"ok")
        txn.put(b"num-samples", value)
    env.close()
    with pytest.raises(ValueError, match=r"lmdb: its 'num-samples' value .* is not a count of samples"):
        load_ocr_dataset(root)


# MJSynth


def test_mjsynth_label_from_path():
    assert label_from_path("./2697/6/466_MONIKER_49537.jpg") == "MONIKER"
    assert label_from_path("./1/1/7_snake_case_3.jpg") == "snake_case"
    assert label_from_path("./1/1/broken.jpg") is None


def test_mjsynth_official_layout_streamed(tmp_path, processor):
    root = tmp_path / "mnt" / "ramdisk" / "max" / "90kDICT32px"
    train = []
    for index, word in enumerate(["Moniker", "SALUTE", "snake_case", "Reads"]):
        relative = f"./{index + 1}/2/{index}_{word}_{index + 10}.jpg"
        _write(str(root / relative), _encoded(30 + 20 * len(word), 32, format="JPEG"))
        train.append(f"{relative} {index + 10}")
    _write(str(root / "9/9/90_Empty_1.jpg"), b"")  # the release has zero-byte files
    _write(str(root / "9/9/91_Corrupt_1.jpg"), b"\xff\xd8\xff garbage")
    train += ["./9/9/90_Empty_1.jpg 1", "./9/9/91_Corrupt_1.jpg 1", "./9/9/92_Missing_1.jpg 1", "./9/9/nolabel.jpg 1"]
    (root / "annotation_train.txt").write_text("\n".join(train) + "\n", encoding="utf-8")
    _write(str(root / "5/1/0_Tested_3.jpg"), _encoded(120, 32, format="JPEG"))
    (root / "annotation_test.txt").write_text("./5/1/0_Tested_3.jpg 3\n", encoding="utf-8")
    (root / "lexicon.txt").write_text("word\n", encoding="utf-8")

    assert detect_layout(str(tmp_path)) == "mjsynth"
    assert _texts(load_ocr_dataset(str(tmp_path), processor=processor)) == ["moniker", "salute", "snakecase", "reads"]
    assert skip_counts(f"mjsynth:{tmp_path}") == {"unreadable_image": 2, "missing_image": 1, "empty_label": 1}
    assert _texts(load_ocr_dataset(str(root), split="test")) == ["Tested"]
    assert _texts(load_ocr_dataset(str(root / "annotation_test.txt"))) == ["Tested"]
    with pytest.raises(FileNotFoundError, match="annotation_val.txt"):
        load_ocr_dataset(str(root), split="val")


# datasets-backed layouts: imagefolder, parquet, save_to_disk, Hub


def test_imagefolder_with_metadata_jsonl(tmp_path, processor):
    root = tmp_path / "imagefolder"
    records = []
    for index, word in enumerate(WORDS[:3]):
        _write(str(root / f"img/{index}.png"), _encoded())
        records.append({"file_name": f"img/{index}.png", "text": word})
    _write(str(root / "img/bad.png"), b"broken")
    records += [{"file_name": "img/gone.png", "text": "gone"}, {"file_name": "img/bad.png", "text": "bad"}]
    records.append({"file_name": "img/0.png", "text": ""})
    (root / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    assert detect_layout(str(root)) == "imagefolder"
    for streaming in (True, False):
        reset_skip_counts()
        dataset = load_ocr_dataset(str(root), processor=processor, streaming=streaming, cache_dir=str(tmp_path / "c"))
        assert dataset.features == datasets.Features({"image": datasets.Image(), "text": datasets.Value("string")})
        rows = list(dataset)
        assert [row["text"] for row in rows] == WORDS[:3]
        assert isinstance(rows[0]["image"], Image.Image)
        assert skip_counts(f"imagefolder:{root}") == {"missing_image": 1, "unreadable_image": 1, "empty_label": 1}


def test_parquet_column_mapping(tmp_path, processor):
    images = [Image.new("RGB", (48 + i, 32)) for i in range(3)]
    table = datasets.Dataset.from_dict(
        {"img": images, "label": ["One", "Two", "Three"], "extra": [1, 2, 3]},
        features=datasets.Features(
            {"img": datasets.Image(), "label": datasets.Value("string"), "extra": datasets.Value("int64")}
        ),
    )
    path = str(tmp_path / "parquet" / "train-00000-of-00001.parquet")
    os.makedirs(os.path.dirname(path))
    table.to_parquet(path)
    assert detect_layout(os.path.dirname(path)) == "parquet"
    for source in (os.path.dirname(path), path):
        rows = list(load_ocr_dataset(source, processor=processor))
        assert [row["text"] for row in rows] == ["one", "two", "three"]
        assert rows[2]["image"].size == (50, 32)
    explicit = load_ocr_dataset(
        path, columns={"image": "img", "text": "label"}, streaming=False, cache_dir=str(tmp_path / "cache")
    )
    assert explicit.column_names == ["image", "text"] and explicit[0]["text"] == "One"
    with pytest.raises(ValueError, match="has columns"):
        load_ocr_dataset(path, columns={"text": "transcript"})


def test_resolve_columns():
    features = datasets.Features({"picture": datasets.Image(), "gt": datasets.Value("string")})
    assert resolve_columns(features) == ("picture", "gt")
    assert resolve_columns(["jpg", "txt", "__key__"]) == ("jpg", "txt")
    assert resolve_columns(["image", "label", "text"]) == ("image", "text")
    assert resolve_columns(["a", "b"], {"image": "a", "text": "b"}) == ("a", "b")
    with pytest.raises(ValueError, match="Cannot find a text column"):
        resolve_columns(["image", "width"])
    with pytest.raises(ValueError, match="keys"):
        resolve_columns(["image", "text"], {"img": "image"})


def test_save_to_disk_folder(tmp_path):
    table = datasets.Dataset.from_dict(
        {"image": [Image.new("RGB", (40, 32))] * 4, "text": WORDS[:4]},
        features=datasets.Features({"image": datasets.Image(), "text": datasets.Value("string")}),
    )
    table.save_to_disk(str(tmp_path / "arrow"))
    assert detect_layout(str(tmp_path / "arrow")) == "arrow"
    assert _texts(load_ocr_dataset(str(tmp_path / "arrow"))) == WORDS[:4]


def test_hub_names_offline_give_a_clear_error(tmp_path):
    assert detect_layout("someone/mjsynth-parquet") == "hub"
    with pytest.raises(OSError, match="HF_HUB_OFFLINE is set"):
        load_ocr_dataset("someone/mjsynth-parquet", cache_dir=str(tmp_path))
    with pytest.raises(FileNotFoundError):
        detect_layout("./no/such/folder")
    with pytest.raises(ValueError, match="no layout"):
        detect_layout(str(tmp_path))


# mixing, workers, ranks


def test_parse_source_spec():
    assert parse_source_spec("synthetic:0.7,/data/real:0.3") == [("synthetic", 0.7), ("/data/real", 0.3)]
    assert parse_source_spec("synthetic, C:\\data") == [("synthetic", 1.0), ("C:\\data", 1.0)]
    assert parse_source_spec([("a", 2), "b"]) == [("a", 2.0), ("b", 1.0)]
    with pytest.raises(ValueError, match="positive"):
        parse_source_spec("synthetic:0")


@pytest.mark.slow
def test_interleave_sources_mixes_with_weights(tsv_folder, processor):
    mixed = interleave_sources(f"synthetic:0.5,{tsv_folder}:0.5", processor=processor, num_samples=30, seed=0)
    texts = _texts(mixed)
    real = [text for text in texts if text in WORDS[:4] + ["romeo"]]
    assert set(real) == set(WORDS[:4] + ["romeo"])  # the small source is repeated until all were seen
    assert len(texts) - len(real) >= 5
    assert mixed.features == load_ocr_dataset(tsv_folder).features


def _identity(rows):
    return rows


@pytest.fixture(scope="module")
def lmdb_of_24(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("lmdb24"))
    rows = [{"image": _encoded(64, 32, color=(i, i, i)), "text": f"w{i:02d}"} for i in range(24)]
    write_lmdb(rows, root, show_progress=False)
    return root


def test_workers_and_ranks_read_disjoint_shards(lmdb_of_24):
    dataset = load_ocr_dataset(lmdb_of_24, num_shards=8)
    assert dataset.num_shards == 8
    everything = sorted(_texts(dataset))
    assert everything == [f"w{i:02d}" for i in range(24)]
    seen = []
    for rank in range(2):
        part = split_for_rank(dataset, rank=rank, world_size=2)
        loader = torch.utils.data.DataLoader(part, batch_size=None, num_workers=2, collate_fn=_identity)
        texts = [row["text"] for row in loader]
        assert len(texts) == len(set(texts)) == 12
        seen += texts
    assert sorted(seen) == everything  # disjoint, and nothing lost
    assert split_for_rank(dataset, rank=0, world_size=1) is dataset
