"""The evaluation harness: generate answers, score them, and write eval.json.

On a task set of the recipe's task (`harbor_test`, `harbor_dev`, or a task of the user's: rlft/tasks/)
the task's held-out judge decides the win rate and reports its own task accuracy (eval.json's `judge`);
the training reward on the same answers is reported beside it (`proxy`), never used to judge. On a tasks
file of the user's the file's required/forbidden rule is the only judge. Tone is the task's scorer.
"""

from __future__ import annotations

import json
import math
import time
from collections import defaultdict
from pathlib import Path
from types import ModuleType

import torch

import reward_models
from rlft import data, models, runs, tasks
from rlft.config import GrpoRecipe, PpoRecipe, Recipe, from_manifest
from rlft.data import chitchat, probes, skills
from rlft.eval import metrics, model_judge
from rlft.eval.generate import generate, kl_on_answers, sequence_nll
from rlft.tasks.judgement import Judgement

HARNESS_REVISION = 2
"""Bumped whenever a scorer, a judge or a split changes: figures of different revisions are not comparable.
1: the rule judge on harbor_eval. 2: train/dev/test splits, the held-out judge, the proxy, cluster intervals."""


def probe_accuracy(model, tok, batch_size: int = 64) -> dict[str, float]:
    """Exact-match accuracy (greedy) on each prior-skill probe set."""
    out = {}
    for skill in probes.SKILLS:
        items = probes.probe_items(skill)
        gen = generate(model, tok, [it["messages"] for it in items], max_new_tokens=24, batch_size=batch_size)
        out[skill] = sum(metrics.exact_match(t, it["answer"]) for t, it in zip(gen.texts, items)) / len(items)
    return out


def skills_the_base_has(base, tok, model_name: str, parent_eval: dict | None, batch_size: int = 48
                        ) -> tuple[list[dict], str, list[int]]:
    """General skills the base model has (rlft/data/skills.py): the pool, its sha256 and the indices of
    the items the base answers right. Which items those are is read from the parent's eval.json when it
    holds the same pool (a run's parent shares its base), else measured with one greedy pass of the base
    (kept per machine for a base of known weights)."""
    pool = skills.items()
    pool_sha = data.sha256_rows(pool)
    before = (parent_eval or {}).get("retention") or {}

    def base_has() -> list[int]:
        answers = generate(base, tok, [it["messages"] for it in pool], skills.MAX_NEW_TOKENS, batch_size).texts
        return [i for i, (it, a) in enumerate(zip(pool, answers)) if skills.correct(it, a)]

    kept = before["kept"] if before.get("pool_sha256") == pool_sha else \
        of_the_base(model_name, "skills", {"pool": pool_sha, "max_new_tokens": skills.MAX_NEW_TOKENS}, base_has)
    return pool, pool_sha, kept


def retention(pool: list[dict], pool_sha: str, kept: list[int], answers: list[str]) -> dict:
    """The share of the skills the base has (`kept`, from skills_the_base_has) that the policy keeps,
    from its greedy answers to those items: 1.0 means nothing forgotten."""
    items = [pool[i] for i in kept]
    right = [skills.correct(it, a) for it, a in zip(items, answers)]
    per_skill = {}
    for skill in skills.SKILLS:
        mine = [r for it, r in zip(items, right) if it["skill"] == skill]
        per_skill[skill] = {"n": len(mine), "of": sum(it["skill"] == skill for it in pool),
                            "retained": sum(mine) / len(mine) if mine else None}
    return {"retention": sum(right) / len(right) if right else None,
            "retention_ci": list(metrics.wilson_interval(sum(right), len(right))) if right else None,
            "per_skill": per_skill, "pool_sha256": pool_sha, "kept": kept,
            "right": [int(r) for r in right],  # per kept item: paired comparisons of two runs (same base, same items)
            "failed": [{"question": it["messages"][-1]["content"], "answer": a}
                       for it, a, r in zip(items, answers, right) if not r][:8]}


def score_tasks(model, tok, tasks: list[dict], max_new_tokens: int, batch_size: int = 32) -> dict:
    """Greedy answers to tasks, scored by the tasks-file rule, overall and per intent."""
    gen = generate(model, tok, [t["messages"] for t in tasks], max_new_tokens, batch_size)
    return {**score_texts(tasks, gen.texts), "generations": gen}


