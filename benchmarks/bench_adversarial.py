"""Benchmark of AdversarialTrainer: step time of each generator-update mode against Seq2SeqTrainer,
and batched Monte-Carlo rewards against a naive loop, each measured side by side in one run.

Usage::

    python benchmarks/bench_adversarial.py                    # both parts (see RESULTS.md)
    python benchmarks/bench_adversarial.py --part mc          # only the Monte-Carlo rewards
    python benchmarks/bench_adversarial.py --size t5-small    # the public t5-small shape, random init
    python benchmarks/bench_adversarial.py --part mc --size t5-small --batch 4 --rollouts 4 --target_length 32
    python benchmarks/bench_adversarial.py --quick            # seconds: the CI smoke run
    python benchmarks/bench_adversarial.py --json rows.json   # the speed figures as rows (run_all.py)

1. **Step time.** One optimizer step (``trainer.training_step`` = sampling, rewards, forward +
   backward of the generator and the discriminator's own update, then ``optimizer.step()``) of each
   mode against `Seq2SeqTrainer` on copies of the same tiny BART and the same batch (batch 16,
   source 64, target 20 tokens, no padding). Every adversarial variant samples exactly 20 tokens
   (``min_new_tokens = max_new_tokens``: an untrained model's EOS would otherwise make the work
   vary), uses the default discriminator, and keeps the MLE term (weight 1; it shares the
   generator's forward). In every repeat all variants run once, in an order rotated from repeat to
   repeat, with the garbage collector paused, after one untimed warm-up step each; the ratio is
   taken against `Seq2SeqTrainer` *in the same repeat*; min / median / max are over the repeats.
2. **Monte-Carlo rewards** (SeqGAN), N = 8 completions of each of the T - 1 proper prefixes of
   T = 20 sampled tokens, batch 16, scored by the discriminator. *Batched*:
   :func:`hf_seqgan.rewards.monte_carlo_rewards` (the encoder output reused, every prefix and
   completion in one decode, one discriminator call). *Naive*: what a loop over the sampler does,
   as in SeqGAN's reference code: one call of the engine's sampler per prefix length and rollout
   (``continue_from`` with one prefix length and one sample, which encodes the sources again), each
   output scored by its own discriminator call, averaged. Both are timed interleaved; the ratio is
   naive / batched in the same repeat (goal >= 10). Being samples, the two differ row by row;
   their means over the batch are compared with a paired z-score over the rows. The judge is a random
   default discriminator whose output layer is scaled up so that its scores spread.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
from pathlib import Path

import _bench_env  # noqa: E402  (offline; the package and the sibling scripts importable)

import torch  # noqa: E402
from transformers import DataCollatorForSeq2Seq, PrinterCallback, Seq2SeqTrainer, Seq2SeqTrainingArguments  # noqa: E402

from hf_seqgan.discriminators import build_default_discriminator  # noqa: E402
from hf_seqgan.rewards import DiscriminatorReward, monte_carlo_rewards  # noqa: E402
from hf_seqgan.rollout import RolloutEngine  # noqa: E402
from hf_seqgan.trainers.adversarial import AdversarialConfig, AdversarialTrainer  # noqa: E402

from _timing import begin, interleaved, json_row, ratio_header, ratio_rows, ratios, write_rows  # noqa: E402
from bench_professor_forcing import _batch  # noqa: E402  (the same random batch)
from bench_scheduled_sampling import _optimizer_step, _tokenizer  # noqa: E402  (the same step)

MC_GOAL = ">= 10x"


def step_variants(rollouts: int) -> dict:
    """name -> AdversarialConfig fields (None: Seq2SeqTrainer)."""
    return {
        "Seq2SeqTrainer": None,
        "reinforce, moving-average baseline": dict(baseline="moving_average"),
        "reinforce, self-critical baseline": dict(baseline="self_critical"),
        "reinforce, leave-one-out (2 samples)": dict(baseline="leave_one_out", num_samples=2),
        f"reinforce + MC rollouts N={rollouts}": dict(rollouts=rollouts),
        "reinforce + step-level rewards": dict(step_rewards=True, gamma=0.95),
        "gumbel (straight-through)": dict(generator_update="gumbel"),
        # the same two updates with the small BERT classifier as discriminator instead of the default
        # Seq2SeqDiscriminator (a copy of the generator, whose own update is most of a step at real size)
        "reinforce, moving-average baseline, classifier D": dict(baseline="moving_average", discriminator_type="classifier"),
        "gumbel (straight-through), classifier D": dict(generator_update="gumbel", discriminator_type="classifier"),
    }


@dataclasses.dataclass
class Settings:
    """What one run measures; ``quick()`` is the CI smoke size."""

    batch: int = 16
    source_length: int = 64
    target_length: int = 20
    rollouts: int = 8
    repeats: int = 10
    mc_repeats: int = 5
    row_loop_repeats: int = 1  # the per-row loop is slow: (T - 1) * N * batch sampler calls
    d_model: int = 64  # tiny BART: 2 encoder + 2 decoder layers, 4 heads
    ffn: int = 256
    vocab_size: int = 500
    threads: int = 1
    size: str = "tiny"  # or the public t5-small / bart-base shape (--size; the family is then the shape's)
    variants: tuple = ()  # step-time variants by name prefix (--variants); empty: all

    @classmethod
    def quick(cls) -> "Settings":
        return cls(batch=4, source_length=16, target_length=6, rollouts=2, repeats=2, mc_repeats=2, row_loop_repeats=1, d_model=32, ffn=64)


def _model(settings: Settings, tok):
    family = _bench_env.size_families(settings.size, ("bart",))[0]
    return _bench_env.build_model(settings.size, tok, family, d_model=settings.d_model, ffn=settings.ffn)


def _trainer(model, fields, tok, output_dir: str, settings: Settings):
    common = dict(output_dir=output_dir, report_to="none", use_cpu=True, save_strategy="no", disable_tqdm=True, learning_rate=1e-4)
    if fields is None:
        trainer = Seq2SeqTrainer(model, Seq2SeqTrainingArguments(**common), data_collator=DataCollatorForSeq2Seq(tok), processing_class=tok)
    else:
        length = settings.target_length
        args = AdversarialConfig(**common, max_new_tokens=length, min_new_tokens=length, **fields)
        trainer = AdversarialTrainer(model, args=args, processing_class=tok)
    trainer.remove_callback(PrinterCallback)
    trainer.create_optimizer()
    trainer.current_gradient_accumulation_steps = 1
    return trainer


# ------------------------------------------------------------------ 1. step time
def bench_steps(settings: Settings, tok, output_dir: str) -> list[dict]:
    batch = _batch(settings, tok, settings.target_length)
    count = batch["labels"].ne(-100).sum()
    base = _model(settings, tok)
    trainers = {}
    for name, fields in step_variants(settings.rollouts).items():
        if settings.variants and fields is not None and not any(name.startswith(v) for v in settings.variants):
            continue
        model = _model(settings, tok)
        model.load_state_dict(base.state_dict())
        trainers[name] = _trainer(model, fields, tok, output_dir, settings)
        _optimizer_step(trainers[name], batch, count)  # warm-up
    times = interleaved({name: (lambda t=t: _optimizer_step(t, batch, count)) for name, t in trainers.items()}, settings.repeats)
    family = _bench_env.size_families(settings.size, ("bart",))[0]
    print(f"\n### Step time, {_bench_env.size_label(settings.size, family, d_model=settings.d_model)}, batch {settings.batch}, source {settings.source_length}, "
          f"target {settings.target_length} ({settings.repeats} repeats; ratio = variant / Seq2SeqTrainer in the same repeat)\n")
    ratio_header("variant")
    return [json_row("adversarial", f"optimizer step, {name}, target {settings.target_length}", "Seq2SeqTrainer step", r)
            for name, r in ratio_rows(times, "Seq2SeqTrainer").items() if name != "Seq2SeqTrainer"]


# ------------------------------------------------------------------ 2. Monte-Carlo rewards
@torch.no_grad()
def naive_monte_carlo_rewards(engine: RolloutEngine, batch: dict, rollout, score, num_rollouts: int, *, per_row: bool = False, **sampling) -> torch.Tensor:
    """Per-token rewards `(R, T)` as a loop over the sampler computes them: for every prefix length
    and every rollout, one sampler call on the whole batch (SeqGAN's reference loop; sources encoded
    again) and one discriminator call; ``per_row=True``: one call per row, prefix and rollout
    (batch 1). The last real token gets the full sequence's score."""
    rows, steps = rollout.sequences.shape
    final = score(rollout.sequences, rollout.attention_mask, rollout.source_index)  # (R,)
    rewards = final[:, None].expand(rows, steps).clone()  # (R, T)
    slices = [slice(r, r + 1) for r in range(rows)] if per_row else [slice(0, rows)]
    for part in slices:
        src = {k: v[rollout.source_index[part]] for k, v in batch.items()}
        for t in range(1, steps):
            total = torch.zeros(part.stop - part.start)
            for _ in range(num_rollouts):
                out = engine.continue_from(**src, prefixes=rollout.sequences[part], prefix_lengths=torch.tensor([t]), num_samples=1,
                                           max_length=steps, **sampling)
                total += score(out.sequences, out.attention_mask, rollout.source_index[part][out.source_index])
            rewards[part, t - 1] = total / num_rollouts
    last = (rollout.attention_mask.sum(-1) - 1).clamp_min(0)  # (R,)
    rewards.scatter_(1, last[:, None], final[:, None])
    return rewards * rollout.attention_mask


