"""rlft's PPO against TRL 1.12's PPOTrainer (the last TRL with PPO): whole updates on the same clock.

    bash bench/ppo_vs_trl112.sh          # makes .venv-trl112 on first use, runs every round, writes the table
    python bench/ppo_vs_trl112.py --impl rlft --size toy --seed 0     # one run, one JSON line

`--drive` (what the .sh runs) starts one server per side, `--serve rlft` in rlft's venv and `--serve
trl112` in the side venv, and asks them for runs in interleaved rounds. A server imports torch,
transformers and its implementation once and makes each run in a child forked after the imports
(bench/forkserver.py): the same run, floor and peak memory as a fresh process, without paying 10-16 s
of imports for each run, which was most of a toy run's time; the first round starts once both servers
are past their imports. Both sides time the same scope with the same
clock (`time.perf_counter()`) over whole updates of each side's own training call (rlft's `ppo.train`,
TRL's `train()`): from the end of update 1 to the end of the last, divided by the updates in between,
so rollout, scoring, optimisation, metrics, logging and housekeeping count on both sides and each
side's one-off warm-up (the first update) on neither. TRL's ends are its `on_step_end` callbacks; rlft's
are the starts of its next update (and the return of `ppo.train`).
TRL 1.12 also runs `gc.collect()` and `empty_cache()` every update; the TRL process times those calls
(`housekeeping_s_per_update`), and `--no-collector` makes its `gc.collect` a no-op, as a user would
who removed it, so that the comparison with TRL's loop itself can be read.

Sizes. `toy` is the task of shared/notes/ppo.md §4.4: a random-weight 2-layer Llama (hidden 64,
vocabulary 256, a word-level tokenizer); the reward is 0.25 for every target token (ids divisible by 10)
in an 8-token response; 16 prompts per update, 4 PPO epochs x 2 minibatches, 20 updates. `88m` is the
backbone of bench/ppo_memory.py (hidden 768, 12 layers, rlft-tiny's vocabulary of 4096, tied
embeddings, random weights): the same reward, 16 prompts of 16 tokens, 32-token responses, 2 epochs x
2 minibatches, 2 updates (one timed). `toy-no-critic` is the toy with no critic on either side, run for
its reward only: every value stays 0 (rlft: ppo.value_learning_rate 0 and its head starts at 0; TRL: its
critic frozen and its score head set to 0), so both sides take the same advantages, the whitened GAE of
the rewards alone, and what is left of the reward difference is the two PPO loops'.

The same settings on both sides (`OPTIMIZER`, read by tests/test_bench.py for both configurations):
AdamW, lr 5e-3 constant, betas (0.9, 0.999), eps 1e-5, no weight decay, no gradient clipping (TRL 1.12's
PPO loop never clips, whatever max_grad_norm says), LoRA r 8 on every linear layer (and the LM head when
untied), T 0.7, kl_coef 0.05, vf_coef 0.1, gamma 1, GAE lambda 0.95, no missing-EOS penalty. What differs
is each design: TRL 1.12 trains a full-size critic (a second model, all its weights) in one loss with the
policy; rlft trains a value adapter and head on the one backbone, with its own forward and backward, the
adapter on the top quarter of the layers (rlft's default ppo.value_layers), so that its passes run those
layers only, from the reference pass's hidden state under them.

Memory: `peak_rss_mib` is the process's peak resident memory, `floor_rss_mib` its resident memory
after its imports (torch, transformers and the implementation), `peak_over_floor_mib` the difference:
what the run itself held.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import forkserver
import torch
from noise import ROUNDS, ratios, spread, verdict

OPTIMIZER = {"learning_rate": 5e-3, "lr_scheduler": "constant", "betas": (0.9, 0.999), "eps": 1e-5,
             "weight_decay": 0.0, "max_grad_norm": None}
"""max_grad_norm None: no clipping, as TRL 1.12's PPO loop (it steps without clip_grad_norm)."""

SIZES = {
    "toy": {"vocab": 256, "hidden": 64, "intermediate": 128, "layers": 2, "heads": 4, "kv_heads": 2, "tied": False,
            "prompt": 6, "response": 8, "batch": 16, "mini_batches": 2, "epochs": 4, "updates": 20},
    "88m": {"vocab": 4096, "hidden": 768, "intermediate": 2048, "layers": 12, "heads": 12, "kv_heads": 12,
            "tied": True, "prompt": 16, "response": 32, "batch": 16, "mini_batches": 2, "epochs": 2, "updates": 2},
}
# The toy again with no critic on either side (every value 0). Against the toy's own reward row it says how much
# of the reward difference is the two critics (a full model in TRL, an adapter in rlft) and how much the loops.
SIZES["toy-no-critic"] = {**SIZES["toy"], "critic": False, "reward_only": True,
                          "label": "toy task with no critic on either side (every value 0)"}
