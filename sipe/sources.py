"""The source files a stage runs: the import closure of its module inside ``sipe/``.

Snakemake rules (``workflow/rules/common.smk``, ``sources()``) and ``dvc.yaml`` list these files as
inputs, so that editing a module reruns exactly the stages that import it (docs/architecture.md,
"Code dependencies"). The closure is computed from the modules' ``import`` statements with ``ast``,
imports inside functions included, and every package ``__init__.py`` on the way (importing
``sipe.a.b`` runs ``sipe/__init__.py`` and ``sipe/a/__init__.py``). dvc.yaml takes them from the
rules when ``sipe dvc-yaml`` generates it (sipe/dvc_stages.py).
"""

from __future__ import annotations

import ast
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
