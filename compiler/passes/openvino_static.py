"""The OpenVINO backend's options, and its last pass: static shapes for text models.

With `--sequence-buckets 16,32,64,128` on `--backend openvino`, the artifact gets
`openvino_shapes.json` beside the IR (the IR itself stays dynamic): the runtime pads each request up
to the next length and runs a model compiled for exactly that shape (runtime/backends/openvino_shapes.py).
This pass writes the file after lowering and int8 (so it applies to float and NNCF IR alike) and
checks, on the fidelity shapes, that the padded static runs give what the dynamic IR gives."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from edgekiln.runtime.backends.openvino import compile_ir
from edgekiln.runtime.backends.openvino_shapes import SHAPES_FILE, StaticDispatch, StaticShapes
from edgekiln.runtime.hashing import sha256_file, sha256_json

from ..errors import CompileError
from ..fidelity import FidelityConfig, check, fidelity_feeds, is_classifier, require
from ..graph_io import file_io
from ..padding_check import refuse_bucket_padding
from ..quantization.config import QuantMode
from ..tvm_build.shapes import SequenceBuckets, bucket_axes, check_lengths, pad_values, sequence_buckets
from .base import BuildState, Pass
from .lower_openvino import BF16_LIMITS, IR_MODEL, IR_WEIGHTS, OV_PRECISION
from .registry import register_pass


class OpenVinoOptions(BaseModel):
    """`[backend.options]` of a recipe whose backend is openvino."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    sequence_buckets: SequenceBuckets = Field(
        default=None,
        min_length=1,
        description="text models: pad requests to these lengths, each run as a static shape; None: dynamic shapes",
    )


class StaticShapesConfig(FidelityConfig):
    sequence_buckets: tuple[int, ...]
    precision: str = "fp32"
    int8: bool = False


# The same int8 IR runs other integer kernels at static shapes, which round differently: on 200 SST-2
# sentences MiniLM NNCF int8 gave the same top-1 everywhere, the same logits for most, and up to 0.19
# apart (p95 3.8 % of the logit range; 24 % on a near-tie random input). Held to the int8-vs-float
# report limits (relative error, cosine), with top-1 agreement kept at the recipe's.
INT8_LIMITS = {"max_abs_diff": 1.0, "min_cosine": 0.99, "max_relative_error": 0.25}


@register_pass
class OpenVinoStaticShapes(Pass):
    name = "openvino_static_shapes"
    Config = StaticShapesConfig
    changes_model = False
    lowers_to = (IR_MODEL, IR_WEIGHTS, SHAPES_FILE)

    def check_preconditions(self, state: BuildState) -> None:
        super().check_preconditions(state)
        if not state.lowered or state.lowered[0].name != IR_MODEL:
            raise CompileError(f"internal: pass {self.name} runs after the OpenVINO lowering")
        tokenizer = state.source.tokenizer
        check_lengths(self.config.sequence_buckets, tokenizer.max_length if tokenizer else None)
        refuse_bucket_padding(state, "OpenVINO's static shapes (--sequence-buckets)")

    def input_key(self, state: BuildState) -> str:
        return sha256_json(
            {"model": state.model_sha256(), "ir": {path.name: sha256_file(path) for path in state.lowered}}
        )

    def run(self, state: BuildState, out_dir: Path) -> dict[str, Any]:
        shapes = self._shapes(state)
        for path in state.lowered[:2]:  # the IR as it is: only how it is run changes
            shutil.copyfile(path, out_dir / path.name)
        (out_dir / SHAPES_FILE).write_text(shapes.model_dump_json(indent=1) + "\n")
        precision = OV_PRECISION[self.config.precision]
        ir = out_dir / IR_MODEL
        dynamic = compile_ir(ir, threads=1, cache_dir=None, precision=precision)
        static = StaticDispatch(
            shapes,
            lambda fixed: compile_ir(ir, threads=1, cache_dir=None, precision=precision, shapes=fixed),
            dynamic,
        )
        limits = self.config.model_copy(
            update=BF16_LIMITS if precision == "bf16" else INT8_LIMITS if self.config.int8 else {}
        )
        report = check(
            lambda feeds: list(dynamic(feeds).values()),
            lambda feeds: list(static(feeds).values()),
            fidelity_feeds(state, self.config),
            limits,
            classifier=is_classifier(state),
            names=(f"OpenVINO {precision}, dynamic shapes", f"OpenVINO {precision}, padded static shapes"),
            details={"sequence_buckets": list(shapes.sequences)},
        )
        report.details["checked_shapes"] = static.compiled_shapes  # the static models the check compiled
        require(report, hint="drop --sequence-buckets (the model may not mask padded positions)")
        return report.model_dump(mode="json")

    def _shapes(self, state: BuildState) -> StaticShapes:
        inputs, outputs = file_io(state.model_path)
        axes = bucket_axes(inputs, outputs, who="--sequence-buckets on OpenVINO")
        if axes.sequence_name is None or not axes.sequence_axes:
            raise CompileError(
                "--sequence-buckets pads a text model's sequence axis; this model's inputs have none",
                hint="drop --sequence-buckets for this model",
            )
        tokenizer = state.source.tokenizer
        return StaticShapes(
            sequences=sequence_buckets(self.config.sequence_buckets, tokenizer.max_length if tokenizer else None),
            sequence_axes=axes.sequence_axes,
            pad_values=pad_values(inputs, tokenizer),
            output_sequence_axes=axes.output_sequence_axes,
        )


def make_static_shapes(context) -> OpenVinoStaticShapes | None:
    """The pass when the recipe asks for static shapes (`--sequence-buckets`), else None."""
    options = context.options or OpenVinoOptions()
    if options.sequence_buckets is None:
        return None
    recipe = context.recipe
    return OpenVinoStaticShapes(
        StaticShapesConfig(
            **recipe.fidelity.model_dump(),
            sequence_buckets=options.sequence_buckets,
            precision=recipe.precision.value,
            int8=recipe.quantize.mode is not QuantMode.NONE,
        )
    )