class ExpandedEngine:
    """The engine with the continuation that the branched decode replaced (``continue_from`` before it):
    every (row, prefix, sample) expanded, the encoder output and cross-attention K/V copied per row,
    the prefix forced and decoded again from the start. ``monte_carlo_rewards`` calls only this."""

    def __init__(self, engine: RolloutEngine):
        self.engine = engine

    def continue_from(self, *, encoded, prefixes, prefix_lengths, num_samples, max_length, **sampling):
        rows, width = prefixes.shape
        source_index = torch.arange(rows).repeat_interleave(prefix_lengths.numel() * num_samples)
        lengths = prefix_lengths.repeat_interleave(num_samples).repeat(rows)
        forced_mask = torch.arange(width)[None, :] < lengths[:, None]
        out = self.engine.sample(encoded=encoded.select(source_index), forced_tokens=prefixes[source_index], forced_mask=forced_mask,
                                 max_new_tokens=max_length, **sampling)
        out.source_index, out.prefix_lengths = source_index, lengths
        return out


def _peak_rss_mib() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _rss_mib() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024


def _mc_setup(settings: Settings, tok):
    batch = _batch(settings, tok, settings.target_length)
    model = _model(settings, tok).eval()
    engine = RolloutEngine(model, tok)
    disc = build_default_discriminator(tok, seed=0, dropout=0.0).eval()
    disc.model.classifier.weight.data.mul_(100.0)  # spread the random judge's scores (std ~1 logit) so the means compare something
    reward = DiscriminatorReward(disc, kind="logit")

    def score(sequences, mask, source_index):
        return reward(sequences, mask, source_index, source_ids=batch["input_ids"])

    torch.manual_seed(0)
    src = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    with torch.no_grad():
        fakes = engine.sample(**src, max_new_tokens=settings.target_length, min_new_tokens=settings.target_length)
    return engine, src, fakes, score


