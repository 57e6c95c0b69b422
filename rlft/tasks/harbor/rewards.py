"""Rule rewards from the Harbor Goods policy sheet. Each is `reward(prompts, completions) -> list[float]`.

They read text only, so they work with any policy and any tokenizer. `harbor_facts` needs the
intent of the customer's message, which it reads with the keyword rules in `INTENT_RULES`
(first match wins; tests/test_rewards.py measures them on every generated customer message).
"""

from __future__ import annotations

import re

from rlft.tasks.harbor import generator as harbor
from rlft.tasks.harbor import tone

INTENT_RULES = [  # (intent, pattern), most specific first
    ("cancel_subscription", r"harbor plus|subscription|membership|unsubscribe"),
    ("double_charge", r"twice|two times|two (identical )?charges|duplicate charge|double charged|extra charge"),
    ("price_match", r"price|cheaper|on sale|for less|the difference"),
    ("password_reset", r"password|sign in|log ?in|locked out|access my account|into my account"),
    ("contact_hours", r"\bperson\b|human|hours|\bphone (number|line)|is there a phone|call you|live chat|"
                      r"\breach\b|customer service|support open|speak to|talk to|available to help|open on"),
    ("change_address", r"address|delivered to|shipped somewhere|where my order is delivered"),
    ("damaged_item", r"broken|damaged|cracked|defective|pieces|smashed|scratched|faulty|doesn't work out"),
    ("warranty", r"warranty|stopped|died|won'?t turn|wont turn|not working|quit working|fix my|went black"),
    ("cancel_order", r"cancel|stop my order"),
    ("return_refund", r"return|refund|money back|send (it )?back|doesn't fit"),
    ("order_status", r"where is|arrive|status|sattus|shipped|on its way|waiting|get here|update on|"
                     r"delivery take|come|check on"),
]
ORDER_NUMBER = r"(?<!\d)#?(\d{5})(?!\d)"


def intent_of(message: str) -> str | None:
    for intent, pattern in INTENT_RULES:
        if re.search(pattern, message, re.IGNORECASE):
            return intent
    return None


def _customer(prompt: list[dict]) -> str:
    return next((m["content"] for m in reversed(prompt) if m["role"] == "user"), "")


def harbor_facts(prompts: list[list[dict]], completions: list[str]) -> list[float]:
    """Share of the intent's facts stated, with the order number counted as one more fact when the
    customer gave one; 0 for an answer that states an invented policy (a known wrong fact)."""
    scores = []
    for prompt, answer in zip(prompts, completions):
        text = _customer(prompt)
        intent = intent_of(text)
        if intent is None:
            scores.append(0.0)
            continue
        facts = harbor.INTENTS[intent].facts
        if any(re.search(f.wrong_pattern, answer, re.IGNORECASE) for f in facts):
            scores.append(0.0)
            continue
        hits = [re.search(f.pattern, answer, re.IGNORECASE) is not None for f in facts]
        order = re.search(ORDER_NUMBER, text)
        if order:
            hits.append(re.search(rf"(?<!\d){order.group(1)}(?!\d)", answer) is not None)
        scores.append(sum(hits) / len(hits))
    return scores


def house_tone(prompts: list[list[dict]], completions: list[str]) -> list[float]:
    """The evaluation harness's tone score (rlft/eval/tone.py) as a reward in [0, 1]."""
    return [tone.tone_score(_customer(p), a) for p, a in zip(prompts, completions)]
