"""Rule rewards on literal examples, weighted sums, and rewards that misbehave."""

from __future__ import annotations

import pytest

import reward_models
from rlft.errors import InputError
from rlft.tasks.harbor import generator as harbor
from rlft.tasks.harbor.rewards import harbor_facts, house_tone, intent_of

pytestmark = pytest.mark.unit  # pure functions, configs, data: no model is trained


def _p(text):
    return [{"role": "user", "content": text}]


def test_intent_rules_read_the_generated_customer_messages():
    rows = harbor.task_rows(0, 330, "dev") + harbor.task_rows(0, 330, "test") + [{"intent": r["intent"], "messages": r["prompt"]} for r in harbor.pair_rows(0, 660)]
    right = sum(intent_of(r["messages"][0]["content"]) == r["intent"] for r in rows)
    assert right / len(rows) >= 0.95, right / len(rows)


@pytest.mark.parametrize("message,answer,score", [
    # return_refund has four facts: 30 days, original payment method, 5-7 business days, prepaid label
    ("I want to return my lamp.", "Returns within 30 days; refund to the original payment method in 5-7 "
     "business days; we email a prepaid return label.", 1.0),
    ("I want to return my lamp.", "Returns within 30 days of delivery.", 0.25),
    ("I want to return my lamp.", "Returns within 90 days, and 30 days for...", 0.0),  # invented policy
    # damaged_item: photo, free replacement, and the order number counts as a third fact
    ("My lamp arrived broken. Order #12345.", "Send a photo; a free replacement ships for order 12345.", 1.0),
    ("My lamp arrived broken. Order #12345.", "Send a photo; a free replacement ships.", 2 / 3),
    ("hello there", "Anything.", 0.0),  # no intent
])
def test_harbor_facts_on_literal_examples(message, answer, score):
    assert harbor_facts([_p(message)], [answer]) == [pytest.approx(score)]


def test_house_tone_is_the_harness_scorer():
    """Nothing went wrong, so only R2 holds (1/3), minus 1/4 for the dismissive phrase."""
    assert house_tone([_p("Where is my order?")], ["Not my problem."]) == [pytest.approx(1 / 3 - 1 / 4)]


def test_weighted_sum():
    """0.5 * facts (1/4) + 2 * tone (1/3: no greeting, no offer; nothing went wrong) = 0.125 + 0.6667."""
    reward = reward_models.load({"harbor_facts": 0.5, "house_tone": 2.0})
    got = reward([_p("I want to return my lamp.")], ["Returns within 30 days."])
    assert got == [pytest.approx(0.125 + 2 / 3)]


def test_unknown_reward_lists_the_known_ones():
    with pytest.raises(InputError, match="rewards: harbor_facts, house_tone"):
        reward_models.load("politeness")


def test_misbehaving_rewards_are_named_with_the_sample():
    with pytest.raises(RuntimeError, match="reward 'nan' returned nan for sample 1: 'b'"):
        reward_models.checked("nan", lambda p, c: [0.0, float("nan")], [_p("x")] * 2, ["a", "b"])
    with pytest.raises(RuntimeError, match="returned 1 scores for 2"):
        reward_models.checked("short", lambda p, c: [0.0], [_p("x")] * 2, ["a", "b"])
    with pytest.raises(RuntimeError, match="reward 'boom' raised ZeroDivisionError"):
        reward_models.checked("boom", lambda p, c: [1 / 0], [_p("x")], ["a"])
