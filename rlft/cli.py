"""`rlft <stage> --recipe FILE [--set key=value]... [--output-dir DIR] [--force] [--resume]`.

Also `rlft eval --run DIR`, `rlft verdict --run DIR`, `rlft compare RUN... --out DIR`,
`rlft sweep --sweep FILE`, `rlft interpolate --run DIR`, `rlft soup RUN... --out DIR` and
`rlft data export NAME --out DIR`.
Bad input of any kind ends with one paragraph on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import warnings
from pathlib import Path

from rlft.errors import InputError, TrainingFault

TRAINING_STAGES = ("base", "sft", "dpo", "rm", "ppo", "grpo")
POLICY_STAGES = ("sft", "dpo", "ppo", "grpo")  # stages whose result is a policy the harness evaluates
TRL_HEAD_STAGES = ("sft", "dpo", "grpo")  # stages whose TRL trainers may score tokens with TRL's fused LM head
PREVIOUS = {"sft": None, "dpo": "sft", "rm": None, "ppo": "sft", "grpo": "sft", "base": None}


def _quiet() -> None:
    """The user sees progress and results, not a wall of library warnings."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    import logging

    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)


class _HelpConfig(argparse.Action):
    """`rlft <stage> --help-config`: the recipe keys the stage reads, with type, default and documentation
    (config.help_text). Like --help it needs no recipe, writes nothing and exits 0."""

    def __init__(self, option_strings: list[str], dest: str, stage: str, help: str | None = None):
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, help=help)
        self.stage = stage

    def __call__(self, parser, namespace, values, option_string=None):
        from rlft import config

        try:
            print(config.help_text(self.stage), flush=True)
        except BrokenPipeError:  # `| head` closed the pipe: stop quietly (Python's docs, "Note on SIGPIPE")
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        parser.exit()


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rlft", description="RL and preference tuning of language models.")
    sub = p.add_subparsers(dest="command", required=True)
    for stage in TRAINING_STAGES:
        s = sub.add_parser(stage, help=f"run the {stage} stage")
        s.add_argument("--recipe", required=True, help="recipe YAML (e.g. recipes/customer_support/sft.yaml)")
        s.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a recipe key")
        s.add_argument("--output-dir", help="run folder (default runs/<recipe name>/<stage>)")
        s.add_argument("--force", action="store_true", help="replace a complete run or an interrupted attempt")
        s.add_argument("--resume", action="store_true", help="continue an interrupted run from its checkpoint")
        s.add_argument("--print-config", action="store_true", help="print the resolved recipe and exit")
        s.add_argument("--help-config", action=_HelpConfig, stage=stage,
                       help="list the recipe keys this stage reads, with type, default and meaning, and exit")
        s.add_argument("--no-eval", action="store_true", help="skip the evaluation at the end")
        if stage == "base":  # a recipe never writes outside its run folder; the command line may
            s.add_argument("--export", metavar="DIR", help="also copy the finished model to DIR "
                                                           "(make base: rlft/assets/rlft-tiny)")
    e = sub.add_parser("eval", help="evaluate a finished run (writes eval.json)")
    e.add_argument("--run", required=True)
    e.add_argument("--tasks", help="tasks file in the contract format (default: the run's recipe)")
    e.add_argument("--out", help="where to write eval.json (default: inside the run)")
    d = sub.add_parser("data", help="built-in data sets")
    dsub = d.add_subparsers(dest="data_command", required=True)
    ls = dsub.add_parser("list", help="list the built-in data sets")
    x = dsub.add_parser("export", help="write a built-in data set as JSONL")
    x.add_argument("name")
    for p_ in (ls, x):
        p_.add_argument("--task", help="whose data sets: harbor (the default), or a task module of your own "
                        "(a recipe's `task`, e.g. my_package.my_task)")
    x.add_argument("--out", required=True, help="folder to write NAME.jsonl into")
    x.add_argument("--seed", type=int, default=0)
    x.add_argument("-n", type=int, default=2000, help="rows for generated sets")
    a = dsub.add_parser("augment", help="write a data set with its user turns noised, to read before training on it")
    a.add_argument("data", help="a built-in set or a data file")
    a.add_argument("--out", required=True, help="folder to write <name>.augmented.jsonl into")
    rates = a.add_mutually_exclusive_group(required=True)
    rates.add_argument("--recipe", help="take the rates from this recipe's data.augment")
    rates.add_argument("--rates", help="rates as NAME=RATE,..., e.g. typos=0.05,case=0.3")
    a.add_argument("--seed", type=int, default=0)
    a.add_argument("-n", type=int, default=2000, help="rows for generated sets")
    w = sub.add_parser("sweep", help="hyperparameter search (Optuna) on the dev split under drift constraints")
    w.add_argument("--sweep", required=True, help="sweep file (e.g. recipes/customer_support/sweeps/sft.yaml)")
    w.add_argument("--trials", type=int, help="total trials of the study, shared by every worker (default: the file's)")
    w.add_argument("--output-dir", help="sweep folder (default runs/<recipe name>/sweep_<sweep file name>)")
    w.add_argument("--storage", help="Optuna storage URL shared by workers on several machines, e.g. "
                                     "postgresql://user:pass@host/db (default: SQLite in the sweep folder)")
    i = sub.add_parser("interpolate", help="mixes of a run with its parent (WiSE-FT), each evaluated")
    i.add_argument("--run", required=True)
    i.add_argument("--alphas", default="0,0.25,0.5,0.75,1", help="weights of the run's change (0: the parent, 1: the run)")
    i.add_argument("--out", help="folder of the mixes (default: <run>_interpolate beside the run)")
    i.add_argument("--tasks", help="what to evaluate on (default: the recipe's eval.dev_tasks, since choosing alpha "
                                   "is tuning; pass the test split only to report the alpha you chose)")
    i.add_argument("--force", action="store_true", help="replace mixes made from another version of the run")
    o = sub.add_parser("soup", help="the uniform average of several runs of one parent (seeds), evaluated")
    o.add_argument("runs", nargs="+")
    o.add_argument("--out", required=True)
    o.add_argument("--force", action="store_true")
    o.add_argument("--no-eval", action="store_true")
    c = sub.add_parser("compare", help="report, JSON and plots comparing finished, evaluated runs")
    c.add_argument("runs", nargs="+")
    c.add_argument("--out", required=True)
    t = sub.add_parser("table", help="print the results table of finished runs")
    t.add_argument("runs", nargs="+")
    v = sub.add_parser("verdict", help="ship or not against the parent, from eval.json (exit 0 ship, 1 not, 2 bad input)")
    v.add_argument("--run", required=True)
    v.add_argument("--out", help="also write the verdict as JSON here")
    v.add_argument("--max-ppl-drift", type=float, help="budget on perplexity drift against the parent "
                   "(default: the recipe's budget.max_general_ppl_drift, else 0.10)")
    v.add_argument("--max-kl", type=float, help="budget on KL to the parent (default: the recipe's budget.max_kl_task)")
    return p


