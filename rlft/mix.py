"""Weight arithmetic on finished runs: interpolation toward the parent, and a soup of several seeds.

`rlft interpolate --run DIR --alphas 0,0.25,0.5,0.75,1` makes one run folder per alpha whose weights
are the parent's plus alpha times the run's change (WiSE-FT, Wortsman et al. 2022, eq. 1:
theta_alpha = (1 - alpha) theta_parent + alpha theta_run). For a LoRA run the change is the adapter's
B A, so scaling B by alpha is exact; for full weights the two state dicts are mixed linearly. Each mix
is evaluated like any run, on the recipe's dev split unless told otherwise (choosing alpha is tuning),
and `rlft compare` draws the curve of task accuracy against drift.

`rlft soup RUN RUN ... --out DIR` averages the change of several runs of one parent (seeds, usually;
"model soups", Wortsman et al. 2022, the uniform soup). Averaging LoRA's A and B factors separately would
not average the changes (the mean of products is not the product of means), so the soup of n adapters of
rank r is one adapter of rank n r whose factors are stacked, with B scaled by 1 / n: exactly the mean of
the n changes B_i A_i.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from rlft import models, runs
from rlft.errors import InputError

ADAPTER_WEIGHTS = "adapter_model.safetensors"


def _artifact(run_dir: Path, manifest: dict) -> tuple[str, Path]:
    art = manifest["artifacts"]
    if "adapter" in art:
        return "adapter", run_dir / art["adapter"]
    if "model" in art:
        return "model", run_dir / art["model"]
    raise InputError(f"run {run_dir} has neither a model nor an adapter among its artifacts")


def _lineage(manifest: dict, extra: dict) -> dict:
    """The manifest of a mixed run: the source's recipe, parent, data and model, plus how it was mixed."""
    keep = ("model", "parent", "recipe", "data", "seed", "tokenizer_sha256", "recipe_path")
    return {**{k: manifest[k] for k in keep if k in manifest}, "model_source": manifest.get("model_source"),
            "metrics": {}, **extra}  # a manifest written before model_source was a field had none: not a GGUF


def _start(stage: str, out: Path, inputs: dict, force: bool) -> runs.Run | None:
    return runs.start(stage, out, inputs, force=force, resume=False)


def scaled_adapter(adapter: Path, alpha: float, dest: Path) -> None:
    """A copy of a LoRA adapter whose change B A is multiplied by alpha (every lora_B scaled)."""
    dest.mkdir(parents=True, exist_ok=True)
    for f in adapter.iterdir():
        if f.name != ADAPTER_WEIGHTS and f.is_file():
            shutil.copy2(f, dest / f.name)
    weights = load_file(str(adapter / ADAPTER_WEIGHTS))
    others = [k for k in weights if ".lora_A." not in k and ".lora_B." not in k]
    if others:  # modules_to_save (a new head, say) are whole weights, not a change to scale
        raise InputError(f"{adapter}: the adapter also trains whole modules ({others[0]}, ...); interpolate such a "
                         f"run by merging it first (sft.merge_adapter: true)")
    save_file({k: v * alpha if ".lora_B." in k else v for k, v in weights.items()}, str(dest / ADAPTER_WEIGHTS))


def interpolate(run_dir: Path, alphas: list[float], out: Path, force: bool = False) -> list[Path]:
    """One finished run folder per alpha under `out` (alpha_0.50, ...); returns them in alpha order."""
    manifest = runs.read_manifest(run_dir)
    kind, artifact = _artifact(run_dir, manifest)
    folders = []
    for alpha in alphas:
        folder = out / f"alpha_{alpha:g}"
        extra = {"interpolation": {"run": str(run_dir), "alpha": alpha, "fingerprint": manifest["fingerprint"]}}
        run = _start(manifest["stage"], folder, extra, force)
        folders.append(folder)
        if run is None:
            continue  # this mix is already there
        if kind == "adapter":
            scaled_adapter(artifact, alpha, run.work / "adapter")
            art = {"adapter": "adapter/"}
        else:
            start = models.starting_model(manifest["recipe"]["model"], manifest.get("parent"))
            ours = models.load_causal_lm(str(artifact))
            theirs = start.state_dict()
            mixed = {k: (1 - alpha) * theirs[k] + alpha * v if v.is_floating_point() else v
                     for k, v in ours.state_dict().items()}
            ours.load_state_dict(mixed)
            ours.save_pretrained(run.work / "model", safe_serialization=True)
            models.load_tokenizer(str(artifact)).save_pretrained(run.work / "model")
            art = {"model": "model/"}
        run.finish({**_lineage(manifest, extra), "artifacts": art})
    # earlier calls' mixes stay in the curve, in alpha order
    index = json.loads((out / "interpolation.json").read_text()) if (out / "interpolation.json").is_file() else {}
    known = dict(zip(index.get("alphas", []), index.get("folders", [])))
    known.update({a: str(f) for a, f in zip(alphas, folders)})
    runs.atomic_write_json(out / "interpolation.json", {**index, "run": str(run_dir), "alphas": sorted(known),
                                                        "folders": [known[a] for a in sorted(known)]})
    return folders


