"""The SFT stage through its real entry point, with a tiny in-process model."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from rlft import cli, data, models
from rlft.tasks.harbor import judge
from tests.conftest import cli_args

FAST = ["data.n_train=48", "data.n_val=16", "train.max_steps=4", "train.batch_size=8", "train.save_steps=2",
        "train.eval_steps=2", "train.logging_steps=1", "eval.n_tasks=11", "eval.max_new_tokens=12",
        "eval.n_general=4"]


def _sft(model_dir, runs_dir, *extra: str) -> int:
    return cli.main(cli_args("sft", [f"model={model_dir}", *FAST, *extra], runs_dir / "sft"))


def test_data_n_train_takes_the_first_rows_of_a_user_s_file(tiny_model_dir, runs_dir, tmp_path):
    """60 chats on file, data.n_train=48: the run trains on the first 48, and its manifest says so."""
    rows = data.builtin("harbor_sft", 0, 60)
    data.write_jsonl(rows, tmp_path / "mine.jsonl")
    assert _sft(tiny_model_dir, runs_dir, f"data.train={tmp_path / 'mine.jsonl'}", "train.max_steps=1",
                "eval.enabled=false") == 0
    manifest = json.loads((runs_dir / "sft" / "manifest.json").read_text())
    val_rows = data.load("harbor_sft_val", "conversational", 0, 16)
    assert manifest["data"]["n_train"] == 48 and manifest["data"]["sha256"] == data.sha256_rows(rows[:48] + val_rows)


def test_sft_full_writes_a_complete_evaluated_run(tiny_model_dir, runs_dir):
    sets = ("lora.enabled=false", "eval.n_samples=11")  # every task's pair of answers kept in eval.json
    assert _sft(tiny_model_dir, runs_dir, *sets) == 0
    run = runs_dir / "sft"
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["stage"] == "sft"
    assert manifest["metrics"]["steps"] == 4
    assert (run / "model" / "model.safetensors").is_file()
    ev = json.loads((run / "eval.json").read_text())
    for key in ("task_accuracy", "tone_score", "kl_task", "general_ppl_drift", "win_rate_vs_parent"):
        assert key in ev
    assert ev["kl_task_base"] > 0 and not ev["policy_is_base"]  # trained weights differ from the base
    # the win rate and its counts, recomputed from the answers eval.json keeps: the held-out judge on
    # each task's pair (ours, the parent's), matched to its task by the customer's message. (On this
    # tiny model every pair ties; the check is that the harness pairs, judges and counts them right.)
    rows = data.load(ev["tasks_file"], "tasks", manifest["seed"], ev["n_tasks"],
                     manifest["recipe"]["data"]["system_prompt"])
    assert [s["prompt"] for s in ev["samples"]] == [t["messages"][-1]["content"] for t in rows]
    assert [s["response"] for s in ev["samples"]] == ev["answers"]["texts"]
    judged = [judge.compare(t, s["response"], s["parent_response"]) for t, s in zip(rows, ev["samples"])]
    wtl = ev["win_tie_loss_vs_parent"]
    assert (wtl["wins"], wtl["ties"], wtl["losses"]) == (judged.count(1.0), judged.count(0.5), judged.count(0.0))
    assert ev["win_rate_vs_parent"] == pytest.approx(sum(judged) / len(judged))
    # the shipped recipe reports the test split, judged by the held-out judge, the reward beside it
    assert ev["split"] == "test" and ev["tasks_file"] == "harbor_test" and ev["harness_revision"] == 2
    assert ev["win_rate_judge"] == "harbor.judge" and ev["judge"]["win_rate_vs_parent"] == ev["win_rate_vs_parent"]
    assert ev["proxy"]["reward"] == {"harbor_facts": 1.0, "house_tone": 1.0}
    assert ev["proxy"]["hacking_gap"] == pytest.approx(ev["proxy"]["win_rate_vs_parent"] - ev["win_rate_vs_parent"])
    lo, hi = ev["judge"]["task_accuracy_ci"]
    assert lo <= ev["judge"]["task_accuracy"] <= hi
    # an evaluation killed after the run finished: the same command again evaluates, nothing retrains
    (run / "eval.json").unlink()
    assert _sft(tiny_model_dir, runs_dir, *sets) == 0
    assert json.loads((run / "manifest.json").read_text())["finished_at"] == manifest["finished_at"]
    assert json.loads((run / "eval.json").read_text())["task_accuracy"] == ev["task_accuracy"]


@pytest.mark.parametrize("quant", [False, True])
def test_sft_lora_and_qlora_train_only_the_adapter(tiny_model_dir, runs_dir, quant):
    """Only the adapter could train (the trainable count is the adapter's size) and it moved; the
    run's policy is the base with the adapter merged: every weight the adapter does not touch is the
    base's, bit for bit."""
    assert _sft(tiny_model_dir, runs_dir, "lora.enabled=true", f"quant.load_in_4bit={str(quant).lower()}",
                "lora.r=4", "eval.enabled=false") == 0
    manifest = json.loads((runs_dir / "sft" / "manifest.json").read_text())
    assert manifest["artifacts"] == {"adapter": "adapter/"}
    adapter = load_file(str(runs_dir / "sft" / "adapter" / "adapter_model.safetensors"))
    lora_b = [v for k, v in adapter.items() if "lora_B" in k]
    assert lora_b and any(v.abs().sum() > 0 for v in lora_b)  # B starts at zero: training moved the adapter
    assert not any("lora" not in k for k in adapter)  # and nothing but the adapter was saved
    assert manifest["metrics"]["trainable_parameters"] == sum(v.numel() for v in adapter.values())
    policy = models.run_model(runs_dir / "sft").state_dict()
    base = models.load_causal_lm(str(tiny_model_dir)).state_dict()
    adapted = {k.removeprefix("base_model.model.").split(".lora_")[0] + ".weight" for k in adapter}
    frozen = [name for name in base if name not in adapted]
    assert frozen and all(torch.equal(policy[name], base[name]) for name in frozen)
    assert any(not torch.equal(policy[name], base[name]) for name in adapted)


def test_selective_freezing_leaves_frozen_weights_unchanged(tiny_model_dir, runs_dir):
    assert _sft(tiny_model_dir, runs_dir, "lora.enabled=false", "sft.freeze_embeddings=true", "sft.freeze_layers=1",
                "eval.enabled=false", "train.learning_rate=0.01") == 0
    after = load_file(str(runs_dir / "sft" / "model" / "model.safetensors"))
    before = load_file(str(tiny_model_dir / "model.safetensors"))
    for name, value in before.items():
        frozen = "embed_tokens" in name or ".layers.0." in name
        assert torch.equal(after[name], value) == frozen, name


def test_packing_trains(tiny_model_dir, runs_dir, projected_rows):
    """Packed rows train: the adapter left its init (B = 0) and the loss fell. Packed rows take TRL's own
    loss, whose head projects the trained positions only, as on GPUs."""
    assert _sft(tiny_model_dir, runs_dir, "sft.packing=true", "eval.enabled=false") == 0
    assert projected_rows and projected_rows.every_position == []
    adapter = load_file(str(runs_dir / "sft" / "adapter" / "adapter_model.safetensors"))
    assert any(v.abs().sum() > 0 for k, v in adapter.items() if "lora_B" in k)
    losses = [e["loss"] for e in json.loads((runs_dir / "sft" / "train_log.json").read_text()) if "loss" in e]
    assert len(losses) == 4 and losses[-1] < losses[0]


def test_merged_adapter_loads_in_plain_transformers(tiny_model_dir, runs_dir):
    from transformers import AutoModelForCausalLM

    assert _sft(tiny_model_dir, runs_dir, "lora.enabled=true", "lora.r=4", "sft.merge_adapter=true",
                "eval.enabled=false", "train.learning_rate=0.01") == 0
    merged = AutoModelForCausalLM.from_pretrained(runs_dir / "sft" / "merged").eval()
    via_adapter = models.run_model(runs_dir / "sft").eval()
    ids = torch.tensor([[3, 10, 20, 30]])
    with torch.no_grad():
        assert torch.allclose(merged(input_ids=ids).logits, via_adapter(input_ids=ids).logits, atol=1e-5)


def test_packed_sequences_do_not_see_each_other(tiny_model_dir):
    """Packing (TRL's padding-free best fit) puts several chats in one row, told apart only by
    position_ids restarting at 0. Without flash attention, transformers must still build a mask per
    chat: the second chat's logits in the packed row equal its logits alone."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    a, b = torch.randint(5, 500, (1, 9)), torch.randint(5, 500, (1, 7))
    packed = torch.cat([a, b], 1)
    positions = torch.cat([torch.arange(9), torch.arange(7)]).unsqueeze(0)
    with torch.no_grad():
        # use_cache=False as TRL's SFTTrainer passes it: with a cache transformers skips the per-chat mask
        together = model(input_ids=packed, position_ids=positions, use_cache=False).logits[:, 9:]
        alone = model(input_ids=b, use_cache=False).logits
        leaked = model(input_ids=packed, use_cache=False).logits[:, 9:]  # one long sequence: b attends to a
    assert torch.allclose(together, alone, atol=1e-5)
    assert not torch.allclose(leaked, alone, atol=1e-3)


def test_max_steps_zero_is_the_starting_model_as_a_run(tiny_model_dir, runs_dir):
    """A baseline (train.max_steps 0, LoRA): nothing trains, the adapter is zeros, and the run's policy
    gives the base model's logits exactly, so the harness evaluates the untrained model as a run."""
    assert _sft(tiny_model_dir, runs_dir, "train.max_steps=0", "lora.enabled=true", "eval.enabled=false") == 0
    run = runs_dir / "sft"
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["metrics"]["steps"] == 0 and manifest["metrics"]["train_loss"] is None
    ids = torch.tensor([[1, 5, 9, 14, 3]])
    with torch.no_grad():
        ours = models.run_model(run)(input_ids=ids).logits
        base = models.load_causal_lm(str(tiny_model_dir))(input_ids=ids).logits
    assert torch.equal(ours, base)


def test_an_untrained_run_is_evaluated_as_the_base_it_is_without_the_base_s_side(tiny_model_dir, runs_dir, tmp_path,
                                                                                  monkeypatch):
    """The baseline holds the base's weights, so the harness takes its greedy answers as the base's and each KL
    and drift of it as 0 rather than computing them: the same figures as the whole computation (whose KLs
    and drift are 0 up to rounding), with the base's answers and the KL samples not generated."""
    from rlft.eval import harness

    assert _sft(tiny_model_dir, runs_dir, "train.max_steps=0", "lora.enabled=true", "eval.enabled=false") == 0
    generated = []
    real = harness.generate
    monkeypatch.setattr(harness, "generate", lambda model, tok, chats, *a, **k: generated.append(len(chats))
                        or real(model, tok, chats, *a, **k))
    short = harness.evaluate_run(runs_dir / "sft", out=str(tmp_path / "short.json"))
    n_short, generated[:] = sum(generated), []
    monkeypatch.setattr(models, "same_weights", lambda a, b: False)
    full = harness.evaluate_run(runs_dir / "sft", out=str(tmp_path / "full.json"))
    assert short["policy_is_base"] and not full["policy_is_base"]
    assert short["answers"] == full["answers"] and short["samples"] == full["samples"]
    assert short["win_tie_loss_vs_parent"] == full["win_tie_loss_vs_parent"]
    assert short["win_tie_loss_vs_parent"]["tie_share"] == 1.0
    assert short["retention"] == full["retention"] and short["task_accuracy"] == full["task_accuracy"]
    assert short["parent"] == full["parent"] and short["judge"] == full["judge"]
    assert short["general_nll_base"] == pytest.approx(full["general_nll_base"], rel=1e-5)
    for key in ("kl_task", "kl_task_base", "kl_general", "general_ppl_drift"):
        assert short[key] == 0.0 and abs(full[key]) < 1e-4, key
    sampled = full["decoding"]["kl_and_diversity"]
    assert sum(generated) - n_short == full["n_tasks"] + sampled["task_prompts"] + sampled["general_prompts"] > 0


@pytest.mark.unit
def test_length_grouping_pads_less_than_random_order_and_keeps_every_row():
    """The sampler rlft installs for train.group_by_length, on the shipped SFT data's tokenized lengths: each
    epoch is a permutation of the rows, and batches of 16 carry far less padding than in random order."""
    from datasets import Dataset

    from rlft import config
    from rlft.stages import group_by_length

    recipe = config.load_recipe("sft", "recipes/customer_support/sft.yaml", ["train.group_by_length=true"])
    tok = models.load_tokenizer("rlft-tiny")
    rows = data.load("harbor_sft", "conversational", 0, 480)
    ids = [tok(tok.apply_chat_template(r["messages"], tokenize=False))["input_ids"] for r in rows]
    dataset = Dataset.from_dict({"input_ids": ids})

    class FakeTrainer:
        class state:
            epoch = 0

        class args:
            world_size = 1

        def _get_eval_sampler(self, dataset):
            return "file order"

    trainer = FakeTrainer()
    group_by_length(trainer, recipe)
    order = list(trainer._get_train_sampler(dataset))
    assert sorted(order) == list(range(len(ids))) and order == list(trainer._get_train_sampler(dataset))

    def padding(order_):
        batches = [order_[i:i + 16] for i in range(0, len(order_), 16)]
        return sum(max(len(ids[j]) for j in b) * len(b) - sum(len(ids[j]) for j in b) for b in batches)

    shuffled = torch.randperm(len(ids), generator=torch.Generator().manual_seed(0)).tolist()
    assert padding(order) < 0.5 * padding(shuffled)
    evaluated = list(trainer._get_eval_sampler(dataset))  # longest first: every row, less padding still
    assert sorted(evaluated) == list(range(len(ids))) and padding(evaluated) <= padding(order)
    assert [len(ids[i]) for i in evaluated] == sorted(map(len, ids), reverse=True)
    trainer.args.world_size = 2  # several processes: each takes its share in file order, as transformers does
    assert trainer._get_eval_sampler(dataset) == "file order"


def test_sft_trains_with_length_grouped_batches(tiny_model_dir, runs_dir):
    assert _sft(tiny_model_dir, runs_dir, "train.group_by_length=true", "eval.enabled=false") == 0
    manifest = json.loads((runs_dir / "sft" / "manifest.json").read_text())
    assert manifest["metrics"]["steps"] == 4 and manifest["recipe"]["train"]["group_by_length"]


@pytest.mark.parametrize("sets,evaluations", [
    (["train.early_stopping_patience=0"], 3),
    (["train.early_stopping_patience=0", "train.eval_steps=0"], 2),
    ([], 3),
])
def test_validation_is_not_evaluated_again_for_weights_training_evaluated(tiny_model_dir, runs_dir, monkeypatch,
                                                                          sets, evaluations):
    """4 steps, evaluated at steps 2 and 4 (or never, eval_steps 0). The stage's eval_loss is the one
    logged for the final weights (step 4's, or with early stopping the best checkpoint's, which
    load_best_model_at_end put back); after training only the training rows are scored, unless training
    never evaluated. evaluations counts every evaluate() call: it was one more before, in the first and
    last cases."""
    from rlft.stages import sft

    calls = []
    evaluate = sft.ReplyLossSFTTrainer.evaluate

    def counted(self, *args, **kwargs):
        calls.append(self.state.global_step)
        return evaluate(self, *args, **kwargs)

    monkeypatch.setattr(sft.ReplyLossSFTTrainer, "evaluate", counted)
    assert _sft(tiny_model_dir, runs_dir, "eval.enabled=false", *sets) == 0
    assert len(calls) == evaluations
    log = json.loads((runs_dir / "sft" / "train_log.json").read_text())
    logged = [e for e in log if "eval_loss" in e]
    metrics = json.loads((runs_dir / "sft" / "manifest.json").read_text())["metrics"]
    assert "eval_loss" in metrics
    if logged:
        final = min(logged, key=lambda e: e["eval_loss"]) if not sets else logged[-1]
        assert metrics["eval_loss"] == pytest.approx(final["eval_loss"], abs=1e-6)
