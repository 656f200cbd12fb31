"""A timm image classifier: `timm:NAME` (an architecture, optionally `NAME.TAG`) with a local weights file.

edgekiln never downloads: the weights come from `--weights FILE` (a state dict in .safetensors, or in
.pth/.pt read with `torch.load(weights_only=True)`, bare or under "state_dict"/"model"/"state_dict_ema").
The model is `timm.create_model(NAME, pretrained=False, num_classes=<the weights' head>)`, loaded
strictly; its `pretrained_cfg` (through `timm.data.resolve_data_config`) becomes the artifact's
`ImagePreprocessSpec`, reproducing `timm.data.create_transform`'s eval pipeline exactly, or is refused.
"""

from __future__ import annotations

import difflib
import math
import re
from functools import partial
from pathlib import Path
from typing import Any

from edgekiln.runtime.hashing import sha256_file, sha256_json
from edgekiln.runtime.images.spec import ImagePreprocessSpec, Interpolation, ResizeMode
from edgekiln.runtime.manifest import Task

from ..errors import CompileError
from .base import ModelSource, SourceKind
from .hf_image import image_note, image_torch_spec, synthetic_images

INPUT = "pixel_values"
WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")
NESTED_KEYS = ("state_dict", "model", "state_dict_ema")  # where timm and torch checkpoints keep the weights
CROP_MODES = ("center", "squash")  # what timm's eval transform does that the spec reproduces exactly
INSTALL_HINT = (
    "pip install timm beside a torchvision built for your torch; with PyPI's CUDA builds, which run on "
    "CPUs too: pip install torch==2.14.1 torchvision==0.29.1 timm"
)


def build_named(name: str, weights: str | Path):
    """(the module of `timm:NAME` with its weights loaded, the weights path, the timm package); the
    request already checked (check_named)."""
    timm = import_timm()
    path = Path(weights).expanduser()  # type: ignore[arg-type]
    return _build(timm, name, read_state_dict(path), path), path, timm


def timm_source(
    timm,
    module,
    name: str,
    weights: Path,
    labels: tuple[str, ...] | None,
    *,
    description: str,
    config: str | None = None,
) -> ModelSource:
    """The ModelSource of a loaded timm classifier: its pretrained_cfg's preprocessing, and `labels`
    (else the cfg's label names, else ImageNet's for an ImageNet-sized head); `config`, the hash of a
    timm folder's config.json."""
    spec = image_spec(timm, module, name)
    num_classes = int(module.num_classes)
    labels = _labels(timm, module, num_classes, labels)
    settings = {"name": name, "timm": timm.__version__, "image": spec.model_dump(mode="json"), "labels": labels}
    return ModelSource(
        kind=SourceKind.TORCH_MODULE,
        description=description,
        content_hash=sha256_json(
            {"weights": sha256_file(weights), "settings": settings, **({"config": config} if config else {})}
        ),
        task=Task.IMAGE_CLASSIFICATION,
        labels=labels,
        make_feeds=partial(synthetic_images, spec),
        torch=image_torch_spec(spec, lambda: module.eval()),
        image=spec,
        notes=(image_note(spec, "images (timm pretrained_cfg)"),),
    )


def check_named(model: str, name: str, weights) -> None:
    if not name:
        raise CompileError(f"{model!r} names no timm model", hint="write timm:NAME, e.g. timm:resnet18")
    if weights is None:
        raise CompileError(
            f"{model} needs its weights file: edgekiln never downloads pretrained weights",
            hint="pass --weights FILE (.safetensors or .pth), e.g. from torch.save(model.state_dict(), FILE) "
            "or timm's model.safetensors, fetched on a connected machine",
        )


def check_task_and_image(task: Task | None, image) -> None:
    if task not in (None, Task.IMAGE_CLASSIFICATION):
        raise CompileError(
            f"a timm model compiles as an image classifier, but the task is {task.value}",
            hint="drop --task, or set it to image-classification",
        )
    if image is not None:
        raise CompileError(
            "a timm model brings its own image preprocessing (its pretrained_cfg)",
            hint="drop source.image from the recipe; pick the preprocessing with a tag, e.g. timm:resnet18.a1_in1k",
        )


def import_timm():
    try:
        import timm
        import timm.data
    except ModuleNotFoundError as exc:
        if exc.name not in ("timm", "torchvision"):
            raise
        raise CompileError(
            f"timm models (timm:NAME, timm folders) need timm, and {exc.name} is not installed", hint=INSTALL_HINT
        ) from None
    except Exception as exc:  # a torchvision built for another torch fails at import with RuntimeError
        raise CompileError(
            f"timm is installed but does not import beside this torch: {first_line(exc)}",
            hint=INSTALL_HINT,
        ) from None
    return timm


# --- the weights ---------------------------------------------------------------------------------


