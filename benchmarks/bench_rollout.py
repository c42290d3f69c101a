"""Benchmark of the rollout engine against its baselines, measured side by side in one run.

Usage::

    python benchmarks/bench_rollout.py                                 # the full benchmark, all CPUs
    python benchmarks/bench_rollout.py --repeats 31 --threads 1        # a shared machine: RESULTS.md
    python benchmarks/bench_rollout.py --repeats 21 --threads 1 --clock cpu   # process CPU time
    python benchmarks/bench_rollout.py --repeats 10 --threads 1 --size t5-small   # the public t5-small shape, random init
    python benchmarks/bench_rollout.py --quick                         # a few seconds: the CI smoke run
    python benchmarks/bench_rollout.py --quick --json rows.json        # also the ratios as JSON rows (benchmarks/run_all.py)

Two measurements, each printed as a Markdown table with min / median / max over the repeats:

1. Sampling throughput (generated tokens/s) of ``RolloutEngine.sample`` against ``model.generate``
   on the same tiny BART and T5, batch and lengths. Both sample from the full distribution
   (``top_k=0``: the generation config's default top-k of 50 is turned off in both), both decode
   exactly ``target`` tokens per row (``min_new_tokens = max_new_tokens``; the tokens actually
   generated are counted and checked), both run under ``torch.no_grad()`` on the same threads, and
   both include the encoder pass. The ratio is engine tokens/s over generate tokens/s *in the same
   repeat*; its min / median / max are over the repeats.
2. The differentiable mode (straight-through Gumbel-softmax, ``tau=1``, ``hard=True``, exactly
   ``target`` steps) followed by the backward of the mean token log-prob, against one
   teacher-forced forward + backward (``model(..., labels=labels).loss.backward()``) of the same
   model, batch and target length. Time ratio per repeat, and the memory ratio of the activations
   kept for backward.

Memory method: a ``torch.autograd.graph.saved_tensors_hooks`` pack hook records every tensor
autograd saves for backward; at the end of the forward pass (before ``backward``) the storages of
the saved tensors still alive are summed once each (deduplicated by storage ``data_ptr``), the
model's parameters excluded. That is the activation memory a training step holds at its peak;
transient buffers freed during the forward pass and the parameter gradients are not counted.
(``tracemalloc`` does not see torch's allocator, and CPU torch has no ``max_memory_allocated``.)

Fairness rules: in every repeat each engine call and its baseline run back to back, in alternating
order, with the garbage collector paused (``_timing.interleaved``), after one untimed warm-up call of each; the machine's
noise therefore hits both sides of a ratio alike. Models are randomly initialised tiny models built
with :func:`hf_seqgan.tiny.build_tiny_model` (d_model 64, 2+2 layers, 4 heads, FFN 256) and a
byte-level BPE tokenizer trained on :func:`hf_seqgan.synthetic.summarization_pairs` text.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import os
import weakref

import _bench_env  # noqa: E402,F401  (offline; the package and the sibling scripts importable)

import torch  # noqa: E402

from hf_seqgan.rollout import RolloutEngine  # noqa: E402
from hf_seqgan.synthetic import summarization_pairs  # noqa: E402
from hf_seqgan.tiny import train_tokenizer  # noqa: E402

from _timing import CLOCKS, fmt, interleaved, json_row, machine_line, ratios, stats, write_rows  # noqa: E402


@dataclasses.dataclass
class Settings:
    """What one run measures; ``quick()`` is the CI smoke size."""

    families: tuple = ("bart", "t5")
    sample_batches: tuple = (16, 64)
    diff_batch: int = 16
    source_length: int = 64
    target_length: int = 32
    repeats: int = 7
    d_model: int = 64  # tiny model size: 2 encoder + 2 decoder layers, 4 heads
    ffn: int = 256
    vocab_size: int = 500
    clock: str = "wall"  # or "cpu" (see --clock)
    size: str = "tiny"  # or the public t5-small / bart-base shape (--size): random ids of the full vocabulary

    @classmethod
    def quick(cls) -> "Settings":
        return cls(sample_batches=(4,), diff_batch=4, source_length=16, target_length=6, repeats=2)


# ---------------------------------------------------------------------------------- helpers
def real_tokens(sequences: torch.Tensor, eos_id: int) -> int:
    """Generated tokens of ``(B, T)`` sequences: up to and including each row's first EOS."""
    is_eos = (sequences == eos_id).long()
    return int(((is_eos.cumsum(-1) - is_eos) == 0).sum())


def fixed_length_batch(tok, texts, batch: int, length: int) -> dict:
    """``batch`` rows of exactly ``length`` real tokens (texts joined, then truncated)."""
    per_row = len(texts) // batch
    joined = [" ".join(texts[i * per_row : (i + 1) * per_row]) for i in range(batch)]
    enc = tok(joined, return_tensors="pt", padding="max_length", truncation=True, max_length=length)
    if not bool(enc.attention_mask.all()):
        raise RuntimeError(f"texts too short for {length} tokens a row; join more of them.")
    return {"input_ids": enc.input_ids, "attention_mask": enc.attention_mask}


