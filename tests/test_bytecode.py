"""rlft.bytecode: `make setup` byte-compiles what rlft imports, found by reading rlft's own source."""

from pathlib import Path

import pytest

from rlft import bytecode

pytestmark = pytest.mark.unit


def test_every_import_statement_is_found_inside_functions_too():
    """rlft imports most of TRL inside the functions that use it (rlft/stages/dpo.py's build_trainer): those
    names are found, so their lazy submodules get compiled at set-up; relative and __future__ imports are not."""
    found = bytecode.imported_names(Path(bytecode.__file__).resolve().parent.parent)
    assert {("trl", "DPOConfig"), ("trl.experimental.orpo", "ORPOTrainer"), ("torch", None),
            ("reward_models", None)} <= found
    assert not any(m == "__future__" or m.startswith(".") for m, _ in found)
