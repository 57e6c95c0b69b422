"""How much of a recipe's training batches is real tokens rather than padding, with plain batches and with
length-grouped ones (`train.group_by_length`): counted from its rows and tokenizer, no model loaded.

    python bench/padding.py recipes/smollm2/dpo.yaml [--stage dpo] [--json]

The rows are those the stage trains on (the recipe's data.train, n_train, system_prompt and seed), each
chat tokenized whole by the model's chat template. An SFT batch (train.batch_size rows: what one forward
pads) is padded to its longest chat; a DPO or reward-model batch holds each pair's chosen and rejected
chat, every one padded to the longest of the batch (TRL's DataCollatorForPreference, DPO's and the
reward trainer's). Plain batches follow a shuffle seeded by the recipe's seed (the trainer's own shuffle
differs; the share varies little from one to another); grouped batches are the first epoch of the
sampler rlft installs (rlft.stages.length_grouped_sampler), with the lengths rlft gives it. Validation rows
(data.validation, n_val) are counted in file order and longest first, as rlft evaluates them under grouping.
Training time on CPU follows the padded tokens, attention aside: the share says what grouping can save.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def rows_and_lengths(recipe, tok, stage: str, split: str = "train") -> tuple[list[list[int]], list[int]]:
    """Each training row's sequences as token counts (one chat for SFT; chosen and rejected for a pair), cut
    at data.max_length as TRL cuts them (an RM pair longer than that is dropped, as TRL drops it), and the
    length rlft groups the row by: the sum of the row's token columns as TRL tokenizes them (SFT input_ids;
    DPO prompt_ids, chosen_ids, rejected_ids; RM chosen_ids, rejected_ids, each a whole chat)."""
    from rlft import data

    pairs, limit, kind = stage != "sft", recipe.data.max_length, "preference" if stage != "sft" else "conversational"
    rows = (data.load(recipe.data.train, kind, recipe.seed, recipe.data.n_train, recipe.data.system_prompt,
                      recipe.data.augment, first_n=True, task=recipe.task) if split == "train" else
            data.load(recipe.data.validation, kind, recipe.seed, recipe.data.n_val, recipe.data.system_prompt,
                      task=recipe.task))  # as the stages load them

    def n(messages: list[dict], prompt: bool = False) -> int:
        return len(tok.apply_chat_template(messages, add_generation_prompt=prompt, tokenize=True, return_dict=False))

    sequences, keys = [], []
    for r in rows:
        if not pairs:
            chat = n(r["messages"])
            sequences.append([min(chat, limit)])
            keys.append(chat)
            continue
        p, c, j = n(r["prompt"], prompt=True), n(r["prompt"] + r["chosen"]), n(r["prompt"] + r["rejected"])
        if stage == "rm" and max(c, j) > limit:
            continue
        sequences.append([min(c, limit), min(j, limit)])
        keys.append(c + j if stage == "rm" else c + j - p)  # DPO: the prompt once, then both answers
    return sequences, keys


def share(sequences: list[list[int]], order: list[int], batch: int) -> dict:
    """Real and padded tokens over one epoch of batches of `batch` rows taken in `order`."""
    real = padded = 0
    for start in range(0, len(order), batch):
        rows = [sequences[i] for i in order[start:start + batch]]
        longest = max(max(r) for r in rows)
        real += sum(sum(r) for r in rows)
        padded += longest * sum(len(r) for r in rows)
    return {"real_tokens": real, "padded_tokens": padded, "real_share": real / padded}


def count(recipe_path: str, stage: str) -> dict:
    import torch

    from rlft import config, models
    from rlft.stages import length_grouped_sampler, longest_first

    recipe = config.load_recipe(stage, recipe_path, [])
    if stage == "rm" and recipe.rm.backbone != "policy":
        raise SystemExit(f"{recipe_path}: rm.backbone {recipe.rm.backbone} trains on plain text with its own "
                         f"tokenizer; this count knows the policy backbone's chats only")
    tok = models.load_tokenizer(recipe.model, recipe.trust_remote_code)
    sequences, keys = rows_and_lengths(recipe, tok, stage)
    batch = recipe.train.batch_size  # what one forward pads (a process's batch, each of grad_accum of them)
    plain = torch.randperm(len(keys), generator=torch.Generator().manual_seed(recipe.seed)).tolist()
    grouped = list(length_grouped_sampler(recipe, keys, epoch=0))
    out = {"recipe": recipe_path, "model": recipe.model, "rows": len(keys), "batch": batch,
           "plain": share(sequences, plain, batch), "grouped": share(sequences, grouped, batch)}
    if recipe.data.validation:  # evaluated in file order, or longest first under group_by_length
        sequences, keys = rows_and_lengths(recipe, tok, stage, "validation")
        out["validation"] = {"rows": len(keys), "file_order": share(sequences, list(range(len(keys))), batch),
                             "longest_first": share(sequences, longest_first(keys), batch)}
    return out


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
    val = result.get("validation")
    if val:
        print(f"validation: {val['rows']} rows")
        for side in ("file_order", "longest_first"):
            r = val[side]
            print(f"  {side:13s} {r['real_tokens']:,} real of {r['padded_tokens']:,} tokens: {r['real_share']:.0%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
