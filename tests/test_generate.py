"""Generation samples what the caller asks for, and nothing a checkpoint's generation_config adds; the
optional model judge asks in both orders; the harness's cheaper ways of scoring equal the plain ones."""

from __future__ import annotations

import copy

import pytest
import torch

from rlft import models
from rlft.eval import harness
from rlft.eval.generate import (
    decode,
    generate,
    keeps_every_token,
    left_pad,
    only_the_recipes_sampling,
    prefill,
    prompt_ids,
    response_logits,
    sequence_nll,
    similar_lengths,
)
from rlft.rl.core import exact_kl_per_row

CHATS = [[{"role": "user", "content": "Where is my order #12345?"}],
         [{"role": "user", "content": "I forgot my password."}],
         [{"role": "user", "content": "hi, how are you?"}]]
SYSTEM = [{"role": "system", "content": "You answer for the shop, politely and briefly, in English."}]


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


def _perturbed(model, scale: float = 0.05):
    other = copy.deepcopy(model)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in other.parameters():
            p.add_(torch.randn(p.shape, generator=g) * scale)
    return other


def test_kl_scorer_scores_the_sampling_logits_as_a_second_pass_would(tiny_model_dir):
    """The harness takes the policy's side of KL(policy || other) from the logits each token was
    sampled from; a second, teacher-forced pass of the policy over the same samples gives the same KL.
    Two groups sampled in one generation (sizes 4 and 5, batches of 5 that straddle them) each get the
    KL of their own rows, against their own models."""
    model = models.load_causal_lm(str(tiny_model_dir))
    tok = models.load_tokenizer(str(tiny_model_dir))
    other = _perturbed(model)
    chats = CHATS * 3
    first, second = chats[:4], chats[4:9]
    score, result = harness.kl_scorer([(first, [other]), (second, [model, other])], tok, batch_size=4)
    generate(model, tok, first + second, 16, 5, temperature=1.0, seed=5, on_batch=score)
    [(kl_first, _)], [(self_kl, _), (kl, interval)] = result(5)
    gen = generate(model, tok, first + second, 16, 5, temperature=1.0, seed=5)  # the same samples

    def teacher_forced(rows: slice) -> float:  # nats per token, both sides from a forward pass
        p, r = gen.prompt_ids[rows], gen.response_ids[rows]
        lp, mask = response_logits(model, p, r, tok.pad_token_id)
        lq, _ = response_logits(other, p, r, tok.pad_token_id)
        return exact_kl_per_row(lp, lq, mask).sum().item() / int(mask.sum())

    assert self_kl == pytest.approx(0.0, abs=1e-5)  # a logit one position off would not be 0
    assert teacher_forced(slice(4, 9)) > 0.01  # the perturbation moved the model, so the comparison means something
    assert kl == pytest.approx(teacher_forced(slice(4, 9)), rel=1e-4)
    assert kl_first == pytest.approx(teacher_forced(slice(0, 4)), rel=1e-4)
    assert kl_first != pytest.approx(kl, rel=1e-3)  # the groups' rows are told apart
    assert interval[0] < kl < interval[1]


def test_sequence_nll_in_length_sorted_batches_equals_one_chat_at_a_time(tiny_model_dir):
    model = models.load_causal_lm(str(tiny_model_dir))
    tok = models.load_tokenizer(str(tiny_model_dir))
    chats = [[{"role": "user", "content": "hi " * n}, {"role": "assistant", "content": "hello there " * (9 - n)}]
             for n in range(1, 9)]
    batched, n_batched = sequence_nll(model, tok, chats, max_length=12, batch_size=3)
    sums = [sequence_nll(model, tok, [c], max_length=12, batch_size=1) for c in chats]
    assert n_batched == sum(n for _, n in sums)
    assert batched == pytest.approx(sum(v * n for v, n in sums) / n_batched, rel=1e-5)


def test_nll_batches_hold_rows_of_similar_length_within_a_token_budget():
    """Windows of 256 x 9, then 218, 148, 132, 110, 85, 70, 58; budget 2048 tokens, each row >= 3/4 of
    its batch's first: 8 x 256 = 2048 fill the first batch; 218 >= 192 joins the ninth 256; 148 < 192
    starts a batch that 132 joins (>= 111) and 110 does not; 85 >= 82.5 joins 110; 58 >= 52.5 joins 70."""
    lengths = [256] * 9 + [218, 148, 132, 110, 85, 70, 58]
    batches = list(similar_lengths([[0] * n for n in lengths], 2048))
    assert [[len(r) for r in b] for b in batches] == [[256] * 8, [256, 218], [148, 132], [110, 85], [70, 58]]


