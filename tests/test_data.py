"""The built-in data: deterministic, disjoint where it must be, and consistent with its checker."""

from __future__ import annotations

import json
import re

import pytest

from rlft import data
from rlft.data import chitchat, harbor, probes
from rlft.eval import metrics


def _bytes(rows) -> bytes:
    return json.dumps(rows, sort_keys=True).encode()


@pytest.mark.parametrize("name", ["harbor_sft", "harbor_pairs", "harbor_prompts", "harbor_eval", "harbor_pretrain"])
def test_generators_are_deterministic_by_seed(name):
    assert _bytes(data.builtin(name, 3, 60)) == _bytes(data.builtin(name, 3, 60))
    assert _bytes(data.builtin(name, 3, 60)) != _bytes(data.builtin(name, 4, 60))


def test_eval_split_is_disjoint_from_training_by_order_number_product_and_template():
    train = [r["messages"][0]["content"] for r in harbor.sft_rows(0, 2000)]
    train += [r["prompt"][0]["content"] for r in harbor.pair_rows(0, 1000)]
    evals = harbor.eval_rows(0, 330)
    train_text = "\n".join(train).lower()
    for task in evals:
        for number in re.findall(r"\d{5}", task["messages"][0]["content"]):
            assert number not in train_text
    for product in harbor.EVAL_PRODUCTS:
        assert not re.search(rf"\b{product}\b", train_text)
    for intent, templates in harbor.CUSTOMER.items():
        for held in templates[harbor.EVAL_TEMPLATES[intent]:]:
            head = held.split("{")[0].strip().lower()
            if len(head) > 12:  # a distinctive opening of a held-out template never trains
                assert head not in train_text, (intent, head)


def test_every_eval_task_accepts_its_reference_and_rejects_the_rejected_kinds():
    for task in harbor.eval_rows(0, 330):
        correct, recall = metrics.check_task(task["reference"], task["required"], task["forbidden"])
        assert correct and recall == 1.0, task


def test_rejected_answers_fail_the_checker_or_the_tone_rules():
    from rlft.eval import tone

    for pair in harbor.pair_rows(0, 440):
        task_prompt = pair["prompt"][0]["content"]
        chosen, rejected = pair["chosen"][0]["content"], pair["rejected"][0]["content"]
        assert tone.tone_score(task_prompt, chosen) > tone.tone_score(task_prompt, rejected) or pair["kind"] == "facts"
        if pair["kind"] in ("facts", "both"):
            assert not re.search(r"\bwhatever\b", chosen)


def test_all_eleven_intents_are_generated():
    assert {r["intent"] for r in harbor.eval_rows(0, 110)} == set(harbor.INTENTS) and len(harbor.INTENTS) == 11
    assert {p["kind"] for p in harbor.pair_rows(0, 88)} == set(harbor.REJECTION_KINDS)


def test_chitchat_held_out_part_is_at_least_five_percent_and_disjoint():
    train, held = chitchat.chats("train"), chitchat.chats("held_out")
    assert len(held) / (len(train) + len(held)) >= 0.05
    # the split is by conversation; short greetings may repeat verbatim, real conversations do not
    long_held = {json.dumps(c) for c in held if len(c) >= 3}
    assert long_held and not long_held & {json.dumps(c) for c in train}


def test_probe_items_are_held_out_from_pretraining():
    train = {c[0]["content"] for c in probes.train_chats(0, 20000)}
    for skill in probes.SKILLS:
        items = probes.probe_items(skill)
        assert len(items) >= 200
        assert not {it["messages"][0]["content"] for it in items} & train
    assert probes.answer("count_down", 105) == "104 103 102 101 100"


def test_export_writes_what_trains(tmp_path):
    from rlft import cli

    assert cli.main(["data", "export", "harbor_pairs", "--out", str(tmp_path), "-n", "22"]) == 0
    rows = [json.loads(line) for line in (tmp_path / "harbor_pairs.jsonl").read_text().splitlines()]
    assert rows == harbor.pair_rows(0, 22)