PPO = {"temperature": 0.7, "kl_coef": 0.05, "vf_coef": 0.1, "cliprange": 0.2, "cliprange_value": 0.2, "gamma": 1.0,
       "lam": 0.95}
SEED = 0
TARGET = "<= 0.8"
"""rlft's seconds per update over TRL 1.12's without its per-update collector (issue: benchmarks that
time the same work on both sides)."""
SHIPPED, BARE = "trl 1.12", "trl 1.12 without collector"
READY = "ready"
"""What a server says once its imports are done. Until both have said it, no run starts: a server still
importing (10-16 s on one core) would share the cores with the other side's first run."""


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def tokenizer(vocab: int):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = {w: i for i, w in enumerate(["[PAD]", "[UNK]", "[BOS]", "[EOS]"] + [f"w{i}" for i in range(4, vocab)])}
    tok = Tokenizer(models.WordLevel(words, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]", bos_token="[BOS]",
                                   eos_token="[EOS]", padding_side="left")


def policy(s: dict):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(SEED)
    cfg = LlamaConfig(vocab_size=s["vocab"], hidden_size=s["hidden"], intermediate_size=s["intermediate"],
                      num_hidden_layers=s["layers"], num_attention_heads=s["heads"], num_key_value_heads=s["kv_heads"],
                      tie_word_embeddings=s["tied"], max_position_embeddings=512, bos_token_id=2, eos_token_id=3,
                      pad_token_id=0)
    return LlamaForCausalLM(cfg), cfg


def prompts(s: dict, n: int = 512) -> list[list[int]]:
    """Prompt ids with no target token in them, so prompt+response counts equal response counts."""
    g = torch.Generator().manual_seed(SEED)
    ids = torch.randint(4, s["vocab"], (n, s["prompt"]), generator=g)
    ids[ids % 10 == 0] += 1
    return ids.tolist()


def lora(task_type: str, s: dict):
    from peft import LoraConfig

    modules = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    return LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, task_type=task_type,
                      target_modules=modules + ([] if s["tied"] else ["lm_head"]))


def rlft_recipe(s: dict):
    """The recipe rlft's own PPO loop reads: OPTIMIZER and PPO, the size's shapes."""
    from rlft.config import PpoCfg, PpoRecipe, TrainCfg

    clip = OPTIMIZER["max_grad_norm"]
    train = TrainCfg(learning_rate=OPTIMIZER["learning_rate"], lr_scheduler=OPTIMIZER["lr_scheduler"], warmup_ratio=0.0,
                     weight_decay=OPTIMIZER["weight_decay"], max_grad_norm=float("inf") if clip is None else clip,
                     logging_steps=1, save_steps=10**9, report_to=[])
    ppo = PpoCfg(updates=s["updates"], rollout_batch_size=s["batch"], forward_batch_size=s["batch"],
                 mini_batches=s["mini_batches"], micro_batch_size=s["batch"] // s["mini_batches"],
                 ppo_epochs=s["epochs"], response_length=s["response"], missing_eos_penalty=None,
                 sample_every=10**9, value_layers=s.get("value_layers", PpoCfg.value_layers),
                 value_learning_rate=None if s.get("critic", True) else 0.0, **ppo_settings(s))
    return PpoRecipe(seed=SEED, train=train, ppo=ppo)


def ppo_settings(s: dict) -> dict:
    """PPO's settings for a size, the same on both sides: PPO, with the size's own GAE lambda if it has one."""
    return {**PPO, "lam": s.get("lam", PPO["lam"])}


