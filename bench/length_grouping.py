"""Length-grouped batching against plain padding: the same SFT epoch, timed both ways, interleaved.

    python bench/length_grouping.py --out bench/length_grouping.json   # ~4 minutes on 2 cores

Both sides run `rlft sft` with the shipped recipe (recipes/customer_support/sft.yaml) on the same 480
chats for one epoch (30 optimizer steps of 16), with `train.group_by_length` false and true, in the
order A B A B ... for --repeats rounds, one after another in this process (each a fresh `rlft sft`
run: model, data and trainer built anew); round r trains both sides with seed r, so the validation
losses spread over seeds and each round's pair shares its seed. The clock is TRL's own train_runtime
(the training loop only: no loading, no evaluation), the same scope on both sides. Since both sides
train on the same rows, the ratio of training tokens per second is the inverse ratio of the times.
The verdict is *met* only when the whole range of the ratio clears the target (1.3), *within noise*
when the range straddles it. The final validation loss of both sides (over the rounds' seeds) is
reported beside it, and the loss difference of each seed's pair.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
from pathlib import Path

import noise
from noise import spread

ROOT = Path(__file__).resolve().parent.parent
RECIPE = "recipes/customer_support/sft.yaml"
SETS = ["data.n_train=480", "train.num_epochs=1", "train.eval_steps=0", "train.early_stopping_patience=0",
        "train.save_steps=1000"]
TARGET = 1.3


def one_run(grouped: bool, seed: int, out: Path) -> dict:
    from rlft import cli

    sets = [*SETS, f"train.group_by_length={str(grouped).lower()}", f"seed={seed}"]
    args = ["sft", "--recipe", RECIPE, "--output-dir", str(out), "--force", "--no-eval"]
    with open(os.devnull, "w") as null, contextlib.redirect_stdout(null):
        if cli.main(args + [w for s in sets for w in ("--set", s)]) != 0:
            raise SystemExit(f"rlft sft {' '.join(sets)} failed")
    log = json.loads((out / "train_log.json").read_text())
    runtime = next(e["train_runtime"] for e in log if "train_runtime" in e)
    manifest = json.loads((out / "manifest.json").read_text())
    return {"train_runtime_s": runtime, "eval_loss": manifest["metrics"].get("eval_loss")}


def tokens() -> int:
    from rlft import data, models

    tok = models.load_tokenizer("rlft-tiny")
    rows = data.load("harbor_sft", "conversational", 0, 480)
    return sum(len(tok(tok.apply_chat_template(r["messages"], tokenize=False))["input_ids"]) for r in rows)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default=str(ROOT / "bench" / "length_grouping.json"))
    p.add_argument("--repeats", type=int, default=noise.ROUNDS)
    args = p.parse_args()
    out = Path(args.out).resolve()
    os.chdir(ROOT)  # the recipe's paths are the repository's
    n_tokens = tokens()
    runs: dict[str, list[dict]] = {"padding": [], "grouped": []}
    with tempfile.TemporaryDirectory(prefix="rlft-bench-") as tmp:
        for r in range(args.repeats):
            for side in ("padding", "grouped"):  # A B A B ...: drift in the machine's speed hits both sides
                runs[side].append(one_run(side == "grouped", r, Path(tmp) / f"{side}{r}"))
                print(f"round {r + 1}/{args.repeats} {side}: {runs[side][-1]}", flush=True)
    ratio = noise.ratios([p["train_runtime_s"] for p in runs["padding"]], [g["train_runtime_s"] for g in runs["grouped"]])
    ratios, verdict = ratio["values"], noise.verdict(ratio, f">= {TARGET}")
    result = {"command": "python bench/length_grouping.py", "recipe": RECIPE, "sets": SETS, "training_tokens": n_tokens,
              "tokens_per_s": {side: spread([n_tokens / x["train_runtime_s"] for x in rs]) for side, rs in runs.items()},
              "eval_loss": {side: spread([x["eval_loss"] for x in rs]) for side, rs in runs.items()},
              "eval_loss_difference": spread([g["eval_loss"] - p["eval_loss"]
                                              for p, g in zip(runs["padding"], runs["grouped"])]),
              "ratio": ratio, "target": f"grouped / padding tokens per second >= {TARGET}",
              "verdict": verdict, "runs": runs}
    out.write_text(json.dumps(result, indent=1) + "\n")
    t = result["tokens_per_s"]
    print(f"tokens/s padding {t['padding']['median']:.0f} [{t['padding']['min']:.0f}, {t['padding']['max']:.0f}], "
          f"grouped {t['grouped']['median']:.0f} [{t['grouped']['min']:.0f}, {t['grouped']['max']:.0f}]; "
          f"ratio {result['ratio']['median']:.2f} [{min(ratios):.2f}, {max(ratios):.2f}] -> {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
