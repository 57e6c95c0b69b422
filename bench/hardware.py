"""Hardware efficiency: how many tokens per second rlft trains and generates, and how far that is
from what this machine's matrix multiply can do.

    python bench/hardware.py [--repeats 5] [--steps 8] [--packing-steps 3] [--out bench/hardware.json]

1. The machine's dense matrix-multiply rate: fp32 `torch.mm` of two 2048 x 2048 matrices, in the
   thread count training uses (median of `repeats` timings of 10 products each).
2. Base pretraining (`rlft base`'s model and data path): rlft-tiny's architecture from fresh
   weights on packed 256-token blocks, batch 16, transformers' Trainer: training tokens per second
   and model FLOPs utilisation MFU = 6 x parameters x tokens/s / the matmul rate.
3. SFT (`rlft sft`, the recipe's LoRA) with plain padding and with packing (TRL's best-fit
   packing, padding-free): tokens per second, where a token is a real (non-padding) one, and MFU.
   For LoRA the weights' own gradients are skipped, so 6N overstates the work (about 4N is done):
   MFU is given with 6N, as is usual, and the table says so.
4. PPO rollouts (`rlft ppo`, one PPO epoch per update): generated tokens per second during
   rollouts (response tokens sampled / seconds spent in rollout, which also covers the log-prob and
   value forward passes), over the updates after the first, which carries the one-off warm-up.

Medians over `repeats` interleaved rounds; every run's figure is kept in the JSON. Packing against
padding is a ratio taken round by round, judged over its whole range (bench/noise.py).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from noise import ROUNDS, ratios, verdict  # noqa: E402


def matmul_rate(n: int = 2048, products: int = 10) -> float:
    """FLOP/s of fp32 `torch.mm` (2 n^3 per product)."""
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)  # warm-up
    t = time.perf_counter()
    for _ in range(products):
        torch.mm(a, b)
    return 2 * n ** 3 * products / (time.perf_counter() - t)


def base_recipe(steps: int):
    from rlft import config

    return config.load_recipe("base", "recipes/customer_support/base.yaml",
                              ["base.skill_chats=2000", "base.harbor_chats=500", f"train.max_steps={steps}",
                               "train.logging_steps=1000", "train.save_steps=100000", "train.eval_steps=0"])


def base_blocks(steps: int):
    """`rlft base`'s packed blocks, made once: every round trains on the same ones (making them took as
    long as the 8 timed steps)."""
    from rlft import models
    from rlft.stages import base

    recipe = base_recipe(steps)
    return base.pack(models.load_tokenizer("rlft-tiny"), base.mixture(recipe), recipe.base.context_length)


def base_run(steps: int, work: Path, blocks) -> dict:
    """rlft-tiny's architecture from fresh weights, trained as `rlft base` trains it."""
    from transformers import Trainer, TrainingArguments

    from rlft import models
    from rlft.stages import base, trainer_kwargs

    recipe = base_recipe(steps)
    tok = models.load_tokenizer("rlft-tiny")
    model = base.build_model(tok, recipe.base, recipe.seed)
    kwargs = {**trainer_kwargs(recipe, work, has_validation=False), "report_to": [], "disable_tqdm": True}
    args = TrainingArguments(**kwargs)
    trainer = Trainer(model=model, args=args, train_dataset=[{"input_ids": b, "labels": b} for b in blocks])
    runtime = trainer.train().metrics["train_runtime"]
    tokens = steps * recipe.train.batch_size * recipe.base.context_length
    return {"tokens_per_s": tokens / runtime, "parameters": models.n_params(model), "seconds": runtime,
            "tokens": tokens}


def sft_run(steps: int, work: Path, packing: bool, chats: int) -> dict:
    """`rlft sft` for `steps` steps; tokens are the real ones TRL counts (num_tokens). On `chats` chats,
    more than either side trains, so that neither tokenizes the recipe's 2,000 for a few steps."""
    from rlft import cli, models

    out = work / f"sft-packing-{packing}"
    sets = [f"train.max_steps={steps}", f"data.n_train={chats}", "train.eval_steps=0", "train.save_steps=100000", "data.validation=null",
            "eval.enabled=false", "train.early_stopping_patience=0", "train.logging_steps=1",
            f"sft.packing={str(packing).lower()}"]
    args = ["sft", "--recipe", "recipes/customer_support/sft.yaml", "--output-dir", str(out), "--force"]
    assert cli.main(args + [w for s in sets for w in ("--set", s)]) == 0
    log = json.loads((out / "train_log.json").read_text())
    tokens = max(e["num_tokens"] for e in log if "num_tokens" in e)
    runtime = float(log[-1]["train_runtime"])
    n = models.n_params(models.load_causal_lm("rlft-tiny"))
    return {"tokens_per_s": tokens / runtime, "parameters": n, "seconds": runtime, "tokens": tokens}


