"""Typed settings of a fine-tuning run."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..data import DataTask

FULL_LEARNING_RATE = 5e-5
LORA_LEARNING_RATE = 5e-4


class LoraSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    rank: int = Field(default=8, ge=1)
    alpha: int = Field(default=16, ge=1)
    dropout: float = Field(default=0.1, ge=0, lt=1)


class AugmentSettings(BaseModel):
    """Training-split image augmentation, on the decoded image before the runtime's preprocessing:
    a random crop of `crop_scale` of the area and `crop_ratio` aspect, and a horizontal flip."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    crop_scale: tuple[float, float] = Field(default=(0.08, 1.0), description="area fraction of the crop (min, max)")
    crop_ratio: tuple[float, float] = Field(default=(3 / 4, 4 / 3), description="aspect ratio w/h (min, max)")
    flip: bool = Field(default=True, description="random horizontal flip (off for digits and text in images)")

    @model_validator(mode="after")
    def _ranges(self) -> AugmentSettings:
        low, high = self.crop_scale
        if not 0 < low <= high <= 1:
            raise ValueError(f"crop_scale must satisfy 0 < min <= max <= 1, found {list(self.crop_scale)}")
        if not 0 < self.crop_ratio[0] <= self.crop_ratio[1]:
            raise ValueError(f"crop_ratio must satisfy 0 < min <= max, found {list(self.crop_ratio)}")
        return self


class FinetuneConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    task: DataTask
    epochs: int = Field(default=3, ge=1)
    learning_rate: float | None = Field(
        default=None, gt=0, description=f"default {FULL_LEARNING_RATE} (full), {LORA_LEARNING_RATE} (LoRA)"
    )
    batch_size: int = Field(default=32, ge=1)
    eval_batch_size: int = Field(default=64, ge=1)
    max_length: int = Field(default=128, ge=8)
    warmup_ratio: float = Field(default=0.1, ge=0, lt=1)
    weight_decay: float = Field(default=0.01, ge=0)
    max_grad_norm: float = Field(default=1.0, gt=0)
    seed: int = 0
    lora: LoraSettings | None = None
    max_train_examples: int | None = Field(default=None, ge=1, description="seeded subsample of the training data")
    validation_fraction: float = Field(
        default=0.1, gt=0, lt=1, description="held out of the training data when no eval data is given"
    )
    save_every: int = Field(default=200, ge=1, description="steps between resumable training-state saves")
    threads: int | None = Field(default=None, ge=1)
    augment: AugmentSettings | None = Field(default=None, description="image tasks: None trains on plain inputs")

    @property
    def effective_learning_rate(self) -> float:
        if self.learning_rate is not None:
            return self.learning_rate
        return LORA_LEARNING_RATE if self.lora is not None else FULL_LEARNING_RATE
