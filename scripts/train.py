#!/usr/bin/env python
"""Train a MambaOCR recognizer with `transformers.Trainer`.

    python scripts/train.py scripts/configs/demo_cpu.json                       # a JSON preset
    python scripts/train.py scripts/configs/demo_cpu.json --max_steps 50 --output_dir runs/x   # preset + overrides
    python scripts/train.py --dataset synthetic --output_dir runs/y --max_steps 1000 --bf16    # flags alone
    torchrun --nproc_per_node 2 scripts/train.py scripts/configs/demo_cpu.json --ddp_backend gloo   # data-parallel

The output directory ends as a Hub-ready checkpoint (weights, processor, model code, model card with the measured
metrics) plus `eval_results.json`.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import HfArgumentParser, TrainingArguments

from mambaocr_hf import MambaOCRForCTC, MambaOCRProcessor, save_checkpoint
from mambaocr_hf.configuration_mambaocr import FREEZE_STRATEGIES
from mambaocr_hf.data import interleave_sources, load_ocr_dataset, skip_counts
from mambaocr_hf.data.cache import cache_synthetic_sources
from mambaocr_hf.data.synthetic import synthetic_config_from
from mambaocr_hf.image_processing_mambaocr import INFERENCE_MAX_WIDTH
from mambaocr_hf.metrics import format_metrics_table
from mambaocr_hf.training import (
    TrainingStreamArguments,
    build_model_and_processor,
    make_ocr_trainer,
    parameter_table,
    parse_args_with_preset,
    parse_config_overrides,
    resolve_resume_checkpoint,
    setup_training_run,
    train_and_report,
)

logger = logging.getLogger(__name__)


@dataclass
class ModelArguments:
    model_name_or_path: str | None = field(
        default=None,
        metadata={"help": "Start from this MambaOCR checkpoint (folder or Hub id) instead of a new model."},
    )
    preset: str = field(
        default="base",
        metadata={
            "help": "Named variant of a new model (MambaOCRConfig.from_preset): 'base' (resnet34), 'small' "
            "(resnet18) or 'small-narrow' (resnet18 with a 256-channel layer4: the CPU demo's)."
        },
    )
    config_overrides: str | None = field(
        default=None,
        metadata={
            "help": "Config values for a new model over its preset's, e.g. "
            "'hidden_size=192,num_hidden_layers=3,sequence_model=bilstm'."
        },
    )
    charset: str = field(
        default="lowercase_alphanumeric",
        metadata={
            "help": "Charset of a new model: digits, lowercase_alphanumeric, alphanumeric, printable, printable_space "
            "(printable and the space, for text lines), or the characters."
        },
    )
    unknown_char_policy: str = field(
        default="map", metadata={"help": "Labels with other characters: error, drop or map."}
    )
    max_width: int = field(default=512, metadata={"help": "Widest image in pixels (wider ones are squeezed)."})
    use_pretrained_backbone: bool = field(
        default=False, metadata={"help": "Initialise the ResNet from ImageNet weights (timm; needs the network)."}
    )
    backbone_weights_path: str | None = field(
        default=None, metadata={"help": "Local ImageNet weights for the ResNet."}
    )
    freeze_strategy: str = field(
        default="auto",
        metadata={
            "help": f"What trains: {', '.join(FREEZE_STRATEGIES)}, or 'auto' (adapters_layer4 with a pretrained "
            "backbone, full without)."
        },
    )


@dataclass
class DataArguments(TrainingStreamArguments):
    dataset: str = field(
        default="synthetic",
        metadata={
            "help": "Training sources with weights, e.g. 'synthetic:0.7,/data/real:0.3' (see load_ocr_dataset)."
        },
    )
    eval_dataset: str = field(
        default="synthetic", metadata={"help": "Held-out source (synthetic uses another split)."}
    )
    eval_split: str = field(default="validation", metadata={"help": "Split of the held-out source."})
    max_eval_samples: int = field(default=1000, metadata={"help": "Evaluate on at most this many samples."})
    num_demo_images: int = field(default=8, metadata={"help": "Fresh images recognised and printed at the end."})
    dataset_seed: int = field(default=0, metadata={"help": "Seed of the synthetic generator and of the mixing."})
    synthetic_config: str | None = field(
        default=None,
        metadata={
            "help": "SyntheticConfig fields for the synthetic source (train and held-out): JSON or a JSON file, e.g. "
            '\'{"rotate_p": 0.2, "max_rotation": 5}\': how hard the rendered data is.'
        },
    )
    background_dirs: list[str] | None = field(
        default=None,
        metadata={
            "help": "Folders of your own photos for the synthetic source's backgrounds (patches of them behind the "
            "text; without them, procedural textures)."
        },
    )
    font_dirs: list[str] | None = field(
        default=None,
        metadata={
            "help": "Folders or files of your own fonts for the synthetic source, besides the system's and the synth "
            "extra's font packages."
        },
    )
    use_package_fonts: bool = field(
        default=True,
        metadata={
            "help": "Draw synthetic text from the synth extra's font packages (~200 families); False keeps the "
            "system's fonts and --font_dirs only (the fonts row of the ablation table)."
        },
    )
    synthetic_cache_samples: int = field(
        default=0,
        metadata={
            "help": "Render this many synthetic training samples once, with every core, into a cache that training "
            "reuses with fresh augmentation (keeps rendering off the training step's cores); 0: render on the fly."
        },
    )
    synthetic_cache_dir: str | None = field(
        default=None, metadata={"help": "Where the synthetic cache lives (default ~/.cache/mambaocr_hf/synthetic)."}
    )
    curriculum_samples: int = field(
        default=0,
        metadata={
            "help": "Train on this many easy synthetic samples (--curriculum_synthetic_config) before the --dataset "
            "mix: a model trained from scratch leaves the CTC plateau much sooner on clean words. 0: no curriculum."
        },
    )
    curriculum_synthetic_config: str | None = field(
        default=None,
        metadata={
            "help": "The curriculum's SyntheticConfig: JSON, or a preset file whose synthetic_config it takes (e.g. "
            "scripts/configs/synthetic_light.json, clean words on plain backgrounds)."
        },
    )
    overwrite_output_dir: bool = field(
        default=False,
        metadata={"help": "Start afresh even if output_dir holds checkpoints (by default the run resumes from them)."},
    )


def _parse_args() -> tuple[ModelArguments, DataArguments, TrainingArguments]:
    parser = HfArgumentParser((ModelArguments, DataArguments, TrainingArguments))
    return parse_args_with_preset(parser, sys.argv[1:])


_parse_overrides = parse_config_overrides


NEW_MODEL_ARGUMENTS = ("preset", "config_overrides", "charset", "use_pretrained_backbone", "backbone_weights_path")


def _model_and_processor(args: ModelArguments) -> tuple[MambaOCRForCTC, MambaOCRProcessor]:
    """`build_model_and_processor` from this script's flags, with a warning for flags of a new model that a
    checkpoint makes pointless."""
    if args.model_name_or_path:
        defaults = ModelArguments()
        ignored = [name for name in NEW_MODEL_ARGUMENTS if getattr(args, name) != getattr(defaults, name)]
        if ignored:
            logger.warning(
                f"{', '.join('--' + name for name in ignored)} describe a new model and are ignored: the model, its "
                f"size and charset come from {args.model_name_or_path}."
            )
    return build_model_and_processor(
        args.model_name_or_path,
        preset=args.preset,
        config_overrides=args.config_overrides,
        charset=args.charset,
        unknown_char_policy=args.unknown_char_policy,
        max_width=args.max_width,
        use_pretrained_backbone=args.use_pretrained_backbone,
        backbone_weights_path=args.backbone_weights_path,
    )


def main() -> None:
    model_args, data_args, training_args = _parse_args()
    setup_training_run(training_args, logger)

    model, processor = _model_and_processor(model_args)
    strategy, why = model_args.freeze_strategy, ""
    if strategy == "auto":
        pretrained = model_args.use_pretrained_backbone or model_args.model_name_or_path
        strategy = "adapters_layer4" if pretrained else "full"
        if not pretrained:
            why = " (the backbone is randomly initialised: freezing it would be pointless, so everything trains)"
    model.apply_freeze_strategy(strategy)
    if training_args.process_index == 0:
        print(f"\nFreeze strategy: {strategy}{why}\n{parameter_table(model)}\n")

    fonts, synthetic = _synthetic_options(data_args)

    def load(spec: str, split: str):
        # the seed and synthetic options reach the synthetic sources only; the label policy applies to all
        return interleave_sources(
            spec,
            split=split,
            processor=processor,
            seed=data_args.dataset_seed,
            unknown_char_policy=model_args.unknown_char_policy,
            **synthetic,
        )

    with training_args.main_process_first(desc="dataset preparation"):
        train_sources = data_args.dataset
        cache_samples = _cache_samples(data_args, training_args)
        if cache_samples > 0:
            train_sources = cache_synthetic_sources(
                train_sources,
                cache_samples,
                data_args.synthetic_cache_dir,
                tokenizer=processor.tokenizer,
                seed=data_args.dataset_seed,
                **synthetic,
            )
        train_dataset = load(train_sources, "train")
        curriculum = None
        if data_args.curriculum_samples > 0:
            curriculum = interleave_sources(
                "synthetic",
                split="train",
                processor=processor,
                # its own seed, so the curriculum's words are not the main synthetic stream's first words
                seed=data_args.dataset_seed + 7919,
                unknown_char_policy=model_args.unknown_char_policy,
                config=_curriculum_config(data_args),
                num_samples=data_args.curriculum_samples,
                **fonts,
            )
        eval_dataset = load(data_args.eval_dataset, data_args.eval_split).take(data_args.max_eval_samples)
    if training_args.world_size > 1 and training_args.process_index == 0:
        print(
            f"Data-parallel: {training_args.world_size} processes ({training_args.ddp_backend or 'default'} backend), "
            f"each reading its own shards; {training_args.world_size * training_args.per_device_train_batch_size} "
            "images per step in all."
        )
    trainer = make_ocr_trainer(
        model,
        processor,
        training_args,
        train_dataset,
        eval_dataset,
        curriculum_dataset=curriculum,
        **data_args.stream_options(train_sources),
    )

    # unset: a killed run restarted with the same command continues from its last checkpoint
    checkpoint = resolve_resume_checkpoint(
        training_args.resume_from_checkpoint,
        training_args.output_dir,
        auto_resume=not data_args.overwrite_output_dir,
        require_optimizer_state=not training_args.save_only_model,
    )
    minutes = train_and_report(trainer, checkpoint)["train_minutes"]

    eval_metrics = trainer.evaluate()
    trainer.log_metrics("eval", eval_metrics)
    trainer.save_metrics("eval", eval_metrics)
    if training_args.process_index == 0:
        ocr_metrics = {
            k[len("eval_") :]: v
            for k, v in eval_metrics.items()
            if k.startswith("eval_") and not k.endswith(("runtime", "per_second"))
        }
        print("\nHeld-out evaluation\n" + format_metrics_table(ocr_metrics))
        # training squeezes crops to `max_width` so batches stay cheap; the saved processor reads lines up to
        # INFERENCE_MAX_WIDTH px in one pass instead of squeezing them
        processor.image_processor.max_width = max(processor.image_processor.max_width, INFERENCE_MAX_WIDTH)
        save_checkpoint(
            trainer.model,
            processor,
            training_args.output_dir,
            metrics={f"{data_args.eval_dataset} ({data_args.eval_split}) {k}": v for k, v in ocr_metrics.items()},
            training_data=f"{data_args.dataset} ({training_args.max_steps} steps, {minutes:.1f} min)",
            datasets=[name.rpartition(":")[0] or name for name in data_args.dataset.split(",")],
            base_model=model_args.model_name_or_path,
            push_to_hub=training_args.push_to_hub,
            # as Trainer names the repo it pushes checkpoints to: --hub_model_id, else the output folder's name
            repo_id=training_args.hub_model_id or Path(training_args.output_dir).absolute().name,
            token=training_args.hub_token,
            private=training_args.hub_private_repo,
        )
        counts = skip_counts()
        if counts:
            logger.info(f"Samples skipped by the data pipeline: {counts}")
        _show_predictions(trainer.model, processor, data_args)


def _cache_samples(data_args: DataArguments, training_args: TrainingArguments) -> int:
    """`--synthetic_cache_samples`, but no more than the run's steps read after the curriculum: a short try of a
    preset (`--max_steps 50`) does not render the full run's cache first."""
    wanted = data_args.synthetic_cache_samples
    if wanted <= 0 or training_args.max_steps <= 0:
        return wanted
    per_step = (
        training_args.per_device_train_batch_size
        * training_args.gradient_accumulation_steps
        * training_args.world_size
    )
    readable = max(training_args.max_steps * per_step - data_args.curriculum_samples, per_step)
    if readable >= wanted:
        return wanted
    logger.info(
        f"Pre-rendering {readable} synthetic samples, not --synthetic_cache_samples {wanted}: "
        f"{training_args.max_steps} steps of {per_step} read no more after the curriculum."
    )
    return readable


