"""Adversarial *training* with the seq2seq ratio discriminator against MLE given the same extra
steps, on the synthetic oracle task (issue 15, its training part).

Usage::

    python benchmarks/bench_adversarial_oracle.py --quick                      # seconds: the CI smoke run
    python benchmarks/bench_adversarial_oracle.py --json adv.json              # the full run, seeds 0 1 2 (RESULTS.md)
    python benchmarks/bench_adversarial_oracle.py --seeds 0 --eval val --methods "log-ratio + MLE"   # choosing settings
    python benchmarks/bench_adversarial_oracle.py --report adv.json            # the tables of a saved run again
    python benchmarks/bench_adversarial_oracle.py --reuse adv.json --methods "log-ratio, step rewards" --json step.json
        # one more method: the student and the discriminator retrained (checked against the saved ones), the
        # controls and the other methods taken from the saved run

Task and student: ``bench_oracle.py``'s (the oracle BART of seed 0, 4,000 training pairs, a BART
student trained 250 MLE steps per seed), imported. Per seed:

1. **The discriminator**: ``Seq2SeqDiscriminator(head="ratio")`` built from the student (logit
   ``Σ_t log p_copy(y_t) − log p_ref(y_t)``, ``p_ref`` a frozen copy of the generator), trained by
   ``bench_discriminator.train_d`` (``train_discriminator``: the student's training pairs against
   fresh student samples, early stopping on 500 validation pairs) for at most ``d_steps`` steps; its
   held-out accuracy on those validation pairs is ``d_heldout_acc``.
2. **The methods**: `AdversarialTrainer` REINFORCE from the student with that discriminator, for
   ``gen_steps`` generator steps (one discriminator update per step, as the trainer does; the
   trainer keeps ``p_ref`` equal to the current generator, so the reward ``log_ratio`` estimates
   ``log p_data − log p_G``, and REINFORCE on it descends KL(p_G || p_copy)). Variants in
   :data:`METHODS`: the log-ratio reward alone, mixed with the MLE term, MaliGAN's normalised
   weights with the MLE term, and the log-ratio reward per token (``step_rewards=True``,
   ``gamma=1``: with the ratio head each token is rewarded with its own log-ratio increment, so
   its return is the log-ratio to go, and the leave-one-out baseline of token t is the other
   samples' mean return at t; D scores all T prefixes of each sample, T times the scoring of the
   sequence-level reward).
3. **The controls**: the same student trained ``gen_steps`` more MLE steps with the same learning
   rate and batch ("MLE + K"), and as many more steps as the discriminator and the generator took
   together ("MLE + all steps": pre-training + K generator + K discriminator steps).
4. **Evaluation**: the temperature sweep of every model (``bench_discriminator.mle_frontier``:
   NLL_oracle, NLL_test, distinct-4) on the 512 test pairs (``--eval val``: on the validation
   pairs, for choosing settings without the test set), and each method against a control's sweep
   at equal NLL_test (``bench_oracle.mle_at_same_coverage``; negative: below its frontier).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import functools
import json
import os
import statistics
import sys
import time
from pathlib import Path

import _bench_env  # noqa: E402  (offline; the package and the sibling scripts importable)

from transformers import Seq2SeqTrainer, Seq2SeqTrainingArguments  # noqa: E402

from _timing import begin  # noqa: E402
from bench_discriminator import Settings as DiscriminatorSettings  # noqa: E402
from bench_discriminator import _mean_sd, _texts, mle_frontier, train_d  # noqa: E402
from bench_oracle import Settings as OracleSettings  # noqa: E402
from bench_oracle import _mle, _student, _train, mle_at_same_coverage  # noqa: E402
from hf_seqgan.oracle import OracleTask  # noqa: E402
from hf_seqgan.trainers.adversarial import AdversarialConfig, AdversarialTrainer  # noqa: E402

#: the generator updates compared (AdversarialConfig fields); the weight of the adversarial term
#: comes from Settings.adversarial_weight
METHODS = {
    "log-ratio": dict(reward="log_ratio", mle_weight="0"),
    "log-ratio + MLE": dict(reward="log_ratio", mle_weight="1"),
    "MaliGAN + MLE": dict(reward="maligan", mle_weight="1"),
    "log-ratio, step rewards": dict(reward="log_ratio", mle_weight="0", step_rewards=True, gamma=1.0),
}
CONTROLS = ("MLE + K", "MLE + all steps")


@dataclasses.dataclass
class Settings:
    """One run's sizes; ``quick()`` is the CI smoke size."""

    seeds: tuple = (0, 1, 2)
    methods: tuple = ("log-ratio", "log-ratio + MLE", "MaliGAN + MLE", "log-ratio, step rewards")
    gen_steps: int = 500  # K: generator steps of the methods, and MLE steps of the "MLE + K" control
    d_steps: int = 1000  # the most discriminator pre-training steps (batch d_batch, early stopping)
    learning_rate: float = 5e-4  # the generator's in the methods and the controls' (batch: the oracle's 32)
    adversarial_weight: float = 0.3  # the REINFORCE term (summed over a sample's tokens) next to the per-token MLE term
    num_samples: int = 4  # samples per source: the leave-one-out baseline is the other samples' mean reward
    baseline: str = "leave_one_out"
    discriminator_learning_rate: float = 1e-3  # in the adversarial phase too
    eval: str = "test"
    discriminator: DiscriminatorSettings = dataclasses.field(default_factory=lambda: DiscriminatorSettings(eval_every=50))
    oracle: OracleSettings = dataclasses.field(default_factory=OracleSettings)

    @classmethod
    def quick(cls) -> "Settings":
        return cls(seeds=(0,), gen_steps=3, d_steps=4, num_samples=2, discriminator=DiscriminatorSettings.quick(), oracle=OracleSettings.quick())


