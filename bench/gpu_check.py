"""GPU check: QLoRA SFT and DPO steps on a real architecture, timed. Run it where a GPU is.

    python bench/gpu_check.py --out bench/gpu_check.md

The model is Qwen2-0.5B's architecture (its config, written here; no hub), randomly
initialised and saved locally, so the numbers are about speed and memory, not quality.
Each stage runs through rlft's real entry point with 4-bit NF4 + LoRA, bf16 compute,
gradient checkpointing and a paged 8-bit optimizer. For each it prints training tokens
per second, peak GPU memory and model FLOPs utilisation (6 x parameters x tokens per
second over the dense bf16 matmul rate measured here), and it checks that 4-bit loading
really replaced the decoder's linear layers.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

QWEN2_0_5B = dict(vocab_size=151936, hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                  num_attention_heads=14, num_key_value_heads=2, max_position_embeddings=32768,
                  rope_theta=1000000.0, tie_word_embeddings=True, rms_norm_eps=1e-6)


TINY = dict(QWEN2_0_5B, vocab_size=8000, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
            num_attention_heads=2, num_key_value_heads=1)
CUDA = torch.cuda.is_available()


def _sync() -> None:
    if CUDA:
        torch.cuda.synchronize()


def matmul_tflops(n: int = 8192, reps: int = 10) -> float:
    device = "cuda" if CUDA else "cpu"
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    _sync()
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    _sync()
    return 2 * n**3 * reps / (time.perf_counter() - t) / 1e12


def build(folder: Path, arch: dict) -> int:
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from rlft.stages.base import train_tokenizer
    from rlft.tasks.harbor import generator as harbor

    chats = [r["messages"] for r in harbor.sft_rows(0, 3000)]
    tok = train_tokenizer(chats, 8000)
    config = Qwen2Config(**arch, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(config).to(torch.bfloat16)
    model.generation_config.eos_token_id = tok.eos_token_id
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return sum(p.numel() for p in model.parameters())


def check_4bit(folder: Path) -> dict:
    import bitsandbytes as bnb

    from rlft import models
    from rlft.config import QuantCfg

    model = models.load_causal_lm(str(folder), dtype="bfloat16",
                                  quant=QuantCfg(load_in_4bit=True, compute_dtype="bfloat16"))
    linear4 = sum(isinstance(m, bnb.nn.Linear4bit) for m in model.modules())
    plain = sum(type(m) is torch.nn.Linear for n, m in model.named_modules() if "lm_head" not in n)
    mem = torch.cuda.memory_allocated() / 2**30 if CUDA else float("nan")
    del model
    return {"linear4bit_layers": linear4, "plain_linear_layers_left": plain, "weights_gib": round(mem, 3)}


def stage(name: str, folder: Path, runs: Path, steps: int, batch: int) -> dict:
    from rlft import cli

    if CUDA:
        torch.cuda.reset_peak_memory_stats()
    out = runs / name
    sets = [f"model={folder}", "quant.load_in_4bit=true", "quant.compute_dtype=bfloat16", "dtype=bfloat16",
            "lora.enabled=true", "lora.r=16", "train.bf16=true", "train.gradient_checkpointing=true",
            f"train.optim={'paged_adamw_8bit' if CUDA else 'adamw_torch'}", f"train.max_steps={steps}", f"train.batch_size={batch}",
            "train.save_steps=1000", "train.eval_steps=0", "train.logging_steps=5", "data.max_length=256",
            "data.validation=null", f"data.n_train={steps * batch}", "eval.enabled=false"]
    if name == "dpo":
        sets.append(f"parent={runs / 'sft'}")
    if name == "ppo":  # rlft's own loop: rollouts with generate, then PPO epochs on both adapters
        sets = [x for x in sets if not x.startswith(("train.max_steps", "data.n_train", "data.validation",
                                                     "train.bf16", "train.optim"))]  # PPO: AdamW, weights in dtype
        sets += [f"parent={runs / 'sft'}", f"ppo.updates={max(2, steps // 3)}", f"ppo.rollout_batch_size={batch}",
                 f"ppo.forward_batch_size={batch}", "ppo.mini_batches=2", f"ppo.micro_batch_size={batch // 2}",
                 "ppo.response_length=64", "eval.max_kl_task=null", "eval.max_general_ppl_drift=null",
                 "data.n_train=256"]
    args = [name, "--recipe", f"recipes/customer_support/{name}.yaml", "--output-dir", str(out)]
    for s in sets:
        args += ["--set", s]
    t = time.perf_counter()
    assert cli.main(args) == 0, f"{name} failed"
    wall = time.perf_counter() - t
    log = json.loads((out / "train_log.json").read_text())
    if name == "ppo":  # tokens generated in rollouts; seconds of rollouts and updates
        seconds = sum(e["time/rollout_s"] + e["time/update_s"] for e in log)
        return {"stage": name, "steps": len(log), "batch": batch, "train_seconds": round(seconds, 2),
                "stage_seconds": round(wall, 1), "tokens": sum(e["response/length_mean"] * batch for e in log),
                "peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if CUDA else None}
    summary = log[-1]
    tokens = max((e.get("num_tokens", 0) for e in log), default=0)
    return {"stage": name, "steps": steps, "batch": batch, "train_seconds": summary.get("train_runtime"),
            "stage_seconds": round(wall, 1), "tokens": tokens,
            "peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if CUDA else None}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--out", default="bench/gpu_check.md")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--tiny", action="store_true", help="the same architecture at tiny size, on any device")
    a = p.parse_args()
    assert CUDA or a.tiny, "no CUDA GPU here: run with --tiny for the CPU check of the same code path"
    rate = matmul_tflops(8192 if CUDA else 512)
    with tempfile.TemporaryDirectory() as tmp:
        folder, runs = Path(tmp) / "qwen2-0.5b-random", Path(tmp) / "runs"
        n = build(folder, TINY if a.tiny else QWEN2_0_5B)
        quant = check_4bit(folder)
        rows = [stage("sft", folder, runs, a.steps, a.batch), stage("dpo", folder, runs, a.steps, a.batch // 2),
                stage("ppo", folder, runs, a.steps, a.batch)]
    for r in rows:
        # DPO runs chosen and rejected through the policy and the reference: count both sequences
        r["tokens_per_second"] = round(r["tokens"] / r["train_seconds"], 1) if r["tokens"] and r["train_seconds"] else None
        r["mfu"] = round(6 * n * r["tokens_per_second"] / (rate * 1e12), 4) if r["tokens_per_second"] else None
        if r["stage"] == "ppo":
            r["mfu"] = None  # generation and training mixed: tokens/s are generated tokens per second of the loop
    gpu = torch.cuda.get_device_name(0) if CUDA else "CPU (--tiny)"
    lines = [f"# GPU check: {gpu}", "", f"Model: Qwen2-0.5B architecture{' (tiny size)' if a.tiny else ''}, random weights, {n / 1e6:.0f}M parameters; "
             f"4-bit NF4 + double quantization, LoRA r=16 on all linear layers, bf16 compute, gradient checkpointing, "
             f"{'paged 8-bit AdamW' if CUDA else 'AdamW (paged 8-bit needs CUDA)'} (PPO: AdamW). Dense bf16 matmul "
             f"measured here: {rate:.{0 if CUDA else 3}f} TFLOP/s. torch {torch.__version__}.", "",
             f"4-bit loading: {quant['linear4bit_layers']} Linear4bit layers, {quant['plain_linear_layers_left']} plain "
             f"Linear layers left in the decoder, {quant['weights_gib']} GiB on the GPU after loading.", "",
             "| stage | steps | batch | train s | tokens | tokens/s | peak GiB | MFU |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['stage']} | {r['steps']} | {r['batch']} | {r['train_seconds']} | {r['tokens']} | "
                     f"{r['tokens_per_second']} | {r['peak_gib']} | {r['mfu']} |")
    lines += ["", "Command: `python bench/gpu_check.py` (bench/gpu_check.sh on a machine with a GPU).",
              "MFU = 6 x parameters x tokens/s / measured matmul rate; it counts the frozen 4-bit weights' forward "
              "and backward as if they were dense bf16, and DPO's token count is TRL's (prompt + both answers).",
              "PPO's steps are updates; its tokens are the response tokens sampled in rollouts and its seconds the "
              "rollouts' and updates' (the whole loop), so no MFU is given for it."]
    text = "\n".join(lines) + "\n"
    print(text)
    Path(a.out).write_text(text)
    Path(a.out).with_suffix(".json").write_text(json.dumps({"gpu": gpu, "matmul_tflops": rate, "params": n,
                                                            "quant": quant, "stages": rows}, indent=2))


if __name__ == "__main__":
    main()
