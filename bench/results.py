"""Gather the benchmarks' JSON into bench/results.md and bench/results.json (the last step of `make bench`).

    python bench/results.py

Each row names its command, the figure (a median over the runs its script made), what it is
compared with in the same run, the ratio, the target, and whether the target was met. A missing
JSON is reported as not measured, never filled in.
"""

from __future__ import annotations

import json
import platform
from pathlib import Path

import run as bench_run
from noise import verdict

BENCH = Path(__file__).resolve().parent


def _load(name: str) -> dict | list | None:
    path = BENCH / name
    return json.loads(path.read_text()) if path.is_file() else None


def _row(section, figure, command, ours, theirs=None, ratio=None, target="", met=None, unit="") -> dict:
    return {"section": section, "figure": figure, "command": command, "rlft": ours, "compared_with": theirs,
            "ratio": ratio, "unit": unit, "target": target, "met": met}


def rows() -> list[dict]:
    out = []
    over = _load("overhead.json")
    if over and "target" in over:
        for stage, f in over["stages"].items():
            r = f["ratio"]
            out.append(_row("1. wrapper overhead", f"{stage}: {f['steps']} steps x batch {over['batch']}, "
                            f"train_runtime ({_range(r, '.3f')} over {len(r['values'])} interleaved rounds)",
                            over["command"], f["rlft_s"]["median"], f"TRL direct {f['trl_s']['median']:.2f} s",
                            r["median"], "ratio <= 1.03 over the whole range", f["verdict"], "s"))
    ppo = _load("ppo_vs_trl112.json")
    if ppo and "sizes" in ppo:
        cmd, bare, shipped = ppo["command"], "trl 1.12 without collector", "trl 1.12"
        for size, f in ppo["sizes"].items():
            # a reward-only size (the toy with no critic on either side) has its reward row alone, with no target
            only = f.get("reward_only")
            name = f["shape"]["label"] if only else "toy task" if size == "toy" else f"{size} backbone"
            d = f["score_difference"]
            reward = _row("2. PPO vs TRL 1.12", f"reward, mean of the last 5 of {f['updates']} updates, {name}: "
                          f"rlft minus TRL, per seed ({_range(d, '+.3f')})", cmd, f["score_last5"]["rlft"]["median"],
                          f"TRL 1.12 {f['score_last5'][bare]['median']:.3f}", d["median"],
                          *(("diagnostic (no target)",) if only else
                            ("difference >= 0 over the whole range", verdict(d, ">= 0"))))
            if only:
                out.append(reward)
                continue
            sec, t = f["seconds_per_update"], f["time_ratio"][bare]
            out.append(_row("2. PPO vs TRL 1.12", f"seconds per whole update, {name}: vs TRL without its per-update "
                            f"collector ({_range(t)} over {len(t['values'])} interleaved rounds)", cmd,
                            sec["rlft"]["median"], f"TRL 1.12 {sec[bare]['median']:.3f} s", t["median"],
                            "ratio <= 0.8 over the whole range", f["verdict"], "s"))
            if shipped in sec:
                t = f["time_ratio"][shipped]
                out.append(_row("2. PPO vs TRL 1.12", f"seconds per whole update, {name}: vs TRL as shipped "
                                f"({_range(t)})", cmd, sec["rlft"]["median"],
                                f"TRL 1.12 {sec[shipped]['median']:.3f} s", t["median"], unit="s"))
                out.append(_row("2. PPO vs TRL 1.12", f"TRL 1.12's per-update gc.collect + empty_cache, {name}", cmd,
                                None, f"{f['housekeeping_s_per_update']['median']:.3f} s per update"))
            out.append(reward)
            m = f["memory_ratio"]
            out.append(_row("2. PPO vs TRL 1.12", f"peak minus floor resident memory, {name} (floors "
                            f"{f['floor_rss_mib']['rlft']['median']:.0f} and {f['floor_rss_mib'][bare]['median']:.0f} "
                            f"MiB; {_range(m)})", cmd, f["peak_over_floor_mib"]["rlft"]["median"],
                            f"TRL 1.12 {f['peak_over_floor_mib'][bare]['median']:.0f} MiB", m["median"],
                            "ratio < 1 over the whole range", verdict(m, "< 1"), "MiB"))
    grouped = _load("length_grouping.json")
    if grouped:
        t, r = grouped["tokens_per_s"], grouped["ratio"]
        out.append(_row("3. padding", f"SFT training tokens/s, length-grouped batches (ratio {r['min']:.2f} to "
                        f"{r['max']:.2f} over {len(r['values'])} interleaved rounds: {grouped['verdict']})",
                        grouped["command"], t["grouped"]["median"], f"padding {t['padding']['median']:.0f} tokens/s",
                        r["median"], "ratio >= 1.3 over the whole range", grouped["verdict"], "tokens/s"))
    hw = _load("hardware.json")
    if hw:
        s, cmd = hw["summary"], hw["command"]
        pad, pack = s["sft_padding"]["tokens_per_s"], s["sft_packing"]["tokens_per_s"]
        r = s["packing_speedup"]
        if isinstance(r, dict):
            out.append(_row("3. packing", f"SFT training tokens/s, packing (TRL best-fit, padding-free; "
                            f"{_range(r)} over {len(r['values'])} interleaved rounds)", cmd, pack,
                            f"padding {pad:.0f} tokens/s", r["median"], "ratio > 1 over the whole range",
                            s["packing_verdict"], "tokens/s"))
        out.append(_row("4. hardware", "dense fp32 matmul rate (2048^2 torch.mm)", cmd, s["matmul_gflops"],
                        unit="GFLOP/s"))
        for key, name in (("base", "base pretraining"), ("sft_padding", "SFT (LoRA, padding)"),
                          ("sft_packing", "SFT (LoRA, packing)")):
            out.append(_row("4. hardware", f"{name}: training tokens/s; MFU (6N)", cmd, s[key]["tokens_per_s"],
                            f"MFU {s[key]['mfu_6n']:.1%} of the matmul rate", s[key]["mfu_6n"], unit="tokens/s"))
        out.append(_row("4. hardware", "PPO rollouts: generated tokens/s", cmd,
                        s["ppo_rollout"]["generated_tokens_per_s"], unit="tokens/s"))
    mem = _load("ppo_memory.json")
    if mem:
        p = mem["peak_rss_mib"]
        for layout in ("separate-full", "separate-lora") if "verdict" in mem else ():
            r = mem["ratio_rlft_over"][layout]
            out.append(_row("5. memory", f"PPO peak RSS, {mem['parameters'] / 1e6:.0f}M-parameter backbone: rlft "
                            f"vs {layout} ({_range(r)} over {len(r['values'])} interleaved rounds)", mem["command"],
                            p["rlft"], f"{layout} {p[layout]:.0f} MiB", r["median"], "ratio < 1 over the whole range",
                            mem["verdict"][layout], "MiB"))
    shard = _load("ppo_memory_sharding.json")
    if shard and "ratio_fsdp_over_ddp_2_processes" in shard:
        p, r = shard["peak_rss_mib"], shard["ratio_fsdp_over_ddp_2_processes"]
        out.append(_row("5. memory", f"PPO peak RSS per process, 2 processes, {shard['parameters'] / 1e6:.0f}M "
                        f"backbone: FSDP 2 vs data parallel ({_range(r)})", shard["command"] + " --sharding",
                        p["rlft-2-fsdp"], f"data parallel {p['rlft-2-ddp']:.0f} MiB", r["median"],
                        unit="MiB"))  # no target: see results_notes.md
    gpu = _load("gpu_check.json")
    if gpu and not gpu.get("tiny"):
        cmd = "bash bench/gpu_check.sh"
        for r in gpu["rows"]:
            if r.get("tokens_per_second") and r.get("mfu_target") and r.get("mfu_spec") is not None:
                out.append(_row(f"7. GPU ({gpu['device']})", f"{r['id']}: training tokens/s; MFU (stated in "
                                "bench/gpu_check.md) of the datasheet peak", cmd, r["tokens_per_second"],
                                f"MFU {r['mfu_spec']:.1%}", r["mfu_spec"], f">= {r['mfu_target']:.0%} over the whole "
                                "range", r["mfu_verdict"], "tokens/s"))
        for c in gpu["comparisons"]:
            if c.get("ratio") is not None:
                out.append(_row(f"7. GPU ({gpu['device']})", f"tokens/s, {c['a']} over {c['b']} ({c['ratio_min']:.2f}"
                                f" to {c['ratio_max']:.2f})", cmd, None, None, c["ratio"],
                                "" if c["target"] is None else f">= {c['target']} over the whole range", c["verdict"]))
    # the default pipeline at most 10 minutes, SmolLM2's at most 25 (issue: a real pretrained chat model)
    for name, what, limit in (("e2e.json", "make sft dpo", 600), ("e2e_smollm2.json", "the SmolLM2 pipeline", 1500)):
        e2e = _load(name)
        if not e2e:
            continue
        total = e2e["sft_dpo_with_setup_s"]
        out.append(_row("6. end to end", f"{what} on a fresh clone, set-up included: setup {e2e['setup_s']}, "
                        f"sft {e2e['sft_s']}, dpo {e2e['dpo_s']} s, one run ({e2e['date']}, {e2e['commit']})",
                        e2e["command"], total, target=f"<= {limit} s on 2 cores", met=total <= limit, unit="s"))
        if e2e.get("compare_after_sft_dpo_s") is not None:
            out.append(_row("6. end to end", "make compare after make sft dpo (ppo, grpo, sft_continued, report)",
                            e2e["command"], e2e["compare_after_sft_dpo_s"], unit="s"))
    timings = _load("timings.json")
    if timings:
        t = bench_run.summary(timings)
        no_time = f"; no time yet for {', '.join(t['missing'])}" if t["missing"] else ""
        out.append(_row("8. make bench", f"wall time of every script, minutes: {t['parts']} ({t['occasions']}; "
                        f"{t['cores']} cores{no_time})", "python bench/run.py", t["minutes"],
                        target="<= 30 minutes on 2 cores, every script timed", met=t["met"], unit="min"))
    return out