def trl_ppo_args(s: dict) -> dict:
    """Every keyword of TRL 1.12's PPOConfig for a size but its output folder: the shapes, ppo_settings
    and trl_optimizer_args (tests/test_bench.py holds them against rlft's recipe)."""
    return {"per_device_train_batch_size": s["batch"], "num_mini_batches": s["mini_batches"],
            "gradient_accumulation_steps": 1, "num_ppo_epochs": s["epochs"], "response_length": s["response"],
            "total_episodes": s["batch"] * s["updates"], "local_rollout_forward_batch_size": s["batch"],
            "missing_eos_penalty": None, "stop_token": "eos", "bf16": False, "use_cpu": True, "report_to": "none",
            "num_sample_generations": 0, "save_strategy": "no", "seed": SEED, "logging_steps": 1,
            **ppo_settings(s), **trl_optimizer_args()}


def trl_optimizer_args() -> dict:
    """OPTIMIZER as TrainingArguments fields (TRL 1.12's PPOConfig is a TrainingArguments)."""
    return {"learning_rate": OPTIMIZER["learning_rate"], "lr_scheduler_type": OPTIMIZER["lr_scheduler"],
            "adam_beta1": OPTIMIZER["betas"][0], "adam_beta2": OPTIMIZER["betas"][1],
            "adam_epsilon": OPTIMIZER["eps"], "weight_decay": OPTIMIZER["weight_decay"],
            "optim": "adamw_torch", "warmup_steps": 0}


def is_target(ids: torch.Tensor) -> torch.Tensor:
    return (ids % 10 == 0) & (ids >= 4)


def run_rlft(s: dict) -> dict:
    from peft import get_peft_model

    from rlft import actor_critic
    from rlft.stages import ppo

    floor = rss_mib()
    tok = tokenizer(s["vocab"])
    base, _ = policy(s)
    base.requires_grad_(False)
    recipe = rlft_recipe(s)
    value = actor_critic.on_top_layers(lora("CAUSAL_LM", s), base, recipe.ppo.value_layers)  # as build_policy
    model = get_peft_model(base, lora("CAUSAL_LM", s), adapter_name=actor_critic.POLICY)
    model.add_adapter(actor_critic.VALUE, value)
    for n, p in model.named_parameters():
        p.requires_grad_("lora_" in n)
    model.eval()
    head = torch.nn.Linear(s["hidden"], 1)
    torch.nn.init.zeros_(head.weight)
    torch.nn.init.zeros_(head.bias)
    targets = {f"w{i}" for i in range(4, s["vocab"]) if i % 10 == 0}

    def reward(chats, texts):
        return [0.25 * sum(w in targets for w in t.split()) for t in texts]

    ids = prompts(s)
    chats = [[{"role": "user", "content": tok.decode(p)}] for p in ids]
    starts, prompt_batch = [], ppo.prompt_batch

    def stamped(*args):  # called once at the start of every update
        starts.append(time.perf_counter())
        return prompt_batch(*args)

    ppo.prompt_batch = stamped
    with tempfile.TemporaryDirectory() as work:
        history, _ = ppo.train(recipe, model, head, tok, chats, ids, reward, Path(work), resume=False)
        starts.append(time.perf_counter())
    trainable = sum(p.numel() for n, p in model.named_parameters() if "lora_" in n) + sum(
        p.numel() for p in head.parameters())
    weights = sum(p.numel() for p in model.parameters()) + sum(p.numel() for p in head.parameters())
    out = summary("rlft", [m["objective/scores"] for m in history], [m["objective/kl"] for m in history],
                  starts[1:], None, trainable, weights, floor)
    # how much of the returns' variance the critic's values explain, at each rollout before its update
    # (TRL 1.12 logs no such figure); only where there are more than 5 updates: the first is 0 by construction
    # (the head starts at zero)
    ev = [m["val/explained_variance"] for m in history]
    return {**out, "explained_variance_last5": sum(ev[-5:]) / 5 if len(ev) > 5 else None}


