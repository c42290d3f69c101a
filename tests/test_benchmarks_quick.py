"""The benchmark script runs end to end at its CI size (``--quick``) and prints both tables."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run_quick(script):
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    proc = subprocess.run([sys.executable, f"benchmarks/{script}", "--quick"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_bench_rollout_quick_prints_both_tables():

    proc = _run_quick("bench_rollout.py")
    lines = proc.stdout.splitlines()
    headers = [line for line in lines if line.startswith("| model") and "ratio" in line]
    assert len(headers) == 2, proc.stdout  # sampling throughput, differentiable mode
    for family in ("bart", "t5"):
        rows = [line for line in lines if line.startswith(f"| {family} |")]
        assert len(rows) == 2, proc.stdout  # one row per table at the quick size
        for row in rows:
            assert "nan" not in row and "inf" not in row, row


def test_bench_scheduled_sampling_quick_runs():
    proc = _run_quick("bench_scheduled_sampling.py")
    assert "Seq2SeqTrainer" in proc.stdout and "nan" not in proc.stdout, proc.stdout[-3000:]


def test_bench_decoding_quick_runs():
    proc = _run_quick("bench_decoding.py")
    assert "generate" in proc.stdout and "nan" not in proc.stdout, proc.stdout[-3000:]


def test_bench_professor_forcing_quick_runs():
    proc = _run_quick("bench_professor_forcing.py")
    assert "Seq2SeqTrainer" in proc.stdout and "nan" not in proc.stdout, proc.stdout[-3000:]
