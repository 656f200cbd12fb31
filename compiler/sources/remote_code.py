"""Model folders that ask for their own Python code (`auto_map` in a config, as `trust_remote_code`
models declare it). edgekiln never runs code from a model folder, and loading such a folder with
transformers' built-in classes computes another model (a jina-embeddings-v2 folder says `bert` but its
code is ALiBi attention): both would be silent, so the folder is refused before anything loads it."""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import CompileError

CONFIG_FILES = ("config.json", "tokenizer_config.json", "preprocessor_config.json", "processor_config.json")
NO_REMOTE_CODE = {"trust_remote_code": False}  # every from_pretrained: refuse, never prompt


def refuse_remote_code(folder: Path) -> None:
    """One CompileError when a config in `folder` maps a class to the folder's own code."""
    for name in CONFIG_FILES:
        mapped = _auto_map(folder / name)
        if mapped:
            modules = sorted({_module_file(reference) for reference in mapped.values()})
            raise CompileError(
                f"{folder / name} maps {', '.join(sorted(mapped)[:3])} to the folder's own code "
                f"({', '.join(modules)}); edgekiln runs no code from model folders, and transformers' "
                "built-in classes would compute another model",
                hint="export the model to ONNX yourself with its code (if you trust it), then compile the .onnx file",
            )


def _auto_map(path: Path) -> dict[str, str]:
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):  # absent or broken: the loaders that read it say so
        return {}
    mapped = config.get("auto_map") if isinstance(config, dict) else None
    if not isinstance(mapped, dict):
        return {}
    return {
        key: value if isinstance(value, str) else next((v for v in value if isinstance(v, str) and v), "?")
        for key, value in mapped.items()
        if isinstance(value, (str, list)) and value
    }


def _module_file(reference: str) -> str:
    """`modeling_x.JinaBert` -> `modeling_x.py` (a hub reference `repo--module.Class` keeps its repo)."""
    return reference.rsplit(".", 1)[0] + ".py"