def run_trl112(s: dict, collector: bool) -> dict:
    import numpy as np
    from datasets import Dataset
    from transformers import LlamaForSequenceClassification, TrainerCallback
    from trl.experimental.ppo import PPOConfig, PPOTrainer
    from trl.experimental.ppo import ppo_trainer as trl_ppo

    floor = rss_mib()
    spent = [0.0]

    def timed(fn):
        def call(*a, **k):
            t = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                spent[0] += time.perf_counter() - t
        return call

    # TRL's per-update housekeeping, timed where its loop calls it (and the collector a no-op if asked)
    trl_ppo.gc = SimpleNamespace(collect=timed(gc.collect if collector else lambda: 0))
    trl_ppo.empty_cache = timed(trl_ppo.empty_cache)
    tok = tokenizer(s["vocab"])
    model, cfg = policy(s)
    value = LlamaForSequenceClassification(cfg.__class__(**{**cfg.to_dict(), "num_labels": 1}))
    if not s.get("critic", True):  # every value 0, and nothing of it trains (Trainer's optimizer takes requires_grad)
        torch.nn.init.zeros_(value.score.weight)
        value.requires_grad_(False)

    class Counter(torch.nn.Module):
        """Duck-typed reward model: 'hidden state' = 0.25 x targets so far; TRL reads it at the last token."""

        base_model_prefix = "model"

        def __init__(self):
            super().__init__()
            self.model = self._backbone
            self.score = torch.nn.Identity()
            self.dummy = torch.nn.Parameter(torch.zeros(1))

        def _backbone(self, input_ids=None, **kwargs):
            return SimpleNamespace(hidden_states=[0.25 * is_target(input_ids).float().cumsum(1).unsqueeze(-1)])

    ds = Dataset.from_dict({"input_ids": prompts(s)})
    with tempfile.TemporaryDirectory() as out:
        args = PPOConfig(output_dir=out, **trl_ppo_args(s))
        np.random.seed(SEED)  # trl 1.12 shuffles minibatches with numpy and never seeds it (ppo.md §4)
        trainer = PPOTrainer(args=args, processing_class=tok, model=model, ref_model=None, reward_model=Counter(),
                             train_dataset=ds, value_model=value, peft_config=lora("CAUSAL_LM", s))
        ends = []

        class Stamp(TrainerCallback):
            def on_step_end(self, *args, **kwargs):  # after each update's optimisation, metrics and log
                ends.append((time.perf_counter(), spent[0]))

        trainer.add_callback(Stamp())
        trainer.train()
    logs = [e for e in trainer.state.log_history if "objective/scores" in e]
    trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
    weights = sum(p.numel() for p in trainer.model.parameters())
    return summary(SHIPPED if collector else BARE, [e["objective/scores"] for e in logs],
                   [e["objective/kl"] for e in logs], [t for t, _ in ends], ends[-1][1] - ends[0][1], trainable,
                   weights, floor)


def summary(name, scores, kls, stamps, housekeeping, trainable, weights, floor) -> dict:
    """stamps: the clock at the end of update 1, 2, ..., n: the figure is the steady period of updates
    2..n (the first carries each side's one-off warm-up); housekeeping: the collector's seconds in them."""
    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    n = len(stamps) - 1
    return {"implementation": name, "updates": len(scores), "timed_updates": n, "score_first5": mean(scores[:5]),
            "score_last5": mean(scores[-5:]), "kl_last5": mean(kls[-5:]),
            "seconds_per_update": (stamps[-1] - stamps[0]) / n,
            "housekeeping_s_per_update": None if housekeeping is None else housekeeping / n,
            "trainable_parameters": trainable, "parameters_in_memory": weights, "peak_rss_mib": peak_rss_mib(),
            "floor_rss_mib": floor, "peak_over_floor_mib": peak_rss_mib() - floor,
            "torch_threads": torch.get_num_threads()}


def collect(lines: list[dict]) -> dict:
    """Every run's JSON line into the figures of each size: spreads over the rounds, ratios round by round."""
    out = {"command": "bash bench/ppo_vs_trl112.sh", "target": f"rlft / {BARE} seconds per update {TARGET}",
           "optimizer": OPTIMIZER, "sizes": {}}
    for size in SIZES:
        runs = {}
        for line in lines:
            if line["size"] == size:
                runs.setdefault(line["implementation"], []).append(line)
        if "rlft" not in runs or BARE not in runs:
            continue
        for rs in runs.values():
            rs.sort(key=lambda x: x["seed"])
        fig = {key: {impl: spread([x[key] for x in rs]) for impl, rs in runs.items()}
               for key in ("seconds_per_update", "score_last5", "kl_last5", "peak_rss_mib", "floor_rss_mib",
                           "peak_over_floor_mib")}
        sec = {impl: [x["seconds_per_update"] for x in rs] for impl, rs in runs.items()}
        if not SIZES[size].get("reward_only"):  # a size run for its reward has no time verdict
            fig["time_ratio"] = {impl: ratios(sec["rlft"], sec[impl]) for impl in runs if impl != "rlft"}
            fig["verdict"] = verdict(fig["time_ratio"][BARE], TARGET)
        if all(x.get("explained_variance_last5") is not None for x in runs["rlft"]):
            fig["explained_variance_last5"] = spread([x["explained_variance_last5"] for x in runs["rlft"]])
        if SHIPPED in runs:
            fig["housekeeping_s_per_update"] = spread([x["housekeeping_s_per_update"] for x in runs[SHIPPED]])
        score = {impl: [x["score_last5"] for x in rs] for impl, rs in runs.items()}
        fig["score_difference"] = spread([a - b for a, b in zip(score["rlft"], score[BARE])])
        fig["memory_ratio"] = ratios([x["peak_over_floor_mib"] for x in runs["rlft"]],
                                     [x["peak_over_floor_mib"] for x in runs[BARE]])
        fig.update(updates=runs["rlft"][0]["updates"], seeds=[x["seed"] for x in runs["rlft"]],
                   shape={k: v for k, v in SIZES[size].items()}, reward_only=SIZES[size].get("reward_only", False),
                   runs=runs)
        out["sizes"][size] = fig
    return out


