"""Recipes: every shipped one loads; unknown keys, wrong types and bad values are refused by name."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from rlft import config
from rlft.errors import InputError
from rlft.tracking import flatten

pytestmark = pytest.mark.unit  # pure functions, configs, data: no model is trained

RECIPES = sorted(Path("recipes").rglob("*.yaml"))


def test_recipes_are_found_recursively():
    assert len(RECIPES) >= 3


@pytest.mark.parametrize("path", RECIPES, ids=str)
def test_every_shipped_recipe_loads(path, tmp_path):
    """A stage recipe loads with every value its file sets, and round-trips: what to_dict writes (a run's
    manifest, which `rlft eval` reads back) loads again to an equal recipe."""
    if "accelerate" in path.parts:  # accelerate launch configs, not stage recipes
        launch = yaml.safe_load(path.read_text())
        assert launch["distributed_type"] in ("MULTI_GPU", "FSDP", "DEEPSPEED") and launch["num_processes"] >= 1
        return
    if "sweeps" in path.parts:  # sweep files: every corner of the space is loaded as a recipe
        from rlft import sweep

        assert sweep.load(path).space
        return
    stage = path.stem.split("_")[0]  # rm_minilm.yaml is an rm recipe
    recipe = config.load_recipe(stage, path)
    loaded = flatten(config.to_dict(recipe))
    for key, value in flatten(yaml.safe_load(path.read_text()) or {}).items():
        assert loaded[key] == (float(value) if isinstance(loaded[key], float) else value), key
    again = tmp_path / path.name
    again.write_text(yaml.safe_dump(config.to_dict(recipe)))
    assert config.load_recipe(stage, again) == recipe
    assert config.from_manifest({"stage": stage, "recipe": config.to_dict(recipe)}, "manifest.json") == recipe


# --- each stage takes only the keys it reads -------------------------------------------------------------

@pytest.mark.parametrize("stage,override,needle", [
    ("ppo", "train.max_steps=10", "ppo does not read train.max_steps; its length is ppo.updates"),
    ("ppo", "train.num_epochs=3", "ppo does not read train.num_epochs; its length is ppo.updates"),
    ("ppo", "train.batch_size=8", "ppo does not read train.batch_size; its batch is ppo.rollout_batch_size"),
    ("ppo", "train.grad_accum=2", "ppo does not read train.grad_accum; gradients accumulate"),
    ("ppo", "train.eval_steps=5", "ppo does not read train.eval_steps; it has no validation loss"),
    ("ppo", "train.early_stopping_patience=2", "ppo does not read train.early_stopping_patience"),
    ("ppo", "lora.enabled=false", "ppo does not read lora.enabled; it always trains LoRA adapters"),
    ("ppo", "data.n_val=50", "ppo does not read data.n_val"),
    ("grpo", "lora.enabled=false", "grpo does not read lora.enabled; it always trains a new LoRA adapter"),
    ("grpo", "train.eval_steps=5", "grpo does not read train.eval_steps"),
    ("dpo", "train.early_stopping_patience=2", "dpo does not read train.early_stopping_patience; only sft stops"),
    ("rm", "eval.tasks=harbor_dev", "rm does not read eval.tasks; it measures its scorer itself"),
    ("rm", "eval.enabled=true", "rm does not read eval.enabled"),
    ("base", "lora.r=8", "base does not read lora.r; it trains every weight of a new model"),
    ("base", "data.n_train=10", "base does not read data.n_train; its data is the pretraining mixture"),
    ("base", "budget.max_kl_task=0.1", "base does not read budget.max_kl_task; it trains a new model"),
    ("rm", "budget.every=5", "rm does not read budget.every; it trains a scorer, not a policy"),
    ("base", "task=tests.example_task", "base does not read task; it pretrains rlft-tiny, whose mixture"),
    ("ppo", "train.optim=paged_adamw_8bit", "ppo does not read train.optim; it steps torch's AdamW"),
    ("ppo", "train.bf16=true", "ppo does not read train.bf16; .*set dtype: bfloat16 for bf16"),
    ("ppo", "train.group_by_length=true", "ppo does not read train.group_by_length; it draws its own batches"),
    ("grpo", "train.group_by_length=true", "grpo does not read train.group_by_length; it draws its own batches"),
    ("ppo", "train.liger_kernel=true", "ppo does not read train.liger_kernel; Liger's kernels go through"),
    ("grpo", "train.liger_kernel=true", "grpo does not read train.liger_kernel; Liger's kernels go through"),
])
def test_a_key_the_stage_does_not_read_is_refused_saying_why(stage, override, needle):
    recipe = f"recipes/customer_support/{stage}.yaml"
    with pytest.raises(InputError, match=needle) as e:
        config.load_recipe(stage, recipe, [override])
    assert recipe in str(e.value)


@pytest.mark.parametrize("stage", config.STAGES)
def test_what_a_stage_does_not_read_names_real_keys_and_holds_its_own_values(stage):
    """A typo in NOT_READ would let the key it meant through; and the stage's own recipe (its defaults) loads."""
    for key in config.unread_keys(stage):
        config._value_at(config.STAGES[stage](), key)  # AttributeError on a key that does not exist
    assert config.load_recipe(stage, None) == config.STAGES[stage]()