def _curriculum_config(data_args: DataArguments):
    if data_args.curriculum_synthetic_config is None:
        raise ValueError(
            "--curriculum_samples needs --curriculum_synthetic_config: the easy synthetic distribution to start from "
            "(JSON of SyntheticConfig fields, or a file of them such as scripts/configs/synthetic_light.json)."
        )
    return synthetic_config_from(data_args.curriculum_synthetic_config, data_args.background_dirs)


def _synthetic_options(data_args: DataArguments) -> tuple[dict, dict]:
    """The synthetic sources' font options, and those with the run's `SyntheticConfig` (when it names one)."""
    fonts = {"font_dirs": data_args.font_dirs} if data_args.font_dirs else {}
    if not data_args.use_package_fonts:
        fonts["use_package_fonts"] = False
    synthetic = dict(fonts)
    config = synthetic_config_from(data_args.synthetic_config, data_args.background_dirs)
    if config is not None:
        synthetic["config"] = config
    return fonts, synthetic


def _show_predictions(model, processor, data_args: DataArguments) -> None:
    if data_args.num_demo_images <= 0:
        return
    _, options = _synthetic_options(data_args)  # the fonts and generator the run trained on
    dataset = load_ocr_dataset(
        "synthetic", split="test", processor=processor, seed=data_args.dataset_seed + 1, **options
    )
    rows = list(dataset.take(data_args.num_demo_images))
    inputs = processor(images=[row["image"] for row in rows], return_tensors="pt")
    model.eval()
    with torch.no_grad():
        outputs = model(**{k: v.to(model.device) for k, v in inputs.items()})
    decoded = processor.batch_decode(outputs.logits, outputs.frame_lengths, output_char_details=True)
    print(f"\nFresh synthetic images\n{'truth':<20} {'prediction':<20} score")
    for row, text, score in zip(rows, decoded.text, decoded.scores):
        mark = "" if text == row["text"] else "  <-"
        print(f"{row['text']:<20} {text:<20} {score:.3f}{mark}")


if __name__ == "__main__":
    main()