def table(result: dict) -> str:
    lines = [f"# rlft PPO vs TRL 1.12 PPOTrainer (CPU): whole updates, {result['target']}", "",
             "`bash bench/ppo_vs_trl112.sh`; the tasks and settings are in bench/ppo_vs_trl112.py. Each figure is",
             "min / median / max over interleaved rounds (round r: seed r on every side).", "",
             "| size | figure | rlft | trl 1.12 | trl 1.12 without collector | rlft / without collector | verdict |",
             "|---|---|---|---|---|---|---|"]

    def mmm(d):
        return "–" if d is None else f"{d['min']:.3f} / {d['median']:.3f} / {d['max']:.3f}"

    for size, f in result["sizes"].items():
        only = f.get("reward_only")  # its reward line alone
        if not only:
            lines.append(f"| {size} | seconds per update | {mmm(f['seconds_per_update']['rlft'])} | "
                         f"{mmm(f['seconds_per_update'].get(SHIPPED))} | {mmm(f['seconds_per_update'][BARE])} | "
                         f"{mmm(f['time_ratio'][BARE])} | {f['verdict']} ({TARGET}) |")
        if "housekeeping_s_per_update" in f:
            lines.append(f"| {size} | TRL's per-update gc.collect + empty_cache, s per update | – | "
                         f"{mmm(f['housekeeping_s_per_update'])} | – | – | – |")
        lines.append(f"| {size} | reward, mean of the last 5 of {f['updates']} updates | {mmm(f['score_last5']['rlft'])} "
                     f"| {mmm(f['score_last5'].get(SHIPPED))} | {mmm(f['score_last5'][BARE])} | difference "
                     f"{mmm(f['score_difference'])} | – |")
        if only:
            continue
        lines.append(f"| {size} | peak minus floor resident memory, MiB | {mmm(f['peak_over_floor_mib']['rlft'])} | "
                     f"{mmm(f['peak_over_floor_mib'].get(SHIPPED))} | {mmm(f['peak_over_floor_mib'][BARE])} | "
                     f"{mmm(f['memory_ratio'])} | – |")
        lines.append(f"| {size} | floor: resident memory after imports, MiB | {mmm(f['floor_rss_mib']['rlft'])} | "
                     f"{mmm(f['floor_rss_mib'].get(SHIPPED))} | {mmm(f['floor_rss_mib'][BARE])} | – | – |")
    lines += ["", "Same optimiser on both sides: " + ", ".join(f"{k} {v}" for k, v in result["optimizer"].items())
              + ". TRL trains a full critic (a second model), rlft a value adapter and head on the one backbone."]
    return "\n".join(lines) + "\n"


def one(impl: str, size: str, seed: int, collector: bool = True) -> dict:
    """One run's JSON line: the figures of `impl` on `size` with every seed set to `seed`."""
    global SEED
    SEED = seed
    out = run_rlft(SIZES[size]) if impl == "rlft" else run_trl112(SIZES[size], collector)
    return {**out, "size": size, "seed": seed}


