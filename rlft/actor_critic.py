"""The actor-critic of rlft's PPO: one frozen backbone, a policy adapter, a value adapter and head.

The parent's SFT policy (its adapter merged in full precision, then quantized to 4-bit NF4 where
the recipe says so) is frozen. Two LoRA adapters sit on it: the policy ("default") and the value
function ("value", on the top layers, with a scalar head on its last hidden state). The reference
is the same model with the adapters disabled, which is exactly the SFT policy, so there is no second
copy of any weights (tests/test_ppo.py counts them). Every pass enters through the causal LM's own
forward, so a model sharded with FSDP 2 (rlft/distributed.py) is gathered the same way for each.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import weakref
from dataclasses import dataclass
from pathlib import Path

import torch
from peft import get_peft_model
from peft.tuners.tuners_utils import BaseTunerLayer
from transformers import GenerationConfig

from rlft import distributed, models, runs
from rlft.config import PpoRecipe
from rlft.eval.generate import decode, last_logits, left_pad, only_the_recipes_sampling
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
    value = on_top_layers(models.lora_config(recipe.lora), base, recipe.ppo.value_layers)  # before LoRA wraps it
    model = get_peft_model(base, models.lora_config(recipe.lora), adapter_name=POLICY)
    model.add_adapter(VALUE, value)
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


def on_top_layers(lora_config, base, share: float):
    """`lora_config` on the top `share` of the decoder layers of `base` (rounded up) only: peft's
    layers_to_transform, which takes a list of module names ("all-linear" becomes the names of the linear
    layers inside the decoder layers, as peft expands it). As it is where that is every layer.

    Why a critic on the top layers: it makes each value pass start where the value adapter does, from
    the hidden state the reference pass computed (value_start), rather than run the whole backbone twice
    per update; how much it costs in reward and saves in time is measured in bench/ppo_vs_trl112.py."""
    n = base.config.get_text_config().num_hidden_layers
    top = math.ceil(share * n - 1e-9)
    layers = getattr(base.get_decoder(), "layers", None)
    if top >= n or not isinstance(layers, torch.nn.ModuleList) or len(layers) != n:
        return lora_config  # every layer, also for a decoder whose layers are not a `layers` list
    targets = lora_config.target_modules
    if isinstance(targets, str):  # "all-linear": peft refuses layers_to_transform with a string
        linear = (torch.nn.Linear, *models.linear_4bit_classes())
        targets = sorted({name.rsplit(".", 1)[-1] for name, m in layers.named_modules() if isinstance(m, linear)})
    return dataclasses.replace(lora_config, target_modules=targets, layers_to_transform=list(range(n - top, n)))


def value_start(model) -> int | None:
    """The first decoder layer the value adapter sits on, when it leaves the layers below it as the base
    has them (ppo.value_layers): then every value pass may start there from the reference pass's hidden
    state, which those layers compute alike. None: it sits on every layer, several processes share the
    model (a sharded model gathers its layers in the full pass only), or values_of found that starting
    there changes the hidden states (a decoder that transforms its input embeddings, as Gemma's scales them)."""
    layers = model.peft_config[VALUE].layers_to_transform
    return min(layers) if layers and distributed.world() == 1 and _SHORTCUT.get(model) is not False else None


def use(model, adapter: str) -> None:
    """Activate one adapter and keep both trainable. peft's set_adapter freezes every other adapter
    (BaseTunerLayer.set_adapter), and an adapter frozen at backward time silently gets no gradient
    (ppo.md §4.5); it also walks every module and flips every adapter weight, four times per
    minibatch. So the LoRA layers and weights are found once per model, and the switch is the
    assignment peft's own set_adapter ends with (`_active_adapter` of each layer)."""
    layers, weights = _lora(model)
    for layer in layers:
        layer._active_adapter = [adapter]
    model.base_model.active_adapter = adapter
    for p in weights:  # peft's disable_adapter() (models.Reference: the drift budget's passes) freezes them all
        p.requires_grad_(True)


@contextlib.contextmanager
def reference(model):
    """While open, the model is the reference: every adapter off, the SFT policy. What peft's
    disable_adapter does for LoRA layers, the flag each layer's forward reads (BaseTunerLayer.enable_adapters
    sets `_disable_adapters`), without its three walks over every module on the way in and out
    (get_model_status, disable_adapter_layers, enable_adapter_layers), once per rollout batch. Weights keep
    their requires_grad (the passes inside run without gradients)."""
    layers, _ = _lora(model)
    for layer in layers:
        layer._disable_adapters = True
    try:
        yield model
    finally:
        for layer in layers:
            layer._disable_adapters = False


def _lora(model) -> tuple[list[BaseTunerLayer], list[torch.nn.Parameter]]:
    """The model's LoRA layers and weights, found once per model."""
    if model not in _LORA:
        _LORA[model] = ([m for m in model.modules() if isinstance(m, BaseTunerLayer)],
                        [p for n, p in model.named_parameters() if "lora_" in n])
    return _LORA[model]


_LORA: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def adapter_params(model, adapter: str) -> list[torch.nn.Parameter]:
    """An adapter's parameters by name, never by requires_grad (which set_adapter flips)."""
    return [p for n, p in model.named_parameters() if "lora_" in n and f".{adapter}." in n]


def policy_logits(model, ids: torch.Tensor, mask: torch.Tensor, R: int, temperature: float) -> torch.Tensor:
    """Tempered logits that predict the R response tokens of query+response rows: (B, R, V)."""
    return last_logits(model, ids, mask, R) / temperature  # (B, R, V)


def values_of(model, value_head, ids: torch.Tensor, mask: torch.Tensor, R: int,
              below: torch.Tensor | None = None) -> torch.Tensor:
    """V(s_t) before each response token, from the value adapter's last hidden state: (B, R).
    Through the causal LM's own forward (the LM head on one position only), so a sharded model is
    gathered as for every other pass; its last hidden state is the final norm's output. `below`, the
    hidden state entering layer value_start(model) (B, P+R, H), from the reference pass: the pass runs
    the layers from there up only, where that gives the full pass's hidden states (checked once per
    model, on the first rollout)."""
    position_ids = (mask.cumsum(-1) - 1).clamp(min=0)  # (B, P+R)
    start = value_start(model) if below is not None else None
    if start is not None and model not in _SHORTCUT:
        with torch.no_grad():
            full, short = _last_hidden(model, ids, mask, position_ids), _last_hidden(model, below, mask, position_ids,
                                                                                     start)
        tolerance = 1e-4 if full.dtype == torch.float32 else 2e-2  # of the largest entry
        _SHORTCUT[model] = bool((short - full).abs().max() <= tolerance * full.abs().max())
        if not _SHORTCUT[model]:
            runs.log("ppo: note: every value pass runs through every layer: starting them at the value "
                     "adapter's first layer did not give the same hidden states with this architecture")
    hidden = _last_hidden(model, below, mask, position_ids, start) if start is not None and _SHORTCUT[model] else \
        _last_hidden(model, ids, mask, position_ids)
    return value_head(hidden[:, -R - 1:-1].float()).squeeze(-1)  # (B, R)


_SHORTCUT: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _last_hidden(model, inputs: torch.Tensor, mask: torch.Tensor, position_ids: torch.Tensor,
                 start: int | None = None) -> torch.Tensor:
    """The causal LM's last hidden state (B, P+R, H) over token ids, or, with `start`, over the hidden
    state entering decoder layer `start`: then that state goes in as the input embeddings and the layer
    list is cut to the layers from `start` up for the pass (the decoder slices its list to
    num_hidden_layers, and builds its masks and rotary embeddings from the input's shape and the
    position ids)."""
    if start is None:
        return model(input_ids=inputs, attention_mask=mask, position_ids=position_ids, output_hidden_states=True,
                     logits_to_keep=1).hidden_states[-1]
    decoder = model.get_base_model().get_decoder()
    layers = decoder.layers
    decoder.layers = torch.nn.ModuleList(list(layers)[start:])
    try:
        return model(inputs_embeds=inputs, attention_mask=mask, position_ids=position_ids, output_hidden_states=True,
                     logits_to_keep=1, use_cache=False).hidden_states[-1]
    finally:
        decoder.layers = layers


class _Entering:
    """Holds the hidden state that enters one decoder layer in the passes run inside `with` (the last)."""

    def __init__(self, model, layer: int | None):
        self.layer, self.model, self.state, self.hook = layer, model, None, None

    def __enter__(self):
        if self.layer is not None:
            layer = self.model.get_base_model().get_decoder().layers[self.layer]
            self.hook = layer.register_forward_pre_hook(self._keep, with_kwargs=True)
        return self

    def _keep(self, module, args, kwargs):
        self.state = (args[0] if args else kwargs["hidden_states"]).detach()

    def __exit__(self, *exc):
        if self.hook is not None:
            self.hook.remove()


@dataclass
class Samples:
    """B prompts of P tokens (left-padded) and a response sampled to each, R tokens (padded after the
    stop), with every pass over them at temperature T. The per-token tensors are 0 after each
    response's last token, except `entropy`; all live on the CPU."""

    queries: torch.Tensor  # (B, P) prompt ids
    query_mask: torch.Tensor  # (B, P) 1 on prompt tokens, 0 on left padding
    responses: torch.Tensor  # (B, R) sampled ids, pad after the stop token
    last: torch.Tensor  # (B,) index of each response's last token: its stop token, or R - 1
    has_stop: torch.Tensor  # (B,) bool: the response ended with the stop token
    mask: torch.Tensor  # (B, R) bool: the response's tokens, the stop token included
    logprobs: torch.Tensor  # (B, R) log pi_old(token) at temperature T, from the sampling logits
    ref_logprobs: torch.Tensor  # (B, R) log pi_ref(token): the SFT policy, adapters disabled
    entropy: torch.Tensor  # (B, R) entropy of pi_old's whole distribution at each position
    values: torch.Tensor  # (B, R) V_old(s_t), the value function before the update
    below_values: torch.Tensor | None  # (B, P+R, H) the hidden state entering value_start's layer, or None
    texts: list[str]  # the B responses decoded, as a reward reads them


@torch.no_grad()
def sample(model, value_head, tok, ids: list[list[int]], response_length: int, temperature: float,
           batch_size: int) -> Samples:
    """Sample a response of at most `response_length` tokens to each prompt at `temperature` (top-k and
    top-p off), and evaluate it, `batch_size` prompts per pass. The policy adapter is active after."""
    eos = tok.eos_token_id
    pad = tok.pad_token_id if tok.pad_token_id != eos else (eos + 1) % len(tok)  # any id but the stop
    gen_config = GenerationConfig(max_new_tokens=response_length, do_sample=True, temperature=temperature,
                                  top_k=0, top_p=1.0, min_new_tokens=0, eos_token_id=eos, pad_token_id=pad)
    queries, query_mask = left_pad(ids, pad)  # (B, P)
    chunks = [_sample_batch(model, value_head, queries[s:s + batch_size], query_mask[s:s + batch_size], gen_config)
              for s in range(0, len(ids), batch_size)]
    use(model, POLICY)
    responses, last, *evaluated = (None if c[0] is None else torch.cat(c) for c in zip(*chunks))
    texts = [tok.decode(r[:n + 1], skip_special_tokens=True).strip() for r, n in zip(responses.tolist(), last)]
    return Samples(queries, query_mask, responses, last, *evaluated, texts)


def _sample_batch(model, value_head, queries: torch.Tensor, query_mask: torch.Tensor, gen_config: GenerationConfig
                  ) -> tuple[torch.Tensor, ...]:
    """Sample a response to each left-padded query (b, P) with `gen_config`, and evaluate it: returns
    (responses, last, has_stop, mask, logprobs, ref_logprobs, entropy, values, below_values), (b, R) or
    (b,) each on the CPU, with R = max_new_tokens, responses cut after the stop token and every pass at its
    temperature; below_values as Samples says."""
    R, P, T = gen_config.max_new_tokens, queries.shape[1], gen_config.temperature
    eos, pad = gen_config.eos_token_id, gen_config.pad_token_id
    device = next(model.parameters()).device
    q, m = queries.to(device), query_mask.to(device)  # (b, P)
    use(model, POLICY)
    new, raw = _sampled(model, q, m, gen_config)  # (b, r), (b, r, V): r <= R, as the longest response needed
    r = new.shape[1]
    resp = torch.full((len(q), R), pad, dtype=torch.long, device=device)  # (b, R)
    resp[:, :r] = new
    resp, last, has_stop = core.truncate_after_stop(resp.cpu(), eos, pad)
    rmask = core.response_mask(last, R)  # (b, R)
    full = torch.cat([q, resp.to(device)], 1)  # (b, P+R)
    fmask = torch.cat([m, rmask.to(device).long()], 1)  # (b, P+R)
    # the old log-probs from the logits the tokens were sampled from (raw, before any processor), as
    # TRL's PPOTrainer does: no second policy pass
    logits = torch.zeros(len(q), R, raw.shape[-1], device=device)  # (b, R, V)
    logits[:, :r] = raw.float() / T
    logprobs, entropy = core.logprobs_of(logits, full[:, P:]).cpu(), core.entropy_of(logits).cpu()  # (b, R)
    # the reference: the SFT policy itself; the layers under the value adapter compute the same there
    with reference(model), _Entering(model, value_start(model)) as below:
        ref_logits = policy_logits(model, full, fmask, R, T)  # (b, R, V)
    ref_logprobs = core.logprobs_of(ref_logits, full[:, P:]).cpu()  # (b, R)
    use(model, VALUE)
    values = values_of(model, value_head, full, fmask, R, below.state).cpu()  # (b, R)
    below_values = None if below.state is None else below.state.cpu()  # (b, P+R, H)
    # positions after the stop carry no log-prob or value: 0, so no statistic sees padding
    return (resp, last, has_stop, rmask, logprobs * rmask, ref_logprobs * rmask, entropy, values * rmask,
            below_values)


def _sampled(model, q: torch.Tensor, m: torch.Tensor, gen_config: GenerationConfig
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """The sampled tokens after each left-padded query (b, P), (b, r), each row cut after its stop
    token and the rest unspecified, and the raw logits each was drawn from, (b, r, V), from
    softmax(logits / T). In one process, rlft's decoder: it computes the queries' shared opening once
    and drops each row from the batch as it stops (rlft/eval/generate.py), and its generator is seeded
    from torch's global one, so a run's rollouts follow from its seed. Under a launch of several
    processes, transformers' generate: a model sharded with FSDP gathers its layers from every
    process at each step, so all must step until all have stopped, as generate makes them do; data
    parallel samples the same way, so that the two launches sample alike
    (tests/test_distributed.py)."""
    if distributed.world() > 1:
        with only_the_recipes_sampling(model):  # the checkpoint's generation_config stays out
            out = model.generate(input_ids=q, attention_mask=m, generation_config=gen_config, output_logits=True,
                                 return_dict_in_generate=True)
        return out.sequences[:, q.shape[1]:], torch.stack(out.logits, 1)
    b, device = len(q), q.device
    sampler = torch.Generator(device=device).manual_seed(int(torch.randint(0, 2**31 - 1, (1,))))
    return decode(model, q, m, torch.full((b,), gen_config.max_new_tokens, device=device), gen_config.eos_token_id,
                  torch.full((b,), gen_config.temperature, device=device), sampler, keep_logits=True)


def save(model, value_head, tok, run_dir: Path) -> dict[str, str]:
    """The policy adapter and the tokenizer in run_dir/adapter/ (where every stage keeps a policy's
    adapter), the value adapter in adapter/value/ and the head as adapter/value/value_head.pt; returns
    them as the manifest's artifacts. Every process calls it (a sharded adapter is gathered whole); the
    main process writes."""
    adapters = {n: distributed.full(p) for n, p in model.named_parameters() if "lora_" in n}
    if runs.is_main_process():  # peft: default -> adapter/, value -> adapter/value/
        model.save_pretrained(str(run_dir / "adapter"), state_dict=adapters)
        torch.save(value_head.state_dict(), run_dir / "adapter" / "value" / "value_head.pt")
        tok.save_pretrained(str(run_dir / "adapter"))
    return {"adapter": "adapter/", "value_adapter": "adapter/value/", "value_head": "adapter/value/value_head.pt"}


def trainable(model, value_head) -> list[torch.nn.Parameter]:
    """Every parameter PPO trains: the policy adapter, the value adapter and the value head."""
    return adapter_params(model, POLICY) + adapter_params(model, VALUE) + list(value_head.parameters())


def named_trainable(model, value_head) -> dict[str, dict[str, torch.nn.Parameter]]:
    """The trained weights by name, as a checkpoint holds them (rlft/checkpoint.py save_training)."""
    return {"adapters": {n: p for n, p in model.named_parameters() if "lora_" in n},
            "value_head": dict(value_head.named_parameters())}


def make_optimizer(model, value_head, recipe: PpoRecipe) -> torch.optim.AdamW:
    """AdamW over the policy adapter, the value adapter and the head, eps 1e-5 (Huang et al. 2024,
    detail 2); the head in a group of its own: it is never sharded, the adapters may be."""
    tr, value_lr = recipe.train, recipe.ppo.value_learning_rate
    value_lr = tr.learning_rate if value_lr is None else value_lr  # 0: the critic stays as it starts
    groups = [{"params": adapter_params(model, POLICY), "lr": tr.learning_rate},
              {"params": adapter_params(model, VALUE), "lr": value_lr},
              {"params": list(value_head.parameters()), "lr": value_lr}]
    # torch's fused AdamW: one kernel over every tensor instead of a dozen per tensor, the same update
    # (torch/optim/adamw.py); for plain tensors only, not the DTensors of a sharded model
    fused = all(type(p.data) is torch.Tensor and p.device.type in ("cpu", "cuda") for g in groups for p in g["params"])
    return torch.optim.AdamW(groups, eps=1e-5, weight_decay=tr.weight_decay, fused=fused or None)

