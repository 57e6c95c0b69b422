"""Peak memory of PPO: rlft's one shared backbone against separate policy, reference, value and
reward copies.

    python bench/ppo_memory.py [--hidden 768 --layers 12] [--out bench/ppo_memory.json]

A randomly initialised Llama of about 90M parameters (rlft-tiny's tokenizer, hidden 768, 12
layers; saved with save_pretrained, no hub) is the backbone. Each layout runs in its own process,
whose peak resident memory (ru_maxrss from os.wait4) is the figure. The one-process layouts are
children forked from one process that imported torch, transformers, peft and rlft once (bench/forkserver.py:
they start with what a fresh process holds after those imports, shared-library pages included, without
spending 10-16 s importing them each time):

- `rlft`: `rlft ppo` itself (policy and value LoRA adapters + a scalar head on one frozen backbone;
  the reference is the backbone with adapters off; the rule reward needs no model), 1 update (the peak: the optimizer's state appears at its first step).
- `separate-full`: what TRL 1.12's PPOTrainer holds without peft: a trainable policy, a frozen
  reference, a trainable value model and a frozen reward model, each a full copy, with AdamW on
  policy and value; the same rollout and PPO epoch of forward and backward passes.
- `separate-lora`: the same four copies, with LoRA on policy and value (TRL 1.12 with peft still
  loads a separate value and reward model).
- `load-only`: the process that only imports torch, transformers, peft and rlft and loads the backbone
  once, the floor every layout pays (one run: it has no ratio, and it does not move from run to run).
- `rlft-2-ddp`, `rlft-2-fsdp`: `rlft ppo` under `accelerate launch --num_processes 2`, data parallel
  (recipes/accelerate/ddp.yaml) and sharded with FSDP 2 (recipes/accelerate/fsdp.yaml); the
  figure is the larger of the two processes' peaks (wait4 reports the largest descendant), each
  process rolling out its 16 prompts. Only with `--sharding` (`make bench-e2e` runs it, into
  bench/ppo_memory_sharding.json): they double the time of a round.

Every layout uses the same prompts (16), response length (32), minibatches (2 x 8) and one PPO epoch:
the peak comes with the first optimizer step, when AdamW's state appears, and the second minibatch runs
with it (two epochs reached the same peaks within their run-to-run spread, for a third more time).
Medians of `--repeats` runs of each layout (5; the load-only floor once), interleaved; the ratios to
rlft are taken round by round and judged over their whole range (bench/noise.py).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
ROOT = Path(__file__).resolve().parents[1]

import forkserver  # noqa: E402
from noise import ROUNDS, ratios, verdict  # noqa: E402

PROMPTS, RESPONSE, MINI, EPOCHS = 16, 32, 8, 1


def build(folder: Path, hidden: int, layers: int) -> int:
    """The backbone saved to `folder`; its parameter count."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from rlft import models

    tok = models.load_tokenizer("rlft-tiny")
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=hidden, intermediate_size=hidden * 8 // 3 // 64 * 64,
                      num_hidden_layers=layers, num_attention_heads=hidden // 64, num_key_value_heads=hidden // 64,
                      max_position_embeddings=512, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                      pad_token_id=tok.pad_token_id, tie_word_embeddings=True)
    model = LlamaForCausalLM(cfg)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return sum(p.numel() for p in model.parameters())


def separate(folder: str, lora: bool) -> None:
    """Four copies, as TRL 1.12's PPOTrainer holds them; one rollout and EPOCHS PPO epochs."""
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    from rlft import data, models
    from rlft.eval.generate import prompt_ids

    torch.manual_seed(0)
    tok = models.load_tokenizer(folder)
    policy = AutoModelForCausalLM.from_pretrained(folder)
    ref = AutoModelForCausalLM.from_pretrained(folder).requires_grad_(False)
    value = AutoModelForSequenceClassification.from_pretrained(folder, num_labels=1)
    reward = AutoModelForSequenceClassification.from_pretrained(folder, num_labels=1).requires_grad_(False)
    for m in (value, reward):
        m.config.pad_token_id = tok.pad_token_id
    if lora:
        from peft import LoraConfig, get_peft_model

        policy = get_peft_model(policy, LoraConfig(r=16, lora_alpha=32, target_modules="all-linear"))
        value = get_peft_model(value, LoraConfig(r=16, lora_alpha=32, target_modules="all-linear",
                                                 task_type="SEQ_CLS"))
    opt = torch.optim.AdamW([p for m in (policy, value) for p in m.parameters() if p.requires_grad], lr=1e-5)
    rows = data.load("harbor_prompts", "prompt_only", 0, PROMPTS)
    ids = prompt_ids(tok, [r["prompt"] for r in rows])
    width = max(map(len, ids))
    batch = torch.tensor([[tok.pad_token_id] * (width - len(p)) + p for p in ids])
    mask = (batch != tok.pad_token_id).long()
    with torch.no_grad():
        seqs = policy.generate(input_ids=batch, attention_mask=mask, max_new_tokens=RESPONSE, do_sample=True,
                               top_k=0, min_new_tokens=RESPONSE, pad_token_id=tok.pad_token_id)
        full_mask = torch.ones_like(seqs)
        full_mask[:, :width] = mask
        ref(input_ids=seqs, attention_mask=full_mask)
        reward(input_ids=seqs, attention_mask=full_mask)
    for _ in range(EPOCHS):
        for i in range(0, PROMPTS, MINI):
            s, m = seqs[i:i + MINI], full_mask[i:i + MINI]
            logits = policy(input_ids=s, attention_mask=m).logits[:, width - 1:-1]
            v = value(input_ids=s, attention_mask=m).logits
            (logits.log_softmax(-1).mean() + v.mean()).backward()
            opt.step()
            opt.zero_grad()


