"""Metrics with hand-computed values, and the tone scorer on labelled examples."""

from __future__ import annotations

import math
import random

import pytest
import torch

from rlft.eval import metrics
from rlft.rl.core import exact_kl_per_row
from rlft.tasks.harbor import tone

pytestmark = pytest.mark.unit  # pure functions, configs, data: no model is trained


def test_wilson_interval_hand_computed():
    """8/10, z² = 3.8415: denom = 1.38415; centre = (0.8 + 3.8415/20)/denom = 0.71677;
    half = 1.96*sqrt(0.16/10 + 3.8415/400)/denom = 1.96*0.16001/1.38415 = 0.22658 → [0.4902, 0.9434]."""
    lo, hi = metrics.wilson_interval(8, 10)
    assert lo == pytest.approx(0.4902, abs=1e-3) and hi == pytest.approx(0.9434, abs=1e-3)
    assert metrics.wilson_interval(0, 0) == (0.0, 1.0)


def test_check_task_counts_recall_and_forbidden():
    """2 of 3 required match → recall 2/3, incorrect; all match but a forbidden one → incorrect."""
    assert metrics.check_task("Returns within 30 days. Label.", ["30 days", "label", "refund"], []) == (False, 2 / 3)
    assert metrics.check_task("30 days, whatever", ["30 DAYS"], ["whatever"]) == (False, 1.0)
    assert metrics.check_task("30 days", ["30 days"], ["whatever"]) == (True, 1.0)


def test_distinct_2_hand_computed():
    """'a b a b' has bigrams ab, ba, ab → 2 unique of 3."""
    assert metrics.distinct_n(["a b a b"], 2) == pytest.approx(2 / 3)


def test_exact_kl_hand_computed():
    """p = softmax([0, ln 3]) = [1/4, 3/4], q = uniform: KL = 1/4 ln(1/2) + 3/4 ln(3/2) = 0.130812 per
    position. Row 0 holds it twice (0.261624), row 1 once and a masked position that counts nothing."""
    lp = torch.tensor([[0.0, math.log(3)]]).expand(2, 2, 2)
    lq = torch.zeros(2, 2, 2)
    mask = torch.tensor([[True, True], [True, False]])
    one = 0.25 * math.log(0.5) + 0.75 * math.log(1.5)
    assert exact_kl_per_row(lp, lq, mask).tolist() == pytest.approx([2 * one, one], abs=1e-6)
    assert exact_kl_per_row(lp, lp, mask).tolist() == pytest.approx([0.0, 0.0], abs=1e-7)


LABELLED = [
    # (customer, reply, tone_score, impolite)
    ("My lamp arrived broken.", "Thanks for writing. I'm sorry about this. We will send a replacement. "
     "Is there anything else I can help you with?", 1.0, False),
    ("What are your hours?", "Hello! Live chat is open 24/7. Happy to help with anything else.", 1.0, False),
    ("My lamp arrived broken.", "Thanks. We will send a replacement. Let me know if you need more.", 2 / 3, False),
    ("What are your hours?", "Live chat is open 24/7.", 1 / 3, False),  # R2 holds: nothing went wrong
    ("I was charged twice!", "Not my problem. Read the FAQ.", 0.0, True),
    ("Where is my order?", "Hello, it ships soon. CHECK YOUR EMAIL. Anything else?", 0.75, True),
    ("Where is my order?", "Hi, that is your fault. Anything else?", 0.75, True),
    ("I was charged twice.", "Thank you. I am so sorry. We sincerely apologise. We deeply apologise. "
     "Refund in 3-5 business days. Anything else?", 0.75, False),
]


@pytest.mark.parametrize("customer,reply,score,rude", LABELLED)
def test_tone_scorer_on_labelled_examples(customer, reply, score, rude):
    assert tone.tone_score(customer, reply) == pytest.approx(score)
    assert tone.impolite(customer, reply) == rude


def test_metrics_load_as_offline_evaluate_modules(monkeypatch):
    import evaluate

    from rlft.eval.modules import path

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    acc = evaluate.load(path("rlft_task_accuracy"))
    out = acc.compute(predictions=["Returns within 30 days.", "nope"], required=[["30 days"], ["30 days"]],
                      forbidden=[[], []])
    assert out["task_accuracy"] == 0.5 and out["fact_recall"] == 0.5
    tone_metric = evaluate.load(path("rlft_tone"))
    out = tone_metric.compute(predictions=["Not my problem."], customer=["Where is my order?"])
    assert out["impolite_rate"] == 1.0


def test_the_rule_judge_of_a_users_tasks_file_counts_ties_as_half():
    """Task needs '30 days' and 'label'. A (both) beats B (one); A vs A ties → (1 + 0.5) / 2 = 0.75."""
    from rlft.eval.harness import rule_judgements

    task = {"messages": [{"role": "user", "content": "Can I return it?"}], "required": ["30 days", "label"],
            "forbidden": []}
    both, one = "Returns within 30 days, with a label.", "Returns within 30 days."
    judged = rule_judgements([task, task], [both, both], [one, both])
    assert judged == [1.0, 0.5] and sum(judged) / len(judged) == 0.75


