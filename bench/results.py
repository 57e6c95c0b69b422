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
    if over:
        for stage, s in over["stages"].items():
            out.append(_row("1. wrapper overhead", f"{stage}: {over['steps']} steps x batch {over['batch']}, "
                            f"train_runtime", over["command"], s["rlft_s"], f"TRL direct {s['trl_s']:.2f} s",
                            s["ratio"], "ratio <= 1.03", s["ratio"] <= 1.03, "s"))
    ppo = _load("ppo_vs_trl112.json")
    if ppo:
        ours, trl = ppo
        cmd = "bash bench/ppo_vs_trl112.sh"
        out.append(_row("2. PPO vs TRL 1.12", "seconds per PPO update (toy task)", cmd, ours["seconds_per_update"],
                        f"TRL 1.12 {trl['seconds_per_update']:.3f} s",
                        ours["seconds_per_update"] / trl["seconds_per_update"], "ratio < 1",
                        ours["seconds_per_update"] < trl["seconds_per_update"], "s"))
        out.append(_row("2. PPO vs TRL 1.12", "peak resident memory", cmd, ours["peak_rss_mib"],
                        f"TRL 1.12 {trl['peak_rss_mib']:.0f} MiB", ours["peak_rss_mib"] / trl["peak_rss_mib"],
                        "ratio < 1", ours["peak_rss_mib"] < trl["peak_rss_mib"], "MiB"))
        out.append(_row("2. PPO vs TRL 1.12", f"reward, mean of the last 5 of {ours['updates']} updates", cmd,
                        ours["score_last5"], f"TRL 1.12 {trl['score_last5']:.3f}",
                        ours["score_last5"] / trl["score_last5"], "ratio >= 1", ours["score_last5"] >= trl["score_last5"]))
    grouped = _load("length_grouping.json")
    if grouped:
        t, r = grouped["tokens_per_s"], grouped["ratio"]
        out.append(_row("3. padding", f"SFT training tokens/s, length-grouped batches (ratio {r['min']:.2f} to "
                        f"{r['max']:.2f} over {len(r['values'])} interleaved rounds: {grouped['verdict']})",
                        grouped["command"], t["grouped"]["median"], f"padding {t['padding']['median']:.0f} tokens/s",
                        r["median"], "ratio >= 1.3 over the whole range", {"met": True, "missed": False}.get(grouped["verdict"], "*within noise*"), "tokens/s"))
    hw = _load("hardware.json")
    if hw:
        s, cmd = hw["summary"], hw["command"]
        pad, pack = s["sft_padding"]["tokens_per_s"], s["sft_packing"]["tokens_per_s"]
        out.append(_row("3. packing", "SFT training tokens/s, packing (TRL best-fit, padding-free)", cmd, pack,
                        f"padding {pad:.0f} tokens/s", pack / pad, "ratio > 1", pack > pad, "tokens/s"))
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
        for layout in ("separate-full", "separate-lora"):
            out.append(_row("5. memory", f"PPO peak RSS, {mem['parameters'] / 1e6:.0f}M-parameter backbone: rlft "
                            f"vs {layout}", mem["command"], p["rlft"], f"{layout} {p[layout]:.0f} MiB",
                            p["rlft"] / p[layout], "ratio < 1", p["rlft"] < p[layout], "MiB"))
        if "rlft-2-fsdp" in p:
            out.append(_row("5. memory", f"PPO peak RSS per process, 2 processes, {mem['parameters'] / 1e6:.0f}M "
                            f"backbone: FSDP 2 vs data parallel", mem["command"], p["rlft-2-fsdp"],
                            f"data parallel {p['rlft-2-ddp']:.0f} MiB", p["rlft-2-fsdp"] / p["rlft-2-ddp"],
                            unit="MiB"))  # no target: see results_notes.md
    e2e = _load("e2e.json")
    if e2e:
        out.append(_row("6. end to end", f"make sft dpo on a fresh clone, set-up included ({e2e['date']}, "
                        f"{e2e['commit']})", e2e["command"], e2e["sft_dpo_with_setup_s"], unit="s"))
        if e2e.get("compare_after_sft_dpo_s") is not None:
            out.append(_row("6. end to end", "make compare after make sft dpo (ppo, grpo, sft_continued, report)",
                            e2e["command"], e2e["compare_after_sft_dpo_s"], unit="s"))
    return out


def _fmt(x) -> str:
    if x is None:
        return "–"
    if isinstance(x, bool):
        return "met" if x else "**missed**"
    if isinstance(x, float):
        return f"{x:.3f}" if abs(x) < 10 else f"{x:,.0f}"
    return str(x)


def main() -> None:
    table = rows()
    missing = [n for n in ("overhead.json", "ppo_vs_trl112.json", "hardware.json", "ppo_memory.json", "e2e.json")
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
