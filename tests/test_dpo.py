"""The DPO stage: the reference is the SFT policy (loss ln 2 at step 0), and every loss trains."""

from __future__ import annotations

import json
import math

import pytest
import torch
from safetensors.torch import load_file

from rlft import cli, data, models
from rlft.eval.generate import response_logits, right_pad
from rlft.rl.core import logprobs_of
from rlft.stages import scored_positions_on_cpu
from tests.conftest import cli_args

FAST = ["data.n_train=32", "data.n_val=8", "train.batch_size=8", "train.logging_steps=1", "train.save_steps=50",
        "train.eval_steps=0", "eval.enabled=false"]


def _run(stage, model_dir, runs_dir, out, *extra):
    return cli.main(cli_args(stage, [f"model={model_dir}", *FAST, *extra], runs_dir / out))


@pytest.fixture(scope="module")
def sft_runs(tiny_model_dir, tmp_path_factory):
    runs_dir = tmp_path_factory.mktemp("runs")
    assert _run("sft", tiny_model_dir, runs_dir, "sft_full", "train.max_steps=3", "train.learning_rate=0.01",
                "lora.enabled=false") == 0
    assert _run("sft", tiny_model_dir, runs_dir, "sft_lora", "train.max_steps=3", "train.learning_rate=0.01",
                "lora.enabled=true", "lora.r=4") == 0
    return runs_dir


def _first_log(run_dir):
    log = json.loads((run_dir / "train_log.json").read_text())
    return next(e for e in log if "loss" in e)


@torch.no_grad()
def _preference_gap(run_dir, tok, rows: list[dict]) -> float:
    """Mean over preference rows of log p(chosen) - log p(rejected) under a run's policy, each answer's
    log-probability summed over its tokens after the chat-templated prompt."""
    policy = models.run_model(run_dir).eval()
    prompts = [tok.apply_chat_template(r["prompt"], add_generation_prompt=True, return_dict=False) for r in rows]

    def logp(key: str) -> float:  # summed over every row's answer
        answers = [tok.apply_chat_template(r["prompt"] + r[key], return_dict=False)[len(p):]
                   for r, p in zip(rows, prompts)]
        logits, mask = response_logits(policy, prompts, answers, tok.pad_token_id)  # (B, R, V), (B, R)
        ids, _ = right_pad(answers, tok.pad_token_id)  # (B, R)
        return (logprobs_of(logits, ids) * mask).sum().item()

    return (logp("chosen") - logp("rejected")) / len(rows)


@pytest.mark.parametrize("parent,extra", [
    ("sft_full", ["lora.enabled=false"]),
    ("sft_lora", ["lora.enabled=true", "lora.r=4"]),
    ("sft_lora", ["lora.enabled=true", "lora.r=4", "quant.load_in_4bit=true"]),
])
def test_dpo_step0_loss_is_ln2_so_the_reference_is_the_sft_policy(tiny_model_dir, sft_runs, parent, extra):
    """At step 0 policy = reference, so every margin is 0 and the loss is -log σ(0) = ln 2 = 0.6931."""
    out = f"dpo_{parent}_{len(extra)}"
    assert _run("dpo", tiny_model_dir, sft_runs, out, f"parent={sft_runs / parent}", "train.max_steps=1",
                "train.learning_rate=1e-9", "dpo.loss_type=[sigmoid]", *extra) == 0
    first = _first_log(sft_runs / out)
    assert abs(first["loss"] - math.log(2)) < 1e-3
    assert abs(first["rewards/margins"]) < 1e-3


@pytest.mark.parametrize("loss", ["sigmoid", "ipo", "hinge", "robust", "apo_zero", "sigmoid,sft", "kto", "orpo",
                                  "simpo"])
def test_each_loss_trains(tiny_model_dir, sft_runs, loss):
    """Two steps of each loss (the first at warmup's lr 0) move the new adapter the way every one of
    them asks: on the training pairs, chosen answers gain log-probability over rejected ones."""
    out = f"dpo_loss_{loss.replace(',', '_')}"
    extra = {"robust": ["dpo.label_smoothing=0.1"], "kto": ["train.group_by_length=false"]}.get(loss, [])
    assert _run("dpo", tiny_model_dir, sft_runs, out, f"parent={sft_runs / 'sft_full'}", "train.max_steps=2",
                f"dpo.loss_type=[{loss}]", *extra) == 0
    manifest = json.loads((sft_runs / out / "manifest.json").read_text())
    assert math.isfinite(manifest["metrics"]["train_loss"])
    spec = manifest["recipe"]["data"]
    rows = data.load(spec["train"], "preference", manifest["seed"], spec["n_train"], spec["system_prompt"])
    tok = models.load_tokenizer(str(tiny_model_dir))
    before, after = (_preference_gap(sft_runs / run, tok, rows) for run in ("sft_full", out))
    print(f"{loss}: chosen - rejected log-prob {before:.4f} -> {after:.4f}")
    assert after > before


