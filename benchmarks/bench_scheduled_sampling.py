"""Benchmark of ScheduledSamplingTrainer: step time against Seq2SeqTrainer, and quality on an
oracle task, each measured side by side in one run.

Usage::

    python benchmarks/bench_scheduled_sampling.py                  # both parts (see RESULTS_scheduled_sampling.md)
    python benchmarks/bench_scheduled_sampling.py --part speed     # only the step times
    python benchmarks/bench_scheduled_sampling.py --part speed --size t5-small   # the step times at the public t5-small shape
    python benchmarks/bench_scheduled_sampling.py --part quality --seeds 0 1 2 3 4
    python benchmarks/bench_scheduled_sampling.py --quick          # seconds: the CI smoke run
    python benchmarks/bench_scheduled_sampling.py --part speed --json rows.json   # step-time ratios as JSON rows (run_all.py)

1. **Step time.** One optimizer step (``trainer.training_step`` = forward + backward, then
   ``optimizer.step()``) of each variant against `Seq2SeqTrainer` on copies of the same tiny model
   and the same batch (batch 16, source 64, target 32 tokens, no padding). Mixing variants use a
   constant gold probability of 0.5, so the extra work always runs. In every repeat all variants
   run once, in an order rotated from repeat to repeat, with the garbage collector paused, after
   one untimed warm-up step each; the ratio is taken against `Seq2SeqTrainer` *in the same
   repeat*, and min / median / max are over the repeats.
2. **Quality (oracle task, as in SeqGAN, Yu et al. 2017).** :class:`hf_seqgan.oracle.OracleTask`:
   a randomly initialised teacher BART with large weights (``init_std``) is the oracle: sources are
   random token strings, targets are the teacher's samples (content tokens only, fixed length).
   ``benchmarks/bench_oracle.py`` runs the same task for every method of the library over a
   temperature sweep. Students (a fresh tiny BART per seed) are trained with plain MLE
   (`Seq2SeqTrainer`) and with scheduled sampling for the same number of steps on the same data
   and order. Reported per method, mean ± standard deviation over seeds: the oracle NLL (nats per
   token, under the teacher) of the student's samples at temperature 1 and 0.5 (what exposure
   bias is said to hurt: the student continues its own prefixes), and the student's NLL on
   held-out teacher samples (what MLE optimises); plus the per-seed difference to MLE.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import time
from pathlib import Path

import _bench_env  # noqa: E402  (offline; the package and the sibling scripts importable)

import torch  # noqa: E402
from transformers import DataCollatorForSeq2Seq, PrinterCallback, Seq2SeqTrainer, Seq2SeqTrainingArguments  # noqa: E402

from hf_seqgan.oracle import OracleTask  # noqa: E402
from hf_seqgan.synthetic import summarization_pairs  # noqa: E402
from hf_seqgan.tiny import build_tiny_model, train_tokenizer  # noqa: E402
from hf_seqgan.trainers import ScheduledSamplingConfig, ScheduledSamplingTrainer  # noqa: E402

from _timing import begin, interleaved, json_row, ratio_header, ratio_rows, write_rows  # noqa: E402

_interleaved = interleaved  # the name bench_grpo.py imports from here

SPEED_VARIANTS = {  # name -> ScheduledSamplingConfig fields (None: Seq2SeqTrainer)
    "Seq2SeqTrainer": None,
    "p=1 (no mixing)": dict(gold_probability="1"),
    "parallel hard argmax": dict(gold_probability="0.5"),
    "parallel hard sample": dict(gold_probability="0.5", prediction="sample"),
    "parallel softmax": dict(gold_probability="0.5", mixing="softmax"),
    "parallel gumbel": dict(gold_probability="0.5", mixing="gumbel"),
    "parallel softmax + backprop": dict(gold_probability="0.5", mixing="softmax", backprop_predictions=True),
    "autoregressive argmax": dict(gold_probability="0.5", mode="autoregressive"),
}


def quality_methods(steps: int) -> dict:
    """name -> ScheduledSamplingConfig fields (None: plain MLE with Seq2SeqTrainer)."""
    ramp = f"linear:start=1,end=0.5,steps={steps}"
    return {
        "MLE (Seq2SeqTrainer)": None,
        "parallel hard sample, p 1->0.5": dict(gold_probability=ramp, prediction="sample"),
        "parallel softmax, p 1->0.5": dict(gold_probability=ramp, mixing="softmax"),
        "autoregressive sample, p 1->0.5": dict(gold_probability=ramp, mode="autoregressive", prediction="sample"),
    }


@dataclasses.dataclass
class Settings:
    """What one run measures; ``quick()`` is the CI smoke size."""

    families: tuple = ("bart", "t5")
    batch: int = 16
    source_length: int = 64
    target_length: int = 32
    repeats: int = 15
    d_model: int = 64  # tiny models: 2 encoder + 2 decoder layers, 4 heads
    ffn: int = 256
    vocab_size: int = 500
    threads: int = 1
    size: str = "tiny"  # the step-time models: tiny, or the public t5-small / bart-base shape (--size)
    # quality
    seeds: tuple = (0, 1, 2)
    steps: int = 600
    train_size: int = 4000
    eval_size: int = 256
    q_batch: int = 32
    q_source: int = 16
    q_target: int = 20
    learning_rate: float = 3e-3
    teacher_init_std: float = 0.4

    @classmethod
    def quick(cls) -> "Settings":
        return cls(families=("bart",), repeats=2, seeds=(0,), steps=4, train_size=64, eval_size=16, q_batch=16)


def _tokenizer(settings: Settings):
    """The BPE tokenizer of the tiny models, or the full vocabulary of ``settings.size``'s shape."""

    def tiny():
        pairs = summarization_pairs(400, seed=0)
        return train_tokenizer([p["article"] for p in pairs] + [p["headline"] for p in pairs], vocab_size=settings.vocab_size)

    return _bench_env.size_tokenizer(getattr(settings, "size", "tiny"), tiny)


