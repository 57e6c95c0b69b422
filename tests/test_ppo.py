"""rlft's PPO stage: one backbone, both adapters train, KL 0 and ratio 1 at the start, the reward
rises on a toy task, the reference never moves, exact resume, and bad input refused."""

from __future__ import annotations

import json
import subprocess

import pytest
import torch
from safetensors.torch import load_file

import reward_models
from rlft import actor_critic, cli, models
from rlft.config import load_recipe
from rlft.eval.budget import drift_budget
from rlft.eval.generate import prompt_ids
from rlft.stages import ppo
from tests import faulty_cli
from tests.conftest import assert_adapter_moved_only_its_weights, cli_args, tree

FAST = ["data.n_train=64", "ppo.rollout_batch_size=8", "ppo.forward_batch_size=8", "ppo.micro_batch_size=4",
        "ppo.mini_batches=2", "ppo.ppo_epochs=2", "ppo.response_length=12", "ppo.updates=2", "train.logging_steps=1",
        "train.save_steps=50", "lora.r=4", "eval.enabled=false", "ppo.reward=house_tone"]


def _args(model_dir, parent, out, *extra):
    return cli_args("ppo", [f"model={model_dir}", f"parent={parent}", *FAST, *extra], out)


def _recipe(model_dir, parent, *extra):
    return load_recipe("ppo", "recipes/customer_support/ppo.yaml", [f"model={model_dir}", f"parent={parent}",
                                                                    *FAST, *extra])


def _log(run_dir):
    return json.loads((run_dir / "train_log.json").read_text())


@pytest.mark.parametrize("four_bit", [False, True], ids=["lora", "qlora"])
def test_one_backbone_and_the_reference_is_the_sft_policy(tiny_model_dir, sft_lora_run, four_bit):
    """Every weight exists once: the frozen backbone, two adapters and a head. With the adapters
    disabled the model gives the SFT policy's logits."""
    recipe = _recipe(tiny_model_dir, sft_lora_run, f"quant.load_in_4bit={str(four_bit).lower()}")
    model, head = actor_critic.build_policy(recipe)
    storages = {}
    for name, p in list(model.named_parameters()) + list(model.named_buffers()):
        storages.setdefault(p.data_ptr(), name)
    assert len(storages) == len(list(model.named_parameters())) + len(list(model.named_buffers()))
    policy = [n for n, _ in model.named_parameters() if "lora_" in n and ".default." in n]
    value = [n for n, _ in model.named_parameters() if "lora_" in n and ".value." in n]
    assert len(policy) == len(value) > 0
    assert all(not p.requires_grad for n, p in model.named_parameters() if "lora_" not in n)
    assert models.is_quantized_4bit(model) == four_bit
    sft_policy = models.run_model(sft_lora_run)
    ids = torch.tensor([[5, 17, 42, 99, 7, 3]])
    with torch.no_grad(), model.disable_adapter():
        ref = model(input_ids=ids).logits
    expected = sft_policy(input_ids=ids).logits
    assert torch.allclose(ref, expected, atol=1e-5 if not four_bit else 0.5)
    if four_bit:  # the 4-bit reference is the quantized SFT policy: close to it, not equal
        assert (ref - expected).abs().max() > 0
    # the drift budget measures against the same weights with the adapters off: still one copy
    budget = drift_budget(_recipe(tiny_model_dir, sft_lora_run, "budget.max_kl_task=0.5", "budget.samples=4"),
                          models.load_tokenizer(str(tiny_model_dir)), model)
    reference = budget.reference_of(model)
    assert {p.data_ptr() for p in reference.parameters()} <= set(storages)
    with torch.no_grad():
        assert torch.equal(reference(input_ids=ids).logits, ref)


def test_values_come_from_the_final_normed_hidden_state(tiny_model_dir, sft_lora_run):
    """values_of runs the causal LM's own forward (so a sharded model is gathered) and reads its
    last hidden state, which must be the backbone's output after the final norm."""
    model, head = actor_critic.build_policy(_recipe(tiny_model_dir, sft_lora_run))
    torch.nn.init.normal_(head.weight)
    ids, mask = torch.tensor([[5, 17, 42, 99, 7, 3, 8]]), torch.ones(1, 7, dtype=torch.long)
    actor_critic.use(model, actor_critic.VALUE)
    base = model.get_base_model()
    with torch.no_grad():
        direct = head(base.model(input_ids=ids, attention_mask=mask).last_hidden_state[:, -4:-1]).squeeze(-1)
        assert torch.allclose(actor_critic.values_of(model, head, ids, mask, 3), direct, atol=1e-6)