def test_a_result_of_the_base_is_computed_once_per_machine_for_known_weights(tmp_path, monkeypatch):
    monkeypatch.setattr(models, "cache_dir", lambda: tmp_path)
    calls = []

    def compute():
        calls.append(1)
        return [1.5, "x"]

    monkeypatch.setattr(models, "model_source", lambda name: None)
    assert harness.of_the_base("some/model", "answers", [1, 2], compute) == [1.5, "x"]
    assert harness.of_the_base("some/model", "answers", [1, 2], compute) == [1.5, "x"]
    assert len(calls) == 2  # unknown weights: nothing kept
    monkeypatch.setattr(models, "model_source", lambda name: {"sha256": "ab" * 32})
    for _ in range(2):
        assert harness.of_the_base("m.gguf", "answers", [1, 2], compute) == [1.5, "x"]
    assert len(calls) == 3
    harness.of_the_base("m.gguf", "answers", [1, 3], compute)  # other inputs: another entry
    harness.of_the_base("m.gguf", "general_nll", [1, 2], compute)
    assert len(calls) == 5


@pytest.mark.parametrize("system", [[], SYSTEM], ids=["no-system-turn", "shared-system-turn"])
def test_greedy_decoding_that_drops_finished_rows_answers_as_transformers_generate(tiny_model_dir, system):
    """With a system turn every prompt opens alike: the prefill computes it once, and decoding goes on
    from a cache laid out [pads][opening][pads][rest] under the mask the prefill returns."""
    model = _perturbed(models.load_causal_lm(str(tiny_model_dir)), 0.5)  # untrained, it repeats one token
    tok = models.load_tokenizer(str(tiny_model_dir))
    chats = [system + c for c in
             CHATS + [[{"role": "user", "content": "thanks, bye"}], [{"role": "user", "content": "a " * 20}]]]
    ids, mask = left_pad(prompt_ids(tok, chats), tok.pad_token_id)

    def theirs(stop: int) -> torch.Tensor:
        with only_the_recipes_sampling(model):
            return model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=20, do_sample=False,
                                  eos_token_id=stop, pad_token_id=tok.pad_token_id)[:, ids.shape[1]:]

    # the untrained model rarely says its stop token: stop at a token its answers do say, at different steps
    free = theirs(tok.eos_token_id).tolist()
    stop = max({t for row in free for t in row}, key=lambda t: len({row.index(t) for row in free if t in row}))
    got, _ = decode(model, ids, mask, torch.full((len(chats),), 20), stop, torch.zeros(len(chats)), None)
    lengths = set()
    for row, mine in zip(theirs(stop).tolist(), got.tolist()):
        n = row.index(stop) + 1 if stop in row else len(row)
        assert mine[:n] == row[:n]
        lengths.add(n)
    assert len(lengths) > 1  # rows stopped at different steps, so some left the batch early


def test_a_sliding_window_model_prefills_in_one_pass_and_decodes_as_transformers_generate(tiny_model_dir):
    """A sliding window's cache keeps only the last tokens, so neither a shared opening nor passes of
    rows can be laid into it: the config says so before any pass, the prefill and the answers'
    logits are each one plain pass (no pass spent finding out), and greedy answers to prompts
    longer than the window, behind a shared system turn, are transformers' own."""
    from transformers import MistralConfig, MistralForCausalLM

    tok = models.load_tokenizer(str(tiny_model_dir))
    torch.manual_seed(0)
    model = MistralForCausalLM(MistralConfig(
        vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, sliding_window=8, max_position_embeddings=512, pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)).eval()
    assert keeps_every_token(models.load_causal_lm(str(tiny_model_dir))) and not keeps_every_token(model)
    chats = [SYSTEM + c for c in CHATS + [[{"role": "user", "content": "a " * 20}]]]
    ids, mask = left_pad(prompt_ids(tok, chats), tok.pad_token_id)  # (B, P), P well past the window
    position = (mask.cumsum(-1) - 1).clamp(min=0)
    calls = []
    hook = model.register_forward_pre_hook(lambda m, a, kw: calls.append(kw["input_ids"].shape), with_kwargs=True)
    with torch.no_grad():
        _, cache_mask = prefill(model, ids, mask, position, rows_per_pass=2)
        assert calls == [ids.shape] and torch.equal(cache_mask, mask)
        answers = [[5, 6, 7], [8, 9], [10], [11, 12, 13, 14]]
        logits, _ = response_logits(model, prompt_ids(tok, chats), answers, tok.pad_token_id)
        assert len(calls) == 2  # the prompts and answers in one pass: no opening computed apart
        plain, _ = response_logits(model, prompt_ids(tok, chats), answers, tok.pad_token_id, least_shared=10**6)
    hook.remove()
    assert torch.equal(logits, plain)
    with torch.no_grad(), only_the_recipes_sampling(model):
        theirs = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=12, do_sample=False,
                                eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)[:, ids.shape[1]:]
        mine, _ = decode(model, ids, mask, torch.full((len(chats),), 12), tok.eos_token_id, torch.zeros(len(chats)),
                         None)
    for row, got in zip(theirs.tolist(), mine.tolist()):
        n = row.index(tok.eos_token_id) + 1 if tok.eos_token_id in row else len(row)
        assert got[:n] == row[:n]


