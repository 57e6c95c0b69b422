"""The built-in data: deterministic, disjoint where it must be, and consistent with its checker."""

from __future__ import annotations

import json
import re

import pytest

from rlft import data
from rlft.data import chitchat, probes
from rlft.eval import metrics
from rlft.tasks.harbor import generator as harbor
from rlft.tasks.harbor import tone

pytestmark = pytest.mark.unit  # pure functions, configs, data: no model is trained


def _bytes(rows) -> bytes:
    return json.dumps(rows, sort_keys=True).encode()


@pytest.mark.parametrize("name", ["harbor_sft", "harbor_pairs", "harbor_prompts", "harbor_dev", "harbor_test",
                                  "harbor_pretrain"])
def test_generators_are_deterministic_by_seed(name):
    assert _bytes(data.builtin(name, 3, 60)) == _bytes(data.builtin(name, 3, 60))
    assert _bytes(data.builtin(name, 3, 60)) != _bytes(data.builtin(name, 4, 60))


def _customers(split_rows) -> str:
    return "\n".join(split_rows).lower()


def _split_texts() -> dict[str, list[str]]:
    """Every customer message each split hands out, through every built-in set that reads it."""
    train = [r["messages"][0]["content"] for r in data.builtin("harbor_sft", 0, 2000)]
    train += [r["prompt"][0]["content"] for r in data.builtin("harbor_pairs", 0, 1000)]
    train += [r["prompt"][0]["content"] for r in data.builtin("harbor_prompts", 0, 1000)]
    train += [r["messages"][0]["content"] for r in data.builtin("harbor_pretrain", 0, 2000)]
    dev = [r["messages"][0]["content"] for r in data.builtin("harbor_dev", 0, 330)]
    dev += [r["messages"][0]["content"] for r in data.builtin("harbor_sft_val", 0, 330)]
    dev += [r["prompt"][0]["content"] for r in data.builtin("harbor_pairs_val", 0, 330)]
    test = [r["messages"][0]["content"] for r in data.builtin("harbor_test", 0, 330)]
    return {"train": train, "dev": dev, "test": test}


@pytest.mark.parametrize("a,b", [("train", "dev"), ("train", "test"), ("dev", "test")])
def test_the_splits_are_disjoint_by_order_number_product_and_template(a, b):
    texts = _split_texts()
    other = _customers(texts[b])
    for message in texts[a]:
        for number in re.findall(r"\d{5}", message):
            assert number not in other, (a, b, number)
    for product in harbor.PRODUCTS[a]:
        assert not re.search(rf"\b{product}\b", other), (a, b, product)
    for intent, templates in harbor.CUSTOMER.items():
        for template in templates[harbor.TEMPLATE_SPLITS[a]]:
            head = template.split("{")[0].strip().lower()
            if len(head) > 12:  # a distinctive opening of one split's template never appears in another
                assert head not in other, (a, b, intent, head)


def test_validation_sets_come_from_dev_and_no_validation_prompt_is_trained_on():
    texts = _split_texts()
    train = set(texts["train"])
    assert not train & {r["messages"][0]["content"] for r in data.builtin("harbor_sft_val", 0, 200)}
    assert not train & {r["prompt"][0]["content"] for r in data.builtin("harbor_pairs_val", 0, 200)}


def test_every_task_accepts_its_reference():
    for split in ("dev", "test"):
        for task in harbor.task_rows(0, 330, split):
            correct, recall = metrics.check_task(task["reference"], task["required"], task["forbidden"])
            assert correct and recall == 1.0, task


def test_tasks_name_their_template_as_a_cluster_of_three_per_intent():
    tasks = harbor.task_rows(0, 330, "test")
    assert len({t["cluster"] for t in tasks}) == 33
    assert all(t["cluster"].startswith(t["intent"] + "/") for t in tasks)


def test_rejected_answers_fail_the_checker_or_the_tone_rules():
    for pair in harbor.pair_rows(0, 550):
        task_prompt = pair["prompt"][0]["content"]
        chosen, rejected = pair["chosen"][0]["content"], pair["rejected"][0]["content"]
        if pair["kind"] in ("facts", "other_intent"):  # the house tone: only the facts tell them apart
            assert tone.tone_score(task_prompt, chosen) == tone.tone_score(task_prompt, rejected), pair
        else:
            assert tone.tone_score(task_prompt, chosen) > tone.tone_score(task_prompt, rejected), pair
        if pair["kind"] in ("facts", "both"):
            assert not re.search(r"\bwhatever\b", chosen)


def test_all_eleven_intents_are_generated():
    assert {r["intent"] for r in harbor.task_rows(0, 110, "test")} == set(harbor.INTENTS) and len(harbor.INTENTS) == 11
    assert {p["kind"] for p in harbor.pair_rows(0, 110)} == set(harbor.REJECTION_KINDS)


def test_chitchat_held_out_part_shares_no_turn_with_pretraining():
    train, held = chitchat.chats("train"), chitchat.chats("held_out")
    # enough for the evaluation's 64 conversations and the budgets' 16, which do not overlap
    assert len(held) >= 150
    seen = {" ".join(m["content"].lower().split()) for c in train for m in c}
    assert not any(" ".join(m["content"].lower().split()) in seen for c in held for m in c)
    assert chitchat.general_prompts(64) == [c[:1] for c in held[:64]]


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


def test_a_file_gives_its_first_n_train_rows_as_a_built_in_set_gives_the_first_of_its_stream(tmp_path):
    """data.n_train of a user's file: 30 rows on file, n_train 12 -> rows 1-12; a built-in set's 12 rows
    are the first 12 of the 30 its seed generates. Validation and tasks files (first_n off) stay whole."""
    rows = data.builtin("harbor_sft", 0, 30)
    assert data.builtin("harbor_sft", 0, 12) == rows[:12]
    path = tmp_path / "mine.jsonl"
    data.write_jsonl(rows, path)
    assert data.load(str(path), "conversational", 0, 12, first_n=True) == rows[:12]
    assert data.load(str(path), "conversational", 0, 100, first_n=True) == rows  # fewer rows than asked: all
    assert data.load(str(path), "conversational", 0, 12) == rows
