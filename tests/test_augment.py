"""data.augment: seeded noise on user turns only, order numbers intact; the messy test split."""

from __future__ import annotations

import json
import random
import re

import pytest

from rlft import cli, config, data
from rlft.data import augment
from rlft.errors import InputError

pytestmark = pytest.mark.unit
ALL = {"typos": 0.3, "case": 0.5, "punctuation": 0.5, "word_order": 0.1, "drop_greeting": 0.5}


def test_only_user_turns_change_and_the_seed_decides_how():
    rows = data.builtin("harbor_sft", 0, 200)
    noised = augment.augment_rows(rows, ALL, seed=0)
    changed = 0
    for old, new in zip(rows, noised):
        for a, b in zip(old["messages"], new["messages"]):
            assert a["role"] == b["role"]
            if a["role"] != "user":
                assert a == b
            changed += a != b
    assert changed > 100
    assert noised == augment.augment_rows(rows, ALL, seed=0) != augment.augment_rows(rows, ALL, seed=1)
    assert augment.augment_rows(rows, {k: 0.0 for k in ALL}, seed=0) == rows


def test_order_numbers_survive_every_transformation():
    rows = data.builtin("harbor_sft", 0, 300)
    noised = augment.augment_rows(rows, {**ALL, "typos": 1.0, "punctuation": 1.0}, seed=3)
    numbers = 0
    for old, new in zip(rows, noised):
        for number in re.findall(r"#?\d{4,}", old["messages"][0]["content"]):
            numbers += 1
            assert number in new["messages"][0]["content"]
    assert numbers > 50


@pytest.mark.parametrize("text,rates,expected", [
    ("Hi, my parcel is late.", {"drop_greeting": 1.0}, "My parcel is late."),
    ("Hello there! Where is order #123?", {"drop_greeting": 1.0, "punctuation": 1.0}, "Where is order #123"),
    ("Where is my parcel?", {"drop_greeting": 1.0}, "Where is my parcel?"),
])
def test_hand_checked_transformations(text, rates, expected):
    assert augment.augment_text(text, rates, random.Random(0)) == expected


def test_a_typo_is_one_inner_swap_drop_or_double():
    word = "cancellation"
    inner = range(1, len(word) - 2)
    edits = ({word[:i] + word[i + 1] + word[i] + word[i + 2:] for i in inner}
             | {word[:i] + word[i + 1:] for i in inner} | {word[:i] + word[i] + word[i:] for i in inner})
    rng = random.Random(0)
    seen = {augment._typo(word, rng) for _ in range(300)}
    assert seen <= edits and len(seen) > 15  # only those edits, and many of them


@pytest.mark.parametrize("override,needle", [
    ("data.augment={typo: 0.1}", "unknown augmentation 'typo'"),
    ("data.augment={case: 1.5}", "the rate of case must lie in"),
])
def test_bad_augmentation_is_refused_by_name(override, needle):
    with pytest.raises(InputError, match=needle):
        config.load_recipe("sft", "recipes/customer_support/sft.yaml", [override])


def test_the_messy_test_split_is_the_test_tasks_noised_and_never_trained_on():
    clean, messy = data.load("harbor_test", "tasks", 0, 110), data.load("harbor_test_messy", "tasks", 0, 110)
    assert [t["id"] for t in clean] == [t["id"] for t in messy]
    assert all(c["required"] == m["required"] and c["intent"] == m["intent"] for c, m in zip(clean, messy))
    assert sum(c["messages"] != m["messages"] for c, m in zip(clean, messy)) > 55
    with pytest.raises(InputError, match="the test split"):
        config.load_recipe("sft", "recipes/customer_support/sft.yaml", ["data.validation=harbor_test_messy"])


def test_load_noises_the_training_rows_a_recipe_names():
    recipe = config.load_recipe("sft", "recipes/customer_support/sft_augment.yaml")
    plain = data.load("harbor_sft", "conversational", 0, 100)
    noised = data.load("harbor_sft", "conversational", 0, 100, augment=recipe.data.augment)
    assert len(plain) == len(noised) and plain != noised


def test_rlft_data_augment_writes_rows_with_their_originals(tmp_path, capsys):
    assert cli.main(["data", "augment", "harbor_sft", "-n", "20", "--rates", "case=1", "--out", str(tmp_path)]) == 0
    rows = [json.loads(line) for line in (tmp_path / "harbor_sft.augmented.jsonl").read_text().splitlines()]
    assert len(rows) == 20
    for row in rows:
        text = row["messages"][0]["content"]
        assert text in (row["user_turns_before"][0].lower(), row["user_turns_before"][0].upper())
    assert cli.main(["data", "augment", "harbor_sft", "--rates", "case=lots", "--out", str(tmp_path / "x")]) == 2
    assert "not NAME=RATE" in capsys.readouterr().err and not (tmp_path / "x").exists()
