"""The actor-critic of rlft's PPO: one frozen backbone, a policy adapter, a value adapter and head.

The parent's SFT policy (its adapter merged in full precision, then quantized to 4-bit NF4 where
the recipe says so) is frozen. Two LoRA adapters sit on it: the policy ("default") and the value
function ("value", with a scalar head on its last hidden state). The reference is the same model
with the adapters disabled, which is exactly the SFT policy, so there is no second copy of any
weights (tests/test_ppo.py counts them). Every pass enters through the causal LM's own forward,
so a model sharded with FSDP 2 (rlft/distributed.py) is gathered the same way for each.
"""

from __future__ import annotations

import weakref
from pathlib import Path

import torch
from peft import get_peft_model
from peft.tuners.tuners_utils import BaseTunerLayer
from transformers import GenerationConfig

from rlft import distributed, models, runs
from rlft.config import PpoRecipe
from rlft.eval.generate import last_logits, left_pad, only_the_recipes_sampling
from rlft.rl import core

POLICY, VALUE = "default", "value"


def build_policy(recipe: PpoRecipe, fsdp: dict | None = None) -> tuple[torch.nn.Module, torch.nn.Linear]:
    """The parent's policy, frozen, with a policy LoRA ("default") and a value LoRA ("value") on it;
    sharded across the processes with the FSDP settings `fsdp`. The value head stays whole."""
    torch.manual_seed(recipe.seed)  # the adapters' random A matrices
    base = models.policy_for_training(recipe, recipe.parent)
    base.requires_grad_(False)
    if torch.cuda.is_available() and not models.is_quantized_4bit(base) and fsdp is None:
        base.to(f"cuda:{distributed.local_rank()}")  # 4-bit weights load onto their GPU;
        # sharded ones go there from fully_shard, each process's shard only
    model = get_peft_model(base, models.lora_config(recipe.lora), adapter_name=POLICY)
    model.add_adapter(VALUE, models.lora_config(recipe.lora))
    for name, p in model.named_parameters():
        p.requires_grad_("lora_" in name)  # add_adapter leaves the new adapter frozen (ppo.md §4.5)
    for module in model.modules():  # no dropout anywhere: the ratio must be exactly 1 before the first step
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    if recipe.train.gradient_checkpointing:  # active in train mode only, i.e. in the PPO epochs, not in generate
        base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        base.enable_input_require_grads()
    model.eval()
    if fsdp is not None:
        distributed.shard(base, fsdp)
    hidden = base.config.get_text_config().hidden_size
    device = next(base.parameters()).device
    value_head = torch.nn.Linear(hidden, 1, device=device, dtype=torch.float32)
    torch.nn.init.zeros_(value_head.weight)
    torch.nn.init.zeros_(value_head.bias)
    return model, value_head


def use(model, adapter: str) -> None:
    """Activate one adapter and keep both trainable. peft's set_adapter freezes every other adapter
    (BaseTunerLayer.set_adapter), and an adapter frozen at backward time silently gets no gradient
    (ppo.md §4.5); it also walks every module and flips every adapter weight, four times per
    minibatch. So the LoRA layers and weights are found once per model, and the switch is the
    assignment peft's own set_adapter ends with (`_active_adapter` of each layer)."""
    if model not in _LORA:
        _LORA[model] = ([m for m in model.modules() if isinstance(m, BaseTunerLayer)],
                        [p for n, p in model.named_parameters() if "lora_" in n])
    layers, weights = _LORA[model]
    for layer in layers:
        layer._active_adapter = [adapter]
    model.base_model.active_adapter = adapter
    for p in weights:  # disable_adapter() froze them all on the way out of the reference pass
        p.requires_grad_(True)


_LORA: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def adapter_params(model, adapter: str) -> list[torch.nn.Parameter]:
    """An adapter's parameters by name, never by requires_grad (which set_adapter flips)."""
    return [p for n, p in model.named_parameters() if "lora_" in n and f".{adapter}." in n]


def policy_logits(model, ids: torch.Tensor, mask: torch.Tensor, R: int, temperature: float) -> torch.Tensor:
    """Tempered logits that predict the R response tokens of query+response rows: (B, R, V)."""
    return last_logits(model, ids, mask, R) / temperature  # (B, R, V)


