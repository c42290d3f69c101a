"""The examples run end to end for a few steps, offline, and write a model that reloads."""

import json
import os
import subprocess
import sys

import pytest
import torch
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

from tests.conftest import ROOT


def _run(script, args, tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / script), *args], cwd=tmp_path, env=env,
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def _check_saved_model(out_dir):
    tok = AutoTokenizer.from_pretrained(out_dir)
    model = AutoModelForSeq2SeqLM.from_pretrained(out_dir)
    batch = tok(["the bank of peru signed a deal"], return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**batch, max_new_tokens=5, do_sample=False)
    assert out.shape[0] == 1


def test_run_summarization_embedded_default(tmp_path):
    out_dir = tmp_path / "out"
    stdout = _run(
        "run_summarization.py",
        ["--output_dir", str(out_dir), "--max_steps", "6", "--synthetic_train_size", "200", "--synthetic_eval_size", "16", "--logging_steps", "3"],
        tmp_path,
    )
    assert "Data:   synthetic" in stdout and "eval_rouge1" in stdout and "lead8_rouge1" in stdout
    results = json.loads((out_dir / "results.json").read_text())
    assert {"train_loss", "eval_loss", "eval_rouge1", "eval_rougeL", "lead8_rouge2"} <= set(results)
    assert all(v == v for v in results.values())  # no NaN
    _check_saved_model(out_dir)


def test_run_summarization_on_gigaword_pairs(tmp_path, shared_data):
    """Real text: the paired Gigaword validation sentences, split into train/validation files."""
    articles = (shared_data / "gigaword" / "valid.article.txt").read_text(encoding="utf-8").splitlines()
    headlines = (shared_data / "gigaword" / "valid.headline.txt").read_text(encoding="utf-8").splitlines()
    rows = [{"article": a, "headline": h} for a, h in zip(articles, headlines)]
    for name, part in (("train.jsonl", rows[:300]), ("valid.jsonl", rows[300:332])):
        with open(tmp_path / name, "w", encoding="utf-8") as f:
            f.writelines(json.dumps(r) + "\n" for r in part)
    out_dir = tmp_path / "out"
    stdout = _run(
        "run_summarization.py",
        ["--train_file", str(tmp_path / "train.jsonl"), "--validation_file", str(tmp_path / "valid.jsonl"),
         "--output_dir", str(out_dir), "--max_steps", "4", "--tiny_family", "t5", "--max_source_length", "48", "--max_target_length", "16"],
        tmp_path,
    )
    assert "train.jsonl" in stdout and "eval_rouge1" in stdout
    _check_saved_model(out_dir)


def test_run_summarization_rejects_bad_columns(tmp_path):
    (tmp_path / "t.jsonl").write_text(json.dumps({"text": "a b", "summary": "a"}) + "\n")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "run_summarization.py"), "--train_file", str(tmp_path / "t.jsonl"), "--output_dir", str(tmp_path / "o")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode != 0
    assert "Column 'article' not in train data" in proc.stderr and "--text_column" in proc.stderr


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))