def _continuations(engine: RolloutEngine) -> dict:
    """name -> (the engine monte_carlo_rewards calls, RolloutEngine.copy_cross_attention)."""
    return {"branched": (engine, True), "branched, gathered cross K/V": (engine, False), "expanded": (ExpandedEngine(engine), True)}


def memory_probe(settings: Settings, tok, method: str) -> None:
    """One call of ``method`` (see :func:`_continuations`) in this fresh process: the peak resident memory it adds."""
    engine, src, fakes, score = _mc_setup(settings, tok)
    caller, RolloutEngine.copy_cross_attention = _continuations(engine)[method]
    with torch.no_grad():
        enc = engine.encode(**src)
        before = _rss_mib()
        monte_carlo_rewards(caller, enc, fakes, score, num_rollouts=settings.rollouts)
    print(f"PEAK_EXTRA_MIB {_peak_rss_mib() - before:.1f}")


def _probe_in_subprocess(method: str, argv: list[str]) -> float:
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, __file__, *argv, "--mc_memory_probe", method], capture_output=True, text=True, check=True)
    return float(next(line.split()[1] for line in proc.stdout.splitlines() if line.startswith("PEAK_EXTRA_MIB")))


def bench_branched(settings: Settings, tok, argv: list[str]) -> list[dict]:
    """Monte-Carlo rewards with the branched continuation against the expanded one it replaced: time (interleaved)
    and the peak memory one call adds (each in a fresh process)."""
    engine, src, fakes, score = _mc_setup(settings, tok)
    variants = _continuations(engine)

    def call(name):
        caller, RolloutEngine.copy_cross_attention = variants[name]
        try:
            monte_carlo_rewards(caller, enc, fakes, score, num_rollouts=settings.rollouts)
        finally:
            RolloutEngine.copy_cross_attention = True

    with torch.no_grad():
        enc = engine.encode(**src)
        times = interleaved({name: (lambda name=name: call(name)) for name in variants}, settings.mc_repeats)
    speed = ratios(times, "expanded", "branched")
    gathered = ratios(times, "expanded", "branched, gathered cross K/V")
    memory = {name: _probe_in_subprocess(name, argv) for name in variants}
    print(f"\n### Monte-Carlo rewards, branched continuation vs the expanded one it replaced, N = {settings.rollouts}, "
          f"T = {settings.target_length}, batch {settings.batch} ({settings.mc_repeats} repeats; memory: the peak resident memory one call adds, "
          "in a fresh process)\n")
    print("| continuation | median s | speed-up median / min / max | peak extra MiB |")
    print("|---|---|---|---|")
    print(f"| branched (`continue_from`) | {statistics.median(times['branched']):.2f} | {statistics.median(speed):.2f} / {min(speed):.2f} / "
          f"{max(speed):.2f} | {memory['branched']:.0f} |")
    print(f"| branched, cross K/V gathered per step | {statistics.median(times['branched, gathered cross K/V']):.2f} | "
          f"{statistics.median(gathered):.2f} / {min(gathered):.2f} / {max(gathered):.2f} | {memory['branched, gathered cross K/V']:.0f} |")
    print(f"| expanded (before) | {statistics.median(times['expanded']):.2f} | 1 | {memory['expanded']:.0f} |")
    figure = f"Monte-Carlo rewards N={settings.rollouts}, T={settings.target_length}, batch {settings.batch}"
    return [json_row("adversarial", f"{figure}: speed-up of the branched continuation", "the expanded continuation it replaced", speed, ">= 3x"),
            json_row("adversarial", f"{figure}: peak memory of the branched continuation", "the expanded continuation it replaced",
                     [memory["branched"] / memory["expanded"]], "<= 0.33"),
            json_row("adversarial", f"{figure}: speed-up of the branched continuation, cross K/V gathered", "the expanded continuation it replaced",
                     gathered, ">= 3x"),
            json_row("adversarial", f"{figure}: peak memory of the branched continuation, cross K/V gathered", "the expanded continuation it replaced",
                     [memory["branched, gathered cross K/V"] / memory["expanded"]], "<= 0.33")]


