"""Weight arithmetic on runs: WiSE-FT interpolation toward the parent and the uniform soup of seeds."""

from __future__ import annotations

import json

import pytest
import torch

from rlft import cli, mix, models
from rlft.errors import InputError
from tests.conftest import cli_args

FAST = ["train.max_steps=3", "data.n_train=32", "data.n_val=8", "lora.r=4", "train.batch_size=8",
        "eval.enabled=false", "train.eval_steps=0", "train.learning_rate=1e-2"]


def _weights(run_dir) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in models.run_model(run_dir).state_dict().items()}


def _run(tiny_model_dir, out, *extra):
    assert cli.main(cli_args("sft", [f"model={tiny_model_dir}", *FAST, *extra], out)) == 0
    return out


def test_interpolating_a_lora_run_is_exact_at_both_ends_and_linear_between(tiny_model_dir, sft_lora_run, tmp_path):
    base = {k: v.clone() for k, v in models.load_causal_lm(str(tiny_model_dir)).state_dict().items()}
    run = _weights(sft_lora_run)
    folders = mix.interpolate(sft_lora_run, [0.0, 0.5, 1.0], tmp_path / "mix")
    mixes = [_weights(f) for f in folders]
    changed = [k for k in run if not torch.equal(run[k], base[k])]
    assert changed, "the run trained something"
    for k in changed:
        torch.testing.assert_close(mixes[0][k], base[k], rtol=0, atol=1e-6)
        torch.testing.assert_close(mixes[2][k], run[k], rtol=0, atol=1e-6)
        torch.testing.assert_close(mixes[1][k], (base[k] + run[k]) / 2, rtol=0, atol=1e-6)
    manifest = json.loads((folders[1] / "manifest.json").read_text())
    assert manifest["interpolation"]["alpha"] == 0.5 and manifest["parent"] is None and manifest["stage"] == "sft"
    assert mix.interpolate(sft_lora_run, [0.5, 0.25], tmp_path / "mix")[0] == folders[1]  # already there: kept
    index = json.loads((tmp_path / "mix" / "interpolation.json").read_text())
    assert index["alphas"] == [0.0, 0.25, 0.5, 1.0]  # a later call adds to the curve


def test_interpolating_full_weights_mixes_the_state_dicts(tiny_model_dir, tmp_path):
    full = _run(tiny_model_dir, tmp_path / "full", "lora.enabled=false")
    base = models.load_causal_lm(str(tiny_model_dir)).state_dict()
    run = _weights(full)
    quarter = _weights(mix.interpolate(full, [0.25], tmp_path / "mix")[0])
    key = next(k for k in run if k.endswith("q_proj.weight"))
    assert not torch.equal(run[key], base[key])
    torch.testing.assert_close(quarter[key], 0.75 * base[key] + 0.25 * run[key], rtol=0, atol=1e-6)


def test_a_soup_of_adapters_is_the_mean_of_their_changes(tiny_model_dir, sft_lora_run, tmp_path):
    other = _run(tiny_model_dir, tmp_path / "seed1", "seed=1")
    base = models.load_causal_lm(str(tiny_model_dir)).state_dict()
    a, b = _weights(sft_lora_run), _weights(other)
    soup = _weights(mix.soup([sft_lora_run, other], tmp_path / "soup"))
    config = json.loads((tmp_path / "soup" / "adapter" / "adapter_config.json").read_text())
    source = json.loads((sft_lora_run / "adapter" / "adapter_config.json").read_text())
    assert config["r"] == 2 * source["r"] and config["lora_alpha"] / config["r"] == source["lora_alpha"] / source["r"]
    key = next(k for k in a if k.endswith("v_proj.weight"))
    assert not torch.equal(a[key], b[key])
    torch.testing.assert_close(soup[key] - base[key], ((a[key] - base[key]) + (b[key] - base[key])) / 2,
                               rtol=0, atol=1e-6)
    manifest = json.loads((tmp_path / "soup" / "manifest.json").read_text())
    assert manifest["seed"] == 0 and manifest["soup"]["seeds"] == [0, 1]


def test_a_soup_takes_adapters_whose_module_lists_differ_only_in_order(tiny_model_dir, sft_lora_run, tmp_path):
    """PEFT saves target_modules (a set) as a list in the process's hash order: two seeds may list them apart."""
    import shutil

    other = tmp_path / "other"
    shutil.copytree(sft_lora_run, other)
    config_path = other / "adapter" / "adapter_config.json"
    config = json.loads(config_path.read_text())
    config["target_modules"] = list(reversed(config["target_modules"]))
    config_path.write_text(json.dumps(config))
    assert (mix.soup([sft_lora_run, other], tmp_path / "soup") / "manifest.json").is_file()


def test_a_soup_refuses_runs_of_other_parents_or_kinds(tiny_model_dir, sft_lora_run, tmp_path):
    full = _run(tiny_model_dir, tmp_path / "full", "lora.enabled=false")
    with pytest.raises(InputError, match="mix adapters and full weights"):
        mix.soup([sft_lora_run, full], tmp_path / "soup")
    child = _run(tiny_model_dir, tmp_path / "child", f"parent={sft_lora_run}")
    with pytest.raises(InputError, match="has parent"):
        mix.soup([sft_lora_run, child], tmp_path / "soup2")
    with pytest.raises(InputError, match="at least two runs"):
        mix.soup([sft_lora_run], tmp_path / "soup3")
    assert not (tmp_path / "soup").exists() and not (tmp_path / "soup2").exists()


@pytest.mark.slow
def test_rlft_interpolate_evaluates_each_mix_on_dev_and_compare_draws_the_curve(sft_lora_run, tmp_path, capsys):
    out = tmp_path / "interp"
    assert cli.main(["interpolate", "--run", str(sft_lora_run), "--alphas", "0,1", "--out", str(out)]) == 0
    summary = json.loads((out / "interpolation.json").read_text())
    assert [c["alpha"] for c in summary["curve"]] == [0.0, 1.0] and {c["split"] for c in summary["curve"]} == {"dev"}
    assert summary["curve"][0]["kl_task_base"] == pytest.approx(0.0, abs=1e-4)  # alpha 0 is the base itself
    assert cli.main(["compare", str(out), "--out", str(tmp_path / "cmp")]) == 0
    assert (tmp_path / "cmp" / "interpolation_interp.png").is_file()
    assert cli.main(["interpolate", "--run", str(sft_lora_run), "--alphas", "half"]) == 2


@pytest.mark.slow
def test_rlft_soup_is_evaluated_like_any_run(tiny_model_dir, sft_lora_run, tmp_path):
    other = _run(tiny_model_dir, tmp_path / "seed1", "seed=1")
    assert cli.main(["soup", str(sft_lora_run), str(other), "--out", str(tmp_path / "soup")]) == 0
    ev = json.loads((tmp_path / "soup" / "eval.json").read_text())
    assert ev["stage"] == "sft" and ev["split"] == "test" and ev["kl_task_base"] > 0