@pytest.mark.parametrize("four_bit", [False, True], ids=["lora", "qlora"])
def test_a_value_adapter_on_the_top_layers_gives_the_full_passes_values_from_the_reference_pass(
        tiny_model_dir, sft_lora_run, four_bit):
    """ppo.value_layers 0.25 (the default): the value adapter sits on the top quarter of the decoder layers, the
    last of rlft-tiny's few, and its passes start there from the hidden state the reference pass computed, with
    the values (and the gradients) of the full pass."""
    recipe = _recipe(tiny_model_dir, sft_lora_run, "ppo.value_layers=0.25", f"quant.load_in_4bit={str(four_bit).lower()}")
    model, head = actor_critic.build_policy(recipe)
    n = model.get_base_model().config.num_hidden_layers
    assert n > 1 and actor_critic.value_start(model) == n - 1
    value_layers = {int(name.split(".layers.")[1].split(".")[0]) for name, _ in model.named_parameters()
                    if ".value." in name}
    assert value_layers == {n - 1}
    torch.manual_seed(1)
    with torch.no_grad():  # a value function that is not the zero one, below the shortcut's tolerance
        for p in actor_critic.adapter_params(model, actor_critic.VALUE):
            p.normal_(0, 0.1)
        torch.nn.init.normal_(head.weight)
    tok = models.load_tokenizer(str(tiny_model_dir))
    chats = [[{"role": "user", "content": f"where is my order #{70000 + i}?"}] for i in range(4)]
    b = ppo.rollout(model, head, tok, chats, prompt_ids(tok, chats), reward_models.load("house_tone"), recipe.ppo,
                    kl_coef=0.05)
    assert actor_critic._SHORTCUT[model] and b.below_values is not None
    ids = torch.cat([b.queries, b.responses], 1)
    mask = torch.cat([b.query_mask, b.mask.long()], 1)
    R = b.responses.shape[1]
    actor_critic.use(model, actor_critic.VALUE)
    full = actor_critic.values_of(model, head, ids, mask, R)
    short = actor_critic.values_of(model, head, ids, mask, R, b.below_values)
    assert torch.allclose(short, full, atol=1e-4) and torch.allclose(b.values, full * b.mask, atol=1e-4)
    assert full.std() > 0.01  # values that differ from state to state: the comparison could fail
    grads = []
    for below in (None, b.below_values):  # the same value-loss gradient either way
        model.zero_grad(set_to_none=True)
        actor_critic.values_of(model, head, ids, mask, R, below).square().sum().backward()
        grads.append(torch.cat([p.grad.flatten() for p in actor_critic.adapter_params(model, actor_critic.VALUE)]))
    assert grads[0].abs().sum() > 0 and torch.allclose(grads[0], grads[1], rtol=1e-3, atol=1e-5)


def test_a_decoder_that_changes_its_input_embeddings_runs_every_value_pass_in_full(tiny_model_dir, sft_lora_run,
                                                                                    monkeypatch):
    """Where the cut pass does not give the full pass's hidden states (here a decoder that doubles embeddings
    handed to it, as Gemma's scales them), the check on the first rollout sends every value pass through
    every layer."""
    model, head = actor_critic.build_policy(_recipe(tiny_model_dir, sft_lora_run, "ppo.value_layers=0.25"))
    decoder = model.get_base_model().get_decoder()
    forward = decoder.forward
    monkeypatch.setattr(decoder, "forward", lambda input_ids=None, inputs_embeds=None, **kw: forward(
        input_ids=input_ids, inputs_embeds=None if inputs_embeds is None else 2 * inputs_embeds, **kw))
    tok = models.load_tokenizer(str(tiny_model_dir))
    chats = [[{"role": "user", "content": f"where is my order #{70000 + i}?"}] for i in range(4)]
    torch.nn.init.normal_(head.weight)
    b = ppo.rollout(model, head, tok, chats, prompt_ids(tok, chats), reward_models.load("house_tone"),
                    _recipe(tiny_model_dir, sft_lora_run).ppo, kl_coef=0.05)
    assert actor_critic._SHORTCUT[model] is False and actor_critic.value_start(model) is None
    ids, mask = torch.cat([b.queries, b.responses], 1), torch.cat([b.query_mask, b.mask.long()], 1)
    actor_critic.use(model, actor_critic.VALUE)
    with torch.no_grad():
        full = actor_critic.values_of(model, head, ids, mask, b.responses.shape[1])
    assert torch.allclose(b.values, full * b.mask, atol=1e-5)