def random_batch(tok, batch: int, length: int, seed: int = 0) -> dict:
    """``batch`` rows of exactly ``length`` random content ids (the last one EOS): inputs at a real-size vocabulary."""
    ids = torch.randint(10, len(tok), (batch, length), generator=torch.Generator().manual_seed(seed))  # (B, L)
    ids[:, -1] = tok.eos_token_id
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def inputs_for(tok, texts, batch: int, length: int, size: str, seed: int = 0) -> dict:
    """Joined texts at tiny size (:func:`fixed_length_batch`), random ids of the full vocabulary otherwise."""
    return fixed_length_batch(tok, texts, batch, length) if size == "tiny" else random_batch(tok, batch, length, seed)


def saved_activation_bytes(step, params) -> int:
    """Bytes of the tensors autograd keeps for backward at the end of ``step()``'s forward pass
    (storages counted once, parameters excluded); ``step`` returns the scalar to backpropagate."""
    skip = {p.untyped_storage().data_ptr() for p in params}
    refs = []

    def pack(tensor):
        kept = tensor.detach()  # same storage, no reference cycle through grad_fn
        refs.append(weakref.ref(kept))
        return kept

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda kept: kept):
        loss = step()
    storages = {}
    for ref in refs:
        tensor = ref()
        if tensor is not None:
            storage = tensor.untyped_storage()
            if storage.data_ptr() not in skip:
                storages[storage.data_ptr()] = storage.nbytes()
    loss.backward()
    return sum(storages.values())


# ---------------------------------------------------------------------------------- benchmarks
def bench_sampling(models, tok, pairs, s: Settings, records: list | None = None) -> list[str]:
    """Engine ``sample`` vs ``generate``: generated tokens/s, side by side per repeat (JSON rows appended to ``records``)."""
    L = s.target_length
    articles = [p["article"] for p in pairs]
    cases = []
    for family, model in models.items():
        engine = RolloutEngine(model, tok)
        for batch in s.sample_batches:
            inputs = inputs_for(tok, articles, batch, s.source_length, s.size)

            def check(name, tokens, family=family, batch=batch):
                if tokens != batch * L:
                    raise RuntimeError(f"{name} generated {tokens} tokens for {family} batch {batch}, expected {batch * L}.")

            def run_engine(engine=engine, inputs=inputs, check=check):
                rollout = engine.sample(**inputs, max_new_tokens=L, min_new_tokens=L, do_sample=True, top_k=0)
                check("engine", int(rollout.attention_mask.sum()))

            def run_generate(model=model, inputs=inputs, check=check):
                out = model.generate(**inputs, do_sample=True, top_k=0, max_new_tokens=L, min_new_tokens=L)
                check("generate", real_tokens(out[:, 1:], tok.eos_token_id))  # (B, L) after the decoder start

            cases.append((family, batch, {"engine": run_engine, "generate": run_generate}))
    times = {}
    with torch.no_grad():
        for _, _, fns in cases:  # untimed warm-up of every path
            for fn in fns.values():
                fn()
        for family, batch, fns in cases:
            times[family, batch] = interleaved(fns, s.repeats, clock=s.clock)
    rows = [
        f"Sampling throughput, generated tokens/s (min / median / max over {s.repeats} repeats); "
        f"source {s.source_length} tokens, {L} new tokens a row, do_sample=True, top_k=0",
        "",
        "| model | batch | tokens/call | engine tok/s | generate tok/s | ratio engine/generate |",
        "|---|---|---|---|---|---|",
    ]
    for family, batch, _ in cases:
        eng, gen = ([batch * L / t for t in times[family, batch][name]] for name in ("engine", "generate"))
        speed = ratios(times[family, batch], "generate", "engine")  # engine tokens/s over generate tokens/s
        rows.append(f"| {family} | {batch} | {batch * L} | {fmt(stats(eng))} | {fmt(stats(gen))} | {fmt(stats(speed), '.2f')} |")
        if records is not None:
            records.append(json_row("rollout", f"sampling tokens/s, {family} batch {batch}", "generate(do_sample=True)", speed, ">= 1.0"))
    return rows


