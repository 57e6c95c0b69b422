"""`rlft sweep --sweep FILE`: hyperparameter search on Optuna under a forgetting budget.

A sweep file names a stage recipe, a search space over its keys, an objective (a number in eval.json,
measured on the recipe's `eval.dev_tasks`, never the test split) and constraints (drift budgets such
as `general_ppl_drift: "<= 0.1"`). Each trial is an ordinary run folder made by `rlft <stage>` in a
child process, so it has a manifest, lineage and resume like any run. Optuna's TPE sampler proposes
the values (Bergstra et al. 2011; with constraints as in Optuna's `constraints_func`, which prefers
feasible trials), its pruner stops a trial whose validation figure (the `eval/loss` the stage already
logs to TensorBoard) lags the others, and its storage keeps the study: SQLite in the sweep folder by
default, or any database URL Optuna can open, so several machines can work on one study.

Deliberate choices:
1. Trials run as child processes (`python -m rlft.cli STAGE ...`), not in-process: memory is returned
   after each, a pruned trial is stopped by a signal, and a trial is exactly what a user would run.
2. A killed sweep resumes: trials record heartbeats, a trial whose worker died is failed once its
   heartbeat is stale (an interrupted one at once) and queued again with the same values for the same
   folder, where the stage continues with `--resume`, so the checkpoints it wrote are not lost.
3. The number of trials is a total for the study, shared by every worker: a worker stops starting
   trials once finished plus running ones reach it, and waits for the running ones to end.
"""

from __future__ import annotations

import ctypes
import json
import math
import os
import re
import signal
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from rlft import config, data, runs
from rlft.errors import InputError
from rlft.eval.compare import front_plot, pareto_front

# Numbers in a policy run's eval.json a sweep may optimise or constrain (dotted paths into sections).
POLICY_KEYS = ("task_accuracy", "fact_recall", "tone_score", "impolite_rate", "reward_mean", "win_rate_vs_parent",
               "kl_task", "kl_task_base", "kl_general", "general_nll", "general_ppl_drift",
               "general_ppl_drift_parent", "mean_response_tokens", "truncation_rate", "distinct_2",
               "judge.task_accuracy", "judge.win_rate_vs_parent", "judge.refusal_rate", "judge.coverage",
               "judge.courtesy", "proxy.mean", "proxy.win_rate_vs_parent", "proxy.hacking_gap",
               "retention.retention")
RM_KEYS = ("pair_accuracy", "margin_mean")
# What each stage already logs during training that a pruner can read: (TensorBoard tag, direction).
PRUNE_DEFAULTS = {"sft": ("eval/loss", "minimize"), "dpo": ("eval/loss", "minimize"), "rm": ("eval/loss", "minimize"),
                  "ppo": ("objective/scores", "maximize"), "grpo": ("train/reward", "maximize")}
HEARTBEAT_S, GRACE_S = 5, 20  # a trial whose worker has been silent for GRACE_S seconds is taken as dead
MAX_RETRY = 3


@dataclass
class Dimension:
    key: str
    kind: str  # "float", "int" or "categorical"
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    choices: list = field(default_factory=list)

    def suggest(self, trial):
        if self.kind == "categorical":
            return trial.suggest_categorical(self.key, self.choices)
        if self.kind == "int":
            return trial.suggest_int(self.key, self.low, self.high, log=self.log)
        return trial.suggest_float(self.key, self.low, self.high, log=self.log)

    def corners(self) -> list:
        """The values that must all be valid recipe settings: both ends of a range, or every choice."""
        return self.choices if self.kind == "categorical" else [self.low, self.high]


@dataclass
class Constraint:
    key: str
    op: str  # "<=" or ">="
    bound: float

    def violation(self, value: float) -> float:
        """Optuna's convention: <= 0 when satisfied, the amount it is exceeded by otherwise."""
        return value - self.bound if self.op == "<=" else self.bound - value


