"""How the package's weight is spread: the longest modules, the classes with the most methods,
and how many places set a job's state. Limits (CONTRIBUTING.md): no package module over 600
lines, no class over 40 methods (a table widget of our own may be larger); a job's state is set
in one place.

    python scripts/structure.py            # the report
    python scripts/structure.py --check    # exit 1 when a limit is broken
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "validator_tui"
MAX_MODULE_LINES = 600
MAX_CLASS_METHODS = 40
#: Allowed past the limits: the table widget of our own (as Textual's DataTable is large).
LARGE_ALLOWED = {"LineTable"}
LARGE_MODULES_ALLOWED = {"line_table.py"}


def modules() -> list[tuple[Path, int]]:
    """Every package module with its line count, longest first."""
    sizes = [(path, len(path.read_text().splitlines())) for path in PACKAGE.rglob("*.py")]
    return sorted(sizes, key=lambda item: -item[1])


def classes() -> list[tuple[str, int]]:
    """Every class (`module:Class`) with its method count, most first."""
    found = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                methods = [
                    item
                    for item in node.body
                    if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef)
                ]
                found.append((f"{path.relative_to(PACKAGE.parent)}:{node.name}", len(methods)))
    return sorted(found, key=lambda item: -item[1])


def job_state_assignments() -> list[str]:
    """`file:line` of every statement that sets a job record's `state` in the engine: an
    assignment, or a call of `enter` in jobs.py (a job record's state machine's one door;
    challenge records have their own `enter`)."""
    places = []
    for path in (PACKAGE / "engine").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "enter"
                and path.name == "jobs.py"
            ):
                places.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}")
                continue
            targets: list[ast.expr] = []
            if isinstance(node, ast.Assign):
                targets = [
                    t
                    for target in node.targets
                    for t in (getattr(target, "elts", None) or [target])
                ]
            elif isinstance(node, ast.AnnAssign | ast.AugAssign):
                targets = [node.target]
            for target in targets:
                if isinstance(target, ast.Attribute) and target.attr == "state":
                    value = ast.unparse(node.value) if node.value is not None else ""
                    if "JobState" in value or _job_like(target):
                        places.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}")
    return places


def _job_like(target: ast.Attribute) -> bool:
    name = ast.unparse(target.value)
    return "job" in name or name == "record"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when a limit is broken")
    parser.add_argument("--top", type=int, default=8, help="rows per list (default 8)")
    args = parser.parse_args(argv)
    mods, cls, states = modules(), classes(), job_state_assignments()
    print(f"modules: {len(mods)}, longest:")
    for path, lines in mods[: args.top]:
        print(f"  {lines:5d}  {path.relative_to(PACKAGE.parent)}")
    print("classes with the most methods:")
    for name, count in cls[: args.top]:
        print(f"  {count:5d}  {name}")
    print(f"places that set a job's state: {len(states)}")
    for place in states:
        print(f"  {place}")
    broken = [
        f"{path.relative_to(PACKAGE.parent)}: {lines} lines"
        for path, lines in mods
        if lines > MAX_MODULE_LINES and path.name not in LARGE_MODULES_ALLOWED
    ]
    broken += [
        f"{name}: {count} methods"
        for name, count in cls
        if count > MAX_CLASS_METHODS and name.rsplit(":", 1)[1] not in LARGE_ALLOWED
    ]
    if broken:
        print("over the limits:")
        for line in broken:
            print(f"  {line}")
    return 1 if args.check and broken else 0


if __name__ == "__main__":
    sys.exit(main())
