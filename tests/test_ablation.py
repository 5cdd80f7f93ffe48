"""`scripts/ablation.py`: every row is a valid training run of the preset with its ingredient removed; the table is
built from the rows' held-out results, and a finished row is not trained again."""

import dataclasses
import json
import os
import subprocess
import sys

import pytest
from PIL import Image, ImageDraw

from mambaocr_hf.data import SyntheticConfig

from .test_train import ROOT, TINY_ARGS

sys.path.insert(0, str(ROOT / "scripts"))
try:
    import ablation
    import train
finally:
    sys.path.pop(0)


def test_every_row_is_a_valid_training_command(monkeypatch):
    fields = {field.name for field in dataclasses.fields(SyntheticConfig)}
    args = ablation.parse_args(["--eval_dataset", "heldout", "--max_steps", "30", "--background_dirs", "photos"])
    preset = json.loads((ROOT / "scripts" / "configs" / "scene_text_cpu.json").read_text())
    per_step = preset["synthetic_cache_samples"] / preset["max_steps"]  # cached words per step of the recipe
    seen = set()
    for row, (_, _, synthetic, photos) in ablation.ROWS.items():
        assert set(synthetic) <= fields, row  # switches that exist
        command, evaluate = ablation.row_commands(args, row)
        monkeypatch.setattr(sys, "argv", command[1:])
        model_args, data_args, training_args = train._parse_args()  # train.py accepts it
        assert training_args.max_steps == 30 and training_args.output_dir.endswith(row)
        assert evaluate[-1].endswith(f"{row}/heldout.json") and "heldout" in evaluate
        change = (
            model_args.config_overrides,
            data_args.dataset,
            data_args.augment,
            data_args.curriculum_samples,
            data_args.use_package_fonts,
            data_args.synthetic_config,
            tuple(data_args.background_dirs or ()),
        )
        assert change not in seen, f"row {row} changes nothing another row does not"
        seen.add(change)
        assert (data_args.background_dirs == ["photos"]) == photos
        # each row reuses its cached words as often as the recipe: a cache scaled to the budget and synthetic share
        share = 2 if row == "real_mix" else 1  # synthetic only, against half of the recipe's samples
        assert data_args.synthetic_cache_samples == round(per_step * 30 * share) > 0
        if row == "bilstm":  # the row's model change is added to the preset's own, not put in its place
            overrides = train.parse_config_overrides(model_args.config_overrides)
            assert overrides == {"backbone_kwargs": {"zero_init_last": False}, "sequence_model": "bilstm"}
    _, _, synthetic, _ = ablation.ROWS["geometry"]
    assert synthetic["neighbor_p"] == 0.0 and synthetic["perspective_p"] == 0.0


@pytest.mark.slow
def test_rows_train_evaluate_and_resume(tmp_path):
    for split, words in {"train": ["abc", "hello", "42", "ocr"], "val": ["test", "crop"]}.items():
        folder = tmp_path / "crops" / split
        folder.mkdir(parents=True)
        for index, word in enumerate(words):
            image = Image.new("RGB", (16 * len(word) + 8, 32), "white")
            ImageDraw.Draw(image).text((4, 8), word, fill="black")
            image.save(folder / f"{index}.png")
        (folder / "labels.tsv").write_text("".join(f"{i}.png\t{w}\n" for i, w in enumerate(words)))
    preset = json.loads((ROOT / "scripts" / "configs" / "scene_text_cpu.json").read_text())
    preset.update(
        dataset=f"synthetic:0.5,{tmp_path / 'crops' / 'train'}:0.5",
        eval_dataset=str(tmp_path / "crops"),
        curriculum_samples=8,
        curriculum_synthetic_config=str(ROOT / "scripts" / "configs" / "synthetic_light.json"),
    )
    (tmp_path / "preset.json").write_text(json.dumps(preset))
    command = [
        sys.executable, str(ROOT / "scripts" / "ablation.py"), "--preset", str(tmp_path / "preset.json"),
        "--rows", "full", "real_mix", "--max_steps", "2", "--eval_dataset", str(tmp_path / "crops"),
        "--output_dir", str(tmp_path / "ablation"), "--synthetic_cache_dir", str(tmp_path / "cache"), *TINY_ARGS,
    ]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    first = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr[-3000:]
    table = (tmp_path / "ablation" / "ablation.md").read_text().splitlines()
    assert table[0].startswith("| row | removed | crops | mean word acc.")
    assert [line.split(" | ")[0] for line in table[2:]] == ["| full", "| real_mix"]
    assert "[real_mix]" in first.stderr and "--dataset synthetic" in first.stderr
    assert "--synthetic_cache_samples 10 " in first.stderr  # 100,000 for 20,000 steps: 10 for 2
    # the rows pre-rendered where told (train.py caps a cache at what 2 steps read: both rows share one)
    assert [c.name.split("_")[0] for c in (tmp_path / "cache").iterdir()] == ["synthetic"]
    again = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and "[full]" not in again.stderr  # finished rows are read, not trained again
    assert (tmp_path / "ablation" / "ablation.md").read_text().splitlines() == table
    # a command for one row still tables every row the folder holds (--rows picks what runs, not what shows)
    one = subprocess.run(command + ["--rows", "real_mix"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert one.returncode == 0 and "[real_mix]" not in one.stderr, one.stderr[-3000:]
    assert (tmp_path / "ablation" / "ablation.md").read_text().splitlines() == table
    missing = subprocess.run(command[:2] + ["--rows", "full"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert missing.returncode != 0 and "--eval_dataset is needed" in missing.stderr