@dataclass
class Sweep:
    path: Path
    stage: str
    recipe: Path
    trials: int
    space: list[Dimension]
    objective: str
    direction: str
    constraints: list[Constraint]
    sets: list[str]
    prune_metric: str
    prune_direction: str
    pruner: str
    startup_trials: int
    seed: int
    storage: str | None
    dev_tasks: str
    report_to: list[str] = field(default_factory=list)

    @property
    def front_key(self) -> str:
        """The drift figure the front is drawn against: the first constraint, else perplexity drift."""
        return self.constraints[0].key if self.constraints else "general_ppl_drift"


SWEEP_KEYS = ("stage", "recipe", "trials", "space", "objective", "direction", "constraints", "set", "prune", "seed",
              "storage")
PRUNE_KEYS = ("metric", "direction", "pruner", "startup_trials")
_NUMBER = r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?"


def _number(text: str, where: str) -> float | int:
    if not re.fullmatch(_NUMBER, text.strip()):
        raise InputError(f"{where}: {text.strip()!r} is not a number")
    value = float(text)
    return int(value) if re.fullmatch(r"[-+]?\d+", text.strip()) else value


def parse_dimension(key: str, spec, where: str) -> Dimension:
    """`[a, b, c]` (choices), `low..high` (a float range, or an int range when both ends are integers),
    `log low..high` (sampled on a log scale)."""
    if isinstance(spec, list):
        if not spec or any(isinstance(v, (dict, list)) for v in spec):
            raise InputError(f"{where}: expected a non-empty list of values, got {spec!r}")
        return Dimension(key, "categorical", choices=spec)
    if not isinstance(spec, str) or ".." not in spec:
        raise InputError(f"{where}: expected a list of choices, 'low..high' or 'log low..high', got {spec!r}")
    text = spec.strip()
    log = text.startswith("log ")
    low_text, high_text = text.removeprefix("log ").split("..", 1)
    low, high = _number(low_text, where), _number(high_text, where)
    if not low < high:
        raise InputError(f"{where}: the range {spec!r} is empty; write low..high with low < high")
    if log and low <= 0:
        raise InputError(f"{where}: a log range needs a positive low end, got {spec!r}")
    kind = "int" if isinstance(low, int) and isinstance(high, int) else "float"
    return Dimension(key, kind, low=low, high=high, log=log)


def parse_constraint(key: str, spec, where: str) -> Constraint:
    match = re.fullmatch(rf"\s*(<=|>=)\s*({_NUMBER})\s*", str(spec))
    if not match:
        raise InputError(f"{where}: expected '<= NUMBER' or '>= NUMBER', got {spec!r}")
    return Constraint(key, match.group(1), float(match.group(2)))


def _scalar_keys(stage: str) -> tuple[str, ...]:
    return RM_KEYS if stage == "rm" else POLICY_KEYS