def bench_differentiable(models, tok, pairs, s: Settings, records: list | None = None) -> list[str]:
    """Differentiable decode + backward vs one teacher-forced forward + backward (JSON rows appended to ``records``)."""
    L, B = s.target_length, s.diff_batch
    inputs = inputs_for(tok, [p["article"] for p in pairs], B, s.source_length, s.size)
    labels = inputs_for(tok, [p["headline"] for p in pairs], B, L, s.size, seed=1)["input_ids"]  # (B, L), no padding
    results = {}
    for family, model in models.items():
        model.train()  # as in training (all dropout of the tiny configs is 0)
        engine = RolloutEngine(model, tok)

        def differentiable(engine=engine):
            rollout = engine.differentiable(**inputs, max_new_tokens=L, min_new_tokens=L, tau=1.0, hard=True)
            if int(rollout.attention_mask.sum()) != B * L:
                raise RuntimeError(f"the differentiable decode of {family} stopped before {L} tokens.")
            return -rollout.logprobs.mean()

        def teacher_forced(model=model):
            return model(**inputs, labels=labels).loss

        fns = {"differentiable": differentiable, "teacher-forced": teacher_forced}
        memory = {name: saved_activation_bytes(fn, list(model.parameters())) for name, fn in fns.items()}  # also the warm-up
        steps = {name: (lambda fn=fn: fn().backward()) for name, fn in fns.items()}
        times = interleaved(steps, s.repeats, clock=s.clock, before=lambda model=model: model.zero_grad(set_to_none=True))
        model.zero_grad(set_to_none=True)
        model.eval()
        results[family] = (times, memory)
    rows = [
        f"Differentiable decode + backward vs one teacher-forced forward + backward (min / median / max over "
        f"{s.repeats} repeats); batch {B}, source {s.source_length}, target {L}, tau=1.0, hard=True",
        "",
        "| model | differentiable ms | teacher-forced ms | time ratio | saved MiB differentiable | saved MiB teacher-forced | memory ratio |",
        "|---|---|---|---|---|---|---|",
    ]
    for family, (times, memory) in results.items():
        diff, tf = times["differentiable"], times["teacher-forced"]
        time_ratios = ratios(times, "differentiable", "teacher-forced")
        mib = {name: value / 2**20 for name, value in memory.items()}
        rows.append(
            f"| {family} | {fmt(stats([1e3 * d for d in diff]), '.1f')} | {fmt(stats([1e3 * t for t in tf]), '.1f')} | "
            f"{fmt(stats(time_ratios), '.2f')} | {mib['differentiable']:.2f} | {mib['teacher-forced']:.2f} | "
            f"{memory['differentiable'] / memory['teacher-forced']:.1f} |"
        )
        if records is not None:
            baseline = "teacher-forced forward + backward"
            records.append(json_row("rollout", f"differentiable decode + backward time, {family}", baseline, time_ratios))
            records.append(json_row("rollout", f"differentiable decode saved activations, {family}", baseline,
                                    [memory["differentiable"] / memory["teacher-forced"]]))
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes and 2 repeats: a few seconds, for CI")
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats per measurement (default 7; 2 with --quick)")
    parser.add_argument(
        "--threads", type=int, default=None,
        help="torch threads, the same for every side (default: all CPUs; 1 with --quick, which a busy CI machine would slow down)",
    )
    parser.add_argument(
        "--clock", choices=tuple(CLOCKS), default="wall",
        help="wall: elapsed time; cpu: this process's CPU time, which other processes on a shared machine disturb "
        "far less (meaningful with --threads 1: with more threads it also counts their spin-waits)",
    )
    _bench_env.add_size_argument(parser)
    parser.add_argument("--json", default=None, help="also write every ratio as JSON rows to this file (see benchmarks/run_all.py)")
    args = parser.parse_args(argv)
    settings = Settings.quick() if args.quick else Settings()
    settings.clock = args.clock
    settings.size = args.size
    if args.repeats is not None:
        if args.repeats < 1:
            parser.error(f"--repeats must be >= 1, got {args.repeats}")
        settings.repeats = args.repeats
    torch.set_num_threads(args.threads or (1 if args.quick else os.cpu_count() or 1))
    torch.manual_seed(0)

    # Data, tokenizer and models: all local, nothing downloaded.
    rows_needed = max(max(settings.sample_batches), settings.diff_batch)
    pairs = summarization_pairs(max(600, 8 * rows_needed), seed=0)  # 8 texts joined a row
    tok = _bench_env.size_tokenizer(
        settings.size, lambda: train_tokenizer([p["article"] for p in pairs] + [p["headline"] for p in pairs], vocab_size=settings.vocab_size))
    families = _bench_env.size_families(settings.size, settings.families)
    models = {f: _bench_env.build_model(settings.size, tok, f, d_model=settings.d_model, ffn=settings.ffn) for f in families}
    n_params = {f: sum(p.numel() for p in m.parameters()) for f, m in models.items()}

    gc.collect()
    gc.freeze()  # the imported libraries' objects: later collections stay short and rare
    print(machine_line(settings.clock))
    shape = f"d_model {settings.d_model}, 2+2 layers, FFN {settings.ffn}" if settings.size == "tiny" else f"the public {settings.size} shape"
    print(
        f"Models: {settings.size} {', '.join(f'{f} ({n / 1e6:.2f}M params)' for f, n in n_params.items())}; {shape}, "
        f"vocabulary {len(tok)}; randomly initialised"
    )
    records: list = []
    print()
    print("\n".join(bench_sampling(models, tok, pairs, settings, records)))
    print()
    print("\n".join(bench_differentiable(models, tok, pairs, settings, records)))
    write_rows(args.json, records)


if __name__ == "__main__":
    main()