def _adversarial(student, disc, task, train, s: Settings, seed: int, fields: dict, out: str):
    """AdversarialTrainer REINFORCE from ``student`` against the (pre-trained) ``disc``: the trained
    generator and the trainer's log history."""
    trainers = []

    def make(*args, **kwargs):
        trainers.append(AdversarialTrainer(*args, discriminator=disc, **kwargs))
        return trainers[-1]

    model = _train(make, AdversarialConfig, student, task, train, s.oracle, seed, s.gen_steps, s.learning_rate, out,
                   generator_update="reinforce", baseline=s.baseline, num_samples=s.num_samples, adversarial_weight=str(s.adversarial_weight),
                   max_new_tokens=task.target_length, min_new_tokens=task.target_length,
                   discriminator_learning_rate=s.discriminator_learning_rate, **fields)
    return model, trainers[-1].state.log_history


def _in_training(history: list[dict]) -> dict:
    """Means over the adversarial phase's logged steps of what the discriminator and the reward did."""
    keys = ("d_heldout_acc", "d_heldout_auc", "reward", "discriminator_reward", "mle_loss", "pg_loss")
    return {k: statistics.fmean(r[k] for r in history if k in r) for k in keys if any(k in r for r in history)}


def _reused(s: Settings, path) -> dict:
    """The saved run ``path`` to take the controls and the other methods from: its settings must be
    ``s``'s but for the seeds and the methods."""
    with open(path) as f:
        saved = json.load(f)
    ours = json.loads(json.dumps(dataclasses.asdict(s), default=str))
    differ = [k for k in ours if k not in ("seeds", "methods") and saved["settings"].get(k) != ours[k]]
    if differ:
        raise SystemExit(f"--reuse {path}: its settings differ in {differ}; the saved models are not comparable")
    missing = [seed for seed in s.seeds if str(seed) not in saved["seeds"]]
    if missing:
        raise SystemExit(f"--reuse {path} has no seed(s) {missing}")
    return saved


