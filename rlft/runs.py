"""Run folders: where a stage works, how it finishes atomically, and how lineage is checked.

A stage works in `<out>.partial/` (its checkpoints live there, so `--resume` finds them)
and only when everything is saved does it write `manifest.json`, then move the folder to
`<out>`. A complete run is therefore exactly a folder with a complete manifest; a killed
stage leaves a `.partial` folder and never touches an earlier complete run. Only the main
process (rank 0) writes.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import platform
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import rlft
from rlft import distributed
from rlft.errors import InputError

MANIFEST = "manifest.json"
STAGE_FIELDS = ("parent", "model", "model_source", "tokenizer_sha256", "recipe", "recipe_path", "data", "seed", "metrics", "warnings",
                "artifacts", "budget")
"""What every stage hands Run.finish; finish adds stage, status, fingerprint, versions, launch and times.
model_source: for a model converted from a GGUF file, that file and its sha256 (models.model_source), else None."""
DATA_FIELDS = ("name", "sha256", "n_train")


def is_main_process() -> bool:
    return distributed.rank() == 0


def log(message: str) -> None:
    """Tell the user something, once: printed by the main process only, flushed so that it shows at
    once under a launcher. Every stage and the drift budget speak through this."""
    if is_main_process():
        print(message, flush=True)


def wait_for_everyone() -> None:
    """A barrier across processes under accelerate launch; nothing in a single process."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def atomic_write_text(path: Path, text: str) -> None:
    """Write to a temporary name in the same folder, fsync, rename: old or new, never torn."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def atomic_write_json(path: Path, obj: object) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def sha256_json(obj: object) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def read_manifest(run_dir: str | Path, role: str = "run") -> dict:
    """The manifest of a complete run, or an InputError saying why the folder is not one."""
    run_dir = Path(run_dir)
    path = run_dir / MANIFEST
    if not run_dir.is_dir():
        partial = run_dir.with_name(run_dir.name + ".partial")
        hint = f" (an unfinished attempt is in {partial}; finish it with --resume)" if partial.is_dir() else ""
        raise InputError(f"{role} {run_dir} does not exist{hint}")
    if not path.is_file():
        raise InputError(f"{role} {run_dir} has no {MANIFEST}: it is not a finished run")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"{role} {run_dir}: {MANIFEST} is not valid JSON ({e})") from None
    if not isinstance(manifest, dict) or manifest.get("status") != "complete":
        raise InputError(f"{role} {run_dir}: {MANIFEST} does not say status 'complete'; the run did not finish")
    return manifest


def latest_checkpoint(folder: Path) -> Path | None:
    """The newest complete `checkpoint-<step>` folder (one with trainer_state.json)."""
    if not folder.is_dir():
        return None
    steps = []
    for p in folder.glob("checkpoint-*"):
        if p.is_dir() and p.name.split("-")[-1].isdigit() and (p / "trainer_state.json").is_file():
            steps.append((int(p.name.split("-")[-1]), p))
    return max(steps)[1] if steps else None


def versions() -> dict:
    import peft
    import torch
    import transformers
    import trl  # the versions a run used; imported here so that reading run folders stays light

    try:
        git = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                             cwd=Path(__file__).parent, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        git = ""
    return {"python": platform.python_version(), "torch": torch.__version__,
            "transformers": transformers.__version__, "trl": trl.__version__, "peft": peft.__version__,
            "rlft": rlft.__version__, "git": git}


@dataclass
class Run:
    """One stage's run: its final folder, the folder it works in, and what went into it."""

    stage: str
    out: Path
    fingerprint: str
    started: float = field(default_factory=time.time)
    started_at: str = field(default_factory=lambda: dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"))

    @property
    def work(self) -> Path:
        return self.out.with_name(self.out.name + ".partial")

    def resume_from(self) -> Path | None:
        return latest_checkpoint(self.work)

    def finish(self, manifest: dict) -> dict:
        """Write the manifest last, then move the finished work folder into place. Every stage's
        manifest has the same fields (MANIFEST_FIELDS, DESIGN's contract and rlft's lineage); a stage
        that leaves one out is a bug, stopped here before anything is written."""
        manifest = {"warnings": [], "budget": None, **manifest}
        missing = [k for k in STAGE_FIELDS if k not in manifest] + [
            f"data.{k}" for k in DATA_FIELDS if k not in (manifest.get("data") or {})]
        if missing:
            raise ValueError(f"{self.stage}: the manifest lacks {', '.join(missing)}")
        manifest = {"stage": self.stage, "status": "complete", **manifest,
                    "fingerprint": self.fingerprint,
                    "versions": versions(), "launch": {"engine": distributed.engine(), "processes": distributed.world()},
                    "started_at": self.started_at,
                    "finished_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                    "wall_seconds": round(time.time() - self.started, 1)}
        wait_for_everyone()  # every rank has saved its part
        if not is_main_process():
            wait_for_everyone()
            return manifest
        for ckpt in [*self.work.glob("checkpoint-*"), *self.work.glob(".checkpoint-*.tmp")]:
            shutil.rmtree(ckpt)  # the final artifacts are saved; checkpoints were for resuming
        atomic_write_json(self.work / MANIFEST, manifest)
        old = self.out.with_name(self.out.name + ".old")
        if self.out.exists():
            os.replace(self.out, old)
        os.replace(self.work, self.out)
        if old.exists():
            shutil.rmtree(old)
        wait_for_everyone()
        return manifest


def up_to_date(out: Path, inputs: dict) -> bool:
    """A complete run made from exactly these inputs is already in `out`; if so, the user is told."""
    try:
        old = json.loads((Path(out) / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return False
    if old.get("fingerprint") != sha256_json(inputs) or old.get("status") != "complete":
        return False
    same = [k for k in ("recipe", "parent", "data") if inputs.get(k) is not None] or ["inputs"]
    same = ", ".join(same[:-1]) + " and " + same[-1] if len(same) > 1 else same[0]
    log(f"{out} is up to date (same {same}); nothing to do. Use --force to rerun.")
    return True


def start(stage: str, out: Path, inputs: dict, force: bool, resume: bool) -> Run | None:
    """Decide whether the stage runs: None when an identical complete run is already there (said).

    Refuses (exit 2) to replace a complete run made from other inputs without --force, and to
    discard an interrupted attempt without --resume or --force.
    """
    out = Path(out)
    run = Run(stage=stage, out=out, fingerprint=sha256_json(inputs))
    if (out / MANIFEST).is_file() and not force:
        if up_to_date(out, inputs):
            return None
        raise InputError(f"{out} already holds a complete {stage} run made from different inputs "
                         f"(recipe, parent or data changed); pass --force to replace it, or choose "
                         f"another --output-dir")
    if run.work.exists():
        if force and not resume:
            wait_for_everyone()
            if is_main_process():
                shutil.rmtree(run.work)
        elif not resume:
            ckpt = latest_checkpoint(run.work)
            what = f"with {ckpt.name}" if ckpt else "with no checkpoint yet"
            raise InputError(f"{run.work} holds an interrupted {stage} run {what}; rerun with --resume to "
                             f"continue it, or --force to start over")
    stamp = run.work / "inputs.sha256"
    if resume and stamp.is_file() and stamp.read_text().strip() != run.fingerprint:
        raise InputError(f"{run.work} was started from other inputs (recipe, parent or data changed), so "
                         f"--resume cannot continue it; pass --force to start over")
    wait_for_everyone()  # every rank has decided from the same state before rank 0 writes
    if is_main_process():
        run.work.mkdir(parents=True, exist_ok=True)
        atomic_write_text(stamp, run.fingerprint + "\n")
    wait_for_everyone()
    return run


def check_parent(parent: str | Path, model: str, tokenizer_sha: str, stage: str) -> dict:
    """The parent's manifest, after checking it is finished, of the same base model and tokenizer."""
    manifest = read_manifest(parent, role=f"parent run of {stage}")
    if manifest.get("model") != model:
        raise InputError(f"parent run {parent} was trained from model {manifest.get('model')!r}, but this "
                         f"{stage} recipe names {model!r}; set `model` to match or choose another parent")
    if manifest.get("tokenizer_sha256") not in (None, tokenizer_sha):
        raise InputError(f"parent run {parent} used another tokenizer than {model!r} has now; its outputs "
                         f"cannot be continued with this one")
    return manifest