def load(path: str | Path, trials: int | None = None, storage: str | None = None) -> Sweep:
    """Read and check a sweep file: every key of the space set at both ends of its range must be a valid
    recipe, the objective and constraints must be numbers the stage's eval.json has, and nothing may
    read the test split. Writes nothing."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"sweep file {path} does not exist")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise InputError(f"sweep file {path} is not valid YAML: {e}") from None
    if not isinstance(raw, dict):
        raise InputError(f"sweep file {path}: the top level must be a mapping of keys ({', '.join(SWEEP_KEYS)})")
    for key in raw:
        if key not in SWEEP_KEYS:
            raise InputError(f"{path}: unknown key {key!r}; accepted keys: {', '.join(SWEEP_KEYS)}")
    for key in ("stage", "recipe", "space", "objective"):
        if key not in raw:
            raise InputError(f"{path}: missing key {key!r}")
    stage = raw["stage"]
    if stage not in PRUNE_DEFAULTS:
        raise InputError(f"{path}: stage must be one of {', '.join(PRUNE_DEFAULTS)}, got {stage!r}")
    recipe_path = Path(raw["recipe"])
    if not recipe_path.is_absolute() and (path.parent / recipe_path).is_file():  # beside the sweep file, else cwd
        recipe_path = Path(os.path.normpath(path.parent / recipe_path))
    if not recipe_path.is_file():
        raise InputError(f"{path}: recipe {raw['recipe']!r} does not exist (looked beside the sweep file and in "
                         f"the current folder)")
    sets = raw.get("set") or []
    if not isinstance(sets, list) or not all(isinstance(s, str) and "=" in s for s in sets):
        raise InputError(f"{path}: set must be a list of 'key=value' strings, got {sets!r}")
    for s in sets:
        if s.split("=", 1)[0].strip() in ("eval.tasks", "eval.gate"):
            raise InputError(f"{path}: set {s!r}: a sweep evaluates every trial on the recipe's eval.dev_tasks; "
                             f"set eval.dev_tasks (never the test split) instead")
    space_raw = raw["space"]
    if not isinstance(space_raw, dict) or not space_raw:
        raise InputError(f"{path}: space must be a non-empty mapping of recipe keys to ranges or choices, "
                         f"for example `train.learning_rate: log 1e-4..1e-2`")
    space = [parse_dimension(str(k), v, f"{path}: space.{k}") for k, v in space_raw.items()]
    for dim in space:
        if dim.key in ("eval.tasks", "eval.dev_tasks", "model", "parent"):
            raise InputError(f"{path}: space.{dim.key}: a sweep does not search over {dim.key}")
    # every corner of the space must be a valid recipe: config names the key and what it accepts
    recipe = config.load_recipe(stage, recipe_path, sets)
    for dim in space:
        for value in dim.corners():
            try:
                config.load_recipe(stage, recipe_path, [*sets, f"{dim.key}={value}"])
            except InputError as e:
                raise InputError(f"{path}: space.{dim.key} = {value!r} is not a valid {stage} recipe setting: "
                                 f"{e}") from None
    if recipe.eval.dev_tasks in data.test_sets(recipe.task):
        raise InputError(f"{path}: eval.dev_tasks is {recipe.eval.dev_tasks!r}, the test split; a sweep tunes on "
                         f"the development split only")
    known = _scalar_keys(stage)
    objective = raw["objective"]
    if objective not in known:
        raise InputError(f"{path}: objective {objective!r} is not a number in a {stage} run's eval.json; "
                         f"choose one of {', '.join(known)}")
    direction = raw.get("direction", "maximize")
    if direction not in ("maximize", "minimize"):
        raise InputError(f"{path}: direction must be maximize or minimize, got {direction!r}")
    constraints_raw = raw.get("constraints") or {}
    if not isinstance(constraints_raw, dict):
        raise InputError(f"{path}: constraints must be a mapping such as `general_ppl_drift: <= 0.1`")
    constraints = []
    for key, spec in constraints_raw.items():
        if key not in known:
            raise InputError(f"{path}: constraints.{key}: not a number in a {stage} run's eval.json; "
                             f"choose from {', '.join(known)}")
        constraints.append(parse_constraint(key, spec, f"{path}: constraints.{key}"))
    prune = raw.get("prune") or {}
    if not isinstance(prune, dict) or any(k not in PRUNE_KEYS for k in prune):
        raise InputError(f"{path}: prune must be a mapping with keys {', '.join(PRUNE_KEYS)}, got {prune!r}")
    metric, metric_direction = PRUNE_DEFAULTS[stage]
    pruner = prune.get("pruner", "median")
    if pruner not in ("median", "hyperband", "none"):
        raise InputError(f"{path}: prune.pruner must be median, hyperband or none, got {pruner!r}")
    if prune.get("direction", metric_direction) not in ("maximize", "minimize"):
        raise InputError(f"{path}: prune.direction must be maximize or minimize, got {prune['direction']!r}")
    n = trials if trials is not None else raw.get("trials", 10)
    seed = raw.get("seed", 0)
    startup = prune.get("startup_trials", 2)
    for key, value in (("trials", n), ("seed", seed), ("prune.startup_trials", startup)):
        if not isinstance(value, int) or isinstance(value, bool) or value < (1 if key == "trials" else 0):
            raise InputError(f"{path}: {key} must be a {'positive' if key == 'trials' else 'non-negative'} "
                             f"integer, got {value!r}")
    return Sweep(path=path, stage=stage, recipe=recipe_path, trials=n, space=space, objective=objective,
                 direction=direction, constraints=constraints, sets=sets,
                 prune_metric=prune.get("metric", metric), prune_direction=prune.get("direction", metric_direction),
                 pruner=pruner, startup_trials=startup, seed=seed, storage=storage or raw.get("storage"),
                 dev_tasks=recipe.eval.dev_tasks, report_to=recipe.train.report_to)


def lookup(result: dict, key: str) -> float | None:
    """A dotted path into eval.json (`judge.task_accuracy`), or None where the run did not measure it."""
    node = result
    for part in key.split("."):
        if not isinstance(node, dict) or node.get(part) is None:
            return None
        node = node[part]
    return float(node) if isinstance(node, (int, float)) and not isinstance(node, bool) else None


# --- running one trial as an ordinary run ---------------------------------------------------


class TrialFailed(Exception):
    """The trial's stage exited with an error; the sweep records it and goes on."""