def verdict_main(run: Path, out: str | None = None, max_ppl_drift: float | None = None,
                 max_kl: float | None = None) -> int:
    from rlft import runs
    from rlft.eval import verdict

    result = verdict.verdict(run, max_ppl_drift, max_kl)
    print(verdict.screen(result))
    if out and runs.is_main_process():
        runs.atomic_write_json(Path(out), result)
    return 0 if result["ship"] else 1


def stage_main(args) -> int:
    from rlft import config, runs

    name = config.recipe_name(args.recipe)
    previous = PREVIOUS.get(args.command)  # the stage's default parent, used where the recipe names none
    recipe = config.load_recipe(args.command, args.recipe, args.set, default_parent=previous and str(
        Path(os.environ.get("RLFT_RUNS", "runs")) / name / previous))
    # runs/<recipe folder>/<recipe file>: sft.yaml -> sft, rm_minilm.yaml -> rm_minilm
    out = Path(args.output_dir or Path(os.environ.get("RLFT_RUNS", "runs")) / name / Path(args.recipe).stem)
    if args.print_config:
        print(json.dumps(config.to_dict(recipe), indent=2))
        return 0
    evaluate = recipe.eval.enabled and not args.no_eval  # the recipe stays as loaded: its fingerprint too
    from rlft import distributed

    quant = getattr(recipe, "quant", None)
    distributed.check_launch(args.command, bool(quant and quant.load_in_4bit))
    if distributed.world() > 1:
        from accelerate import PartialState

        PartialState()  # under accelerate launch: join the process group before any run folder is touched
    if args.command == "base":
        from rlft.stages import base as stage
    elif args.command == "sft":
        from rlft.stages import sft as stage
    elif args.command == "dpo":
        from rlft.stages import dpo as stage
    elif args.command == "rm":
        from rlft.stages import reward as stage
    elif args.command == "ppo":
        from rlft.stages import ppo as stage
    elif args.command == "grpo":
        from rlft.stages import grpo as stage
    else:
        raise InputError(f"unknown stage {args.command!r}")
    tasks = None  # a tasks file is read once, now, so that a bad one stops us before training; built-in sets later
    if evaluate and args.command in POLICY_STAGES:
        from rlft import data
        from rlft.eval import harness

        if recipe.eval.tasks not in data.names(recipe.task):
            tasks = harness.load_tasks(recipe.eval.tasks, recipe.seed, recipe.eval.n_tasks, recipe.data.system_prompt,
                                       recipe.task)
    from transformers import set_seed

    from rlft.stages import scored_positions_on_cpu

    set_seed(recipe.seed)  # everything random before the trainer seeds itself (a new head, LoRA's A) follows the seed
    # TRL's log-prob head projects only the scored positions on CPU too: the same figures, faster. The
    # stages that do not train through TRL (rlft's own PPO, base) do not import it for this.
    switch = scored_positions_on_cpu() if args.command in TRL_HEAD_STAGES else contextlib.nullcontext()
    with switch:
        manifest = stage.run(recipe, out, recipe_path=args.recipe, force=args.force, resume=args.resume)
    if args.command == "base" and args.export and runs.is_main_process():
        stage.export(out, Path(args.export))
    # a finished run whose evaluation was killed is evaluated now: rerunning the command finishes the job
    unevaluated = manifest is not None or ((out / "manifest.json").is_file() and not (out / "eval.json").is_file())
    if unevaluated and evaluate and args.command in POLICY_STAGES and runs.is_main_process():
        harness.evaluate_run(out, task_rows=tasks)
    if runs.is_main_process() and (out / "eval.json").is_file() and args.command in POLICY_STAGES:
        from rlft.eval import report

        shown = [Path(recipe.parent), out] if recipe.parent and (Path(recipe.parent) / "eval.json").is_file() else [out]
        print(report.stage_table(shown))
    if recipe.eval.gate and args.command in POLICY_STAGES and runs.is_main_process():
        return verdict_main(out)  # the run stays on disk either way; the exit code says ship or not
    return 0


