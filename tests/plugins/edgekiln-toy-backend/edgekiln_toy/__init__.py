"""A toy third-party backend: ships the verified ONNX as `toy.onnx` and runs it with ONNX Runtime's
sequential executor and basic graph optimisations. It exists to prove that a backend is its own
files plus one entry point: edgekiln's own files know nothing about it."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from edgekiln.runtime.backends.spec import BackendSpec

TOY_MODEL = "toy.onnx"


class ToySession:
    name = "toy"

    def __init__(self, path: Path, output_names: list[str], threads: int) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        self._session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self._outputs = output_names

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return dict(zip(self._outputs, self._session.run(self._outputs, feeds)))


def open_session(folder: Path, manifest, options) -> ToySession:
    return ToySession(folder / manifest.model_file, [spec.name for spec in manifest.outputs], options.threads)


def make_lowering(context):
    from edgekiln.compiler.passes.base import BuildState, Pass, PassConfig

    class LowerToy(Pass):
        name = "lower_toy"
        Config = PassConfig
        changes_model = False
        lowers_to = (TOY_MODEL,)

        def run(self, state: BuildState, out_dir: Path) -> dict:
            shutil.copyfile(state.model_path, out_dir / TOY_MODEL)
            return {"copied": state.model_path.name}

    return LowerToy()


SPEC = BackendSpec(
    name="toy",
    description="toy plugin: ONNX Runtime, sequential, basic optimisations",
    runtime="edgekiln_toy:open_session",
    lowering="edgekiln_toy:make_lowering",
    precisions=("fp32",),
)
