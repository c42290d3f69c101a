"""Benchmark of ProfessorForcingTrainer: step time and activation memory against Seq2SeqTrainer,
measured side by side in one run.

Usage::

    python benchmarks/bench_professor_forcing.py                 # the full run (see RESULTS.md)
    python benchmarks/bench_professor_forcing.py --size t5-small # the public t5-small shape, random init
    python benchmarks/bench_professor_forcing.py --quick         # seconds: the CI smoke run
    python benchmarks/bench_professor_forcing.py --json rows.json

1. **Step time.** One optimizer step (``trainer.training_step`` = forward + backward, then
   ``optimizer.step()``; for professor forcing this includes the discriminator's own update) of
   each variant against `Seq2SeqTrainer` on copies of the same tiny BART and the same batch
   (batch 16, source 64, target 32 tokens, no padding). In every repeat all variants run once, in
   an order rotated from repeat to repeat, with the garbage collector paused, after one untimed
   warm-up step each; the ratio is taken against `Seq2SeqTrainer` *in the same repeat*, and
   min / median / max are over the repeats. Goal: professor forcing <= 4x.
2. **Activation memory.** What the backward of one training step will read: the bytes of the
   distinct tensor storages autograd saves during ``compute_loss`` (``saved_tensors_hooks``) that
   are still alive when it returns, model parameters excluded. This is the memory the graph holds
   at its peak (just before the backward), deterministic and measurable on CPU; the
   discriminator's own update graph is freed inside ``compute_loss`` and so not counted. It is
   measured at target lengths 8, 16 and 32 to give the cost per free-running token.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import weakref
from pathlib import Path

import _bench_env  # noqa: E402  (offline; the package and the sibling scripts importable)

import torch  # noqa: E402
from transformers import DataCollatorForSeq2Seq, PrinterCallback, Seq2SeqTrainer, Seq2SeqTrainingArguments  # noqa: E402

from hf_seqgan.trainers.professor_forcing import ProfessorForcingConfig, ProfessorForcingTrainer  # noqa: E402

from _timing import begin, interleaved, json_row, ratio_header, ratio_rows, write_rows  # noqa: E402
from bench_scheduled_sampling import _optimizer_step, _random_ids, _tokenizer  # noqa: E402  (same batches, same step)

GOAL = "<= 4x"
VARIANTS = {  # name -> ProfessorForcingConfig fields (None: Seq2SeqTrainer)
    "Seq2SeqTrainer": None,
    "PF w=0 (D only, no graph)": dict(adversarial_weight="0"),
    "PF sample": dict(),
    "PF greedy": dict(free_running="greedy"),
    "PF sample, truncated to 8": dict(max_free_running_steps=8),
    "PF + teacher-forced term": dict(detach_teacher_forced=False, teacher_forced_term=True),
}


@dataclasses.dataclass
class Settings:
    """What one run measures; ``quick()`` is the CI smoke size."""

    family: str = "bart"
    batch: int = 16
    source_length: int = 64
    target_length: int = 32
    memory_lengths: tuple = (8, 16, 32)
    repeats: int = 15
    d_model: int = 64  # tiny model: 2 encoder + 2 decoder layers, 4 heads
    ffn: int = 256
    vocab_size: int = 500
    threads: int = 1
    size: str = "tiny"  # or the public t5-small / bart-base shape (--size; the family is then the shape's)

    @classmethod
    def quick(cls) -> "Settings":
        return cls(batch=4, source_length=16, target_length=8, memory_lengths=(4, 8), repeats=2, d_model=32, ffn=64)

    @property
    def model_family(self) -> str:
        return _bench_env.size_families(self.size, (self.family,))[0]


def _batch(settings: Settings, tok, target_length: int):
    g = torch.Generator().manual_seed(0)
    batch = {"input_ids": _random_ids(settings.batch, settings.source_length, tok, g), "labels": _random_ids(settings.batch, target_length, tok, g)}
    batch["attention_mask"] = torch.ones_like(batch["input_ids"])
    return batch


def _trainer(model, fields, tok, output_dir: str):
    common = dict(output_dir=output_dir, report_to="none", use_cpu=True, save_strategy="no", disable_tqdm=True, learning_rate=1e-4)
    if fields is None:
        trainer = Seq2SeqTrainer(model, Seq2SeqTrainingArguments(**common), data_collator=DataCollatorForSeq2Seq(tok), processing_class=tok)
    else:
        trainer = ProfessorForcingTrainer(model, ProfessorForcingConfig(**common, **fields), processing_class=tok)
    trainer.remove_callback(PrinterCallback)
    trainer.create_optimizer()
    trainer.current_gradient_accumulation_steps = 1
    return trainer


def _models(settings: Settings, tok):
    def build():
        return _bench_env.build_model(settings.size, tok, settings.model_family, d_model=settings.d_model, ffn=settings.ffn)

    base = build()
    while True:
        model = build()
        model.load_state_dict(base.state_dict())
        yield model


# ------------------------------------------------------------------ 1. step time
def bench_speed(settings: Settings, tok, output_dir: str) -> list[dict]:
    batch = _batch(settings, tok, settings.target_length)
    count = batch["labels"].ne(-100).sum()
    models = _models(settings, tok)
    trainers = {name: _trainer(next(models), fields, tok, output_dir) for name, fields in VARIANTS.items()}
    for trainer in trainers.values():
        _optimizer_step(trainer, batch, count)  # warm-up
    times = interleaved({name: (lambda t=t: _optimizer_step(t, batch, count)) for name, t in trainers.items()}, settings.repeats)
    print(f"\n### Step time, {_bench_env.size_label(settings.size, settings.model_family, d_model=settings.d_model)}, batch {settings.batch}, source {settings.source_length}, "
          f"target {settings.target_length} ({settings.repeats} repeats; ratio = variant / Seq2SeqTrainer in the same repeat)\n")
    ratio_header("variant")
    return [json_row("professor_forcing", f"step time, {name}, target {settings.target_length}", "Seq2SeqTrainer", ratios,
                     GOAL if name == "PF sample" else None)
            for name, ratios in ratio_rows(times, "Seq2SeqTrainer").items() if name != "Seq2SeqTrainer"]


# ------------------------------------------------------------------ 2. activation memory
def saved_activation_bytes(trainer, batch, count) -> int:
    """Bytes of the distinct storages autograd saved during ``compute_loss`` and still holds when it
    returns (what the backward reads), parameters excluded."""
    params = {p.untyped_storage().data_ptr() for p in trainer.model.parameters()}
    saved: dict[int, tuple] = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in params and storage.nbytes():
            saved[storage.data_ptr()] = (weakref.ref(tensor), storage.nbytes())
        return tensor

    trainer.model.train()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = trainer.compute_loss(trainer.model, dict(batch), num_items_in_batch=count)
    total = sum(nbytes for ref, nbytes in saved.values() if ref() is not None)
    del loss
    trainer.model.zero_grad(set_to_none=True)
    return total


def bench_memory(settings: Settings, tok, output_dir: str) -> list[dict]:
    models = _models(settings, tok)
    trainers = {name: _trainer(next(models), fields, tok, output_dir) for name, fields in VARIANTS.items()}
    table = {}
    for length in settings.memory_lengths:
        batch = _batch(settings, tok, length)
        count = batch["labels"].ne(-100).sum()
        table[length] = {name: saved_activation_bytes(trainer, batch, count) for name, trainer in trainers.items()}
    print(f"\n### Activation memory held for the backward (MiB; autograd saved tensors, parameters excluded), batch {settings.batch}, "
          f"source {settings.source_length}\n")
    print("| variant | " + " | ".join(f"target {n}" for n in settings.memory_lengths) + f" | ratio at target {settings.memory_lengths[-1]} "
          f"| KiB per extra target token per row ({settings.memory_lengths[0]}->{settings.memory_lengths[-1]}) |")
    print("|---|" + "---|" * (len(settings.memory_lengths) + 2))
    first, last = settings.memory_lengths[0], settings.memory_lengths[-1]
    rows = []
    for name in trainers:
        ratio = table[last][name] / table[last]["Seq2SeqTrainer"]
        per_token = (table[last][name] - table[first][name]) / ((last - first) * settings.batch) / 1024
        print(f"| {name} | " + " | ".join(f"{table[n][name] / 2**20:.1f}" for n in settings.memory_lengths) + f" | {ratio:.2f} | {per_token:.1f} |")
        if name != "Seq2SeqTrainer":
            rows.append(json_row("professor_forcing", f"activation memory, {name}, target {last}", "Seq2SeqTrainer", [ratio]))
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="the CI smoke size (seconds)")
    parser.add_argument("--part", choices=["speed", "memory", "both"], default="both")
    parser.add_argument("--repeats", type=int, help="step-time repeats")
    parser.add_argument("--threads", type=int, help="torch threads")
    _bench_env.add_size_argument(parser)
    parser.add_argument("--json", help="write the figures as a list of rows to this file")
    parser.add_argument("--output_dir", default=str(Path(os.environ.get("TMPDIR", "/tmp")) / "bench_professor_forcing"))
    cli = parser.parse_args(argv)
    settings = _bench_env.with_overrides(Settings.quick() if cli.quick else Settings(), cli, "repeats", "threads", "size")
    begin(settings.threads)
    tok = _tokenizer(settings)
    rows = []
    if cli.part in ("speed", "both"):
        rows += bench_speed(settings, tok, cli.output_dir)
    if cli.part in ("memory", "both"):
        rows += bench_memory(settings, tok, cli.output_dir)
    write_rows(cli.json, rows)


if __name__ == "__main__":
    main()
