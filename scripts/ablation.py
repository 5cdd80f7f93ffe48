#!/usr/bin/env python
"""The recipe's ablation table: the same preset and budget with one ingredient removed per row, scored on held-out
real crops (case-insensitive alphanumeric word accuracy, exact case, CER; one row per run, the mean over the sets).

    python scripts/ablation.py --preset scripts/configs/scene_text_cpu.json --max_steps 3000 \\
        --eval_dataset data/split_ic13 data/split_ic15 --eval_split val --output_dir runs/ablation \\
        --background_dirs ~/Pictures/backgrounds
    python scripts/ablation.py ... --rows full real_mix bilstm     # some rows only
    python scripts/ablation.py ... --synthetic_cache_dir /tmp/c    # other arguments go to every row's train.py
    python scripts/ablation.py --list                               # what each row changes

Each row trains `scripts/train.py PRESET --max_steps N` with its change into `OUTPUT_DIR/ROW` and evaluates the
checkpoint with `scripts/evaluate.py` into `OUTPUT_DIR/ROW/heldout.json`; a row whose results exist is not run
again (re-run the command after a kill; an interrupted row resumes from its last checkpoint). A row pre-renders its
synthetic words as the recipe does (`--synthetic_cache_samples`), with the cache scaled to the row's budget and
synthetic share so that each cached word is reused as often as in the full recipe; the cache is named by the
generator's settings, so every row's generator is its own and rows that keep the generator share one. The table goes
to `OUTPUT_DIR/ablation.md`, with every row whose results the folder holds (from this command or an earlier one).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import subprocess
import sys
from pathlib import Path

from mambaocr_hf.data import SyntheticConfig
from mambaocr_hf.data.mixing import parse_source_spec
from mambaocr_hf.data.synthetic import synthetic_config_from
from mambaocr_hf.presets import load_preset

logger = logging.getLogger("ablation")
SCRIPTS = Path(__file__).resolve().parent

# SyntheticConfig fields switched off per generator ingredient (the groups: see SyntheticConfig's docstring)
COMPOSITION = ("palette_color_p", "blend_p", "emboss_p", "outline_p", "shadow_p", "underline_p", "border_p")
GEOMETRY = (
    "neighbor_p",
    "loose_crop_p",
    "clip_p",
    "rotate_p",
    "perspective_p",
    "curve_p",
    "shear_p",
    "squeeze_p",
    "spacing_p",
)
CAPTURE = (
    "small_text_p",
    "lighting_p",
    "highlight_p",
    "blur_p",
    "defocus_p",
    "motion_blur_p",
    "noise_p",
    "jpeg_p",
    "low_resolution_p",
    "contrast_p",
    "color_cast_p",
)

# row name -> (what it removes, extra train.py arguments, SyntheticConfig overrides, keep --background_dirs)
ROWS: dict[str, tuple[str, list[str], dict[str, float], bool]] = {
    "full": ("nothing: the recipe at this budget", [], {}, True),
    "fonts": ("the font packages (system fonts only)", ["--use_package_fonts", "False"], {}, True),
    "photos": ("the photo backgrounds (procedural textures only, as without --background_dirs)", [], {}, False),
    "backgrounds": (
        "photo and textured backgrounds (flat surfaces only)",
        [],
        {"neutral_background_p": 1.0},
        False,
    ),
    "composition": (
        "palette colours, blending, emboss, outline, shadow, border",
        [],
        dict.fromkeys(COMPOSITION, 0.0),
        True,
    ),
    "geometry": ("neighbouring text, loose/clipped boxes, rotation, warps", [], dict.fromkeys(GEOMETRY, 0.0), True),
    "capture": (
        "small text, lighting, blur, noise, JPEG, contrast, colour cast",
        [],
        dict.fromkeys(CAPTURE, 0.0),
        True,
    ),
    "augmentation": ("the training augmentation of crops", ["--augment", "none"], {}, True),
    "real_mix": ("the real crops (synthetic only)", ["--dataset", "synthetic"], {}, True),
    "curriculum": ("the light curriculum", ["--curriculum_samples", "0"], {}, True),
    "bilstm": (
        "nothing; CRNN's BiLSTM stack replaces the Mamba blocks",
        ["--config_overrides", "sequence_model=bilstm"],
        {},
        True,
    ),
    "bilstm_residual": (
        "nothing; BiLSTM layers replace the Mamba mixers (same residual blocks)",
        ["--config_overrides", "sequence_model=bilstm_residual"],
        {},
        True,
    ),
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False
    )
    parser.add_argument("--preset", default=str(SCRIPTS / "configs" / "scene_text_cpu.json"), help="training preset")
    parser.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS), help="rows to run, in order")
    parser.add_argument("--max_steps", type=int, default=3000, help="training steps of every row (the budget)")
    parser.add_argument("--eval_dataset", nargs="+", help="held-out labels.tsv folders (one table row per run)")
    parser.add_argument("--eval_split", default="val", help="their split")
    parser.add_argument("--background_dirs", nargs="*", default=None, help="photo folders for the synthetic source")
    parser.add_argument("--output_dir", default="runs/ablation")
    parser.add_argument("--list", action="store_true", help="print what each row changes and exit")
    args, args.train_args = parser.parse_known_args(argv)  # the rest goes to every row's scripts/train.py
    return args


def synthetic_share(dataset: str) -> float:
    """The fraction of training samples a source spec draws from `synthetic`."""
    sources = parse_source_spec(dataset)
    return sum(w for s, w in sources if s == "synthetic") / sum(w for _, w in sources)


def cache_samples(preset: dict, max_steps: int, dataset: str) -> int:
    """The synthetic cache of a row: the preset's, scaled to `max_steps` and to the row's synthetic share so each
    cached word is reused as often as in the full recipe (0, rendering on the fly, where the preset has none)."""
    samples = preset.get("synthetic_cache_samples", 0)
    full_share, row_share = synthetic_share(preset.get("dataset", "synthetic")), synthetic_share(dataset)
    if not samples or not full_share or not row_share:
        return 0
    scale = max_steps / preset.get("max_steps", max_steps) * row_share / full_share
    return max(math.ceil(samples * scale), 1)


def row_commands(args: argparse.Namespace, row: str) -> tuple[list[str], list[str]]:
    """The training and evaluation commands of one row."""
    _, extra, synthetic, photos = ROWS[row]
    preset = load_preset(args.preset)
    out = Path(args.output_dir) / row
    steps = str(args.max_steps)
    train = [sys.executable, str(SCRIPTS / "train.py"), args.preset, "--max_steps", steps, "--output_dir", str(out)]
    # one evaluation, at the end, and the last weights kept: nothing is chosen on the held-out set
    train += ["--eval_steps", steps, "--save_steps", str(max(args.max_steps // 3, 1))]  # fmt: skip
    dataset = extra[extra.index("--dataset") + 1] if "--dataset" in extra else preset.get("dataset", "synthetic")
    cache = cache_samples(preset, args.max_steps, dataset)
    train += ["--load_best_model_at_end", "False", "--synthetic_cache_samples", str(cache)]  # fmt: skip
    if synthetic:
        # the preset's own synthetic_config (inline or a file it names) with the row's switches on top
        base = synthetic_config_from(args.preset) or SyntheticConfig()
        fields = {**dataclasses.asdict(base), **synthetic}
        fields.pop("background_dirs")  # --background_dirs below, for the rows that keep them
        train += ["--synthetic_config", json.dumps(fields)]
    if photos and args.background_dirs:
        train += ["--background_dirs", *args.background_dirs]
    if "--config_overrides" in extra:
        # a row's model change goes on top of the preset's (e.g. its backbone_kwargs), not in their place
        preset_overrides = preset.get("config_overrides")
        if preset_overrides:
            extra = list(extra)
            at = extra.index("--config_overrides") + 1
            extra[at] = f"{preset_overrides},{extra[at]}"
    train += extra + args.train_args
    evaluate = [sys.executable, str(SCRIPTS / "evaluate.py"), "--model", str(out), "--dataset", *args.eval_dataset]
    evaluate += ["--split", args.eval_split, "--output", str(out / "heldout.json")]
    return train, evaluate


def result_row(row: str, metrics: dict) -> str:
    """One markdown table row from `evaluate.py --output` metrics (several sets: their mean)."""
    mean = metrics.get("mean", metrics)
    sets = metrics.get("sources", {row: metrics})
    per_set = " | ".join(f"{100 * m['word_accuracy_ci_alnum']:.2f}%" for m in sets.values())
    return (
        f"| {row} | {ROWS[row][0]} | {per_set} | **{100 * mean['word_accuracy_ci_alnum']:.2f}%** | "
        f"{100 * mean['word_accuracy']:.2f}% | {mean['cer']:.3f} |"
    )


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s - %(message)s", datefmt="%H:%M:%S")
    if args.list:
        for name, (what, extra, synthetic, photos) in ROWS.items():
            change = " ".join(extra) or ("--synthetic_config " + json.dumps(synthetic) if synthetic else "-")
            print(f"{name:<13} removes {what}: {change}" + ("" if photos else " (and no --background_dirs)"))
        return
    if not args.eval_dataset:
        raise SystemExit("--eval_dataset is needed: the held-out real labels.tsv folders to score every row on.")
    for row in args.rows:
        if not results_file(args, row).is_file():
            train, evaluate = row_commands(args, row)
            for command in (train, evaluate):
                logger.info(f"[{row}] {' '.join(command)}")
                subprocess.run(command, check=True)
        table = write_table(args)
    print(table)


def results_file(args: argparse.Namespace, row: str) -> Path:
    return Path(args.output_dir) / row / "heldout.json"


def write_table(args: argparse.Namespace) -> str:
    """`OUTPUT_DIR/ablation.md`: every row with results in the output folder, this command's or an earlier one's
    (`--rows` picks what to run, not what the table shows), in the order of `--list`."""
    sets = " | ".join(Path(s).name for s in args.eval_dataset)
    table = [
        f"| row | removed | {sets} | mean word acc. (ci alnum) | exact case | CER |",
        "|---|---|" + "---:|" * (len(args.eval_dataset) + 3),
    ]
    for row in ROWS:
        results = results_file(args, row)
        if results.is_file():
            table.append(result_row(row, json.loads(results.read_text(encoding="utf-8"))))
    text = "\n".join(table)
    Path(args.output_dir, "ablation.md").write_text(text + "\n", encoding="utf-8")
    return text


if __name__ == "__main__":
    main()
