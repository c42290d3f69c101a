"""Discriminators against an MLE student on the oracle task, and residual-EBM decoding with them.

Usage::

    python benchmarks/bench_discriminator.py --quick                 # seconds: the CI smoke run
    python benchmarks/bench_discriminator.py --seeds 0 1 2 --json d.json   # the full run (RESULTS.md)
    python benchmarks/bench_discriminator.py --designs               # the design study (seed 0)
    python benchmarks/bench_discriminator.py --report d.json         # the tables of a saved run again

Task and student: those of ``bench_oracle.py`` (its :class:`Settings` and helpers, imported): the
oracle BART of seed 0, 4,000 training pairs, a BART student trained 250 MLE steps per seed.

1. **Discriminators.** Each is trained by :func:`hf_seqgan.seq2seq_discriminator.train_discriminator`
   on the student's *own* 4,000 training pairs as the real side (no more real data than the student
   had) against fresh samples of the student at T=1 (one per real pair, every step), with early
   stopping on a validation set of 500 fresh oracle pairs (each with one fixed student sample):
   (a) ``build_default_discriminator`` (a small BERT from scratch), (b) the chosen
   :class:`~hf_seqgan.seq2seq_discriminator.Seq2SeqDiscriminator`. Reported: held-out accuracy and
   AUC, and the same figures of the Bayes-optimal discriminator, the exact log-ratio
   ``log p_oracle - log p_student`` (known here, not a method: the ceiling).
2. **Residual EBM.** ``q ∝ p_student exp(l)`` with ``l`` the discriminator's log-odds (T_E = 1),
   sampled by importance resampling of N = 2, 4, 8, 16 student samples at T=1, on the 512 test
   sources: NLL_oracle and distinct-4 of the resampled outputs; NLL_test of the test references
   under the finite-N sampler (``nll_sir_N``) and under ``q`` itself (N -> infinity, ``log Z`` from
   64 samples per source, with its Monte-Carlo standard error and Deng et al.'s upper estimate).
   Next to it: MLE's temperature frontier (the same student at T = 1.2 ... 0.5), and the EBM with
   the exact log-ratio as energy (the ceiling of the method at each N).
3. **Verdict.** Each EBM point against MLE cooled to the same NLL_test (``bench_oracle``'s
   interpolation); negative: below MLE's frontier.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import os
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path

import _bench_env  # noqa: E402,F401  (offline; the package and the sibling scripts importable)

import torch  # noqa: E402
import transformers  # noqa: E402
from transformers import LogitsProcessorList, Seq2SeqTrainer, Seq2SeqTrainingArguments, SuppressTokensLogitsProcessor  # noqa: E402
from transformers.utils import logging as hf_logging  # noqa: E402

from bench_oracle import Settings as OracleSettings  # noqa: E402
from bench_oracle import _mle, _student, _train, mle_at_same_coverage  # noqa: E402
from hf_seqgan.discriminators import build_default_discriminator  # noqa: E402
from hf_seqgan.evaluation import heldout_nll  # noqa: E402
from hf_seqgan.metrics.functional import distinct_n  # noqa: E402
from hf_seqgan.oracle import OracleTask  # noqa: E402
from hf_seqgan.residual_ebm import ResidualEBM, importance_resample  # noqa: E402
from hf_seqgan.rollout import RolloutEngine  # noqa: E402
from hf_seqgan.seq2seq_discriminator import Seq2SeqDiscriminator, heldout_metrics, train_discriminator  # noqa: E402

#: the designs of the study (``--designs``); the first is the default of the main run
DESIGNS = {
    "ratio (NCE)": dict(head="ratio"),
    "token + features, residual": dict(head="token", residual=True, generator_features=True),
    "mean, no features (calibration)": dict(head="mean", residual=False, generator_features=False),
    "BERT from scratch (default D)": None,
}


@dataclasses.dataclass
class Settings:
    """One run's sizes; ``quick()`` is the CI smoke size."""

    seeds: tuple = (0, 1, 2)
    val_size: int = 500
    d_steps: int = 1500
    d_batch: int = 64
    d_learning_rate: float = 1e-3
    eval_every: int = 50
    patience: int = 6
    design: str = "ratio (NCE)"
    num_candidates: tuple = (2, 4, 8, 16)
    log_z_samples: int = 64
    temperatures: tuple = (1.2, 1.0, 0.9, 0.8, 0.7, 0.6, 0.5)
    oracle: OracleSettings = dataclasses.field(default_factory=OracleSettings)

    @classmethod
    def quick(cls) -> "Settings":
        return cls(seeds=(0,), val_size=32, d_steps=6, d_batch=16, eval_every=3, num_candidates=(2, 4), log_z_samples=4,
                   temperatures=(1.0, 0.7), oracle=OracleSettings.quick())


