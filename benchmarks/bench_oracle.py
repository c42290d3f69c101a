"""The synthetic oracle experiment: MLE against every training method of the library, over a
temperature sweep, several seeds (SeqGAN's synthetic benchmark, made conditional).

Usage::

    python benchmarks/bench_oracle.py --quick                        # seconds: the CI smoke run
    python benchmarks/bench_oracle.py --plot frontier.png   # the full run, seeds 0 1: ~25 min on 2 shared cores (RESULTS.md)
    python benchmarks/bench_oracle.py --methods mle "ss parallel" --seeds 0 1 2

Task (:class:`hf_seqgan.oracle.OracleTask`): a random BART with large weights is ``p(y | x)``;
sources are random token strings, targets its samples (fixed length, content tokens only). Every
method trains a fresh tiny BART student of one seed on the same training pairs in the same order:

- **MLE**: `Seq2SeqTrainer`, ``steps`` optimizer steps;
- **SS parallel / SS autoregressive**: `ScheduledSamplingTrainer` (sampled tokens, gold probability
  1 -> 0.5 over the run), ``steps`` steps from scratch, as MLE;
- **professor forcing**: `ProfessorForcingTrainer` (adversarial weight 0 for the first fifth of the
  run, ramped to 1 by two fifths), ``steps`` steps from scratch;
- the adversarial modes of `AdversarialTrainer` start, as in SeqGAN, **from the MLE student** of the
  same seed, pre-train the discriminator for ``d_pretrain`` steps, then train the generator for
  ``adv_steps`` steps with no MLE term: **REINFORCE** (sequence reward, moving-average baseline),
  **REINFORCE + MC** (Monte-Carlo rollouts per prefix, SeqGAN), **step-level** (the discriminator
  scores every prefix) and **Gumbel** (straight-through Gumbel-softmax into the discriminator);
- **MLE + more steps**: the MLE student trained ``adv_steps`` more steps with the adversarial
  phase's learning rate: the control for the adversarial modes' extra steps.

Each student is then evaluated on held-out oracle pairs at every temperature of the sweep
(:meth:`OracleTask.evaluate`): **NLL_oracle** (the oracle's NLL of the student's samples, quality)
and **NLL_test** (the student's NLL of the held-out oracle samples under the tempered
distribution, coverage), self-BLEU and distinct-2 of the samples. Reported: mean ± sd over
seeds per method and temperature, the frontier plot, and the comparison "Language GANs Falling
Short" asks for: each method at T=1 against **MLE at the temperature that gives the same
NLL_test** (linear interpolation along MLE's sweep).

The figures are nats per token on a tiny task: they are not comparable in scale with SeqGAN's
Table 1 (an unconditional LSTM, vocabulary 5,000, length 20: NLL_oracle MLE 9.038, scheduled
sampling 8.985, PG-BLEU 8.946, SeqGAN 8.736).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import os
import statistics
import sys
import time
from pathlib import Path

import _bench_env  # noqa: E402  (offline; the package and the sibling scripts importable)

from transformers import DataCollatorForSeq2Seq, PrinterCallback, Seq2SeqTrainer, Seq2SeqTrainingArguments  # noqa: E402

from hf_seqgan.evaluation import mean_sweeps, plot_frontier, sweep_table  # noqa: E402
from hf_seqgan.oracle import OracleTask  # noqa: E402
from hf_seqgan.tiny import build_tiny_model  # noqa: E402
from hf_seqgan.trainers.adversarial import AdversarialConfig, AdversarialTrainer  # noqa: E402
from hf_seqgan.trainers.scheduled_sampling import ScheduledSamplingConfig, ScheduledSamplingTrainer  # noqa: E402

from _timing import begin  # noqa: E402
from bench_scheduled_sampling import _args  # noqa: E402  (the same training arguments)


@dataclasses.dataclass
class Settings:
    """One run's sizes; ``quick()`` is the CI smoke size."""

    seeds: tuple = (0, 1)
    oracle_seed: int = 0
    vocab_size: int = 50
    source_length: int = 4
    target_length: int = 12
    init_std: float = 0.5
    train_size: int = 4000
    test_size: int = 512
    d_model: int = 32  # the student: BART, 2 + 2 layers, 4 heads
    ffn: int = 128
    batch: int = 32
    steps: int = 250  # MLE is near its plateau by then (NLL_test 2.93 at 200 steps, 2.90 at 600)
    learning_rate: float = 3e-3
    adv_steps: int = 100
    adv_learning_rate: float = 5e-4
    d_pretrain: int = 25
    rollouts: int = 2
    temperatures: tuple = (1.2, 1.0, 0.8, 0.6, 0.4)
    threads: int = 1

    @classmethod
    def quick(cls) -> "Settings":
        return cls(seeds=(0,), train_size=64, test_size=32, steps=4, adv_steps=2, d_pretrain=1, rollouts=2, temperatures=(1.0, 0.5))


