"""How much of a recipe's training batches is real tokens rather than padding, with plain batches and with
length-grouped ones (`train.group_by_length`): counted from its rows and tokenizer, no model loaded.

    python bench/padding.py recipes/smollm2/dpo.yaml [--stage dpo] [--json]

The rows are those the stage trains on (the recipe's data.train, n_train, system_prompt and seed), each
chat tokenized whole by the model's chat template. An SFT batch is padded to its longest chat; a DPO or
reward-model batch holds each pair's chosen and rejected chat, every one padded to the longest of the
batch (TRL's DataCollatorForPreference). Plain batches follow a shuffle seeded by the recipe's seed (the
trainer's own shuffle differs; the share varies little from one to another); grouped batches are the
first epoch of the sampler rlft installs (rlft.stages.group_by_length), with its lengths and its seed.
Training time on CPU follows the padded tokens, attention aside: the share says what grouping can save.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def rows_and_lengths(recipe, tok, pairs: bool) -> tuple[list[list[int]], list[int]]:
    """Each training row's sequences (one chat for SFT, chosen and rejected for a pair) as token counts, and
    the length rlft groups it by (the sum of the row's token columns, as TRL tokenizes them)."""
    from rlft import data

    rows = data.load(recipe.data.train, "preference" if pairs else "conversational", recipe.seed,
                     recipe.data.n_train, recipe.data.system_prompt, recipe.data.augment, first_n=True,
                     task=recipe.task)

    def n(messages: list[dict], prompt: bool = False) -> int:
        return len(tok.apply_chat_template(messages, add_generation_prompt=prompt, tokenize=True, return_dict=False))

    sequences, keys = [], []
    for r in rows:
        if pairs:
            p = n(r["prompt"], prompt=True)
            c, j = n(r["prompt"] + r["chosen"]), n(r["prompt"] + r["rejected"])
            sequences.append([c, j])
            keys.append(p + (c - p) + (j - p))  # prompt_ids, chosen_ids, rejected_ids
        else:
            sequences.append([n(r["messages"])])
            keys.append(sequences[-1][0])
    return sequences, keys


def share(sequences: list[list[int]], order: list[int], batch: int) -> dict:
    """Real and padded tokens over one epoch of batches taken in `order`."""
    real = padded = 0
    for start in range(0, len(order), batch):
        rows = [sequences[i] for i in order[start:start + batch]]
        longest = max(max(r) for r in rows)
        real += sum(sum(r) for r in rows)
        padded += longest * sum(len(r) for r in rows)
    return {"real_tokens": real, "padded_tokens": padded, "real_share": real / padded}


def count(recipe_path: str, stage: str) -> dict:
    import torch
    from transformers.trainer_pt_utils import LengthGroupedSampler

    from rlft import config, models

    recipe = config.load_recipe(stage, recipe_path, [])
    tok = models.load_tokenizer(recipe.model, recipe.trust_remote_code)
    sequences, keys = rows_and_lengths(recipe, tok, pairs=stage != "sft")
    batch = recipe.train.batch_size * recipe.train.grad_accum
    plain = torch.randperm(len(keys), generator=torch.Generator().manual_seed(recipe.seed)).tolist()
    seeded = torch.Generator().manual_seed(recipe.seed * 1_000)  # as rlft.stages.group_by_length seeds epoch 0
    grouped = list(LengthGroupedSampler(batch, lengths=keys, generator=seeded))
    return {"recipe": recipe_path, "model": recipe.model, "rows": len(keys), "batch": batch,
            "plain": share(sequences, plain, batch), "grouped": share(sequences, grouped, batch)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("recipe", help="an sft, dpo or rm recipe")
    p.add_argument("--stage", choices=["sft", "dpo", "rm"], help="the recipe's stage (default: its file name's start)")
    p.add_argument("--json", action="store_true", help="print the counts as JSON")
    args = p.parse_args()
    stage = args.stage or next((s for s in ("sft", "dpo", "rm") if Path(args.recipe).name.startswith(s)), None)
    if stage is None:
        p.error(f"{args.recipe}: say the stage with --stage (its file name starts with none of sft, dpo, rm)")
    result = count(args.recipe, stage)
    if args.json:
        print(json.dumps(result, indent=1))
        return 0
    print(f"{result['recipe']}: {result['rows']} rows of {result['model']}, batches of {result['batch']}")
    for side in ("plain", "grouped"):
        r = result[side]
        print(f"  {side:8s} {r['real_tokens']:,} real of {r['padded_tokens']:,} tokens: {r['real_share']:.0%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