def serve(impl: str) -> None:
    """Answer one JSON request a line on stdin ({"size", "seed", "collector"}) with the JSON line of its run,
    each run in a child forked after the imports its implementation makes."""
    if impl == "rlft":
        import peft  # noqa: F401

        import rlft.actor_critic  # noqa: F401
        import rlft.config  # noqa: F401
        import rlft.stages.ppo  # noqa: F401
    else:
        import datasets  # noqa: F401
        import numpy  # noqa: F401
        import peft  # noqa: F401
        import trl.experimental.ppo.ppo_trainer  # noqa: F401
    import tokenizers  # noqa: F401
    import transformers  # noqa: F401
    from transformers import LlamaForCausalLM, LlamaForSequenceClassification  # noqa: F401

    replies = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # whatever a run prints goes to stderr; stdout carries only the replies
    replies.write(READY + "\n")  # its imports are done: it no longer takes the cores from the other side's runs
    replies.flush()
    for line in sys.stdin:
        ask = json.loads(line)
        out, _ = forkserver.run(one, impl, ask["size"], ask["seed"], ask.get("collector", True))
        replies.write(json.dumps(out) + "\n")
        replies.flush()


def drive(side_python: str, rounds: int, rounds_88m: int, out: str) -> None:
    """Interleaved rounds through one server per side (round r: seed r on every side, one after another,
    so a slow minute of the machine falls on both); then OUT.json and OUT.md."""
    me = str(Path(__file__).resolve())
    with tempfile.TemporaryDirectory() as tmp:
        logs = {impl: Path(tmp) / f"{impl}.log" for impl in ("rlft", "trl112")}
        # the side venv must not see rlft's packages (PYTHONPATH cleared)
        servers = {impl: subprocess.Popen([py, me, "--serve", impl], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                          stderr=logs[impl].open("w"), text=True,
                                          env={**os.environ, **({"PYTHONPATH": ""} if impl == "trl112" else {})})
                   for impl, py in (("rlft", sys.executable), ("trl112", side_python))}
        for impl, server in servers.items():  # both servers past their imports before the first run is timed
            if server.stdout.readline().strip() != READY:
                raise SystemExit(f"the {impl} server did not start; the end of its log:\n{logs[impl].read_text()[-4000:]}")
        lines = []

        def ask(impl: str, size: str, seed: int, collector: bool = True) -> None:
            server = servers[impl]
            server.stdin.write(json.dumps({"size": size, "seed": seed, "collector": collector}) + "\n")
            server.stdin.flush()
            reply = server.stdout.readline()
            if not reply:
                raise SystemExit(f"the {impl} server stopped; the end of its log:\n{logs[impl].read_text()[-4000:]}")
            lines.append(json.loads(reply))

        for r in range(rounds):
            print(f"toy round {r + 1}/{rounds}", file=sys.stderr, flush=True)
            ask("rlft", "toy", r)
            ask("trl112", "toy", r)
            ask("trl112", "toy", r, collector=False)
        for r in range(rounds):
            print(f"toy with no critic, round {r + 1}/{rounds}", file=sys.stderr, flush=True)
            ask("rlft", "toy-no-critic", r)
            ask("trl112", "toy-no-critic", r, collector=False)
        for r in range(rounds_88m):
            print(f"88m round {r + 1}/{rounds_88m}", file=sys.stderr, flush=True)
            ask("rlft", "88m", r)
            ask("trl112", "88m", r, collector=False)
        for server in servers.values():
            server.stdin.close()
            server.wait()
    result = collect(lines)
    Path(out + ".json").write_text(json.dumps(result, indent=1) + "\n")
    Path(out + ".md").write_text(table(result))
    print(table(result))


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--impl", choices=["rlft", "trl112"])
    p.add_argument("--size", choices=sorted(SIZES), default="toy")
    p.add_argument("--seed", type=int, default=SEED, help="seeds the weights, the prompts and the sampling")
    p.add_argument("--no-collector", action="store_true", help="TRL: its per-update gc.collect() as a no-op")
    p.add_argument("--serve", choices=["rlft", "trl112"], help="answer runs asked on stdin (what --drive starts)")
    p.add_argument("--drive", metavar="SIDE_PYTHON", help="every round, TRL 1.12 run by this python")
    p.add_argument("--rounds", type=int, default=ROUNDS, help="toy rounds")
    p.add_argument("--rounds-88m", type=int, default=ROUNDS, help="88m rounds")
    p.add_argument("--out", default="bench/ppo_vs_trl112")
    a = p.parse_args()
    if a.serve:
        serve(a.serve)
    elif a.drive:
        drive(a.drive, a.rounds, a.rounds_88m, a.out)
    else:
        print(json.dumps(one(a.impl, a.size, a.seed, not a.no_collector)))