def score_texts(tasks: list[dict], texts: list[str]) -> dict:
    """Answers scored by the tasks-file rule (required and forbidden phrases), overall and per intent."""
    correct, recall = [], []
    by_intent: dict[str, list[tuple[bool, float]]] = defaultdict(list)
    for text, task in zip(texts, tasks):
        ok, rec = metrics.check_task(text, task["required"], task["forbidden"])
        correct.append(ok)
        recall.append(rec)
        by_intent[task.get("intent", "all")].append((ok, rec))
    return {
        "task_accuracy": sum(correct) / len(tasks),
        "task_accuracy_ci": metrics.wilson_interval(sum(correct), len(tasks)),
        "correct": [float(c) for c in correct],
        "fact_recall": sum(recall) / len(tasks),
        "per_intent": {k: {"n": len(v), "task_accuracy": sum(a for a, _ in v) / len(v),
                           "fact_recall": sum(r for _, r in v) / len(v)} for k, v in sorted(by_intent.items())},
    }


def rule_judgements(tasks: list[dict], ours: list[str], theirs: list[str]) -> list[float]:
    """The tasks-file rule as a pairwise judge, for a tasks file of the user's (no held-out judge):
    by (correct, fact recall). 1 when our answer ranks higher, 0.5 on a tie, 0 when the other does."""
    out = []
    for task, a, b in zip(tasks, ours, theirs):
        ra = metrics.check_task(a, task["required"], task["forbidden"])
        rb = metrics.check_task(b, task["required"], task["forbidden"])
        out.append(1.0 if ra > rb else 0.5 if ra == rb else 0.0)
    return out


def win_tie_loss(wins: list[float], ours: list[str], theirs: list[str], clusters: list[str], seed: int) -> dict:
    """What a win rate (the mean of pairwise judgements) is made of: the counts, the tie share, the
    answers left word for word as the parent's (ties by construction), and a 95% interval that
    resamples the customer templates (clusters), not the tasks."""
    return {"wins": wins.count(1.0), "ties": wins.count(0.5), "losses": wins.count(0.0),
            "tie_share": wins.count(0.5) / len(wins),
            "same_answer": sum(a.strip() == b.strip() for a, b in zip(ours, theirs)),
            "win_rate_ci": list(metrics.cluster_bootstrap_interval(wins, clusters, seed))}


def judge_section(task_module: ModuleType, tasks: list[dict], ours: list[str], theirs: list[str],
                  seed: int) -> tuple[dict, list[float]]:
    """The held-out judge (the task's judge_task, e.g. rlft/tasks/harbor/judge.py) on our answers and the
    parent's: eval.json's `judge` section, and per task 1 / 0.5 / 0 for a win, tie or loss against the parent."""
    mine = [task_module.judge_task(t, a) for t, a in zip(tasks, ours)]
    parents = [task_module.judge_task(t, a) for t, a in zip(tasks, theirs)]
    clusters = [t["cluster"] for t in tasks]
    correct = [float(j.correct) for j in mine]
    wins = [1.0 if a.rank() > b.rank() else 0.5 if a.rank() == b.rank() else 0.0 for a, b in zip(mine, parents)]
    # Where the parent's answer already ranks highest, the best any answer can do is a tie: the win rate
    # of answers ranked highest on every task is the most any run can reach against this parent.
    ceiling = [0.5 if b.rank() == Judgement.BEST else 1.0 for b in parents]
    refusals = [j.deflects for j in mine]
    parent_refusals = [j.deflects for j in parents]
    reasons: dict[str, int] = defaultdict(int)
    for j in mine:
        for r in j.reasons:
            reasons[r.split(":")[0].split(" (")[0]] += 1
    return {"name": f"{task_module.NAME}.judge", "task_accuracy": metrics.mean(correct),
            "task_accuracy_ci": list(metrics.cluster_bootstrap_interval(correct, clusters, seed)),
            "coverage": metrics.mean([j.coverage for j in mine]), "courtesy": metrics.mean([j.courtesy for j in mine]),
            "win_rate_vs_parent": metrics.mean(wins),
            "win_tie_loss_vs_parent": win_tie_loss(wins, ours, theirs, clusters, seed),
            "win_rate_ceiling": metrics.mean(ceiling),
            "refusal_rate": sum(refusals) / len(refusals),
            "failures": dict(sorted(reasons.items(), key=lambda kv: -kv[1])),
            "parent": {"task_accuracy": metrics.mean([float(j.correct) for j in parents]),
                       "refusal_rate": sum(parent_refusals) / len(parent_refusals),
                       "coverage": metrics.mean([j.coverage for j in parents]),
                       "courtesy": metrics.mean([j.courtesy for j in parents])}}, wins