def test_both_adapters_train_and_the_reference_does_not_move(tiny_model_dir, sft_lora_run):
    """One update: the policy and value adapters both change (peft's set_adapter would freeze one,
    ppo.md §4.5), the frozen weights do not, and the reference logits are the same as before."""
    recipe = _recipe(tiny_model_dir, sft_lora_run, "train.learning_rate=0.01")
    model, head = actor_critic.build_policy(recipe)
    tok = models.load_tokenizer(str(tiny_model_dir))
    chats = [[{"role": "user", "content": f"where is my order #{70000 + i}?"}] for i in range(8)]
    ids = prompt_ids(tok, chats)
    ids_t = torch.tensor([ids[0]])
    with torch.no_grad(), model.disable_adapter():
        ref_before = model(input_ids=ids_t).logits
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    torch.manual_seed(0)
    b = ppo.rollout(model, head, tok, chats, ids, _by_length, recipe.ppo, kl_coef=0.05)
    assert b.advantages.abs().sum() > 0  # so that the policy moves by its gradient (no weight decay below)
    optimizer = torch.optim.AdamW([{"params": actor_critic.adapter_params(model, "default")},
                                   {"params": actor_critic.adapter_params(model, "value") + list(head.parameters())}],
                                  lr=0.01, weight_decay=0.0)
    stats = ppo.ppo_epochs(model, head, optimizer, b, recipe.ppo, 1.0, torch.Generator().manual_seed(0))
    assert stats["optimizer_steps"] == recipe.ppo.ppo_epochs * recipe.ppo.mini_batches
    # a second pass over the rollout: the value adapter's gradient runs through the head, which starts at 0, and
    # the clipped value loss gives none where the values have gone past the rollout's by cliprange_value in the
    # steps the head took alone
    ppo.ppo_epochs(model, head, optimizer, b, recipe.ppo, 1.0, torch.Generator().manual_seed(1))
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert {a for n in changed for a in ("default", "value") if f".lora_B.{a}." in n} == {"default", "value"}
    assert all("lora_" in n for n in changed)
    assert head.weight.abs().sum() > 0
    with torch.no_grad(), model.disable_adapter():
        assert torch.equal(model(input_ids=ids_t).logits, ref_before)
    with torch.no_grad(), actor_critic.reference(model):  # the rollout's own switch: the same, trained adapters off
        assert torch.equal(model(input_ids=ids_t).logits, ref_before)
    assert not torch.equal(model(input_ids=ids_t).logits, ref_before)  # and on again after it


def test_a_value_learning_rate_of_0_leaves_the_critic_as_it_starts(tiny_model_dir, sft_lora_run):
    """ppo.value_learning_rate 0 is a critic that is never trained (every value 0), not train.learning_rate."""
    recipe = _recipe(tiny_model_dir, sft_lora_run, "train.learning_rate=0.01", "ppo.value_learning_rate=0")
    model, head = actor_critic.build_policy(recipe)
    optimizer = actor_critic.make_optimizer(model, head, recipe)
    assert [g["lr"] for g in optimizer.param_groups] == [0.01, 0.0, 0.0]
    tok = models.load_tokenizer(str(tiny_model_dir))
    chats = [[{"role": "user", "content": f"where is my order #{70000 + i}?"}] for i in range(8)]
    value = {n: p.detach().clone() for n, p in model.named_parameters() if ".value." in n}
    policy = [p.detach().clone() for p in actor_critic.adapter_params(model, "default")]
    torch.manual_seed(0)
    b = ppo.rollout(model, head, tok, chats, prompt_ids(tok, chats), _by_length, recipe.ppo, kl_coef=0.05)
    ppo.ppo_epochs(model, head, optimizer, b, recipe.ppo, 1.0, torch.Generator().manual_seed(0))
    assert all(torch.equal(p, value[n]) for n, p in model.named_parameters() if ".value." in n)
    assert head.weight.abs().sum() == 0 and head.bias.abs().sum() == 0
    assert any(not torch.equal(p, q) for p, q in zip(actor_critic.adapter_params(model, "default"), policy))