def test_prefill_in_passes_sharing_each_pass_prefix_fills_the_cache_as_one_pass_does(tiny_model_dir):
    """Prompts of 1 to ~45 words behind one system prompt: passes of 2 rows sorted by length, each
    computing its rows' shared opening once, compute far fewer positions, and give the same last
    logits and the same cached keys and values at every real position, in order (the cache's own
    mask says where they are)."""
    model = models.load_causal_lm(str(tiny_model_dir)).eval()
    tok = models.load_tokenizer(str(tiny_model_dir))
    chats = [SYSTEM + c for c in CHATS + [[{"role": "user", "content": "a " * 45}], [{"role": "user", "content": "hi"}],
                                          [{"role": "user", "content": "a " * 30}]]]  # 6 rows: 3 passes of 2
    ids, mask = left_pad(prompt_ids(tok, chats), tok.pad_token_id)  # (B, P)
    position = (mask.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        one = model(input_ids=ids, attention_mask=mask, position_ids=position, use_cache=True, logits_to_keep=1)
        shapes = []
        hook = model.register_forward_pre_hook(lambda m, a, kw: shapes.append(kw["input_ids"].shape), with_kwargs=True)
        parts, parts_mask = prefill(model, ids, mask, position, rows_per_pass=2)
        hook.remove()
    assert sum(b == 1 for b, _ in shapes) == 3  # each pass computed its prefix for one row
    assert len(shapes) > 1 and sum(b * w for b, w in shapes) < 0.6 * ids.numel()  # fewer positions computed
    assert torch.allclose(parts.logits, one.logits, atol=1e-4)
    assert torch.equal(parts_mask.sum(-1), mask.sum(-1)) and not torch.equal(parts_mask, mask)  # pads inside rows
    for mine, theirs in zip(parts.cache.layers, one.cache.layers):
        assert mine.keys.shape == theirs.keys.shape
        for m, t, own, their in ((mine.keys, theirs.keys, parts_mask, mask), (mine.values, theirs.values, parts_mask, mask)):
            assert torch.allclose(m.transpose(1, 2)[own.bool()], t.transpose(1, 2)[their.bool()], atol=1e-4)


def test_response_logits_sharing_the_prompts_opening_equal_the_plain_pass(tiny_model_dir):
    """Prompts behind one system turn, answers of different lengths: computing the shared opening once
    gives the logits of the pass that computes every row whole, at every real answer token."""
    model = models.load_causal_lm(str(tiny_model_dir)).eval()
    tok = models.load_tokenizer(str(tiny_model_dir))
    prompts = prompt_ids(tok, [SYSTEM + c for c in CHATS])
    responses = [tok.encode(t, add_special_tokens=False) for t in ("hello there", "sure, one moment please", "ok")]
    shapes = []
    hook = model.register_forward_pre_hook(lambda m, a, kw: shapes.append(kw["input_ids"].shape), with_kwargs=True)
    with torch.no_grad():
        shared, mask = response_logits(model, prompts, responses, tok.pad_token_id)
        plain, plain_mask = response_logits(model, prompts, responses, tok.pad_token_id, least_shared=10**6)
    hook.remove()
    assert shapes[0][0] == 1 and len(shapes) == 3  # the opening for one row, the rest, then the plain pass
    assert torch.equal(mask, plain_mask)
    assert torch.allclose(shared[mask], plain[mask], atol=1e-4)


def test_greedy_rows_short_rows_and_samples_share_a_batch_and_each_gets_what_it_asked(tiny_model_dir):
    """One batch of greedy rows of 20 tokens, greedy rows of 3 and sampled rows: each greedy row answers
    as it would alone, no row runs past its own limit, and on_batch sees the sampled rows only, with
    the logits their tokens were drawn from (a teacher-forced pass gives the same)."""
    model = models.load_causal_lm(str(tiny_model_dir))
    tok = models.load_tokenizer(str(tiny_model_dir))
    chats = (CHATS * 3)[:9]
    limits, temps = [20, 3, 20] * 3, [0.0, 0.0, 1.0] * 3
    seen = []
    gen = generate(model, tok, chats, limits, 9, temperature=temps, seed=3, on_batch=lambda *a: seen.append(a))
    alone = generate(model, tok, chats[0::3], 20, 9)
    short = generate(model, tok, chats[1::3], 3, 9)
    assert [gen.texts[i] for i in range(0, 9, 3)] == alone.texts
    assert [gen.texts[i] for i in range(1, 9, 3)] == short.texts
    assert all(n <= limit for n, limit in zip(gen.n_tokens, limits))
    assert any(gen.truncated[i] for i in range(1, 9, 3))  # 3 tokens cut some answer short, and it says so
    (prompts, responses, logits), = seen
    assert responses == [gen.response_ids[i] for i in range(2, 9, 3)] and len(prompts) == 3
    forced, mask = response_logits(model, prompts, responses, tok.pad_token_id)  # (3, R, V), (3, R)
    assert torch.allclose(logits[:, :mask.shape[1]][mask], forced[mask], atol=1e-4)


def test_sampling_is_reproducible_from_its_seed(tiny_model_dir):
    model = models.load_causal_lm(str(tiny_model_dir))
    tok = models.load_tokenizer(str(tiny_model_dir))
    a, b, c = (generate(model, tok, CHATS * 2, 12, 4, temperature=1.0, seed=s).response_ids for s in (7, 7, 8))
    assert a == b and a != c
