"""Loading: 4-bit layers keep their gradient after the model has generated or been evaluated."""

from __future__ import annotations

import torch

from rlft import models
from rlft.config import QuantCfg


def _qlora(model_dir, differentiable: bool):
    from peft import LoraConfig, get_peft_model

    quant = QuantCfg(load_in_4bit=True)
    model = models.load_causal_lm(str(model_dir), quant=quant)
    if not differentiable:  # what bitsandbytes does when left alone
        for module in model.modules():
            if hasattr(module, "support_avx512bf16_for_cpu"):
                module.support_avx512bf16_for_cpu = True
    torch.manual_seed(0)
    model = get_peft_model(model, LoraConfig(r=4, target_modules="all-linear", lora_dropout=0.0))
    for name, p in model.named_parameters():
        if "lora_B" in name:  # non-zero, so gradients flow through every adapter
            torch.nn.init.normal_(p, std=0.05)
    return model


def _first_layer_grad(model, ids) -> torch.Tensor:
    model.zero_grad()
    model(input_ids=ids, labels=ids).loss.backward()
    return next(p.grad.clone() for n, p in model.named_parameters() if "layers.0.self_attn.q_proj.lora_A" in n)


def test_qlora_gradients_survive_an_eval_pass(tiny_model_dir):
    """The gradient of the first layer's adapter flows back through every frozen 4-bit layer above it.
    A no-grad pass in eval mode (a rollout, an evaluation) must not change it, nor must training in
    eval mode (PPO's passes). Where bitsandbytes would swap in its backward-less CPU kernel, the
    unguarded model shows the difference that rlft prevents."""
    ids = torch.randint(5, 500, (2, 12))
    model = _qlora(tiny_model_dir, differentiable=True)
    model.train()
    before = _first_layer_grad(model, ids)
    model.eval()
    in_eval = _first_layer_grad(model, ids)
    with torch.no_grad():
        model(input_ids=ids)
    model.train()
    after = _first_layer_grad(model, ids)
    assert before.abs().sum() > 0
    assert torch.allclose(before, in_eval, atol=1e-6) and torch.allclose(before, after, atol=1e-6)

    import bitsandbytes as bnb

    if bnb.nn.modules.has_avx512bf16():  # this CPU has the fast kernel: show what it would have done
        bare = _qlora(tiny_model_dir, differentiable=False)
        bare.eval()
        with torch.no_grad():
            bare(input_ids=ids)
        bare.train()
        assert not torch.allclose(before, _first_layer_grad(bare, ids), atol=1e-6)
