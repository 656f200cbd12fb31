"""A plugin backend's outputs checked against the manifest: the names, dtypes and ranks it declares,
fixed sizes, and named sizes shared with the inputs (the batch). Built-in backends are checked by the
compile and the test suite; a plugin's wrong output is named here rather than passed on."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from .errors import BackendUnavailableError
from .manifest import Manifest


def check_outputs(outputs: Mapping[str, np.ndarray], feeds: Mapping[str, np.ndarray], manifest: Manifest) -> None:
    fault = _fault(outputs, feeds, manifest)
    if fault is not None:
        raise BackendUnavailableError(
            f"backend plugin {manifest.backend!r} returned {fault}",
            hint="a fault of the plugin: report it to its authors",
        )


def _fault(outputs: Mapping[str, np.ndarray], feeds: Mapping[str, np.ndarray], manifest: Manifest) -> str | None:
    if not isinstance(outputs, Mapping):
        return f"a {type(outputs).__name__}, not a mapping of output names to arrays"
    expected = [spec.name for spec in manifest.outputs]
    if sorted(outputs) != sorted(expected):
        return f"outputs {sorted(outputs)}; the manifest declares {expected}"
    sizes = {
        size: feeds[spec.name].shape[axis]
        for spec in manifest.inputs
        if spec.name in feeds
        for axis, size in enumerate(spec.shape)
        if isinstance(size, str)
    }
    for spec in manifest.outputs:
        array = outputs[spec.name]
        if not isinstance(array, np.ndarray):
            return f"{spec.name} as a {type(array).__name__}, not a numpy array"
        if array.dtype != np.dtype(spec.dtype) or array.ndim != len(spec.shape):
            return f"{spec.name} as {array.dtype} of shape {list(array.shape)}; the manifest declares {spec.dtype} {list(spec.shape)}"
        for axis, size in enumerate(spec.shape):
            wanted = size if isinstance(size, int) else sizes.get(size)
            if wanted is not None and array.shape[axis] != wanted:
                return f"{spec.name} of shape {list(array.shape)}; axis {axis} ({size}) should be {wanted} for these inputs"
    return None
