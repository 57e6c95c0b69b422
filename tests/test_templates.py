"""Assistant-only loss with any chat template: TRL's masks where TRL can mark the template, prompt/completion
rows where it cannot, the same tokens either way; and no system prompt added unseen."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from rlft import cli, data, models
from rlft.stages import sft
from tests.conftest import cli_args

TRL_TEMPLATES = Path(__import__("trl").__file__).parent / "chat_templates"
# The ChatML template of SmolLM2-135M-Instruct (its tokenizer_config.json): no {% generation %} markers,
# and a default system turn of its own; TRL cannot patch it.
CHATML = ("{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
          "{{ '<|im_start|>system\\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\\n' }}"
          "{% endif %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}"
          "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")


def _tok(tiny_model_dir, template: str | None = None):
    tok = models.load_tokenizer(str(tiny_model_dir))
    if template is not None:
        tok.chat_template = template
    return tok


@pytest.mark.parametrize("template,path", [
    (None, "assistant"),  # rlft-tiny's own template carries the markers
    ((TRL_TEMPLATES / "qwen2_5.jinja").read_text(), "assistant"),  # TRL patches Qwen2.5's
    ((TRL_TEMPLATES / "llama3.jinja").read_text(), "assistant"),  # and Llama 3's
    (CHATML, "completion"),  # not SmolLM2's: completion rows
])
def test_each_template_gets_a_loss_path(tiny_model_dir, template, path):
    assert sft.loss_path(_tok(tiny_model_dir, template), assistant_only=True) == path
    assert sft.loss_path(_tok(tiny_model_dir, template), assistant_only=False) == "all"


def test_both_paths_put_the_loss_on_exactly_the_same_tokens(tiny_model_dir, tmp_path):
    """On rlft-tiny's template TRL's assistant mask and the completion rows' mask are equal token for token."""
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    tok = _tok(tiny_model_dir)
    model = models.load_causal_lm(str(tiny_model_dir))
    rows = data.load("harbor_sft", "conversational", 0, 8)
    rows.append({"messages": rows[0]["messages"] + rows[1]["messages"]})  # two turns: two completion rows

    def tokenized(train_rows, assistant_only):
        args = SFTConfig(output_dir=str(tmp_path / str(assistant_only)), max_length=256, report_to=[], bf16=False,
                         use_cpu=True,
                         assistant_only_loss=assistant_only)
        trainer = SFTTrainer(model=model, args=args, processing_class=tok, train_dataset=Dataset.from_list(train_rows))
        return list(trainer.train_dataset)

    marked = tokenized(rows, True)
    completions = tokenized(sft.as_completions(rows), False)
    assert len(completions) == len(rows) + 1
    for m, c in zip(marked[:8], completions[:8]):
        assert m["input_ids"] == c["input_ids"]
        assert m["labels"] == c["labels"]  # the loss targets, -100 where no loss is taken
        assert -100 in m["labels"] and any(t != -100 for t in m["labels"])
    # the two-turn chat: its reply tokens are its two rows' completion tokens, each trained once
    two_turn, first, second = marked[8], completions[8], completions[9]
    assert ([t for t in two_turn["labels"] if t != -100]
            == [t for t in first["labels"] if t != -100] + [t for t in second["labels"] if t != -100])


def _model_with_template(tiny_model_dir, tmp_path, template: str) -> Path:
    folder = tmp_path / "model"
    shutil.copytree(tiny_model_dir, folder)
    tok = _tok(folder, template)
    tok.save_pretrained(folder)
    return folder


FAST = ["train.max_steps=2", "data.n_train=16", "data.n_val=8", "train.batch_size=8", "lora.r=4",
        "eval.enabled=false", "train.eval_steps=0"]


def test_a_chatml_model_trains_with_assistant_only_loss_and_says_what_its_template_adds(tiny_model_dir, tmp_path,
                                                                                          capsys):
    folder = _model_with_template(tiny_model_dir, tmp_path, CHATML)
    assert cli.main(cli_args("sft", [f"model={folder}", *FAST], tmp_path / "sft")) == 0
    manifest = json.loads((tmp_path / "sft" / "manifest.json").read_text())
    assert manifest["metrics"]["loss_on"] == "assistant tokens (completion rows)"
    assert "adds a system turn of its own" in capsys.readouterr().out
    # a recipe's system prompt is the one every chat gets, and then nothing is said
    assert cli.main(cli_args("sft", [f"model={folder}", *FAST, "data.system_prompt=You help Harbor Goods."],
                             tmp_path / "sft2")) == 0
    assert "adds a system turn" not in capsys.readouterr().out