# ------------------------------------------------------------------ the methods
def _train(trainer_cls, args_cls, student, task, train, s: Settings, seed: int, steps: int, lr: float, output_dir: str, **fields):
    args = _args(args_cls, output_dir, fields, seed=seed, max_steps=steps, per_device_train_batch_size=s.batch, learning_rate=lr,
                 logging_steps=max(1, steps // 4), warmup_steps=max(1, steps // 20))
    kwargs = dict(train_dataset=train, processing_class=task.tokenizer, data_collator=DataCollatorForSeq2Seq(task.tokenizer))
    trainer = trainer_cls(student, args=args, **kwargs)
    trainer.remove_callback(PrinterCallback)  # keep stdout for the tables
    trainer.train()
    return trainer.model


def _mle(student, task, train, s, seed, out):
    return _train(Seq2SeqTrainer, Seq2SeqTrainingArguments, student, task, train, s, seed, s.steps, s.learning_rate, out)


def _scheduled_sampling(mode):
    def run(student, task, train, s, seed, out):
        ramp = f"linear:start=1,end=0.5,steps={s.steps}"
        return _train(ScheduledSamplingTrainer, ScheduledSamplingConfig, student, task, train, s, seed, s.steps, s.learning_rate, out,
                      gold_probability=ramp, prediction="sample", mode=mode)
    return run


def _professor_forcing(student, task, train, s, seed, out):
    from hf_seqgan.trainers.professor_forcing import ProfessorForcingConfig, ProfessorForcingTrainer

    ramp = f"piecewise:0=0,{max(1, s.steps // 5)}=0,{max(2, 2 * s.steps // 5)}=1"
    return _train(ProfessorForcingTrainer, ProfessorForcingConfig, student, task, train, s, seed, s.steps, s.learning_rate, out,
                  adversarial_weight=ramp)


def _mle_more(mle_model, task, train, s, seed, out):
    return _train(Seq2SeqTrainer, Seq2SeqTrainingArguments, mle_model, task, train, s, seed, s.adv_steps, s.adv_learning_rate, out)


def _adversarial(monte_carlo: bool = False, **fields):
    def run(mle_model, task, train, s, seed, out):
        if monte_carlo:
            fields["rollouts"] = s.rollouts
        return _train(AdversarialTrainer, AdversarialConfig, mle_model, task, train, s, seed, s.d_pretrain + s.adv_steps, s.adv_learning_rate, out,
                      mle_weight="0", max_new_tokens=task.target_length, min_new_tokens=task.target_length,
                      discriminator_pretrain_steps=s.d_pretrain, discriminator_learning_rate=1e-3, **fields)
    return run


FROM_SCRATCH = {
    "MLE": _mle,
    "SS parallel": _scheduled_sampling("parallel"),
    "SS autoregressive": _scheduled_sampling("autoregressive"),
    "professor forcing": _professor_forcing,
}
FROM_MLE = {  # start from the MLE student of the same seed
    "MLE + more steps": _mle_more,
    "REINFORCE": _adversarial(generator_update="reinforce", baseline="moving_average"),
    "REINFORCE + MC": _adversarial(generator_update="reinforce", baseline="moving_average", monte_carlo=True),
    "step-level": _adversarial(generator_update="reinforce", baseline="moving_average", step_rewards=True),
    "Gumbel": _adversarial(generator_update="gumbel", tau="1"),
}


def _student(task, s: Settings, seed: int):
    student = build_tiny_model("bart", task.tokenizer, seed=seed, d_model=s.d_model, ffn=s.ffn)
    student.generation_config.suppress_tokens = task.special_token_ids  # the trainers' own decodes emit content tokens only
    return student


# ------------------------------------------------------------------ the comparison at equal coverage
def mle_at_same_coverage(mle_rows: list[dict], nll_test: float):
    """MLE cooled to the coverage of another model: along MLE's sweep at temperatures <= 1 (where
    cooling trades NLL_test for NLL_oracle), the temperature at which MLE's NLL_test equals
    ``nll_test`` and MLE's NLL_oracle there (linear interpolation between neighbouring settings).
    ``(None, reason)`` when no such temperature is in the sweep."""
    points = sorted(((r["temperature"], r["nll_test"], r["nll_oracle"]) for r in mle_rows if r["temperature"] <= 1.0 and r.get("nll_test") is not None), reverse=True)
    if not points:
        return None, "MLE's sweep has no temperature <= 1"
    if nll_test < points[0][1]:
        return None, "better NLL_test than MLE at T=1"
    for (k0, t0, o0), (k1, t1, o1) in zip(points, points[1:]):
        if min(t0, t1) <= nll_test <= max(t0, t1):
            w = 0.0 if t1 == t0 else (nll_test - t0) / (t1 - t0)
            return (o0 + w * (o1 - o0), k0 + w * (k1 - k0)), None
    return None, f"worse NLL_test than MLE at T={points[-1][0]:g}"


def verdict_table(means: dict[str, list[dict]]) -> str:
    """Each method at T=1 against MLE cooled to the same NLL_test, and the same difference at every
    setting of the method's sweep that MLE's sweep reaches (negative: the method is below MLE's curve)."""
    mle = means["MLE"]
    lines = ["| method | NLL_test at T=1 | NLL_oracle at T=1 | MLE cooled to the same NLL_test: T, NLL_oracle | method − cooled MLE | "
             "the same at each setting of the method (setting: Δ) |", "|---|---|---|---|---|---|"]
    for name, rows in means.items():
        row = next(r for r in rows if r["temperature"] == 1.0 and r["top_p"] == 1.0)
        match, reason = mle_at_same_coverage(mle, row["nll_test"])
        cell = f"T={match[1]:.2f}, {match[0]:.3f}" if match else reason
        delta = f"{row['nll_oracle'] - match[0]:+.3f}" if match else "–"
        every = []
        for r in rows:
            m, _ = mle_at_same_coverage(mle, r["nll_test"])
            if m is not None:
                every.append(f"{r['setting']}: {r['nll_oracle'] - m[0]:+.3f}")
        lines.append(f"| {name} | {row['nll_test']:.3f} | {row['nll_oracle']:.3f} | {cell} | {delta} | {', '.join(every) or '–'} |")
    return "\n".join(lines)


# ------------------------------------------------------------------ main
def run(s: Settings, methods: list[str], output_dir: str, plot: str, json_path: str | None) -> None:
    task = OracleTask.build(seed=s.oracle_seed, vocab_size=s.vocab_size, source_length=s.source_length, target_length=s.target_length,
                            init_std=s.init_std)
    train, test = task.sample_dataset(s.train_size, seed=1), task.sample_dataset(s.test_size, seed=2)
    entropy = task.entropy(test["input_ids"], test["labels"])
    print(f"{task.describe()}; {s.train_size} training pairs, {s.test_size} held out; the oracle's entropy rate {entropy:.3f} "
          f"nats/token (its NLL_oracle = NLL_test at T=1)")
    print(f"students: BART d_model {s.d_model}, 2+2 layers, FFN {s.ffn}; batch {s.batch}, {s.steps} steps at lr {s.learning_rate} "
          f"(adversarial modes: + {s.d_pretrain} discriminator steps and {s.adv_steps} generator steps at lr {s.adv_learning_rate}, "
          f"no MLE term; MC: {s.rollouts} rollouts per prefix); seeds {list(s.seeds)}; temperatures {list(s.temperatures)}\n")
    sweeps: dict[str, list] = {m: [] for m in methods}
    seconds: dict[str, list] = {m: [] for m in methods}
    for seed in s.seeds:
        mle_model = None
        for name in methods:
            start = time.perf_counter()
            if name in FROM_SCRATCH:
                model = FROM_SCRATCH[name](_student(task, s, seed), task, train, s, seed, output_dir)
                if name == "MLE":
                    mle_model = model
            else:
                if mle_model is None:
                    raise ValueError(f"{name} starts from the MLE student: keep 'MLE' in --methods, before it.")
                model = FROM_MLE[name](copy.deepcopy(mle_model), task, train, s, seed, output_dir)
            seconds[name].append(time.perf_counter() - start)
            rows = task.evaluate(model, test, temperatures=s.temperatures, seed=seed, metrics=("self_bleu", "distinct"))
            sweeps[name].append(rows)
            t1 = next(r for r in rows if r["temperature"] == 1.0)
            print(f"  seed {seed} {name}: T=1 NLL_oracle {t1['nll_oracle']:.3f} NLL_test {t1['nll_test']:.3f} "
                  f"({seconds[name][-1]:.0f} s training)", file=sys.stderr, flush=True)
    means = {name: mean_sweeps(runs) for name, runs in sweeps.items()}
    print(f"### NLL_oracle (quality) and NLL_test (coverage) per temperature, mean ± sd over seeds {list(s.seeds)}\n")
    print(sweep_table(means, columns=("nll_oracle", "nll_test", "self_bleu", "distinct_2")))
    if "MLE" in means:
        print("\n### Each method at T=1 against MLE at the temperature of equal NLL_test (lower NLL_oracle is better)\n")
        print(verdict_table(means))
        mle_t1 = [next(r for r in sweep if r["temperature"] == 1.0) for sweep in sweeps["MLE"]]
        print("\n### Per seed, T=1: NLL_oracle − MLE's (same seed)\n")
        print("| method | " + " | ".join(f"seed {x}" for x in s.seeds) + " | training s/run |")
        print("|---|" + "---|" * (len(s.seeds) + 1))
        for name, runs in sweeps.items():
            deltas = [next(r for r in sweep if r["temperature"] == 1.0)["nll_oracle"] - m["nll_oracle"] for sweep, m in zip(runs, mle_t1)]
            print(f"| {name} | " + " | ".join(f"{d:+.3f}" for d in deltas) + f" | {statistics.mean(seconds[name]):.0f} |")
    Path(plot).parent.mkdir(parents=True, exist_ok=True)
    plot_frontier(means, plot, x="nll_oracle", y="nll_test", xlabel="NLL_oracle of samples (quality; lower is better)",
                  ylabel="NLL_test of held-out oracle data (coverage; lower is better)",
                  title=f"Oracle task, {len(s.seeds)} seed(s): the temperature sweep of each method")
    print(f"\nFrontier plot: {plot}")
    if json_path:
        with open(json_path, "w") as f:
            json.dump({"settings": dataclasses.asdict(s), "entropy": entropy, "means": means, "sweeps": sweeps, "seconds": seconds}, f, indent=1)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="the CI smoke size (seconds)")
    parser.add_argument("--methods", nargs="+", help=f"methods by name, case-insensitive (default all): {list(FROM_SCRATCH) + list(FROM_MLE)}")
    parser.add_argument("--seeds", type=int, nargs="+")
    parser.add_argument("--steps", type=int, help="MLE / scheduled sampling / professor forcing steps")
    parser.add_argument("--adv_steps", type=int, help="generator steps of the adversarial modes (and of 'MLE + more steps')")
    parser.add_argument("--d_pretrain", type=int, help="discriminator-only steps before the adversarial modes' generator steps")
    parser.add_argument("--rollouts", type=int, help="Monte-Carlo rollouts per prefix (REINFORCE + MC)")
    parser.add_argument("--threads", type=int, help="torch threads (default 1: a shared machine)")
    parser.add_argument("--plot", default=None, help="where to write the frontier plot (PNG)")
    parser.add_argument("--json", default=None, help="write the mean sweeps (quality figures, not speed ratios) to this JSON file")
    parser.add_argument("--output_dir", default=str(Path(os.environ.get("TMPDIR", "/tmp")) / "bench_oracle"))
    cli = parser.parse_args(argv)
    s = _bench_env.with_overrides(Settings.quick() if cli.quick else Settings(), cli, "steps", "adv_steps", "d_pretrain", "rollouts", "threads", "seeds")
    known = {name.lower(): name for name in list(FROM_SCRATCH) + list(FROM_MLE)}
    methods = list(known.values())
    if cli.methods:
        unknown = [m for m in cli.methods if m.lower() not in known]
        if unknown:
            parser.error(f"unknown methods {unknown}; choose from {list(known.values())}")
        methods = [known[m.lower()] for m in cli.methods]
        if any(m in FROM_MLE for m in methods) and "MLE" not in methods:
            methods.insert(0, "MLE")
    methods.sort(key=lambda m: list(known.values()).index(m))
    begin(s.threads)
    run(s, methods, cli.output_dir, cli.plot or str(Path(cli.output_dir) / "frontier.png"), cli.json)


if __name__ == "__main__":
    main()