def proxy_section(spec: str | dict, task: str, tasks: list[dict], ours: list[str], theirs: list[str],
                  judged_win: float, seed: int) -> dict:
    """The training reward on the same answers: its mean for both, its own win rate, and `hacking_gap`,
    its win rate minus the judge's. A gap well above 0 is a gain the reward pays for and the judge
    does not see: the first sign of reward hacking (Gao et al. 2022, arXiv:2210.10760). task: the recipe's."""
    reward = reward_models.load(spec, task)
    chats = [t["messages"] for t in tasks]
    mine, parents = reward(chats, ours), reward(chats, theirs)
    wins = [1.0 if a > b else 0.5 if a == b else 0.0 for a, b in zip(mine, parents)]
    win = metrics.mean(wins)
    return {"reward": spec, "mean": metrics.mean(mine), "parent_mean": metrics.mean(parents),
            "win_rate_vs_parent": win,
            "win_rate_ci": list(metrics.cluster_bootstrap_interval(wins, [t["cluster"] for t in tasks], seed)),
            "hacking_gap": win - judged_win}


def training_reward(recipe: Recipe, task_module: ModuleType | None) -> str | dict | None:
    """The reward the run (or, for SFT and DPO, the task's RL recipes: its PROXY) optimises: the proxy.
    task_module: None on a tasks file of the user's, where SFT and DPO report none."""
    if isinstance(recipe, PpoRecipe):
        return recipe.ppo.reward
    if isinstance(recipe, GrpoRecipe):
        return recipe.grpo.reward
    return task_module.PROXY if task_module is not None else None


def kl_scorer(groups: list[tuple[list[list[dict]], list]], tok, batch_size: int = 16):
    """KL(policy || other) per response token, exact over the vocabulary, on the policy's samples of each
    group (chats, other models), against each of the group's models, with its 95% interval over the
    answers (metrics.ratio_interval), which says whether the number of prompts is enough.

    Returns (score, result): `score` is the `on_batch` of a `generate` that samples every group's chats
    in order (beside greedy rows, if the caller likes); `result(seed)` then gives [group][model] ->
    (KL, interval). The policy's side is the logits each token was sampled from (no second pass of the
    policy); each group's models score its samples once, in batches of rows of similar length."""
    group_of = [g for g, (group, _) in enumerate(groups) for _ in group]
    kl = [[0.0] * len(group_of) for _ in range(max((len(others) for _, others in groups), default=0))]
    counts = [0] * len(group_of)
    done = 0  # samples scored so far: generate hands them over batch by batch, in order

    @torch.no_grad()
    def score(prompts: list[list[int]], responses: list[list[int]], logits: torch.Tensor) -> None:
        nonlocal done
        first = done
        for g, (_, others) in enumerate(groups):
            mine = sorted((i for i in range(len(prompts)) if group_of[first + i] == g),
                          key=lambda i: len(prompts[i]) + len(responses[i]))
            for start in range(0, len(mine), batch_size):
                rows = mine[start:start + batch_size]
                p, r = [prompts[i] for i in rows], [responses[i] for i in rows]
                logits_p = logits[rows, :max(len(x) for x in r)]  # (b, R, V)
                for k, other in enumerate(others):
                    for i, v in zip(rows, kl_on_answers(logits_p, other, p, r, tok.pad_token_id, batch_size).tolist()):
                        kl[k][first + i] = v
                for i, x in zip(rows, r):
                    counts[first + i] = len(x)
        done += len(prompts)

    def result(seed: int) -> list[list[tuple[float, list[float]]]]:
        assert done == len(group_of), f"{done} of {len(group_of)} samples were scored"
        out = []
        for g, (_, others) in enumerate(groups):
            rows = [i for i in range(len(group_of)) if group_of[i] == g]
            n = [counts[i] for i in rows]
            out.append([(sum(kl[k][i] for i in rows) / max(sum(n), 1),
                         list(metrics.ratio_interval([kl[k][i] for i in rows], n, seed))) for k in range(len(others))])
        return out

    return score, result


