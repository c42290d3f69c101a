"""Cost of the decoding processors against plain ``model.generate``, measured side by side in one run.

Usage::

    python benchmarks/bench_decoding.py                 # the full benchmark (benchmarks/RESULTS.md), one torch thread
    python benchmarks/bench_decoding.py --repeats 41    # a noisy shared machine: more repeats
    python benchmarks/bench_decoding.py --size t5-small # one model of the public t5-small shape (32,128 tokens)
    python benchmarks/bench_decoding.py --quick         # a few seconds: the CI smoke run
    python benchmarks/bench_decoding.py --quick --json rows.json   # also the ratios as JSON rows (benchmarks/run_all.py)

Three tables:

1. **Overhead in generate.** For each processor of :mod:`hf_seqgan.logits_process`, ``generate``
   with the processor is timed against ``generate`` without it, on the same model, batch and seed
   (``torch.manual_seed`` before every call), alternating which side runs first in each repeat,
   with the garbage collector paused and one untimed warm-up call of each. The overhead is
   ``time(with) / time(baseline) - 1`` within a repeat; min / median / max over the repeats. Every
   call decodes exactly ``target`` tokens per row (``min_new_tokens = max_new_tokens``: EOS is
   blocked), which the script checks. A control row times a processor that returns its scores:
   the cost of transformers' per-processor plumbing (``LogitsProcessorList`` inspects each
   processor's signature at every step), which any processor pays.
2. **The call alone**: the median time of one processor call on made-up log-probs of the decode's
   shape, as a share of the baseline's time per decoding step: the processor's own cost, free of
   the run-to-run noise of table 1.
3. **Guidance counted**: discriminator forwards per decoding step, classifier sequences per
   generated token and forwards per generated token (counted with hooks on one guided call), the
   classifier's batch and mean input length, and the share of the call spent in its forward.

The baseline is the decode producing the same kind of output without the processor:

- temperature schedule (per position, per sentence), discriminator guidance (FUDGE, top-k 5 and
  10; ids path, and on the tiny model the text path of a discriminator with its own tokenizer):
  ``do_sample=True, top_k=0`` sampling;
- Gumbel processor with greedy decoding (exact sampling): the same sampling (the processor
  replaces ``do_sample``'s multinomial draw);
- Gumbel stochastic beam search (4 beams): plain beam search, 4 beams, ``length_penalty=0``.

Models: BART from :func:`hf_seqgan.tiny.build_tiny_model`, randomly initialised: "tiny" (d_model
64, 2+2 layers, FFN 256, the tokenizer's 500-token vocabulary) and "base-32k" (d_model 256, 3+3
layers, FFN 1024, a 32,000-token vocabulary as in real checkpoints: the processors' cost grows with
the vocabulary). Discriminator: a BERT classifier (hidden 64, 2 layers), conditional on the source.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
from typing import Optional

import _bench_env  # noqa: E402  (offline; the package and the sibling scripts importable)

from _timing import fmt, interleaved, json_row, machine_line, ratios, stats, timed, write_rows  # noqa: E402
from bench_rollout import fixed_length_batch, real_tokens  # noqa: E402

import torch  # noqa: E402
from transformers import BertConfig, BertForSequenceClassification, LogitsProcessorList  # noqa: E402

from hf_seqgan.discriminators import SequenceDiscriminator  # noqa: E402
from hf_seqgan.logits_process import (  # noqa: E402
    DiscriminatorGuidedLogitsProcessor,
    GumbelSamplingLogitsProcessor,
    TemperatureScheduleLogitsWarper,
    sentence_end_token_ids,
)
from hf_seqgan.synthetic import summarization_pairs  # noqa: E402
from hf_seqgan.tiny import build_tiny_model, train_tokenizer  # noqa: E402

MODELS = {
    "tiny": dict(d_model=64, ffn=256, layers=2),
    "base-32k": dict(d_model=256, ffn=1024, layers=3, vocab_size=32000),
}


@dataclasses.dataclass
class Settings:
    models: tuple = ("tiny", "base-32k")
    batch: int = 16
    source_length: int = 64
    target_length: int = 32
    beams: int = 4
    guide_top_k: tuple = (5, 10)
    repeats: int = 21
    guide_repeats: int = 5  # guidance costs a multiple of the baseline: fewer repeats suffice
    clock: str = "wall"
    size: str = "tiny"  # tiny: the models of MODELS; else one model of that public shape (full vocabulary, --size)

    @classmethod
    def quick(cls) -> "Settings":
        return cls(models=("tiny",), batch=4, source_length=16, target_length=6, guide_top_k=(5,), repeats=2, guide_repeats=1)


def discriminator(tok, vocab_size: int, seed: int = 0) -> SequenceDiscriminator:
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=vocab_size, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=256,
                        pad_token_id=tok.pad_token_id, num_labels=2, max_position_embeddings=256)
    return SequenceDiscriminator(BertForSequenceClassification(config).eval(), tok)


class Identity:
    """A processor that returns its scores: the cost of transformers' per-processor plumbing."""

    def __call__(self, input_ids, scores):
        return scores