def _model(settings: Settings, tok, family: str):
    """A seeded model of ``family`` at ``settings.size`` (tiny: d_model and FFN of the settings)."""
    return _bench_env.build_model(getattr(settings, "size", "tiny"), tok, family, d_model=settings.d_model, ffn=settings.ffn)


def _random_ids(rows: int, length: int, tok, generator: torch.Generator) -> torch.Tensor:
    ids = torch.randint(10, len(tok), (rows, length), generator=generator)  # (R, L), no special tokens
    ids[:, -1] = tok.eos_token_id
    return ids


def _args(cls, output_dir: str, fields: dict | None, **overrides):
    common = dict(report_to="none", use_cpu=True, save_strategy="no", disable_tqdm=True, **overrides)
    return cls(output_dir=output_dir, **common, **(fields or {}))


def _trainer(model, fields: dict | None, tok, output_dir: str, train_dataset=None, **overrides):
    collator = DataCollatorForSeq2Seq(tok)
    if fields is None:
        args = _args(Seq2SeqTrainingArguments, output_dir, None, **overrides)
        trainer = Seq2SeqTrainer(model, args, train_dataset=train_dataset, data_collator=collator, processing_class=tok)
    else:
        args = _args(ScheduledSamplingConfig, output_dir, fields, **overrides)
        trainer = ScheduledSamplingTrainer(model, args, train_dataset=train_dataset, data_collator=collator, processing_class=tok)
    trainer.remove_callback(PrinterCallback)  # keep stdout for the tables
    return trainer


# ------------------------------------------------------------------ 1. step time
def _optimizer_step(trainer, batch, count) -> None:
    trainer.training_step(trainer.model, dict(batch), count)
    trainer.optimizer.step()
    trainer.optimizer.zero_grad(set_to_none=True)


def bench_speed(settings: Settings, tok, output_dir: str, records: list | None = None) -> None:
    print(f"\n### Step time, {settings.size} models, batch {settings.batch}, source {settings.source_length}, target {settings.target_length} "
          f"({settings.repeats} repeats; ratio = variant / Seq2SeqTrainer in the same repeat)\n")
    ratio_header("model", "variant")
    g = torch.Generator().manual_seed(0)
    for family in _bench_env.size_families(settings.size, settings.families):
        base = _model(settings, tok, family)
        batch = {"input_ids": _random_ids(settings.batch, settings.source_length, tok, g),
                 "labels": _random_ids(settings.batch, settings.target_length, tok, g)}
        batch["attention_mask"] = torch.ones_like(batch["input_ids"])
        count = batch["labels"].ne(-100).sum()
        trainers = {}
        for name, fields in SPEED_VARIANTS.items():
            model = _model(settings, tok, family)
            model.load_state_dict(base.state_dict())
            trainer = _trainer(model, fields, tok, output_dir)
            trainer.create_optimizer()
            trainer.current_gradient_accumulation_steps = 1
            _optimizer_step(trainer, batch, count)  # warm-up
            trainers[name] = trainer
        times = interleaved({name: (lambda t=t: _optimizer_step(t, batch, count)) for name, t in trainers.items()}, settings.repeats)
        for name, ratios in ratio_rows(times, "Seq2SeqTrainer", family).items():
            if records is not None and name != "Seq2SeqTrainer":
                goal = "<= 1.4" if name.startswith("parallel") and "backprop" not in name else None  # the scheduled-sampling issue's goal for the parallel mode
                records.append(json_row("scheduled_sampling", f"optimizer step, {family}: {name}", "Seq2SeqTrainer step", ratios, goal))


