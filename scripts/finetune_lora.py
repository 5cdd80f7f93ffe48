#!/usr/bin/env python
"""Fine-tune a trained MambaOCR checkpoint on your own data with LoRA (PEFT), or fully for comparison.

    python scripts/finetune_lora.py scripts/configs/finetune_lora.json \\
        --model_name_or_path runs/demo_cpu --dataset /path/to/crops --output_dir runs/my_adapter
    python scripts/finetune_lora.py ... --validation_size 2000          # hold out 2,000 crops of --dataset
    python scripts/finetune_lora.py ... --extend_charset auto           # learn characters the base lacks
    python scripts/finetune_lora.py ... --merge_and_save runs/merged    # also write a merged plain checkpoint
    python scripts/finetune_lora.py ... --use_peft False                # full fine-tuning, same data and budget
    python scripts/finetune_lora.py ... --evaluate_only True            # the base alone on the held-out data
    python scripts/finetune_lora.py ... --max_width 512                 # squeeze wider training crops to 512 px
    # "Mamba (with LoRA)": encoder from a Mamba LM, LoRA on its projections, adapters/layer4/projection/head fully
    python scripts/finetune_lora.py ... --model_name_or_path "" --init_from_mamba_lm state-spaces/mamba-130m-hf \\
        --mamba_lm_layers 4 --backbone_lora_stages "" --full_stages layer4

`output_dir` ends as the adapter folder: `adapter_config.json`, `adapter_model.safetensors` (LoRA weights and the
fully trained modules only), `mambaocr_adapter.json`, a model card with the held-out metrics, and `*_results.json`.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from dataclasses import dataclass, field

from transformers import AutoModel, HfArgumentParser, TrainingArguments

from mambaocr_hf import save_checkpoint
from mambaocr_hf.data import interleave_sources, load_ocr_dataset, skip_counts
from mambaocr_hf.metrics import format_metrics_table
from mambaocr_hf.peft_utils import (
    DEFAULT_BACKBONE_LORA_STAGES,
    DEFAULT_MODULES_TO_SAVE,
    MAMBA_LORA_TARGETS,
    build_lora_config,
    extend_charset,
    find_new_characters,
    get_peft_model,
    merge_and_save,
    peft_parameter_table,
    save_adapter,
)
from mambaocr_hf.training import (
    TrainingStreamArguments,
    build_model_and_processor,
    make_ocr_trainer,
    parameter_table,
    parse_args_with_preset,
    resolve_resume_checkpoint,
    setup_training_run,
    train_and_report,
)

logger = logging.getLogger(__name__)


def _names(text: str) -> tuple[str, ...]:
    return tuple(name.strip() for name in text.split(",") if name.strip())


@dataclass
class ModelArguments:
    model_name_or_path: str = field(
        default="runs/demo_cpu", metadata={"help": "The trained MambaOCR checkpoint to start from (folder or Hub id)."}
    )
    init_from_mamba_lm: str | None = field(
        default=None,
        metadata={
            "help": "Instead of a checkpoint: a new model whose encoder is the first --mamba_lm_layers layers of this "
            "transformers Mamba LM (e.g. state-spaces/mamba-130m-hf); the encoder width follows the LM."
        },
    )
    mamba_lm_layers: int = field(default=4, metadata={"help": "LM layers to copy into the encoder."})
    reverse_init: str = field(
        default="copy",
        metadata={"help": "Reverse direction of the LM-initialised encoder: copy (of forward) or fresh."},
    )
    preset: str = field(default="small", metadata={"help": "Backbone size of a new (LM-initialised) model."})
    config_overrides: str | None = field(default=None, metadata={"help": "Config values of a new model."})
    charset: str = field(default="lowercase_alphanumeric", metadata={"help": "Charset of a new model."})
    backbone_weights_path: str | None = field(
        default=None, metadata={"help": "Local ImageNet weights for the ResNet of a new model."}
    )


@dataclass
class PeftArguments:
    use_peft: bool = field(default=True, metadata={"help": "LoRA (default), or False for full fine-tuning."})
    lora_r: int = field(default=8, metadata={"help": "LoRA rank."})
    lora_alpha: int | None = field(default=None, metadata={"help": "LoRA alpha (default 2 * rank)."})
    lora_dropout: float = field(default=0.05, metadata={"help": "Dropout on the LoRA branch's input."})
    lora_targets: str = field(
        default=",".join(MAMBA_LORA_TARGETS),
        metadata={"help": "Mamba layers with LoRA (each with its reverse twin), comma-separated; '' for none."},
    )
    backbone_lora_stages: str = field(
        default=",".join(DEFAULT_BACKBONE_LORA_STAGES),
        metadata={"help": "ResNet stages whose convolutions get LoRA, comma-separated; '' for none."},
    )
    modules_to_save: str = field(
        default=",".join(DEFAULT_MODULES_TO_SAVE),
        metadata={"help": "Trained fully and saved whole: adapters, projection, classifier, encoder_norms, conv1d..."},
    )
    full_stages: str = field(default="", metadata={"help": "ResNet stages trained fully, e.g. layer4."})
    extend_charset: str = field(
        default="",
        metadata={
            "help": "Characters to add to the charset (the CTC head grows, old rows kept), or 'auto' for every "
            "character of the training labels the charset cannot represent."
        },
    )
    merge_and_save: str | None = field(
        default=None, metadata={"help": "Also merge LoRA into the base and save a plain checkpoint to this folder."}
    )
    evaluate_only: bool = field(default=False, metadata={"help": "Only evaluate the starting model (no training)."})


@dataclass
class DataArguments(TrainingStreamArguments):
    dataset: str = field(default="", metadata={"help": "Training data: any source of load_ocr_dataset."})
    eval_dataset: str | None = field(
        default=None, metadata={"help": "Held-out source; default: --validation_size rows held out of --dataset."}
    )
    eval_split: str = field(default="val", metadata={"help": "Split of --eval_dataset."})
    validation_size: int = field(
        default=0, metadata={"help": "Hold out this many rows of --dataset (a seeded, deterministic split)."}
    )
    max_eval_samples: int = field(default=2000, metadata={"help": "Evaluate on at most this many samples."})
    max_width: int | None = field(
        default=None,
        metadata={
            "help": "Widest training and held-out image in pixels (wider crops are squeezed, and those over twice "
            "as wide are left out, as in train.py); default: the starting checkpoint's. The adapter or checkpoint "
            "saved at the end keeps the checkpoint's width for inference."
        },
    )
    dataset_seed: int = field(
        default=0, metadata={"help": "Seed of the hold-out split (the shuffling follows --data_seed, else --seed)."}
    )


def load_data(data_args: DataArguments, processor):
    """Training rows and held-out rows: `--eval_dataset`, or `--validation_size` rows of `--dataset`."""
    if not data_args.dataset:
        raise ValueError("Pass --dataset: your crops (a folder with labels.tsv, an LMDB, parquet, a Hub dataset...).")
    if data_args.eval_dataset:
        # the seed reaches synthetic sources only (a folder, LMDB or Hub source takes none)
        train = interleave_sources(data_args.dataset, split="train", processor=processor, seed=data_args.dataset_seed)
        evaluation = load_ocr_dataset(data_args.eval_dataset, split=data_args.eval_split, processor=processor)
        return train, evaluation.take(data_args.max_eval_samples)
    if data_args.validation_size <= 0:
        raise ValueError("Pass --eval_dataset, or --validation_size N to hold out N rows of --dataset.")
    rows = load_ocr_dataset(data_args.dataset, split="train", streaming=False, processor=processor)
    split = rows.train_test_split(test_size=data_args.validation_size, seed=data_args.dataset_seed)
    evaluation = split["test"].select(range(min(data_args.max_eval_samples, len(split["test"]))))
    # a map-style Dataset: the trainer streams and shuffles it (`make_ocr_trainer`)
    train = split["train"]
    logger.info(f"{data_args.dataset}: {len(split['train'])} training rows, {len(split['test'])} held out.")
    return train, evaluation


def main() -> None:
    parser = HfArgumentParser((ModelArguments, PeftArguments, DataArguments, TrainingArguments))
    model_args, peft_args, data_args, training_args = parse_args_with_preset(parser, sys.argv[1:])
    setup_training_run(training_args, logger)

    # from the checkpoint, or (--init_from_mamba_lm) a new model whose encoder is the LM's
    model, processor = build_model_and_processor(
        None if model_args.init_from_mamba_lm else model_args.model_name_or_path,
        preset=model_args.preset,
        config_overrides=model_args.config_overrides,
        charset=model_args.charset,
        use_pretrained_backbone=bool(model_args.backbone_weights_path),
        backbone_weights_path=model_args.backbone_weights_path,
        init_from_mamba_lm=model_args.init_from_mamba_lm,
        mamba_lm_layers=model_args.mamba_lm_layers,
        reverse_init=model_args.reverse_init,
    )
    base_vocab_size = model.config.vocab_size
    base_name = model_args.model_name_or_path if not model_args.init_from_mamba_lm else None
    if model_args.init_from_mamba_lm:  # the base has fresh parts: save it, the adapter is meaningless without it
        base_name = os.path.join(training_args.output_dir, "base")
        save_checkpoint(model, processor, base_name, base_model=model_args.init_from_mamba_lm)
        model = AutoModel.from_pretrained(base_name)

    lora_options = dict(
        r=peft_args.lora_r,
        lora_alpha=peft_args.lora_alpha,
        lora_dropout=peft_args.lora_dropout,
        mamba_targets=_names(peft_args.lora_targets),
        backbone_lora_stages=_names(peft_args.backbone_lora_stages),
        modules_to_save=_names(peft_args.modules_to_save),
        full_stages=_names(peft_args.full_stages),
    )
    if peft_args.use_peft:
        build_lora_config(model, **lora_options)  # bad LoRA options fail now, before the data is read

    new_chars = peft_args.extend_charset
    if new_chars == "auto":
        raw = load_ocr_dataset(data_args.dataset, split="train", verify_images=False, check_ctc=False)
        new_chars = find_new_characters((row["text"] for row in raw.select_columns(["text"])), processor.tokenizer)
    if new_chars:
        extend_charset(model, processor, new_chars)
        print(f"Charset extended by {new_chars!r}: the CTC head now has {model.config.vocab_size} classes.")

    inference_width = processor.image_processor.max_width
    if data_args.max_width:
        processor.image_processor.max_width = data_args.max_width
    train_dataset, eval_dataset = load_data(data_args, processor)
    if peft_args.use_peft and not peft_args.evaluate_only:
        model = get_peft_model(model, **lora_options)
        if training_args.process_index == 0:
            print()
            model.print_trainable_parameters()
            print(f"\n{peft_parameter_table(model)}\n")
    elif not peft_args.evaluate_only:
        model.apply_freeze_strategy("full")
        if training_args.process_index == 0:
            print(f"\nFull fine-tuning\n{parameter_table(model)}\n")

    trainer = make_ocr_trainer(
        model, processor, training_args, train_dataset, eval_dataset, **data_args.stream_options(data_args.dataset)
    )
    minutes = 0.0
    if not peft_args.evaluate_only:
        checkpoint = resolve_resume_checkpoint(
            training_args.resume_from_checkpoint,
            training_args.output_dir,
            require_optimizer_state=not training_args.save_only_model,
        )
        minutes = train_and_report(trainer, checkpoint)["train_minutes"]

    eval_metrics = trainer.evaluate()
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad) if not peft_args.evaluate_only else 0
    eval_metrics["eval_trainable_parameters"] = trainable
    trainer.log_metrics("eval", eval_metrics)
    trainer.save_metrics("eval", eval_metrics)
    if training_args.process_index != 0:
        return
    processor.image_processor.max_width = inference_width  # what is saved reads lines as wide as the checkpoint did
    ocr_metrics = {
        k[len("eval_") :]: v
        for k, v in eval_metrics.items()
        if k.startswith("eval_") and not k.endswith(("runtime", "per_second", "trainable_parameters"))
    }
    print("\nHeld-out evaluation\n" + format_metrics_table(ocr_metrics))
    held_out = data_args.eval_dataset or f"{data_args.validation_size} rows held out of {data_args.dataset}"
    card_metrics = {f"{held_out}: {k}": v for k, v in ocr_metrics.items()}
    training_data = f"{data_args.dataset} ({training_args.max_steps} steps, {minutes:.1f} min)"
    if peft_args.evaluate_only:
        return
    if peft_args.use_peft:
        save_adapter(
            model,
            training_args.output_dir,
            processor=processor,
            base_model=base_name,
            base_vocab_size=base_vocab_size,
            metrics=card_metrics,
            training_data=training_data,
            datasets=[data_args.dataset],
            repo_id=training_args.hub_model_id,
        )
        adapter_bytes = sum(
            os.path.getsize(os.path.join(training_args.output_dir, name))
            for name in os.listdir(training_args.output_dir)
            if name.startswith("adapter_model.")
        )
        print(f"\nAdapter saved to {training_args.output_dir} ({adapter_bytes / 1e6:.2f} MB).")
        results = {"adapter_bytes": adapter_bytes, "trainable_parameters": trainable, "train_minutes": minutes}
        with open(os.path.join(training_args.output_dir, "adapter_results.json"), "w", encoding="utf-8") as handle:
            json.dump(results, handle, indent=2)
        if peft_args.merge_and_save:
            merge_and_save(
                model,
                processor,
                peft_args.merge_and_save,
                metrics=card_metrics,
                training_data=training_data + " with LoRA, merged",
                datasets=[data_args.dataset],
                base_model=base_name,
            )
            print(f"Merged checkpoint saved to {peft_args.merge_and_save}.")
    else:
        save_checkpoint(
            trainer.model,
            processor,
            training_args.output_dir,
            metrics=card_metrics,
            training_data=training_data + ", full fine-tuning",
            datasets=[data_args.dataset],
            base_model=base_name,
        )
    counts = skip_counts()
    if counts:
        logger.info(f"Samples skipped by the data pipeline: {counts}")


if __name__ == "__main__":
    main()
