"""The source files a stage runs: the import closure of its module inside ``sipe/``.

Snakemake rules (``workflow/rules/common.smk``, ``sources()``) and ``dvc.yaml`` list these files as
inputs, so that editing a module reruns exactly the stages that import it (docs/architecture.md,
"Code dependencies"). The closure is computed from the modules' ``import`` statements with ``ast``,
imports inside functions included, and every package ``__init__.py`` on the way (importing
``sipe.a.b`` runs ``sipe/__init__.py`` and ``sipe/a/__init__.py``).

``python -m sipe.sources [--check] [dvc.yaml]`` rewrites the ``sipe/`` entries of every stage's
``deps`` in ``dvc.yaml`` from the closures (``--check``: only report stages that disagree, exit 1).
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
from functools import cache
from pathlib import Path

PACKAGE = "sipe"
ROOT = Path(__file__).resolve().parent.parent  # the folder that holds the sipe package


def module_file(name: str) -> Path | None:
    """The file of dotted module ``name`` inside the package (``sipe.a`` → sipe/a.py or sipe/a/__init__.py)."""
    path = ROOT.joinpath(*name.split("."))
    for candidate in (path.with_suffix(".py"), path / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _with_parents(name: str) -> list[str]:
    """``sipe.a.b`` → [sipe, sipe.a, sipe.a.b]: every package whose __init__ an import of ``name`` runs."""
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts) + 1)]


def imported_modules(name: str) -> set[str]:
    """Modules of the package that module ``name`` imports anywhere in its body (functions included)."""
    path = module_file(name)
    tree = ast.parse(path.read_text(), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            found.add(base)
            # `from sipe.a import b` imports the submodule sipe.a.b when there is one
            found.update(f"{base}.{alias.name}" for alias in node.names if module_file(f"{base}.{alias.name}"))
    inside = {parent for module in found if module.split(".")[0] == PACKAGE for parent in _with_parents(module)}
    return {module for module in inside if module_file(module)}


@cache
def import_closure(name: str) -> tuple[str, ...]:
    """Sorted repository-relative paths of module ``name``, the package modules it imports, transitively."""
    seen: set[str] = set()
    todo = _with_parents(name)
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        if module_file(module) is None:
            raise ValueError(f"{module}: no such module in {ROOT / PACKAGE}")
        seen.add(module)
        todo.extend(imported_modules(module) - seen)
    return tuple(sorted(module_file(module).relative_to(ROOT).as_posix() for module in seen))


def command_sources(command: str) -> list[str]:
    """Source files of the ``sipe <command>`` stage: the import closure of the module that implements it."""
    from sipe.cli import command_module

    return list(import_closure(command_module(command)))


_COMMAND = re.compile(r"python -m sipe (?:-- )?([a-z-]+)")


def dvc_stage_sources(cmd: str) -> list[str]:
    """Source files of a DVC stage from its ``cmd`` (``python -m sipe <command> ...``)."""
    match = _COMMAND.search(" ".join(cmd.split()))
    if match is None:
        raise ValueError(f"not a `python -m sipe <command>` stage: {cmd!r}")
    return command_sources(match.group(1))


def sync_dvc_deps(dvc_yaml: Path, write: bool = True) -> list[str]:
    """Replace the ``sipe/`` deps of every stage of ``dvc_yaml`` by its command's sources, keeping the other deps
    and the file's comments; return the names of the stages that changed (written only when ``write``)."""
    from sipe.io import round_trip_yaml

    yaml = round_trip_yaml()
    document = yaml.load(dvc_yaml)
    changed = []
    for name, stage in document["stages"].items():
        body = stage.get("do", stage)
        deps = body.setdefault("deps", [])
        others = [dep for dep in deps if not str(dep).startswith(f"{PACKAGE}/")]
        wanted = others + dvc_stage_sources(body["cmd"])
        if list(deps) != wanted:
            changed.append(name)
            deps[:] = wanted
    if changed and write:
        with open(dvc_yaml, "w") as stream:
            yaml.dump(document, stream)
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sipe.sources", description=__doc__.split("\n\n")[0])
    parser.add_argument("dvc_yaml", nargs="?", type=Path, default=ROOT / "dvc.yaml")
    parser.add_argument("--check", action="store_true", help="report stages whose deps disagree; change nothing")
    args = parser.parse_args(argv)
    changed = sync_dvc_deps(args.dvc_yaml, write=not args.check)
    verb = "disagree" if args.check else "updated"
    print(f"{args.dvc_yaml}: {len(changed)} stage(s) {verb}" + (f": {', '.join(changed)}" if changed else ""))
    return 1 if changed and args.check else 0


if __name__ == "__main__":
    sys.exit(main())