def _range(d: dict, fmt: str = ".2f") -> str:
    return f"{d['min']:{fmt}} to {d['max']:{fmt}}"


def _fmt(x) -> str:
    if x is None:
        return "–"
    if isinstance(x, bool):
        x = "met" if x else "missed"
    if x in ("met", "within noise", "missed"):
        return {"met": "met", "within noise": "*within noise*", "missed": "**missed**"}[x]
    if isinstance(x, float):
        return f"{x:.3f}" if abs(x) < 10 else f"{x:,.0f}"
    return str(x)


def main() -> None:
    table = rows()
    missing = [n for n in ("overhead.json", "ppo_vs_trl112.json", "hardware.json", "length_grouping.json",
                           "ppo_memory.json", "gpu_check.json", "e2e.json", "timings.json")
               if not (BENCH / n).is_file()]
    lines = ["# rlft benchmarks", "",
             f"Machine: {platform.machine()}, {__import__('os').cpu_count()} CPU cores. Every figure is the median "
             "over the runs its command made (see its JSON for each run); the ratio is rlft over what it is "
             "compared with, measured in the same command. `make bench` reruns all but the end-to-end rows "
             "(`make bench-e2e`).", "",
             "| section | figure | rlft | compared with | ratio | target | met | command |",
             "|---|---|---|---|---|---|---|---|"]
    for r in table:
        lines.append(f"| {r['section']} | {r['figure']} | {_fmt(r['rlft'])} {r['unit']} | {_fmt(r['compared_with'])} "
                     f"| {_fmt(r['ratio'])} | {r['target'] or '–'} | {_fmt(r['met'])} | `{r['command']}` |")
    if missing:
        lines += ["", f"Not measured (no JSON yet): {', '.join(missing)}."]
    notes = BENCH / "results_notes.md"
    if notes.is_file():
        lines += ["", notes.read_text().strip()]
    (BENCH / "results.md").write_text("\n".join(lines) + "\n")
    (BENCH / "results.json").write_text(json.dumps({"rows": table, "missing": missing}, indent=2) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
