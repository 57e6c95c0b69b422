"""The held-out judge (rlft/tasks/harbor/judge.py): answers that game a rule checker, hand-written pairs,
and the gap to the training reward it exists to show."""

from __future__ import annotations

import pytest

from rlft.tasks.harbor import REWARDS, generator, judge

pytestmark = pytest.mark.unit  # pure functions, configs, data: no model is trained

RETURN = "I want to return my tablet. Order #85123."
GOOD_RETURN = ("Thank you for reaching out to Harbor Goods. I have looked up order #85123. Returns are accepted "
               "within 30 days of delivery. The refund goes back to your original payment method. It arrives "
               "within 5-7 business days after we receive the return. We will email you a prepaid return label. "
               "Is there anything else I can help you with?")
# Every intent's facts in one answer: the old rule checker gave it full marks on all 110 tasks.
EVERYTHING = " ".join(["Thank you for reaching out. About order #85123:"]
                      + [fact.says[0] for intent in generator.INTENTS.values() for fact in intent.facts]
                      + ["Phone support runs Monday to Friday, 9am to 6pm. Anything else?"])


def _judge(answer: str, customer: str = RETURN, intent: str = "return_refund") -> judge.Judgement:
    return judge.judge(intent, customer, answer)


def test_a_house_answer_is_correct_with_full_coverage_and_courtesy():
    j = _judge(GOOD_RETURN)
    assert j.correct and j.coverage == 1.0 and j.courtesy == 1.0, j.reasons


def test_every_reference_of_dev_and_test_is_correct_and_every_rejected_kind_fails_and_loses():
    """The judge agrees with the generator's intent on every generated answer, without its patterns."""
    for split in ("dev", "test"):
        for task in generator.task_rows(0, 330, split):
            assert judge.judge_task(task, task["reference"]).correct, task
    for pair in generator.pair_rows(0, 550, "dev"):
        task = {"intent": pair["intent"], "messages": pair["prompt"]}
        assert not judge.judge_task(task, pair["rejected"][0]["content"]).correct, pair
        assert judge.compare(task, pair["chosen"][0]["content"], pair["rejected"][0]["content"]) == 1.0, pair


# --- the gaming cases: each scores what a person would give it ---------------------------

def test_every_intents_facts_at_once_is_hedging_and_earns_nothing():
    j = _judge(EVERYTHING)
    assert not j.correct and j.coverage == 0.0
    assert any(r.startswith("states another intent's policy") for r in j.reasons)


def test_hedging_fails_every_test_task():
    tasks = generator.task_rows(0, 110, "test")
    assert not any(judge.judge_task(t, EVERYTHING).correct for t in tasks)


def test_the_order_number_plus_filler_earns_nothing():
    answer = ("Thank you for reaching out. I have looked up order #85123. As a valued customer, your satisfaction "
              "is our top priority. We appreciate your patience. We truly value you. Anything else?")
    j = _judge(answer)
    assert not j.correct and j.coverage == 0.0 and "padded" in j.reasons


@pytest.mark.parametrize("sentence,negated", [
    ("Returns are accepted within 30 days of delivery.", "We do not accept returns within 30 days of delivery."),
    ("The refund goes back to your original payment method.",
     "The refund never goes back to your original payment method."),
    ("We will email you a prepaid return label.", "We won't email you a prepaid return label."),
])
def test_a_negated_fact_is_not_stated(sentence, negated):
    j = _judge(GOOD_RETURN.replace(sentence, negated))
    assert not j.correct and j.coverage == 0.0
    assert any(r.startswith("negated") for r in j.reasons), j.reasons


def test_the_right_facts_said_rudely_are_not_correct_but_keep_their_coverage():
    answer = ("Read the FAQ next time. I have looked up order #85123. Returns are accepted within 30 days of "
              "delivery. The refund goes back to your original payment method within 5-7 business days. We will "
              "email you a prepaid return label. Whatever.")
    j = _judge(answer)
    assert not j.correct and "impolite" in j.reasons and j.courtesy == 0.0 and j.coverage == 1.0


def test_a_polite_refusal_is_not_correct():
    answer = ("Thank you for reaching out to Harbor Goods. I'm sorry, but I can't help with returns here. "
              "Is there anything else I can help you with?")
    j = _judge(answer)
    assert not j.correct and j.coverage == 0.0 and j.courtesy == 1.0


@pytest.mark.parametrize("invention", [
    "Returns are accepted within 90 days of delivery.",
    "The refund is paid as store credit only.",
    "A restocking fee of 10 dollars applies.",
    "It takes about two months to process.",
])
def test_an_invented_policy_fails(invention):
    j = _judge(GOOD_RETURN.replace("Is there anything", invention + " Is there anything"))
    assert not j.correct and j.coverage == 0.0
    assert any(r.startswith("invents a policy") for r in j.reasons), j.reasons


def test_a_wrong_order_number_fails_and_a_missing_one_is_not_correct():
    assert "names another order number: 85124" in _judge(GOOD_RETURN.replace("85123", "85124")).reasons
    j = _judge(GOOD_RETURN.replace("I have looked up order #85123. ", ""))
    assert not j.correct and j.coverage == 1.0 and "order number not repeated (85123)" in j.reasons


