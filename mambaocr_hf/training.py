# Copyright 2026 The MambaOCR authors. Licensed under the Apache License, Version 2.0.
"""What `transformers.Trainer` needs to train MambaOCR: the model and processor a run starts from, a non-finite guard,
CTC metrics and reporting helpers."""

from __future__ import annotations

import copy
import dataclasses
import json
import logging as std_logging
import os
import re
import sys
import time
import zipfile
from collections.abc import Callable

import numpy as np
import torch
from accelerate.data_loader import IterableDatasetShard
from transformers import EvalPrediction, Trainer, TrainerCallback, TrainingArguments, set_seed
from transformers.trainer import TRAINER_STATE_NAME
from transformers.trainer_callback import ExportableState
from transformers.trainer_utils import get_last_checkpoint
from transformers.utils import logging

from .configuration_mambaocr import PRESETS, MambaOCRConfig
from .image_processing_mambaocr import MambaOCRImageProcessor
from .modeling_mambaocr import MambaOCRForCTC
from .onednn import cpu_supports_bf16
from .pipeline_mambaocr import save_pipeline_code
from .presets import load_preset
from .processing_mambaocr import MambaOCRProcessor
from .tokenization_mambaocr import MambaOCRTokenizer

logger = logging.get_logger(__name__)

_CHECKPOINT_NAME = re.compile(r"checkpoint-(\d+)")


def build_model_and_processor(
    model_name_or_path: str | None = None,
    *,
    preset: str = "base",
    config_overrides: str | dict | None = None,
    charset: str = "lowercase_alphanumeric",
    unknown_char_policy: str = "map",
    max_width: int | None = None,
    use_pretrained_backbone: bool = False,
    backbone_weights_path: str | None = None,
    init_from_mamba_lm: str | None = None,
    mamba_lm_layers: int = 4,
    reverse_init: str = "copy",
) -> tuple[MambaOCRForCTC, MambaOCRProcessor]:
    """The model and processor a training run starts from: both training scripts build them here.

    Args:
        model_name_or_path (`str`, *optional*):
            A saved MambaOCR checkpoint (folder or Hub id) to continue from; the other arguments but `max_width` then
            describe a new model and are not used (its size and charset are the checkpoint's).
        preset (`str`, *optional*, defaults to `"base"`):
            Named variant of a new model (`PRESETS`: `"base"`, `"small"`, `"small-narrow"`).
        config_overrides (`str` or `dict`, *optional*):
            Config values over the preset's: a dict, or text for `parse_config_overrides` (`"hidden_size=192"`).
        charset (`str`, *optional*, defaults to `"lowercase_alphanumeric"`), unknown_char_policy (`str`, *optional*,
        defaults to `"map"`):
            The new model's tokenizer (a named charset or the characters; labels with other characters).
        max_width (`int`, *optional*):
            Widest training image in pixels (wider ones are squeezed): the new config's `max_width`, or the loaded
            processor's. None keeps the default or the checkpoint's.
        use_pretrained_backbone (`bool`, *optional*, defaults to `False`), backbone_weights_path (`str`, *optional*):
            ImageNet weights for a new model's ResNet, from timm's hub entry or a local file.
        init_from_mamba_lm (`str`, *optional*):
            A transformers Mamba LM (path or Hub id): the new model's encoder is its first `mamba_lm_layers` layers
            (`config_from_mamba_lm`, `init_encoder_from_mamba_lm`), its reverse direction `reverse_init` ("copy" or
            "fresh"); the encoder's shapes follow the LM, so the preset's `hidden_size` is not used.

    Returns:
        `(MambaOCRForCTC, MambaOCRProcessor)`; a new model's image processor follows its config
        (`MambaOCRImageProcessor.for_model_config`).
    """
    if model_name_or_path:
        from transformers import AutoModel, AutoProcessor

        model = AutoModel.from_pretrained(model_name_or_path)
        processor = AutoProcessor.from_pretrained(model_name_or_path)
        if max_width is not None:
            # a saved processor reads lines as wide as it was saved for; training squeezes crops to `max_width`
            processor.image_processor.max_width = max_width
        return model, processor
    tokenizer = MambaOCRTokenizer(charset=charset, unknown_char_policy=unknown_char_policy)
    flags = {"max_width": max_width, "backbone_weights_path": backbone_weights_path}
    overrides = {key: value for key, value in flags.items() if value is not None}
    if use_pretrained_backbone:
        overrides["use_pretrained_backbone"] = True
    if isinstance(config_overrides, dict):
        overrides.update(config_overrides)
    else:
        overrides.update(parse_config_overrides(config_overrides))
    if init_from_mamba_lm:
        from .mamba_lm_init import config_from_mamba_lm, init_encoder_from_mamba_lm

        if preset not in PRESETS:
            raise ValueError(f"Unknown preset {preset!r}; choose one of {list(PRESETS)}.")
        from_preset = {key: value for key, value in PRESETS[preset].items() if key != "hidden_size"}
        config = config_from_mamba_lm(
            init_from_mamba_lm,
            num_layers=mamba_lm_layers,
            vocab_size=len(tokenizer),
            **{**copy.deepcopy(from_preset), **overrides},
        )
        model = MambaOCRForCTC(config)
        init_encoder_from_mamba_lm(model, init_from_mamba_lm, reverse_init=reverse_init)
    else:
        config = MambaOCRConfig.from_preset(preset, vocab_size=len(tokenizer), **overrides)
        model = MambaOCRForCTC(config)
        if config.sequence_model == "bilstm":
            logger.warning(
                "A new model with CRNN's plain BiLSTM stack (sequence_model=bilstm): trained from scratch it stays on "
                "CTC's blank-only plateau for thousands of steps (it read nothing after 3,000 steps of the scene-text "
                "recipe). sequence_model=bilstm_residual puts the same LSTMs in the Mamba blocks' residual structure "
                "and starts reading as soon as they do."
            )
    image_processor = MambaOCRImageProcessor.for_model_config(config)
    return model, MambaOCRProcessor(image_processor=image_processor, tokenizer=tokenizer)


