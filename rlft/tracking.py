"""Where training curves go: `train.report_to`, a list of tensorboard, wandb and mlflow ([] for none).

The stages on TRL trainers hand the list to transformers, whose integrations log every metric the
trainer logs. rlft's own PPO loop logs through `Tracker` below, with the same backends and the same
conventions as those integrations: TensorBoard event files in the run's `logs/`, a Weights & Biases
run in project $WANDB_PROJECT (default `rlft`; WANDB_MODE=offline works without a network), an MLflow
run in the tracking URI MLflow is configured with (a local `mlruns/` by default).
"""

from __future__ import annotations

import importlib.metadata
import os

from rlft.errors import InputError

TRACKERS = {"tensorboard": ("tensorboard",), "wandb": ("wandb",), "mlflow": ("mlflow", "mlflow-skinny")}
"""Each tracker and the installed distributions that provide it."""


def installed(name: str) -> bool:
    """Whether a distribution providing the tracker is installed."""
    for dist in TRACKERS[name]:
        try:
            importlib.metadata.distribution(dist)
            return True
        except importlib.metadata.PackageNotFoundError:
            pass
    return False


def check(report_to: list[str], where: str) -> None:
    """Refuse an unknown tracker, or one whose package is not installed, before anything trains."""
    for name in report_to:
        if name not in TRACKERS:
            raise InputError(f"{where}: train.report_to: unknown tracker {name!r}; choose from "
                             f"{', '.join(TRACKERS)} (or [] for none)")
        if not installed(name):
            raise InputError(f"{where}: train.report_to names {name}, but the {name!r} package is not "
                             f"installed; run `.venv/bin/pip install {name}` or remove it from the list")


def flatten(config: dict, prefix: str = "") -> dict:
    """{"train": {"learning_rate": 1e-3}} -> {"train.learning_rate": 1e-3}: how trackers take parameters."""
    out = {}
    for key, value in config.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


class Tracker:
    """Logs a dict of floats at a step to every backend in report_to (on the main process only)."""

    def __init__(self, report_to: list[str], log_dir: str, run_name: str, config: dict, enabled: bool = True):
        self.writer = self.wandb = self.mlflow = None
        if not enabled:
            return
        if "tensorboard" in report_to:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(log_dir=log_dir)
        if "wandb" in report_to:
            import wandb

            self.wandb = wandb.init(project=os.environ.get("WANDB_PROJECT", "rlft"), name=run_name, dir=log_dir,
                                    config=config)
        if "mlflow" in report_to:
            import mlflow

            self.mlflow = mlflow
            mlflow.start_run(run_name=run_name)
            mlflow.log_params({k: str(v)[:500] for k, v in flatten(config).items()})  # MLflow caps a value at 500

    def log(self, metrics: dict[str, float], step: int) -> None:
        numbers = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))}
        if self.writer is not None:
            for key, value in numbers.items():
                self.writer.add_scalar(key, value, step)
        if self.wandb is not None:
            self.wandb.log(numbers, step=step)
        if self.mlflow is not None:  # MLflow's metric names allow / but not every character tensorboard does
            self.mlflow.log_metrics({k.replace(":", "_"): v for k, v in numbers.items()}, step=step)

    def __enter__(self) -> Tracker:
        return self

    def __exit__(self, *exc) -> None:  # a run that raises still ends its wandb and mlflow runs
        self.close()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        if self.wandb is not None:
            self.wandb.finish()
        if self.mlflow is not None:
            self.mlflow.end_run()
