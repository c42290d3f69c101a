"""Benchmark of GRPOTrainer's step time against a Seq2SeqTrainer step and against its floor, one
`generate` of the same completions plus one Seq2SeqTrainer step, measured side by side in one run.

Usage::

    python benchmarks/bench_grpo.py --size tiny            # tiny BART (d_model 64)
    python benchmarks/bench_grpo.py --size t5-small        # the public t5-small shape, random init
    python benchmarks/bench_grpo.py --size bart-base       # the public bart-base shape, random init
    python benchmarks/bench_grpo.py --quick                # seconds: the CI smoke run

One GRPO step = ``training_step`` (sampling ``num_generations`` completions of each prompt with the
engine, the reward function, the forward + backward of the loss) + ``optimizer.step()``. The
Seq2SeqTrainer step trains on the same number of rows (prompts x generations) with targets as long
as the completions. The floor is what any implementation must at least do: one
``model.generate(do_sample=True, num_return_sequences=G)`` of the same number of tokens, then one
Seq2SeqTrainer step. Every completion has exactly ``--completion`` tokens (EOS is blocked before,
through ``generation_config.min_length``), so the work does not vary with what a random model
emits. In every repeat all three run once in an order rotated from repeat to repeat (GC paused),
after one untimed warm-up; ratios are taken within a repeat; min / median / max over the repeats.
One torch thread.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile

import _bench_env  # (offline, the checkout importable; the model sizes)
import torch
from bench_scheduled_sampling import _interleaved
from datasets import Dataset
from transformers import Seq2SeqTrainer, Seq2SeqTrainingArguments

from hf_seqgan.oracle import oracle_tokenizer
from hf_seqgan.trainers import GRPOConfig, GRPOTrainer

TINY = dict(d_model=64, layers=2, heads=4, ffn=128)  # tiny BART; the other sizes are _bench_env's public shapes
VOCAB = {"tiny": 500, **{size: shape[2] for size, shape in _bench_env.REAL_SHAPES.items()}}  # word-level tokenizers of that size


def build(size: str, tok):
    return _bench_env.build_model(size, tok, "bart", **TINY)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    _bench_env.add_size_argument(parser)
    parser.add_argument("--prompts", type=int, default=4)
    parser.add_argument("--generations", type=int, default=4)
    parser.add_argument("--source", type=int, default=64)
    parser.add_argument("--completion", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--quick", action="store_true", help="tiny, 2 prompts, 8 tokens, 2 repeats")
    parser.add_argument("--json", default=None, help="also write the figures as rows for run_all.py")
    a = parser.parse_args()
    if a.quick:
        a.size, a.prompts, a.generations, a.source, a.completion, a.repeats = "tiny", 2, 2, 16, 8, 2
    torch.set_num_threads(1)
    tok = oracle_tokenizer(VOCAB[a.size] - 5)
    g = torch.Generator().manual_seed(0)
    rows = a.prompts * a.generations
    words = lambda n: " ".join(f"w{int(i)}" for i in torch.randint(len(tok) - 5, (n,), generator=g))  # noqa: E731
    prompts = [words(a.source - 1) for _ in range(a.prompts)]
    out = tempfile.mkdtemp()

    grpo_model = build(a.size, tok)
    grpo_model.generation_config.min_length = a.completion + 1  # every completion exactly a.completion tokens
    args = GRPOConfig(out, per_device_train_batch_size=rows, num_generations=a.generations, max_completion_length=a.completion, learning_rate=1e-5,
                      report_to="none", use_cpu=True, save_strategy="no", disable_tqdm=True, max_prompt_length=None)
    grpo = GRPOTrainer(grpo_model, reward_funcs=lambda completions, **kw: [float(len(c)) for c in completions], args=args,
                       train_dataset=Dataset.from_dict({"prompt": prompts}), processing_class=tok)
    grpo.create_optimizer()
    grpo_inputs = grpo._collate([{"prompt": p} for p in prompts])

    mle_model = build(a.size, tok)
    mle_model.load_state_dict(grpo_model.state_dict())
    mle = Seq2SeqTrainer(mle_model, Seq2SeqTrainingArguments(out, per_device_train_batch_size=rows, learning_rate=1e-5, report_to="none",
                                                             use_cpu=True, save_strategy="no", disable_tqdm=True), processing_class=tok)
    mle.create_optimizer()
    enc = tok(prompts, return_tensors="pt", padding=True)
    mle_batch = {"input_ids": enc.input_ids.repeat_interleave(a.generations, 0), "attention_mask": enc.attention_mask.repeat_interleave(a.generations, 0),
                 "labels": torch.randint(5, len(tok), (rows, a.completion), generator=g)}

    for trainer in (grpo, mle):
        trainer.current_gradient_accumulation_steps = 1

    def step(trainer, inputs):
        trainer.model.train()
        trainer.training_step(trainer.model, inputs)
        trainer.optimizer.step()
        trainer.optimizer.zero_grad(set_to_none=True)

    def floor():
        mle.model.eval()
        with torch.no_grad():
            mle.model.generate(**enc, do_sample=True, num_return_sequences=a.generations, max_new_tokens=a.completion, min_new_tokens=a.completion)
        step(mle, mle_batch)

    calls = {"GRPOTrainer": lambda: step(grpo, grpo_inputs), "Seq2SeqTrainer": lambda: step(mle, mle_batch), "generate + Seq2SeqTrainer": floor}
    for call in calls.values():
        call()  # warm-up
    times = _interleaved(calls, a.repeats)
    params = sum(p.numel() for p in grpo_model.parameters()) / 1e6
    print(f"\n### GRPOTrainer step, {a.size} shape ({params:.1f}M parameters, vocabulary {len(tok)}), {a.prompts} prompts x {a.generations} "
          f"generations, source {a.source}, completion {a.completion} tokens, {a.repeats} repeats, one thread\n")
    print("| against | GRPO ms/step (median) | other ms/step (median) | ratio median | ratio min | ratio max |")
    print("|---|---|---|---|---|---|")
    rows_out = []
    for other, goal in (("Seq2SeqTrainer", None), ("generate + Seq2SeqTrainer", "<= 1.15")):
        ratios = [x / y for x, y in zip(times["GRPOTrainer"], times[other])]
        print(f"| {other} | {1e3 * statistics.median(times['GRPOTrainer']):.1f} | {1e3 * statistics.median(times[other]):.1f} | "
              f"{statistics.median(ratios):.2f} | {min(ratios):.2f} | {max(ratios):.2f} |")
        rows_out.append({"benchmark": "grpo", "figure": f"GRPOTrainer step, {a.prompts}x{a.generations} completions of {a.completion}", "size": a.size,
                         "baseline": other, "ratios": ratios, "goal": goal})
    if a.json:
        import json

        with open(a.json, "w") as f:
            json.dump(rows_out, f)


if __name__ == "__main__":
    main()