class Surplus(Exception):
    """The study had its trials when this one started (workers raced): it is dropped, never run."""


def trial_overrides(sweep: Sweep, params: dict) -> list[str]:
    """The trial's settings; evaluation on the dev split (an rm run measures itself on its validation pairs and
    reads no eval keys), and TensorBoard on, since the pruner reads its logs."""
    trackers = sweep.report_to + ["tensorboard"] * ("tensorboard" not in sweep.report_to)
    evaluation = [] if sweep.stage == "rm" else ["eval.enabled=true", f"eval.tasks={sweep.dev_tasks}", "eval.gate=false"]
    return [*sweep.sets, *(f"{k}={v}" for k, v in params.items()), *evaluation, f"train.report_to={','.join(trackers)}"]


def _die_with_parent() -> None:
    """Linux: the child gets SIGTERM when the sweep process dies, so a killed sweep leaves no orphan training."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def read_scalars(log_dir: Path, tag: str) -> list[tuple[int, float]]:
    """(step, value) of one TensorBoard tag from every event file in log_dir."""
    if not log_dir.is_dir():
        return []
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(log_dir), size_guidance={"scalars": 0})
    try:
        events.Reload()
    except Exception:  # noqa: BLE001 - the stage moved its finished .partial folder away while we read it
        return []
    if tag not in events.Tags().get("scalars", []):
        return []
    return [(e.step, e.value) for e in events.Scalars(tag)]


def run_trial(sweep: Sweep, folder: Path, params: dict, report: Callable[[int, float], bool]) -> dict:
    """Run the stage for one trial into `folder` (continuing an interrupted attempt there), feeding the
    validation figure it logs to `report(step, value)`, which answers whether to stop. Returns eval.json."""
    cmd = [sys.executable, "-m", "rlft.cli", sweep.stage, "--recipe", str(sweep.recipe), "--output-dir", str(folder),
           "--resume"]
    for s in trial_overrides(sweep, params):
        cmd += ["--set", s]
    log_path = folder.with_name(folder.name + ".log")
    seen: set[int] = set()
    with open(log_path, "a", encoding="utf-8") as log:
        log.write("$ " + " ".join(cmd) + "\n")
        log.flush()
        child = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                 preexec_fn=_die_with_parent if sys.platform == "linux" else None)
        try:
            while child.poll() is None:
                time.sleep(2)
                for step, value in read_scalars(folder.with_name(folder.name + ".partial") / "logs",
                                                sweep.prune_metric):
                    if step in seen:
                        continue
                    seen.add(step)
                    if report(step, value):
                        child.terminate()
                        child.wait()
                        return {}
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
    if child.returncode != 0:
        tail = log_path.read_text(encoding="utf-8").strip().splitlines()[-3:]
        raise TrialFailed(f"`rlft {sweep.stage}` exited with code {child.returncode}: {' / '.join(tail)} "
                          f"(whole log: {log_path})")
    if not (folder / "eval.json").is_file():
        raise TrialFailed(f"`rlft {sweep.stage}` finished without an eval.json in {folder} (whole log: {log_path})")
    return json.loads((folder / "eval.json").read_text(encoding="utf-8"))


# --- the study ------------------------------------------------------------------------------


def _storage(sweep: Sweep, out: Path):
    import optuna

    # heartbeats are marked experimental since Optuna 2.9 and unchanged since: said once, here, not on every run
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    url = sweep.storage or f"sqlite:///{(out / 'optuna.db').resolve()}"
    for attempt in range(3):  # two workers creating one SQLite file's tables at once: one of them retries
        try:
            return optuna.storages.RDBStorage(
                url, engine_kwargs={"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {},
                heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S)
        except Exception as e:  # noqa: BLE001 - SQLAlchemy and driver errors have no common base worth naming
            if attempt == 2 or not url.startswith("sqlite") or not (out / "optuna.db").is_file():
                raise InputError(f"{sweep.path}: storage {url!r} cannot be opened: {type(e).__name__}: {e}") from None
            time.sleep(1 + attempt)


def _pruner(sweep: Sweep):
    import optuna

    if sweep.pruner == "none":
        return optuna.pruners.NopPruner()
    if sweep.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner()
    return optuna.pruners.MedianPruner(n_startup_trials=sweep.startup_trials)


def sampler(sweep: Sweep, trial_number: int):
    """TPE seeded by (sweep seed, trial number): reproducible, and since trial numbers are unique in a study,
    two workers or a resumed sweep never draw from the same stream. A third of the trials (2 to 10) are
    drawn at random first."""
    import optuna

    return optuna.samplers.TPESampler(seed=sweep.seed * 100_003 + trial_number,
                                      n_startup_trials=max(2, min(10, sweep.trials // 3)))


def study(sweep: Sweep, out: Path):
    """The sweep's study, created or loaded; one named after the recipe and the sweep file, refused if it
    was created with the other direction."""
    import optuna

    name = f"{config.recipe_name(sweep.recipe)}/{sweep.path.stem}"
    study_ = optuna.create_study(study_name=name, storage=_storage(sweep, out), sampler=sampler(sweep, 0),
                                 pruner=_pruner(sweep), direction=sweep.direction, load_if_exists=True)
    stored = study_.direction.name.lower()
    if stored != sweep.direction:
        raise InputError(f"{sweep.path}: direction is {sweep.direction}, but the study {name!r} in its storage was "
                         f"created to {stored}; use another --output-dir or --storage for a new study")
    return study_


def _finished(trial) -> bool:
    """Counts toward the total: completed, pruned, or failed by its own stage (not by a dead worker)."""
    from optuna.trial import TrialState

    return trial.state in (TrialState.COMPLETE, TrialState.PRUNED) or (
        trial.state == TrialState.FAIL and "error" in trial.user_attrs)


def _interrupted(trial) -> bool:
    """Failed because its worker died (stale heartbeat) or was interrupted, not by its own stage."""
    from optuna.trial import TrialState

    return trial.state == TrialState.FAIL and not {"error", "surplus"} & set(trial.user_attrs)


def _slot(trial) -> int:
    """The trial's folder number: its own, or that of the interrupted trial it continues."""
    return trial.user_attrs.get("slot", trial.number)


