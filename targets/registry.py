"""Finding, validating and listing target profiles."""

from __future__ import annotations

import functools
import warnings
from importlib.metadata import entry_points
from importlib.resources import files
from pathlib import Path

import tomllib
from pydantic import ValidationError

from edgekiln.runtime.errors import EdgekilnError

from .schema import TargetProfile

HOST = "host"


class ProfileError(EdgekilnError):
    """A target profile is unknown or invalid."""


def builtin_profile_dir() -> Path:
    return Path(str(files("edgekiln.targets") / "profiles"))


def _profile_files() -> dict[str, Path]:
    return dict(_found_profile_files())


@functools.cache  # once a process: the plugins' warnings are given once
def _found_profile_files() -> dict[str, Path]:
    """Profile name -> file: the built-in ones, then those third-party packages register. A plugin
    that fails, or whose profile takes a built-in's name, is skipped with a warning."""
    found = {path.stem: path for path in sorted(builtin_profile_dir().glob("*.toml"))}
    for entry in entry_points(group="edgekiln.targets"):
        try:
            folder = Path(entry.load()())
        except Exception as exc:
            warnings.warn(
                f"target plugin {entry.name!r} ({entry.value}) failed: {exc}; its profiles are ignored", stacklevel=2
            )
            continue
        for path in sorted(folder.glob("*.toml")):
            if path.stem in found:
                warnings.warn(
                    f"target plugin {entry.name!r}: its profile {path.name} takes the name of {found[path.stem]}; "
                    "it is ignored (rename the plugin's file)",
                    stacklevel=2,
                )
                continue
            found[path.stem] = path
    return found


def profile_names() -> list[str]:
    return sorted(_profile_files())


def load_profile(name_or_path: str) -> TargetProfile:
    """A shipped profile by name, `host` for this machine, or a path to a TOML profile file."""
    if name_or_path == HOST:
        from .host import detect_host

        return detect_host()
    candidate = Path(name_or_path)
    if candidate.suffix == ".toml":
        if not candidate.is_file():
            raise ProfileError(f"target profile file {candidate} does not exist")
        profile = parse_profile_file(candidate)
        registered = _profile_files().get(profile.name)
        if profile.name == HOST or (registered is not None and registered.resolve() != candidate.resolve()):
            raise ProfileError(  # an artifact records the name: it would claim that profile's device
                f"target profile {candidate} takes the name {profile.name!r} of a shipped profile",
                hint="give it a name of its own",
            )
        return profile
    known = _profile_files()
    if name_or_path not in known:
        raise ProfileError(
            f"unknown target {name_or_path!r}",
            hint=f"use one of: {', '.join([HOST, *sorted(known)])}, or a path to a .toml profile",
        )
    profile = parse_profile_file(known[name_or_path])
    if profile.name != name_or_path:
        raise ProfileError(
            f"target profile {known[name_or_path]} declares name = {profile.name!r}, not {name_or_path!r}",
            hint=f"make its name match its file name ({name_or_path}.toml)",
        )
    return profile


def parse_profile_file(path: Path) -> TargetProfile:
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ProfileError(f"target profile {path} is not valid TOML: {exc}") from None
    try:
        return TargetProfile.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(_describe(error) for error in exc.errors())
        raise ProfileError(
            f"target profile {path}: {problems}",
            hint="compare it with a shipped profile (edgekiln/targets/profiles/*.toml; README: Target profiles)",
        ) from None


def _describe(error: dict) -> str:
    where = ".".join(str(part) for part in error["loc"]) or "(top level)"
    if error["type"] == "extra_forbidden":
        return f"unknown key `{where}`"
    return f"`{where}`: {error['msg']}"
