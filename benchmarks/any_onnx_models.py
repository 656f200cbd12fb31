"""Compile ONNX files that other projects publish on PyPI with every backend, and print one row per
(model, backend): compiled and matched ONNX Runtime (with the fidelity figures), or the one-line reason.

    pip download --no-deps rapidocr-onnxruntime==1.4.4 nudenet==3.4.2 silero-vad==6.2.3 -d wheels
    pip download --no-deps openwakeword==0.4.0 -d wheels   # the last release that ships its .onnx files
    unzip -j 'wheels/*.whl' '*.onnx' -d models     # (one unzip per wheel)
    python benchmarks/any_onnx_models.py models

Shapes are declared the way a user would after reading `edgekiln inspect MODEL.onnx`: ranges for
ONNX Runtime and OpenVINO, one fixed shape for TVM.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from edgekiln.compiler import compile
from edgekiln.compiler.input_shapes import shapes_from_flags
from edgekiln.compiler.recipe import Recipe
from edgekiln.runtime.errors import EdgekilnError

# file -> (exporter, ranges for ORT/OpenVINO, fixed shapes for TVM)
MODELS = {
    "ch_PP-OCRv4_det_infer.onnx": ("paddle2onnx", ["x:1x3x[320..960:32]x[320..960:32]"], ["x:1x3x640x640"]),
    "ch_PP-OCRv4_rec_infer.onnx": ("paddle2onnx", ["x:1x3x48x[160..640:8]"], ["x:1x3x48x320"]),
    "ch_ppocr_mobile_v2.0_cls_infer.onnx": ("paddle2onnx", ["x:[1..8]x3x48x192"], ["x:1x3x48x192"]),
    "320n.onnx": (
        "pytorch 2.3 (ultralytics YOLOv8)",
        ["images:1x3x[320..640:32]x[320..640:32]"],
        ["images:1x3x320x320"],
    ),
    "silero_vad_16k_op15.onnx": (
        "pytorch 2.3 (silero)",
        ["input:1x512", "state:2x1x128"],
        ["input:1x512", "state:2x1x128"],
    ),
    "embedding_model.onnx": ("tf2onnx 1.9.3 (openwakeword, NHWC)", ["input_1:[1..4]x76x32x1"], ["input_1:1x76x32x1"]),
    "melspectrogram.onnx": ("pytorch 1.11 (openwakeword)", ["input:1x[1280..16000:1280]"], ["input:1x16000"]),
}


def one(model: Path, backend: str, flags: list[str]) -> str:
    recipe = Recipe.from_flags(backend=backend, input_shapes=shapes_from_flags(flags), cache=False)
    with tempfile.TemporaryDirectory() as folder:
        try:
            result = compile(str(model), "host", Path(folder) / "out", recipe)
        except EdgekilnError as exc:
            return "fails: " + str(exc).replace("|", "/")[:230]
        except Exception as exc:  # noqa: BLE001 - a traceback is what this table exists to catch
            return f"TRACEBACK {type(exc).__name__}: {str(exc).splitlines()[0][:150]}"
        from edgekiln.runtime.reports.schema import read_reports

        checks = read_reports(result.path).fidelity.values()
        worst = max(checks, key=lambda report: report.max_abs_diff)
        return (
            f"compiled, matched ({len(checks)} checks): max abs diff {worst.max_abs_diff:.2g}, min cosine "
            f"{min(report.min_cosine for report in checks):.6f}"
        )


def main(folder: str) -> None:
    print("| model | exporter | onnxruntime | openvino | tvm |\n|---|---|---|---|---|")
    for name, (exporter, ranges, fixed) in MODELS.items():
        path = Path(folder) / name
        if not path.is_file():
            continue
        cells = [
            one(path, backend, fixed if backend == "tvm" else ranges) for backend in ("onnxruntime", "openvino", "tvm")
        ]
        print(
            f"| {name} (`{' '.join(ranges)}`; TVM `{' '.join(fixed)}`) | {exporter} | " + " | ".join(cells) + " |",
            flush=True,
        )


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "models")