def augment_main(args) -> int:
    """`rlft data augment`: the rows as a stage would train on them, each with its user turns before noise."""
    from rlft import config, data, tasks
    from rlft.data import augment

    if args.recipe:
        recipe, errors = None, {}
        for stage in config.STAGES:  # data.augment reads the same in every stage's recipe
            try:
                recipe = config.load_recipe(stage, args.recipe)
                break
            except InputError as e:
                errors[stage] = str(e)
        if recipe is None:
            raise InputError(errors["sft"])  # what is wrong with it as an sft recipe, the likeliest meant
        rates, seed, task = recipe.data.augment, recipe.seed, recipe.task
        if not rates:
            raise InputError(f"recipe {args.recipe} has no data.augment to apply")
    else:
        rates, seed, task = augment.parse(args.rates), args.seed, tasks.DEFAULT
    raw = data.builtin(args.data, seed, args.n, task) if args.data in data.names(task) else \
        [row for _, row in data.read_rows(args.data)]  # read_rows refuses an empty file
    noised = augment.augment_rows(raw, rates, seed)
    field = "messages" if "messages" in raw[0] else "prompt"
    rows = [{**new, "user_turns_before": [m["content"] for m in old[field] if m["role"] == "user"]}
            if isinstance(old.get(field), list) else new for old, new in zip(raw, noised)]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{Path(args.data).stem}.augmented.jsonl"
    data.write_jsonl(rows, path)
    changed = sum(a != b for a, b in zip(raw, noised))
    print(f"wrote {len(rows)} rows to {path}; {changed} have noised user turns ({', '.join(f'{k} {v}' for k, v in rates.items())})")
    return 0