def retry_interrupted(study_) -> int:
    """Queue once more, with the same values and folder, every trial whose worker died (a stale heartbeat)
    or was interrupted (Ctrl-C) and that nothing else continues; the stage resumes from its checkpoint."""
    from optuna.trial import TrialState

    trials = [t for t in study_.get_trials(deepcopy=False) if "surplus" not in t.user_attrs]
    alive = {_slot(t) for t in trials if t.state != TrialState.FAIL or "error" in t.user_attrs}
    queued = 0
    for t in trials:
        slot = _slot(t)
        attempts = sum(_slot(u) == slot for u in trials)
        if _interrupted(t) and slot not in alive and attempts <= MAX_RETRY:
            study_.enqueue_trial(t.params, user_attrs={"slot": slot})
            alive.add(slot)
            queued += 1
    return queued


Runner = Callable[[Sweep, Path, dict, Callable[[int, float], bool]], dict]


def objective_fn(sweep: Sweep, out: Path, runner: Runner):
    import optuna

    sign = 1.0 if sweep.prune_direction == sweep.direction else -1.0  # the pruner reads the study's direction

    def objective(trial) -> float:
        others = [t for t in trial.study.get_trials(deepcopy=False) if t.number != trial.number]
        busy = {_slot(t) for t in others if _finished(t) or t.state.name == "RUNNING"}
        retry_of = trial.user_attrs.get("slot")
        if (retry_of in busy) if retry_of is not None else len(busy) >= sweep.trials:  # another worker got there first
            trial.set_user_attr("surplus", True)
            raise Surplus()
        trial.study.sampler = sampler(sweep, trial.number)  # TPE samples each value when it is suggested
        params = {dim.key: dim.suggest(trial) for dim in sweep.space}
        slot = trial.user_attrs.get("slot", trial.number)  # a retried trial continues in the first one's folder
        trial.set_user_attr("slot", slot)
        folder = out / f"trial_{slot:03d}"
        trial.set_user_attr("folder", str(folder))

        def report(step: int, value: float) -> bool:
            trial.report(sign * value, step)
            return trial.should_prune()

        try:
            result = runner(sweep, folder, params, report)
        except TrialFailed as e:
            trial.set_user_attr("error", str(e))
            raise
        if not result:
            raise optuna.TrialPruned()
        figures = {key: lookup(result, key) for key in [sweep.objective, *(c.key for c in sweep.constraints),
                                                        sweep.front_key]}
        trial.set_user_attr("figures", figures)
        value = figures[sweep.objective]
        if value is None or not math.isfinite(value):
            trial.set_user_attr("error", f"eval.json has no finite {sweep.objective}")
            raise TrialFailed(f"trial {slot}: eval.json has no finite {sweep.objective}")
        violations = [c.violation(figures[c.key]) if figures[c.key] is not None else 1.0 for c in sweep.constraints]
        trial.set_user_attr("constraints", violations)
        for c, v in zip(sweep.constraints, violations):  # TPE prefers trials whose constraints are all <= 0
            trial.set_constraint(c.key, v)
        return value

    return objective