def answers_key(run_fingerprint: str, prompt_ids: list[list[int]], max_new_tokens: int) -> str:
    """What a run's greedy answers depend on: its weights (the manifest's fingerprint), the prompts, the length."""
    return data.sha256_rows([{"run": run_fingerprint, "max_new_tokens": max_new_tokens, "revision": HARNESS_REVISION},
                             {"prompts": prompt_ids}])


def of_the_base(name: str, what: str, inputs, compute):
    """A result of the base model alone (its greedy answers, its NLL on the general chats, the general
    skills it has), computed once per machine for a model of known weights (one converted from GGUF:
    its file's sha256) and kept in $RLFT_CACHE/base/; the key holds the weights, what was computed,
    its inputs (token ids, lengths) and the harness revision. Any other model: computed each time."""
    source = models.model_source(name)
    if source is None:
        return compute()
    key = data.sha256_rows([{"weights": source["sha256"], "what": what, "revision": HARNESS_REVISION},
                            {"inputs": inputs}])
    path = models.cache_dir() / "base" / f"{what}-{key[:32]}.json"
    if path.is_file():
        return json.loads(path.read_text())
    result = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    runs.atomic_write_json(path, result)
    return result


def parent_answers(parent_eval: dict | None, key: str) -> list[str] | None:
    """The parent's greedy answers to the same prompts, kept in its eval.json, or None."""
    kept = (parent_eval or {}).get("answers") or {}
    return kept.get("texts") if kept.get("key") == key else None


def _reward_mean(spec: str | dict | None, task: str, tasks: list[dict], texts: list[str]) -> float | None:
    if not spec:
        return None
    scores = reward_models.load(spec, task)([t["messages"] for t in tasks], texts)
    return sum(scores) / len(scores)


def load_tasks(spec: str, seed: int, n: int, system_prompt: str | None = None, task: str = tasks.DEFAULT) -> list[dict]:
    return data.load(spec, "tasks", seed, n, system_prompt, task=task)


def read_eval(run_dir: str | Path) -> dict | None:
    """A run's eval.json, or None when it has none (not evaluated) or one that does not parse."""
    try:
        return json.loads((Path(run_dir) / "eval.json").read_text())
    except (OSError, ValueError):
        return None


