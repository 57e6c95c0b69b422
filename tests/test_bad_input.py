"""Bad input through the real CLI: exit code 2, one message naming file and line or key, nothing written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rlft import cli
from tests.conftest import tree

GOOD_CHAT = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}
GOOD_PAIR = {"prompt": "hi", "chosen": "hello, how can I help?", "rejected": "what"}


def _lines(*rows) -> str:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows)


SFT_FILES = [
    ("invalid json", _lines(GOOD_CHAT, "{not json"), "line 2"),
    ("not an object", _lines(GOOD_CHAT, "[1, 2]"), "line 2"),
    ("missing messages", _lines(GOOD_CHAT, {"text": "x"}), "line 2: missing field 'messages'"),
    ("unknown role", _lines({"messages": [{"role": "robot", "content": "x"}]}), "unknown role 'robot'"),
    ("empty content", _lines({"messages": [{"role": "user", "content": " "}]}), "non-empty string"),
    ("wrong type", _lines({"messages": "hello"}), "line 1, field 'messages'"),
    ("no assistant", _lines({"messages": [{"role": "user", "content": "x"}]}), "no assistant message"),
    ("empty file", "", "is empty"),
    ("duplicate id", _lines({"id": 7, **GOOD_CHAT}, {"id": 7, **GOOD_CHAT}), "line 2, field 'id': duplicate id 7"),
    ("content not a string", _lines({"messages": [{"role": "user", "content": 5}]}), "non-empty string"),
    ("message without role", _lines({"messages": [{"content": "x"}]}), "'role' and 'content'"),
    ("prompt without completion", _lines({"prompt": "hi"}), "missing field 'messages'"),
]


def _refused(stage, model_dir, path, runs_dir, capsys) -> str:
    """Run a stage on a bad data file: exit code 2, the file named, runs/ unchanged; return the message."""
    before = tree(runs_dir)
    code = cli.main([stage, "--recipe", f"recipes/customer_support/{stage}.yaml", "--set", f"model={model_dir}",
                     "--set", f"data.train={path}"])
    err = capsys.readouterr().err
    assert code == 2 and str(path) in err, err
    assert tree(runs_dir) == before
    return err


@pytest.mark.parametrize("name,content,needle", SFT_FILES, ids=[c[0] for c in SFT_FILES])
def test_bad_sft_data_file(tmp_path, runs_dir, capsys, tiny_model_dir, name, content, needle):
    path = tmp_path / "train.jsonl"
    path.write_text(content)
    assert needle in _refused("sft", tiny_model_dir, path, runs_dir, capsys)


def test_non_utf8_and_huge_lines(tmp_path, runs_dir, capsys, tiny_model_dir):
    ten_mb = b'{"messages": [{"role": "user", "content": "' + b"a" * 10_000_000 + b'"}]}\n'
    for content, needle in ((b"\xff\xfe{}\n", "not valid UTF-8"), (ten_mb, "over the limit")):
        path = tmp_path / "train.jsonl"
        path.write_bytes(content)
        err = _refused("sft", tiny_model_dir, path, runs_dir, capsys)
        assert "line 1" in err and needle in err
    assert tree(runs_dir) == {}


PAIR_FILES = [
    ("missing chosen", _lines({"prompt": "hi", "rejected": "no"}), "missing field 'chosen'"),
    ("empty rejected", _lines({**GOOD_PAIR, "rejected": ""}), "field 'rejected': empty string"),
    ("identical", _lines({**GOOD_PAIR, "rejected": GOOD_PAIR["chosen"]}), "identical"),
    ("chosen a number", _lines({**GOOD_PAIR, "chosen": 3}), "field 'chosen'"),
    ("margin a word", _lines({**GOOD_PAIR, "margin": "big"}), "field 'margin': expected a number"),
]


@pytest.mark.parametrize("name,content,needle", PAIR_FILES, ids=[c[0] for c in PAIR_FILES])
def test_bad_preference_file(tmp_path, runs_dir, capsys, tiny_model_dir, name, content, needle):
    sft = runs_dir / "customer_support" / "sft"
    sft.mkdir(parents=True)
    (sft / "manifest.json").write_text(json.dumps({"status": "complete", "model": str(tiny_model_dir),
                                                   "fingerprint": "x", "artifacts": {"model": "model/"}}))
    path = tmp_path / "pairs.jsonl"
    path.write_text(content)
    err = _refused("dpo", tiny_model_dir, path, runs_dir, capsys)
    assert "line 1" in err and needle in err


def test_parent_missing_unfinished_or_of_another_model(tmp_path, runs_dir, capsys, tiny_model_dir):
    args = ["dpo", "--recipe", "recipes/customer_support/dpo.yaml", "--set", f"model={tiny_model_dir}"]
    assert cli.main(args) == 2 and "does not exist" in capsys.readouterr().err
    sft = runs_dir / "customer_support" / "sft"
    sft.mkdir(parents=True)
    assert cli.main(args) == 2 and "not a finished run" in capsys.readouterr().err
    (sft / "manifest.json").write_text(json.dumps({"status": "complete", "model": "other-model"}))
    assert cli.main(args) == 2 and "trained from model 'other-model'" in capsys.readouterr().err
    assert tree(runs_dir) == {"customer_support/sft/manifest.json": (sft / "manifest.json").stat().st_size}


TASK_FILES = [
    ("bad regex", {"id": "a", "prompt": "x", "required": ["(unclosed"]}, "bad regex"),
    ("no prompt", {"id": "a", "required": ["x"]}, "missing field 'messages'"),
    ("empty required", {"id": "a", "prompt": "x", "required": []}, "non-empty list"),
]


@pytest.mark.parametrize("name,row,needle", TASK_FILES, ids=[c[0] for c in TASK_FILES])
def test_bad_tasks_file(tmp_path, name, row, needle):
    from rlft import data
    from rlft.errors import InputError

    path = tmp_path / "tasks.jsonl"
    path.write_text(_lines({"id": "ok", "prompt": "hi", "required": ["x"]}, row))
    with pytest.raises(InputError, match="line 2") as e:
        data.load(str(path), "tasks", 0, 0)
    assert needle in str(e.value) and str(path) in str(e.value)


def test_duplicate_task_ids(tmp_path):
    from rlft import data
    from rlft.errors import InputError

    path = tmp_path / "tasks.jsonl"
    path.write_text(_lines({"id": "a", "prompt": "x", "required": ["x"]}, {"id": "a", "prompt": "y", "required": ["y"]}))
    with pytest.raises(InputError, match="duplicate id 'a' .first on line 1"):
        data.load(str(path), "tasks", 0, 0)


def test_eval_reads_the_run_s_recipe_typed_and_refuses_a_bad_key_by_name(tmp_path, capsys):
    """`rlft eval` loads the manifest's recipe with the recipe's checks: a key no stage has is named with the
    manifest it is in and the nearest key, exit 2, and no eval.json is written."""
    from rlft import config
    from tests.conftest import full_manifest

    recipe = config.to_dict(config.load_recipe("sft", "recipes/customer_support/sft.yaml"))
    recipe["eval"]["n_task"] = recipe["eval"].pop("n_tasks")
    run = tmp_path / "run"
    run.mkdir()
    (run / "manifest.json").write_text(json.dumps(full_manifest({"stage": "sft", "status": "complete",
                                                                 "fingerprint": "0", "recipe": recipe})))
    assert cli.main(["eval", "--run", str(run)]) == 2
    err = capsys.readouterr().err
    assert str(run / "manifest.json") in err and "unknown key 'n_task'. Did you mean 'n_tasks'?" in err
    assert sorted(p.name for p in run.iterdir()) == ["manifest.json"]


def test_eval_refuses_an_unfinished_run(tmp_path, capsys):
    (tmp_path / "run").mkdir()
    assert cli.main(["eval", "--run", str(tmp_path / "run")]) == 2
    assert "not a finished run" in capsys.readouterr().err


def test_unknown_data_names_list_the_builtins_and_hub_ids_fail_clearly(monkeypatch):
    from rlft import data
    from rlft.errors import InputError

    with pytest.raises(InputError, match="built-in sets: harbor_sft"):
        data.load("harbor_sfx", "conversational", 0, 10)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(InputError, match="loadable `datasets` hub id"):
        data.load("someone/support-chats", "conversational", 0, 10)
    with pytest.raises(InputError, match="does not exist"):
        data.load("missing/file.jsonl", "conversational", 0, 10)


def test_parquet_and_csv_files_are_read(tmp_path):
    import pandas as pd

    from rlft import data

    frame = pd.DataFrame({"prompt": ["hi", "yo"], "completion": ["hello", "hey"]})
    frame.to_parquet(tmp_path / "d.parquet")
    frame.to_csv(tmp_path / "d.csv", index=False)
    for name in ("d.parquet", "d.csv"):
        rows = data.load(str(tmp_path / name), "conversational", 0, 0)
        assert rows[1]["messages"] == [{"role": "user", "content": "yo"}, {"role": "assistant", "content": "hey"}]


def test_no_pickle_is_loaded_without_weights_only():
    """Every torch.load in rlft and reward_models passes weights_only=True: a checkpoint cannot run code."""
    import re
    from pathlib import Path

    calls = [(str(p), line) for folder in ("rlft", "reward_models") for p in Path(folder).rglob("*.py")
             for line in p.read_text().splitlines() if re.search(r"\btorch\.load\(", line)]
    assert calls, "expected the PPO checkpoints to be loaded somewhere"
    assert all("weights_only=True" in call for _, call in calls), calls


# --- recipes, parents, tasks and models, through the CLI: exit 2, the file or key named, runs/ unchanged ----

TASKS_BAD_REGEX = _lines({"id": "a", "prompt": "x", "required": ["(unclosed"]})
TASKS_DUPLICATE = _lines({"id": "a", "prompt": "x", "required": ["x"]}, {"id": "a", "prompt": "y", "required": ["y"]})

# (id, stage, --set words, recipe file text or None for the shipped one, files to write, needle)
CLI_CASES = [
    ("unknown key in file", "sft", [], "model: rlft-tiny\ntrian:\n  learning_rate: 0.1\n", {}, "unknown key 'trian'"),
    ("not yaml", "sft", [], "train: [1, 2\n", {}, "is not valid YAML"),
    ("yaml list", "sft", [], "- 1\n- 2\n", {}, "top level must be a mapping"),
    ("unknown key by --set", "sft", ["train.learnin_rate=0.1"], None, {}, "unknown key 'learnin_rate'"),
    ("wrong type", "sft", ["train.batch_size=many"], None, {}, "train.batch_size: expected int"),
    ("zero batch", "sft", ["train.batch_size=0"], None, {}, "train.batch_size must be positive"),
    ("negative lr", "sft", ["train.learning_rate=-1"], None, {}, "train.learning_rate must be positive"),
    ("negative steps", "sft", ["train.max_steps=-3"], None, {}, "train.max_steps must be positive"),
    ("no training outside an SFT adapter", "dpo", ["train.max_steps=0"], None, {}, "0, no training, is for an SFT"),
    ("no training of full weights", "sft", ["train.max_steps=0", "lora.enabled=false"], None, {},
     "0, no training, is for an SFT"),
    ("negative rows", "sft", ["data.n_train=-5"], None, {}, "data.n_train must be positive"),
    ("warmup over 1", "sft", ["train.warmup_ratio=2"], None, {}, "train.warmup_ratio must lie in"),
    ("dropout over 1", "sft", ["lora.dropout=1.5"], None, {}, "lora.dropout must lie in"),
    ("unknown scheduler", "sft", ["train.lr_scheduler=bogus"], None, {}, "train.lr_scheduler 'bogus'"),
    ("unknown optimizer", "sft", ["train.optim=bogus"], None, {}, "train.optim 'bogus'"),
    ("zero dpo beta", "dpo", ["dpo.beta=0"], None, {}, "dpo.beta must be positive"),
    ("kto in length-grouped batches", "dpo", ["dpo.loss_type=[kto]"], None, {},
     "train.group_by_length would reorder them"),  # the shipped recipe groups pairs by length
    ("save not a multiple of eval", "sft", ["train.save_steps=7"], None, {}, "must be a multiple of train.eval_steps"),
    ("unknown eval reward", "sft", ["eval.reward=politeness"], None, {}, "unknown reward 'politeness'"),
    ("unknown ppo reward", "ppo", ["ppo.reward=politeness"], None, {}, "ppo.reward: unknown reward 'politeness'"),
    ("a key ppo does not read", "ppo", ["train.max_steps=5"], None, {},
     "ppo does not read train.max_steps; its length is ppo.updates"),
    ("lora off for ppo", "ppo", ["lora.enabled=false"], None, {}, "ppo does not read lora.enabled"),
    ("a key ppo does not read in its file", "ppo", [], "train:\n  batch_size: 8\n", {},
     "ppo does not read train.batch_size"),
    ("unknown key near a known one", "ppo", ["ppo.update=5"], None, {}, "Did you mean 'updates'?"),
    ("missing parent", "dpo", ["parent=/no/such/run"], None, {}, "/no/such/run does not exist"),
    ("bad regex in tasks", "sft", ["eval.tasks={tmp}/tasks.jsonl"], None, {"tasks.jsonl": TASKS_BAD_REGEX},
     "line 1"),
    ("duplicate task ids", "sft", ["eval.tasks={tmp}/tasks.jsonl"], None, {"tasks.jsonl": TASKS_DUPLICATE},
     "duplicate id 'a'"),
    ("model folder without config", "sft", ["model={tmp}/empty_model"], None, {"empty_model/README.md": "x"},
     "has no config.json"),
    ("data file of unknown kind", "sft", ["data.train={tmp}/train.txt"], None, {"train.txt": "hello"},
     "unknown extension '.txt'"),
    ("json not a list", "sft", ["data.train={tmp}/train.json"], None, {"train.json": '{"a": 1}'},
     "must hold a list of objects"),
]


@pytest.mark.parametrize("name,stage,sets,recipe_text,files,needle", CLI_CASES, ids=[c[0] for c in CLI_CASES])
def test_bad_recipes_parents_tasks_and_models(tmp_path, runs_dir, capsys, tiny_model_dir, name, stage, sets,
                                             recipe_text, files, needle):
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    recipe = f"recipes/customer_support/{stage}.yaml"
    if recipe_text is not None:
        recipe = str(tmp_path / f"{stage}.yaml")
        Path(recipe).write_text(recipe_text)
    words = [w for s in [f"model={tiny_model_dir}"] + [s.format(tmp=tmp_path) for s in sets] for w in ("--set", s)]
    before = tree(runs_dir)
    code = cli.main([stage, "--recipe", recipe] + words)
    err = capsys.readouterr().err
    assert code == 2 and needle in err, err
    named = [recipe] + [s.split("=", 1)[1].format(tmp=tmp_path) for s in sets]  # the recipe, or the value set
    assert any(n in err for n in named), f"the message names neither the recipe nor the file: {err}"
    assert tree(runs_dir) == before


# --- safe by default -----------------------------------------------------------------------------------


def test_a_model_s_own_code_is_not_run_unless_the_recipe_asks(tmp_path):
    from rlft import models
    from rlft.errors import InputError

    marker = tmp_path / "code_ran"
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "custom", "auto_map": {
        "AutoConfig": "configuration_custom.CustomConfig", "AutoModelForCausalLM": "modeling_custom.CustomModel"}}))
    code = f"open({str(marker)!r}, 'w').write('ran')\nfrom transformers import PretrainedConfig\n" \
           "class CustomConfig(PretrainedConfig):\n    model_type = 'custom'\n"
    (tmp_path / "configuration_custom.py").write_text(code)
    (tmp_path / "modeling_custom.py").write_text(code)
    with pytest.raises(InputError, match="trust_remote_code: true"):
        models.load_causal_lm(str(tmp_path))
    assert not marker.exists()


def test_pickled_weights_are_refused(tmp_path, tiny_model_dir):
    """A folder with only pytorch_model.bin (a pickle, which can run code as it loads) does not load."""
    import shutil

    import torch
    from safetensors.torch import load_file

    from rlft import models
    from rlft.errors import InputError

    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        shutil.copy(tiny_model_dir / name, tmp_path / name)
    torch.save(load_file(str(tiny_model_dir / "model.safetensors")), tmp_path / "pytorch_model.bin")
    with pytest.raises(InputError, match="cannot load model"):
        models.load_causal_lm(str(tmp_path))


def test_a_run_writes_nothing_outside_its_folder(tmp_path, tiny_model_dir, monkeypatch):
    """Run SFT (training, checkpoints, TensorBoard logs, evaluation) from an empty working directory:
    every file it writes is inside its run folder. No recipe key names a place to write."""
    recipe = str(Path("recipes/customer_support/sft.yaml").resolve())
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RLFT_RUNS", str(tmp_path / "runs"))
    sets = [f"model={tiny_model_dir}", "train.max_steps=2", "train.save_steps=1", "train.eval_steps=1", "data.n_train=16", "data.n_val=8",
            "train.batch_size=8", "eval.n_tasks=4", "eval.n_general=4", "eval.max_new_tokens=8"]
    assert cli.main(["sft", "--recipe", recipe] + [w for s in sets for w in ("--set", s)]) == 0
    outside = [f for f in tree(tmp_path) if not f.startswith("runs/customer_support/sft/")]
    assert outside == [] and "runs/customer_support/sft/manifest.json" in tree(tmp_path)
    assert cli.main(["base", "--recipe", str(Path(recipe).with_name("base.yaml")), "--set",
                     "base.export_to=/tmp/anywhere"]) == 2