def setup_training_run(training_args: TrainingArguments, script_logger: std_logging.Logger) -> None:
    """What a training script does first: log format and levels as in the HF examples, the seed, bf16 only where the
    CPU runs it natively (with a message otherwise), and the data settings the OCR collator needs."""
    import datasets
    import transformers

    std_logging.basicConfig(
        format="%(asctime)s - %(levelname)s - %(name)s - %(message)s",
        datefmt="%H:%M:%S",
        handlers=[std_logging.StreamHandler(sys.stdout)],
    )
    log_level = training_args.get_process_log_level()
    script_logger.setLevel(log_level)
    datasets.utils.logging.set_verbosity(log_level)
    transformers.utils.logging.set_verbosity(log_level)
    std_logging.getLogger("mambaocr_hf").setLevel(log_level)
    set_seed(training_args.seed)
    # `--bf16`, or `accelerate launch --mixed_precision bf16` (which TrainingArguments reads when it is built)
    wants_bf16 = training_args.bf16 or getattr(training_args, "mixed_precision", "no") == "bf16"
    if wants_bf16 and not torch.cuda.is_available() and not cpu_supports_bf16():
        logger.warning(
            "--bf16 was asked for, but this CPU has no native bfloat16 (AVX-512 BF16 / AMX): bf16 would be emulated "
            "and ~7x slower than float32, so this run trains in float32. Pass --bf16 False to silence this."
        )
        training_args.bf16 = False
        # TrainingArguments resolved its mixed precision when it was built, and the Trainer's accelerator (and so
        # its autocast) follows that, not `bf16`
        training_args.mixed_precision = "no"
    if "tensorboard" in training_args.report_to:
        from transformers.integrations import is_tensorboard_available

        if not is_tensorboard_available():  # the presets ask for TensorBoard: log to it where it is installed
            logger.info("TensorBoard is not installed (`pip install tensorboard`): no TensorBoard logs this run.")
            training_args.report_to = [name for name in training_args.report_to if name != "tensorboard"]
    training_args.remove_unused_columns = False  # the collator needs the raw "image" and "text" columns
    # each rank reads its own shards of the stream (`make_ocr_trainer`), so batches are not dispatched from rank 0
    training_args.accelerator_config.dispatch_batches = False


@dataclasses.dataclass
class TrainingStreamArguments:
    """How `make_ocr_trainer` feeds the training set: the fields both training scripts' `DataArguments` inherit."""

    group_by_width: bool = dataclasses.field(
        default=True, metadata={"help": "Batch training images of similar widths together (less padding, faster)."}
    )
    shuffle_buffer_size: int = dataclasses.field(
        default=1000,
        metadata={
            "help": "Rows in the training stream's shuffle buffer (its shards are shuffled too); 0: no shuffle."
        },
    )
    augment: str = dataclasses.field(
        default="auto",
        metadata={
            "help": "Augment training crops (TextAugment, RandAugment for text): 'auto' when a training source holds "
            "real crops (not 'synthetic', which renders its own variety), 'text' always, 'none' never. Never for "
            "evaluation."
        },
    )

    pad_to_multiple_of: int | None = dataclasses.field(
        default=32,
        metadata={
            "help": "Pad each batch's width to a multiple of this many pixels (a multiple of the model's frame "
            "stride; 0: to the widest image only). Fewer distinct batch shapes train faster on a CPU: "
            "oneDNN builds its kernels per shape (~1.4x the steps/s with bf16, docs/speed.md)."
        },
    )

    def stream_options(self, dataset=None) -> dict:
        """`make_ocr_trainer`'s keyword arguments from these fields (`dataset`: the training sources as a spec
        string or `(source, weight)` pairs, for `augment` "auto")."""
        from .data import parse_source_spec, resolve_augment

        sources = [source for source, _ in parse_source_spec(dataset)] if dataset else []
        return {
            "group_by_width": self.group_by_width,
            "shuffle_buffer_size": self.shuffle_buffer_size,
            "augment": resolve_augment(self.augment, sources),
            "pad_to_multiple_of": self.pad_to_multiple_of or None,
        }


