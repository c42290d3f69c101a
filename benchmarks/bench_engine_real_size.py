"""RolloutEngine.sample against generate(do_sample=True) at a real model size (random init), batch 16,
source 64, exactly 32 new tokens, one thread, all variants interleaved in alternating order.

The engine runs with each cache of ``--caches``: ``dynamic`` (the default engine), ``static`` (the
preallocated `StaticCache`, ``cache_implementation="static"``) and ``compiled`` (static, the steps
after the first through ``torch.compile``; compiled once, in the warm-up). ``generate`` runs with its
default dynamic cache (the baseline of every ratio) and, as a second reference, with
``cache_implementation="static"``.

Usage::

    python benchmarks/bench_engine_real_size.py                     # the t5-small shape (RESULTS.md)
    python benchmarks/bench_engine_real_size.py --size bart-base    # the bart-base shape
    python benchmarks/bench_engine_real_size.py --quick             # a tiny T5 and 2 repeats: the CI smoke run
    python benchmarks/bench_engine_real_size.py --caches dynamic    # the default engine only
"""
from __future__ import annotations

import argparse
import statistics
import time

import _bench_env  # offline, the checkout importable, the model sizes

import torch

from _timing import begin, interleaved, json_row, ratios, write_rows
from hf_seqgan.oracle import oracle_tokenizer
from hf_seqgan.rollout import RolloutEngine

TINY_T5 = dict(d_model=64, ffn=128, layers=2, heads=4)  # the --quick model


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    _bench_env.add_size_argument(parser)
    parser.set_defaults(size="t5-small")
    parser.add_argument("--quick", action="store_true", help="a tiny T5, batch 4, 8 tokens, 2 repeats")
    parser.add_argument("--repeats", type=int, default=None, help="interleaved repeats (default 10)")
    parser.add_argument("--caches", default=None, help="comma-separated engine caches: dynamic,static,compiled (default all; --quick: dynamic,static)")
    parser.add_argument("--json", default=None, help="also write the ratios as JSON rows (see run_all.py)")
    a = parser.parse_args(argv)
    size = "tiny" if a.quick else a.size
    batch, source, new = (4, 16, 8) if a.quick else (16, 64, 32)
    repeats = a.repeats or (2 if a.quick else 10)
    begin(1)
    torch.manual_seed(0)
    tok = _bench_env.size_tokenizer(size, lambda: oracle_tokenizer(495))
    family = _bench_env.size_families(size, ("t5",))[0]
    model = _bench_env.build_model(size, tok, family, **TINY_T5).eval()
    ids = torch.randint(10, len(tok), (batch, source))
    caches = (a.caches or ("dynamic,static" if a.quick else "dynamic,static,compiled")).split(",")
    unknown = sorted(set(caches) - {"dynamic", "static", "compiled"})
    if unknown:
        parser.error(f"--caches: unknown {unknown}; choose from dynamic, static, compiled")
    engines = {
        name: RolloutEngine(model, cache_implementation="dynamic" if name == "dynamic" else "static", compile=name == "compiled")
        for name in caches
    }

    def eng(engine):
        @torch.no_grad()
        def run():
            engine.sample(input_ids=ids, max_new_tokens=new, min_new_tokens=new)
        return run

    def gen(cache):
        @torch.no_grad()
        def run():
            model.generate(input_ids=ids, do_sample=True, top_k=0, max_new_tokens=new, min_new_tokens=new, cache_implementation=cache)
        return run

    calls = {f"engine {name}": eng(engine) for name, engine in engines.items()}
    calls.update({"generate": gen(None), "generate static": gen("static")})
    warm = time.perf_counter()
    for call in calls.values():  # warm-up (the compiled engine compiles here)
        call()
    print(f"warm-up (compilation included) {time.perf_counter() - warm:.0f} s")
    times = interleaved(calls, repeats)
    print(f"{_bench_env.size_label(size, family, **TINY_T5)}, batch {batch}, source {source}, {new} new tokens, {repeats} interleaved repeats, one thread")
    rows = []
    for name in calls:
        speed = ratios(times, "generate", name)  # tokens/s over generate's tokens/s
        print(f"{name:16s} median {1e3 * statistics.median(times[name]):6.0f} ms   tokens/s over generate: "
              f"median {statistics.median(speed):.2f}, min {min(speed):.2f}, max {max(speed):.2f}")
        if name.startswith("engine"):
            label = "" if name == "engine dynamic" else f", {name.split()[1]} cache"
            rows.append(json_row("engine", f"sampling tokens/s, {family} batch {batch}{label}", "generate(do_sample=True, top_k=0)", speed, ">= 1.3"))
    write_rows(a.json, rows)


if __name__ == "__main__":
    main()
