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
    """One CompileError when a config in `folder` maps a class to the folder's own code (an `auto_map` at
    any depth: transformers 5 also reads one nested in processor_config.json's `image_processor`), or
    its modules.json names a module that is not sentence-transformers' own."""
    for name in CONFIG_FILES:
        mapped = _auto_map(folder / name)
        if mapped:
            raise CompileError(
                f"{folder / name} maps {', '.join(sorted(mapped)[:3])} to code of its own "
                f"({', '.join(sorted({_where(folder, ref) for ref in mapped.values()}))}); edgekiln runs no code from "
                "model folders, and transformers' built-in classes would compute another model",
                hint=HINT,
            )
    foreign = _foreign_modules(folder / "modules.json")
    if foreign:
        raise CompileError(
            f"{folder / 'modules.json'} declares modules of its own ({', '.join(foreign[:3])}); edgekiln "
            "reads sentence-transformers' Transformer, Pooling and Normalize only, and runs no code from model folders",
            hint=HINT,
        )


HINT = "export the model to ONNX yourself with its code, if you trust it, then compile the .onnx file"


def _auto_map(path: Path) -> dict[str, str]:
    """Class name -> module reference, from every `auto_map` in the JSON file (none if it is absent or broken:
    the loaders that read it say so)."""
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    found: dict[str, str] = {}
    pending = [config]
    while pending:
        node = pending.pop()
        if isinstance(node, dict):
            mapped = node.get("auto_map")
            if isinstance(mapped, dict):
                found.update({key: ref for key, value in mapped.items() if (ref := _reference(value))})
            pending.extend(value for key, value in node.items() if key != "auto_map")
        elif isinstance(node, list):
            pending.extend(node)
    return found


def _reference(value) -> str | None:
    """The first module reference in an auto_map entry: a string, a list (slow, fast) or a dict (per backend)."""
    if isinstance(value, str):
        return value or None
    values = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
    return next((item for item in values if isinstance(item, str) and item), None)


def _foreign_modules(path: Path) -> list[str]:
    try:
        modules = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    types = (
        [module.get("type", "") for module in modules if isinstance(module, dict)] if isinstance(modules, list) else []
    )
    return [kind for kind in types if isinstance(kind, str) and kind and not kind.startswith("sentence_transformers.")]


def _where(folder: Path, reference: str) -> str:
    """Where a reference's code lives: `modeling_x.JinaBert` -> `modeling_x.py` (or `modeling_x.py, not in the
    folder`); a hub reference `owner/repo--module.Class` -> `module.py of owner/repo`."""
    repo, _, local = reference.rpartition("--")
    module = local.rsplit(".", 1)[0] + ".py"
    if repo:
        return f"{module} of {repo}"
    return module if (folder / module).is_file() else f"{module}, not in the folder"
