"""Bad input through the real CLI: exit code 2, one message naming file and line or key, nothing written."""

from __future__ import annotations

import json

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
    for content, needle in ((b"\xff\xfe{}\n", "not valid UTF-8"), (b"{" + b" " * 1_100_000 + b"}\n", "over the limit")):
        path = tmp_path / "train.jsonl"
        path.write_bytes(content)
        err = _refused("sft", tiny_model_dir, path, runs_dir, capsys)
        assert "line 1" in err and needle in err
    assert tree(runs_dir) == {}


PAIR_FILES = [
    ("missing chosen", _lines({"prompt": "hi", "rejected": "no"}), "missing field 'chosen'"),
    ("empty rejected", _lines({**GOOD_PAIR, "rejected": ""}), "field 'rejected': empty string"),
    ("identical", _lines({**GOOD_PAIR, "rejected": GOOD_PAIR["chosen"]}), "identical"),
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