def make_ocr_trainer(
    model,
    processor,
    training_args: TrainingArguments,
    train_dataset,
    eval_dataset=None,
    group_by_width: bool = True,
    shuffle_buffer_size: int = 1000,
    augment=None,
    curriculum_dataset=None,
    pad_to_multiple_of: int | None = None,
) -> OCRTrainer:
    """The `OCRTrainer` both training scripts use: the OCR collator (pads images and labels), CER/WER/word-accuracy
    metrics and, with `group_by_width`, batches of crops of similar width (less padding to compute). `augment` (a
    `TextAugment`) transforms the training crops only, never the evaluation set's.

    A streaming `train_dataset` (a map-style one too, with `group_by_width`) is shuffled: the order of its shards and
    a buffer of `shuffle_buffer_size` rows (0: keep the stream's order), reshuffled each epoch; folders and LMDBs are
    often written sorted by label or width. Under data-parallel training it is split once between the processes
    (`split_for_rank`: each reads its own shards) and accelerate is kept from splitting it again.

    `pad_to_multiple_of` pads every batch (training and evaluation) to a multiple of that many pixels
    (`OCRDataCollator`).

    `curriculum_dataset`, a finite stream, is read in full before `train_dataset`, each shuffled on its own
    (`CurriculumStream`); a resumed run replays the stream, curriculum included.
    """
    import datasets

    from .data import CurriculumStream, OCRDataCollator, WidthBucketedDataset, model_width_of, split_for_rank

    if curriculum_dataset is not None and not (
        isinstance(curriculum_dataset, datasets.IterableDataset)
        and (isinstance(train_dataset, datasets.IterableDataset) or group_by_width)
    ):
        raise TypeError(
            "A curriculum is a stream read before the training stream: load it with streaming=True, and the training "
            "set streaming too (or with group_by_width)."
        )
    # the same seed on every rank: they agree on the order before each takes its own part
    seed = training_args.data_seed if training_args.data_seed is not None else training_args.seed
    if group_by_width and isinstance(train_dataset, datasets.Dataset):
        if train_dataset.format["type"] is None:
            # a multiple of the world size where there are rows enough: each rank then reads whole shards
            world, shards = training_args.world_size, max(1, min(64, len(train_dataset)))
            shards = shards // world * world if shards >= world else shards
            train_dataset = train_dataset.to_iterable_dataset(num_shards=shards)
        else:  # datasets cannot stream a formatted one (`with_transform`, `set_format`): shuffle its index instead
            train_dataset = train_dataset.shuffle(seed=seed) if shuffle_buffer_size > 0 else train_dataset
    if isinstance(train_dataset, datasets.IterableDataset) or group_by_width:
        if shuffle_buffer_size > 0 and isinstance(train_dataset, datasets.IterableDataset):
            # one shard at a time: datasets' default reads up to 10 shards at once in threads, and the sources'
            # generators (an LMDB environment per process, the synthetic renderer's cached fonts) are not made for
            # threads
            train_dataset = train_dataset.shuffle(
                seed=seed, buffer_size=shuffle_buffer_size, max_buffer_input_shards=1
            )
            if curriculum_dataset is not None:
                curriculum_dataset = curriculum_dataset.shuffle(
                    seed=seed, buffer_size=shuffle_buffer_size, max_buffer_input_shards=1
                )
        train_dataset = split_for_rank(train_dataset, training_args.process_index, training_args.world_size)
        if curriculum_dataset is not None:
            curriculum_dataset = split_for_rank(
                curriculum_dataset, training_args.process_index, training_args.world_size
            )
            train_dataset = CurriculumStream(curriculum_dataset, train_dataset)
        if group_by_width:
            train_dataset = WidthBucketedDataset(
                train_dataset,
                training_args.per_device_train_batch_size,
                model_width_of(processor.image_processor),
                seed=training_args.seed,
            )
        if training_args.world_size > 1:
            train_dataset = RankLocalStream(train_dataset)
            training_args.accelerator_config.dispatch_batches = False  # rank 0 holds only its own part to dispatch
    return OCRTrainer(
        model=model,
        args=training_args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        data_collator=OCRDataCollator(processor, pad_to_multiple_of=pad_to_multiple_of),
        train_data_collator=(
            OCRDataCollator(processor, augment=augment, pad_to_multiple_of=pad_to_multiple_of)
            if augment is not None
            else None
        ),
        processing_class=processor,
        compute_metrics=make_compute_metrics(processor.tokenizer),
        preprocess_logits_for_metrics=preprocess_logits_for_metrics,
    )