@dataclasses.dataclass
class Case:
    label: str
    baseline: dict  # generate kwargs without the processor
    processor: object
    extra: dict = dataclasses.field(default_factory=dict)  # generate kwargs that differ with the processor
    discriminator: Optional[SequenceDiscriminator] = None
    rows: int = 0  # decoder rows the processor sees (batch x beams)

    def kwargs(self) -> dict:
        return {**self.baseline, **self.extra, "logits_processor": LogitsProcessorList([self.processor])}


def cases(model, tok, other_tok, inputs, s: Settings, name: str) -> list[Case]:
    L, k, B = s.target_length, s.beams, s.batch
    fixed = dict(max_new_tokens=L, min_new_tokens=L)
    sample = dict(do_sample=True, top_k=0, **fixed)
    beam = dict(do_sample=False, num_beams=k, length_penalty=0.0, early_stopping=False, **fixed)
    greedy = dict(do_sample=False, **fixed)
    ends = sentence_end_token_ids(tok)
    out = [
        Case("control: identity processor", sample, Identity(), rows=B),
        Case("temperature schedule, per position", sample, TemperatureScheduleLogitsWarper("linear:start=1.5,end=0.3,steps=32"), rows=B),
        Case("temperature schedule, per sentence", sample,
             TemperatureScheduleLogitsWarper("piecewise:0=1.2,1=0.3", mode="sentence", sentence_end_token_ids=ends), rows=B),
        Case("Gumbel + greedy (exact sampling) vs sampling", sample, GumbelSamplingLogitsProcessor(seed=0), greedy, rows=B),
        Case(f"Gumbel stochastic beam search vs beam search, {k} beams", beam, GumbelSamplingLogitsProcessor(num_beams=k, seed=0), rows=B * k),
    ]
    disc = discriminator(tok, model.config.vocab_size)
    for top_k in s.guide_top_k:
        out.append(Case(f"discriminator guidance, top-{top_k}, ids path", sample,
                        DiscriminatorGuidedLogitsProcessor(disc, inputs, top_k=top_k), discriminator=disc, rows=B))
    if name == "tiny":
        text_disc = discriminator(other_tok, len(other_tok))
        guide = DiscriminatorGuidedLogitsProcessor(text_disc, inputs, tokenizer=tok, top_k=s.guide_top_k[0])
        out.append(Case(f"discriminator guidance, top-{s.guide_top_k[0]}, text path", sample, guide, discriminator=text_disc, rows=B))
    return out


def call_time_us(processor, rows: int, vocab: int, calls: int = 200) -> float:
    """Median time of one ``processor(input_ids, scores)`` call on made-up `(rows, vocab)` log-probs."""
    ids = torch.zeros(rows, 1, dtype=torch.long)  # a first step: the decoder start only
    scores = torch.log_softmax(torch.randn(rows, vocab, generator=torch.Generator().manual_seed(0)), -1)
    processor(ids, scores)
    return statistics.median(timed(lambda: processor(ids, scores), "wall")[0] for _ in range(calls)) * 1e6


def guidance_counts(case: Case, run, steps: int) -> str:
    """One guided call with hooks on the discriminator: forwards, sequence lengths, time share."""
    shapes, seconds = [], []

    def before(module, args, kwargs):
        seconds.append(-time.perf_counter())

    def after(module, args, kwargs, output):
        seconds.append(time.perf_counter())
        shapes.append(tuple(kwargs["input_ids"].shape))

    pre = case.discriminator.model.register_forward_pre_hook(before, with_kwargs=True)
    post = case.discriminator.model.register_forward_hook(after, with_kwargs=True)
    try:
        total, _ = timed(lambda: run(case.kwargs()), "wall")
    finally:
        pre.remove(), post.remove()
    forwards, tokens = len(shapes), case.rows * steps
    mean_len = statistics.mean(shape[1] for shape in shapes)
    return (
        f"| {case.label.split(', ', 1)[1]} | {forwards / steps:.2f} | {case.processor.top_k} | {forwards / tokens:.4f} | "
        f"{shapes[0][0]} x {mean_len:.0f} | {100 * sum(seconds) / total:.0f}% |"
    )


GOAL = "<= 1.03"  # the decoding issue's goal: the temperature and Gumbel processors add at most 3 %