def _by_length(chats: list, texts: list[str]) -> list[float]:
    """A reward whose scores differ from answer to answer (house_tone gives the tiny SFT policy's answers one
    score, so every advantage would be 0): the answer's length in characters, over 100."""
    return [len(t) / 100 for t in texts]


def test_peft_set_adapter_alone_would_starve_the_policy(tiny_model_dir, sft_lora_run):
    """The trap actor_critic.use() avoids: after set_adapter("value") the policy adapter no longer requires grad."""
    model, _ = actor_critic.build_policy(_recipe(tiny_model_dir, sft_lora_run))
    model.set_adapter("value")
    assert not any(p.requires_grad for p in actor_critic.adapter_params(model, "default"))
    actor_critic.use(model, "value")
    both = actor_critic.adapter_params(model, "default") + actor_critic.adapter_params(model, "value")
    assert all(p.requires_grad for p in both)


def test_rollout_masks_stop_exactly_after_eos(tiny_model_dir, sft_lora_run):
    recipe = _recipe(tiny_model_dir, sft_lora_run, "ppo.response_length=24", "ppo.temperature=1.5")
    model, head = actor_critic.build_policy(recipe)
    tok = models.load_tokenizer(str(tiny_model_dir))
    chats = [[{"role": "user", "content": "hello there"}]] * 16
    torch.manual_seed(3)
    b = ppo.rollout(model, head, tok, chats, prompt_ids(tok, chats), reward_models.load("house_tone"),
                    recipe.ppo, kl_coef=0.05)
    eos = tok.eos_token_id
    for resp, mask, last, stop in zip(b.responses.tolist(), b.mask, b.last, b.has_stop):
        real = resp[:int(last) + 1]
        assert mask.sum() == len(real) and bool(mask[int(last)]) and not mask[int(last) + 1:].any()
        assert bool(stop) == (eos in real) and (not stop or (real[-1] == eos and real.count(eos) == 1))
    assert (b.values * ~b.mask == 0).all() and (b.advantages * ~b.mask == 0).all()


def test_first_update_starts_at_the_reference(tiny_model_dir, sft_lora_run, tmp_path, capsys):
    """Both adapters start with B = 0, so at the first update policy = reference: KL 0, ratio 1.
    The tiny model rarely stops within 12 tokens, so the run says its answers were cut."""
    out = tmp_path / "ppo"
    assert cli.main(_args(tiny_model_dir, sft_lora_run, out)) == 0
    first = _log(out)[0]
    assert first["response/eos_rate"] < 0.9
    assert "reached ppo.response_length (12 tokens) without stopping" in capsys.readouterr().out
    assert abs(first["objective/kl"]) < 1e-6 and abs(first["objective/kl_k3"]) < 1e-6
    assert abs(first["policy/ratio_first"] - 1) < 1e-5
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["stage"] == "ppo" and manifest["parent"] == str(sft_lora_run)
    assert (out / "adapter" / "adapter_config.json").is_file() and (out / "adapter" / "value" / "value_head.pt").is_file()
    assert_adapter_moved_only_its_weights(out, sft_lora_run)


def _letter_toy(prompts, completions):
    """The toy reward (ppo.md §4.4, in text): 0.25 for every letter 'e' in the response. Dense, so a
    random-weight model finds it at once; the policy must learn to prefer tokens that contain 'e'."""
    return [0.25 * c.count("e") for c in completions]


def _toy_run(model_dir, parent, out, kl_coef: float) -> tuple[float, float, float]:
    """(first-5 mean score, last-5 mean score, last-5 mean KL) of 30 updates on the letter toy, with the
    default value adapter (the top quarter of the layers)."""
    assert cli.main(_args(model_dir, parent, out, "ppo.reward=letter_toy", "ppo.updates=30",
                          "ppo.rollout_batch_size=16", "ppo.forward_batch_size=16", "ppo.ppo_epochs=4",
                          "ppo.response_length=16", "ppo.missing_eos_penalty=null", "ppo.value_layers=0.25",
                          "train.learning_rate=0.002",
                          "train.lr_scheduler=constant", "ppo.value_learning_rate=0.002", f"ppo.kl_coef={kl_coef}",
                          "lora.target_modules=[q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj,lm_head]")) == 0
    log = _log(out)
    mean = lambda key, part: sum(m[key] for m in part) / len(part)  # noqa: E731
    return mean("objective/scores", log[:5]), mean("objective/scores", log[-5:]), mean("objective/kl", log[-5:])


