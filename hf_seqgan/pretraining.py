"""Pretraining a small BART-style model from unlabeled text by denoising, so that the recipes start
from a model that already writes the language instead of from random weights.

BART (Lewis et al. 2020, https://arxiv.org/abs/1910.13461) corrupts a text and trains the model to
write the original: **text infilling** (spans of words, lengths drawn from Poisson(λ = 3), each
replaced by one ``<mask>``, about 30% of the words in all) and **sentence permutation** (the
sentences of a multi-sentence line in a random order). Here the noise comes from
:mod:`hf_seqgan.noise` (a spans-to-one-blank step on top of its word shuffle/drop/blank).

Public pieces:

- :func:`read_corpora` -> ``[(tag, lines)]``: one or more plain-text files, each optionally with
  a tag (a language code or domain token, e.g. ``en_XX=train.en``) that becomes a special token put
  in front of the source and forced as the first target token, as the shared-model recipes expect.
- :func:`choose_vocab_size`: a tokenizer size from the data (several thousand for real corpora).
- :func:`train_bpe`: the byte-level BPE tokenizer (:func:`hf_seqgan.tiny.train_tokenizer`) with the tags.
- :class:`DenoisingCollator`: raw token ids -> ``(noised input, original as labels)`` batches.
- :class:`TimeBudgetCallback`, :class:`ProgressCallback`: stop after ``--time_budget`` minutes;
  one log line with tokens/s and the ETA. The recipes use both too.
- :func:`pretrain`: all of it with a `Seq2SeqTrainer`, resumable (``resume=True`` continues from the
  last checkpoint in ``output_dir``), saving a normal ``save_pretrained`` folder + tokenizer that
  every recipe loads with ``--model_name_or_path``.

Examples:

```python
>>> from hf_seqgan.pretraining import choose_vocab_size, infill_spans
>>> choose_vocab_size(["a b c"] * 10), choose_vocab_size([f"w{i} x{i} y{i}" for i in range(30000)])
(1000, 8000)
>>> import torch
>>> ids = torch.tensor([[10, 11, 12, 13, 14, 15, 2]])
>>> out, mask = infill_spans(ids, ids.ne(0), mask_token_id=4, special_token_ids=[0, 2], ratio=0.5,
...                          generator=torch.Generator().manual_seed(0))
>>> out.tolist()  # one span of four words (11-14) is now one <mask> (4); EOS kept
[[10, 4, 15, 2]]

```
"""

from __future__ import annotations

import logging
import os
import time
from typing import Iterable, Optional, Sequence

import torch
from transformers import TrainerCallback

logger = logging.getLogger(__name__)
progress_logger = logging.getLogger("hf_seqgan.progress")  # ProgressCallback's lines, in the recipes' runs too

__all__ = ["read_corpora", "choose_vocab_size", "train_bpe", "infill_spans", "permute_sentences", "DenoisingCollator",
           "TimeBudgetCallback", "ProgressCallback", "build_model", "pretrain"]


# ---------------------------------------------------------------------- data and tokenizer
def read_corpora(specs: Sequence[str], max_lines: Optional[int] = None) -> list[tuple[Optional[str], list[str]]]:
    """``[(tag, lines)]`` from ``specs``, each ``path`` or ``tag=path`` (e.g. ``en_XX=train.en``);
    non-empty lines, at most ``max_lines`` of each file."""
    out = []
    for spec in specs:
        tag, path = spec.split("=", 1) if "=" in spec and not os.path.exists(spec) else (None, spec)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"Pretraining text {path!r} does not exist (give paths, or tag=path such as en_XX=train.en).")
        with open(path, encoding="utf-8") as f:
            lines = [line.strip() for line in f if line.strip()]
        if not lines:
            raise ValueError(f"Pretraining text {path!r} has no non-empty line.")
        out.append((tag or None, lines[:max_lines] if max_lines else lines))
    return out


def choose_vocab_size(texts: Iterable[str], *, minimum: int = 1000, maximum: int = 8000) -> int:
    """A tokenizer size from the data: a third of the distinct whitespace words, rounded to 500 and
    kept in ``[minimum, maximum]`` (Multi30k en+de or Gigaword: the maximum; a few thousand lines: ~2-4k)."""
    types = set()
    for text in texts:
        types.update(text.split())
    return int(min(maximum, max(minimum, round(len(types) / 3 / 500) * 500)))


