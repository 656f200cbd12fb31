"""`edgekiln tune-db export|import|show`: carry a target's MetaSchedule tuning database between machines.

The database lives in the build cache, one per TVM target (compiler/tvm_build/tuning.py); a compile
with no --tune-trials applies the records it holds, so an imported database makes an untuned compile
use the kernels tuned elsewhere.
"""

from __future__ import annotations

import json
from pathlib import Path


def register(commands) -> None:
    tune_db = commands.add_parser("tune-db", help="export, import or list TVM tuning databases (the build cache's)")
    actions = tune_db.add_subparsers(dest="tune_db_command", required=True, metavar="ACTION")

    export = actions.add_parser("export", help="write a target's tuning records to one portable JSON file")
    export.add_argument("--target", required=True, help="target profile (name, `host`, or a .toml file)")
    export.add_argument("-o", "--output", type=Path, required=True, help="file to write")
    _cache_option(export)
    export.set_defaults(handler=cmd_export)

    imported = actions.add_parser("import", help="merge an exported file into this machine's tuning database")
    imported.add_argument("file", type=Path)
    imported.add_argument(
        "--target", help="target profile to file the records under (default: the profile the file was exported for)"
    )
    _cache_option(imported)
    imported.set_defaults(handler=cmd_import)

    show = actions.add_parser("show", help="the tuning databases in the cache and their record counts")
    show.add_argument("--target", help="only this target profile's database")
    _cache_option(show)
    show.set_defaults(handler=cmd_show)


def _cache_option(parser) -> None:
    parser.add_argument("--cache-dir", type=Path, help="build cache (default: $EDGEKILN_CACHE or ~/.cache/edgekiln)")


def _cache_root(args) -> Path:
    from edgekiln.compiler.cache import default_cache_dir

    return args.cache_dir.expanduser() if args.cache_dir else default_cache_dir()


def cmd_export(args) -> int:
    from edgekiln.compiler.tvm_build.tuning_db import export_database, tvm_version

    folder, profile, target = _database(args, args.target)
    exported = export_database(folder, profile, _with_triple(target))  # the file says its machine's arch
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(exported.model_dump_json())
    print(
        f"exported {len(exported.records)} tuning records ({len(exported.workloads)} kernels) for {profile} "
        f"(TVM {tvm_version()}) to {args.output}"
    )
    return 0


def cmd_import(args) -> int:
    from edgekiln.compiler.errors import CompileError
    from edgekiln.compiler.tvm_build.tuning_db import merge, parse_export

    try:
        text = args.file.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        reason = "not a text file" if isinstance(exc, UnicodeDecodeError) else exc.strerror
        raise CompileError(
            f"cannot read {args.file}: {reason}", hint="pass a file written by `edgekiln tune-db export`"
        ) from None
    exported = parse_export(text, str(args.file))
    folder, profile, target = _database(args, args.target or exported.profile)
    target = _with_triple(target)
    here, there = _machine(target), _machine(exported.target)
    if there[1] != "?" and here != there:  # an export without a triple (older edgekiln): its arch is unknown
        raise CompileError(
            f"{args.file} was tuned for {there[0]} {there[1]}, and {profile} compiles for {here[0]} {here[1]}: "
            "its schedules were measured on another kind of processor",
            hint="import it for a target of that kind (--target), or tune for this one",
        )
    added, held = merge(folder, exported)
    print(f"imported {added} new tuning records for {profile} ({held} in all) into {folder}")
    differs = sorted(key for key in set(target) | set(exported.target) if target.get(key) != exported.target.get(key))
    if differs:
        print(
            f"note: the file was tuned for {exported.target}; here {profile} compiles for {target} "
            f"(differs in {', '.join(differs)}): the schedules apply, their speed may differ"
        )
    return 0


def _machine(target: dict) -> tuple[str, str]:
    """(TVM target kind, CPU architecture of its triple): what tuning records cannot cross."""
    return str(target.get("kind", "?")), str(target.get("mtriple", "?")).split("-")[0]


def _with_triple(target: dict) -> dict:
    """A target compiled on this machine names no triple for this machine's arch (target_dict): named."""
    from edgekiln.compiler.tvm_build.target import triple_of
    from edgekiln.runtime.backends.tvm import host_arch

    return target if "mtriple" in target else {**target, "mtriple": triple_of(host_arch())}


def cmd_show(args) -> int:
    from edgekiln.compiler.tvm_build.tuning_db import RECORDS, read_lines

    if args.target:
        folder, profile, target = _database(args, args.target)
        rows = [(folder, len(read_lines(folder / RECORDS)), json.dumps(target, sort_keys=True))]
    else:
        root = _cache_root(args) / "tvm-tuning"
        found = [(folder, read_lines(folder / RECORDS)) for folder in (sorted(root.iterdir()) if root.is_dir() else ())]
        found = [(folder, records) for folder, records in found if records]
        if not found:
            print(f"no tuning databases in {root}")
            return 0
        owners = _profiles_by_folder(args)  # (needs TVM: only when there is something to show)
        rows = [
            (
                folder,
                len(records),
                f"for {', '.join(owners.get(folder, ['?']))}; tuned for "
                + json.dumps(_record_target(records[0]), sort_keys=True),
            )  # each record names its target
            for folder, records in found
        ]
    for folder, count, target in rows:
        print(f"{count:>7} records  {target}  {folder}")
    return 0


def _profiles_by_folder(args) -> dict[Path, list[str]]:
    """Database folder -> the CPU profiles whose compiles on this machine use it."""
    from edgekiln.runtime.errors import EdgekilnError
    from edgekiln.targets import profile_names

    owners: dict[Path, list[str]] = {}
    for name in ["host", *profile_names()]:
        try:
            folder, profile, _ = _database(args, name)
        except EdgekilnError:  # a GPU profile: no CPU database
            continue
        owners.setdefault(folder, []).append(profile)
    return owners


def _database(args, profile_name: str) -> tuple[Path, str, dict]:
    """(the database folder a compile on this machine uses for the profile, its name, its target)."""
    from edgekiln.compiler.tvm_build.target import local_target
    from edgekiln.compiler.tvm_build.tuning import database_dir
    from edgekiln.targets import load_profile

    profile = load_profile(profile_name)
    target = local_target(profile)
    if target["kind"] != "llvm":
        from edgekiln.compiler.errors import CompileError

        raise CompileError(
            f"{profile.name} compiles for {target['kind']}, and tuning databases hold CPU (llvm) kernels only",
            hint="give a CPU target profile",
        )
    return database_dir(_cache_root(args), target), profile.name, target


def _record_target(record) -> object:
    try:
        return record[1][2]
    except (IndexError, TypeError, KeyError):
        return "?"