@pytest.mark.slow
def test_toy_reward_rises_with_bounded_kl_and_the_kl_coef_is_a_leash(tiny_model_dir, sft_lora_run, tmp_path, monkeypatch):
    """The reward rises clearly in 30 updates; a 20x stronger KL penalty keeps the policy much nearer
    the reference and so earns less of the reward. Relations only: the loose run's KL itself follows
    one machine's floating-point trajectory (measured 54 on one machine of our kind, under 40 on
    another), while the tight run's stayed 30x lower on both."""
    monkeypatch.setitem(reward_models.RULES, "letter_toy", _letter_toy)
    first, last, kl = _toy_run(tiny_model_dir, sft_lora_run, tmp_path / "loose", 0.05)
    _, last_tight, kl_tight = _toy_run(tiny_model_dir, sft_lora_run, tmp_path / "tight", 1.0)
    print(f"toy reward {first:.3f} -> {last:.3f} (KL {kl:.2f}); kl_coef 1.0: {last_tight:.3f} (KL {kl_tight:.2f})")
    assert last > first + 0.5
    assert kl > 0 and kl_tight < 0.5 * kl
    assert last_tight < last


@pytest.mark.slow
def test_sigkill_then_resume_continues_exactly(tiny_model_dir, sft_lora_run, tmp_path):
    """Killed after update 2, or killed while writing checkpoint-3 (a torn file in its temporary
    folder): --resume continues from checkpoint-2 and ends with the uninterrupted run's adapters. With the
    default value adapter (the top quarter), whose passes start from the reference pass's hidden state."""
    extra = ["ppo.updates=4", "train.save_steps=1", "ppo.value_layers=0.25"]
    straight = tmp_path / "straight"
    assert cli.main(_args(tiny_model_dir, sft_lora_run, straight, *extra)) == 0
    a = load_file(str(straight / "adapter" / "adapter_model.safetensors"))
    for fault, step in (("--kill-at-step", 2), ("--tear-save-at", 3)):
        killed = tmp_path / fault.strip("-")
        proc = subprocess.run(faulty_cli.command(fault, step, _args(tiny_model_dir, sft_lora_run, killed, *extra)),
                              capture_output=True, text=True)
        assert proc.returncode == -9, proc.stderr[-2000:]
        partial = killed.with_name(killed.name + ".partial")
        assert (partial / "checkpoint-2" / "trainer_state.json").is_file()
        assert not (partial / "checkpoint-3").exists()
        if fault == "--tear-save-at":
            assert (partial / ".checkpoint-3.tmp" / "rng-0.pt").read_bytes().endswith(b"torn")
        assert cli.main(_args(tiny_model_dir, sft_lora_run, killed, *extra) + ["--resume"]) == 0
        b = load_file(str(killed / "adapter" / "adapter_model.safetensors"))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), fault
        assert [m["objective/scores"] for m in _log(straight)] == [m["objective/scores"] for m in _log(killed)]
        assert not list(killed.glob(".checkpoint-*")), "the torn temporary folder is cleaned up"


def _nan_reward(prompts, completions):
    return [float("nan")] * len(completions)


def _short_reward(prompts, completions):
    return [0.0] * (len(completions) - 1)


@pytest.mark.parametrize("reward,needle", [("_nan", "returned nan"), ("_short", "scores for"),
                                           ("no_such_reward", "unknown reward 'no_such_reward'")])
def test_bad_rewards_are_refused_before_anything_is_written(tiny_model_dir, sft_lora_run, tmp_path, capsys,
                                                           monkeypatch, reward, needle):
    monkeypatch.setitem(reward_models.RULES, "_nan", _nan_reward)
    monkeypatch.setitem(reward_models.RULES, "_short", _short_reward)
    before = tree(tmp_path)
    assert cli.main(_args(tiny_model_dir, sft_lora_run, tmp_path / "ppo", f"ppo.reward={reward}")) == 2
    assert needle in capsys.readouterr().err
    assert tree(tmp_path) == before