def _check_same(name: str, ours, saved, tol: float = 1e-6) -> float:
    """The largest difference between a retrained model's numbers and the saved run's (printed)."""
    pairs = [(a[k], b[k]) for a, b in zip(ours, saved) for k in a if isinstance(a[k], float)] if isinstance(ours, list) else \
        [(ours[k], saved[k]) for k in ours if isinstance(ours[k], (int, float)) and k != "seconds"]
    diff = max((abs(a - b) for a, b in pairs), default=0.0)
    print(f"    {name} against the reused run's: largest difference {diff:.2g}" + ("" if diff <= tol else "  (NOT the same model)"),
          file=sys.stderr, flush=True)
    return diff


def run(s: Settings, json_path, reuse=None) -> dict:
    o, ds = s.oracle, s.discriminator
    task = OracleTask.build(seed=o.oracle_seed, vocab_size=o.vocab_size, source_length=o.source_length, target_length=o.target_length, init_std=o.init_std)
    train, test, val = task.sample_dataset(o.train_size, seed=1), task.sample_dataset(o.test_size, seed=2), task.sample_dataset(ds.val_size, seed=3)
    held = val if s.eval == "val" else test
    out = str(Path(os.environ.get("TMPDIR", "/tmp")) / "bench_adversarial_oracle")
    print(f"{task.describe()}; {o.train_size} training pairs, {ds.val_size} validation pairs (the discriminator's early stopping), "
          f"evaluated on the {len(held['input_ids'])} {s.eval} pairs")
    print(f"student: {o.steps} MLE steps; discriminator: ratio head, at most {s.d_steps} steps, batch {ds.d_batch}, lr {ds.d_learning_rate}; "
          f"methods {list(s.methods)}: {s.gen_steps} generator steps at lr {s.learning_rate}, batch {o.batch}, adversarial weight "
          f"{s.adversarial_weight}, baseline {s.baseline}, {s.num_samples} sample(s) per source, 1 discriminator step per generator step "
          f"(lr {s.discriminator_learning_rate})\n", flush=True)
    saved = _reused(s, reuse) if reuse else None
    record = {"settings": dataclasses.asdict(s), "seeds": {}}
    if saved:
        record["reused_from"] = str(reuse)
    ds = dataclasses.replace(ds, d_steps=s.d_steps)
    for seed in s.seeds:
        t0 = time.perf_counter()
        student = _mle(_student(task, o, seed), task, train, o, seed, out).eval()
        disc, result = train_d(ds.design, student, task, train, val, ds, seed)
        per_seed = {"discriminator": {k: v for k, v in dataclasses.asdict(result).items() if k != "history"}, "sweeps": {}, "seconds": {},
                    "in_training": {}, "samples": {}}
        print(f"  seed {seed}: discriminator held-out acc {result.d_heldout_acc:.3f} AUC {result.d_heldout_auc:.3f} (best step {result.best_step} "
              f"of {result.steps}, {result.seconds:.0f} s)", file=sys.stderr, flush=True)
        models = {"student (MLE, 250 steps)": student}
        old = saved["seeds"][str(seed)] if saved else None
        for name in s.methods:
            start = time.perf_counter()
            models[name], history = _adversarial(copy.deepcopy(student), copy.deepcopy(disc), task, train, s, seed, METHODS[name], out)
            per_seed["seconds"][name] = time.perf_counter() - start
            per_seed["in_training"][name] = _in_training(history)
        extra = {"MLE + K": s.gen_steps, "MLE + all steps": result.steps + 2 * s.gen_steps}
        for name, steps in extra.items():
            if old:
                continue
            start = time.perf_counter()
            models[name] = _train(Seq2SeqTrainer, Seq2SeqTrainingArguments, copy.deepcopy(student), task, train, o, seed, steps, s.learning_rate, out)
            per_seed["seconds"][name] = time.perf_counter() - start
        per_seed["extra_steps"] = extra
        for name, model in models.items():
            per_seed["sweeps"][name] = mle_frontier(task, model.eval(), held, ds, seed)
            per_seed["samples"][name] = _samples(task, model, held, seed)
        if old:  # the student and D are retrained (the new methods start from them): the saved run's, or the reuse is void
            per_seed["reuse_check"] = {"discriminator": _check_same("discriminator", per_seed["discriminator"], old["discriminator"]),
                                       "student": _check_same("student's sweep", per_seed["sweeps"]["student (MLE, 250 steps)"],
                                                              old["sweeps"]["student (MLE, 250 steps)"])}
            per_seed["reused"] = [n for n in old["sweeps"] if n not in models]
            order = ["student (MLE, 250 steps)", *METHODS, *CONTROLS]
            for key in ("sweeps", "samples", "seconds", "in_training"):
                merged = {**{n: v for n, v in old.get(key, {}).items() if n in per_seed["reused"]}, **per_seed[key]}
                per_seed[key] = {n: merged[n] for n in sorted(merged, key=lambda n: order.index(n) if n in order else len(order))}
            per_seed["extra_steps"] = old["extra_steps"]
        per_seed["wall_seconds"] = time.perf_counter() - t0
        record["seeds"][seed] = per_seed
        print(f"  seed {seed} done in {per_seed['wall_seconds']:.0f} s: " + ", ".join(
            f"{n} T=1 {_t1(r)['nll_oracle']:.3f}/{_t1(r)['nll_test']:.3f}" for n, r in per_seed["sweeps"].items()), file=sys.stderr, flush=True)
        if json_path:  # after every seed: a long run that stops keeps what it measured
            with open(json_path, "w") as f:
                json.dump(record, f, indent=1, default=str)
    return record


