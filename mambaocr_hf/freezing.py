# Copyright 2026 The MambaOCR authors. Licensed under the Apache License, Version 2.0.
"""What trains: the freezing methods of `MambaOCRForCTC` (`freeze_backbone`, `apply_freeze_strategy`,
`parameter_groups`), and the `train()` that keeps frozen BatchNorms in eval mode.

A mixin rather than functions of `training.py`: the methods are the model's public API (the training scripts call
them on a loaded checkpoint), so they travel with the model's code, which imports no training code.
"""

from __future__ import annotations

from torch import nn

from .configuration_mambaocr import FREEZE_STRATEGIES

RESNET_STAGES = ("layer1", "layer2", "layer3", "layer4")


class MambaOCRFreezingMixin:
    """Freezing for a model with `backbone` (`body`: the timm ResNet, `adapters`), `projection`, `encoder` and
    `classifier`, as [`MambaOCRForCTC`] has."""

    def freeze_backbone(self, trainable_stages: tuple[str, ...] = ("layer4",), train_adapters: bool = True) -> None:
        """Freeze the ResNet except the named stages (and, by default, the adapters).

        The projection, encoder and classifier are left as they are. Frozen BatchNorms stay in eval mode while the
        model trains, so their running statistics are not changed either.
        """
        unknown = set(trainable_stages) - set(RESNET_STAGES)
        if unknown:
            raise ValueError(f"Unknown ResNet stages {sorted(unknown)}; choose from layer1..layer4.")
        for name, param in self.backbone.body.named_parameters():
            param.requires_grad = name.split(".")[0] in trainable_stages
        for param in self.backbone.adapters.parameters():
            param.requires_grad = train_adapters
        self.train(self.training)

    def apply_freeze_strategy(self, strategy: str) -> None:
        """Set what trains by name.

        * `adapters_layer4` (the design's fine-tuning strategy): adapters, `layer4`, projection, encoder and
          classifier train; the rest of the ResNet is frozen.
        * `adapters`: as above but `layer4` frozen too.
        * `frozen_backbone`: the whole backbone (adapters included) frozen.
        * `head_only`: only the classifier trains.
        * `full`: everything trains.
        """
        if strategy not in FREEZE_STRATEGIES:
            raise ValueError(f"Unknown freeze strategy {strategy!r}; choose one of {list(FREEZE_STRATEGIES)}.")
        for param in self.parameters():
            param.requires_grad = strategy != "head_only"
        if strategy == "adapters_layer4":
            self.freeze_backbone(("layer4",), train_adapters=True)
        elif strategy == "adapters":
            self.freeze_backbone((), train_adapters=True)
        elif strategy == "frozen_backbone":
            self.freeze_backbone((), train_adapters=False)
        elif strategy == "head_only":
            for param in self.classifier.parameters():
                param.requires_grad = True
        self.train(self.training)

    def parameter_groups(self) -> dict[str, tuple[int, int]]:
        """`{group: (trainable, total)}` parameter counts per module group, for a trainable-parameter table."""
        groups = {
            "backbone.stem": [p for n, p in self.backbone.body.named_parameters() if not n.startswith("layer")],
            **{f"backbone.{stage}": list(getattr(self.backbone.body, stage).parameters()) for stage in RESNET_STAGES},
            "backbone.adapters": list(self.backbone.adapters.parameters()),
            "projection": list(self.projection.parameters()),
            "encoder": list(self.encoder.parameters()),
            "classifier": list(self.classifier.parameters()),
        }
        return {
            name: (sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params))
            for name, params in groups.items()
        }

    def train(self, mode: bool = True):
        """`nn.Module.train`, except that the ResNet's BatchNorms whose parameters are all frozen stay in eval mode."""
        super().train(mode)
        if mode:
            for module in self.backbone.body.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm) and not any(
                    p.requires_grad for p in module.parameters()
                ):
                    module.eval()
        return self


__all__ = ["MambaOCRFreezingMixin"]