class _Unsharded(IterableDatasetShard):
    """accelerate's shard of an iterable dataset made a passthrough, for a stream that is already this rank's part:
    every row once, in order (with `num_processes=1` it would still fill the last partial batch with earlier rows)."""

    def __iter__(self):
        yield from self.dataset


class RankLocalStream(torch.utils.data.IterableDataset):
    """A training stream that is already this process's part (`split_for_rank`). `OCRTrainer` keeps accelerate from
    sharding it again: by default accelerate shards every iterable dataset between the processes itself, so a
    pre-split stream would give each of N processes 1/N² of the data."""

    def __init__(self, dataset):
        super().__init__()
        self.dataset = dataset

    def __iter__(self):
        return iter(self.dataset)

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)


class RunTotalsCallback(TrainerCallback, ExportableState):
    """The run's training time and non-finite steps. As an `ExportableState` it is saved in every checkpoint's
    `trainer_state.json` (`stateful_callbacks`), with the Trainer's own state, so a resumed run adds to the totals of
    the run it continues (`OCRTrainer.train` reads them back)."""

    def __init__(self, train_seconds: float = 0.0, nonfinite_steps: int = 0):
        self.seconds_before = float(train_seconds)  # of the run before the checkpoint it resumed from
        self.nonfinite_steps = int(nonfinite_steps)
        self._started: float | None = None
        self._stopped: float | None = None

    def start(self) -> None:
        self._started, self._stopped = time.perf_counter(), None

    def stop(self) -> None:
        if self._started is not None and self._stopped is None:
            self._stopped = time.perf_counter()

    @property
    def train_seconds(self) -> float:
        if self._started is None:
            return self.seconds_before
        return self.seconds_before + ((self._stopped or time.perf_counter()) - self._started)

    def on_step_begin(self, args, state, control, **kwargs):
        if self._started is None:  # re-created by Trainer (`restore_callback_states_from_checkpoint`) after start
            self.start()

    def on_train_end(self, args, state, control, **kwargs):
        self.stop()

    def state(self) -> dict:
        return {
            "args": {"train_seconds": self.train_seconds, "nonfinite_steps": self.nonfinite_steps},
            "attributes": {},
        }


