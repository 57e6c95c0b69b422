"""The evaluation harness: generate answers, score them, and write eval.json."""

from __future__ import annotations

import math
import time
from collections import defaultdict
from pathlib import Path

import torch

from rlft import data, runs
from rlft.data import chitchat, probes
from rlft.eval import metrics, tone
from rlft.eval.generate import generate, sequence_nll, token_logits


def probe_accuracy(model, tok, batch_size: int = 64) -> dict[str, float]:
    """Exact-match accuracy (greedy) on each prior-skill probe set."""
    out = {}
    for skill in probes.SKILLS:
        items = probes.probe_items(skill)
        gen = generate(model, tok, [it["messages"] for it in items], max_new_tokens=24, batch_size=batch_size)
        out[skill] = sum(metrics.exact_match(t, it["answer"]) for t, it in zip(gen.texts, items)) / len(items)
    return out


def score_tasks(model, tok, tasks: list[dict], max_new_tokens: int, batch_size: int = 32) -> dict:
    """Greedy answers to tasks, scored by the tasks-file rule, overall and per intent."""
    gen = generate(model, tok, [t["messages"] for t in tasks], max_new_tokens, batch_size)
    correct, recall = [], []
    by_intent: dict[str, list[tuple[bool, float]]] = defaultdict(list)
    for text, task in zip(gen.texts, tasks):
        ok, rec = metrics.check_task(text, task["required"], task["forbidden"])
        correct.append(ok)
        recall.append(rec)
        by_intent[task.get("intent", "all")].append((ok, rec))
    return {
        "task_accuracy": sum(correct) / len(tasks),
        "task_accuracy_ci": metrics.wilson_interval(sum(correct), len(tasks)),
        "fact_recall": sum(recall) / len(tasks),
        "per_intent": {k: {"n": len(v), "task_accuracy": sum(a for a, _ in v) / len(v),
                           "fact_recall": sum(r for _, r in v) / len(v)} for k, v in sorted(by_intent.items())},
        "generations": gen,
    }


def judge(task: dict, response: str) -> float:
    """The default win-rate judge: fact recall plus tone, from rules no stage trains on directly."""
    _, recall = metrics.check_task(response, task["required"], task["forbidden"])
    return recall + tone.tone_score(task["messages"][-1]["content"], response)


def judgements(tasks: list[dict], ours: list[str], theirs: list[str]) -> list[float]:
    """Per task: 1 when our answer scores higher, 0.5 on a tie, 0 when the other one does."""
    out = []
    for task, a, b in zip(tasks, ours, theirs):
        sa, sb = judge(task, a), judge(task, b)
        out.append(1.0 if sa > sb else 0.5 if sa == sb else 0.0)
    return out


def win_tie_loss(wins: list[float], ours: list[str], theirs: list[str], seed: int) -> dict:
    """What a win rate (the mean of `judgements`) is made of: the counts, the answers left word for
    word as the parent's (ties by construction), and a 95% bootstrap interval over the tasks."""
    return {"wins": wins.count(1.0), "ties": wins.count(0.5), "losses": wins.count(0.0),
            "same_answer": sum(a.strip() == b.strip() for a, b in zip(ours, theirs)),
            "win_rate_ci": list(metrics.bootstrap_interval(wins, seed))}


@torch.no_grad()
def kl_on_samples(policy, other, tok, chats: list[list[dict]], max_new_tokens: int, seed: int,
                  batch_size: int = 16) -> float:
    """KL(policy || other) per response token, exact over the vocabulary, on the policy's samples."""
    from rlft.rl.core import exact_kl

    gen = generate(policy, tok, chats, max_new_tokens, batch_size, temperature=1.0, seed=seed)
    total, count = 0.0, 0
    for (lp, _, mask), (lq, _, _) in zip(
            token_logits(policy, gen.prompt_ids, gen.response_ids, tok.pad_token_id, batch_size),
            token_logits(other, gen.prompt_ids, gen.response_ids, tok.pad_token_id, batch_size)):
        s, n = exact_kl(lp, lq, mask)
        total += s.item()
        count += int(n.item())
    return total / max(count, 1)


def _reward_mean(spec: str | dict | None, tasks: list[dict], texts: list[str]) -> float | None:
    if not spec:
        return None
    import reward_models

    scores = reward_models.load(spec)([t["messages"] for t in tasks], texts)
    return sum(scores) / len(scores)


def load_tasks(spec: str, seed: int, n: int) -> list[dict]:
    return data.load(spec, "tasks", seed, n)