def test_the_stage_s_own_value_of_a_key_it_does_not_read_is_accepted():
    """It states what the stage does, and it is what to_dict writes into every manifest."""
    assert config.load_recipe("ppo", None, ["lora.enabled=true", "train.max_steps=-1"]).uses_lora
    assert not config.load_recipe("rm", None, ["eval.enabled=false"]).eval.enabled


def test_an_unknown_key_near_one_the_stage_does_not_read_says_both():
    with pytest.raises(InputError, match=r"unknown key 'max_step'. Did you mean 'max_steps'\? This stage does not "
                                         r"read train.max_steps: its length is ppo.updates") as e:
        config.load_recipe("ppo", None, ["train.max_step=3"])
    accepted = str(e.value).split("Accepted keys: ")[1]
    assert "learning_rate" in accepted and "max_steps" not in accepted and "batch_size" not in accepted


# --- the drift budget's own section, and the keys that moved there ---------------------------------------

@pytest.mark.parametrize("old,new", config.MOVED.items())
def test_a_recipe_file_with_a_moved_key_is_refused_naming_file_and_new_key(tmp_path, old, new):
    section, key = old.split(".")
    path = tmp_path / "ppo.yaml"
    path.write_text(yaml.safe_dump({section: {key: 25 if "every" in key or "samples" in key else 0.5}}))
    with pytest.raises(InputError, match=rf"{path}: {section}: {old} moved to {new}: .*section `budget:`"):
        config.load_recipe("ppo", path)
    with pytest.raises(InputError, match=rf"\(with --set\).* {old} moved to {new}"):
        config.load_recipe("ppo", "recipes/customer_support/ppo.yaml", [f"{old}=1"])