def test_win_tie_loss_counts_and_same_answers():
    """win, tie on the same answer, loss → 1 / 1 / 1, one same answer, a third of ties."""
    from rlft.eval.harness import win_tie_loss

    ours, theirs = ["a", "b", "c"], ["x", "b", "y"]
    out = win_tie_loss([1.0, 0.5, 0.0], ours, theirs, clusters=["t1", "t2", "t3"], seed=0)
    assert (out["wins"], out["ties"], out["losses"], out["same_answer"]) == (1, 1, 1, 1)
    assert out["tie_share"] == pytest.approx(1 / 3)
    lo, hi = out["win_rate_ci"]
    assert lo < 0.5 < hi


def test_the_win_rate_ceiling_is_reached_by_answers_the_judge_ranks_highest_everywhere():
    """Against a parent right (and ranked highest) on half the tasks, answers ranked highest on every task
    win the other half and tie this half: 0.75, the ceiling; no answers score above it, worse ones below."""
    from rlft.eval.harness import judge_section, load_tasks
    from rlft.tasks import harbor
    from rlft.tasks.judgement import Judgement

    tasks = load_tasks("harbor_dev", 0, 8)
    best = [t["reference"] for t in tasks]
    assert all(harbor.judge_task(t, a).rank() == Judgement.BEST for t, a in zip(tasks, best))
    parent = best[:4] + ["Hello."] * 4
    section, _ = judge_section(harbor, tasks, best, parent, seed=0)
    assert section["win_rate_ceiling"] == section["win_rate_vs_parent"] == 0.75
    worse, _ = judge_section(harbor, tasks, ["Hello."] * 8, parent, seed=0)
    assert worse["win_rate_ceiling"] == 0.75 and worse["win_rate_vs_parent"] == 0.25
    assert judge_section(harbor, tasks, best, best, seed=0)[0]["win_rate_ceiling"] == 0.5


def test_cluster_bootstrap_resamples_templates_not_tasks():
    """Two clusters: A holds ten 1s, B ten 0s. Resampling the two clusters gives means 1 (AA, p 1/4),
    0.5 (AB or BA, p 1/2) or 0 (BB, p 1/4): the 95% interval is [0, 1]. Resampling the twenty tasks
    as if independent would give about 0.5 -+ 1.96 * 0.5 / sqrt(20) = [0.28, 0.72]: far too narrow."""
    from rlft.eval.metrics import bootstrap_interval, cluster_bootstrap_interval

    values, clusters = [1.0] * 10 + [0.0] * 10, ["A"] * 10 + ["B"] * 10
    assert cluster_bootstrap_interval(values, clusters, seed=0) == (0.0, 1.0)
    lo, hi = bootstrap_interval(values, seed=0)
    assert 0.25 <= lo <= 0.32 and 0.68 <= hi <= 0.75
    # one task per cluster is the plain bootstrap (other draws, the same width)
    lo, hi = cluster_bootstrap_interval(values, [str(i) for i in range(20)], seed=0)
    assert 0.25 <= lo <= 0.32 and 0.68 <= hi <= 0.75


def test_bootstrap_interval_of_a_mean():
    """Constant values: the interval is the value itself. 50 zeros and 50 ones: mean 0.5, standard
    error 0.5 / sqrt(100) = 0.05, so the 95% interval is about 0.5 -+ 1.96 * 0.05 = [0.40, 0.60]."""
    from rlft.eval.metrics import bootstrap_interval

    assert bootstrap_interval([0.5] * 20, seed=0) == (0.5, 0.5)
    lo, hi = bootstrap_interval([0.0, 1.0] * 50, seed=0)
    assert 0.38 <= lo <= 0.42 and 0.58 <= hi <= 0.62
    assert bootstrap_interval([0.0, 1.0] * 50, seed=0) == (lo, hi)  # seeded


def test_rl_headroom_tells_the_ties_apart():
    """bench/rl_headroom.py: perfect vs perfect, wrong-intent vs wrong-intent, half vs half (the
    same fact missing), and a win → one tie of each kind and one win."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("rl_headroom", "bench/rl_headroom.py")
    rl_headroom = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(rl_headroom)
    task = {"intent": "return_refund", "messages": [{"role": "user", "content": "Can I return it?"}]}
    perfect = ("Thanks for asking! Returns are accepted within 30 days. The refund goes to your original payment "
               "method within 5-7 business days. We email you a prepaid return label. Anything else?")
    other = "Thanks for asking! Use the Forgot password link. Anything else?"
    half = "Thanks for asking! Returns are accepted within 30 days. Anything else?"
    out = rl_headroom.split([task] * 4, [perfect, other, half, perfect], [perfect, other, half, half])
    assert out == {"wins": 1, "losses": 0, "ties_parent_perfect": 1, "ties_no_facts": 1, "ties_other": 1}


def test_ratio_interval_covers_the_ratio_and_narrows_with_more_answers():
    rng = random.Random(0)
    lengths = [rng.randint(5, 60) for _ in range(400)]
    sums = [n * rng.uniform(0.2, 1.8) for n in lengths]  # per-token KL about 1, varying by answer
    few = metrics.ratio_interval(sums[:25], lengths[:25], seed=1)
    many = metrics.ratio_interval(sums, lengths, seed=1)
    assert few[0] < sum(sums[:25]) / sum(lengths[:25]) < few[1]
    assert many[0] < sum(sums) / sum(lengths) < many[1]
    assert many[1] - many[0] < (few[1] - few[0]) / 2  # 16x the answers: about a quarter of the width
    assert metrics.ratio_interval([], [], seed=1) == (0.0, 0.0)