def bench(s: Settings, records: list | None = None) -> list[str]:
    pairs = summarization_pairs(max(64, s.batch * 4), seed=0)
    tok = train_tokenizer([p["article"] for p in pairs] + [p["headline"] for p in pairs], vocab_size=500)
    other_tok = train_tokenizer([p["headline"] for p in pairs], vocab_size=300)
    inputs = fixed_length_batch(tok, [p["article"] for p in pairs], s.batch, s.source_length)
    overhead_rows = [
        f"Overhead of each processor over the same generate call without it (same model, batch {s.batch}, seed), "
        f"min / median / max over {s.repeats} repeats ({s.guide_repeats} for guidance); source {s.source_length} tokens, "
        f"exactly {s.target_length} new tokens a row",
        "",
        "| model | processor | baseline s/call (median) | with processor s/call (median) | overhead % (min / median / max) |",
        "|---|---|---|---|---|",
    ]
    call_rows = [
        "Processor call alone (median of 200 calls on made-up log-probs of the decode's shape) against the "
        "baseline's time per decoding step in the same run",
        "",
        "| model | processor | rows x vocabulary | call (us) | share of a decoding step |",
        "|---|---|---|---|---|",
    ]
    guide_rows = [
        "Discriminator guidance cost, counted on one guided call (batch {0}, {1} steps)".format(s.batch, s.target_length),
        "",
        "| model | guidance | discriminator forwards / step | classifier sequences / generated token | forwards / generated token "
        "| classifier batch x mean length | share of the call in the discriminator's forward |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in (s.models if s.size == "tiny" else (s.size,)):
        if s.size == "tiny":
            cfg = dict(MODELS[name])
            model = build_tiny_model("bart", tok, d_model=cfg.pop("d_model"), ffn=cfg.pop("ffn"), layers=cfg.pop("layers"), **cfg)
        else:  # the public shape and vocabulary, the BPE tokenizer's ids a subset (as base-32k)
            model = _bench_env.build_model(s.size, tok, vocab_size=_bench_env.REAL_SHAPES[s.size][2])
        expected = s.batch * s.target_length
        for case in cases(model, tok, other_tok, inputs, s, name):

            def run(kw, label=case.label):
                torch.manual_seed(0)
                out = model.generate(**inputs, **kw)
                tokens = real_tokens(out[:, 1:], tok.eos_token_id)
                if tokens != expected:
                    raise RuntimeError(f"{label}: {tokens} tokens generated, expected {expected}.")
                return tokens

            repeats = s.guide_repeats if case.discriminator is not None else s.repeats
            with torch.no_grad():
                run(case.baseline), run(case.kwargs())  # untimed warm-up
                times = interleaved({"base": lambda: run(case.baseline), "proc": lambda: run(case.kwargs())}, repeats, clock=s.clock)
                if case.discriminator is not None:
                    guide_rows.append(f"| {name} " + guidance_counts(case, run, s.target_length))
                else:
                    us = call_time_us(case.processor, case.rows, model.config.vocab_size)
                    step_us = stats(times["base"])[1] / s.target_length * 1e6
                    call_rows.append(f"| {name} | {case.label} | {case.rows} x {model.config.vocab_size} | {us:,.1f} | {100 * us / step_us:.1f}% |")
            overhead = [100.0 * (r - 1.0) for r in ratios(times, "proc", "base")]
            overhead_rows.append(
                f"| {name} | {case.label} | {stats(times['base'])[1]:.3f} | {stats(times['proc'])[1]:.3f} | {fmt(stats(overhead), '+.1f')} |"
            )
            print(overhead_rows[-1], file=sys.stderr, flush=True)  # progress
            if records is not None:
                baseline = "beam search" if "beam" in case.label else "sampling" if "vs sampling" in case.label else "generate without the processor"
                goal = GOAL if case.label.startswith(("temperature", "Gumbel")) else None
                records.append(json_row("decoding", f"{name}: {case.label}", baseline, ratios(times, "proc", "base"), goal))
    return overhead_rows + [""] + call_rows + [""] + guide_rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, 2 repeats: a smoke run of a few seconds")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1: a shared machine)")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall")
    parser.add_argument("--models", nargs="+", choices=sorted(MODELS), default=None)
    _bench_env.add_size_argument(parser)
    parser.add_argument("--json", default=None, help="also write every time ratio (with / without) as JSON rows to this file (see benchmarks/run_all.py)")
    args = parser.parse_args(argv)
    s = Settings.quick() if args.quick else Settings()
    if args.repeats:
        s.repeats = args.repeats
    if args.models:
        s.models = tuple(args.models)
    s.clock = args.clock
    s.size = args.size
    torch.set_num_threads(args.threads)
    print(machine_line(s.clock))
    print()
    records: list = []
    print("\n".join(bench(s, records)))
    write_rows(args.json, records)


if __name__ == "__main__":
    main()