def test_an_old_budget_key_stops_the_command_with_exit_2(tmp_path, capsys):
    from rlft import cli

    path = tmp_path / "dpo.yaml"
    path.write_text("eval:\n  tasks: harbor_test\n  max_kl_task: 0.25\n")
    assert cli.main(["dpo", "--recipe", str(path), "--output-dir", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and "eval.max_kl_task moved to budget.max_kl_task" in err
    assert not (tmp_path / "out").exists()


def test_a_manifest_written_before_the_budget_section_still_loads():
    """A run made before the move stored its budget under eval; rlft eval, compare, verdict and resume read
    it back with the keys in budget, and the rest as it was."""
    old = {"stage": "ppo", "recipe": {
        "model": "rlft-tiny", "ppo": {"updates": 7},
        "eval": {"tasks": "harbor_test", "n_tasks": 50, "max_general_ppl_drift": 0.1, "max_kl_task": 0.25,
                 "budget_every": 10, "budget_action": "warn", "budget_samples": 8}}}
    recipe = config.from_manifest(old, "runs/x/ppo/manifest.json")
    assert recipe.budget == config.BudgetCfg(max_general_ppl_drift=0.1, max_kl_task=0.25, every=10, action="warn",
                                             samples=8)
    assert recipe.eval.tasks == "harbor_test" and recipe.eval.n_tasks == 50 and recipe.ppo.updates == 7
    assert old["recipe"]["eval"]["budget_every"] == 10  # the manifest read is not changed


@pytest.mark.parametrize("stage", config.STAGES)
def test_the_fingerprint_hashes_the_recipe_in_its_shape_before_the_move(stage):
    """A finished run stays up to date: the recipe as the fingerprint hashes it is the recipe as runs before
    the move recorded it (budget keys under eval, with their old names; no budget section; no `task` key
    when the task is the built-in one)."""
    recipe = config.load_recipe(stage, None, [] if stage in ("base", "rm") else ["budget.max_kl_task=0.3"])
    before = config.to_dict(recipe)
    assert before.pop("task") == "harbor"
    budget = before.pop("budget")
    before["eval"].update({"max_general_ppl_drift": budget["max_general_ppl_drift"],
                           "max_kl_task": budget["max_kl_task"], "budget_every": budget["every"],
                           "budget_action": budget["action"], "budget_samples": budget["samples"]})
    assert config.fingerprint_dict(recipe) == before
    assert config.from_manifest({"stage": stage, "recipe": before}, "manifest.json") == recipe


# --- each key documented where it is declared, and shown by --help-config -------------------------------

@pytest.mark.parametrize("stage", config.STAGES)
def test_every_key_of_every_section_has_a_docstring(stage):
    own = config.STAGES[stage]()
    for f in dataclasses.fields(own):
        value = getattr(own, f.name)
        if not dataclasses.is_dataclass(value):
            assert config.field_doc(type(own), f.name), f.name
            continue
        assert config.field_docs().get(type(value).__name__), f"section {f.name} has no docstring"
        for g in dataclasses.fields(value):
            assert config.field_doc(type(value), g.name), f"{f.name}.{g.name}"


def test_help_config_lists_what_the_stage_reads_and_writes_nothing(tmp_path, monkeypatch, capsys):
    from rlft import cli

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RLFT_RUNS", str(tmp_path / "runs"))
    with pytest.raises(SystemExit) as e:
        cli.main(["ppo", "--help-config"])
    out = capsys.readouterr().out
    assert e.value.code == 0 and list(tmp_path.iterdir()) == []
    assert "  ppo.updates: int = 40\n      PPO updates; each samples rollout_batch_size prompts" in out
    assert "  budget.max_kl_task: float | None = null\n" in out and "train.learning_rate" in out
    assert "  train.max_steps:" not in out and "  lora.enabled:" not in out  # ppo does not read them (NOT_READ)
    assert max(len(line) for line in out.splitlines()) <= 100


def test_help_config_leaves_out_a_section_the_stage_does_not_read():
    text = config.help_text("rm")
    assert "rm.backbone" in text and "\nbudget:" not in text and "eval." not in text


def test_four_bit_implies_lora():
    assert not config.load_recipe("sft", None).uses_lora
    assert config.load_recipe("sft", None, ["quant.load_in_4bit=true"]).uses_lora
    assert config.load_recipe("sft", None, ["lora.enabled=true"]).uses_lora


def test_defaults_live_in_the_dataclasses():
    recipe = config.load_recipe("sft", None)
    assert recipe.model == "rlft-tiny" and recipe.sft.assistant_only_loss


@pytest.mark.parametrize("override,needle", [
    ("train.learnin_rate=0.1", "unknown key 'learnin_rate'. Did you mean 'learning_rate'?"),
    ("data.train=harbor_test", "data.train is 'harbor_test', the test split"),
    ("train.batch_size=many", "train.batch_size: expected int"),
    ("train.batch_size=0", "train.batch_size must be positive"),
    ("lora.enabled=3", "lora.enabled: expected bool"),
    ("sft.packing=[1]", "sft.packing: expected bool"),
    ("dtype=float8", "dtype must be"),
    ("eval.reward=politeness", "unknown reward 'politeness'; rewards: harbor_facts"),
    ("nonsense", "expected key=value"),
])
def test_bad_overrides_name_the_key(override, needle):
    with pytest.raises(InputError, match=needle.replace("[", r"\[")):
        config.load_recipe("sft", "recipes/customer_support/sft.yaml", [override])


def test_unknown_key_in_file_names_file_and_accepted_keys(tmp_path):
    bad = tmp_path / "sft.yaml"
    bad.write_text("model: rlft-tiny\ntrian:\n  learning_rate: 0.1\n")
    with pytest.raises(InputError) as e:
        config.load_recipe("sft", bad)
    assert str(bad) in str(e.value) and "trian" in str(e.value) and "Accepted keys" in str(e.value)
    assert "Did you mean 'train'?" in str(e.value)


def test_yaml_is_parsed_safely(tmp_path):
    evil = tmp_path / "sft.yaml"
    evil.write_text("model: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(InputError, match="not valid YAML"):
        config.load_recipe("sft", evil)


def test_float_written_without_a_dot_is_a_float(tmp_path):
    path = tmp_path / "sft.yaml"
    path.write_text("train:\n  learning_rate: 1e-4\n")
    assert config.load_recipe("sft", path).train.learning_rate == 1e-4


def test_model_names_resolve_to_the_shipped_model_a_folder_or_a_hub_id(tmp_path):
    from rlft import models

    assert models.resolve("rlft-tiny").endswith("rlft-tiny")
    assert models.resolve("Qwen/Qwen2.5-0.5B-Instruct") == "Qwen/Qwen2.5-0.5B-Instruct"
    assert models.resolve("meta-llama/Llama-3.1-8B-Instruct") == "meta-llama/Llama-3.1-8B-Instruct"
    with pytest.raises(InputError, match="neither"):
        models.resolve("./no/such/folder")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no config.json"):
        models.resolve(str(tmp_path / "empty"))


def test_weighted_reward_mapping_in_a_recipe(tmp_path):
    path = tmp_path / "sft.yaml"
    path.write_text("eval:\n  reward: {harbor_facts: 0.5, house_tone: 1}\n")
    assert config.load_recipe("sft", path).eval.reward == {"harbor_facts": 0.5, "house_tone": 1.0}
    path.write_text("eval:\n  reward: {harbor_facts: lots}\n")
    with pytest.raises(InputError, match="eval.reward.harbor_facts: expected float"):
        config.load_recipe("sft", path)


@pytest.mark.parametrize("stage,override,needle", [
    ("ppo", "ppo.reward=politeness", "ppo.reward: unknown reward 'politeness'"),
    ("ppo", "ppo.kl_estimator=k9", "ppo.kl_estimator must be k1 or k3"),
    ("ppo", "ppo.mini_batches=5", "multiple of ppo.mini_batches"),
    ("ppo", "ppo.temperature=0", "ppo.temperature must be positive"),
    ("ppo", "ppo.lam=1.5", "ppo.gamma and ppo.lam must lie in"),
    ("ppo", "ppo.updates=0", "ppo.updates must be positive"),
    ("ppo", "ppo.value_learning_rate=-0.001", "ppo.value_learning_rate must be 0 or more, or null"),
    ("grpo", "grpo.algorithm=ppo", "grpo.algorithm must be grpo or rloo"),
    ("grpo", "grpo.num_generations=1", "at least 2"),
    ("grpo", "grpo.reward={harbor_facts: 1, tone: 2}", "grpo.reward: unknown reward 'tone'"),
])
def test_bad_rl_keys_are_refused_by_name(stage, override, needle):
    with pytest.raises(InputError, match=needle.replace("[", r"\[")):
        config.load_recipe(stage, f"recipes/customer_support/{stage}.yaml", [override])


def _liger_here(monkeypatch, gpu: bool, package: bool) -> None:
    """Pretend this machine has (or lacks) a CUDA GPU and the liger-kernel package."""
    import importlib.util

    import torch

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(torch.cuda, "is_available", lambda: gpu)
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: (find_spec("yaml") if package else None) if name == "liger_kernel"
                        else find_spec(name, *a))


def test_liger_kernel_without_a_gpu_exits_2_naming_file_and_key(monkeypatch, capsys):
    from rlft import cli

    _liger_here(monkeypatch, gpu=False, package=True)
    assert cli.main(["sft", "--recipe", "recipes/qwen2.5-0.5b/sft.yaml", "--set", "train.liger_kernel=true"]) == 2
    err = capsys.readouterr().err
    assert "recipes/qwen2.5-0.5b/sft.yaml" in err and "train.liger_kernel is true, but no CUDA GPU" in err


def test_liger_kernel_without_the_package_is_refused_naming_file_and_key(monkeypatch):
    _liger_here(monkeypatch, gpu=True, package=False)
    with pytest.raises(InputError, match=r"recipes/qwen2.5-0.5b/dpo.yaml.*train.liger_kernel.*liger-kernel package "
                                         r"is not installed"):
        config.load_recipe("dpo", "recipes/qwen2.5-0.5b/dpo.yaml", ["train.liger_kernel=true"])


@pytest.mark.parametrize("stage", ["sft", "dpo", "rm"])
def test_liger_kernel_reaches_trls_config_where_it_can_run(monkeypatch, tmp_path, stage):
    from rlft.stages import trainer_kwargs

    assert trainer_kwargs(config.load_recipe(stage, None), tmp_path, False)["use_liger_kernel"] is False
    _liger_here(monkeypatch, gpu=True, package=True)
    recipe = config.load_recipe(stage, None, ["train.liger_kernel=true"])
    assert trainer_kwargs(recipe, tmp_path, False)["use_liger_kernel"] is True
