"""`python -m rlft.bytecode`: byte-compile, once at set-up, the modules rlft's commands import.

pip byte-compiles every module it installs, one file at a time: torch's test and compiler trees,
transformers' hundreds of model families. Timed on 2 cores, that was more than half of `make setup`
(152 s with it, 65 s with `--no-compile`). The Makefile installs with `--no-compile` and runs this
instead: it imports every module named by an import statement anywhere in rlft and reward_models
(those inside functions too, and each name taken from them, which loads transformers' and trl's lazy
submodules), writing their bytecode as it goes, as pip would have, even where PYTHONDONTWRITEBYTECODE
is set. A module nothing here names is compiled on its first import as Python does by default.
"""

from __future__ import annotations

import ast
import importlib
import sys
from pathlib import Path

PACKAGES = ("rlft", "reward_models")


def imported_names(root: Path) -> set[tuple[str, str | None]]:
    """(module, name) for every absolute `from module import name`, (module, None) for `import module`."""
    found = set()
    for path in sorted(p for pkg in PACKAGES for p in (root / pkg).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found |= {(alias.name, None) for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module != "__future__":
                found |= {(node.module, alias.name) for alias in node.names if alias.name != "*"}
    return found


def compile_imports(names: set[tuple[str, str | None]]) -> list[str]:
    """Import each (module, name), writing the bytecode of every module that loads; returns the imports
    that failed (an optional package not installed here: wandb, ...)."""
    before, sys.dont_write_bytecode = sys.dont_write_bytecode, False  # as pip would have written it
    failed = []
    try:
        for module, name in sorted(names, key=str):
            try:
                loaded = importlib.import_module(module)
                if name is not None and not hasattr(loaded, name):  # a submodule, or a lazy attribute hasattr loads
                    importlib.import_module(f"{module}.{name}")
            except (Exception, SystemExit):  # noqa: BLE001 - whatever stops an import, the rest still compile
                failed.append(module if name is None else f"{module}.{name}")
    finally:
        sys.dont_write_bytecode = before
    return failed


def main() -> int:
    names = imported_names(Path(__file__).resolve().parent.parent)
    failed = compile_imports(names)
    print(f"rlft.bytecode: compiled what {len(names) - len(failed)} imports load"
          + (f"; not importable here: {', '.join(failed)}" if failed else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