def train_bpe(texts: Sequence[str], vocab_size: int, *, tags: Sequence[str] = (), model_max_length: int = 512):
    """A byte-level BPE tokenizer of ``vocab_size`` on ``texts`` with ``tags`` (and the toy
    language codes ``en_XX``/``de_DE``) as special tokens (:func:`hf_seqgan.tiny.train_tokenizer`)."""
    from .tiny import LANGUAGE_CODES, train_tokenizer

    codes = list(dict.fromkeys(list(LANGUAGE_CODES) + [t for t in tags if t]))
    return train_tokenizer(texts, vocab_size=vocab_size, language_codes=codes, model_max_length=model_max_length)


# ---------------------------------------------------------------------- noise
def infill_spans(input_ids: torch.Tensor, attention_mask: torch.Tensor, *, mask_token_id: int, special_token_ids: Iterable[int] = (),
                 word_starts: Optional[torch.Tensor] = None, ratio: float = 0.3, poisson_lambda: float = 3.0, pad_token_id: int = 0,
                 generator: Optional[torch.Generator] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """BART text infilling: about ``ratio`` of the words in spans (lengths ~ Poisson(λ), at least 1)
    each replaced by ONE ``mask_token_id``; special tokens kept, words (``word_starts``, e.g.
    :func:`hf_seqgan.noise.word_start_table`) masked whole; vectorized over the batch."""
    rows, steps = input_ids.shape
    mask = attention_mask.bool()
    special = torch.isin(input_ids, torch.tensor(sorted(set(int(i) for i in special_token_ids)) or [-1], dtype=input_ids.dtype))
    content = mask & ~special  # (B, T) tokens that may be masked
    starts = content & (torch.ones_like(content) if word_starts is None else word_starts.bool())
    first = content & (content.long().cumsum(1) == 1)
    word = ((starts | first) & content).long().cumsum(1)  # (B, T) word number 1..W of each content token (0 elsewhere)
    # spans over words: one starts at word w with probability ratio / lambda and covers Poisson(lambda) words (>= 1)
    index = torch.arange(steps + 1).expand(rows, -1)  # (B, W + 1)
    begin = torch.rand((rows, steps + 1), generator=generator) < ratio / max(poisson_lambda, 1.0)
    begin[:, 0] = False  # word 0 is "not content"
    length = torch.poisson(torch.full((rows, steps + 1), float(poisson_lambda)), generator=generator).clamp(min=1).long()
    covered_until = torch.cummax(torch.where(begin, index + length, torch.zeros_like(index)), dim=1).values  # (B, W + 1)
    in_span = covered_until > index  # word w lies in a span
    before = torch.cat([torch.zeros_like(covered_until[:, :1]), covered_until[:, :-1]], 1)
    span_id = torch.cummax(torch.where(begin & (before < index), index, torch.zeros_like(index)), dim=1).values  # the span's first word
    in_tok = in_span.gather(1, word) & content  # (B, T)
    span_tok = torch.where(in_tok, span_id.gather(1, word), torch.full_like(word, -1))
    previous = torch.cat([torch.full_like(span_tok[:, :1], -1), span_tok[:, :-1]], 1)
    opens = in_tok & (span_tok != previous)  # (B, T) the first token of each span: becomes the one <mask>
    ids = torch.where(opens, torch.full_like(input_ids, mask_token_id), input_ids)
    remove = (in_tok & ~opens) | ~mask
    order = torch.argsort(remove.to(torch.int8), dim=1, stable=True)
    lengths = (~remove).sum(1)  # (B,)
    width = max(int(lengths.max()), 1)
    new_mask = torch.arange(width)[None, :] < lengths[:, None]  # (B, T')
    return ids.gather(1, order)[:, :width].masked_fill(~new_mask, pad_token_id), new_mask.long()


def permute_sentences(text: str, generator: torch.Generator) -> str:
    """BART sentence permutation: the sentences of ``text`` (split after . ! ?) in a random order."""
    import re

    parts = [p for p in re.split(r"(?<=[.!?])\s+", text.strip()) if p]
    if len(parts) < 2:
        return text
    order = torch.randperm(len(parts), generator=generator).tolist()
    return " ".join(parts[i] for i in order)


class DenoisingCollator:
    """Batches of ``{"text", "tag"}`` rows -> ``input_ids`` (noised: sentence permutation, text
    infilling, then :class:`hf_seqgan.noise.TextNoiser`'s word shuffle/drop), ``attention_mask``
    and ``labels`` (the original, with the row's tag in front when it has one; the tag is also in
    front of the source, as the shared-model recipes put a direction tag)."""

    def __init__(self, tokenizer, *, max_length: int = 128, infill_ratio: float = 0.3, poisson_lambda: float = 3.0, word_shuffle: float = 0.0,
                 word_dropout: float = 0.0, permute: bool = True, seed: int = 0):
        from .noise import TextNoiser, word_start_table

        self.tokenizer, self.max_length, self.permute = tokenizer, max_length, permute
        self.infill = dict(ratio=infill_ratio, poisson_lambda=poisson_lambda)
        self.noiser = TextNoiser(tokenizer, word_shuffle=word_shuffle, word_dropout=word_dropout, word_blank=0.0) if (word_shuffle or word_dropout) else None
        self.table = word_start_table(tokenizer)
        self.generator = torch.Generator().manual_seed(seed)

    def __call__(self, rows: list[dict]) -> dict:
        tok = self.tokenizer
        texts = [r["text"] for r in rows]
        tags = [r.get("tag") for r in rows]
        clean = tok(texts, max_length=self.max_length, truncation=True, padding=True, return_tensors="pt")
        noisy_texts = [permute_sentences(t, self.generator) for t in texts] if self.permute else texts
        noisy = tok(noisy_texts, max_length=self.max_length, truncation=True, padding=True, return_tensors="pt")
        ids, mask = noisy["input_ids"], noisy["attention_mask"]  # (B, S)
        starts = self.table[ids.clamp(0, self.table.shape[0] - 1)]
        if self.noiser is not None:
            ids, mask = self.noiser(ids, mask, generator=self.generator)
            starts = self.table[ids.clamp(0, self.table.shape[0] - 1)]
        ids, mask = infill_spans(ids, mask, mask_token_id=tok.mask_token_id, special_token_ids=tok.all_special_ids, word_starts=starts,
                                 pad_token_id=tok.pad_token_id, generator=self.generator, **self.infill)
        labels = clean["input_ids"]
        if any(tags):
            tag_ids = torch.tensor([tok.convert_tokens_to_ids(t) if t else tok.eos_token_id for t in tags])[:, None]  # (B, 1)
            has = torch.tensor([bool(t) for t in tags])[:, None]
            ids = torch.where(has, torch.cat([tag_ids, ids], 1), torch.cat([ids, torch.full_like(tag_ids, tok.pad_token_id)], 1))
            mask = torch.where(has, torch.cat([torch.ones_like(tag_ids), mask], 1), torch.cat([mask, torch.zeros_like(tag_ids)], 1))
            lab_mask = clean["attention_mask"]
            labels = torch.where(has, torch.cat([tag_ids, labels], 1), torch.cat([labels, torch.full_like(tag_ids, tok.pad_token_id)], 1))
            lab_mask = torch.where(has, torch.cat([torch.ones_like(tag_ids), lab_mask], 1), torch.cat([lab_mask, torch.zeros_like(tag_ids)], 1))
        else:
            lab_mask = clean["attention_mask"]
        labels = labels.masked_fill(lab_mask == 0, -100)  # (B, T)
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}