def interpolate_main(args) -> int:
    from rlft import config, mix, runs
    from rlft.eval import harness

    try:
        alphas = [float(a) for a in args.alphas.split(",") if a.strip()]
    except ValueError:
        raise InputError(f"--alphas {args.alphas!r}: expected numbers separated by commas, e.g. 0,0.5,1") from None
    if not alphas:
        raise InputError("--alphas: give at least one weight, e.g. 0,0.5,1")
    run = Path(args.run.rstrip("/"))
    manifest = runs.read_manifest(run)
    tasks = args.tasks or config.from_manifest(manifest, str(run / "manifest.json")).eval.dev_tasks
    out = Path(args.out or run.with_name(run.name + "_interpolate"))
    folders = mix.interpolate(run, alphas, out, force=args.force)
    curve = []
    for alpha, folder in zip(alphas, folders):
        ev = harness.evaluate_run(folder, tasks_file=tasks)
        curve.append({"alpha": alpha, "run": str(folder), "split": ev["split"],
                      "judge_task_accuracy": (ev.get("judge") or {}).get("task_accuracy"),
                      "task_accuracy": ev["task_accuracy"], "general_ppl_drift": ev["general_ppl_drift"],
                      "retention": (ev.get("retention") or {}).get("retention"), "kl_task_base": ev["kl_task_base"]})
    summary = json.loads((out / "interpolation.json").read_text())
    runs.atomic_write_json(out / "interpolation.json", {**summary, "tasks": tasks, "curve": curve})
    print(f"{'alpha':>6} {'judged acc':>10} {'rule acc':>9} {'ppl drift':>9} {'retention':>9}   on {tasks}")
    for c in curve:
        cells = [c["judge_task_accuracy"], c["task_accuracy"], c["general_ppl_drift"], c["retention"]]
        print(f"{c['alpha']:>6.2f} " + " ".join(f"{v:>9.3f}" if v is not None else f"{'–':>9}" for v in cells))
    print(f"wrote {len(folders)} mixes and interpolation.json to {out}; `rlft compare {out} --out DIR` draws the curve")
    return 0


def main(argv: list[str] | None = None) -> int:
    _quiet()
    args = _parser().parse_args(argv)
    try:
        if args.command in TRAINING_STAGES:
            return stage_main(args)
        if args.command == "eval":
            from rlft.eval import harness

            result = harness.evaluate_run(Path(args.run), tasks_file=args.tasks, out=args.out)
            judged = f"judged accuracy {result['judge']['task_accuracy']:.3f}, " if result.get("judge") else ""
            print(f"{result['split']} split: {judged}rule accuracy {result['task_accuracy']:.3f}, "
                  f"win rate vs parent {result['win_rate_vs_parent']:.3f}, tone {result['tone_score']:.3f}")
            return 0
        if args.command == "sweep":
            from rlft import config, sweep

            spec = sweep.load(args.sweep, args.trials, args.storage)
            out = Path(args.output_dir or Path(os.environ.get("RLFT_RUNS", "runs")) / config.recipe_name(spec.recipe)
                       / f"sweep_{spec.path.stem}")
            try:
                summary = sweep.run(spec, out)
            except KeyboardInterrupt:
                print(f"rlft: sweep interrupted; run the same command again to continue it ({out})", file=sys.stderr)
                return 130
            print((out / "trials.md").read_text())
            print(f"wrote {out}/trials.md, trials.json" + (", best_recipe.yaml" if summary["best"] else "")
                  + (", front.png" if summary["front"] else ""))
            return 0
        if args.command == "interpolate":
            return interpolate_main(args)
        if args.command == "soup":
            from rlft import mix
            from rlft.eval import harness, report

            out = mix.soup([Path(r) for r in args.runs], Path(args.out), force=args.force)
            if not args.no_eval:
                harness.evaluate_run(out)
                print(report.stage_table([Path(r) for r in args.runs] + [out]))
            print(f"wrote the soup of {len(args.runs)} runs to {out}")
            return 0
        if args.command == "compare":
            from rlft.eval import compare

            result = compare.report([Path(r) for r in args.runs], Path(args.out))
            print((Path(args.out) / "report.md").read_text())
            print(f"wrote {args.out}/report.md, report.json and {len(result['plots'])} plots")
            return 0
        if args.command == "verdict":
            return verdict_main(Path(args.run), args.out, args.max_ppl_drift, args.max_kl)
        if args.command == "table":
            from rlft.eval import report

            print(report.stage_table([Path(r) for r in args.runs]))
            return 0
        if args.command == "data":
            from rlft import data, tasks

            if args.data_command == "list":
                print("\n".join(data.names(args.task or tasks.DEFAULT)))
                return 0
            if args.data_command == "augment":
                return augment_main(args)
            rows = data.builtin(args.name, args.seed, args.n, args.task or tasks.DEFAULT)
            out = Path(args.out)
            out.mkdir(parents=True, exist_ok=True)
            data.write_jsonl(rows, out / f"{args.name}.jsonl")
            print(f"wrote {len(rows)} rows to {out / (args.name + '.jsonl')}")
            return 0
    except InputError as e:
        print(f"rlft: error: {e}", file=sys.stderr)
        return 2
    except TrainingFault as e:
        print(f"rlft: training stopped: {e}", file=sys.stderr)
        return 3
    return 1


if __name__ == "__main__":
    sys.exit(main())