def test_lora_dpo_keeps_one_copy_and_the_reference_is_the_sft_policy(tiny_model_dir, sft_runs, tmp_path):
    """Under LoRA there is no reference model: the policy with its new adapter disabled gives exactly
    the SFT policy's logits, and the base weights exist once."""
    from rlft import config
    from rlft.stages import dpo

    recipe = config.load_recipe("dpo", "recipes/customer_support/dpo.yaml",
                                [f"model={tiny_model_dir}", f"parent={sft_runs / 'sft_lora'}", "lora.r=4",
                                 "train.max_steps=1", "train.logging_steps=1", "eval.enabled=false"])
    tok = models.load_tokenizer(recipe.model)
    rows = data.load("harbor_pairs", "preference", 0, 8)
    trainer, _ = dpo.build_trainer(recipe, tok, rows, [], tmp_path)
    assert trainer.ref_model is None
    storages = {p.untyped_storage().data_ptr() for p in trainer.model.parameters()}
    assert len(storages) == len(list(trainer.model.parameters()))  # nothing shared twice, nothing duplicated
    base_params = sum(p.numel() for n, p in trainer.model.named_parameters() if "lora_" not in n)
    assert base_params == models.n_params(models.load_causal_lm(str(tiny_model_dir)))
    ids = torch.tensor([tok.apply_chat_template(rows[0]["prompt"], add_generation_prompt=True, return_dict=False)])
    sft_policy = models.run_model(sft_runs / "sft_lora").eval()
    trainer.model.eval()
    with torch.no_grad(), trainer.model.disable_adapter():
        ref_logits = trainer.model(input_ids=ids).logits
    assert torch.allclose(ref_logits, sft_policy(input_ids=ids).logits, atol=1e-5)


def test_precomputed_reference_log_probs(tiny_model_dir, sft_runs):
    out = "dpo_precompute"
    assert _run("dpo", tiny_model_dir, sft_runs, out, f"parent={sft_runs / 'sft_full'}", "lora.enabled=false",
                "train.max_steps=1", "train.learning_rate=1e-9", "dpo.loss_type=[sigmoid]",
                "dpo.precompute_ref_log_probs=true") == 0
    assert abs(_first_log(sft_runs / out)["loss"] - math.log(2)) < 1e-3


def test_dpo_and_rm_train_with_length_grouped_pairs(tiny_model_dir, sft_runs, tmp_path):
    """TRL's preference rows have no input_ids, so transformers cannot group them; rlft's sampler can."""
    parent = sft_runs / "sft_lora"
    assert _run("dpo", tiny_model_dir, tmp_path, "dpo", f"parent={parent}", "train.max_steps=2", "lora.enabled=true",
                "lora.r=4", "train.group_by_length=true") == 0
    assert _run("rm", tiny_model_dir, tmp_path, "rm", "train.max_steps=2", "train.group_by_length=true") == 0
    for run in ("dpo", "rm"):
        manifest = json.loads((tmp_path / run / "manifest.json").read_text())
        assert manifest["recipe"]["train"]["group_by_length"] and math.isfinite(manifest["metrics"]["train_loss"])
    # both trained: DPO's adapter left its init (B = 0), the reward model's weights left the base's
    adapter = load_file(str(tmp_path / "dpo" / "adapter" / "adapter_model.safetensors"))
    assert any(v.abs().sum() > 0 for k, v in adapter.items() if "lora_B" in k)
    scorer, base = (load_file(str(d / "model.safetensors")) for d in (tmp_path / "rm" / "model", tiny_model_dir))
    assert any(not torch.equal(scorer[k], base[k]) for k in base if k in scorer)