def _t1(rows: list[dict]) -> dict:
    return next(r for r in rows if r["temperature"] == 1.0)


def _samples(task, model, held, seed: int, n: int = 3) -> list[str]:
    import torch
    from hf_seqgan.rollout import RolloutEngine
    from bench_discriminator import _decode_kwargs, _suppress

    engine = RolloutEngine(model, task.tokenizer, use_generation_config=False)
    out = engine.sample(torch.tensor(held["input_ids"][:n]), **_decode_kwargs(task), logits_processor=_suppress(task),
                        generator=torch.Generator().manual_seed(seed))
    return _texts(task, out.sequences)


# ------------------------------------------------------------------ tables
def below(control: list[dict], row: dict):
    """``(Δ, how)``: ``row``'s NLL_oracle minus the control's at equal NLL_test along the control's
    sweep (negative: below its frontier); where ``row`` has a better NLL_test than the control at
    any T <= 1, the difference to the control at T=1 (``row`` then dominates it when negative)."""
    match, reason = mle_at_same_coverage(control, row["nll_test"])
    if match is not None:
        return row["nll_oracle"] - match[0], f"T={match[1]:.2f}"
    if reason.startswith("better"):
        return row["nll_oracle"] - _t1(control)["nll_oracle"], "better NLL_test than T=1"
    return None, reason


