"""The house-tone scorer, written for the Harbor Goods policy sheet's tone rules.

Pure functions on text. A reply earns one point for each rule it follows, out of three:
  R1 greet or thank the customer          ("thank you", "thanks", "hi", "hello", ...)
  R2 apologise when something went wrong  (the customer reports a fault or is angry; a reply to
                                           a plain question follows R2 without apologising)
  R3 offer further help at the end        ("anything else", "happy to help", "let me know", ...)
and loses a quarter for each kind of fault it shows:
  P1 dismissive phrases                   ("not my problem", "read the FAQ", "calm down", "whatever")
  P2 blaming the customer                 ("your fault", "you should have")
  P3 shouting in capitals                 (two or more all-capital words of 2+ letters in a row)
  P4 padding                              (3+ apologies, or customer-service filler phrases)
tone_score = clamp(points / 3 - 0.25 * faults, 0, 1). A reply is impolite when it shows P1, P2 or P3.
"""

from __future__ import annotations

import re

GREETING = r"\b(thank(s| you)|hi|hello|good (morning|afternoon|evening)|welcome)\b"
APOLOGY = r"\b(sorry|apologi[sz]e|apologies|understand how frustrating)\b"
OFFER_HELP = r"\b(anything else|further help|happy to help|let me know|here to help)\b"
WENT_WRONG = (r"\b(broken|broke|damaged|defective|cracked|smashed|faulty|scratched|pieces|stopped|"
              r"twice|two times|duplicate|double|extra charge|can'?t|cannot|locked out|lost|forgot|"
              r"not working|doesn'?t work|won'?t|wont|died|wrong|upset|ridiculous|unbelievable|"
              r"still waiting|forever|haven'?t|hasn'?t|not arrived|seriously)\b|!")
DISMISSIVE = (r"not my problem", r"read the faq", r"calm down", r"\bwhatever\b", r"deal with it",
              r"figure it out", r"stop (complaining|whining)", r"not our problem")
BLAME = (r"your (own )?fault", r"you should have", r"you did it wrong", r"that'?s on you")
FILLER = (r"valued customer", r"top priority", r"strive to do our very best", r"value you enormously",
          r"heartfelt")
_SHOUT = re.compile(r"\b[A-Z][A-Z']+\b(\s+\b[A-Z][A-Z']+\b)+")


def went_wrong(customer_text: str) -> bool:
    return re.search(WENT_WRONG, customer_text, re.IGNORECASE) is not None


def _any(patterns, text: str) -> bool:
    return any(re.search(p, text, re.IGNORECASE) for p in patterns)


def tone_rules(customer_text: str, reply: str) -> dict[str, bool]:
    """Each rule and fault, true when it holds for this reply."""
    apologies = len(re.findall(APOLOGY, reply, re.IGNORECASE))
    return {
        "greets": re.search(GREETING, reply, re.IGNORECASE) is not None,
        "apologises_when_due": (not went_wrong(customer_text)) or apologies > 0,
        "offers_help": re.search(OFFER_HELP, reply, re.IGNORECASE) is not None,
        "dismissive": _any(DISMISSIVE, reply),
        "blames": _any(BLAME, reply),
        "shouts": _SHOUT.search(reply) is not None,
        "pads": apologies >= 3 or _any(FILLER, reply),
    }


def tone_score(customer_text: str, reply: str) -> float:
    r = tone_rules(customer_text, reply)
    points = r["greets"] + r["apologises_when_due"] + r["offers_help"]
    faults = r["dismissive"] + r["blames"] + r["shouts"] + r["pads"]
    return min(1.0, max(0.0, points / 3 - 0.25 * faults))


def impolite(customer_text: str, reply: str) -> bool:
    r = tone_rules(customer_text, reply)
    return r["dismissive"] or r["blames"] or r["shouts"]
