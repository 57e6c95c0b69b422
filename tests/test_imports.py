"""The project's imports run one way.

The layers, lowest first. A module imports only from its own layer or below, so no cycle can form
and a low-level module never drags in the code above it:
  0 pure pieces: errors, the RL maths, metrics, generation, the data corpora, the tasks
  1 process plumbing: distributed, tracking, data augmentation
  2 run folders: runs
  3 models and data sets
  4 recipes and rewards: config, reward_models
  5 what runs on models: eval, the actor-critic, checkpoints, numeric faults, mixing
  6 the stages: each may use the shared helpers of `rlft.stages`, never a sibling stage
  7 what drives the stages: sweep, cli; and set-up's bytecode, which imports every module rlft names
A project import inside a function is allowed only where LOCAL says why. Generic code reaches the
built-in task through `rlft.tasks` (the task interface), never by importing `rlft.tasks.harbor`.
"""

from __future__ import annotations

import ast
import fnmatch
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[1]
OURS = ("rlft", "reward_models")

LAYERS = [
    ["rlft", "rlft.errors", "rlft.rl", "rlft.rl.core", "rlft.eval.metrics", "rlft.eval.generate", "rlft.eval.report",
     "rlft.data.chitchat", "rlft.data.probes", "rlft.data.skills", "rlft.tasks", "rlft.tasks.*", "rlft.eval.modules*",
     "reward_models.scoring"],
    ["rlft.distributed", "rlft.tracking", "rlft.data.augment"],
    ["rlft.runs"],
    ["rlft.models", "rlft.data"],
    ["rlft.config", "reward_models", "reward_models.learned"],
    ["rlft.eval", "rlft.eval.budget", "rlft.eval.harness", "rlft.eval.compare", "rlft.eval.verdict",
     "rlft.eval.model_judge", "rlft.actor_critic", "rlft.checkpoint", "rlft.faults", "rlft.mix"],
    ["rlft.stages", "rlft.stages.*"],
    ["rlft.sweep", "rlft.cli", "rlft.bytecode"],
]

LOCAL = {
    "rlft.cli": "`rlft --help` and every bad-input refusal answer in a second, before torch and transformers "
                "load; a command imports the stage it runs",
}
"""Modules whose project imports may sit inside functions, and why."""


def modules() -> dict[str, Path]:
    found = {}
    for package in OURS:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


MODULES = modules()


def imports(name: str) -> list[tuple[str, int, bool]]:
    """(imported project module, line, inside a function) for each project import of a module."""
    out = []
    for node in ast.walk(ast.parse(MODULES[name].read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            targets = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in MODULES else node.module
                       for a in node.names]
        elif isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        else:
            continue
        out += [(t, node.lineno, node.col_offset > 0) for t in dict.fromkeys(targets) if t.split(".")[0] in OURS]
    return out


def where(name: str, line: int) -> str:
    path = MODULES[name]
    return f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}:{line}"


def layer(name: str) -> int:
    matches = [i for i, names in enumerate(LAYERS) if any(fnmatch.fnmatchcase(name, p) for p in names)]
    assert len(matches) == 1, f"{name} must sit in exactly one layer of LAYERS, sits in {matches}"
    return matches[0]


def test_every_module_has_one_layer():
    for name in MODULES:
        layer(name)


def test_imports_run_down_the_layers_and_no_stage_imports_a_sibling():
    upward = []
    for name in MODULES:
        for target, line, _ in imports(name):
            if layer(target) > layer(name):
                upward.append(f"{where(name, line)} imports {target} (layer {layer(target)} > {layer(name)})")
            if name.startswith("rlft.stages.") and target.startswith("rlft.stages.") and target != name:
                upward.append(f"{where(name, line)}: a stage imports the stage {target}")
    assert not upward, "\n".join(upward)


def test_no_import_cycle_counting_the_imports_inside_functions():
    edges = {name: {t for t, _, _ in imports(name) if t in MODULES and t != name} for name in MODULES}
    state: dict[str, int] = {}

    def visit(name: str, path: list[str]) -> None:  # depth first; state 1: on the current path
        state[name] = 1
        for target in sorted(edges[name]):
            cycle = path[path.index(target):] + [target] if state.get(target) == 1 else None
            assert cycle is None, "import cycle: " + " -> ".join(cycle)
            if target not in state:
                visit(target, path + [target])
        state[name] = 2

    for name in MODULES:
        if name not in state:
            visit(name, [name])


def test_project_imports_sit_at_module_top_unless_local_says_why():
    hidden = [f"{where(name, line)} imports {target} inside a function"
              for name in MODULES if name not in LOCAL
              for target, line, inside in imports(name) if inside]
    assert not hidden, "\n".join(hidden)


def test_generic_code_reaches_the_builtin_task_only_through_the_task_interface():
    """Harbor Goods' own modules may import each other; the rest reach it through rlft.tasks. Its tone
    scorer packaged as an `evaluate` module (rlft/eval/modules/rlft_tone) is Harbor's by design."""
    allowed = ("rlft.tasks", "rlft.tasks.harbor*", "rlft.eval.modules.rlft_tone*")
    direct = [f"{where(name, line)} imports {target}"
              for name in MODULES if not any(fnmatch.fnmatchcase(name, p) for p in allowed)
              for target, line, _ in imports(name) if target.startswith("rlft.tasks.harbor")]
    assert not direct, "\n".join(direct)


def test_the_checks_above_catch_what_they_forbid(tmp_path, monkeypatch):
    """A low module that imports the CLI inside a function breaks three rules, and each check says so."""
    fake = tmp_path / "runs.py"
    fake.write_text("def f():\n    from rlft import cli\n")
    monkeypatch.setitem(MODULES, "rlft.runs", fake)
    assert imports("rlft.runs") == [("rlft.cli", 2, True)]
    for check, says in [(test_project_imports_sit_at_module_top_unless_local_says_why, "inside a function"),
                        (test_imports_run_down_the_layers_and_no_stage_imports_a_sibling, "layer 7 > 2"),
                        (test_no_import_cycle_counting_the_imports_inside_functions, "import cycle")]:
        with pytest.raises(AssertionError, match=says):
            check()
