"""Every benchmark script runs end to end at its CI size (``--quick``), so that none of them rots.

The speed benchmarks run once, through ``benchmarks/run_all.py`` (which starts each script with
``--quick --json``); the quality experiments (the oracle task, and the scheduled-sampling script's
quality part) run on their own.
"""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SPEED_BENCHMARKS = {"rollout", "decoding", "scheduled_sampling", "professor_forcing", "adversarial", "grpo"}


def _run(*argv, timeout=600):
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    proc = subprocess.run([sys.executable, *argv], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, (proc.stdout[-2000:], proc.stderr[-3000:])
    return proc


def test_run_all_quick_gathers_every_speed_benchmark(tmp_path):
    out = tmp_path / "all.json"
    proc = _run("benchmarks/run_all.py", "--quick", "--json", str(out), timeout=1200)
    result = json.loads(out.read_text())
    assert result["quick"] is True and not any("failed" in line or "skipped" in line for line in result["status"]), result["status"]
    rows = result["rows"]
    assert {row["benchmark"] for row in rows} == SPEED_BENCHMARKS, proc.stdout[-3000:]
    for row in rows:
        assert row["ratios"] and all(math.isfinite(r) and r > 0 for r in row["ratios"]), row
    # the rollout benchmark measures both modes on two families; every figure reaches the one table
    assert {"bart", "t5"} <= {word for row in rows if row["benchmark"] == "rollout" for word in row["figure"].replace(",", " ").split()}
    assert proc.stdout.count("\n| ") >= len(rows)


def test_bench_scheduled_sampling_quick_runs_both_parts():
    proc = _run("benchmarks/bench_scheduled_sampling.py", "--quick")
    assert "Seq2SeqTrainer" in proc.stdout and "Oracle task" in proc.stdout and "nan" not in proc.stdout, proc.stdout[-3000:]


def test_bench_oracle_quick_runs():
    proc = _run("benchmarks/bench_oracle.py", "--quick")
    assert "nll_oracle" in proc.stdout and "Frontier plot" in proc.stdout and "nan" not in proc.stdout, proc.stdout[-3000:]


def test_bench_engine_real_size_quick_runs():
    proc = _run("benchmarks/bench_engine_real_size.py", "--quick")
    assert "engine dynamic" in proc.stdout and "engine static" in proc.stdout and "tokens/s over generate" in proc.stdout, proc.stdout[-2000:]
    assert "nan" not in proc.stdout, proc.stdout[-2000:]


def test_bench_adversarial_oracle_quick_runs():
    proc = _run("benchmarks/bench_adversarial_oracle.py", "--quick")
    assert "Below the frontier of MLE + K" in proc.stdout and "held-out acc" in proc.stdout and "nan" not in proc.stdout, proc.stdout[-3000:]


MULTI30K = ROOT.parent / "shared" / "data" / "multi30k"


def test_bench_multi30k_decoding_quick_runs():
    import pytest

    if not MULTI30K.is_dir():
        pytest.skip(f"the real-data benchmark needs the Multi30k folder {MULTI30K} (../shared/data beside the repository), absent here")
    proc = _run("benchmarks/bench_multi30k_decoding.py", "--quick")
    out = proc.stdout
    for row in ("| greedy |", "| sample T=1 |", "| rerank by D, N=4 |", "| residual EBM T_E=1, N=4 |", "control: D's trunk", "control: MLE"):
        assert row in out, out[-3000:]
    assert "drew the same candidates and D's argmax agreed: {2: True, 4: True}" in out and "nan" not in out, out[-3000:]


def test_bench_multi30k_frontier_runs_on_a_saved_checkpoint(tmp_path):
    import pytest

    from hf_seqgan.tiny import build_tiny_model, train_tokenizer

    if not MULTI30K.is_dir():
        pytest.skip(f"the real-data benchmark needs the Multi30k folder {MULTI30K} (../shared/data beside the repository), absent here")
    lines = (MULTI30K / "train.en").read_text().splitlines()[:200] + (MULTI30K / "train.de").read_text().splitlines()[:200]
    tok = train_tokenizer(lines, vocab_size=400)
    build_tiny_model("bart", tok).save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    out = tmp_path / "frontier.json"
    proc = _run("benchmarks/bench_multi30k_frontier.py", "--models", f"a={tmp_path / 'm'}", "--max-sources", "6", "--temperatures", "1.0",
                "--json", str(out))
    for row in ("| a | greedy |", "| a | T=1 |", "100 (deterministic)"):
        assert row in proc.stdout, proc.stdout[-3000:]
    record = json.loads(out.read_text())
    t1 = record["models"]["a"]["rows"]["T=1"]
    assert record["sources"] == 6 and len(t1["bleu"]) == 2 and 0 <= t1["self_bleu"] <= 100 and "nan" not in proc.stdout