def values_of(model, value_head, ids: torch.Tensor, mask: torch.Tensor, R: int) -> torch.Tensor:
    """V(s_t) before each response token, from the value adapter's last hidden state: (B, R).
    Through the causal LM's own forward (the LM head on one position only), so a sharded model is
    gathered as for every other pass; its last hidden state is the final norm's output."""
    position_ids = (mask.cumsum(-1) - 1).clamp(min=0)  # (B, P+R)
    out = model(input_ids=ids, attention_mask=mask, position_ids=position_ids, output_hidden_states=True,
                logits_to_keep=1)
    return value_head(out.hidden_states[-1][:, -R - 1:-1].float()).squeeze(-1)  # (B, R)


@torch.no_grad()
def sample(model, value_head, queries: torch.Tensor, query_mask: torch.Tensor, gen_config: GenerationConfig
           ) -> tuple[torch.Tensor, ...]:
    """Sample a response to each left-padded query (b, P) with `gen_config`, and evaluate it: returns
    (responses, last, has_stop, mask, logprobs, entropy, ref_logprobs, values), (b, R) or (b,) each on
    the CPU, with R = max_new_tokens, responses cut after the stop token and every pass at its temperature."""
    R, P, T = gen_config.max_new_tokens, queries.shape[1], gen_config.temperature
    eos, pad = gen_config.eos_token_id, gen_config.pad_token_id
    device = next(model.parameters()).device
    q, m = queries.to(device), query_mask.to(device)  # (b, P)
    use(model, POLICY)
    with only_the_recipes_sampling(model):  # the checkpoint's generation_config stays out
        out = model.generate(input_ids=q, attention_mask=m, generation_config=gen_config, output_logits=True,
                             return_dict_in_generate=True)
    r = out.sequences.shape[1] - P  # r <= R: generate stops early when every row has stopped
    resp = torch.full((len(q), R), pad, dtype=torch.long, device=device)  # (b, R)
    resp[:, :r] = out.sequences[:, P:]
    resp, last, has_stop = core.truncate_after_stop(resp.cpu(), eos, pad)
    rmask = core.response_mask(last, R)  # (b, R)
    full = torch.cat([q, resp.to(device)], 1)  # (b, P+R)
    fmask = torch.cat([m, rmask.to(device).long()], 1)  # (b, P+R)
    # the old log-probs from the logits the tokens were sampled from (raw, before any processor), as
    # TRL's PPOTrainer does: no second policy pass; positions after the stop are masked by the caller
    logits = torch.zeros(len(q), R, out.logits[0].shape[-1], device=device)  # (b, R, V)
    logits[:, :r] = torch.stack(out.logits, 1).float() / T
    logprobs, entropy = core.logprobs_of(logits, full[:, P:]).cpu(), core.entropy_of(logits).cpu()  # (b, R)
    with model.disable_adapter():  # the reference: the SFT policy itself
        ref_logits = policy_logits(model, full, fmask, R, T)  # (b, R, V)
    ref_logprobs = core.logprobs_of(ref_logits, full[:, P:]).cpu()  # (b, R)
    use(model, VALUE)
    values = values_of(model, value_head, full, fmask, R).cpu()  # (b, R)
    return resp, last, has_stop, rmask, logprobs, entropy, ref_logprobs, values


@torch.no_grad()
def reference_answers(model, tok, ids: list[list[int]], max_new_tokens: int) -> list[str]:
    """The reference's (the SFT policy's) greedy answers to the prompts `ids`, decoded."""
    queries, query_mask = left_pad(ids, tok.pad_token_id)  # (B, P)
    device = next(model.parameters()).device
    with model.disable_adapter():
        out = model.generate(input_ids=queries.to(device), attention_mask=query_mask.to(device),
                             max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=tok.eos_token_id,
                             pad_token_id=tok.pad_token_id)  # (B, P + new tokens)
    return tok.batch_decode(out[:, queries.shape[1]:], skip_special_tokens=True)


def save(model, value_head, folder: Path) -> None:
    """The policy adapter in `folder` (where every stage keeps a policy's adapter), the value adapter in
    folder/value/ and the head as folder/value/value_head.pt. Every process calls it (a sharded
    adapter is gathered whole); the main process writes."""
    adapters = {n: distributed.full(p) for n, p in model.named_parameters() if "lora_" in n}
    if runs.is_main_process():  # peft: default -> folder/, value -> folder/value/
        model.save_pretrained(str(folder), state_dict=adapters)
        torch.save(value_head.state_dict(), folder / "value" / "value_head.pt")


def trainable(model, value_head) -> list[torch.nn.Parameter]:
    """Every parameter PPO trains: the policy adapter, the value adapter and the value head."""
    return adapter_params(model, POLICY) + adapter_params(model, VALUE) + list(value_head.parameters())

