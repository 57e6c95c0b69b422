"""The general-skill forgetting probes: the pool and the rules that check a reply."""

from __future__ import annotations

import pytest

from rlft.data import skills

pytestmark = pytest.mark.unit


def _item(skill: str, answer: str, question: str = "") -> dict:
    return {"skill": skill, "answer": answer, "messages": [{"role": "user", "content": question}]}


def test_the_pool_is_fixed_and_distinct():
    pool = skills.items()
    assert pool == skills.items()
    assert len(pool) == len(skills.SKILLS) * skills.ITEMS_PER_SKILL
    assert len({it["messages"][0]["content"] for it in pool}) == len(pool)
    assert all(it["messages"][0]["role"] == "user" and len(it["messages"]) == 1 for it in pool)


@pytest.mark.parametrize("item,reply,ok", [
    (_item("arithmetic", "42", "What is 17 + 25?"), "The answer is 42.", True),
    (_item("arithmetic", "42", "What is 17 + 25?"), "17 + 25 = 42", True),  # the question's numbers are skipped
    (_item("arithmetic", "42", "What is 17 + 25?"), "It is 43, not 42.", False),
    (_item("arithmetic", "42", "What is 17 + 25?"), "Forty-two", False),
    (_item("knowledge", "Paris"), "The capital of France is Paris.", True),
    (_item("knowledge", "Paris"), "Parisian food is famous.", False),
    (_item("knowledge", "7|seven"), "There are seven days in a week.", True),
    (_item("instructions", "GARDEN"), "GARDEN", True),
    (_item("instructions", "GARDEN"), "garden", False),  # the instruction was capital letters
    (_item("instructions", "g"), "The first letter is 'g'.", True),
    (_item("instructions", "s"), "It's a word.", False),  # the s of it's is not an answer
    (_item("instructions", "children"), "The plural is children.", True),
])
def test_the_rules(item, reply, ok):
    assert skills.correct(item, reply) is ok