def evaluate_run(run_dir: Path | str, tasks_file: str | None = None, out: str | None = None,
                 task_rows: list[dict] | None = None) -> dict:
    """Evaluate a finished run against its parent and the base; write eval.json (the contract).
    task_rows: the recipe's eval.tasks as load_tasks gave them, when the caller has read them already
    (the stage's command line reads a tasks file before training)."""
    run_dir = Path(run_dir)
    manifest = runs.read_manifest(run_dir)
    recipe = from_manifest(manifest, str(run_dir / "manifest.json"))
    ev, seed = recipe.eval, manifest["seed"]
    tasks_spec = tasks_file or ev.tasks
    task_module = tasks.load(recipe.task, f"{run_dir / 'manifest.json'}: recipe task")
    split = data.split_of(tasks_spec, recipe.task) or "file"
    if task_rows is None:
        task_rows = load_tasks(tasks_spec, seed, ev.n_tasks, recipe.data.system_prompt, recipe.task)
    t0 = time.time()
    timings: dict[str, float] = {}

    def lap(name: str) -> None:  # seconds since the last lap, per part (eval.json's eval_timings)
        timings[name] = round(time.time() - t0 - sum(timings.values()), 1)

    tok = models.load_tokenizer(recipe.model, recipe.trust_remote_code)
    base = models.load_causal_lm(recipe.model, trust_remote_code=recipe.trust_remote_code)
    policy = models.run_model(run_dir, manifest, base=base)  # the base is read from disk once
    parent_dir = manifest.get("parent")
    parent = models.run_model(parent_dir, base=base) if parent_dir else base
    parent_eval = read_eval(parent_dir) if parent_dir else None
    # a run of no parent that trained no step (the prompted baseline: train.max_steps 0) holds the base's weights:
    # its greedy answers serve as the base's, and each of its KLs and its drift is the base's to itself, 0,
    # so the base's answers and the KL samples are not computed (the skills' answers are, for retention)
    is_base = parent is base and models.same_weights(policy, base)
    max_new, bs = ev.max_new_tokens, ev.batch_size
    print(f"eval: {run_dir} on {len(task_rows)} tasks from {tasks_spec} (split: {split})")
    lap("load")

    # --- task accuracy (the tasks-file rule and, on a built-in task, its held-out judge); tone ---
    mine = score_tasks(policy, tok, task_rows, max_new, bs)
    gen = mine.pop("generations")
    lap("answers")
    # the parent's greedy answers come from its own eval.json when they answer the same prompts
    parent_fingerprint = runs.read_manifest(parent_dir)["fingerprint"] if parent_dir else None
    parent_texts = parent_answers(parent_eval, answers_key(parent_fingerprint, gen.prompt_ids, max_new)) \
        if parent_dir else None
    if parent_texts is None and is_base:
        parent_texts = gen.texts
    elif parent_texts is None and parent is base:
        parent_texts = of_the_base(recipe.model, "answers", {"prompts": gen.prompt_ids, "max_new_tokens": max_new},
                                   lambda: generate(base, tok, [t["messages"] for t in task_rows], max_new, bs).texts)
    elif parent_texts is None:
        parent_texts = generate(parent, tok, [t["messages"] for t in task_rows], max_new, bs).texts
    theirs = score_texts(task_rows, parent_texts)
    lap("parent_answers")
    customer = [t["messages"][-1]["content"] for t in task_rows]
    clusters = [t["cluster"] for t in task_rows]
    if split != "file":
        judged, wins = judge_section(task_module, task_rows, gen.texts, parent_texts, seed)
    else:
        judged, wins = None, rule_judgements(task_rows, gen.texts, parent_texts)
    proxy_spec = training_reward(recipe, task_module if split != "file" else None)
    tones = [task_module.tone_score(c, r) for c, r in zip(customer, gen.texts)]
    rude = [task_module.impolite(c, r) for c, r in zip(customer, gen.texts)]
    for intent, row in mine["per_intent"].items():
        idx = [i for i, t in enumerate(task_rows) if t.get("intent", "all") == intent]
        row["tone_score"] = sum(tones[i] for i in idx) / len(idx)
    lap("judge")

    # --- drift: KL on sampled answers, general NLL, general skills (retention), prior-skill probes ---
    general = chitchat.chats("held_out")[:ev.n_general]
    general_prompts = [c[:1] for c in general]
    task_chats = [t["messages"] for t in task_rows]
    kl_chats = task_chats[:ev.n_kl_tasks] if ev.n_kl_tasks else task_chats
    # one generation: the samples of both task KLs (when the parent is the base, one KL is both) and of
    # the general prompts' KL, and beside them the greedy answers to the general skills the base has
    # (retention), short answers that take rows the samples leave free
    pool, pool_sha, base_has = skills_the_base_has(base, tok, recipe.model, parent_eval, bs)
    skill_chats = [pool[i]["messages"] for i in base_has]
    if is_base:  # no samples: the skills' answers alone, each KL being the base's to itself
        skill_texts = generate(policy, tok, skill_chats, skills.MAX_NEW_TOKENS, bs).texts
        kl_task = kl_task_base = kl_general = (0.0, [0.0, 0.0])
    else:
        score, kl_result = kl_scorer([(kl_chats, [base] if parent is base else [parent, base]),
                                      (general_prompts, [base])], tok)
        n_samples = len(kl_chats) + len(general_prompts)
        both = generate(policy, tok, skill_chats + kl_chats + general_prompts,
                        [skills.MAX_NEW_TOKENS] * len(skill_chats) + [max_new] * n_samples, bs,
                        temperature=[0.0] * len(skill_chats) + [1.0] * n_samples, seed=seed, on_batch=score)
        task_kls, (kl_general,) = kl_result(seed)
        kl_task, kl_task_base = task_kls if parent is not base else task_kls * 2
        skill_texts = both.texts[:len(skill_chats)]
    kept = retention(pool, pool_sha, base_has, skill_texts)
    lap("kl_and_retention")
    # the base's and the parent's NLL on the same chats come from the parent's eval.json when it holds them
    general_key = data.sha256_rows([{"revision": HARNESS_REVISION}, {"general": general}])
    known = parent_eval if (parent_eval or {}).get("general_key") == general_key else {}
    nll, _ = sequence_nll(policy, tok, general)
    nll_base = known.get("general_nll_base")
    if nll_base is None:  # kept per machine for the runs to come: the policy's own NLL when it is the base
        nll_base = of_the_base(recipe.model, "general_nll", general_key,
                               (lambda: nll) if is_base else (lambda: sequence_nll(base, tok, general)[0]))
    nll_parent = nll_base if parent is base else known.get("general_nll")
    if nll_parent is None:
        nll_parent = sequence_nll(parent, tok, general)[0]
    lap("general_nll")
    probe = probe_accuracy(policy, tok) if recipe.model == "rlft-tiny" else None
    lap("probes")
    win_rate = metrics.mean(wins)
    result = {
        "harness_revision": HARNESS_REVISION,
        "run": str(run_dir), "stage": manifest["stage"], "tasks_file": tasks_spec, "split": split,
        "n_tasks": len(task_rows), "policy_is_base": is_base,
        "task_accuracy": mine["task_accuracy"],
        "task_accuracy_ci": list(metrics.cluster_bootstrap_interval(mine.pop("correct"), clusters, seed)),
        "fact_recall": mine["fact_recall"], "tone_score": metrics.mean(tones),
        "impolite_rate": sum(rude) / len(rude), "reward_mean": _reward_mean(ev.reward, recipe.task, task_rows, gen.texts),
        "win_rate_vs_parent": win_rate,
        "win_rate_judge": judged["name"] if judged else "tasks-file rule (correct, fact recall)",
        "win_tie_loss_vs_parent": win_tie_loss(wins, gen.texts, parent_texts, clusters, seed),
        "judge": judged,
        "proxy": (proxy_section(proxy_spec, recipe.task, task_rows, gen.texts, parent_texts, win_rate, seed)
                  if proxy_spec else None),
        "kl_task": kl_task[0], "kl_task_base": kl_task_base[0], "kl_general": kl_general[0],
        "kl_task_ci": kl_task[1], "kl_task_base_ci": kl_task_base[1], "kl_general_ci": kl_general[1],
        "general_nll": nll, "general_nll_base": nll_base, "general_key": general_key,
        "general_ppl_drift": math.exp(nll - nll_base) - 1,
        "general_nll_parent": nll_parent, "general_ppl_drift_parent": math.exp(nll - nll_parent) - 1,
        "probe_accuracy": probe,
        "retention": kept,
        "train_val_gap": manifest.get("metrics", {}).get("train_val_gap"),
        "mean_response_tokens": sum(gen.n_tokens) / len(gen.n_tokens),
        "truncation_rate": sum(gen.truncated) / len(gen.truncated),
        "distinct_2": metrics.distinct_n(gen.texts, 2),
        "per_intent": mine["per_intent"],
        "samples": [{"prompt": customer[i], "response": gen.texts[i], "parent_response": parent_texts[i]}
                    for i in range(min(ev.n_samples, len(task_rows)))],
        "decoding": {"accuracy": "greedy", "max_new_tokens": max_new,
                     "kl_and_diversity": None if is_base else {  # the base has no KL to itself to sample
                         "temperature": 1.0, "top_k": 0, "top_p": 1.0, "seed": seed,
                         "task_prompts": len(kl_chats), "general_prompts": len(general_prompts)}},
        "parent": {"run": manifest.get("parent") or recipe.model, "task_accuracy": theirs["task_accuracy"],
                   "fact_recall": theirs["fact_recall"],
                   "tone_score": metrics.mean([task_module.tone_score(c, r) for c, r in zip(customer, parent_texts)]),
                   "retention": (parent_eval or {}).get("retention", {}).get("retention") if parent_dir else 1.0},
        "answers": {"key": answers_key(manifest["fingerprint"], gen.prompt_ids, max_new), "texts": gen.texts},
        "eval_seconds": round(time.time() - t0, 1),
    }
    if ev.judge:
        judge_model, judge_tok = model_judge.load_judge(ev.judge)
        result["model_judge"] = {"model": ev.judge,
                                 **model_judge.judge_pairs(judge_model, judge_tok, customer, gen.texts, parent_texts)}
        del judge_model
        lap("model_judge")
    result["eval_timings"] = timings
    result["eval_seconds"] = round(time.time() - t0, 1)
    target = Path(out) if out else run_dir / "eval.json"
    if runs.is_main_process():
        runs.atomic_write_json(target, result)
    return result