def ppo_run(updates: int, work: Path) -> dict:
    """A short `rlft ppo` from the SFT run: generated tokens per second in its rollouts."""
    from rlft import cli

    parent = work / "sft-parent"
    if not (parent / "manifest.json").is_file():
        sets = ["train.max_steps=5", "data.validation=null", "eval.enabled=false", "train.early_stopping_patience=0"]
        args = ["sft", "--recipe", "recipes/customer_support/sft.yaml", "--output-dir", str(parent)]
        assert cli.main(args + [w for s in sets for w in ("--set", s)]) == 0
    out = work / "ppo"
    # one PPO epoch, not the recipe's two: the row times the rollouts, and the optimisation between them
    # took longer than the rollouts themselves
    sets = [f"parent={parent}", f"ppo.updates={updates}", "ppo.ppo_epochs=1", "eval.enabled=false",
            "budget.max_kl_task=null", "budget.max_general_ppl_drift=null"]
    args = ["ppo", "--recipe", "recipes/customer_support/ppo.yaml", "--output-dir", str(out), "--force"]
    assert cli.main(args + [w for s in sets for w in ("--set", s)]) == 0
    log = json.loads((out / "train_log.json").read_text())
    batch = json.loads((out / "manifest.json").read_text())["recipe"]["ppo"]["rollout_batch_size"]
    timed = log[1:]  # the first update carries the one-off warm-up
    tokens = sum(e["response/length_mean"] * batch for e in timed)
    seconds = sum(e["time/rollout_s"] for e in timed)
    return {"tokens_per_s": tokens / seconds, "seconds": seconds, "tokens": tokens, "updates": len(timed),
            "rollout_batch_size": batch}


def main() -> None:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=ROUNDS)
    parser.add_argument("--steps", type=int, default=8)
    # a packed step holds about 3.5 times the real tokens of a padded one (31,191 in 8 steps against 8,930):
    # 3 packed steps train about as many tokens as the 8 padded ones
    parser.add_argument("--packing-steps", type=int, default=3)
    parser.add_argument("--ppo-updates", type=int, default=3)
    parser.add_argument("--out", default="bench/hardware.json")
    args = parser.parse_args()
    if args.ppo_updates < 2:  # the first update is warm-up and is not timed: one more is needed
        parser.error("--ppo-updates must be at least 2: the first update's warm-up is left out of the rate")
    out = Path(args.out).resolve()
    os.chdir(Path(__file__).resolve().parents[1])  # the recipes' paths are the repository's

    runs: dict[str, list[dict]] = {"matmul": [], "base": [], "sft_padding": [], "sft_packing": [], "ppo_rollout": []}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        blocks = base_blocks(args.steps)
        # a padded step trains 16 chats and a packed one about 3.5 times as many (see --packing-steps); 256 at
        # least, as on 2026-12-02
        chats = 16 * max(16, args.steps, 4 * args.packing_steps)
        for r in range(args.repeats):
            runs["matmul"].append({"flops_per_s": matmul_rate()})
            runs["base"].append(base_run(args.steps, work / f"base-{r}", blocks))
            runs["sft_padding"].append(sft_run(args.steps, work, False, chats))
            runs["sft_packing"].append(sft_run(args.packing_steps, work, True, chats))
            runs["ppo_rollout"].append(ppo_run(args.ppo_updates, work))
            print(json.dumps({k: v[-1] for k, v in runs.items()}), flush=True)

    rate = statistics.median(m["flops_per_s"] for m in runs["matmul"])
    summary = {"matmul_gflops": rate / 1e9}
    for key in ("base", "sft_padding", "sft_packing"):
        tps = statistics.median(m["tokens_per_s"] for m in runs[key])
        n = runs[key][0]["parameters"]
        summary[key] = {"tokens_per_s": tps, "parameters": n, "mfu_6n": 6 * n * tps / rate}
    summary["packing_speedup"] = ratios([m["tokens_per_s"] for m in runs["sft_packing"]],
                                        [m["tokens_per_s"] for m in runs["sft_padding"]])
    summary["packing_verdict"] = verdict(summary["packing_speedup"], "> 1")
    summary["ppo_rollout"] = {"generated_tokens_per_s": statistics.median(m["tokens_per_s"] for m in runs["ppo_rollout"])}
    result = {"command": "python bench/hardware.py", "machine": f"{platform.machine()}, {torch.get_num_threads()} "
              f"torch threads, torch {torch.__version__}", "repeats": args.repeats, "steps": args.steps,
              "packing_steps": args.packing_steps, "ppo_updates": args.ppo_updates, "summary": summary, "runs": runs}
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