def test_long_prompts_and_foreign_parents_are_refused(tiny_model_dir, sft_lora_run, tmp_path, capsys):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(json.dumps({"prompt": [{"role": "user", "content": "word " * 400}]}) + "\n")
    assert cli.main(_args(tiny_model_dir, sft_lora_run, tmp_path / "a", f"data.train={prompts}")) == 2
    err = capsys.readouterr().err
    assert str(prompts) in err and "row 1" in err and "data.max_length" in err
    assert cli.main(_args("rlft-tiny", sft_lora_run, tmp_path / "b")) == 2
    assert "trained from model" in capsys.readouterr().err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_a_tripped_drift_budget_stops_ppo_and_keeps_the_weights_inside_it(tiny_model_dir, sft_lora_run, tmp_path):
    """A KL budget no update can meet trips at the first measurement; the saved policy is the one
    measured last inside the budget, the SFT policy itself (both adapters' B still zero)."""
    out = tmp_path / "ppo"
    assert cli.main(_args(tiny_model_dir, sft_lora_run, out, "ppo.updates=3", "budget.max_kl_task=1e-9",
                          "budget.every=2", "budget.samples=4", "train.learning_rate=0.01")) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["budget"]["tripped"]["budget"] == "max_kl_task" and manifest["budget"]["tripped"]["step"] == 2
    assert manifest["metrics"]["kept_update"] == 0 and manifest["metrics"]["updates"] == 2
    weights = load_file(str(out / "adapter" / "adapter_model.safetensors"))
    assert all((w == 0).all() for k, w in weights.items() if "lora_B" in k)


def _nan_later(prompts, completions):
    """Fine on the pre-run probe (greedy answers), NaN once sampled answers are scored."""
    _nan_later.calls = getattr(_nan_later, "calls", 0) + 1
    return [0.0 if _nan_later.calls == 1 else float("nan")] * len(completions)


def test_a_reward_that_fails_mid_run_stops_with_exit_3_and_names_the_checkpoint(tiny_model_dir, sft_lora_run,
                                                                                tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(reward_models.RULES, "_nan_later", _nan_later)
    _nan_later.calls = 0
    out = tmp_path / "ppo"
    assert cli.main(_args(tiny_model_dir, sft_lora_run, out, "ppo.reward=_nan_later")) == 3
    err = capsys.readouterr().err
    assert "at update 1" in err and "returned nan" in err and "no checkpoint was written" in err
    assert not out.exists()


FSDP2 = {"ACCELERATE_USE_FSDP": "true", "FSDP_VERSION": "2"}


@pytest.mark.parametrize("env,sets,needle", [
    ({"ACCELERATE_USE_DEEPSPEED": "true"}, [], "recipes/accelerate/fsdp.yaml"),
    ({**FSDP2, "FSDP_VERSION": "1"}, [], "fsdp_version: 2"),
    (FSDP2, ["quant.load_in_4bit=true"], "recipes/accelerate/ddp.yaml"),
    ({**FSDP2, "FSDP_OFFLOAD_PARAMS": "true"}, [], "fsdp_offload_params"),
], ids=["deepspeed", "fsdp1", "fsdp-4bit", "fsdp-offload"])
def test_a_launch_ppo_cannot_honour_is_refused(tiny_model_dir, sft_lora_run, tmp_path, capsys, monkeypatch, env,
                                               sets, needle):
    """rather than run unsharded while the user believes it sharded (FSDP 2 itself: test_distributed.py)"""
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    before = tree(tmp_path)
    assert cli.main(_args(tiny_model_dir, sft_lora_run, tmp_path / "ppo", *sets)) == 2
    err = capsys.readouterr().err
    assert needle in err and "ppo" in err
    assert tree(tmp_path) == before


def test_an_up_to_date_run_is_not_rebuilt(tiny_model_dir, sft_lora_run, tmp_path, capsys, monkeypatch):
    """Rerunning a finished PPO with the same inputs returns at once, before any model is built."""
    out = tmp_path / "ppo"
    assert cli.main(_args(tiny_model_dir, sft_lora_run, out, "ppo.updates=1")) == 0
    manifest = (out / "manifest.json").read_text()

    def no_model(recipe):
        raise AssertionError("the model was built for a run that is up to date")

    monkeypatch.setattr(actor_critic, "build_policy", no_model)
    assert cli.main(_args(tiny_model_dir, sft_lora_run, out, "ppo.updates=1")) == 0
    assert "is up to date" in capsys.readouterr().out
    assert (out / "manifest.json").read_text() == manifest