class OCRTrainer(Trainer):
    """`Trainer` that never lets a non-finite loss or gradient reach the weights, and keeps the run's totals across
    resumes.

    CTC already zeroes infinite losses (`ctc_zero_infinity`); this also catches NaN from anywhere else (a bad image,
    an overflow): the step's gradients are dropped (the optimizer then skips those parameters), the BatchNorm running
    statistics its forward passes changed are restored, its loss is left out of the logged `loss` and `train_loss`
    averages (the log says `skipped_steps`), and the event is counted in `nonfinite_steps` and logged. With gradient
    accumulation the whole accumulated step is dropped, the micro-batches before and after the bad one too (keeping
    the good part would cost a copy of every gradient per micro-batch). Under `--fp16` the GradScaler drops the
    gradients itself (it skips a step whose gradients are not finite and lowers its scale), so they are left to it;
    a non-finite loss is counted and skipped as above, an overflow of the gradients alone is the scaler's normal work.

    `train_seconds` and `nonfinite_steps` cover the whole run: each checkpoint carries them (`RunTotalsCallback`), and
    a run resumed from it starts from them. `resumed_from_step` is the step it resumed at (None for a fresh run).
    """

    def __init__(self, *args, train_data_collator=None, **kwargs):
        from .data.reporting import SkipReportCallback

        super().__init__(*args, **kwargs)
        self.add_callback(RunTotalsCallback())
        self.add_callback(SkipReportCallback())  # skip totals (workers' too); no training data is an error
        self.resumed_from_step: int | None = None
        # the training batches' collator when it differs from the evaluation one (augmentation)
        self.train_data_collator = train_data_collator
        self._reset_step_guard()

    @property
    def run_totals(self) -> RunTotalsCallback:
        # looked up each time: Trainer may replace the instance when it restores callback states
        return next(cb for cb in self.callback_handler.callbacks if isinstance(cb, RunTotalsCallback))

    @property
    def nonfinite_steps(self) -> int:
        return self.run_totals.nonfinite_steps

    @property
    def train_seconds(self) -> float:
        """Seconds spent in `train()` over the whole run (evaluations and saving included), resumes added up."""
        return self.run_totals.train_seconds

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        super().save_model(output_dir, _internal_call)
        if self.args.should_save:  # checkpoints name and carry the pipeline, as `save_checkpoint`'s folders do
            save_pipeline_code(output_dir or self.args.output_dir)

    def train(self, resume_from_checkpoint: str | os.PathLike | bool | None = None, **kwargs):
        checkpoint = resume_from_checkpoint
        if checkpoint is True:  # Trainer's meaning: the last checkpoint; ours: the last complete one
            checkpoint = resume_from_checkpoint = resolve_resume_checkpoint(
                True, self.args.output_dir, require_optimizer_state=not self.args.save_only_model
            )
        saved, self.resumed_from_step = {}, None
        if isinstance(checkpoint, (str, os.PathLike)):
            # a checkpoint of another trainer (or of an older MambaOCR) has no totals: its time is unknown
            state = _read_json(os.path.join(checkpoint, TRAINER_STATE_NAME))
            self.resumed_from_step = state.get("global_step")
            saved = state.get("stateful_callbacks", {}).get(RunTotalsCallback.__name__, {})
            saved = (saved[0] if isinstance(saved, list) and saved else saved or {}).get("args", {})
        self.callback_handler.remove_callback(RunTotalsCallback)
        totals = RunTotalsCallback(**saved)
        self.add_callback(totals)
        totals.start()
        self._reset_step_guard()
        try:
            output = super().train(resume_from_checkpoint=resume_from_checkpoint, **kwargs)
            # Trainer returns its own average; `log` corrected the one in the metrics for skipped steps
            return output._replace(training_loss=output.metrics.get("train_loss", output.training_loss))
        finally:
            self.run_totals.stop()

    def get_train_dataloader(self):
        if self.train_data_collator is not None:
            evaluation_collator, self.data_collator = self.data_collator, self.train_data_collator
            try:
                dataloader = super().get_train_dataloader()
            finally:
                self.data_collator = evaluation_collator
        else:
            dataloader = super().get_train_dataloader()
        if isinstance(self.train_dataset, RankLocalStream):
            # as Trainer does for its rank-aware `BatchRebalanceSampler`: make accelerate's shard a passthrough
            shard = getattr(dataloader, "dataset", None)
            if type(shard) is not IterableDatasetShard:
                raise RuntimeError(
                    "The training stream is already split between the processes, but accelerate prepared it as "
                    f"{type(shard).__name__}, not IterableDatasetShard (`dispatch_batches` on, or another accelerate "
                    "version): data would be lost. Set `accelerator_config.dispatch_batches=False`, or report it "
                    "with `pip show accelerate`."
                )
            shard.__class__ = _Unsharded
        return dataloader

    def training_step(self, model, inputs, num_items_in_batch=None):
        if self._window_batches == 0:  # the first micro-batch of an optimizer step
            self._batch_norm_before = [buffer.clone() for buffer in _batch_norm_buffers(model)]
        self._window_batches += 1
        loss = super().training_step(model, inputs, num_items_in_batch)
        loss_finite = bool(torch.isfinite(loss).all())
        scaler = getattr(self.accelerator, "scaler", None)
        if scaler is not None and scaler.is_enabled():
            # fp16: the GradScaler finds non-finite gradients itself, skips that optimizer step and lowers its scale
            # (overflow in the first steps is how it finds its scale). Dropping the gradients here would leave it
            # nothing to check: it raises, and its scale never comes down.
            finite = loss_finite
        else:
            grads = [p.grad for p in model.parameters() if p.grad is not None]
            finite = loss_finite and (not grads or bool(torch.isfinite(torch.nn.utils.get_total_norm(grads))))
        if not finite and not self._dropping_step:
            self._dropping_step = True
            if scaler is not None and scaler.is_enabled():
                self._count_nonfinite("loss", "the gradient scaler skips this step")
            else:
                self._count_nonfinite("loss or gradient", "this step's gradients were dropped")
        if self._dropping_step:
            if scaler is None or not scaler.is_enabled():
                # the whole optimizer step goes: also the gradients of the micro-batches after the bad one
                model.zero_grad(set_to_none=True)
            # its forward passes must not count in BatchNorm's running statistics either (a diverging batch
            # leaves them inf)
            with torch.no_grad():
                for buffer, before in zip(_batch_norm_buffers(model), self._batch_norm_before):
                    buffer.copy_(before)
            # what this step's earlier micro-batches added to Trainer's running loss is taken back: the dropped step
            # adds nothing, and `log` averages over the steps that were taken
            returned = torch.zeros_like(loss) - self._window_loss
        else:
            returned = loss
        self._window_loss = self._window_loss + returned.detach()
        if self.accelerator.sync_gradients:  # the last micro-batch: the optimizer steps next
            self._log_steps += 1
            self._log_skipped += int(self._dropping_step)
            self._run_steps += 1
            self._run_skipped += int(self._dropping_step)
            self._window_batches, self._window_loss, self._dropping_step = 0, 0.0, False
            self._batch_norm_before = []
        return returned.to(loss.dtype)

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """Trainer's log, with the steps dropped for a non-finite loss or gradient left out of the loss averages:
        `loss` averages the steps taken since the last log, and `skipped_steps` counts the others (a log of
        skipped steps only has no `loss`); `train_loss` averages the steps taken in this `train()` call."""
        if "loss" in logs and self._log_steps:
            taken = self._log_steps - self._log_skipped
            if self._log_skipped:
                logs["skipped_steps"] = self._log_skipped
                if taken:
                    logs["loss"] = logs["loss"] * self._log_steps / taken
                else:
                    del logs["loss"]
            self._log_steps = self._log_skipped = 0
        if "train_loss" in logs and self._run_skipped:
            taken = self._run_steps - self._run_skipped
            logs["train_loss"] = logs["train_loss"] * self._run_steps / taken if taken else float("nan")
            logs["train_skipped_steps"] = self._run_skipped
        super().log(logs, start_time)

    def _reset_step_guard(self) -> None:
        self._window_batches, self._window_loss, self._dropping_step = 0, 0.0, False
        self._batch_norm_before: list[torch.Tensor] = []
        self._log_steps = self._log_skipped = self._run_steps = self._run_skipped = 0

    def _count_nonfinite(self, what: str, outcome: str) -> None:
        self.run_totals.nonfinite_steps += 1
        logger.warning(
            f"Non-finite {what} in step {self.state.global_step + 1}: {outcome}, and the step is skipped (left out of "
            f"the loss average, BatchNorm statistics restored; {self.nonfinite_steps} so far)."
        )