def test_length_grouped_validation_batches_pad_less_and_keep_every_per_pair_figure(tiny_model_dir, sft_runs, tmp_path):
    """Under train.group_by_length the validation pairs are evaluated longest first: fewer padded tokens than
    in file order, and with full batches the same figures that are means over pairs."""
    from rlft import config
    from rlft.stages import dpo, group_by_length

    recipe = config.load_recipe("dpo", "recipes/customer_support/dpo.yaml",
                                [f"model={tiny_model_dir}", f"parent={sft_runs / 'sft_lora'}", "lora.r=4",
                                 "train.batch_size=4", "dpo.loss_type=[sigmoid]", "train.group_by_length=false",
                                 "eval.enabled=false"])
    tok = models.load_tokenizer(recipe.model)
    rows = data.load("harbor_pairs_val", "preference", 0, 16)
    trainer, _ = dpo.build_trainer(recipe, tok, rows[:4], rows, tmp_path)

    def padded_and_figures():
        padded = sum(b["input_ids"].numel() for b in trainer.get_eval_dataloader())  # chosen and rejected rows
        return padded, trainer.evaluate()

    padded, in_file_order = padded_and_figures()
    group_by_length(trainer, recipe)
    padded_sorted, longest_first = padded_and_figures()
    assert padded_sorted < padded
    for key in ("eval_loss", "eval_rewards/chosen", "eval_rewards/rejected", "eval_rewards/accuracies",
                "eval_rewards/margins", "eval_logps/chosen", "eval_logps/rejected"):
        assert longest_first[key] == pytest.approx(in_file_order[key], rel=1e-4, abs=1e-5), key


@pytest.mark.parametrize("steps,eval_steps,evaluations", [(2, 2, 2), (2, 0, 2), (3, 2, 3)])
def test_validation_is_not_evaluated_twice_at_the_last_step(tiny_model_dir, sft_runs, tmp_path, monkeypatch,
                                                            steps, eval_steps, evaluations):
    """When training evaluated at its last step, the stage's validation metrics are that evaluation's
    (same weights) and after training only the training pairs are scored; without evaluation in
    training the validation pairs are evaluated after it. evaluations counts every evaluate() call,
    in training and after it: with eval_steps 2 of 3 steps, transformers evaluates at steps 2 and 3."""
    import trl

    calls = []
    evaluate = trl.DPOTrainer.evaluate

    def counted(self, *args, **kwargs):
        calls.append(self.state.global_step)
        return evaluate(self, *args, **kwargs)

    monkeypatch.setattr(trl.DPOTrainer, "evaluate", counted)
    assert _run("dpo", tiny_model_dir, tmp_path, "dpo", f"parent={sft_runs / 'sft_lora'}", "lora.enabled=true",
                "lora.r=4", f"train.max_steps={steps}", f"train.eval_steps={eval_steps}") == 0
    assert len(calls) == evaluations
    log = json.loads((tmp_path / "dpo" / "train_log.json").read_text())
    last = [e for e in log if "eval_loss" in e][-1]
    metrics = json.loads((tmp_path / "dpo" / "manifest.json").read_text())["metrics"]
    assert last["step"] == steps and metrics["val/loss"] == pytest.approx(last["eval_loss"], abs=1e-6)


def test_the_last_evaluation_is_reused_only_for_the_final_weights():
    """rlft.stages.last_evaluation: a budget that stopped training put back earlier weights, so no logged
    evaluation is theirs; one that only warned did not; an evaluation before the last step is reused
    only when load_best_model_at_end put that step's checkpoint back, named by its folder."""
    from types import SimpleNamespace

    from rlft.stages import last_evaluation

    early, last = {"eval_loss": 0.4, "step": 2}, {"eval_loss": 0.5, "eval_rewards/chosen": 0.1, "step": 4}

    def trainer(step, best=None, best_eval=None):
        return SimpleNamespace(args=SimpleNamespace(load_best_model_at_end=best is not None), state=SimpleNamespace(
            global_step=step, best_global_step=best_eval or best,
            best_model_checkpoint=best and f"/runs/x/checkpoint-{best}",
            log_history=[{"loss": 0.7, "step": 2}, early, {"loss": 0.6, "step": 4}, last]))

    stopped, warned = (SimpleNamespace(tripped={"kl_task": 0.3}, action=a) for a in ("stop", "warn"))
    assert last_evaluation(trainer(4)) is last and last_evaluation(trainer(4), warned) is last
    assert last_evaluation(trainer(4), stopped) is None and last_evaluation(trainer(5)) is None
    assert last_evaluation(trainer(4, best=2)) is early and last_evaluation(trainer(4, best=4)) is last
    assert last_evaluation(trainer(4, best=2), stopped) is None
    # step 4 evaluated best but was not saved (save_steps a multiple of eval_steps): checkpoint-2 came back
    assert last_evaluation(trainer(6, best=2, best_eval=4)) is early


def _dpo_trainer(tiny_model_dir, sft_runs, tmp_path, *extra):
    from rlft import config
    from rlft.stages import dpo

    recipe = config.load_recipe("dpo", "recipes/customer_support/dpo.yaml",
                                [f"model={tiny_model_dir}", f"parent={sft_runs / 'sft_lora'}", "lora.r=4",
                                 "train.max_steps=1", "train.batch_size=4", "eval.enabled=false", *extra])
    tok = models.load_tokenizer(recipe.model)
    with scored_positions_on_cpu():  # as rlft.cli opens it around a stage
        trainer, _ = dpo.build_trainer(recipe, tok, data.load("harbor_pairs", "preference", 0, 4), [], tmp_path)
    return trainer


