#!/usr/bin/env python3
"""Build what `benchmarks/gpu_check.py` runs on a GPU machine: TVM CUDA artifacts (compiled here,
with nvcc, for the `nvidia-cuda` profile) and the outputs each must reproduce, computed here on the
CPU.

    python benchmarks/gpu_prepare.py --out .gpu

- `text`: a BERT-shaped sequence classifier (4 layers, hidden 256, random weights, a small
  WordPiece vocabulary so that the artifact stays small enough to carry), buckets 1x32 and 1x128.
  Expected: ONNX Runtime's CPU artifact of the same model on the same token ids.
- `image`: EfficientNet-Lite0 with its ImageNet weights (`edgekiln[image-model]`), the
  preprocessing declared as in benchmarks/images_real.py. Expected: PyTorch's logits on the
  scikit-image photos, preprocessed by the artifact's own encoder; the feeds of the first few are
  carried too, so that the kernels are compared on identical inputs.
- `vit`: a Hugging Face ViT image-classification folder (224x224, patch 16, ViT-Base's 12 layers
  but hidden 64 and 2 heads, so that all three fit in the 64 MiB carried; random weights, 10 labels) compiled from the folder itself, its
  preprocessing read from `preprocessor_config.json`. Expected: PyTorch's logits on the feeds the
  artifact's encoder makes of the first scikit-image photos.

- `families`: the 13 Hugging Face image-classification families of tests/test_image_families.py
  (narrow random weights, the transformer families at 12 layers). Expected: PyTorch's logits on the
  feeds each artifact's encoder makes of two photos.

`--out` gets only what travels (the CUDA artifacts and their expected outputs); the source models
and the CPU artifacts go to `--work`. Beside each artifact folder NAME: `NAME.expected.npz` (feeds and outputs; no pickle) and
`NAME.meta.json` (what gpu_check.py needs to rebuild the PyTorch twin on the GPU for a side-by-side
timing).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

from images_real import LABELS, SPEC, efficientnet_lite0, photos  # noqa: E402

from edgekiln.compiler import Recipe, compile  # noqa: E402
from edgekiln.runtime import load  # noqa: E402

WORDS = [
    "the",
    "a",
    "movie",
    "film",
    "was",
    "is",
    "not",
    "very",
    "good",
    "bad",
    "great",
    "boring",
    "fun",
    "and",
    "but",
    "it",
    "of",
    "to",
]
SENTENCES = [
    "the movie was very good",
    "it was not fun and the film is boring but great",
    "a great movie",
    " ".join(WORDS * 6),  # long enough for the 128 bucket
]
EXACT_PHOTOS = 6  # 600 kB of float feeds each: the carried folder must stay under 64 MiB
VIT_PHOTOS = 3
TEXT_CONFIG = {"hidden_size": 256, "num_hidden_layers": 4, "num_attention_heads": 4, "intermediate_size": 1024}


def _vocab() -> list[str]:
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    return ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS, *letters, *(f"##{c}" for c in letters)]


def text_model(folder: Path) -> Path:
    import torch
    import transformers

    torch.manual_seed(0)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(_vocab()) + "\n")
    transformers.BertTokenizerFast(str(folder / "vocab.txt"), do_lower_case=True).save_pretrained(str(folder))
    config = transformers.BertConfig(
        vocab_size=len(_vocab()),
        max_position_embeddings=512,
        id2label={0: "negative", 1: "positive"},
        label2id={"negative": 0, "positive": 1},
        **TEXT_CONFIG,
    )
    transformers.BertForSequenceClassification(config).eval().save_pretrained(str(folder))
    return folder


def prepare_text(out: Path, work: Path) -> None:
    model = text_model(work / "text-model")
    recipe = Recipe.from_flags(backend="tvm", sequence_buckets=(32, 128))
    compile(model, "nvidia-cuda", out / "text-tvm-cuda", recipe, force=True)
    cpu = compile(model, "host", work / "text-ort-cpu", Recipe.from_flags(backend="onnxruntime"), force=True).path
    session = load(cpu)
    arrays: dict[str, np.ndarray] = {}
    for number, sentence in enumerate(SENTENCES):
        feeds, _ = session.encoder.encode([sentence])
        arrays |= {f"{number}.in.{name}": value for name, value in feeds.items()}
        arrays |= {f"{number}.out.{name}": value for name, value in session.run(feeds).items()}
    np.savez(out / "text-tvm-cuda.expected.npz", **arrays)
    meta = {"kind": "text", "config": json.loads((model / "config.json").read_text()), "samples": len(SENTENCES)}
    (out / "text-tvm-cuda.meta.json").write_text(json.dumps(meta, indent=2))


def prepare_image(out: Path, work: Path) -> None:
    import torch

    model = efficientnet_lite0()
    recipe = Recipe.from_flags(backend="tvm", image=SPEC, labels=LABELS)
    compile(model, "nvidia-cuda", out / "image-tvm-cuda", recipe, force=True)
    ort = Recipe.from_flags(backend="onnxruntime", image=SPEC, labels=LABELS)
    cpu = compile(model, "host", work / "image-ort-cpu", ort, force=True)
    feeds, _ = load(cpu.path).encoder.encode(photos())
    with torch.inference_mode():
        logits = model(torch.from_numpy(feeds["images"])).numpy()
    exact = EXACT_PHOTOS  # feeds carried for these; the device preprocesses all the photos itself
    np.savez(out / "image-tvm-cuda.expected.npz", images=feeds["images"][:exact], logits=logits[:exact], all=logits)
    names = [path.name for path in photos()]
    meta = {"kind": "image", "timm": "efficientnet_lite0", "photos": names}
    (out / "image-tvm-cuda.meta.json").write_text(json.dumps(meta, indent=2))


VIT_CONFIG = {
    "image_size": 224,
    "patch_size": 16,
    "hidden_size": 64,
    "num_hidden_layers": 12,
    "num_attention_heads": 2,
    "intermediate_size": 256,
}


def vit_model(folder: Path) -> Path:
    import torch
    import transformers

    torch.manual_seed(0)
    labels = {number: f"class-{number}" for number in range(10)}
    config = transformers.ViTConfig(id2label=labels, label2id={v: k for k, v in labels.items()}, **VIT_CONFIG)
    transformers.ViTForImageClassification(config).eval().save_pretrained(str(folder))
    transformers.ViTImageProcessor(size={"height": 224, "width": 224}).save_pretrained(str(folder))
    return folder


def prepare_vit(out: Path, work: Path) -> None:
    import torch
    import transformers

    folder = vit_model(work / "vit-model")
    compile(folder, "nvidia-cuda", out / "vit-tvm-cuda", Recipe.from_flags(backend="tvm"), force=True)
    cpu = compile(folder, "host", work / "vit-ort-cpu", Recipe.from_flags(backend="onnxruntime"), force=True)
    feeds, _ = load(cpu.path).encoder.encode(photos()[:VIT_PHOTOS])
    (name,) = feeds  # the input's name as the folder's exporter gave it
    model = transformers.ViTForImageClassification.from_pretrained(str(folder)).eval()
    with torch.inference_mode():
        logits = model(pixel_values=torch.from_numpy(feeds[name])).logits.numpy()
    np.savez(out / "vit-tvm-cuda.expected.npz", images=feeds[name], logits=logits)
    meta = {"kind": "vit", "input": name, "config": json.loads((folder / "config.json").read_text())}
    (out / "vit-tvm-cuda.meta.json").write_text(json.dumps(meta, indent=2))


def prepare_families(out: Path, work: Path) -> None:
    import torch

    sys.path.insert(0, str(Path(__file__).parent.parent))  # the repository root: the tests' catalogue
    from tests.test_image_families import FAMILIES, PHOTOS, _folder

    arrays: dict[str, np.ndarray] = {}
    for family in FAMILIES:
        folder, _ = _folder(work / "families", family)
        compile(folder, "nvidia-cuda", out / "families" / family, Recipe.from_flags(backend="tvm"), force=True)
        session = load(compile(folder, "host", work / f"{family}-ort", Recipe.from_flags(backend="onnxruntime")).path)
        feeds, _ = session.encoder.encode([path for path in photos() if path.name in PHOTOS])
        model = transformers_model(folder)
        with torch.inference_mode():
            arrays[f"{family}.images"] = feeds["pixel_values"]
            arrays[f"{family}.logits"] = model(pixel_values=torch.from_numpy(feeds["pixel_values"])).logits.numpy()
    np.savez(out / "families.expected.npz", **arrays)
    (out / "families.meta.json").write_text(json.dumps({"families": list(FAMILIES)}, indent=2))


def transformers_model(folder: Path):
    import transformers

    config = transformers.AutoConfig.from_pretrained(str(folder))
    if config.model_type == "deit":  # its Auto class is the with-teacher head; the folder holds the plain one
        return transformers.DeiTForImageClassification.from_pretrained(str(folder)).eval()
    return transformers.AutoModelForImageClassification.from_pretrained(str(folder)).eval()


PARTS = {"text": prepare_text, "image": prepare_image, "vit": prepare_vit, "families": prepare_families}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(".gpu"), help="what travels to the GPU machine")
    parser.add_argument(
        "--work", type=Path, default=Path(".gpu-work"), help="the source models and CPU artifacts (stay here)"
    )
    parser.add_argument("--only", choices=tuple(PARTS))
    args = parser.parse_args()
    for part, prepare in PARTS.items():
        if args.only in (None, part):
            prepare(args.out, args.work)
    return 0


if __name__ == "__main__":
    sys.exit(main())