def rlft_cli(args: list[str]) -> None:
    from rlft import cli

    if cli.main(args) != 0:
        raise RuntimeError(f"rlft {' '.join(args)} failed")


def load_only(folder: Path) -> None:
    from rlft import models

    models.load_causal_lm(str(folder))


def peak_mib(cmd: list[str], env: dict | None = None) -> float:
    proc = subprocess.Popen(cmd, env={**os.environ, **(env or {})}, cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    if status != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr.read().decode()[-3000:]}")
    return usage.ru_maxrss / 1024  # kilobytes on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hidden", type=int, default=768)
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--out", default="bench/ppo_memory.json")
    parser.add_argument("--repeats", type=int, default=ROUNDS)
    parser.add_argument("--sharding", action="store_true",
                        help="also the two-process layouts (data parallel, FSDP 2); about 3 minutes a round more")
    args = parser.parse_args()

    py = sys.executable
    args.out = str(Path(args.out).resolve())
    os.chdir(ROOT)  # the recipes' paths are the repository's
    # the imports every layout makes, done once here; no torch computation in this process (see forkserver)
    import peft  # noqa: F401
    import transformers  # noqa: F401

    import rlft.cli  # noqa: F401
    import rlft.stages.ppo  # noqa: F401
    from rlft.eval import generate  # noqa: F401
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "model"
        n, _ = forkserver.run(build, folder, args.hidden, args.layers)
        sft = ["sft", "--recipe", "recipes/customer_support/sft.yaml", "--output-dir", f"{tmp}/sft"] + [
            w for s in (f"model={folder}", "train.max_steps=1", "data.validation=null", "eval.enabled=false",
                        "train.early_stopping_patience=0") for w in ("--set", s)]
        forkserver.run(rlft_cli, sft, quiet=True)
        ppo = ["ppo", "--recipe", "recipes/customer_support/ppo.yaml", "--output-dir",
               f"{tmp}/ppo", "--force"] + [w for s in (f"model={folder}", f"parent={tmp}/sft", "ppo.updates=1",
                                                        f"ppo.rollout_batch_size={PROMPTS}",
                                                        f"ppo.forward_batch_size={PROMPTS}",
                                                        f"ppo.mini_batches={PROMPTS // MINI}",
                                                        f"ppo.micro_batch_size={MINI}", f"ppo.ppo_epochs={EPOCHS}",
                                                        f"ppo.response_length={RESPONSE}", "eval.enabled=false",
                                                        "budget.max_kl_task=null", "budget.max_general_ppl_drift=null")
                                        for w in ("--set", s)]
        accelerate = [str(Path(py).parent / "accelerate"), "launch", "--num_processes", "2", "--num_machines", "1",
                      "--mixed_precision", "no", "--dynamo_backend", "no"]
        two = {"rlft-2-ddp": accelerate + ["--multi_gpu"], "rlft-2-fsdp": accelerate + [
            "--config_file", "recipes/accelerate/fsdp.yaml"]} if args.sharding else {}
        every: dict[str, list[float]] = {"load-only": [], "rlft": [], "separate-lora": [], "separate-full": [],
                                         **{k: [] for k in two}}
        # the floor is no layout's figure, only the context of one, and it does not move (the same to 1 MiB in
        # each of five rounds on 2026-12-01): measured once
        every["load-only"].append(forkserver.run(load_only, folder)[1])
        for _ in range(args.repeats):  # interleaved; peak RSS moves by a few hundred MiB from run to run
            every["rlft"].append(forkserver.run(rlft_cli, ppo, quiet=True)[1])
            every["separate-lora"].append(forkserver.run(separate, str(folder), True)[1])
            every["separate-full"].append(forkserver.run(separate, str(folder), False)[1])
            for name, launch in two.items():  # two processes of their own: launched, not forked
                every[name].append(peak_mib(launch + ["-m", "rlft.cli"] + ppo, {"OMP_NUM_THREADS": "1"}))
    peaks = {k: statistics.median(v) for k, v in every.items()}
    result = {"command": "python bench/ppo_memory.py", "machine": platform.machine(), "parameters": n,
              "backbone_mib_fp32": n * 4 / 2 ** 20, "peak_rss_mib": peaks, "runs": every,
              "ratio_rlft_over": {k: ratios(every["rlft"], every[k]) for k in ("separate-full", "separate-lora")},
              **({"ratio_fsdp_over_ddp_2_processes": ratios(every["rlft-2-fsdp"], every["rlft-2-ddp"])}
                 if two else {})}
    result["verdict"] = {k: verdict(r, "< 1") for k, r in result["ratio_rlft_over"].items()}
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