def bench_monte_carlo(settings: Settings, tok) -> list[dict]:
    engine, src, fakes, score = _mc_setup(settings, tok)
    length = settings.target_length
    results = {}

    def batched():
        with torch.no_grad():
            results["batched"] = monte_carlo_rewards(engine, engine.encode(**src), fakes, score, num_rollouts=settings.rollouts)

    def naive():
        results["naive"] = naive_monte_carlo_rewards(engine, src, fakes, score, settings.rollouts)

    batched(), naive()  # warm-up
    times = interleaved({"batched": batched, "naive": naive}, settings.mc_repeats)
    speedups = ratios(times, "naive", "batched")
    # the two are samples: compare their row means (over the T - 1 Monte-Carlo positions), paired by row
    b, n = results["batched"][:, :-1], results["naive"][:, :-1]  # (R, T-1)
    diff = (b - n).mean(-1)  # (R,)
    z = float(diff.mean() / (diff.std() / diff.numel() ** 0.5))
    calls = (length - 1) * settings.rollouts
    print(f"\n### Monte-Carlo rewards, N = {settings.rollouts}, T = {length}, batch {settings.batch} "
          f"({settings.mc_repeats} repeats; naive = {calls} sampler calls and {calls + 1} discriminator calls, batched = 1 + 1 + 1)\n")
    print("| method | median ms | speed-up median | speed-up min | speed-up max | mean reward (positions 1..T-1) | std over entries |")
    print("|---|---|---|---|---|---|---|")
    print(f"| batched (`monte_carlo_rewards`) | {1000 * statistics.median(times['batched']):.0f} | {statistics.median(speedups):.1f} "
          f"| {min(speedups):.1f} | {max(speedups):.1f} | {b.mean():.4f} | {b.std():.4f} |")
    print(f"| naive loop | {1000 * statistics.median(times['naive']):.0f} | 1 | | | {n.mean():.4f} | {n.std():.4f} |")
    full_equal = torch.allclose(results["batched"][:, -1], results["naive"][:, -1])
    print(f"\nMean difference batched - naive {float(diff.mean()):+.4f} (paired z over {diff.numel()} rows: {z:+.2f}; |z| < 3: "
          f"{'same mean' if abs(z) < 3 else '**means differ**'}); last token (full-sequence score) identical: {full_equal}.")
    rows = [json_row("adversarial", f"Monte-Carlo rewards N={settings.rollouts}, T={length}, batch {settings.batch}: speed-up of one batched decode",
                     "naive loop (one sampler call per prefix length and rollout, batched over rows)", speedups, MC_GOAL)]
    if settings.row_loop_repeats:
        def per_row():
            results["per_row"] = naive_monte_carlo_rewards(engine, src, fakes, score, settings.rollouts, per_row=True)

        row_times = interleaved({"batched": batched, "per_row": per_row}, settings.row_loop_repeats)
        row_speedups = ratios(row_times, "per_row", "batched")
        r = results["per_row"][:, :-1]
        print(f"\nPer-row loop (one sampler call per row, prefix and rollout: {settings.batch * calls} calls of batch 1), "
              f"{settings.row_loop_repeats} repeat(s): {1000 * statistics.median(row_times['per_row']):.0f} ms, batched "
              f"{1000 * statistics.median(row_times['batched']):.0f} ms, speed-up median {statistics.median(row_speedups):.1f} "
              f"(min {min(row_speedups):.1f}, max {max(row_speedups):.1f}); its mean reward {r.mean():.4f}.")
        rows.append(json_row("adversarial", f"Monte-Carlo rewards N={settings.rollouts}, T={length}, batch {settings.batch}: speed-up over a per-row loop",
                             "naive loop (one sampler call per row, prefix and rollout)", row_speedups, MC_GOAL))
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="the CI smoke size (seconds)")
    parser.add_argument("--part", choices=["steps", "mc", "branched", "both"], default="both",
                        help="steps, mc (batched vs the naive loops), branched (the branched continuation vs the expanded one), both (steps + mc)")
    parser.add_argument("--mc_memory_probe", choices=["branched", "branched, gathered cross K/V", "expanded"], help=argparse.SUPPRESS)
    parser.add_argument("--repeats", type=int, help="step-time repeats")
    parser.add_argument("--mc_repeats", type=int, help="Monte-Carlo repeats")
    parser.add_argument("--batch", type=int, help="batch size (default 16)")
    parser.add_argument("--row_loop_repeats", type=int, help="repeats of the per-row naive loop (0: skip it)")
    parser.add_argument("--rollouts", type=int, help="Monte-Carlo completions per prefix (default 8)")
    parser.add_argument("--target_length", type=int, help="sampled tokens (default 20)")
    parser.add_argument("--threads", type=int, help="torch threads")
    parser.add_argument("--variants", nargs="+", help="step-time variants to run beside Seq2SeqTrainer, by name prefix (default all)")
    _bench_env.add_size_argument(parser)
    parser.add_argument("--json", default=None, help="write the speed figures as JSON rows to this file (see benchmarks/run_all.py)")
    parser.add_argument("--output_dir", default=str(Path(os.environ.get("TMPDIR", "/tmp")) / "bench_adversarial"))
    cli = parser.parse_args(argv)
    settings = _bench_env.with_overrides(Settings.quick() if cli.quick else Settings(), cli, "batch", "repeats", "mc_repeats", "row_loop_repeats", "threads", "size", "rollouts", "target_length", "variants")
    begin(settings.threads)
    tok = _tokenizer(settings)
    if cli.mc_memory_probe:
        return memory_probe(settings, tok, cli.mc_memory_probe)
    rows: list = []
    if cli.part == "branched":
        probe_argv = [a for a in (argv if argv is not None else sys.argv[1:]) if a not in ("--part", "branched")]
        probe_argv = [a for i, a in enumerate(probe_argv) if not (probe_argv[i - 1:i] == ["--json"] or a == "--json")]
        rows += bench_branched(settings, tok, probe_argv)
    if cli.part in ("steps", "both"):
        rows += bench_steps(settings, tok, cli.output_dir)
    if cli.part in ("mc", "both"):
        rows += bench_monte_carlo(settings, tok)
    write_rows(cli.json, rows)


if __name__ == "__main__":
    main()
