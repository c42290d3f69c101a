"""RolloutEngine.sample against generate(do_sample=True) at a real model size (random init), batch 16,
source 64, exactly 32 new tokens, one thread, the two interleaved in alternating order.

Usage::

    python benchmarks/bench_engine_real_size.py                     # the t5-small shape (RESULTS.md)
    python benchmarks/bench_engine_real_size.py --size bart-base    # the bart-base shape
    python benchmarks/bench_engine_real_size.py --quick             # a tiny T5 and 2 repeats: the CI smoke run
"""
from __future__ import annotations

import argparse
import statistics

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
    engine = RolloutEngine(model)

    @torch.no_grad()
    def eng():
        engine.sample(input_ids=ids, max_new_tokens=new, min_new_tokens=new)

    @torch.no_grad()
    def gen():
        model.generate(input_ids=ids, do_sample=True, top_k=0, max_new_tokens=new, min_new_tokens=new)

    eng(), gen()  # warm-up
    times = interleaved({"engine": eng, "generate": gen}, repeats)
    speed = ratios(times, "generate", "engine")  # engine tokens/s over generate tokens/s
    print(f"{_bench_env.size_label(size, family, **TINY_T5)}, batch {batch}, source {source}, {new} new tokens, {repeats} interleaved repeats, one thread")
    print(f"engine median {1e3 * statistics.median(times['engine']):.0f} ms, generate median {1e3 * statistics.median(times['generate']):.0f} ms")
    print(f"engine speed / generate speed (tokens/s ratio): median {statistics.median(speed):.2f}, min {min(speed):.2f}, max {max(speed):.2f}")
    write_rows(a.json, [json_row("engine", f"sampling tokens/s, {family} batch {batch}", "generate(do_sample=True, top_k=0)", speed, ">= 1.3")])


if __name__ == "__main__":
    main()