def _batch_norm_buffers(model: torch.nn.Module) -> list[torch.Tensor]:
    """The running statistics of every BatchNorm of `model` (what a training-mode forward changes)."""
    return [
        buffer
        for module in model.modules()
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm)
        for buffer in (module.running_mean, module.running_var, module.num_batches_tracked)
        if buffer is not None
    ]


def _read_json(path: str) -> dict:
    if not os.path.isfile(path):
        return {}
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


_WEIGHT_FILES = ("model.safetensors", "adapter_model.safetensors", "pytorch_model.bin", "adapter_model.bin")
_WEIGHT_INDEXES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")


def _file_problem(path: str) -> str | None:
    """Why the file at `path` cannot be a whole saved file (missing, empty, cut short), or None. Reads only headers:
    a safetensors file is exactly its header plus its tensors' bytes, and `torch.save` writes a zip archive whose
    directory is at its end (both lost when a write is killed)."""
    name = os.path.basename(path)
    if not os.path.isfile(path):
        return f"no {name}"
    size = os.path.getsize(path)
    if size == 0:
        return f"{name} is empty"
    if name.endswith(".safetensors"):
        try:
            with open(path, "rb") as handle:
                header_size = int.from_bytes(handle.read(8), "little")
                if 8 + header_size > size:
                    raise ValueError
                header = json.loads(handle.read(header_size))
            end = max((entry["data_offsets"][1] for key, entry in header.items() if key != "__metadata__"), default=0)
        except (ValueError, KeyError, TypeError, IndexError, UnicodeDecodeError):
            return f"{name} is damaged (unreadable header)"
        if size != 8 + header_size + end:
            return f"{name} is cut short ({size} of {8 + header_size + end} bytes)"
    elif name.endswith((".pt", ".pth", ".bin")) and not zipfile.is_zipfile(path):
        return f"{name} is cut short or damaged (not a whole torch.save archive)"
    elif name.endswith(".json"):
        try:
            with open(path, encoding="utf-8") as handle:
                json.load(handle)
        except (ValueError, UnicodeDecodeError):
            return f"{name} is cut short or damaged"
    return None


def checkpoint_problem(checkpoint: str, require_optimizer_state: bool = True) -> str | None:
    """Why `checkpoint` cannot be resumed from, or None if it is complete: `trainer_state.json` with the step, the
    model weights (or a PEFT adapter's), and, unless the run saves the model only (`save_only_model`), the
    optimizer's and scheduler's state, each present and whole-looking (see `_file_problem`). Trainer writes a
    checkpoint in place, `trainer_state.json` last, so a run killed while saving leaves one that fails this."""
    problem = _file_problem(os.path.join(checkpoint, TRAINER_STATE_NAME))
    if problem is None and "global_step" not in _read_json(os.path.join(checkpoint, TRAINER_STATE_NAME)):
        problem = f"{TRAINER_STATE_NAME} has no global_step"
    if problem is not None:
        return problem
    weights = [name for name in _WEIGHT_FILES if os.path.isfile(os.path.join(checkpoint, name))]
    indexes = [name for name in _WEIGHT_INDEXES if os.path.isfile(os.path.join(checkpoint, name))]
    files = [os.path.join(checkpoint, name) for name in weights]
    for index in indexes:  # sharded weights: the index and every shard it names
        problem = _file_problem(os.path.join(checkpoint, index))
        if problem is not None:
            return problem
        shards = set(_read_json(os.path.join(checkpoint, index)).get("weight_map", {}).values())
        files += [os.path.join(checkpoint, shard) for shard in sorted(shards)]
    if not files:
        return "no model weights (" + " / ".join(_WEIGHT_FILES) + ")"
    if require_optimizer_state:
        optimizer = next(
            (name for name in ("optimizer.pt", "optimizer.bin") if os.path.exists(os.path.join(checkpoint, name))),
            "optimizer.pt",
        )
        files += [os.path.join(checkpoint, optimizer), os.path.join(checkpoint, "scheduler.pt")]
    # written only in some runs (per rank, under fp16), but read back when present
    files += sorted(
        os.path.join(checkpoint, name)
        for name in os.listdir(checkpoint)
        if name == "scaler.pt" or (name.startswith("rng_state") and name.endswith(".pth"))
    )
    for path in files:
        problem = _file_problem(path)
        if problem is not None:
            return problem
    return None


