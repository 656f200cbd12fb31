"""A timm classifier behind the trainer's interface (a transformers-style forward with `labels`, LoRA
targets, saving), written out as a timm folder (`timm.models.save_for_hf`: config.json with the
pretrained_cfg and label names, model.safetensors) that `edgekiln compile` takes."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import torch

from ..errors import CompileError


class TimmClassifier(torch.nn.Module):
    main_input_name = "pixel_values"

    def __init__(self, model: torch.nn.Module, labels: tuple[str, ...]) -> None:
        super().__init__()
        self.model = model
        self.labels = tuple(labels)

    def forward(self, pixel_values: torch.Tensor, labels: torch.Tensor | None = None) -> SimpleNamespace:
        logits = self.model(pixel_values)
        loss = None if labels is None else torch.nn.functional.cross_entropy(logits, labels)
        return SimpleNamespace(logits=logits, loss=loss)

    def head_names(self) -> list[str]:
        """The classifier's module names (timm's pretrained_cfg `classifier`), as named from here."""
        head = self.model.pretrained_cfg.get("classifier")
        names = [f"model.{name}" for name in ((head,) if isinstance(head, str) else head or ())]
        present = dict(self.named_modules())
        if not names or any(name not in present for name in names):
            raise CompileError(
                f"cannot find the classifier of this timm model (pretrained_cfg classifier: {head!r})",
                hint="fine-tune it in full (without --lora)",
            )
        return names

    def no_weight_decay(self) -> set[str]:
        """timm's own exclusions (position embeddings, class tokens), as named from here."""
        names = getattr(self.model, "no_weight_decay", None)
        return {f"model.{name}" for name in names()} if names else set()

    def lora_layout(self) -> tuple[list[str], list[str]]:
        """(LoRA targets: the Linear and ungrouped Conv2d layers outside the head, the head trained in full)."""
        heads = self.head_names()
        targets = [
            name
            for name, module in self.named_modules()
            if (isinstance(module, torch.nn.Linear) or (isinstance(module, torch.nn.Conv2d) and module.groups == 1))
            and not any(name == head or name.startswith(f"{head}.") for head in heads)
        ]
        return targets, heads

    def save_folder(self, folder: Path) -> None:
        from timm.models import save_for_hf

        save_for_hf(self.model, str(folder), model_config={"label_names": list(self.labels)}, safe_serialization=True)


def timm_network(module: torch.nn.Module, labels: tuple[str, ...], *, fresh_head: bool) -> TimmClassifier:
    """`module` with a head for `labels` (a new one, initialised by timm, where `fresh_head`)."""
    if fresh_head:
        module.reset_classifier(len(labels))
    return TimmClassifier(module, labels)