def read_state_dict(path: Path) -> dict[str, Any]:
    """The file's tensors by name: a .safetensors file, or a torch state dict loaded without pickle."""
    if not path.is_file():
        raise CompileError(f"weights file {path} does not exist", hint="pass --weights FILE (.safetensors or .pth)")
    suffix = path.suffix.lower()
    if suffix not in WEIGHT_SUFFIXES:
        raise CompileError(
            f"cannot tell the format of weights file {path.name}", hint=f"use one of {', '.join(WEIGHT_SUFFIXES)}"
        )
    loaded = _read_safetensors(path) if suffix == ".safetensors" else _read_torch(path)
    return _state_of(loaded, path)


def _read_safetensors(path: Path) -> Any:
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except Exception as exc:  # safetensors raises its own SafetensorError and OSError
        raise CompileError(
            f"cannot read {path} as safetensors: {first_line(exc)}", hint="pass a complete .safetensors file"
        ) from None


def _read_torch(path: Path) -> Any:
    import pickle

    import torch

    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"GLOBAL (\S+)", str(exc))
        raise CompileError(
            f"{path} needs pickle to load{f' (it holds {found.group(1)})' if found else ''}; edgekiln only reads tensors "
            "(torch.load with weights_only=True)",
            hint="on a machine you trust, re-save its weights alone: "
            "torch.save(checkpoint['state_dict'], FILE), or as .safetensors",
        ) from None
    except Exception as exc:  # a truncated or foreign file: RuntimeError, EOFError, ...
        raise CompileError(
            f"cannot read weights file {path}: {first_line(exc)}",
            hint="pass a state dict saved with torch.save(model.state_dict(), FILE)",
        ) from None


def _state_of(loaded: Any, path: Path) -> dict[str, Any]:
    import torch

    if isinstance(loaded, dict):
        for key in NESTED_KEYS:
            if isinstance(loaded.get(key), dict):
                loaded = loaded[key]
                break
    if not isinstance(loaded, dict) or not loaded or not all(isinstance(v, torch.Tensor) for v in loaded.values()):
        kind = f"a dict with keys {sorted(map(str, loaded))[:5]}" if isinstance(loaded, dict) else type(loaded).__name__
        raise CompileError(
            f"{path} is not a state dict of tensors (found {kind})",
            hint=f"save model.state_dict(), bare or under one of {', '.join(NESTED_KEYS)}",
        )
    if all(key.startswith("module.") for key in loaded):  # saved from DataParallel / DDP
        loaded = {key[len("module.") :]: value for key, value in loaded.items()}
    return loaded


# --- the model -----------------------------------------------------------------------------------


def _build(timm, name: str, state: dict[str, Any], path: Path):
    arch, _, tag = name.partition(".")
    if not timm.is_model(arch):
        close = difflib.get_close_matches(arch, timm.list_models(), n=4, cutoff=0.6)
        raise CompileError(
            f"timm has no model {arch!r}",
            hint=f"did you mean {', '.join(close)}?" if close else "see timm.list_models() for the names",
        )
    if tag and name not in timm.list_pretrained(f"{arch}.*"):
        tags = [known.partition(".")[2] for known in timm.list_pretrained(f"{arch}.*")][:6]
        raise CompileError(
            f"timm model {arch} has no pretrained tag {tag!r}",
            hint=f"use one of {', '.join(tags)}, or drop the tag" if tags else "drop the tag",
        )
    module = timm.create_model(name, pretrained=False, num_classes=_num_classes(timm, name, state))
    return load_weights(module, state, name, path)


def load_weights(module, state: dict[str, Any], name: str, path: Path):
    """`module` with the state dict read from `path` loaded strictly, in eval mode, checked to be a
    classifier returning one [batch, classes] logits tensor."""
    import torch

    check_fit(module.state_dict(), state, name, path)
    module.load_state_dict(state, strict=True)
    module.eval()
    if int(getattr(module, "num_classes", 0) or 0) < 1:
        raise CompileError(f"timm:{name} with these weights has no classifier head", hint="pass a classifier's weights")
    with torch.inference_mode():
        height, width = module.pretrained_cfg.get("input_size", (3, 224, 224))[1:]
        out = module(torch.zeros(1, 3, height, width))
    if not isinstance(out, torch.Tensor) or out.ndim != 2:
        raise CompileError(f"timm:{name} does not return one logits tensor [batch, classes]")
    return module


def _num_classes(timm, name: str, state: dict[str, Any]) -> int | None:
    """The weights' class count, from the head that timm's pretrained_cfg names (None: timm's default)."""
    try:
        head = timm.models.get_pretrained_cfg_value(name, "classifier")
    except RuntimeError:  # an architecture registered without a pretrained cfg
        return None
    head = head[0] if isinstance(head, (tuple, list)) else head
    weight = state.get(f"{head}.weight") if head else None
    return int(weight.shape[0]) if weight is not None else None


