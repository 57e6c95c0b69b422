"""Wrapper overhead: an rlft SFT or DPO step against the same TRL trainer driven directly.

    python bench/overhead.py [--steps 30] [--repeats 3] [--out bench/overhead.md]

Same model (rlft-tiny), data (the built-in Harbor Goods rows), batch, LoRA, optimizer and
schedule; the figure is TRL's own train_runtime (training loop only, no set-up), median over
repeats, and the ratio rlft / TRL measured in the same run. Target: at most 1.03.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

BATCH = 16


def rlft_runtime(stage: str, steps: int, work: Path, parent: Path | None) -> float:
    from rlft import cli

    sets = [f"train.max_steps={steps}", f"train.batch_size={BATCH}", "train.eval_steps=0", "train.save_steps=100000",
            "data.validation=null", "eval.enabled=false", "train.early_stopping_patience=0"]
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

        rows = data.load("harbor_sft", "conversational", 0, recipe.data.n_train)
        model = models.load_causal_lm("rlft-tiny")
        trainer = SFTTrainer(model=model, args=SFTConfig(**common, assistant_only_loss=True), processing_class=tok,
                             train_dataset=Dataset.from_list(rows), peft_config=lora)
    else:
        from trl import DPOConfig, DPOTrainer

        rows = [{k: r[k] for k in ("prompt", "chosen", "rejected")}
                for r in data.load("harbor_pairs", "preference", 0, recipe.data.n_train)]
        model = models.run_model(parent)
        trainer = DPOTrainer(model=model, args=DPOConfig(**common, beta=recipe.dpo.beta, loss_type=recipe.dpo.loss_type),
                             processing_class=tok, train_dataset=Dataset.from_list(rows), peft_config=lora)
    return float(trainer.train().metrics["train_runtime"])


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", default="bench/overhead.md")
    a = p.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        parent = None
        for stage in ("sft", "dpo"):
            ours, theirs = [], []
            for _ in range(a.repeats):  # interleaved, so drift in the machine's speed hits both
                ours.append(rlft_runtime(stage, a.steps, work, parent))
                theirs.append(trl_runtime(stage, a.steps, work, parent))
            m_ours, m_theirs = statistics.median(ours), statistics.median(theirs)
            rows.append((stage, m_ours, m_theirs, m_ours / m_theirs, ours, theirs))
            parent = work / "rlft-sft"
    lines = [f"# Wrapper overhead ({platform.processor() or platform.machine()}, {a.steps} steps x batch {BATCH}, "
             f"LoRA, rlft-tiny; median of {a.repeats})", "",
             "| stage | rlft s | TRL direct s | ratio | target | runs rlft / TRL |", "|---|---|---|---|---|---|"]
    for stage, o, t, r, ours, theirs in rows:
        verdict = "met" if r <= 1.03 else "missed"
        lines.append(f"| {stage} | {o:.2f} | {t:.2f} | {r:.3f} | <= 1.03 ({verdict}) | "
                     f"{', '.join(f'{x:.2f}' for x in ours)} / {', '.join(f'{x:.2f}' for x in theirs)} |")
    lines += ["", "Command: `python bench/overhead.py` (part of `make bench`). Time is TRL's train_runtime: the "
              "training loop without model loading, data preparation or evaluation."]
    text = "\n".join(lines) + "\n"
    print(text)
    Path(a.out).write_text(text)
    Path(a.out).with_suffix(".json").write_text(json.dumps({
        "command": "python bench/overhead.py", "machine": platform.processor() or platform.machine(),
        "steps": a.steps, "batch": BATCH, "repeats": a.repeats,
        "stages": {stage: {"rlft_s": o, "trl_s": t, "ratio": r, "runs_rlft": ours, "runs_trl": theirs}
                   for stage, o, t, r, ours, theirs in rows}}, indent=2) + "\n")


if __name__ == "__main__":
    main()