# ------------------------------------------------------------------ 2. quality on an oracle task
def _oracle(settings: Settings):
    """The oracle (the old in-script teacher's sizes), its training pairs and held-out pairs."""
    task = OracleTask.build(seed=1234, vocab_size=settings.vocab_size, source_length=settings.q_source, target_length=settings.q_target,
                            d_model=settings.d_model, layers=2, ffn=settings.ffn, init_std=settings.teacher_init_std)
    return task, task.sample_dataset(settings.train_size, seed=1234), task.sample_dataset(settings.eval_size, seed=1235)


def _evaluate(student, task, test, seed: int) -> dict:
    rows = task.evaluate(student, test, temperatures=(1.0, 0.5), seed=seed)
    return {"oracle NLL, samples": rows[0]["nll_oracle"], "oracle NLL, samples τ=0.5": rows[1]["nll_oracle"], "test NLL": rows[0]["nll_test"]}


def bench_quality(settings: Settings, output_dir: str, only: list[str] | None = None) -> None:
    task, train, test = _oracle(settings)
    methods = {name: fields for name, fields in quality_methods(settings.steps).items()
               if fields is None or not only or any(name.lower().startswith(o.lower()) for o in only)}
    results = {name: [] for name in methods}
    seconds = {name: [] for name in methods}
    for seed in settings.seeds:
        for name, fields in methods.items():
            student = build_tiny_model("bart", task.tokenizer, seed=seed, d_model=settings.d_model, ffn=settings.ffn)
            student.generation_config.suppress_tokens = task.special_token_ids  # the autoregressive decode emits content tokens only
            trainer = _trainer(student, fields, task.tokenizer, output_dir, train_dataset=train, max_steps=settings.steps,
                               per_device_train_batch_size=settings.q_batch, learning_rate=settings.learning_rate,
                               warmup_steps=max(1, settings.steps // 20), logging_steps=settings.steps, seed=seed)
            start = time.perf_counter()
            trainer.train()
            seconds[name].append(time.perf_counter() - start)
            results[name].append(_evaluate(student, task, test, seed))
            print(f"  seed {seed} {name}: " + ", ".join(f"{k} {v:.4f}" for k, v in results[name][-1].items()), file=sys.stderr)
    reference = task.nll(test["input_ids"], test["labels"])
    keys = list(next(iter(results.values()))[0])
    print(f"\n### Oracle task: {settings.train_size} pairs, source {settings.q_source}, target {settings.q_target}, "
          f"{settings.steps} steps of batch {settings.q_batch}, seeds {list(settings.seeds)} "
          f"(teacher's own samples: oracle NLL {reference:.3f})\n")
    print("| method | " + " | ".join(keys) + " | Δ vs MLE per seed (oracle NLL, samples) | s/run |")
    print("|---|" + "---|" * (len(keys) + 2))
    mle = results["MLE (Seq2SeqTrainer)"]

    def cell(values):
        return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}" if len(values) > 1 else f"{values[0]:.3f}"

    for name, runs in results.items():
        deltas = [r["oracle NLL, samples"] - m["oracle NLL, samples"] for r, m in zip(runs, mle)]
        print(f"| {name} | " + " | ".join(cell([r[k] for r in runs]) for k in keys)
              + f" | {' '.join(f'{d:+.3f}' for d in deltas)} | {statistics.mean(seconds[name]):.0f} |")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="the CI smoke size (seconds)")
    parser.add_argument("--part", choices=["speed", "quality", "both"], default="both")
    parser.add_argument("--repeats", type=int, help="step-time repeats")
    parser.add_argument("--seeds", type=int, nargs="+", help="quality seeds")
    parser.add_argument("--steps", type=int, help="quality training steps")
    parser.add_argument("--methods", nargs="+", help="quality methods to run beside MLE, by name prefix (e.g. 'parallel hard')")
    parser.add_argument("--threads", type=int, help="torch threads")
    _bench_env.add_size_argument(parser)
    parser.add_argument("--json", default=None, help="write the step-time ratios as JSON rows to this file (see benchmarks/run_all.py)")
    parser.add_argument("--output_dir", default=str(Path(os.environ.get("TMPDIR", "/tmp")) / "bench_scheduled_sampling"))
    cli = parser.parse_args(argv)
    settings = _bench_env.with_overrides(Settings.quick() if cli.quick else Settings(), cli, "repeats", "steps", "threads", "seeds", "size")
    begin(settings.threads)
    tok = _tokenizer(settings)
    records: list = []
    if cli.part in ("speed", "both"):
        bench_speed(settings, tok, cli.output_dir, records)
    if cli.part in ("quality", "both"):
        bench_quality(settings, cli.output_dir, cli.methods)
    write_rows(cli.json, records)


if __name__ == "__main__":
    main()
