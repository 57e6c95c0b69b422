"""The benchmarks' own rules: verdicts read the whole range of a ratio, and both sides of the PPO
comparison run the same optimiser."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.unit  # pure functions, configs: no model is trained

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

import noise  # noqa: E402
import padding  # noqa: E402
import ppo_vs_trl112 as ppo_bench  # noqa: E402


def test_a_verdict_reads_the_whole_range_of_the_ratio():
    assert noise.verdict(noise.spread([0.70, 0.75, 0.79, 0.60, 0.72]), "<= 0.8") == "met"
    assert noise.verdict(noise.spread([0.70, 0.75, 0.81, 0.60, 0.72]), "<= 0.8") == "within noise"
    assert noise.verdict(noise.spread([0.81, 0.95, 0.90, 1.2, 0.85]), "<= 0.8") == "missed"
    assert noise.verdict(noise.spread([1.29, 1.31]), ">= 1.3") == "within noise"
    r = noise.ratios([2.0, 3.0, 4.0], [4.0, 3.0, 2.0])
    assert r["values"] == [0.5, 1.0, 2.0] and r["median"] == 1.0 and (r["min"], r["max"]) == (0.5, 2.0)
    with pytest.raises(ValueError, match="pairs rounds"):
        noise.ratios([1.0, 2.0], [1.0])


def test_ppo_bench_runs_the_same_optimiser_on_both_sides(tmp_path):
    """rlft's optimizer (built by its own PPO code from the bench's recipe) against the one transformers'
    Trainer builds from the TrainingArguments the bench hands TRL 1.12's PPOConfig."""
    from peft import get_peft_model
    from transformers import Trainer, TrainingArguments

    from rlft import actor_critic

    size = ppo_bench.SIZES["toy"]
    recipe = ppo_bench.rlft_recipe(size)
    base, _ = ppo_bench.policy(size)
    model = get_peft_model(base, ppo_bench.lora("CAUSAL_LM", size), adapter_name=actor_critic.POLICY)
    model.add_adapter(actor_critic.VALUE, ppo_bench.lora("CAUSAL_LM", size))
    ours = actor_critic.make_optimizer(model, torch.nn.Linear(size["hidden"], 1), recipe)

    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to=[], **ppo_bench.trl_optimizer_args())
    cls, kwargs = Trainer.get_optimizer_cls_and_kwargs(args)
    assert cls is type(ours) is torch.optim.AdamW
    for group in ours.param_groups:
        assert group["lr"] == kwargs["lr"] == args.learning_rate
        assert tuple(group["betas"]) == tuple(kwargs["betas"])
        assert group["eps"] == kwargs["eps"]
        assert group["weight_decay"] == args.weight_decay
    assert recipe.train.lr_scheduler == args.lr_scheduler_type.value and recipe.train.warmup_ratio == 0
    assert args.warmup_steps == 0
    # TRL 1.12's PPO loop steps without clipping, so rlft's side clips at infinity (a norm is still logged)
    assert ppo_bench.OPTIMIZER["max_grad_norm"] is None and recipe.train.max_grad_norm == float("inf")
    # every PPO setting and shape TRL 1.12's PPOConfig is given, against what rlft's recipe holds, per size
    for s in ppo_bench.SIZES.values():
        ours, theirs = ppo_bench.rlft_recipe(s).ppo, ppo_bench.trl_ppo_args(s)
        for key in ppo_bench.PPO:
            assert getattr(ours, key) == theirs[key], key
        assert (ours.rollout_batch_size, ours.mini_batches, ours.ppo_epochs, ours.response_length, ours.updates) == (
            theirs["per_device_train_batch_size"], theirs["num_mini_batches"], theirs["num_ppo_epochs"],
            theirs["response_length"], theirs["total_episodes"] // theirs["per_device_train_batch_size"])
        assert ours.missing_eos_penalty is theirs["missing_eos_penalty"] is None
    # rlft's critic never trains in the toy without a critic (its values stay at the head's 0), and does in the toy
    assert ppo_bench.rlft_recipe(ppo_bench.SIZES["toy-no-critic"]).ppo.value_learning_rate == 0.0
    assert ppo_bench.rlft_recipe(ppo_bench.SIZES["toy"]).ppo.value_learning_rate is None


def _resident_mib() -> tuple[float, float]:
    """This process's resident memory in MiB: all of it, and the part that maps files (shared libraries)."""
    status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
    return tuple(int(status[key].split()[0]) / 1024 for key in ("VmRSS", "RssFile"))


def _hold(mib: int) -> tuple[float, float]:
    """In the child: its resident memory at the start, then `mib` MiB written (so resident)."""
    start = _resident_mib()
    block = bytearray(b"\x01") * (mib * 2**20)
    assert block[-1] == 1
    return start


def test_a_forked_run_starts_where_its_parent_stands():
    """bench/forkserver.py: a child starts with the parent's resident pages, the anonymous ones (copied
    by fork) and the shared libraries' (mapped in before the run), so its floor is the parent's after the
    same imports and its peak is the floor plus what the run holds. Without mapping the libraries'
    pages in (fork does not copy those page tables), the file-backed part would start near zero and be
    counted as the run's when touched."""
    import forkserver

    parent, parent_files = _resident_mib()
    (floor, files), peak = forkserver.run(_hold, 200)
    assert abs(floor - parent) < 0.03 * parent and files > 0.9 * parent_files, (floor, parent, files, parent_files)
    assert 195 < peak - floor < 260, (peak, floor)
    with pytest.raises(RuntimeError, match="ZeroDivisionError"):  # the child's failure reaches the caller
        forkserver.run(divmod, 1, 0)
    with pytest.raises(RuntimeError, match="the run's own words"):  # a quiet child's output, with its failure
        forkserver.run(_fail_with_words, quiet=True)


def _fail_with_words() -> None:
    print("the run's own words")
    raise ValueError("failed")


def test_the_padding_count_is_what_trl_s_collator_pads_and_grouping_pads_less():
    """bench/padding.py on the default DPO and SFT recipes: a batch of pairs counts the tokens TRL's own
    DPO collator lays out (real ones and padded ones), both orders see the same real tokens, and the
    grouped batches of the sampler rlft installs pad less than a shuffle."""
    from trl.trainer.dpo_trainer import DataCollatorForPreference

    from rlft import config, data, models

    recipe = config.load_recipe("dpo", "recipes/customer_support/dpo.yaml", [])
    tok = models.load_tokenizer(recipe.model)
    sequences, _ = padding.rows_and_lengths(recipe, tok, "dpo")
    rows = data.load(recipe.data.train, "preference", recipe.seed, 4, recipe.data.system_prompt, task=recipe.task)
    examples = []
    for r in rows:
        prompt = tok.apply_chat_template(r["prompt"], add_generation_prompt=True, tokenize=True, return_dict=False)
        chosen, rejected = (tok.apply_chat_template(r["prompt"] + r[k], tokenize=True, return_dict=False)
                            for k in ("chosen", "rejected"))
        examples.append({"prompt_ids": prompt, "chosen_ids": chosen[len(prompt):], "rejected_ids": rejected[len(prompt):]})
    batch = DataCollatorForPreference(pad_token_id=tok.pad_token_id, max_length=recipe.data.max_length)(examples)
    counted = padding.share(sequences[:4], [0, 1, 2, 3], 4)
    assert (counted["padded_tokens"], counted["real_tokens"]) == (batch["input_ids"].numel(),
                                                                   int(batch["attention_mask"].sum()))
    for stage in ("dpo", "sft"):
        counted = padding.count(f"recipes/customer_support/{stage}.yaml", stage)
        plain, grouped = counted["plain"], counted["grouped"]
        assert plain["real_tokens"] == grouped["real_tokens"]
        assert plain["real_share"] < grouped["real_share"] <= 1.0


def test_a_ppo_bench_server_says_it_is_ready_before_it_answers_any_run():
    """--drive times no run until both servers are past their imports: each says READY first, and nothing
    its imports print reaches the replies."""
    import subprocess

    script = Path(ppo_bench.__file__)
    out = subprocess.run([sys.executable, str(script), "--serve", "rlft"], input="", capture_output=True, text=True,
                         timeout=300, cwd=script.parents[1])
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.splitlines() == [ppo_bench.READY]