def report(record: dict) -> None:
    s = record["settings"]
    seeds = list(record["seeds"].values())
    names = list(seeds[0]["sweeps"])
    methods = [n for n in names if n in METHODS]
    if record.get("reused_from"):
        print(f"Controls and methods other than {s['methods']} taken from {record['reused_from']} (the student and the discriminator "
              f"retrained here, largest difference to the saved ones: "
              f"{max(max(sd['reuse_check'].values()) for sd in seeds):.2g}); seconds: each model's own run's\n")
    print(f"### Discriminator (ratio head) pre-training, per seed {list(record['seeds'])}\n")
    print("| seed | held-out acc (validation) | AUC | best step / steps | s |")
    print("|---|---|---|---|---|")
    for seed, sd in record["seeds"].items():
        d = sd["discriminator"]
        print(f"| {seed} | {d['d_heldout_acc']:.3f} | {d['d_heldout_auc']:.3f} | {d['best_step']} / {d['steps']} | {d['seconds']:.0f} |")
    print("\n### In the adversarial phase (means over the logged steps; d_heldout_acc: on each batch before D trains on it)\n")
    keys = sorted({k for sd in seeds for m in methods for k in sd["in_training"][m]})
    print("| method | " + " | ".join(keys) + " |")
    print("|---|" + "---|" * len(keys))
    for m in methods:
        print(f"| {m} | " + " | ".join(_mean_sd([sd["in_training"][m].get(k) for sd in seeds]) for k in keys) + " |")
    print(f"\n### Temperature sweeps on the {s['eval']} pairs, mean ± sd over seeds {list(record['seeds'])}\n")
    print("| model | T | NLL_oracle | NLL_test | distinct-4 |")
    print("|---|---|---|---|---|")
    for name in names:
        for i, r in enumerate(seeds[0]["sweeps"][name]):
            rows = [sd["sweeps"][name][i] for sd in seeds]
            print(f"| {name} | {r['temperature']:g} | {_mean_sd([x['nll_oracle'] for x in rows])} | {_mean_sd([x['nll_test'] for x in rows])} | "
                  f"{_mean_sd([x['distinct_4'] for x in rows])} |")
    for control in ("student (MLE, 250 steps)", *CONTROLS):
        print(f"\n### Below the frontier of {control}? Δ NLL_oracle at equal NLL_test (negative: below), per seed and mean ± sd\n")
        print("| method | T | " + " | ".join(f"seed {k}" for k in record["seeds"]) + " | mean ± sd |")
        print("|---|---|" + "---|" * (len(seeds) + 1))
        for m in methods + [c for c in CONTROLS if c != control]:
            for i, r in enumerate(seeds[0]["sweeps"][m]):
                if r["temperature"] > 1.0:
                    continue
                cells = [below(sd["sweeps"][control], sd["sweeps"][m][i]) for sd in seeds]
                text = [f"{d:+.3f} ({how})" if d is not None else how for d, how in cells]
                print(f"| {m} | {r['temperature']:g} | " + " | ".join(text) + f" | {_mean_sd([d for d, _ in cells])} |")
    print("\n### Seconds per seed (training)\n")
    for name in seeds[0]["seconds"]:
        print(f"- {name}: {_mean_sd([sd['seconds'][name] for sd in seeds])} s" + (f" ({seeds[0]['extra_steps'][name]} steps)" if name in CONTROLS else ""))
    print(f"- whole seed{' (this run)' if record.get('reused_from') else ''}: {_mean_sd([sd['wall_seconds'] for sd in seeds])} s")
    print(f"\n### Samples (seed {next(iter(record['seeds']))}, T=1, first three {s['eval']} sources)\n")
    for name, texts in seeds[0]["samples"].items():
        print(f"- {name}: " + " | ".join(texts))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="the CI smoke size (seconds)")
    parser.add_argument("--seeds", type=int, nargs="+")
    parser.add_argument("--methods", nargs="+", choices=list(METHODS))
    parser.add_argument("--gen_steps", type=int, help="K: generator steps (and the MLE + K control's steps)")
    parser.add_argument("--d_steps", type=int, help="the most discriminator pre-training steps")
    parser.add_argument("--learning_rate", type=float)
    parser.add_argument("--adversarial_weight", type=float)
    parser.add_argument("--num_samples", type=int)
    parser.add_argument("--baseline")
    parser.add_argument("--eval", choices=("test", "val"), help="evaluate on the test pairs (default) or the validation pairs (choosing settings)")
    parser.add_argument("--json", default=None)
    parser.add_argument("--report", default=None, help="print the tables of a --json file written earlier, and stop")
    parser.add_argument("--reuse", default=None, help="a --json file of a run with the same settings: train only --methods (and the "
                        "student and discriminator they start from), take the controls and the other methods from it")
    cli = parser.parse_args(argv)
    if cli.report:
        with open(cli.report) as f:
            report(json.load(f))
        return
    s = _bench_env.with_overrides(Settings.quick() if cli.quick else Settings(), cli, "seeds", "methods", "gen_steps", "d_steps", "learning_rate",
                                  "adversarial_weight", "num_samples", "baseline", "eval")
    begin(1)
    start = time.perf_counter()
    record = run(s, cli.json, cli.reuse)
    report(record)
    print(f"\nWall time {time.perf_counter() - start:.0f} s, load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
