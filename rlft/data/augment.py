"""Seeded noise on the user's side of a chat: what real customers type (`data.augment`).

Only user turns change; system prompts and the assistant's answers, which are what the model learns
to write, never do. Each transformation has a rate, and a row's randomness comes from the seed and
the row's index alone, so the same recipe gives the same augmented data on any machine.

  typos          each word of four or more letters (no digits: order numbers stay intact) gets, with
                 this probability, one of: two inner letters swapped, an inner letter dropped, a
                 letter doubled
  case           with this probability the whole message is lower-cased (one time in ten upper-cased)
  punctuation    with this probability the message loses its punctuation (. , ! ? ; : ' "), `#` kept
  word_order     each pair of neighbouring words is swapped with this probability
  drop_greeting  with this probability a leading greeting ("Hi,", "Hello there!", "Good morning,") goes

`MESSY` is the fixed mix behind every task's `<NAME>_test_messy` set (`harbor_test_messy`: the test split
as a hurried customer would type it), made with its own seed so that no training row shares its noise.
"""

from __future__ import annotations

import random
import re

from rlft.errors import InputError

TRANSFORMS = ("typos", "case", "punctuation", "word_order", "drop_greeting")
MESSY = {"typos": 0.08, "case": 0.3, "punctuation": 0.3, "word_order": 0.04, "drop_greeting": 0.5}
MESSY_SEED = 1_000_003
_GREETING = re.compile(r"^\s*(hi|hello|hey|greetings|good (morning|afternoon|evening))( there)?\s*[,!.]*\s+", re.I)
_PUNCTUATION = re.compile(r"[.,!?;:'\"]")


def _typo(word: str, rng: random.Random) -> str:
    i = rng.randrange(1, len(word) - 2)  # inner positions: the first and last letters stay
    kind = rng.randrange(3)
    if kind == 0:
        return word[:i] + word[i + 1] + word[i] + word[i + 2:]
    if kind == 1:
        return word[:i] + word[i + 1:]
    return word[:i] + word[i] + word[i:]


def augment_text(text: str, rates: dict[str, float], rng: random.Random) -> str:
    """One user message with each transformation applied at its rate (in the order of TRANSFORMS)."""
    if rates.get("typos"):
        text = re.sub(r"\b[A-Za-z]{4,}\b", lambda m: _typo(m.group(), rng) if rng.random() < rates["typos"]
                      else m.group(), text)
    if rates.get("case") and rng.random() < rates["case"]:
        text = text.upper() if rng.random() < 0.1 else text.lower()
    if rates.get("punctuation") and rng.random() < rates["punctuation"]:
        text = re.sub(r"\s{2,}", " ", _PUNCTUATION.sub("", text)).strip()
    if rates.get("word_order"):
        words = text.split(" ")
        i = 0
        while i < len(words) - 1:
            if rng.random() < rates["word_order"]:
                words[i], words[i + 1] = words[i + 1], words[i]
                i += 2  # a word moves at most one place
            else:
                i += 1
        text = " ".join(words)
    if rates.get("drop_greeting") and rng.random() < rates["drop_greeting"]:
        rest = _GREETING.sub("", text, count=1)
        text = rest[:1].upper() + rest[1:] if rest and rest != text else text
    return text or "?"


def augment_rows(rows: list[dict], rates: dict[str, float], seed: int) -> list[dict]:
    """The rows with every user turn (in `messages`, or in the `prompt` of pairs, prompts and tasks) noised;
    a row's noise depends only on (seed, its index)."""
    if not rates:
        return rows
    out = []
    for index, row in enumerate(rows):
        rng = random.Random(f"augment:{seed}:{index}")
        field = "messages" if "messages" in row else "prompt"
        chat = row.get(field)
        if isinstance(chat, str):  # a file's plain-text prompt is one user turn
            chat = augment_text(chat, rates, rng)
        elif isinstance(chat, list):
            chat = [{**m, "content": augment_text(m["content"], rates, rng)} if m.get("role") == "user" else m
                    for m in chat]
        out.append({**row, field: chat} if field in row else row)
    return out


def parse(spec: str) -> dict[str, float]:
    """`typos=0.05,case=0.3` (the command line's form) -> {"typos": 0.05, "case": 0.3}."""
    rates = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        name, _, value = part.partition("=")
        try:
            rates[name.strip()] = float(value)
        except ValueError:
            raise InputError(f"--augment {spec!r}: {part!r} is not NAME=RATE (e.g. typos=0.05)") from None
    check(rates, "--augment")
    return rates


def check(rates: dict[str, float], where: str) -> None:
    for name, rate in rates.items():
        if name not in TRANSFORMS:
            raise InputError(f"{where}: unknown augmentation {name!r}; choose from {', '.join(TRANSFORMS)}")
        if not 0 <= rate <= 1:
            raise InputError(f"{where}: the rate of {name} must lie in [0, 1], got {rate}")