def soup(run_dirs: list[Path], out: Path, force: bool = False) -> Path:
    """The uniform soup of several runs of one parent, as a finished run folder."""
    if len(run_dirs) < 2:
        raise InputError("a soup needs at least two runs")
    manifests = [runs.read_manifest(r) for r in run_dirs]
    first = manifests[0]
    for r, m in zip(run_dirs[1:], manifests[1:]):
        for key in ("stage", "parent", "model"):
            if m.get(key) != first.get(key):
                raise InputError(f"run {r} has {key} {m.get(key)!r} but {run_dirs[0]} has {first.get(key)!r}; a "
                                 f"soup averages runs of one stage from one parent")
    kinds = {_artifact(r, m)[0] for r, m in zip(run_dirs, manifests)}
    if len(kinds) > 1:
        raise InputError(f"runs {', '.join(map(str, run_dirs))} mix adapters and full weights; a soup needs one kind")
    extra = {"soup": {"runs": [str(r) for r in run_dirs], "fingerprints": [m["fingerprint"] for m in manifests]}}
    run = _start(first["stage"], out, extra, force)
    if run is None:
        return out
    artifacts = [_artifact(r, m)[1] for r, m in zip(run_dirs, manifests)]
    if kinds == {"adapter"}:
        stacked_adapter(artifacts, run.work / "adapter")
        art = {"adapter": "adapter/"}
    else:
        models_ = [models.load_causal_lm(str(a)) for a in artifacts]
        states = [m.state_dict() for m in models_]
        mean = {k: sum(s[k] for s in states) / len(states) if v.is_floating_point() else v
                for k, v in states[0].items()}
        models_[0].load_state_dict(mean)
        models_[0].save_pretrained(run.work / "model", safe_serialization=True)
        models.load_tokenizer(str(artifacts[0])).save_pretrained(run.work / "model")
        art = {"model": "model/"}
    extra["soup"]["seeds"] = [m["seed"] for m in manifests]
    run.finish({**_lineage(first, extra), "artifacts": art})  # seed stays the first run's: it seeds the evaluation
    return out


def stacked_adapter(adapters: list[Path], dest: Path) -> None:
    """One LoRA adapter equal to the mean of the given ones' changes: A's stacked by rows, B's by columns
    and divided by n, rank and alpha multiplied by n so that the scale alpha / r is unchanged."""
    configs = [json.loads((a / "adapter_config.json").read_text()) for a in adapters]
    base = configs[0]
    for a, c in zip(adapters[1:], configs[1:]):
        for key in ("r", "lora_alpha", "target_modules", "base_model_name_or_path", "use_rslora"):
            mine, theirs = c.get(key), base.get(key)
            if key == "target_modules" and isinstance(mine, list) and isinstance(theirs, list):
                mine, theirs = set(mine), set(theirs)  # PEFT saves a set as a list in hash order
            if mine != theirs:
                raise InputError(f"adapter {a}: {key} {c.get(key)!r} differs from {adapters[0]}'s {base.get(key)!r}; "
                                 f"a soup stacks adapters of one configuration")
    if base.get("rank_pattern") or base.get("alpha_pattern") or base.get("use_rslora"):
        raise InputError(f"adapter {adapters[0]}: per-module ranks or rsLoRA scaling are not stacked by rlft's soup")
    weights = [load_file(str(a / ADAPTER_WEIGHTS)) for a in adapters]
    n = len(adapters)
    stacked = {}
    for key in weights[0]:
        if ".lora_A." in key:
            stacked[key] = torch.cat([w[key] for w in weights], dim=0)  # (n r, in)
        elif ".lora_B." in key and weights[0][key].dim() == 1:  # lora_bias: added as is, so averaged
            stacked[key] = sum(w[key] for w in weights) / n  # (out,)
        elif ".lora_B." in key:
            stacked[key] = torch.cat([w[key] for w in weights], dim=1) / n  # (out, n r)
        else:
            raise InputError(f"{adapters[0]}: the adapter also trains whole modules ({key}); soup such runs merged")
    dest.mkdir(parents=True, exist_ok=True)
    for f in adapters[0].iterdir():
        if f.is_file() and f.name not in (ADAPTER_WEIGHTS, "adapter_config.json"):
            shutil.copy2(f, dest / f.name)
    (dest / "adapter_config.json").write_text(json.dumps({**base, "r": base["r"] * n,
                                                          "lora_alpha": base["lora_alpha"] * n}, indent=2))
    save_file(stacked, str(dest / ADAPTER_WEIGHTS))
