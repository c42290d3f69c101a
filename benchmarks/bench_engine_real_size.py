"""RolloutEngine.sample against generate(do_sample=True) at the public t5-small shape (random init),
batch 16, source 64, exactly 32 new tokens, one thread, 8 repeats interleaved in alternating order.

Usage::

    python benchmarks/bench_engine_real_size.py            # the t5-small shape (RESULTS.md)
    python benchmarks/bench_engine_real_size.py --quick    # a tiny T5 and 2 repeats: the CI smoke run
"""
import os, sys, statistics, time, gc
os.environ["HF_HUB_OFFLINE"] = "1"
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import torch
torch.set_num_threads(1)
from transformers import T5Config, T5ForConditionalGeneration
from hf_seqgan.rollout import RolloutEngine
quick = "--quick" in sys.argv[1:]
torch.manual_seed(0)
shape = dict(d_model=64, d_ff=128, num_layers=2, num_heads=4, d_kv=16, vocab_size=500) if quick else \
    dict(d_model=512, d_ff=2048, num_layers=6, num_heads=8, d_kv=64, vocab_size=32128)  # the public t5-small config
model = T5ForConditionalGeneration(T5Config(**shape, dropout_rate=0.0, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)).eval()
B, S, T = (4, 16, 8) if quick else (16, 64, 32)
REPEATS = 2 if quick else 8
ids = torch.randint(2, shape["vocab_size"], (B, S))
engine = RolloutEngine(model)
def eng():
    with torch.no_grad():
        engine.sample(input_ids=ids, max_new_tokens=T, min_new_tokens=T)
def gen():
    with torch.no_grad():
        model.generate(input_ids=ids, do_sample=True, max_new_tokens=T, min_new_tokens=T)
eng(); gen()
times = {"engine": [], "generate": []}
gc.disable()
for r in range(REPEATS):
    for name, f in ((("engine", eng), ("generate", gen)) if r % 2 == 0 else (("generate", gen), ("engine", eng))):
        s = time.perf_counter(); f(); times[name].append(time.perf_counter() - s)
gc.enable()
ratios = [g / e for g, e in zip(times["generate"], times["engine"])]
print(f"{'tiny T5' if quick else 't5-small shape'}, batch {B}, source {S}, {T} new tokens, {REPEATS} interleaved repeats, one thread")
print(f"engine median {1e3*statistics.median(times['engine']):.0f} ms, generate median {1e3*statistics.median(times['generate']):.0f} ms")
print(f"engine speed / generate speed (tokens/s ratio): median {statistics.median(ratios):.2f}, min {min(ratios):.2f}, max {max(ratios):.2f}")
