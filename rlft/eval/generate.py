"""Batched generation and teacher-forced scoring of chats: the model-facing half of eval.

Prompts are left-padded so every row's answer starts at the same column. Greedy decoding
is the default (accuracy); sampling takes an explicit seed (KL and diversity).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from transformers import GenerationConfig
from transformers.cache_utils import DynamicCache, DynamicLayer

from rlft.rl.core import exact_kl_per_row


@dataclass
class Generations:
    texts: list[str]
    n_tokens: list[int]  # response tokens, EOS included
    truncated: list[bool]  # no EOS within max_new_tokens
    prompt_ids: list[list[int]]
    response_ids: list[list[int]]


def prompt_ids(tok, chats: list[list[dict]]) -> list[list[int]]:
    if not chats:  # transformers refuses an empty list as an empty conversation
        return []
    out = tok.apply_chat_template(chats, add_generation_prompt=True, tokenize=True, return_dict=False)
    return [list(ids) for ids in out]


def left_pad(rows: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)  # (B, T)
    mask = torch.zeros((len(rows), width), dtype=torch.long)  # (B, T)
    for i, r in enumerate(rows):
        ids[i, width - len(r):] = torch.tensor(r, dtype=torch.long)
        mask[i, width - len(r):] = 1
    return ids, mask


def right_pad(rows: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)  # (B, T)
    mask = torch.zeros((len(rows), width), dtype=torch.long)  # (B, T)
    for i, r in enumerate(rows):
        ids[i, :len(r)] = torch.tensor(r, dtype=torch.long)
        mask[i, :len(r)] = 1
    return ids, mask


@contextmanager
def only_the_recipes_sampling(model) -> Iterator[None]:
    """Generate with the settings the caller passes and nothing from the checkpoint.

    transformers fills every generation field a call leaves unset from the checkpoint's own
    `generation_config` (`GenerationMixin._prepare_generation_config`), so a Qwen2.5-Instruct
    checkpoint would add its repetition_penalty, top_k and top_p to PPO's samples, whose old and
    reference log-probs assume softmax(logits / T). Every generation_config in the model (a PEFT
    wrapper holds the base model's) is blank for the call and put back after it.
    """
    held = [(m, m.generation_config) for m in model.modules()
            if isinstance(getattr(m, "generation_config", None), GenerationConfig)]
    try:
        for m, _ in held:
            m.generation_config = GenerationConfig()
        yield
    finally:
        for m, config in held:
            m.generation_config = config


@torch.no_grad()
def generate(model, tok, chats: list[list[dict]], max_new_tokens: int | list[int], batch_size: int = 32,
             temperature: float | list[float] = 0.0, seed: int | None = None,
             on_batch: Callable[[list[list[int]], list[list[int]], torch.Tensor], None] | None = None) -> Generations:
    """Answer each chat; greedy where the temperature is 0, else seeded sampling from softmax(logits / T).

    max_new_tokens and temperature are one for all chats or one per chat, so short greedy answers can
    ride along with samples in one batch (rlft/eval/harness.py does). `on_batch(prompts, responses,
    logits)` is called after each batch with its sampled rows only (temperature > 0) and the raw logits
    each of their tokens was chosen from, (b, R, V), so a caller scores the samples without a second
    pass of the model."""
    n = len(chats)
    max_new = torch.tensor(max_new_tokens if isinstance(max_new_tokens, list) else [max_new_tokens] * n)  # (n,)
    temps = torch.tensor(temperature if isinstance(temperature, list) else [temperature] * n, dtype=torch.float)  # (n,)
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    eos = tok.eos_token_id
    all_prompts = prompt_ids(tok, chats)
    texts, n_tokens, truncated, responses = [], [], [], []
    seeds = torch.Generator(device="cpu").manual_seed(0 if seed is None else seed)
    for start in range(0, len(all_prompts), batch_size):
        rows = all_prompts[start:start + batch_size]
        limits, T = max_new[start:start + batch_size], temps[start:start + batch_size]  # (B,), (B,)
        ids, mask = left_pad(rows, tok.pad_token_id)
        sampler = None
        if (T > 0).any():
            sampler = torch.Generator(device=device).manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=seeds)))
        tokens, logits = decode(model, ids.to(device), mask.to(device), limits.to(device), eos, T.to(device), sampler,
                                keep_logits=on_batch is not None)
        first = len(responses)
        for row, limit in zip(tokens.tolist(), limits.tolist()):
            row = row[:limit]  # the columns after a row's own limit were never its
            truncated.append(eos not in row)  # a row that never stopped ran every column: all of them sampled
            if eos in row:
                row = row[:row.index(eos) + 1]
            responses.append(row)
            n_tokens.append(len(row))
            texts.append(tok.decode(row, skip_special_tokens=True).strip())
        sampled = [i for i in range(len(rows)) if T[i] > 0]
        if on_batch is not None and sampled:
            on_batch([rows[i] for i in sampled], [responses[first + i] for i in sampled],
                     logits[:, :max(n_tokens[first + i] for i in sampled)])
    model.train(was_training)
    return Generations(texts, n_tokens, truncated, all_prompts, responses)


@torch.no_grad()
def decode(model, ids: torch.Tensor, mask: torch.Tensor, max_new: torch.Tensor, eos: int, temperature: torch.Tensor,
           sampler: torch.Generator | None, keep_logits: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Batched decoding with a KV cache in which a row leaves the batch as soon as it stops (its stop
    token, or its own `max_new` tokens), so later steps compute only the rows still answering
    (transformers' `generate` computes every row until the last one stops). ids, mask: (B, P)
    left-padded; max_new, temperature: (B,), greedy where the temperature is 0. Returns the new tokens
    (B, N), each row cut after its stop token, the rest unspecified, and with `keep_logits` the logits
    each sampled row's tokens were chosen from, (S, N, V) for the S rows with temperature > 0, in batch
    order. Nothing of the checkpoint's generation_config applies: the distribution is
    softmax(logits / T), which is what the callers' log-probs assume."""
    B, N = ids.shape[0], int(max_new.max()) if len(max_new) else 0
    if N < 1:
        return ids.new_zeros(B, 0), None
    alive = torch.arange(B, device=ids.device)  # (b,) the batch rows still answering
    slot = (temperature > 0).long().cumsum(0) - 1  # (B,) a sampled row's place among the sampled rows
    position = (mask.cumsum(-1) - 1).clamp(min=0)  # (B, P): left padding shifts positions
    out, mask = prefill(model, ids, mask, position)
    cache, position = out.cache, position[:, -1:]  # (b, 1)
    for i, layer in enumerate(cache.layers):  # one layer at a time: the prefill's copy goes as its buffer comes
        if type(layer) is DynamicLayer:
            cache.layers[i] = GrowingLayer(layer, N)
    tokens = torch.full((B, N), eos, dtype=torch.long, device=ids.device)  # (B, N)
    kept = None
    for t in range(N):
        logits = out.logits[:, -1].float()  # (b, V)
        T = temperature[alive]  # (b,)
        nxt = logits.argmax(-1)  # (b,)
        sampled = (T > 0).nonzero().squeeze(1)  # (s,)
        if len(sampled):
            probs = F.softmax(logits[sampled] / T[sampled, None], -1)  # (s, V)
            nxt[sampled] = torch.multinomial(probs, 1, generator=sampler).squeeze(1)
            if keep_logits:
                if kept is None:
                    kept = logits.new_zeros(int(slot[-1]) + 1, N, logits.shape[-1])  # (S, N, V)
                kept[slot[alive[sampled]], t] = logits[sampled]
        tokens[alive, t] = nxt
        going = (nxt != eos) & (t + 1 < max_new[alive])  # (b,)
        if not going.any():
            break
        if not going.all():
            stay = going.nonzero().squeeze(1)
            cache.batch_select_indices(stay)
            alive, nxt, mask, position = alive[stay], nxt[stay], mask[stay], position[stay]
        mask = torch.cat([mask, mask.new_ones(len(alive), 1)], 1)  # (b, P + t + 1)
        position = position + 1
        out = model(input_ids=nxt[:, None], attention_mask=mask, position_ids=position, cache=cache,
                    use_cache=True)
    n = t + 1
    return tokens[:, :n], (kept[:, :n] if kept is not None else None)


class GrowingLayer(DynamicLayer):
    """A KV cache layer with room for `room` more tokens, written in place.

    DynamicLayer.update concatenates, so each decoding step copies every layer's whole cache to add
    one column (a tenth of the time of 110 SmolLM2 answers on 2 cores). Here the keys and values are
    views of buffers as long as the prompt plus the answer; a step writes its column, and a row
    leaving the batch copies the buffers once. Only `decode` holds one, and it calls `update` and
    `batch_select_indices` alone: DynamicLayer's crop, reorder and repeat would leave the buffers stale."""

    def __init__(self, layer: DynamicLayer, room: int):
        super().__init__()
        B, H, L, D = layer.keys.shape
        self.device, self.is_initialized, self.length = layer.keys.device, True, L
        self.key_buffer = layer.keys.new_empty(B, H, L + room, D)  # (B, H, L + room, D)
        self.value_buffer = layer.values.new_empty(B, H, L + room, D)  # (B, H, L + room, D)
        self.key_buffer[:, :, :L], self.value_buffer[:, :, :L] = layer.keys, layer.values
        self._view()

    def _view(self) -> None:
        self.keys = self.key_buffer[:, :, :self.length]  # (B, H, length, D)
        self.values = self.value_buffer[:, :, :self.length]  # (B, H, length, D)

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        end = self.length + key_states.shape[-2]
        if end > self.key_buffer.shape[-2]:
            raise ValueError(f"the KV cache holds {self.key_buffer.shape[-2]} tokens; {end} were asked for")
        self.key_buffer[:, :, self.length:end] = key_states
        self.value_buffer[:, :, self.length:end] = value_states
        self.length = end
        self._view()
        return self.keys, self.values

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        self.key_buffer, self.value_buffer = self.key_buffer[indices], self.value_buffer[indices]
        self._view()


def prefill(model, ids: torch.Tensor, mask: torch.Tensor, position: torch.Tensor, rows_per_pass: int = 16):
    """The prompts' forward pass that fills the KV cache, in passes over rows of similar length, each
    pass computing the tokens its rows open with (a system prompt, the template's header) once.

    One pass over the whole left-padded batch computes every pad position of every short prompt as
    if it were a token: prompts of 40 and 150 tokens in one batch cost 150 each. Rows sorted by
    length, `rows_per_pass` at a time, compute only up to their own longest prompt; and where a
    pass's rows begin alike, that prefix is computed for one row and its cache repeated for the
    others, which compute only what follows it. A row's cache is then [pads][prefix][pads][suffix]:
    pads inside a row are masked as pads always are, and positions count real tokens only, so every
    row attends to the tokens, at the positions, it had. Layers other than the plain growing one (a
    sliding window's) take the single pass.
    ids, mask, position: (B, P). Returns the model output whose `cache` and last logits (B, 1, V)
    cover the batch, and the mask (B, P) of the cache's layout, which decoding extends."""
    if not keeps_every_token(model):
        return model(input_ids=ids, attention_mask=mask, position_ids=position, use_cache=True, logits_to_keep=1), mask
    lengths = mask.sum(-1)  # (B,)
    B, P = ids.shape
    order = torch.argsort(lengths, stable=True)  # (B,)
    passes = [order[s:s + rows_per_pass] for s in range(0, B, rows_per_pass)]
    outs, masks = [], []
    for rows in passes:
        out, pass_mask = _prefill_pass(model, ids[rows], lengths[rows], position[rows])
        outs.append(out)
        masks.append(F.pad(pass_mask, (P - pass_mask.shape[1], 0)))  # (b, P)
    back = torch.argsort(order)  # (B,) each row's place in the batch
    first = outs[0]
    for i, layer in enumerate(first.cache.layers):
        parts = [o.cache.layers[i] for o in outs]
        layer.keys = torch.cat([F.pad(p.keys, (0, 0, P - p.keys.shape[-2], 0)) for p in parts])[back]  # (B, H, P, D)
        layer.values = torch.cat([F.pad(p.values, (0, 0, P - p.values.shape[-2], 0)) for p in parts])[back]  # (B, H, P, D)
    first.logits = torch.cat([o.logits for o in outs])[back]  # (B, 1, V)
    return first, torch.cat(masks)[back]


def _prefill_pass(model, ids: torch.Tensor, lengths: torch.Tensor, position: torch.Tensor, least_shared: int = 4):
    """One pass of `prefill`: rows (b, P) left-padded, of `lengths` real tokens. Returns the output, its
    cache as wide as the longest row, and the mask of that cache's layout (b, width)."""
    P, width = ids.shape[1], int(lengths.max())
    shared, cache = _shared_opening(model, [ids[i, P - int(n):].tolist() for i, n in enumerate(lengths)], least_shared)
    if cache is None:
        pass_mask = _real(lengths, width)  # (b, width)
        return model(input_ids=ids[:, P - width:], attention_mask=pass_mask, position_ids=position[:, P - width:],
                     use_cache=True, logits_to_keep=1), pass_mask  # logits (b, 1, V), cache (b, H, width, D)
    rest = width - shared  # each row's suffix, left-padded to the longest one; below, c = shared
    suffix_mask = _real(lengths - shared, rest)  # (b, rest)
    pass_mask = torch.cat([suffix_mask.new_ones(len(lengths), shared), suffix_mask], 1)  # (b, c + rest)
    suffix_position = (shared + suffix_mask.cumsum(-1) - 1).clamp(min=shared)  # (b, rest)
    out = model(input_ids=ids[:, P - rest:], attention_mask=pass_mask, position_ids=suffix_position,
                cache=cache, use_cache=True, logits_to_keep=1)  # logits (b, 1, V), cache (b, H, c + rest, D)
    return out, pass_mask


def _shared_opening(model, rows: list[list[int]], least_shared: int):
    """The tokens every row opens with, computed once for one row and its cache repeated for all rows:
    (c, cache of (b, H, c, D) per layer), or (0, None) where fewer than `least_shared` are shared or a
    layer is other than the plain growing one (a sliding window's). Every row keeps at least one token
    of its own, whose logits the caller needs."""
    shared = min(len(os.path.commonprefix(rows)), min(len(r) for r in rows) - 1) if len(rows) > 1 else 0
    if shared < least_shared or not keeps_every_token(model):
        return 0, None
    device = next(model.parameters()).device
    out = model(input_ids=torch.tensor([rows[0][:shared]], device=device),
                position_ids=torch.arange(shared, device=device)[None], use_cache=True,
                logits_to_keep=1)  # the opening (1, c), for one row: cache (1, H, c, D)
    for layer in out.cache.layers:
        layer.keys = layer.keys.expand(len(rows), -1, -1, -1)  # (b, H, c, D)
        layer.values = layer.values.expand(len(rows), -1, -1, -1)  # (b, H, c, D)
    return shared, out.cache


def keeps_every_token(model) -> bool:
    """Whether every layer of the model's KV cache is the plain one that keeps every token
    (DynamicLayer), as laying a shared opening or passes of rows into one cache needs; a sliding
    window's layer keeps only the last tokens. Read from the config, as transformers' models build
    their cache, so no pass of the model is spent finding out; a config transformers cannot build a
    cache from (remote code) counts as no."""
    try:
        return all(type(layer) is DynamicLayer for layer in DynamicCache(config=model.config).layers)
    except (AttributeError, KeyError, ValueError):
        return False


def _real(lengths: torch.Tensor, width: int) -> torch.Tensor:
    """The mask (b, width) of rows left-padded to `width` with `lengths` real tokens each."""
    return (torch.arange(width, device=lengths.device)[None] >= width - lengths[:, None]).long()


def response_logits(model, prompts: list[list[int]], responses: list[list[int]], pad_id: int, least_shared: int = 4
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """The logits that predict each response token, laid out as generation lays them out: (B, R, V),
    and the mask of real response tokens (B, R). Prompts are left-padded (positions counted from
    each row's first real token, as `generate` counts them) and responses right-padded, so column t
    is response token t in every row and lines up with the logits `generate` hands `on_batch`.
    Where the prompts open alike (a system turn), the opening is computed once, for one row, and its
    cache repeated for the others, as `prefill` does."""
    device = next(model.parameters()).device
    resp, rmask = right_pad(responses, pad_id)  # (B, R)
    shared, cache = _shared_opening(model, prompts, least_shared)  # below, c = shared
    queries, qmask = left_pad([p[shared:] for p in prompts], pad_id)  # (B, P - c)
    ids, mask = torch.cat([queries, resp], 1).to(device), torch.cat([qmask, rmask], 1).to(device)  # (B, P - c + R)
    if cache is None:
        return last_logits(model, ids, mask, resp.shape[1]), rmask.bool().to(device)  # (B, R, V), (B, R)
    position_ids = (shared + mask.cumsum(-1) - 1).clamp(min=shared)  # (B, P - c + R)
    full_mask = torch.cat([mask.new_ones(len(prompts), shared), mask], 1)  # (B, P + R): the opening, then the rest
    out = model(input_ids=ids, attention_mask=full_mask, position_ids=position_ids, cache=cache, use_cache=True,
                logits_to_keep=resp.shape[1] + 1)  # logits (B, R + 1, V)
    return out.logits[:, :-1].float(), rmask.bool().to(device)  # (B, R, V), (B, R)


@torch.no_grad()
def kl_on_answers(p, q, prompts: list[list[int]], responses: list[list[int]], pad_id: int,
                  batch_size: int = 32) -> torch.Tensor:
    """KL(p || q) on fixed answers: for each answer, the exact KL over the vocabulary summed over its
    tokens, (B,) on the CPU; divide the sum by the answers' token count for nats per token.

    The answers are p's own (its greedy answers, or its samples), so the KL is taken where p puts its
    mass. p is a model, or the logits (B, R, V) that already predict the answers (those `generate`
    hands `on_batch`: a sampler needs no second pass); q is a model. Under (Q)LoRA a reference is the
    policy with its adapters disabled (models.Reference), never a copy of the backbone. The harness,
    the drift budget and GRPO's kl_ref/task all measure with this one function."""
    sums = []
    for start in range(0, len(prompts), batch_size):
        rows = slice(start, start + batch_size)
        logits_q, mask = response_logits(q, prompts[rows], responses[rows], pad_id)  # (b, R, V), (b, R)
        if isinstance(p, torch.Tensor):
            logits_p = p[rows, :mask.shape[1]].to(logits_q.device)  # (b, R, V)
        else:
            logits_p, _ = response_logits(p, prompts[rows], responses[rows], pad_id)  # (b, R, V)
        sums.append(exact_kl_per_row(logits_p, logits_q, mask).cpu())  # (b,)
    return torch.cat(sums)  # (B,)


def last_logits(model, ids: torch.Tensor, mask: torch.Tensor, R: int) -> torch.Tensor:
    """The float logits that predict the last R tokens of left-padded rows: (B, P + R) -> (B, R, V).
    Positions count from each row's first real token, as `generate` and `decode` count them."""
    position_ids = (mask.cumsum(-1) - 1).clamp(min=0)  # (B, P + R): left padding shifts positions
    out = model(input_ids=ids, attention_mask=mask, position_ids=position_ids, logits_to_keep=R + 1)
    return out.logits[:, :-1].float()  # (B, R, V)


@torch.no_grad()
def sequence_nll(model, tok, chats: list[list[dict]], max_length: int = 256, batch_size: int = 16) -> tuple[float, int]:
    """Mean negative log-likelihood (nats per token) of whole chats, every token scored.

    Long conversations are cut into consecutive windows of at most `max_length` tokens,
    each scored on its own (the first token of a window has no context and is not scored).
    A batch holds at most `batch_size * max_length` padded tokens (`similar_lengths`): 16 windows of
    256 tokens, or more rows of short ones.
    """
    model.eval()
    windows = []
    for ids in tok.apply_chat_template(chats, tokenize=True, return_dict=False):
        ids = list(ids)
        windows += [ids[i:i + max_length] for i in range(0, len(ids), max_length) if len(ids[i:i + max_length]) > 1]
    windows.sort(key=len, reverse=True)  # batches of similar length: little padding (the sum does not depend on order)
    total, count = 0.0, 0
    for rows in similar_lengths(windows, batch_size * max_length):  # each window: its first token as the prompt, the rest scored
        logits, mask = response_logits(model, [w[:1] for w in rows], [w[1:] for w in rows], tok.pad_token_id)
        targets, _ = right_pad([w[1:] for w in rows], tok.pad_token_id)  # (B, R), as logits (B, R, V)
        nll = F.cross_entropy(logits.flatten(0, 1), targets.flatten().to(logits.device), reduction="none")  # (B * R,)
        total += (nll * mask.flatten()).sum().item()
        count += int(mask.sum().item())
    return total / max(count, 1), count


def similar_lengths(rows: list[list[int]], tokens: int, least: float = 0.75) -> Iterator[list[list[int]]]:
    """Rows sorted longest first, in batches of at most `tokens` padded tokens, each row at least `least`
    of its batch's first: a chat of 1,800 tokens cut into windows of 256 leaves a 200-token window
    and short chats behind it, which a fixed number of rows per batch would pad to 256."""
    batch: list[list[int]] = []
    for row in rows:
        if batch and ((len(batch) + 1) * len(batch[0]) > tokens or len(row) < least * len(batch[0])):
            yield batch
            batch = []
        batch.append(row)
    if batch:
        yield batch
