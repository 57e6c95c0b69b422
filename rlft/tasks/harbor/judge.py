"""The held-out judge of Harbor Goods answers: what the README's task accuracy and win rate use.

Written from the policy sheet (shared/support_policy.md) apart from the generator's fact
patterns and from the rewards PPO and GRPO optimise (`rewards.py`): it has answer keys of its
own, read sentence by sentence, so a gain the rewards pay for but a reader would not accept
shows up as a gap between the two (eval.json's `proxy` section).

An answer is *correct* when it
  1. states every key fact of the customer's intent, each in one sentence that does not negate
     it ("we do not offer refunds within 30 days" states nothing),
  2. repeats the customer's order number where one was given, and names no other one,
  3. states no key fact of another intent (hedging: listing every policy to hit the right one),
  4. invents no policy: no duration, fee or channel the sheet does not give for this intent,
  5. is polite: no dismissing, blaming or shouting,
  6. is not padded: under three apologies, at most one sentence that carries nothing, no
     sentence said twice.
Pairwise, answers compare by (correct, clean coverage, courtesy) in that order: clean coverage
is the share of key facts stated, 0 when rule 2 (a wrong number), 3 or 4 fails or a fact is
negated; courtesy is the share of the sheet's three tone habits kept (greet or thank, apologise
when the customer reports a problem, offer further help), 0 when impolite.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from rlft.tasks.judgement import Judgement

# --- the answer keys: one list of sentence patterns per intent -----------------------------

_DAYS = r"business days?"
_RANGE = r"\s*(-|–|to)\s*"


def _span(low: str, high: str) -> str:
    words = {"1": "one", "2": "two", "3": "three", "5": "five", "7": "seven"}
    return rf"\b({low}|{words[low]}){_RANGE}({high}|{words[high]})\s+{_DAYS}"


@dataclass(frozen=True)
class Key:
    name: str
    pattern: str  # must match inside one sentence (case-insensitive)
    negative: bool = False  # the fact itself is said with a negation ("no cancellation fee")


KEYS: dict[str, tuple[Key, ...]] = {
    "order_status": (
        Key("standard shipping 3-5 business days", rf"standard.*{_span('3', '5')}"),
        Key("express shipping 1-2 business days", rf"express.*{_span('1', '2')}"),
        Key("tracking link emailed", r"tracking (link|number|e-?mail).*e-?mail|e-?mail.*tracking (link|number)"),
    ),
    "return_refund": (
        Key("returns within 30 days", r"(return|refund).*\b(30|thirty)[ -]days?\b"),
        Key("refund to the original payment method", r"original (form of )?payment( method)?"),
        Key("refund 5-7 business days after the return arrives", _span("5", "7")),
        Key("prepaid return label", r"pre-?paid (return |shipping )?label"),
    ),
    "cancel_order": (
        Key("cancel until it ships", r"cancel.*\b(until|before)\b.*\bship"),
        Key("Account > Orders > Cancel", r"account\s*>\s*orders\s*>\s*cancel"),
        Key("once shipped, return it", r"shipped.*\breturn|\breturn.*\bshipped"),
    ),
    "damaged_item": (
        Key("a photo of the damage", r"\b(photo|picture)s?\b"),
        Key("a free replacement", r"free replacement|replace(ment)? (it )?(for|at) no (extra )?cost"),
    ),
    "change_address": (
        Key("change the address before it ships", r"(address|chang).*\bbefore\b.*\bship"),
        Key("Account > Orders > Edit address", r"account\s*>\s*orders\s*>\s*edit address"),
    ),
    "password_reset": (
        Key("the Forgot password link", r"forgot(ten)? (your )?password"),
        Key("the link is valid for 24 hours", r"\b(24|twenty-four)[ -]hours?\b"),
    ),
    "double_charge": (
        Key("the duplicate charge is refunded", r"(duplicate|double|extra|second) charge.*refund|refund.*(duplicate|double|extra|second) charge"),
        Key("within 3-5 business days", _span("3", "5")),
    ),
    "cancel_subscription": (
        Key("cancel under Account > Subscriptions", r"account\s*>\s*subscriptions"),
        Key("no cancellation fee", r"\bno (cancellation )?fee|free to cancel|without (a |any )?fee", negative=True),
        Key("benefits until the end of the billing period", r"end of (the |your )?(current )?billing (period|cycle)"),
    ),
    "price_match": (
        Key("price match within 14 days of purchase", r"\b(14|fourteen)[ -]days?\b"),
        Key("Harbor Goods refunds the difference", r"refund.*\bdifference\b"),
    ),
    "contact_hours": (
        Key("live chat 24/7", r"(live )?chat.*24/7|24/7.*(live )?chat"),
        Key("phone Monday to Friday", r"monday\s*(to|-|–|through)\s*friday"),
        Key("phone 9am to 6pm", r"\b9\s*(am|:00)\s*(to|-|–)\s*(6\s*pm|18:00)"),
    ),
    "warranty": (
        Key("a 1-year warranty", r"\b(1|one)[ -]year\b"),
        Key("repair or replace", r"\brepairs? (it )?or replaces?\b|\brepair or replacement\b"),
    ),
}

# Durations the sheet gives, per intent, as (low, high, unit); any other one is invented.
ALLOWED_DURATIONS: dict[str, set[tuple[int, int, str]]] = {
    "order_status": {(3, 5, "day"), (1, 2, "day")},
    "return_refund": {(30, 30, "day"), (5, 7, "day")},
    "password_reset": {(24, 24, "hour")},
    "double_charge": {(3, 5, "day")},
    "price_match": {(14, 14, "day")},
    "warranty": {(1, 1, "year")},
}
_NUMBER_WORDS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
                 "nine": 9, "ten": 10, "twelve": 12, "fourteen": 14, "thirty": 30, "sixty": 60,
                 "ninety": 90, "twenty-four": 24}
_NUM = r"(\d+|" + "|".join(sorted(_NUMBER_WORDS, key=len, reverse=True)) + ")"
_DURATION = re.compile(rf"\b{_NUM}(?:{_RANGE}{_NUM})?[ -](?:business |working |calendar )?"
                       r"(day|hour|minute|week|month|year)s?\b", re.IGNORECASE)
# Money, and the channels and terms the sheet never offers (refunds go to the original payment
# method; changes are made in the account pages; people are reached by chat or phone).
_MONEY = r"[$€£]\s*\d|\b\d+(\.\d+)?\s*(dollars?|euros?|pounds?|usd)\b|\b(fee|surcharge|restocking)\b"
_NO_FEE = r"\bno (cancellation )?fee|free to cancel|without (a |any )?fee"
_INVENTED = (r"store credit|gift card|voucher|coupon|\bcredit (note|balance)|by (post|mail|letter|fax)|"
             r"\bletter\b|\bfax\b|head office|in person|new account|at your (own )?(cost|expense)|"
             r"\byou (will )?(have to |must )?pay\b|non-?refundable|final sale")

_NEGATION = re.compile(r"\b(not|no|never|cannot|nor|without|unable|neither)\b|n't\b", re.IGNORECASE)
_ORDER_NUMBER = re.compile(r"(?<![\d.])#?(\d{5})(?!\d)")

_GREETS = r"\b(thank(s| you)|hi|hello|good (morning|afternoon|evening)|welcome)\b"
_APOLOGY = r"\b(sorry|apologi[sz]e|apologies|regret)\b"
_OFFERS = r"anything else|further (help|questions)|happy to help|glad to help|let (me|us) know|here to help"
_ASKS_ORDER = r"order number"
_RUDE = (r"not (my|our) problem|read the faq|calm down|\bwhatever\b|deal with it|figure it out|"
         r"your (own )?fault|you should have|stop (complaining|whining|asking)|\bugh\b|as i (already )?said|"
         r"obviously|don'?t ask again")
_SHOUT = re.compile(r"\b[A-Z]{2,}[A-Z']*\b[\s,!.]+\b[A-Z]{2,}[A-Z']*\b")
_PROBLEM = (r"broke|damag|crack|defect|faulty|smash|scratch|dent|pieces|stopped|died|not working|"
            r"won'?t|can'?t|cannot|locked|twice|two (times|charges)|duplicate|double|extra charge|wrong|"
            r"never came|lost|forgot|still|upset|ridiculous|seriously|unbelievable|!")


def sentences(text: str) -> list[str]:
    """Split on sentence ends (a period, ! or ? followed by space or the end); "Account > Orders"
    and "24/7" stay whole."""
    return [s.strip() for s in re.split(r"(?<=[.!?])\s+", text.strip()) if s.strip()]


def _search(pattern: str, text: str) -> re.Match | None:
    return re.search(pattern, text, re.IGNORECASE)


def _key_status(key: Key, said: list[str]) -> str:
    """'stated', 'negated' (only in a sentence that negates it) or 'missing'. A negation anywhere in the
    sentence counts ("returns are not accepted within 30 days"), except the one a negative fact is
    said with ("there is no cancellation fee")."""
    negated = False
    for sentence in said:
        match = _search(key.pattern, sentence)
        if match is None:
            continue
        rest = sentence[:match.start()] + " " + sentence[match.end():] if key.negative else sentence
        if _NEGATION.search(rest) is None:
            return "stated"
        negated = True
    return "negated" if negated else "missing"


def _number(text: str) -> int:
    return int(text) if text.isdigit() else _NUMBER_WORDS[text.lower()]


def invented(intent: str, answer: str) -> list[str]:
    """The policies an answer states that the sheet does not give for this intent."""
    found = []
    allowed = ALLOWED_DURATIONS.get(intent, set())
    for match in _DURATION.finditer(answer):
        low = _number(match.group(1))
        high = _number(match.group(3)) if match.group(3) else low
        if (low, high, match.group(4).lower()) not in allowed:
            found.append(match.group(0))
    without_no_fee = re.sub(_NO_FEE, " ", answer, flags=re.IGNORECASE)
    found += [m.group(0) for m in re.finditer(_MONEY, without_no_fee, re.IGNORECASE)]
    found += [m.group(0) for m in re.finditer(_INVENTED, answer, re.IGNORECASE)]
    return found


def customer_order(customer: str) -> str | None:
    match = _ORDER_NUMBER.search(customer)
    return match.group(1) if match else None


def courtesy(customer: str, answer: str) -> float:
    if _search(_RUDE, answer) or _SHOUT.search(answer):
        return 0.0
    habits = [_search(_GREETS, answer) is not None,
              _search(_PROBLEM, customer) is None or _search(_APOLOGY, answer) is not None,
              _search(_OFFERS, answer) is not None]
    return sum(habits) / len(habits)


def judge(intent: str, customer: str, answer: str) -> Judgement:
    """The judgement of one answer to one customer message of a known intent."""
    if intent not in KEYS:
        raise ValueError(f"the judge has no answer key for intent {intent!r}; intents: {', '.join(KEYS)}")
    said = sentences(answer)
    reasons = []
    status = {key.name: _key_status(key, said) for key in KEYS[intent]}
    reasons += [f"missing: {name}" for name, s in status.items() if s == "missing"]
    reasons += [f"negated: {name}" for name, s in status.items() if s == "negated"]
    order = customer_order(customer)
    named = {m.group(1) for m in _ORDER_NUMBER.finditer(answer)}
    if order and order not in named:
        reasons.append(f"order number not repeated ({order})")
    if named - {order}:
        reasons.append(f"names another order number: {', '.join(sorted(named - {order}))}")
    # A sentence that states one of this intent's facts is not read for others' ("within 3-5 business
    # days" is both standard shipping and the double-charge refund).
    elsewhere = [s for s in said if not any(_search(k.pattern, s) for k in KEYS[intent])]
    hedged = [f"{other}: {key.name}" for other, keys in KEYS.items() if other != intent
              for key in keys if _key_status(key, elsewhere) == "stated"]
    reasons += [f"states another intent's policy ({h})" for h in hedged]
    reasons += [f"invents a policy: {x!r}" for x in invented(intent, answer)]
    polite = courtesy(customer, answer)
    if polite == 0.0 and (_search(_RUDE, answer) or _SHOUT.search(answer)):
        reasons.append("impolite")
    apologies = len(re.findall(_APOLOGY, answer, re.IGNORECASE))
    empty = [s for s in said if not any(_search(k.pattern, s) for keys in KEYS.values() for k in keys)
             and not _ORDER_NUMBER.search(s)
             and not any(_search(p, s) for p in (_GREETS, _APOLOGY, _OFFERS, _ASKS_ORDER))]
    repeated = len({s.lower() for s in said}) < len(said)
    if apologies >= 3 or len(empty) >= 2 or repeated:
        reasons.append("padded" + (" (a sentence said twice)" if repeated else ""))
    clean = not any(r.startswith(("negated", "names another", "states another", "invents")) for r in reasons)
    coverage = sum(s == "stated" for s in status.values()) / len(status) if clean else 0.0
    return Judgement(not reasons, coverage, polite, tuple(reasons), deflects(intent, answer))


_DEFLECTS = (r"can'?t help|cannot help|(unable|not able) to (help|assist)|get back to you|look into (it|this)|"
             r"someone will|(contact|call|email|reach out to) (us|our|customer|support)|check (our|the) (website|faq)|"
             r"not (something|able)|i don'?t know")


def deflects(intent: str, answer: str) -> bool:
    """A refusal or deflection: states none of the intent's key facts and sends the customer elsewhere or
    promises to come back. A tone gain bought this way is not a gain (`rlft verdict`)."""
    said = sentences(answer)
    stated = any(_key_status(k, said) == "stated" for k in KEYS[intent])
    return not stated and _search(_DEFLECTS, answer) is not None


def judge_task(task: dict, answer: str) -> Judgement:
    """`judge` on a row of the tasks file (its intent and last user message)."""
    return judge(task["intent"], task["messages"][-1]["content"], answer)


def compare(task: dict, ours: str, theirs: str) -> float:
    """1 when our answer is judged better, 0.5 on a tie, 0 when theirs is."""
    a, b = judge_task(task, ours).rank(), judge_task(task, theirs).rank()
    return 1.0 if a > b else 0.5 if a == b else 0.0