def last_complete_checkpoint(output_dir: str, require_optimizer_state: bool = True) -> str | None:
    """The newest `checkpoint-N` of `output_dir` that is complete (`checkpoint_problem`), or None. Newer incomplete
    ones (a run killed while it saved) are passed over with a warning naming them and what they lack."""
    if not os.path.isdir(output_dir):
        return None
    numbered = []
    for name in os.listdir(output_dir):
        match = _CHECKPOINT_NAME.fullmatch(name)
        if match and os.path.isdir(os.path.join(output_dir, name)):
            numbered.append((int(match.group(1)), os.path.join(output_dir, name)))
    for _, checkpoint in sorted(numbered, reverse=True):
        problem = checkpoint_problem(checkpoint, require_optimizer_state)
        if problem is None:
            return checkpoint
        logger.warning(
            f"Passing over the incomplete checkpoint {checkpoint} ({problem}; a run killed while saving leaves "
            "such a folder): resuming from an earlier one. Delete it once this run has saved past it."
        )
    return None


def resolve_resume_checkpoint(
    value: str | bool | None, output_dir: str, auto_resume: bool = False, require_optimizer_state: bool = True
) -> str | None:
    """What `--resume_from_checkpoint` means for our scripts: a path; "True" (or True) for the last complete
    checkpoint in `output_dir` (`last_complete_checkpoint`: one a kill left half-written is passed over, with a
    warning); "False" to start afresh. Unset, with `auto_resume`, a run whose `output_dir` holds checkpoints
    continues from the last complete one (a killed run restarted with the same command). A missing or incomplete
    checkpoint path is an error. `require_optimizer_state=False` for runs that save the model only."""
    if isinstance(value, str) and value.lower() in ("true", "false"):
        value = value.lower() == "true"
    if value is False:
        return None
    if value is None:
        if not auto_resume or not os.path.isdir(output_dir):
            return None
        checkpoint = last_complete_checkpoint(output_dir, require_optimizer_state)
        if checkpoint is not None:
            logger.warning(f"Resuming from {checkpoint} (pass --overwrite_output_dir True to start afresh).")
        elif get_last_checkpoint(output_dir) is not None:
            logger.warning(f"{output_dir} holds no complete checkpoint: starting afresh.")
        return checkpoint
    if value is True:
        checkpoint = last_complete_checkpoint(output_dir, require_optimizer_state)
        if checkpoint is None:
            raise ValueError(
                f"--resume_from_checkpoint True: {output_dir} holds no complete checkpoint-N folder to resume from. "
                "Pass a checkpoint path, or drop the flag to start afresh."
            )
        return checkpoint
    if not os.path.isdir(value):
        raise ValueError(f"--resume_from_checkpoint {value}: no such checkpoint folder.")
    problem = checkpoint_problem(value, require_optimizer_state)
    if problem is not None:
        raise ValueError(
            f"--resume_from_checkpoint {value}: the checkpoint is incomplete ({problem}); a run killed while saving "
            "leaves such a folder. Pass an earlier checkpoint, or True for the last complete one."
        )
    return value


def train_and_report(trainer: OCRTrainer, checkpoint: str | None = None) -> dict:
    """`trainer.train()` from `checkpoint` (or afresh), then log and save (`train_results.json`) its metrics with the
    whole run's `train_minutes` and `nonfinite_steps`, resumes added up (`train_runtime` covers this part only), and
    `resumed_from_step` where it resumed. Returns the metrics."""
    train_result = trainer.train(resume_from_checkpoint=checkpoint)
    metrics = dict(
        train_result.metrics, train_minutes=trainer.train_seconds / 60, nonfinite_steps=trainer.nonfinite_steps
    )
    if trainer.resumed_from_step is not None:
        metrics["resumed_from_step"] = trainer.resumed_from_step
    trainer.log_metrics("train", metrics)
    trainer.save_metrics("train", metrics)
    return metrics


def preprocess_logits_for_metrics(logits, labels) -> torch.Tensor:
    """Keep only the greedy CTC path (ids) of each eval batch instead of its full logits."""
    if isinstance(logits, tuple):
        logits = logits[0]
    return logits.argmax(dim=-1)