def run(sweep: Sweep, out: Path, runner: Runner = run_trial) -> dict:
    """Work on the study until it holds `sweep.trials` finished trials, then write the summary."""
    import optuna
    from optuna.trial import TrialState

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if sweep.storage:
        study_ = study(sweep, out)  # an explicit URL is opened before anything is written
        out.mkdir(parents=True, exist_ok=True)
    else:
        out.mkdir(parents=True, exist_ok=True)
        study_ = study(sweep, out)
    runs.atomic_write_json(out / "sweep.json", {"sweep": str(sweep.path), "stage": sweep.stage,
                                                "recipe": str(sweep.recipe), "objective": sweep.objective,
                                                "direction": sweep.direction, "front_key": sweep.front_key})
    objective = objective_fn(sweep, out, runner)
    while True:
        optuna.storages.fail_stale_trials(study_)
        retry_interrupted(study_)
        trials = study_.get_trials(deepcopy=False)
        done = len({_slot(t) for t in trials if _finished(t)})
        if done >= sweep.trials:
            break
        running = sum(t.state == TrialState.RUNNING for t in trials)
        waiting = sum(t.state == TrialState.WAITING for t in trials)
        if waiting or done + running < sweep.trials:
            study_.optimize(objective, n_trials=1, catch=(TrialFailed, Surplus))
            print(progress(study_, sweep), flush=True)
        else:  # the last trials run elsewhere (or their worker died: heartbeats tell after GRACE_S)
            time.sleep(HEARTBEAT_S)
    return summarise(sweep, study_, out)


def progress(study_, sweep: Sweep) -> str:
    from optuna.trial import TrialState

    last = study_.get_trials(deepcopy=False)[-1]
    value = f"{sweep.objective} {last.value:.3f}" if last.state == TrialState.COMPLETE else last.state.name.lower()
    return f"sweep {sweep.path.stem}: trial {last.number} {value} {last.params}"