# ---------------------------------------------------------------------- callbacks
class TimeBudgetCallback(TrainerCallback):
    """Stop training (and save, when checkpoints are on) once ``minutes`` of wall time have passed
    since training began; ``minutes`` <= 0 means no budget."""

    def __init__(self, minutes: float):
        self.minutes, self.start, self.stopped_at = float(minutes), None, None

    def on_train_begin(self, args, state, control, **kwargs):
        self.start = time.time()

    def on_step_end(self, args, state, control, **kwargs):
        if self.minutes > 0 and self.start is not None and time.time() - self.start >= 60 * self.minutes:
            self.stopped_at = state.global_step
            control.should_training_stop = True
            control.should_save = args.save_strategy != "no"
            progress_logger.info("Time budget of %.1f min reached at step %d: stopping.", self.minutes, state.global_step)
        return control


class ProgressCallback(TrainerCallback):
    """One INFO line per ``logging_steps``: step, loss, tokens/s (target tokens, from the labels of
    the batches counted by ``count_tokens``) and the ETA to ``max_steps`` or to the time budget."""

    def __init__(self, time_budget: float = 0.0):
        self.time_budget, self.start, self.start_step, self.tokens = float(time_budget), None, 0, 0

    def on_train_begin(self, args, state, control, **kwargs):
        self.start, self.start_step = time.time(), state.global_step

    def count(self, n: int) -> None:
        self.tokens += int(n)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.start is None or not logs or "loss" not in logs:
            return
        elapsed = max(time.time() - self.start, 1e-9)
        done = max(state.global_step - self.start_step, 1)
        per_step = elapsed / done
        eta = (state.max_steps - state.global_step) * per_step
        if self.time_budget > 0:
            eta = min(eta, max(0.0, 60 * self.time_budget - elapsed))
        rate = f", {self.tokens / elapsed:,.0f} tokens/s" if self.tokens else ""
        progress_logger.info("step %d/%d  loss %.4f  %.2f steps/s%s  elapsed %s  ETA %s", state.global_step, state.max_steps, logs["loss"], 1 / per_step, rate,
                    _clock(elapsed), _clock(eta))


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class _CountingCollator:
    def __init__(self, collator, progress: ProgressCallback):
        self.collator, self.progress = collator, progress

    def __call__(self, rows):
        batch = self.collator(rows)
        self.progress.count(int((batch["labels"] != -100).sum()))
        return batch