def test_on_cpu_only_the_answers_positions_are_projected_with_the_same_loss_and_gradients(tiny_model_dir, sft_runs,
                                                                                          tmp_path, projected_rows):
    """rlft.stages.scored_positions_on_cpu: in a training step and in an evaluation step TRL's fused LM head
    gets the hidden states of the scored positions only (policy and reference: the answers' tokens each),
    not every position of the padded batch, and the loss, the metrics TRL logs and the gradients are
    those of TRL's own CPU path. The new adapter is moved off its zero start first, so that the policy
    differs from the reference and the DPO term and every LoRA gradient are compared, not only the NLL."""
    import trl.kernels.chunked_logprob as kernels
    import trl.trainer.utils as fused

    trainer = _dpo_trainer(tiny_model_dir, sft_runs, tmp_path)
    torch.manual_seed(0)
    with torch.no_grad():
        for name, p in trainer.model.named_parameters():
            if "lora_B" in name:
                p.normal_(std=0.05)
    batch = next(iter(trainer.get_train_dataloader()))
    trainer.current_gradient_accumulation_steps = 1  # set by the training loop, read by training_step
    scored = int(batch["completion_mask"][:, 1:].sum())

    def train(take_step):
        projected_rows.clear()
        trainer.model.zero_grad()
        loss = take_step(trainer.model, dict(batch), num_items_in_batch=None).item()
        grads = [p.grad.clone() for p in trainer.model.parameters() if p.requires_grad]
        metrics = {k: v[-1] for k, v in trainer._metrics["train"].items() if k != "num_tokens"}  # a running total
        return loss, grads, metrics, list(projected_rows)

    def evaluate(take_step):
        projected_rows.clear()
        return take_step(trainer.model, dict(batch), prediction_loss_only=True)[0].item(), list(projected_rows)

    with scored_positions_on_cpu():
        rlft_loss, rlft_grads, rlft_metrics, rlft_rows = train(trainer.training_step)
    trl_loss, trl_grads, trl_metrics, trl_rows = train(trainer.training_step)
    assert rlft_rows == [scored, scored] and trl_rows[0] > scored  # policy and reference passes
    assert fused._use_triton is kernels._use_triton  # TRL's own rule is back once the switch closes
    assert rlft_metrics["rewards/margins"] != 0  # the policy is not the reference
    assert rlft_loss == pytest.approx(trl_loss, rel=1e-5)
    assert rlft_metrics == pytest.approx(trl_metrics, rel=1e-4, abs=1e-6)
    for mine, theirs in zip(rlft_grads, trl_grads):
        torch.testing.assert_close(mine, theirs, rtol=1e-4, atol=1e-6)
    trainer.model.eval()
    with scored_positions_on_cpu():
        rlft_eval, rlft_rows = evaluate(trainer.prediction_step)
    trl_eval, trl_rows = evaluate(trainer.prediction_step)
    assert rlft_rows == [scored, scored] and trl_rows[0] > scored
    assert rlft_eval == pytest.approx(trl_eval, rel=1e-5)


def test_precomputed_reference_log_probs_project_only_the_answers(tiny_model_dir, sft_runs, tmp_path, projected_rows):
    """With dpo.precompute_ref_log_probs TRL scores the reference while the trainer is built, before any
    step; that pass too projects only the answers' tokens on CPU."""
    trainer = _dpo_trainer(tiny_model_dir, sft_runs, tmp_path, "dpo.precompute_ref_log_probs=true")
    answers = sum(len(r["chosen_ids"]) + len(r["rejected_ids"]) for r in trainer.train_dataset)
    assert sum(projected_rows) == answers and "ref_chosen_logps" in trainer.train_dataset.column_names


def test_rlft_dpo_projects_only_scored_positions_from_building_to_evaluation(tiny_model_dir, sft_runs, tmp_path,
                                                                             projected_rows):
    """`rlft dpo` keeps TRL's head on the scored positions for the whole stage: the precomputed reference
    pass while the trainer is built, the training step and the validation pass."""
    assert _run("dpo", tiny_model_dir, tmp_path, "dpo", f"parent={sft_runs / 'sft_lora'}", "lora.enabled=true",
                "lora.r=4", "train.max_steps=1", "train.eval_steps=1", "dpo.precompute_ref_log_probs=true") == 0
    assert projected_rows.every_position == []
    training = projected_rows.training
    assert training and training[0] > 0 and len(projected_rows) > training[-1] + 1  # reference before, evaluation after
