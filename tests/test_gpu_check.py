"""bench/gpu_check.sh: its arithmetic by hand, and the whole script end to end at tiny sizes on CPU."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

ROOT = Path(__file__).resolve().parents[1]
MEASURED = [f"sft/{arch}/ckpt-{ckpt}/{side}" for arch in ("qwen2.5-0.5b", "llama-3.1-8b") for ckpt in ("off", "on")
            for side in ("rlft", "trl")] + ["dpo/qwen2.5-0.5b/ckpt-on/rlft", "dpo/qwen2.5-0.5b/ckpt-on/trl",
                                            "ppo/qwen2.5-0.5b/ckpt-on/rlft"]


@pytest.mark.unit
def test_timed_leaves_out_the_warm_up_steps():
    """marks (s, tokens): start (0, 0), step 1 (10, 100) is warm-up; step 2 (12, 300), step 3 (13, 500).
    Timed from step 1's mark: 400 tokens in 3 s = 133.3/s; step 2 200/2 s = 100/s, step 3 200/1 s = 200/s."""
    import gpu_check

    t = gpu_check.timed([(0.0, 0.0), (10.0, 100.0), (12.0, 300.0), (13.0, 500.0)], first=1)
    assert t["timed_steps"] == 2 and t["tokens"] == 400 and t["tokens_per_step"] == 200
    assert t["tokens_per_second"] == pytest.approx(400 / 3)
    assert (t["tokens_per_second_min"], t["tokens_per_second_max"]) == (100, 200)


@pytest.mark.unit
def test_ratio_range_pairs_the_slowest_and_fastest_steps():
    """rlft 100 tokens/s [90, 110], TRL 100 [95, 105]: ratio 1.0, range [90/105, 110/95] = [0.857, 1.158],
    which straddles 0.97: within noise, not met."""
    import gpu_check

    rlft = gpu_check.Row("sft", "rlft", "qwen2.5-0.5b", False, 1, result={
        "tokens_per_second": 100.0, "tokens_per_second_min": 90.0, "tokens_per_second_max": 110.0})
    trl = gpu_check.Row("sft", "trl", "qwen2.5-0.5b", False, 1, result={
        "tokens_per_second": 100.0, "tokens_per_second_min": 95.0, "tokens_per_second_max": 105.0})
    c = gpu_check.compare(rlft, trl, 0.97, tiny=False)
    assert c["ratio"] == 1.0 and c["verdict"] == "within noise"
    assert (c["ratio_min"], c["ratio_max"]) == pytest.approx((90 / 105, 110 / 95))


@pytest.mark.slow
def test_gpu_check_runs_every_row_end_to_end_at_tiny_size(tmp_path):
    """`bash bench/gpu_check.sh --tiny` on CPU: every row (rlft and TRL direct for SFT of both architectures,
    checkpointing off and on, and for DPO; rlft's PPO) trained and timed, its tokens/s finite and positive,
    both sides' models really 4-bit, every rlft/TRL ratio given, and the MFU convention stated. No timing
    is asserted: any 2-core machine passes."""
    out = tmp_path / "x.md"
    done = subprocess.run(["bash", "bench/gpu_check.sh", "--tiny", "--out", str(out)], cwd=ROOT, text=True,
                          capture_output=True, env={**os.environ, "PY": sys.executable}, timeout=1200)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    table = out.read_text()
    report = json.loads(out.with_suffix(".json").read_text())
    rows = {r["id"]: r for r in report["rows"]}
    for row_id in MEASURED:
        line = next(line for line in table.splitlines() if line.startswith(f"| {row_id} |"))
        assert "skipped" not in line and "failed" not in line, line
        r = rows[row_id]
        assert math.isfinite(r["tokens_per_second"]) and r["tokens_per_second"] > 0, r
        assert r["timed_steps"] >= 1 and r["tokens"] > 0 and math.isfinite(r["mfu_measured"]), r
        if r["stage"] != "ppo":  # Trainer rows: QLoRA on both sides, no decoder Linear left unquantized
            assert r["linear4bit"] > 0 and r["plain_linear_left"] == 0, r
    for liger in ("sft/qwen2.5-0.5b/ckpt-on+liger/rlft", "sft/llama-3.1-8b/ckpt-on+liger/rlft"):
        assert f"| {liger} |" in table and ("skipped" in rows[liger] or "tokens_per_second" in rows[liger])
    ratios = [c for c in report["comparisons"] if "TRL direct" in c["name"]]
    assert len(ratios) == 5 and all(c["ratio"] > 0 for c in ratios)
    assert "6N for full training" in table and "4N for frozen 4-bit weights with LoRA" in table
    assert "N = the weights a token is multiplied by" in table
