"""Generation samples what the caller asks for, and nothing a checkpoint's generation_config adds; the
optional model judge asks in both orders."""

from __future__ import annotations

import pytest
import torch

from rlft import models
from rlft.eval.generate import generate, left_pad, only_the_recipes_sampling, prompt_ids

CHATS = [[{"role": "user", "content": "Where is my order #12345?"}],
         [{"role": "user", "content": "I forgot my password."}],
         [{"role": "user", "content": "hi, how are you?"}]]


def _leaky(model) -> None:
    """What Qwen2.5-Instruct's and other checkpoints' generation_config.json set, made extreme."""
    g = model.generation_config
    g.repetition_penalty, g.top_k, g.no_repeat_ngram_size, g.temperature = 50.0, 1, 1, 0.05


def test_a_checkpoints_generation_config_does_not_leak_into_sampling(tiny_model_dir):
    model = models.load_causal_lm(str(tiny_model_dir))
    tok = models.load_tokenizer(str(tiny_model_dir))
    clean = generate(model, tok, CHATS, 12, temperature=1.0, seed=3)
    _leaky(model)
    assert generate(model, tok, CHATS, 12, temperature=1.0, seed=3).response_ids == clean.response_ids
    assert model.generation_config.repetition_penalty == 50.0  # put back after the call

    # without the guard the same call samples otherwise: the leak is real, and the test can fail
    ids, mask = left_pad(prompt_ids(tok, CHATS), tok.pad_token_id)
    kwargs = dict(input_ids=ids, attention_mask=mask, max_new_tokens=12, do_sample=True, temperature=1.0,
                  top_p=1.0, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    torch.manual_seed(0)
    leaked = model.generate(**kwargs)
    with only_the_recipes_sampling(model):
        torch.manual_seed(0)
        guarded = model.generate(**kwargs)
    assert not torch.equal(leaked, guarded)


def test_the_model_judge_asks_both_orders_so_an_answer_ties_with_itself(tiny_model_dir):
    from rlft.eval import model_judge

    model, tok = model_judge.load_judge(str(tiny_model_dir))
    customers = ["Where is my order #85123?", "I forgot my password."]
    a = ["Thanks! Standard shipping takes 3-5 business days.", "Use the Forgot password link."]
    b = ["Read the FAQ.", "Whatever."]
    same = model_judge.judge_pairs(model, tok, customers, a, a)
    assert same["win_rate_vs_parent"] == pytest.approx(0.5, abs=1e-6)
    first = model_judge.prefer_first(model, tok, customers, a, b)
    second = model_judge.prefer_first(model, tok, customers, b, a)
    out = model_judge.judge_pairs(model, tok, customers, a, b)
    expected = sum((p + 1 - q) / 2 for p, q in zip(first, second)) / 2
    assert out["win_rate_vs_parent"] == pytest.approx(expected)
    assert 0 <= out["length_controlled_win_rate"] <= 1
