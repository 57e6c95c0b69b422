"""rlft's metrics as local `evaluate` modules: `evaluate.load(path("rlft_tone"))` works offline."""

from pathlib import Path


def path(name: str) -> str:
    folder = Path(__file__).parent / name
    if not (folder / f"{name}.py").is_file():
        raise ValueError(f"no rlft evaluate module {name!r}; modules: rlft_task_accuracy, rlft_tone")
    return str(folder)
