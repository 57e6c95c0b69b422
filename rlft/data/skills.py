"""General skills a pretrained chat model brings, as forgetting probes: short arithmetic, general
knowledge and instructions from other domains, generated here and checked by rule.

A probe means something only where the base model has the skill, so the harness keeps the items
the base answers right (greedy) and reports the share a fine-tuned model still answers right:
retention (1.0 = nothing forgotten). Each item is asked as a plain user turn, without the task's
system prompt: the question is whether the model still does what it did before the task.
rlft-tiny has none of these skills; its forgetting probes are rlft/data/probes.py.
"""

from __future__ import annotations

import random
import re

SKILLS = ("arithmetic", "knowledge", "instructions")
ITEMS_PER_SKILL = 48
MAX_NEW_TOKENS = 24

_CAPITALS = {
    "France": "Paris", "Germany": "Berlin", "Italy": "Rome", "Spain": "Madrid", "Japan": "Tokyo",
    "China": "Beijing", "Russia": "Moscow", "Egypt": "Cairo", "Greece": "Athens", "Portugal": "Lisbon",
    "Austria": "Vienna", "Ireland": "Dublin", "Norway": "Oslo", "Sweden": "Stockholm", "Finland": "Helsinki",
    "Denmark": "Copenhagen", "Poland": "Warsaw", "Hungary": "Budapest", "the United Kingdom": "London",
    "Canada": "Ottawa", "Mexico": "Mexico City", "Argentina": "Buenos Aires", "Peru": "Lima", "Kenya": "Nairobi",
    "Thailand": "Bangkok", "South Korea": "Seoul", "India": "New Delhi", "Belgium": "Brussels",
    "the Netherlands": "Amsterdam", "Cuba": "Havana", "Chile": "Santiago", "Iran": "Tehran",
}
_FACTS = [
    ("How many days are there in a week?", "7|seven"), ("How many months are there in a year?", "12|twelve"),
    ("How many hours are there in a day?", "24|twenty-four"), ("How many legs does a spider have?", "8|eight"),
    ("How many minutes are there in an hour?", "60|sixty"), ("What is the largest planet in our solar system?", "Jupiter"),
    ("Which planet is known as the Red Planet?", "Mars"), ("What gas do plants absorb from the air?", "carbon dioxide|CO2"),
    ("What is the chemical symbol of water?", "H2O"), ("What is the freezing point of water in degrees Celsius?", "0|zero"),
    ("Who wrote Romeo and Juliet?", "Shakespeare"), ("What is the largest ocean on Earth?", "Pacific"),
    ("How many continents are there?", "7|seven"), ("What colour do you get by mixing blue and yellow?", "green"),
    ("What is the closest star to the Earth?", "Sun"), ("How many sides does a triangle have?", "3|three"),
]
_OPPOSITES = {"hot": "cold", "up": "down", "big": "small|little", "fast": "slow", "happy": "sad", "open": "closed|close",
              "light": "dark|heavy", "early": "late", "old": "new|young", "wet": "dry", "full": "empty", "high": "low"}
_PLURALS = {"child": "children", "mouse": "mice", "foot": "feet", "tooth": "teeth", "man": "men", "goose": "geese",
            "person": "people", "woman": "women"}
_WORDS = ["garden", "river", "window", "pencil", "orange", "castle", "winter", "rocket", "forest", "guitar",
          "planet", "bridge", "silver", "dragon", "summer", "basket"]


def _arithmetic(rng: random.Random) -> tuple[str, str]:
    kind = rng.choice(("add", "sub", "mul"))
    if kind == "add":
        a, b = rng.randint(10, 60), rng.randint(10, 39)
        return f"What is {a} + {b}?", str(a + b)
    if kind == "sub":
        a, b = rng.randint(40, 99), rng.randint(10, 39)
        return f"What is {a} - {b}?", str(a - b)
    a, b = rng.randint(2, 9), rng.randint(2, 9)
    return f"What is {a} times {b}?", str(a * b)


def _knowledge(rng: random.Random) -> tuple[str, str]:
    if rng.random() < 0.6:
        country = rng.choice(sorted(_CAPITALS))
        return f"What is the capital of {country}?", _CAPITALS[country]
    return rng.choice(_FACTS)


def _instruction(rng: random.Random) -> tuple[str, str]:
    kind = rng.choice(("upper", "opposite", "plural", "larger", "first_letter"))
    if kind == "upper":
        word = rng.choice(_WORDS)
        return f"Write the word '{word}' in capital letters.", word.upper()
    if kind == "opposite":
        word = rng.choice(sorted(_OPPOSITES))
        return f"What is the opposite of '{word}'? Answer with one word.", _OPPOSITES[word]
    if kind == "plural":
        word = rng.choice(sorted(_PLURALS))
        return f"What is the plural of '{word}'?", _PLURALS[word]
    if kind == "larger":
        a, b = rng.sample(range(11, 99), 2)
        return f"Which number is larger, {a} or {b}?", str(max(a, b))
    word = rng.choice(_WORDS)
    return f"What is the first letter of the word '{word}'?", word[0]


_MAKE = {"arithmetic": _arithmetic, "knowledge": _knowledge, "instructions": _instruction}


def items() -> list[dict]:
    """The candidate pool: {"skill", "messages", "answer"} rows, ITEMS_PER_SKILL distinct questions per skill.
    `answer` is a regular-expression alternation of accepted answers ("7|seven")."""
    out = []
    for skill in SKILLS:
        rng, seen = random.Random(f"skills-{skill}"), set()
        for _ in range(50 * ITEMS_PER_SKILL):
            question, answer = _MAKE[skill](rng)
            if question not in seen:
                seen.add(question)
                out.append({"skill": skill, "messages": [{"role": "user", "content": question}], "answer": answer})
            if len(seen) == ITEMS_PER_SKILL:
                break
    return out


def correct(item: dict, reply: str) -> bool:
    """Arithmetic: the first number in the reply that is not one of the question's is the answer. Otherwise: an accepted answer appears as a
    whole word (upper-case answers must appear in upper case, everything else in any case); a one-letter
    answer must stand alone, perhaps in quotes ("is 'g'." but not the s of "it's")."""
    answer = item["answer"]
    if item["skill"] == "arithmetic":
        operands = re.findall(r"\d+", item["messages"][-1]["content"])
        numbers = [n for n in re.findall(r"-?\d+", reply.replace(",", "")) if n not in operands or n == answer]
        return bool(numbers) and numbers[0] == answer
    if len(answer) == 1:
        return re.search(rf"(?:^|\s)['\"]?{answer}['\"]?(?=$|[\s.,!)])", reply, re.IGNORECASE) is not None
    flags = 0 if answer.isupper() else re.IGNORECASE
    return re.search(rf"(?<![\w-])(?:{answer})(?![\w-])", reply, flags) is not None