def _decode_kwargs(task) -> dict:
    return dict(max_new_tokens=task.target_length, min_new_tokens=task.target_length)


def _suppress(task):
    return LogitsProcessorList([SuppressTokensLogitsProcessor(task.special_token_ids)])


# ------------------------------------------------------------------ discriminators
def make_discriminator(name: str, student, task, seed: int):
    spec = DESIGNS[name]
    if spec is None:
        return build_default_discriminator(task.tokenizer, conditional=True, vocab_size=student.config.vocab_size, max_length=64, seed=seed)
    return Seq2SeqDiscriminator(student, task.tokenizer, seed=seed, **spec)


def train_d(name, student, task, train, val, s: Settings, seed: int, verbose: bool = False):
    disc = make_discriminator(name, student, task, seed)
    log = (lambda r: print(f"    {name} step {r['step']}: held-out acc {r['d_heldout_acc']:.3f} AUC {r['d_heldout_auc']:.3f}", file=sys.stderr)) if verbose else (lambda r: None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = train_discriminator(disc, student, train, heldout=val, max_steps=s.d_steps, batch_size=s.d_batch, learning_rate=s.d_learning_rate,
                                     eval_every=s.eval_every, patience=s.patience, sampling=_decode_kwargs(task),
                                     suppress_token_ids=task.special_token_ids, seed=seed, log=log)
    result.warned = any("cannot tell real from generated" in str(w.message) for w in caught)
    return disc, result


@torch.no_grad()
def exact_log_ratio(task, student):
    """The Bayes-optimal log-odds: ``log p_oracle(y|x) - log p_student(y|x)`` (the student's sampling distribution: specials removed)."""
    engine = RolloutEngine(student, task.tokenizer, use_generation_config=False)

    def ratio(seqs, mask, src, index):
        oracle = task.engine.score(src, sequences=seqs, sequence_mask=mask, source_index=index).logprobs.sum(-1)
        logits = engine.score(src, sequences=seqs, sequence_mask=mask, source_index=index, output_logits=True).logits.float()
        logits[..., task.special_token_ids] = float("-inf")
        own = (torch.log_softmax(logits, -1).gather(-1, seqs[..., None]).squeeze(-1) * mask).sum(-1)
        return oracle - own

    return ratio


def bayes_optimal(task, student, val, seed: int) -> dict:
    src = torch.tensor(val["input_ids"])
    real = torch.tensor(val["labels"])
    engine = RolloutEngine(student, task.tokenizer, use_generation_config=False)
    fake = engine.sample(src, **_decode_kwargs(task), logits_processor=_suppress(task), generator=torch.Generator().manual_seed(seed)).sequences
    ratio = exact_log_ratio(task, student)
    index = torch.arange(len(src))
    return heldout_metrics(ratio(real, torch.ones_like(real), src, index), ratio(fake, torch.ones_like(fake), src, index))


# ------------------------------------------------------------------ frontiers
def _texts(task, seqs) -> list[str]:
    return task.tokenizer.batch_decode(seqs, skip_special_tokens=True)


@torch.no_grad()
def mle_frontier(task, student, test, s: Settings, seed: int) -> list[dict]:
    """The temperature sweep of a model: NLL_oracle and distinct-4 of its samples, its NLL_test."""
    engine = RolloutEngine(student, task.tokenizer, use_generation_config=False)
    student.eval()
    src = torch.tensor(test["input_ids"])
    held = heldout_nll(student, test, temperatures=s.temperatures, suppress_token_ids=task.special_token_ids, batch_size=256)
    rows = []
    for t, nll_test in zip(s.temperatures, held):
        out = engine.sample(src, **_decode_kwargs(task), temperature=t, logits_processor=_suppress(task), generator=torch.Generator().manual_seed(seed))
        rows.append({"setting": f"T={t:g}", "temperature": t, "nll_oracle": task.nll(src, out.sequences), "nll_test": nll_test,
                     "distinct_4": distinct_n(_texts(task, out.sequences), n=4)["distinct_4"]})
    return rows


@torch.no_grad()
def ebm_frontier(task, student, energy, test, s: Settings, seed: int, name: str) -> tuple[list[dict], dict]:
    """One row per N: the resampled outputs' NLL_oracle and distinct-4 (the first N of one pool of
    candidates per source), NLL_test of the finite-N sampler; and the N -> infinity estimates."""
    ebm = ResidualEBM(student, energy, task.tokenizer, suppress_token_ids=task.special_token_ids)
    src = torch.tensor(test["input_ids"])
    g = torch.Generator().manual_seed(seed)
    n_max = max(s.num_candidates)
    start = time.perf_counter()
    pool, logw = ebm.propose(src, num_samples=n_max, generator=g, **_decode_kwargs(task))
    pool_seconds = time.perf_counter() - start
    seqs = pool.sequences.view(len(src), n_max, -1)
    logw = logw.view(len(src), n_max)
    nll = ebm.nll(test, num_samples=s.log_z_samples, num_candidates=s.num_candidates, batch_size=64, seed=seed + 1000, **_decode_kwargs(task))
    rows = []
    for n in s.num_candidates:
        chosen = importance_resample(logw[:, :n], generator=g)
        out = seqs[torch.arange(len(src)), chosen]
        weights = torch.softmax(logw[:, :n].double(), -1)
        rows.append({"setting": f"N={n}", "num_candidates": n, "nll_oracle": task.nll(src, out), "nll_test": nll[f"nll_sir_{n}"],
                     "distinct_4": distinct_n(_texts(task, out), n=4)["distinct_4"], "ess": float((1 / (weights ** 2).sum(-1)).mean()),
                     "samples": _texts(task, out[:3])})
    limit = {k: nll[k] for k in ("nll_generator", "nll_q", "nll_q_upper", "nll_q_stderr", "mean_log_z", "mean_energy")}
    limit["pool_seconds"] = pool_seconds
    return rows, limit


# ------------------------------------------------------------------ tables
def _mean_sd(values) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "–"
    return f"{statistics.fmean(values):.3f} ± {statistics.stdev(values):.3f}" if len(values) > 1 else f"{values[0]:.3f}"


def mle_test_at_same_quality(mle_rows: list[dict], nll_oracle: float):
    """MLE's NLL_test at the temperature where its NLL_oracle equals ``nll_oracle`` (linear
    interpolation along the sweep), or None outside the sweep."""
    points = sorted((r["nll_oracle"], r["nll_test"], r["temperature"]) for r in mle_rows)
    for (o0, t0, k0), (o1, t1, k1) in zip(points, points[1:]):
        if o0 <= nll_oracle <= o1:
            w = 0.0 if o1 == o0 else (nll_oracle - o0) / (o1 - o0)
            return t0 + w * (t1 - t0), k0 + w * (k1 - k0)
    return None


def verdict(mle_rows, row) -> str:
    match, reason = mle_at_same_coverage(mle_rows, row["nll_test"])
    if match is not None:
        return f"{row['nll_oracle'] - match[0]:+.3f} (MLE T={match[1]:.2f})"
    t1 = next(r for r in mle_rows if r["temperature"] == 1.0)
    text = reason
    if row["nll_test"] < t1["nll_test"]:
        text = f"{reason}: NLL_oracle {row['nll_oracle'] - t1['nll_oracle']:+.3f} vs MLE T=1"
    same = mle_test_at_same_quality(mle_rows, row["nll_oracle"])
    if same is not None:
        text += f"; NLL_test {row['nll_test'] - same[0]:+.3f} vs MLE at equal NLL_oracle (T={same[1]:.2f})"
    return text


def run(s: Settings, designs: bool, json_path) -> None:
    o = s.oracle
    task = OracleTask.build(seed=o.oracle_seed, vocab_size=o.vocab_size, source_length=o.source_length, target_length=o.target_length, init_std=o.init_std)
    train, test, val = task.sample_dataset(o.train_size, seed=1), task.sample_dataset(o.test_size, seed=2), task.sample_dataset(s.val_size, seed=3)
    print(f"{task.describe()}; {o.train_size} training pairs (the student's, and the discriminators' real side), {s.val_size} validation "
          f"pairs (early stopping), {o.test_size} test pairs")
    print(f"discriminators: up to {s.d_steps} steps, batch {s.d_batch} real + {s.d_batch} fresh fakes (student, T=1), lr {s.d_learning_rate}, "
          f"evaluated every {s.eval_every} steps, patience {s.patience}; EBM: N in {list(s.num_candidates)}, log Z from {s.log_z_samples} samples\n")
    record = {"settings": dataclasses.asdict(s), "seeds": {}}
    for seed in s.seeds:
        start = time.perf_counter()
        student = _mle(_student(task, o, seed), task, train, o, seed, str(Path(os.environ.get("TMPDIR", "/tmp")) / "bench_discriminator")).eval()
        per_seed = {"student_seconds": time.perf_counter() - start, "bayes": bayes_optimal(task, student, val, seed), "discriminators": {}}
        names = list(DESIGNS) if designs else [s.design, "BERT from scratch (default D)"]
        chosen = None
        for name in names:
            disc, result = train_d(name, student, task, train, val, s, seed, verbose=designs)
            per_seed["discriminators"][name] = {k: v for k, v in dataclasses.asdict(result).items() if k != "history"} | {"warned": result.warned}
            print(f"  seed {seed} {name}: held-out acc {result.d_heldout_acc:.3f} AUC {result.d_heldout_auc:.3f} (best step {result.best_step} "
                  f"of {result.steps}, {result.seconds:.0f} s)", file=sys.stderr, flush=True)
            if name == s.design:
                chosen = disc
        if not designs:
            per_seed["mle"] = mle_frontier(task, student, test, s, seed)
            start = time.perf_counter()
            per_seed["ebm"], per_seed["ebm_limit"] = ebm_frontier(task, student, chosen, test, s, seed, s.design)
            per_seed["ebm_seconds"] = time.perf_counter() - start
            ratio = exact_log_ratio(task, student)
            per_seed["exact"], per_seed["exact_limit"] = ebm_frontier(task, student, lambda *a: -ratio(*a), test, s, seed, "exact")
            # controls: is the gain the EBM's, or more training's?
            steps = per_seed["discriminators"][s.design]["steps"]
            more = _train(Seq2SeqTrainer, Seq2SeqTrainingArguments, copy.deepcopy(student), task, train, dataclasses.replace(o, batch=s.d_batch),
                          seed, steps, s.d_learning_rate, str(Path(os.environ.get("TMPDIR", "/tmp")) / "bench_discriminator"))
            per_seed["controls"] = {f"MLE + {steps} more steps (the discriminator's, lr {s.d_learning_rate:g}, batch {s.d_batch})": mle_frontier(task, more, test, s, seed)}
            if DESIGNS[s.design] and DESIGNS[s.design].get("head") == "ratio":
                per_seed["controls"]["the ratio discriminator's trunk, sampled directly"] = mle_frontier(task, chosen.model, test, s, seed)
        record["seeds"][seed] = per_seed
        if json_path:  # after every seed: a long run that stops keeps what it measured
            with open(json_path, "w") as f:
                json.dump(record, f, indent=1, default=str)
    report(record, s, designs)


def report(record: dict, s: Settings, designs: bool) -> None:
    seeds = list(record["seeds"].values())
    names = list(seeds[0]["discriminators"])
    print(f"### Held-out discriminators against the MLE student (T=1), mean ± sd over seeds {list(s.seeds)}\n")
    print("| discriminator | held-out accuracy | held-out AUC | best step | steps run | s | warned at chance |")
    print("|---|---|---|---|---|---|---|")
    for name in names:
        rows = [sd["discriminators"][name] for sd in seeds]
        print(f"| {name} | {_mean_sd([r['d_heldout_acc'] for r in rows])} | {_mean_sd([r['d_heldout_auc'] for r in rows])} | "
              f"{_mean_sd([r['best_step'] for r in rows])} | {_mean_sd([r['steps'] for r in rows])} | {statistics.fmean(r['seconds'] for r in rows):.0f} | "
              f"{sum(r['warned'] for r in rows)}/{len(rows)} |")
    print(f"| Bayes-optimal: exact log p_oracle − log p_student (ceiling) | {_mean_sd([sd['bayes']['d_heldout_acc'] for sd in seeds])} | "
          f"{_mean_sd([sd['bayes']['d_heldout_auc'] for sd in seeds])} | – | – | – | – |")
    if designs:
        return
    print(f"\n### Frontier on (NLL_test, NLL_oracle): MLE's temperatures and the residual EBM ({s.design}), mean ± sd over seeds\n")
    print("| model | setting | NLL_oracle | NLL_test | distinct-4 | ESS | below MLE's frontier by (Δ NLL_oracle at equal NLL_test) |")
    print("|---|---|---|---|---|---|---|")
    mean_mle = [{"temperature": r["temperature"], "nll_test": statistics.fmean(sd["mle"][i]["nll_test"] for sd in seeds),
                 "nll_oracle": statistics.fmean(sd["mle"][i]["nll_oracle"] for sd in seeds)} for i, r in enumerate(seeds[0]["mle"])]
    for i, r in enumerate(seeds[0]["mle"]):
        rows = [sd["mle"][i] for sd in seeds]
        print(f"| MLE | {r['setting']} | {_mean_sd([x['nll_oracle'] for x in rows])} | {_mean_sd([x['nll_test'] for x in rows])} | "
              f"{_mean_sd([x['distinct_4'] for x in rows])} | – | – |")
    for key, label in (("ebm", "EBM, Seq2SeqDiscriminator"), ("exact", "EBM, exact log-ratio (ceiling)")):
        for i, r in enumerate(seeds[0][key]):
            rows = [sd[key][i] for sd in seeds]
            mean = {"nll_test": statistics.fmean(x["nll_test"] for x in rows), "nll_oracle": statistics.fmean(x["nll_oracle"] for x in rows)}
            per_seed = ", ".join(verdict(sd["mle"], x) for sd, x in zip(seeds, rows))
            print(f"| {label} | {r['setting']} | {_mean_sd([x['nll_oracle'] for x in rows])} | {_mean_sd([x['nll_test'] for x in rows])} | "
                  f"{_mean_sd([x['distinct_4'] for x in rows])} | {_mean_sd([x['ess'] for x in rows])} | mean: {verdict(mean_mle, mean)}; per seed: {per_seed} |")
        limits = [sd[f"{key}_limit"] for sd in seeds]
        print(f"| {label} | N→∞ (q itself) | – | {_mean_sd([x['nll_q'] for x in limits])} (upper {_mean_sd([x['nll_q_upper'] for x in limits])}, "
              f"MC s.e. {statistics.fmean(x['nll_q_stderr'] for x in limits):.3f}) | – | – | – |")
    for name in seeds[0]["controls"]:
        for i, r in enumerate(seeds[0]["controls"][name]):
            rows = [sd["controls"][name][i] for sd in seeds]
            mean = {"nll_test": statistics.fmean(x["nll_test"] for x in rows), "nll_oracle": statistics.fmean(x["nll_oracle"] for x in rows)}
            print(f"| control: {name} | {r['setting']} | {_mean_sd([x['nll_oracle'] for x in rows])} | {_mean_sd([x['nll_test'] for x in rows])} | "
                  f"{_mean_sd([x['distinct_4'] for x in rows])} | – | mean: {verdict(mean_mle, mean)} |")
    print(f"\nStudent NLL_test at T=1 (teacher-forced, no sampling): {_mean_sd([sd['ebm_limit']['nll_generator'] for sd in seeds])}")
    print("\n### Cost (seed 0)\n")
    sd = seeds[0]
    print(f"- student training {sd['student_seconds']:.0f} s; discriminator training: " +
          ", ".join(f"{n} {v['seconds']:.0f} s" for n, v in sd["discriminators"].items()))
    print(f"- EBM evaluation {sd['ebm_seconds']:.0f} s in all; drawing the pool of {max(s.num_candidates)} student samples per source and "
          f"scoring each with the discriminator took {sd['ebm_limit']['pool_seconds']:.1f} s for {s.oracle.test_size} sources")
    print("\n### Samples (seed 0, first test sources)\n")
    for r in sd["ebm"]:
        print(f"- EBM {r['setting']}: {r['samples']}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="the CI smoke size (seconds)")
    parser.add_argument("--designs", action="store_true", help="the design study: every design of DESIGNS, discriminators only")
    parser.add_argument("--seeds", type=int, nargs="+")
    parser.add_argument("--d_steps", type=int)
    parser.add_argument("--json", default=None)
    parser.add_argument("--report", default=None, help="print the tables of a --json file written earlier, and stop")
    cli = parser.parse_args(argv)
    s = Settings.quick() if cli.quick else Settings()
    if cli.seeds:
        s = dataclasses.replace(s, seeds=tuple(cli.seeds))
    elif cli.designs and not cli.quick:
        s = dataclasses.replace(s, seeds=(0,))
    if cli.d_steps:
        s = dataclasses.replace(s, d_steps=cli.d_steps)
    if cli.report:
        with open(cli.report) as f:
            record = json.load(f)
        s = dataclasses.replace(s, seeds=tuple(int(k) for k in record["seeds"]))
        report(record, s, designs=not record["seeds"][next(iter(record["seeds"]))].get("mle"))
        return
    torch.set_num_threads(1)
    hf_logging.set_verbosity_error()
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs, 1 torch thread, load average {os.getloadavg()[0]:.1f}")
    start = time.perf_counter()
    run(s, cli.designs, cli.json)
    print(f"\nWall time {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