def evaluate_run(run_dir: Path | str, tasks_file: str | None = None, out: str | None = None) -> dict:
    """Evaluate a finished run against its parent and the base; write eval.json (the contract)."""
    from rlft import models

    run_dir = Path(run_dir)
    manifest = runs.read_manifest(run_dir)
    recipe = manifest["recipe"]
    ev, seed = recipe["eval"], manifest["seed"]
    tasks_spec = tasks_file or ev["tasks"]
    tasks = load_tasks(tasks_spec, seed, ev["n_tasks"])
    t0 = time.time()
    tok = models.load_tokenizer(recipe["model"], recipe["trust_remote_code"])
    policy = models.run_model(run_dir, manifest)
    base = models.load_causal_lm(recipe["model"], trust_remote_code=recipe["trust_remote_code"])
    parent = models.run_model(manifest["parent"]) if manifest.get("parent") else base
    max_new, bs = ev["max_new_tokens"], ev["batch_size"]
    print(f"eval: {run_dir} on {len(tasks)} tasks from {tasks_spec}")

    # --- task accuracy and tone (greedy) ---
    mine = score_tasks(policy, tok, tasks, max_new, bs)
    theirs = score_tasks(parent, tok, tasks, max_new, bs)
    gen = mine.pop("generations")
    parent_texts = theirs.pop("generations").texts
    customer = [t["messages"][-1]["content"] for t in tasks]
    judged = judgements(tasks, gen.texts, parent_texts)
    tones = [tone.tone_score(c, r) for c, r in zip(customer, gen.texts)]
    rude = [tone.impolite(c, r) for c, r in zip(customer, gen.texts)]
    for intent, row in mine["per_intent"].items():
        idx = [i for i, t in enumerate(tasks) if t.get("intent", "all") == intent]
        row["tone_score"] = sum(tones[i] for i in idx) / len(idx)

    # --- drift: KL on sampled answers, general NLL, prior-skill probes ---
    general = chitchat.chats("held_out")[:ev["n_general"]]
    general_prompts = [c[:1] for c in general]
    task_chats = [t["messages"] for t in tasks]
    nll, _ = sequence_nll(policy, tok, general)
    nll_base, _ = sequence_nll(base, tok, general)
    result = {
        "run": str(run_dir), "stage": manifest["stage"], "tasks_file": tasks_spec, "n_tasks": len(tasks),
        "task_accuracy": mine["task_accuracy"], "task_accuracy_ci": list(mine["task_accuracy_ci"]),
        "fact_recall": mine["fact_recall"], "tone_score": metrics.mean(tones),
        "impolite_rate": sum(rude) / len(rude), "reward_mean": _reward_mean(ev.get("reward"), tasks, gen.texts),
        "win_rate_vs_parent": sum(judged) / len(judged),
        "win_tie_loss_vs_parent": win_tie_loss(judged, gen.texts, parent_texts, seed),
        "kl_task": kl_on_samples(policy, parent, tok, task_chats, max_new, seed),
        "kl_task_base": kl_on_samples(policy, base, tok, task_chats, max_new, seed),
        "kl_general": kl_on_samples(policy, base, tok, general_prompts, max_new, seed),
        "general_nll": nll, "general_nll_base": nll_base,
        "general_ppl_drift": math.exp(nll - nll_base) - 1,
        "probe_accuracy": probe_accuracy(policy, tok) if recipe["model"] == "rlft-tiny" else None,
        "train_val_gap": manifest.get("metrics", {}).get("train_val_gap"),
        "mean_response_tokens": sum(gen.n_tokens) / len(gen.n_tokens),
        "truncation_rate": sum(gen.truncated) / len(gen.truncated),
        "distinct_2": metrics.distinct_n(gen.texts, 2),
        "per_intent": mine["per_intent"],
        "samples": [{"prompt": customer[i], "response": gen.texts[i], "parent_response": parent_texts[i]}
                    for i in range(min(ev["n_samples"], len(tasks)))],
        "decoding": {"accuracy": "greedy", "max_new_tokens": max_new,
                     "kl_and_diversity": {"temperature": 1.0, "top_k": 0, "top_p": 1.0, "seed": seed}},
        "parent": {"run": manifest.get("parent") or recipe["model"], "task_accuracy": theirs["task_accuracy"],
                   "fact_recall": theirs["fact_recall"],
                   "tone_score": metrics.mean([tone.tone_score(c, r) for c, r in zip(customer, parent_texts)])},
        "eval_seconds": round(time.time() - t0, 1),
    }
    target = Path(out) if out else run_dir / "eval.json"
    if runs.is_main_process():
        runs.atomic_write_json(target, result)
    return result
