"""A task of one's own, small: answer a customer's sum, politely. A recipe names it with
`task: tests.example_task`; its data sets are then `sums_sft`, `sums_pairs`, `sums_dev`, `sums_test`, ...

It provides the task interface of rlft/tasks/__init__.py and nothing else: generators for the train,
dev and test splits, one rule reward, a tone scorer and a held-out judge. The splits differ by the
customer's phrasing and by the range of the numbers, so dev and test ask what training never showed.
"""

from __future__ import annotations

import random
import re

from rlft.tasks.judgement import Judgement

NAME = "sums"

TEMPLATES = {  # split: customer phrasings, each with the two numbers as digits
    "train": ("What is {a} plus {b}?", "Could you add {a} and {b} for me?", "How much is {a} + {b}?",
              "I need the sum of {a} and {b}."),
    "dev": ("What do {a} and {b} add up to?", "Please total {a} and {b}."),
    "test": ("If I add {a} to {b}, what do I get?", "Sum up {a} and {b}, please."),
}
NUMBERS = {"train": (1, 49), "dev": (50, 74), "test": (75, 99)}
POLITE = r"\b(thank(s| you)|please|happy to help|glad to help)\b"
RUDE = r"\b(obviously|whatever|do it yourself|figure it out)\b"
PROBE_FILLER = ("Numbers have a quiet beauty that rewards a moment of attention.",
                "We take every question seriously, however small it may look.")


def _numbers(text: str) -> list[int]:
    return [int(x) for x in re.findall(r"\d+", text)]


def _cases(seed: int, n: int, split: str, stream: str) -> list[tuple[str, int, int, int]]:
    """n (message, template index, a, b) of a split; the first n of a larger n are the same."""
    rng = random.Random(f"sums-{stream}-{seed}")
    low, high = NUMBERS[split]
    out = []
    for _ in range(n):
        template = rng.randrange(len(TEMPLATES[split]))
        a, b = rng.randint(low, high), rng.randint(low, high)
        out.append((TEMPLATES[split][template].format(a=a, b=b), template, a, b))
    return out


def answer(a: int, b: int) -> str:
    return f"Thank you for asking! {a} plus {b} is {a + b}. Happy to help."


def sft_rows(seed: int, n: int, split: str, stream: str) -> list[dict]:
    return [{"messages": [{"role": "user", "content": m}, {"role": "assistant", "content": answer(a, b)}]}
            for m, _, a, b in _cases(seed, n, split, stream)]


def pair_rows(seed: int, n: int, split: str, stream: str) -> list[dict]:
    rows = []
    for i, (m, _, a, b) in enumerate(_cases(seed, n, split, stream)):
        kind = ("facts", "tone")[i % 2]
        rejected = f"Thank you for asking! {a} plus {b} is {a + b + 1}." if kind == "facts" else f"{a + b}. Obviously."
        rows.append({"prompt": [{"role": "user", "content": m}], "chosen": [{"role": "assistant", "content": answer(a, b)}],
                     "rejected": [{"role": "assistant", "content": rejected}], "kind": kind})
    return rows


def prompt_rows(seed: int, n: int, split: str, stream: str) -> list[dict]:
    return [{"prompt": [{"role": "user", "content": m}]} for m, _, _, _ in _cases(seed, n, split, stream)]


def task_rows(seed: int, n: int, split: str) -> list[dict]:
    return [{"id": f"sums-{split}-{i:04d}", "intent": "sum", "cluster": f"sum/{template}",
             "messages": [{"role": "user", "content": m}], "required": [rf"(?<!\d){a + b}(?!\d)"],
             "forbidden": [RUDE], "reference": answer(a, b)}
            for i, (m, template, a, b) in enumerate(_cases(seed, n, split, f"tasks-{split}"))]


def sums_correct(prompts: list[list[dict]], completions: list[str]) -> list[float]:
    """1 when the answer states the sum of the customer's two numbers, else 0."""
    scores = []
    for prompt, text in zip(prompts, completions):
        a, b = _numbers(prompt[-1]["content"])[:2]
        scores.append(float(a + b in _numbers(text)))
    return scores


REWARDS = {"sums_correct": sums_correct}
PROXY = {"sums_correct": 1.0}


def impolite(customer: str, reply: str) -> bool:
    return re.search(RUDE, reply, re.IGNORECASE) is not None


def tone_score(customer: str, reply: str) -> float:
    """1 for a thank-you or an offer of help, 0.5 for neither, 0 when rude."""
    return 0.0 if impolite(customer, reply) else 1.0 if re.search(POLITE, reply, re.IGNORECASE) else 0.5


def judge_task(task: dict, text: str) -> Judgement:
    """Correct: the sum stated, no other number than the customer's two and their sum, and polite."""
    a, b = _numbers(task["messages"][-1]["content"])[:2]
    said = _numbers(text)
    reasons = [] if a + b in said else [f"missing: the sum {a + b}"]
    reasons += [f"names another number: {x}" for x in sorted(set(said) - {a, b, a + b})]
    courtesy = tone_score(task["messages"][-1]["content"], text)
    reasons += ["impolite"] if courtesy == 0.0 else []
    coverage = float(a + b in said and not set(said) - {a, b, a + b})
    return Judgement(correct=not reasons, coverage=coverage, courtesy=courtesy, reasons=tuple(reasons),
                     deflects=not said)
