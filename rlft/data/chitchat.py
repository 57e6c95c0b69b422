"""The general conversation corpus: chitchat-dataset (MIT, BYU PCC lab), shipped in its wheel.

Conversations become chats: the first speaker is the user, the other the assistant, and a
speaker's consecutive messages are joined into one turn. The split into a pretraining part
and a held-out part is by conversation and depends only on the conversation id, so it never
changes with a seed: no stage trains on the held-out part, and evaluation measures
general-language drift on it. Short turns ("hi", "how are you?") recur across conversations,
so a held-out conversation with any turn that appears verbatim (ignoring case and spaces) in the
training part is dropped: drift and KL are measured on text no stage has seen.
"""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from pathlib import Path

HELD_OUT_PERCENT = 6  # share of conversations kept out of every training stage


def _held_out(conversation_id: str) -> bool:
    return int(hashlib.sha256(conversation_id.encode()).hexdigest(), 16) % 100 < HELD_OUT_PERCENT


@lru_cache(maxsize=1)
def _load() -> tuple[tuple[str, tuple[tuple[str, str], ...]], ...]:
    import chitchat_dataset

    path = Path(chitchat_dataset.__file__).parent / "dataset.json"
    raw = json.loads(path.read_text(encoding="utf-8"))
    convs = []
    for cid in sorted(raw):
        turns = []
        for i, turn in enumerate(raw[cid]["messages"]):
            text = " ".join(u["text"].strip() for u in turn if u["text"].strip())
            if text:
                turns.append(("user" if i % 2 == 0 else "assistant", text))
        if turns:
            convs.append((cid, tuple(turns)))
    return tuple(convs)


def _norm(text: str) -> str:
    return " ".join(text.lower().split())


@lru_cache(maxsize=2)
def _part(part: str) -> tuple[tuple[tuple[str, str], ...], ...]:
    train = tuple(turns for cid, turns in _load() if not _held_out(cid))
    if part == "train":
        return train
    seen = {_norm(text) for turns in train for _, text in turns}
    return tuple(turns for cid, turns in _load()
                 if _held_out(cid) and not any(_norm(text) in seen for _, text in turns))


def chats(part: str) -> list[list[dict]]:
    """Conversations of one part, `train` or `held_out`, as lists of chat messages."""
    if part not in ("train", "held_out"):
        raise ValueError(f"chitchat part must be 'train' or 'held_out', not {part!r}")
    return [[{"role": r, "content": t} for r, t in turns] for turns in _part(part)]


def general_prompts(n: int) -> list[list[dict]]:
    """The first user turn of n held-out conversations: prompts for KL on general text."""
    return [c[:1] for c in chats("held_out")[:n]]
