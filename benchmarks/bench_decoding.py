"""Cost of the decoding processors against plain ``model.generate``, measured side by side in one run.

Usage::

    python benchmarks/bench_decoding.py                          # the full benchmark (RESULTS_decoding.md)
    python benchmarks/bench_decoding.py --repeats 21 --threads 1  # a shared machine: more repeats, one thread
    python benchmarks/bench_decoding.py --quick                  # a few seconds: the CI smoke run

For each processor of :mod:`hf_seqgan.logits_process`, ``generate`` with the processor is timed
against ``generate`` without it, on the same model, batch and seed (``torch.manual_seed`` before
every call), alternating which side runs first in each repeat, with the garbage collector paused
and one untimed warm-up call of each. The overhead is ``time(with) / time(baseline) - 1`` within a
repeat; its min / median / max over the repeats are printed. Every call decodes exactly
``target`` tokens per row (``min_new_tokens = max_new_tokens``: EOS is blocked), which the script
checks.

The baseline is the decode producing the same kind of output without the processor:

- temperature schedule (per position, per sentence): ``do_sample=True, top_k=0``;
- Gumbel processor with greedy decoding (exact sampling): ``do_sample=True, top_k=0`` sampling;
- Gumbel stochastic beam search (4 beams): plain beam search, 4 beams, ``length_penalty=0``;
- discriminator guidance (FUDGE, top-k 5 and 10): ``do_sample=True, top_k=0``. Its cost is also
  given as discriminator forwards per decoding step and classifier sequences per generated token
  (counted with a forward hook), for the shared-vocabulary ids path and, on the tiny model, the
  text path (a discriminator with its own tokenizer).

Models: tiny BART from :func:`hf_seqgan.tiny.build_tiny_model` (d_model 64, 2+2 layers, FFN 256,
the tokenizer's 500-token vocabulary) and a larger one (d_model 256, 3+3 layers, FFN 1024, a
32,000-token vocabulary as in real checkpoints, since the processors' cost grows with the
vocabulary); randomly initialised. Discriminator: a BERT classifier (hidden 64, 2 layers),
conditional on the source.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # bench_rollout's helpers, run from anywhere

from bench_rollout import fixed_length_batch, fmt, machine_line, real_tokens, stats, timed  # noqa: E402

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
    repeats: int = 11
    clock: str = "wall"

    @classmethod
    def quick(cls) -> "Settings":
        return cls(models=("tiny",), batch=4, source_length=16, target_length=6, guide_top_k=(5,), repeats=2)


def discriminator(tok, vocab_size: int, seed: int = 0) -> SequenceDiscriminator:
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=vocab_size, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=256,
                        pad_token_id=tok.pad_token_id, num_labels=2, max_position_embeddings=256)
    return SequenceDiscriminator(BertForSequenceClassification(config).eval(), tok)


def cases(model, tok, other_tok, inputs, s: Settings, name: str):
    """``(label, baseline generate kwargs, kwargs with the processor, discriminator or None)`` per comparison."""
    L, k = s.target_length, s.beams
    fixed = dict(max_new_tokens=L, min_new_tokens=L)
    sample = dict(do_sample=True, top_k=0, **fixed)
    beam = dict(do_sample=False, num_beams=k, length_penalty=0.0, early_stopping=False, **fixed)
    vocab = model.config.vocab_size
    ends = sentence_end_token_ids(tok)
    out = [
        ("temperature schedule, per position", sample, dict(sample, logits_processor=[TemperatureScheduleLogitsWarper("linear:start=1.5,end=0.3,steps=32")]), None),
        ("temperature schedule, per sentence", sample,
         dict(sample, logits_processor=[TemperatureScheduleLogitsWarper("piecewise:0=1.2,1=0.3", mode="sentence", sentence_end_token_ids=ends)]), None),
        ("Gumbel + greedy (exact sampling)", sample, dict(do_sample=False, **fixed, logits_processor=[GumbelSamplingLogitsProcessor(seed=0)]), None),
        (f"Gumbel stochastic beam search, {k} beams", beam, dict(beam, logits_processor=[GumbelSamplingLogitsProcessor(num_beams=k, seed=0)]), None),
    ]
    disc = discriminator(tok, vocab)
    for top_k in s.guide_top_k:
        guide = DiscriminatorGuidedLogitsProcessor(disc, inputs, top_k=top_k, weight=1.0)
        out.append((f"discriminator guidance, top-{top_k}, ids path", sample, dict(sample, logits_processor=[guide]), disc))
    if name == "tiny":
        text_disc = discriminator(other_tok, len(other_tok))
        guide = DiscriminatorGuidedLogitsProcessor(text_disc, inputs, tokenizer=tok, top_k=s.guide_top_k[0], weight=1.0)
        out.append((f"discriminator guidance, top-{s.guide_top_k[0]}, text path", sample, dict(sample, logits_processor=[guide]), text_disc))
    return out


def bench(s: Settings) -> list[str]:
    pairs = summarization_pairs(max(64, s.batch * 4), seed=0)
    tok = train_tokenizer([p["article"] for p in pairs] + [p["headline"] for p in pairs], vocab_size=500)
    other_tok = train_tokenizer([p["headline"] for p in pairs], vocab_size=300)
    inputs = fixed_length_batch(tok, [p["article"] for p in pairs], s.batch, s.source_length)
    rows = [
        f"Overhead of each processor over plain generate (same model, batch {s.batch}, seed), min / median / max over "
        f"{s.repeats} repeats; source {s.source_length} tokens, exactly {s.target_length} new tokens a row",
        "",
        "| model | processor | baseline s/call (median) | with processor s/call (median) | overhead % (min / median / max) |",
        "|---|---|---|---|---|",
    ]
    guide_rows = [
        "Discriminator guidance cost, counted (one call)",
        "",
        "| model | guidance | discriminator forwards / step | classifier sequences / generated token | forwards / generated token |",
        "|---|---|---|---|---|",
    ]
    for name in s.models:
        cfg = dict(MODELS[name])
        model = build_tiny_model("bart", tok, d_model=cfg.pop("d_model"), ffn=cfg.pop("ffn"), layers=cfg.pop("layers"), **cfg)
        expected = s.batch * s.target_length
        for label, base_kw, proc_kw, disc in cases(model, tok, other_tok, inputs, s, name):
            kwargs = dict(proc_kw, logits_processor=LogitsProcessorList(proc_kw["logits_processor"]))
            def run(kw):
                torch.manual_seed(0)
                out = model.generate(**inputs, **kw)
                tokens = real_tokens(out[:, 1:], tok.eos_token_id)
                if tokens != expected:
                    raise RuntimeError(f"{label}: {tokens} tokens generated, expected {expected}.")
                return tokens

            calls = []
            hook = disc.model.register_forward_hook(lambda *a: calls.append(1)) if disc is not None else None
            with torch.no_grad():
                run(base_kw), run(kwargs)  # untimed warm-up
                if hook is not None:
                    calls.clear()
                    run(kwargs)
                    hook.remove()
                    steps = s.target_length
                    guide_rows.append(
                        f"| {name} | {label.split(', ', 1)[1]} | {len(calls) / steps:.0f} | {kwargs['logits_processor'][0].top_k} | "
                        f"{len(calls) / expected:.3f} |"
                    )
                times = {"base": [], "proc": []}
                for r in range(s.repeats):
                    for side in (("base", "proc") if r % 2 == 0 else ("proc", "base")):
                        seconds, _ = timed(lambda: run(base_kw if side == "base" else kwargs), s.clock)
                        times[side].append(seconds)
            overhead = [100.0 * (p / b - 1.0) for p, b in zip(times["proc"], times["base"])]
            rows.append(
                f"| {name} | {label} | {stats(times['base'])[1]:.3f} | {stats(times['proc'])[1]:.3f} | {fmt(stats(overhead), '+.1f')} |"
            )
            print(rows[-1], file=sys.stderr, flush=True)  # progress
    return rows + [""] + guide_rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, 2 repeats: a smoke run of a few seconds")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 on a shared machine)")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall")
    parser.add_argument("--models", nargs="+", choices=sorted(MODELS), default=None)
    args = parser.parse_args(argv)
    s = Settings.quick() if args.quick else Settings()
    if args.repeats:
        s.repeats = args.repeats
    if args.models:
        s.models = tuple(args.models)
    s.clock = args.clock
    torch.set_num_threads(args.threads)
    print(machine_line(s))
    print()
    print("\n".join(bench(s)))


if __name__ == "__main__":
    main()