def make_compute_metrics(tokenizer) -> Callable[[EvalPrediction], dict[str, float]]:
    """`compute_metrics` for `Trainer`: greedy CTC decoding of the predicted ids, then the OCR metrics."""
    from .metrics import compute_ocr_metrics

    def compute_metrics(prediction: EvalPrediction) -> dict[str, float]:
        ids = prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
        labels = prediction.label_ids
        predictions = tokenizer.batch_decode(np.asarray(ids))  # -100 (padding between batches) is skipped
        references = tokenizer.batch_decode(np.asarray(labels), group_tokens=False)
        return compute_ocr_metrics(predictions, references)

    return compute_metrics


def parse_args_with_preset(parser, args: list[str]) -> tuple:
    """Parse `args` with an `HfArgumentParser`, where `args[0]` may be a JSON preset (with the presets it extends, see
    [`load_preset`]): its values become flags placed before the user's, so flags on the command line override the
    preset. Without CUDA, `--use_cpu True` is added."""
    args = list(args)
    if not torch.cuda.is_available() and "--use_cpu" not in args:
        args = (
            args[:1] + ["--use_cpu", "True"] + args[1:]
            if args[:1] and args[0].endswith(".json")
            else ["--use_cpu", "True"] + args
        )
    if args and args[0].endswith(".json"):
        preset = load_preset(args[0])
        defaults = {
            field.name: field.default_factory() if field.default_factory is not dataclasses.MISSING else field.default
            for dataclass_type in parser.dataclass_types
            for field in dataclasses.fields(dataclass_type)
        }
        preset_flags = []
        for key, value in preset.items():
            if value is None:  # JSON null: the field's default, where that is None (a flag cannot carry None)
                if key in defaults and defaults[key] is not None:
                    default = "none (it is required)" if defaults[key] is dataclasses.MISSING else repr(defaults[key])
                    raise ValueError(
                        f"{args[0]}: {key!r} is null, but its default is {default}, not None: give a value, or "
                        "leave the key out for the default."
                    )
                continue
            if isinstance(value, bool):
                preset_flags += [f"--{key}", str(value)]
            elif isinstance(value, dict):
                preset_flags += [f"--{key}", json.dumps(value)]
            elif isinstance(value, list):
                preset_flags += [f"--{key}", *map(str, value)]
            else:
                preset_flags += [f"--{key}", str(value)]
        return parser.parse_args_into_dataclasses(args=preset_flags + args[1:])
    return parser.parse_args_into_dataclasses(args=args)


def parse_config_overrides(text: str | None) -> dict:
    """`"hidden_size=192,sequence_model=bilstm"` → `{"hidden_size": 192, "sequence_model": "bilstm"}` (JSON values
    where they parse, strings otherwise). Commas inside a JSON list, object or string do not split:
    `'backbone_kwargs={"channels":[64,128,256,256]}'` is one item."""
    items, current, depth, quoted = [], [], 0, False
    for index, char in enumerate(text or ""):
        if char == '"' and (index == 0 or text[index - 1] != "\\"):
            quoted = not quoted
        elif not quoted and char in "[{":
            depth += 1
        elif not quoted and char in "]}":
            depth -= 1
        if char == "," and depth == 0 and not quoted:
            items.append("".join(current))
            current = []
        else:
            current.append(char)
    items.append("".join(current))
    overrides = {}
    for item in items:
        if not item.strip():
            continue
        key, equals, value = item.partition("=")
        if not equals or not key.strip():
            raise ValueError(
                f"Config override {item.strip()!r} is not `key=value`: write e.g. 'hidden_size=192,sequence_model=bilstm'."
            )
        try:
            overrides[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            overrides[key.strip()] = value.strip()
    return overrides


def parameter_table(model) -> str:
    """A plain-text table of trainable / total parameters per module group of a `MambaOCRForCTC`."""
    groups = model.parameter_groups()
    rows = [("group", "trainable", "total")]
    for name, (trainable, total) in groups.items():
        rows.append((name, f"{trainable:,}", f"{total:,}"))
    trainable = sum(t for t, _ in groups.values())
    total = sum(n for _, n in groups.values())
    rows.append(("all", f"{trainable:,}", f"{total:,} ({100 * trainable / max(total, 1):.1f}% trainable)"))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    return "\n".join(f"{a:<{widths[0]}}  {b:>{widths[1]}}  {c:>{widths[2]}}" for a, b, c in rows)


__all__ = [
    "OCRTrainer",
    "RunTotalsCallback",
    "build_model_and_processor",
    "checkpoint_problem",
    "cpu_supports_bf16",
    "last_complete_checkpoint",
    "make_compute_metrics",
    "parameter_table",
    "parse_args_with_preset",
    "parse_config_overrides",
    "preprocess_logits_for_metrics",
    "resolve_resume_checkpoint",
    "train_and_report",
]