def summarise(sweep: Sweep, study_, out: Path) -> dict:
    """trials.json and trials.md (every trial), the front of objective against drift, the best feasible
    trial's recipe as best_recipe.yaml, and front.png."""
    rows = []
    for t in study_.get_trials(deepcopy=False):
        if "surplus" in t.user_attrs:
            continue
        figures = t.user_attrs.get("figures", {})
        feasible = all(v <= 0 for v in t.user_attrs.get("constraints", []))
        rows.append({"number": t.number, "state": t.state.name.lower(), "params": t.params,
                     "objective": t.value, "figures": figures,
                     "feasible": feasible if t.state.name == "COMPLETE" else None,
                     "folder": t.user_attrs.get("folder"), "error": t.user_attrs.get("error"),
                     "minutes": round(t.duration.total_seconds() / 60, 2) if t.duration else None})
    complete = [r for r in rows if r["state"] == "complete" and r["figures"].get(sweep.front_key) is not None]
    sign = 1.0 if sweep.direction == "maximize" else -1.0
    lower = -1.0 if any(c.key == sweep.front_key and c.op == ">=" for c in sweep.constraints) else 1.0  # retention
    front = [complete[i]["number"] for i in pareto_front([(sign * r["objective"], lower * r["figures"][sweep.front_key])
                                                          for r in complete])]
    feasible = [r for r in rows if r["state"] == "complete" and r["feasible"]]
    best = max(feasible, key=lambda r: sign * r["objective"]) if feasible else None
    summary = {"sweep": str(sweep.path), "stage": sweep.stage, "objective": sweep.objective,
               "direction": sweep.direction, "split": sweep.dev_tasks,
               "constraints": [f"{c.key} {c.op} {c.bound}" for c in sweep.constraints], "front_key": sweep.front_key,
               "n_trials": len(rows), "states": {s: sum(r["state"] == s for r in rows) for s in
                                                 ("complete", "pruned", "fail", "running", "waiting")},
               "minutes": round(sum(r["minutes"] or 0 for r in rows), 1),
               "best": best, "front": front, "trials": rows}
    runs.atomic_write_json(out / "trials.json", summary)
    runs.atomic_write_text(out / "trials.md", markdown(summary))
    if best is not None:
        runs.atomic_write_text(out / "best_recipe.yaml", best_recipe(sweep, best["params"], best["number"]))
    if complete:

        front_plot(summary, out / "front.png")
    return summary


def best_recipe(sweep: Sweep, params: dict, number: int) -> str:
    """The stage recipe with the fixed settings and the best trial's values written in."""
    values = yaml.safe_load(sweep.recipe.read_text(encoding="utf-8")) or {}
    for s in [*sweep.sets, *(f"{k}={v}" for k, v in params.items())]:
        config.apply_override(values, s)
    head = (f"# Written by `rlft sweep --sweep {sweep.path}`: trial {number}, the best {sweep.objective} on "
            f"{sweep.dev_tasks} within {', '.join(f'{c.key} {c.op} {c.bound}' for c in sweep.constraints) or 'no constraint'}.\n"
            f"# From {sweep.recipe}; evaluate on the test split only once, after choosing.\n")
    return head + yaml.safe_dump(values, sort_keys=False)


def markdown(summary: dict) -> str:
    keys = sorted({k for r in summary["trials"] for k in r["params"]})
    figure_keys = [summary["objective"], *[k for k in sorted({k for r in summary["trials"] for k in r["figures"]})
                                           if k != summary["objective"]]]
    lines = [f"# Sweep {summary['sweep']} ({summary['stage']})", "",
             f"Objective: {summary['direction']} {summary['objective']} on {summary['split']}; constraints: "
             f"{', '.join(summary['constraints']) or 'none'}. Trials: {summary['n_trials']} "
             f"({', '.join(f'{v} {k}' for k, v in summary['states'].items() if v)}), {summary['minutes']} minutes.",
             "", "| trial | state | " + " | ".join(keys + figure_keys) + " | feasible | on front |",
             "|" + "---|" * (len(keys) + len(figure_keys) + 4)]
    for r in summary["trials"]:
        cells = [_cell(r["params"].get(k)) for k in keys] + [_cell(r["figures"].get(k)) for k in figure_keys]
        lines.append(f"| {r['number']} | {r['state']} | " + " | ".join(cells)
                     + f" | {_cell(r['feasible'])} | {'yes' if r['number'] in summary['front'] else ''} |")
    best = summary["best"]
    lines += ["", f"Best feasible trial: {best['number']} ({summary['objective']} {best['objective']:.3f}), "
                  f"written to best_recipe.yaml." if best else "No trial met the constraints."]
    return "\n".join(lines) + "\n"


def _cell(v) -> str:
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 1e-2 and v != 0 else f"{v:.3f}"
    return str(v)