# ---------------------------------------------------------------------- model and training
def build_model(tokenizer, *, family: str = "bart", d_model: int = 256, layers: int = 3, heads: int = 4, dropout: float = 0.1,
                max_positions: int = 256, seed: int = 0):
    """A BART-style model from a config (:func:`hf_seqgan.tiny.build_tiny_model`), feed-forward 4x,
    with ``dropout`` on the residual and attention paths."""
    from .tiny import build_tiny_model

    drop = dict(dropout_rate=dropout) if family == "t5" else dict(dropout=dropout, attention_dropout=dropout, activation_dropout=0.0)
    model = build_tiny_model(family, tokenizer, seed=seed, d_model=d_model, ffn=4 * d_model, layers=layers, heads=heads, max_positions=max_positions, **drop)
    model.generation_config.forced_bos_token_id = None  # a tag, when used, is forced by the recipe that knows the direction
    return model


def pretrain(corpora: Sequence[tuple[Optional[str], Sequence[str]]], output_dir: str, *, vocab_size: Optional[int] = None, family: str = "bart",
             d_model: int = 256, layers: int = 3, heads: int = 4, dropout: float = 0.1, max_length: int = 128, batch_size: int = 64,
             learning_rate: float = 1e-3, warmup_steps: int = 300, max_steps: int = 100000, time_budget: float = 0.0, logging_steps: int = 50,
             save_steps: int = 500, infill_ratio: float = 0.3, permute: bool = True, validation_lines: int = 200, resume: bool = False,
             seed: int = 42, disable_tqdm: bool = True, **training_kwargs) -> dict:
    """Train a tokenizer (unless ``output_dir`` holds one, when resuming) and a BART-style model by
    denoising on ``corpora`` (``[(tag, lines)]``), for ``max_steps`` or ``time_budget`` minutes;
    save model + tokenizer in ``output_dir`` and return ``{"train_loss", "eval_loss", "steps",
    "vocab_size", "parameters", "tokens_per_s", "runtime_s"}``. ``resume=True`` continues from the
    last checkpoint in ``output_dir`` (optimizer, schedule and data order included).
    ``validation_lines`` lines of each corpus are held out for the denoising loss on validation."""
    from datasets import Dataset
    from transformers import AutoTokenizer, Seq2SeqTrainer, Seq2SeqTrainingArguments
    from transformers.trainer_utils import get_last_checkpoint

    rows, held = [], []
    for tag, lines in corpora:
        k = min(validation_lines, len(lines) // 10)
        held += [{"text": t, "tag": tag or ""} for t in lines[:k]]
        rows += [{"text": t, "tag": tag or ""} for t in lines[k:]]
    tags = [t for t, _ in corpora if t]
    checkpoint = get_last_checkpoint(output_dir) if resume and os.path.isdir(output_dir) else None
    tok_dir = os.path.join(output_dir, "tokenizer")
    if checkpoint is not None and os.path.isdir(tok_dir):
        tokenizer = AutoTokenizer.from_pretrained(tok_dir)
    else:
        texts = [r["text"] for r in rows]
        vocab_size = vocab_size or choose_vocab_size(texts)
        tokenizer = train_bpe(texts, vocab_size, tags=tags, model_max_length=max_length)
        tokenizer.save_pretrained(tok_dir)
    logger.info("Tokenizer: byte-level BPE, %d tokens (tags: %s)", len(tokenizer), tags or "none")
    model = build_model(tokenizer, family=family, d_model=d_model, layers=layers, heads=heads, dropout=dropout, max_positions=max(256, max_length + 8), seed=seed)
    params = sum(p.numel() for p in model.parameters())
    logger.info("Model: %s d_model %d, %d+%d layers, %.2fM parameters", family, d_model, layers, layers, params / 1e6)
    progress = ProgressCallback(time_budget)
    collator = _CountingCollator(DenoisingCollator(tokenizer, max_length=max_length, infill_ratio=infill_ratio, permute=permute, seed=seed), progress)
    eval_collator = DenoisingCollator(tokenizer, max_length=max_length, infill_ratio=infill_ratio, permute=permute, seed=seed + 1)
    args = Seq2SeqTrainingArguments(
        output_dir=output_dir, max_steps=max_steps, per_device_train_batch_size=batch_size, per_device_eval_batch_size=batch_size,
        learning_rate=learning_rate, warmup_steps=warmup_steps, lr_scheduler_type="inverse_sqrt", logging_steps=logging_steps,
        save_strategy="steps", save_steps=save_steps, save_total_limit=2, report_to="none", seed=seed, disable_tqdm=disable_tqdm,
        remove_unused_columns=False, use_cpu=not torch.cuda.is_available(), eval_strategy="steps" if held else "no",
        eval_steps=save_steps if held else None, **training_kwargs)
    budget = TimeBudgetCallback(time_budget)

    class _EvalCollating(Seq2SeqTrainer):  # the held-out loss is measured on a fixed-seed noise, its own collator
        def get_eval_dataloader(self, eval_dataset=None):
            saved, self.data_collator = self.data_collator, eval_collator
            eval_collator.generator.manual_seed(seed + 1)
            try:
                return super().get_eval_dataloader(eval_dataset)
            finally:
                self.data_collator = saved

    trainer = _EvalCollating(model=model, args=args, train_dataset=Dataset.from_list(rows), eval_dataset=Dataset.from_list(held) if held else None,
                             data_collator=collator, processing_class=tokenizer, callbacks=[budget, progress])
    start = time.time()
    result = trainer.train(resume_from_checkpoint=checkpoint)
    runtime = time.time() - start
    metrics = {"train_loss": result.training_loss, "steps": trainer.state.global_step, "vocab_size": len(tokenizer), "parameters": params,
               "tokens_per_s": progress.tokens / max(runtime, 1e-9), "runtime_s": runtime, "stopped_by_time_budget": budget.stopped_at is not None}
    if held:
        metrics["eval_loss"] = trainer.evaluate()["eval_loss"]
    trainer.save_model(output_dir)
    trainer.save_state()
    tokenizer.save_pretrained(output_dir)
    curve = [(h["step"], h["loss"]) for h in trainer.state.log_history if "loss" in h]
    eval_curve = [(h["step"], h["eval_loss"]) for h in trainer.state.log_history if "eval_loss" in h]
    metrics["curve"], metrics["eval_curve"] = curve, eval_curve
    logger.info("Pretraining done: %d steps in %s, train loss %.4f%s; saved to %s", metrics["steps"], _clock(runtime), metrics["train_loss"],
                f", held-out denoising loss {metrics['eval_loss']:.4f}" if held else "", output_dir)
    return metrics