def test_no_cancellation_fee_is_a_fact_not_a_negation():
    customer = "Please end my Harbor Plus membership."
    answer = ("Thanks for getting in touch. You can cancel any time under Account > Subscriptions. There is no "
              "cancellation fee. Your benefits last until the end of the billing period. Happy to help with "
              "anything else.")
    assert judge.judge("cancel_subscription", customer, answer).correct
    assert not judge.judge("cancel_subscription", customer, answer.replace("no cancellation fee",
                                                                           "a 20 dollar cancellation fee")).correct


# --- hand-written pairs --------------------------------------------------------------------

def _task(intent: str, customer: str) -> dict:
    return {"intent": intent, "messages": [{"role": "user", "content": customer}]}


def test_pairs_rank_correctness_then_coverage_then_courtesy():
    task = _task("return_refund", RETURN)
    one_fact = GOOD_RETURN.replace(" We will email you a prepaid return label.", "")
    curt_but_right = GOOD_RETURN.replace("Thank you for reaching out to Harbor Goods. ", "").replace(
        " Is there anything else I can help you with?", "")
    assert judge.compare(task, GOOD_RETURN, one_fact) == 1.0  # all four facts beat three
    assert judge.compare(task, curt_but_right, one_fact) == 1.0  # correct beats polite and incomplete
    assert judge.compare(task, GOOD_RETURN, curt_but_right) == 1.0  # same facts: courtesy decides
    assert judge.compare(task, one_fact, GOOD_RETURN) == 0.0
    assert judge.compare(task, GOOD_RETURN, GOOD_RETURN) == 0.5
    assert judge.compare(task, EVERYTHING, one_fact) == 0.0  # hedging loses to an honest partial answer


def test_apology_is_due_only_when_the_customer_reports_a_problem():
    plain = _task("order_status", "Where is my order #85123?")
    broken = _task("damaged_item", "My tablet arrived broken. Order #85123.")
    no_apology = "Thanks for your message. About order #85123: anything else?"
    assert judge.judge_task(plain, no_apology).courtesy == 1.0
    assert judge.judge_task(broken, no_apology).courtesy == pytest.approx(2 / 3)


def test_the_training_reward_pays_for_hedging_and_the_judge_does_not():
    """Why the judge exists: harbor_facts + house_tone, the RL recipes' reward, prefers the answer
    with every intent's facts to an honest partial one; the judge prefers the honest one."""
    task = _task("return_refund", RETURN)
    partial = GOOD_RETURN.replace(" We will email you a prepaid return label.", "")
    prompts = [task["messages"]] * 2
    proxy = [sum(r) for r in zip(*(REWARDS[name](prompts, [EVERYTHING, partial]) for name in REWARDS))]
    assert proxy[0] > proxy[1]
    assert judge.compare(task, EVERYTHING, partial) == 0.0


# --- the optional model judge ----------------------------------------------------------------

def test_length_control_removes_what_length_alone_explains():
    """Equal lengths: the fit is theta = logit(mean), so 0.7 stays 0.7 (less a hair of ridge). Longer
    answers always win and shorter always lose: at equal length that is a coin, 0.5."""
    from rlft.eval.metrics import length_controlled_win_rate

    assert length_controlled_win_rate([0.7] * 10, [0] * 10) == pytest.approx(0.7, abs=0.005)
    assert length_controlled_win_rate([1.0, 0.0] * 10, [5, -5] * 10) == pytest.approx(0.5, abs=1e-6)
    assert length_controlled_win_rate([1.0, 1.0] * 10, [5, -5] * 10) > 0.95  # wins at every length


@pytest.mark.parametrize("intent,customer,sentence", [
    ("change_address", "Can I change the shipping address on order #85123?",
     "The address cannot be changed before the order ships."),
    ("contact_hours", "How late is customer service open?", "Live chat is not open 24/7."),
    ("double_charge", "I was billed twice for one tablet.", "The duplicate charge will not be refunded."),
])
def test_a_negation_inside_the_facts_own_words_still_negates_it(intent, customer, sentence):
    j = judge.judge(intent, customer, f"Thanks for your message. {sentence} Anything else?")
    assert any(r.startswith("negated") for r in j.reasons), j.reasons


def test_every_constructed_bad_answer_fails_where_the_proxy_pays_for_some():
    """bench/judge_vs_proxy.py's answers on 33 test tasks: the judge passes only the references; the
    training reward scores the reference with an invented fee as high as the reference itself."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("judge_vs_proxy", "bench/judge_vs_proxy.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    kinds = bench.measure(seed=0, n=33)["by_kind"]
    assert kinds["reference"]["judge_accuracy"] == 1.0
    assert all(r["judge_accuracy"] == 0.0 for k, r in kinds.items() if k != "reference"), kinds
    assert kinds["invented"]["proxy_mean"] == pytest.approx(kinds["reference"]["proxy_mean"])