def check_fit(expected: dict[str, Any], state: dict[str, Any], name: str, path: Path) -> None:
    # BatchNorm's step counter: torch's strict load accepts weights saved without it (converted checkpoints)
    missing = [key for key in expected if key not in state and not key.endswith("num_batches_tracked")]
    unexpected = [key for key in state if key not in expected]
    shapes = [
        f"{key} {list(state[key].shape)} vs {list(expected[key].shape)}"
        for key in expected
        if key in state and tuple(state[key].shape) != tuple(expected[key].shape)
    ]
    problems = [
        f"{len(found)} {what} ({', '.join(found[:3])}{', ...' if len(found) > 3 else ''})"
        for what, found in (("missing", missing), ("unexpected", unexpected), ("of another shape", shapes))
        if found
    ]
    if problems:
        raise CompileError(
            f"{path.name} does not fit timm:{name}: keys {'; '.join(problems)}",
            hint=f"pass the weights of {name} (a state dict of timm.create_model({name.split('.')[0]!r}))",
        )


# --- preprocessing and labels --------------------------------------------------------------------


def image_spec(timm, module, name: str) -> ImagePreprocessSpec:
    """timm's eval transform for the model (resolve_data_config -> create_transform) as a spec, or refused."""
    config = timm.data.resolve_data_config(model=module)
    channels, height, width = config["input_size"]
    crop_mode = config.get("crop_mode") or "center"
    interpolation = config.get("interpolation", "bilinear")
    crop_pct = config.get("crop_pct") or timm.data.DEFAULT_CROP_PCT
    pillow = [mode.value for mode in Interpolation]
    refused = [
        (crop_mode not in CROP_MODES, f"crop_mode {crop_mode!r} (supported: {', '.join(CROP_MODES)})"),
        (interpolation not in pillow, f"interpolation {interpolation!r} (supported: {', '.join(pillow)})"),
        (crop_mode == "center" and height != width, f"a non-square {height}x{width} input with crop_mode center"),
        (channels != 3, f"{channels} input channels (supported: 3)"),
    ]
    why = next((what for bad, what in refused if bad), None)
    if why is not None:
        raise CompileError(
            f"timm:{name}'s preprocessing has {why}, which edgekiln's image pipeline does not reproduce exactly",
            hint="pick a pretrained tag whose pretrained_cfg uses a center or squash crop and a Pillow filter",
        )
    scaled = (math.floor(height / crop_pct), math.floor(width / crop_pct))
    return ImagePreprocessSpec(
        input=INPUT,
        resize=ResizeMode.SHORTEST_EDGE if crop_mode == "center" else ResizeMode.EXACT,
        size=scaled[:1] if crop_mode == "center" else scaled,
        interpolation=Interpolation(interpolation),
        crop=(height, width),
        crop_offset="round",
        rescale=1 / 255,
        mean=tuple(float(v) for v in config["mean"]),
        std=tuple(float(v) for v in config["std"]),
    )


def _labels(timm, module, classes: int, given: tuple[str, ...] | None) -> tuple[str, ...] | None:
    """The given labels, else the pretrained_cfg's, else ImageNet's for an ImageNet-sized head, else None."""
    if given is not None:
        if len(given) != classes:
            raise CompileError(
                f"{len(given)} labels given for the {classes} classes of these weights",
                hint="give one label per class, in output order",
            )
        return tuple(given)
    names, descriptions = module.pretrained_cfg.get("label_names"), module.pretrained_cfg.get("label_descriptions")
    if names is not None and len(names) == classes:
        return _unique([str((descriptions or {}).get(label, label)) for label in names], list(names))
    subset = timm.data.infer_imagenet_subset(module)
    if subset is None:
        return None
    info = timm.data.ImageNetInfo(subset)
    synsets = info.label_names()
    return _unique(list(info.label_descriptions()), synsets)


def _unique(names: list[str], tags: list[str] | None = None) -> tuple[str, ...] | None:
    """Names made distinct (ImageNet-1k has two 'crane's): a repeated one gains its synset or index."""
    if not names:
        return None
    counts: dict[str, int] = {}
    for label in names:
        counts[label] = counts.get(label, 0) + 1
    return tuple(f"{label} ({tags[i] if tags else i})" if counts[label] > 1 else label for i, label in enumerate(names))


def read_labels(path: Path) -> tuple[str, ...]:
    """Class names from a file: one a line (blank lines ignored), or a JSON list of names."""
    import json

    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CompileError(f"cannot read labels file {path}: {getattr(exc, 'strerror', None) or exc}") from None
    if Path(path).suffix.lower() == ".json":
        try:
            names = json.loads(text)
        except json.JSONDecodeError as exc:
            raise CompileError(f"labels file {path} is not valid JSON: {exc}") from None
        if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
            raise CompileError(f"labels file {path} must hold a JSON list of names", hint='e.g. ["cat", "dog"]')
    else:
        names = [line.strip() for line in text.splitlines() if line.strip()]
    if not names:
        raise CompileError(f"labels file {path} holds no names", hint="write one class name a line, in output order")
    return tuple(names)


def first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
