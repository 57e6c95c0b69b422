"""rlft.bytecode: `make setup` byte-compiles what rlft imports, found by reading rlft's own source."""

import sys
from pathlib import Path

import pytest

from rlft import bytecode

pytestmark = pytest.mark.unit


def test_every_import_statement_is_found_inside_functions_too():
    """rlft imports most of TRL inside the functions that use it (rlft/stages/dpo.py's build_trainer): those
    names are found, so their lazy submodules get compiled at set-up; __future__ is not an import."""
    found = bytecode.imported_names(Path(bytecode.__file__).resolve().parent.parent)
    assert {("trl", "DPOConfig"), ("trl.experimental.orpo", "ORPOTrainer"), ("torch", None),
            ("reward_models", None)} <= found
    assert not any(m == "__future__" for m, _ in found)


def test_imports_write_their_bytecode_and_failures_are_named(tmp_path, monkeypatch):
    """A module, and a submodule named as `from package import name`, get their .pyc even where writing
    bytecode is off (PYTHONDONTWRITEBYTECODE, as on our machines); a missing module and a module that
    raises SystemExit at import are named and do not stop the rest. The flag is put back."""
    package = tmp_path / "bc_pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "plain.py").write_text("X = 1\n")
    (package / "sub.py").write_text("Y = 2\n")
    (package / "exits.py").write_text("raise SystemExit(3)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    failed = bytecode.compile_imports({("bc_pkg.plain", None), ("bc_pkg", "sub"), ("bc_pkg_missing", None),
                                       ("bc_pkg.exits", None)})
    assert sorted(failed) == ["bc_pkg.exits", "bc_pkg_missing"]
    written = {p.name.split(".")[0] for p in (package / "__pycache__").glob("*.pyc")}
    assert {"plain", "sub"} <= written
    assert sys.dont_write_bytecode is True
    for name in ("bc_pkg", "bc_pkg.plain", "bc_pkg.sub"):
        sys.modules.pop(name, None)