def test_a_template_that_renders_the_prompt_differently_is_refused(tiny_model_dir, tmp_path, capsys):
    # the generation prompt says "Assistant:" but inside a chat the turn opens with "assistant:"
    odd = ("{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
           "{% if add_generation_prompt %}Assistant:{% endif %}")
    folder = _model_with_template(tiny_model_dir, tmp_path, odd)
    assert cli.main(cli_args("sft", [f"model={folder}", *FAST], tmp_path / "sft")) == 2
    err = capsys.readouterr().err
    assert "renders a prompt differently" in err and str(folder) in err
    assert not (tmp_path / "sft").exists() and not (tmp_path / "sft.partial").exists()


def test_the_system_prompt_reaches_every_kind_of_row():
    for name, fmt, field in (("harbor_sft", "conversational", "messages"), ("harbor_pairs", "preference", "prompt"),
                             ("harbor_prompts", "prompt_only", "prompt"), ("harbor_dev", "tasks", "messages")):
        rows = data.load(name, fmt, 0, 4, system_prompt="Be brief.")
        assert all(r[field][0] == {"role": "system", "content": "Be brief."} for r in rows), name
        assert all(r[field][1]["role"] == "user" for r in rows)
    assert data.load("harbor_sft", "conversational", 0, 4) == data.builtin("harbor_sft", 0, 4)


def test_the_cpu_loss_equals_the_models_own_on_the_trained_tokens(tiny_model_dir):
    """`reply_nll` projects only the trained positions onto the vocabulary; its mean must equal the
    model's own cross-entropy over the full logits with the same labels, padding and prompt masked,
    and its gradient must be the same."""
    import torch

    tok = _tok(tiny_model_dir)
    model = models.load_causal_lm(str(tiny_model_dir))
    chats = [r["messages"] for r in data.load("harbor_sft", "conversational", 0, 4)]
    ids = [list(x) for x in tok.apply_chat_template(chats, tokenize=True, return_dict=False)]
    width = max(map(len, ids))
    input_ids = torch.full((4, width), tok.pad_token_id)
    mask = torch.zeros_like(input_ids)
    for i, row in enumerate(ids):
        input_ids[i, :len(row)], mask[i, :len(row)] = torch.tensor(row), 1
    labels = input_ids.masked_fill(mask == 0, -100)
    labels[:, :12] = -100  # a prompt that does not train
    expected = model(input_ids=input_ids, attention_mask=mask, labels=labels).loss
    expected.backward()
    grad = model.lm_head.weight.grad.clone()
    model.zero_grad()
    nll, correct = sft.reply_nll(model, input_ids, mask, labels)
    n = (labels[:, 1:] != -100).sum()
    (nll / n).backward()
    assert torch.allclose(nll / n, expected, atol=1e-5)
    assert torch.allclose(model.lm_head.weight.grad, grad, atol=1e-6)
    assert 0 <= int(correct) <= int(n)


def test_the_cpu_loss_path_logs_the_tokens_trained_on(tiny_model_dir, tmp_path):
    """num_tokens (the real, non-padding tokens seen: TRL's own count) stays in the log on CPU, where
    `rlft sft` computes its own loss: every step adds at least a token per row and at most a full row."""
    out = tmp_path / "sft"
    assert cli.main(cli_args("sft", [f"model={tiny_model_dir}", *FAST, "train.logging_steps=1"], out)) == 0
    log = [e for e in json.loads((out / "train_log.json").read_text()) if "num_tokens" in e]
    counts = [e["num_tokens"] for e in log]
    recipe = json.loads((out / "manifest.json").read_text())["recipe"]
    batch, width = recipe["train"]["batch_size"], recipe["data"]["max_length"]
    assert len(counts) == 2 and counts[0] < counts[1]
    for step, count in zip((1, 2), counts):
        assert step * batch < count <= step * batch * width
