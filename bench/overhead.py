"""Wrapper overhead: an rlft SFT or DPO step against the same TRL trainer driven directly.

    python bench/overhead.py [--repeats 5] [--out bench/overhead.md]

Same model (rlft-tiny), data (the built-in Harbor Goods rows, as many as the steps train: one
epoch, so that neither side tokenizes rows it never sees), batch, LoRA, optimizer and schedule;
the clock is TRL's own train_runtime on both sides (training loop only, no set-up).
Rounds are interleaved (rlft, TRL, rlft, TRL ...); the ratio rlft / TRL is taken round by round
and the verdict reads its whole range (bench/noise.py). Target: at most 1.03.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from noise import ROUNDS, ratios, spread, verdict  # noqa: E402

BATCH = 16
STEPS = {"sft": 20, "dpo": 6}
TARGET = "<= 1.03"


def rlft_runtime(stage: str, steps: int, work: Path, parent: Path | None) -> float:
    from rlft import cli

    sets = [f"train.max_steps={steps}", f"train.batch_size={BATCH}", "train.eval_steps=0", "train.save_steps=100000",
            f"data.n_train={steps * BATCH}", "data.validation=null", "eval.enabled=false"]
    if stage == "sft":  # the one stage that stops early
        sets.append("train.early_stopping_patience=0")
    if parent:
        sets.append(f"parent={parent}")
    out = work / f"rlft-{stage}"
    args = [stage, "--recipe", f"recipes/customer_support/{stage}.yaml", "--output-dir", str(out), "--force"]
    assert cli.main(args + [w for s in sets for w in ("--set", s)]) == 0
    log = json.loads((out / "train_log.json").read_text())
    return float(log[-1]["train_runtime"])


def trl_runtime(stage: str, steps: int, work: Path, parent: Path | None) -> float:
    """The same training through TRL alone, built from the same recipe values."""
    from datasets import Dataset
    from peft import LoraConfig

    from rlft import config, data, models

    recipe = config.load_recipe(stage, f"recipes/customer_support/{stage}.yaml")
    tok = models.load_tokenizer("rlft-tiny")
    lora = LoraConfig(r=recipe.lora.r, lora_alpha=recipe.lora.alpha, target_modules="all-linear", task_type="CAUSAL_LM")
    common = dict(output_dir=str(work / f"trl-{stage}"), per_device_train_batch_size=BATCH, max_steps=steps,
                  learning_rate=recipe.train.learning_rate, warmup_steps=recipe.train.warmup_ratio,
                  lr_scheduler_type=recipe.train.lr_scheduler, logging_steps=recipe.train.logging_steps,
                  save_strategy="no", report_to=[], seed=0, data_seed=0, use_cpu=True, optim=recipe.train.optim,
                  # TRL's configs default to bf16 and gradient checkpointing; the recipe says otherwise
                  bf16=recipe.train.bf16, gradient_checkpointing=recipe.train.gradient_checkpointing,
                  max_length=recipe.data.max_length, disable_tqdm=True)
    if stage == "sft":
        from trl import SFTConfig, SFTTrainer

        rows = data.load("harbor_sft", "conversational", 0, steps * BATCH)
        model = models.load_causal_lm("rlft-tiny")
        trainer = SFTTrainer(model=model, args=SFTConfig(**common, assistant_only_loss=True), processing_class=tok,
                             train_dataset=Dataset.from_list(rows), peft_config=lora)
    else:
        from trl import DPOConfig, DPOTrainer

        rows = [{k: r[k] for k in ("prompt", "chosen", "rejected")}
                for r in data.load("harbor_pairs", "preference", 0, steps * BATCH)]
        model = models.run_model(parent)
        trainer = DPOTrainer(model=model, args=DPOConfig(**common, beta=recipe.dpo.beta, loss_type=recipe.dpo.loss_type),
                             processing_class=tok, train_dataset=Dataset.from_list(rows), peft_config=lora)
    return float(trainer.train().metrics["train_runtime"])


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--repeats", type=int, default=ROUNDS)
    p.add_argument("--out", default="bench/overhead.md")
    a = p.parse_args()
    stages = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        parent = None
        for stage in ("sft", "dpo"):
            ours, theirs = [], []
            for _ in range(a.repeats):  # interleaved, so drift in the machine's speed hits both
                ours.append(rlft_runtime(stage, STEPS[stage], work, parent))
                theirs.append(trl_runtime(stage, STEPS[stage], work, parent))
            r = ratios(ours, theirs)
            stages[stage] = {"steps": STEPS[stage], "rlft_s": spread(ours), "trl_s": spread(theirs), "ratio": r,
                             "verdict": verdict(r, TARGET)}
            parent = work / "rlft-sft"
    lines = [f"# Wrapper overhead ({platform.processor() or platform.machine()}, batch {BATCH}, LoRA, rlft-tiny; "
             f"{a.repeats} interleaved rounds)", "",
             "| stage | steps | rlft s (min / median / max) | TRL direct s | ratio | target | verdict |",
             "|---|---|---|---|---|---|---|"]

    def mmm(d):
        return f"{d['min']:.2f} / {d['median']:.2f} / {d['max']:.2f}"

    for stage, f in stages.items():
        lines.append(f"| {stage} | {f['steps']} | {mmm(f['rlft_s'])} | {mmm(f['trl_s'])} | "
                     f"{f['ratio']['min']:.3f} / {f['ratio']['median']:.3f} / {f['ratio']['max']:.3f} | "
                     f"{TARGET} | {f['verdict']} |")
    lines += ["", "Command: `python bench/overhead.py` (part of `make bench`). Time is TRL's train_runtime: the "
              "training loop without model loading, data preparation or evaluation."]
    text = "\n".join(lines) + "\n"
    print(text)
    Path(a.out).write_text(text)
    Path(a.out).with_suffix(".json").write_text(json.dumps({
        "command": "python bench/overhead.py", "machine": platform.processor() or platform.machine(),
        "batch": BATCH, "repeats": a.repeats, "target": f"rlft / TRL direct train_runtime {TARGET}",
        "stages": stages}, indent=2) + "\n")


if __name__ == "__main__":
    main()
