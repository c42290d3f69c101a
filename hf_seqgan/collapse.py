"""Is the model using its input? Collapse checks for any seq2seq evaluation.

A small model trained from scratch on real text often learns the target language's prior and
ignores its source: every input gets the same output, and a summary metric (ROUGE, BLEU) still
looks like a number. Two checks catch it, and :func:`collapse_report` says it in plain words:

- **distinct outputs**: the fraction of distinct outputs over the evaluated rows, and the share of
  the most common one (a model that emits one output scores 1/N and 100%);
- **source sensitivity**: the teacher-forced loss (nats per target token) of the targets given
  their own sources against the same targets given the sources **shuffled across rows** (a
  derangement: no row keeps its source). A model that reads its input loses much more with the
  wrong source; one that ignores it scores the same (``source_gap`` near 0). The targets are the
  references where the data has them, else the model's own outputs (then the check needs no
  references at all).

A third figure catches a degeneracy the two do not: **doubled words**, the share of outputs that
write a word twice in a row (`not not`, `great great`), against the share among the sources. A
policy trained against a small discriminator or classifier can learn that a doubled sentiment word
fools it; the outputs stay distinct and read their source, so only this figure shows it. It is
reported and warned about, but it does not make the report ``collapsed``.

The source sensitivity is also read from the **outputs**: the share of an output's words found in
its own source against the share found in another row's source (the same derangement; words found
in many sources, such as `the`, left out). Where the target is long and the source short (a first
line -> a story), the loss of the references barely moves with the source even for a model that
carries the source's characters into its story; the outputs' words show it. A model that ignores
its input has the same expected share either way (for one constant output, exactly the same), so
"ignores its input" is said only when neither the loss nor the outputs' words depend on the source.

Examples:

```python
>>> from hf_seqgan.collapse import collapse_report, distinct_stats
>>> distinct_stats(["a b", "a b", "c", "a b"])
{'distinct': 2, 'distinct_fraction': 0.5, 'top_output_share': 0.75}
>>> report = collapse_report(["the same"] * 50, loss_true=3.2, loss_shuffled=3.201)
>>> report.collapsed, len(report.warnings)
(True, 2)
>>> print(report.warnings[0])
WARNING: the model emits ONE output for (almost) every input: 1 distinct output over 50 rows, the most common ('the same') for 100% of them.

```
"""

from __future__ import annotations

import dataclasses
import re
from collections import Counter
from typing import Optional, Sequence

import torch

__all__ = ["CollapseReport", "distinct_stats", "doubled_word_share", "derangement", "source_sensitivity", "source_word_overlap", "collapse_report",
           "check_collapse", "COLLAPSE_HINT"]

COLLAPSE_HINT = ("Real text needs a real tokenizer and model size and more steps than the toy default: try --preset cpu (or gpu), "
                 "or start from a pretrained checkpoint (examples/run_pretraining.py, then --model_name_or_path).")


def distinct_stats(outputs: Sequence[str]) -> dict:
    """``distinct`` (count), ``distinct_fraction`` (count / rows) and ``top_output_share`` (the most
    common output's share of the rows) of ``outputs`` (whitespace-stripped before comparing)."""
    if not outputs:
        return {"distinct": 0, "distinct_fraction": 0.0, "top_output_share": 0.0}
    counts = Counter(o.strip() for o in outputs)
    return {"distinct": len(counts), "distinct_fraction": len(counts) / len(outputs), "top_output_share": counts.most_common(1)[0][1] / len(outputs)}


def _doubles_a_word(text: str) -> bool:
    words = text.lower().split()
    return any(a == b and any(c.isalpha() for c in a) for a, b in zip(words, words[1:]))


def doubled_word_share(texts: Sequence[str]) -> float:
    """The share of ``texts`` that write a word twice in a row, case-insensitive, words split on
    whitespace; a word must hold a letter, so `. .` or `#.# #.#` do not count
    (``doubled_word_share(["not not good", "fine ."]) == 0.5``)."""
    return sum(map(_doubles_a_word, texts)) / len(texts) if texts else 0.0


def derangement(n: int, seed: int = 0) -> list[int]:
    """A permutation of ``range(n)`` with no fixed point (``n >= 2``; ``[0]`` for ``n == 1``): a
    random cyclic shift of a random order, so that every row gets another row's source."""
    if n < 2:
        return list(range(n))
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(n, generator=generator).tolist()
    shift = int(torch.randint(1, n, (1,), generator=generator))
    perm = [0] * n
    for k in range(n):
        perm[order[k]] = order[(k + shift) % n]
    return perm


@torch.no_grad()
def _mean_loss(model, tokenizer, sources, targets, *, max_source_length, max_target_length, batch_size, source_token_id, forced_token_id) -> float:
    from .directions import prepend_token

    device = model.device
    total, count = 0.0, 0
    for i in range(0, len(sources), batch_size):
        enc = tokenizer(list(sources[i : i + batch_size]), max_length=max_source_length, truncation=True, padding=True, return_tensors="pt")
        ids, mask = prepend_token(enc["input_ids"], enc["attention_mask"], source_token_id)  # (B, 1 + S) with a direction tag
        lab = tokenizer(text_target=list(targets[i : i + batch_size]), max_length=max_target_length, truncation=True, padding=True, return_tensors="pt")
        labels, lab_mask = prepend_token(lab["input_ids"], lab["attention_mask"], forced_token_id)  # (B, 1 + T)
        labels = labels.masked_fill(lab_mask == 0, -100)
        decoder_input_ids = model.prepare_decoder_input_ids_from_labels(labels=labels.clamp(min=0)) if hasattr(
            model, "prepare_decoder_input_ids_from_labels") else None
        if forced_token_id is not None:
            labels[:, 0] = -100  # the forced tag is given, not predicted
        logits = model(input_ids=ids.to(device), attention_mask=mask.to(device), decoder_input_ids=decoder_input_ids.to(device)).logits  # (B, T, V)
        nll = torch.nn.functional.cross_entropy(logits.float().transpose(1, 2), labels.to(device), ignore_index=-100, reduction="sum")
        total += float(nll)
        count += int((labels != -100).sum())
    return total / max(count, 1)


def source_sensitivity(model, tokenizer, sources: Sequence[str], targets: Sequence[str], *, max_source_length: int = 128, max_target_length: int = 64,
                       batch_size: int = 64, source_token_id: Optional[int] = None, forced_token_id: Optional[int] = None, seed: int = 0) -> dict:
    """Teacher-forced mean loss (nats per target token) of ``targets`` given their own ``sources``
    (``loss_true``) and given the sources shuffled across rows by :func:`derangement`
    (``loss_shuffled``), and ``source_gap = loss_shuffled - loss_true``.

    ``source_token_id`` / ``forced_token_id`` are a shared model's direction tags (in front of the
    source, forced as the first target token: see :func:`hf_seqgan.recipes.direction_tokens`); the
    forced tag is fed, not scored. The model is left in eval mode."""
    if len(sources) != len(targets):
        raise ValueError(f"source_sensitivity needs one target per source, got {len(sources)} sources and {len(targets)} targets.")
    model.eval()
    kwargs = dict(max_source_length=max_source_length, max_target_length=max_target_length, batch_size=batch_size,
                  source_token_id=source_token_id, forced_token_id=forced_token_id)
    true = _mean_loss(model, tokenizer, sources, targets, **kwargs)
    perm = derangement(len(sources), seed)
    shuffled = _mean_loss(model, tokenizer, [sources[j] for j in perm], targets, **kwargs)
    return {"loss_true": true, "loss_shuffled": shuffled, "source_gap": shuffled - true}


def _words(text: str) -> set[str]:
    return {w for w in re.findall(r"\w+", text.lower()) if any(c.isalpha() for c in w)}


def source_word_overlap(sources: Sequence[str], outputs: Sequence[str], *, seed: int = 0, max_document_share: float = 0.2) -> dict:
    """The mean share of an output's distinct words that occur in its own source (``overlap_true``)
    and in the source of another row, shuffled by :func:`derangement` with ``seed``
    (``overlap_shuffled``), over the rows whose output has a word; and ``overlap_gap =
    overlap_true - overlap_shuffled``. Words are lower-cased and hold a letter; words found in more
    than ``max_document_share`` of the sources (`the`, `a`, `of`: in every source, telling none apart)
    are left out. Empty dict when fewer than two rows have words
    (``source_word_overlap(["a cat sat", "a dog ran"], ["the cat", "the dog"])["overlap_gap"] == 1.0``; a word of one
    source is never left out)."""
    if len(sources) != len(outputs):
        raise ValueError(f"source_word_overlap needs one output per source, got {len(sources)} sources and {len(outputs)} outputs.")
    perm = derangement(len(sources), seed)
    source_words = [_words(s) for s in sources]
    documents = Counter(w for words in source_words for w in words)
    common = {w for w, n in documents.items() if n > max(1.0, max_document_share * len(sources))}  # a word of one source is never common
    true, shuffled = [], []
    for i, output in enumerate(outputs):
        words = _words(output) - common
        if words:
            true.append(len(words & source_words[i]) / len(words))
            shuffled.append(len(words & source_words[perm[i]]) / len(words))
    if len(true) < 2:
        return {}
    t, f = sum(true) / len(true), sum(shuffled) / len(shuffled)
    return {"overlap_true": t, "overlap_shuffled": f, "overlap_gap": t - f}


@dataclasses.dataclass
class CollapseReport:
    """What :func:`collapse_report` found: the figures, the warnings (plain sentences), and
    ``collapsed`` (True when any warning was raised)."""

    rows: int
    distinct: int
    distinct_fraction: float
    top_output_share: float
    loss_true: Optional[float] = None
    loss_shuffled: Optional[float] = None
    targets: str = "references"
    warnings: list = dataclasses.field(default_factory=list)
    hint: str = ""
    doubled_word_share: Optional[float] = None
    source_doubled_word_share: Optional[float] = None
    notices: list = dataclasses.field(default_factory=list)  # warnings that are not a collapse (doubled words; a low loss gap the outputs contradict)
    overlap_true: Optional[float] = None  # the outputs' words found in their own source (share)
    overlap_shuffled: Optional[float] = None  # ... in another row's source

    @property
    def source_gap(self) -> Optional[float]:
        return None if self.loss_true is None else self.loss_shuffled - self.loss_true

    @property
    def overlap_gap(self) -> Optional[float]:
        return None if self.overlap_true is None else self.overlap_true - self.overlap_shuffled

    @property
    def collapsed(self) -> bool:
        return bool(self.warnings)

    def metrics(self, prefix: str = "") -> dict:
        """Flat numbers for ``results.json``: ``{prefix}distinct_fraction``, ``..._top_output_share``,
        ``..._loss_true_sources``, ``..._loss_shuffled_sources``, ``..._source_gap``, ``..._source_word_overlap``,
        ``..._shuffled_source_word_overlap``, ``..._source_overlap_gap``, ``..._collapsed`` (0/1)."""
        out = {f"{prefix}distinct_fraction": self.distinct_fraction, f"{prefix}top_output_share": self.top_output_share}
        if self.loss_true is not None:
            out.update({f"{prefix}loss_true_sources": self.loss_true, f"{prefix}loss_shuffled_sources": self.loss_shuffled,
                        f"{prefix}source_gap": self.source_gap})
        if self.overlap_true is not None:
            out.update({f"{prefix}source_word_overlap": self.overlap_true, f"{prefix}shuffled_source_word_overlap": self.overlap_shuffled,
                        f"{prefix}source_overlap_gap": self.overlap_gap})
        if self.doubled_word_share is not None:
            out[f"{prefix}doubled_word_share"] = self.doubled_word_share
            if self.source_doubled_word_share is not None:
                out[f"{prefix}source_doubled_word_share"] = self.source_doubled_word_share
        out[f"{prefix}collapsed"] = float(self.collapsed)
        return out

    def lines(self, name: str = "model") -> list[str]:
        """The report as printed lines: the figures, then every warning (or that none was raised)."""
        out = [f"Collapse check ({name}, {self.rows} rows): {self.distinct} distinct outputs ({100 * self.distinct_fraction:.1f}%), "
               f"the most common one {100 * self.top_output_share:.1f}% of rows"]
        if self.loss_true is not None:
            out.append(f"  source sensitivity (loss of the {self.targets}, nats/token): true sources {self.loss_true:.4f}, "
                       f"sources shuffled across rows {self.loss_shuffled:.4f}, gap {self.source_gap:+.4f}")
        if self.overlap_true is not None:
            out.append(f"  source words in the outputs: {100 * self.overlap_true:.1f}% of an output's words are in its own source, "
                       f"{100 * self.overlap_shuffled:.1f}% in another row's (gap {100 * self.overlap_gap:+.1f} points)")
        if self.doubled_word_share is not None:
            given = "" if self.source_doubled_word_share is None else f" (sources: {100 * self.source_doubled_word_share:.1f}%)"
            out.append(f"  doubled words (a word twice in a row): {100 * self.doubled_word_share:.1f}% of outputs{given}")
        out += [f"  {w}" for w in self.warnings] if self.warnings else ["  OK: the outputs vary and depend on the input."]
        out += [f"  {w}" for w in self.notices]
        return out


def collapse_report(outputs: Sequence[str], *, loss_true: Optional[float] = None, loss_shuffled: Optional[float] = None, targets: str = "references",
                    min_distinct_fraction: float = 0.1, max_top_share: float = 0.5, min_source_gap: float = 0.05, hint: str = COLLAPSE_HINT,
                    sources: Optional[Sequence[str]] = None, max_doubled_excess: float = 0.05, overlap_true: Optional[float] = None,
                    overlap_shuffled: Optional[float] = None, min_overlap_gap: float = 0.05) -> CollapseReport:
    """A :class:`CollapseReport` of ``outputs`` (one per evaluated source) and, when given, the
    losses of :func:`source_sensitivity`.

    Also measures :func:`doubled_word_share` of the outputs (and of ``sources`` when given), with
    a notice (not a collapse) when the outputs' share exceeds the sources' (0 without sources) by
    more than ``max_doubled_excess``.

    Warns that the model emits one output when the distinct fraction is below
    ``min_distinct_fraction`` or one output covers more than ``max_top_share`` of the rows, and
    that it ignores its input when shuffling the sources raises the loss by less than
    ``min_source_gap`` nats per token and, where the shares of :func:`source_word_overlap`
    (``overlap_true``, ``overlap_shuffled``) are given, the outputs take less than
    ``min_overlap_gap`` more of their words from their own source than from another row's (a low
    loss gap with a clear overlap gap gets a notice instead: the model reads its input, the loss of
    the references does not show it)."""
    if (overlap_true is None) != (overlap_shuffled is None):
        raise ValueError("collapse_report needs both overlap_true and overlap_shuffled (source_word_overlap), or neither.")
    stats = distinct_stats(outputs)
    report = CollapseReport(rows=len(outputs), loss_true=loss_true, loss_shuffled=loss_shuffled, targets=targets, **stats,
                            overlap_true=overlap_true, overlap_shuffled=overlap_shuffled,
                            doubled_word_share=doubled_word_share(outputs),
                            source_doubled_word_share=None if sources is None else doubled_word_share(sources))
    floor = report.source_doubled_word_share or 0.0
    if outputs and report.doubled_word_share > floor + max_doubled_excess:
        example = next(o for o in outputs if _doubles_a_word(o))
        report.notices.append(
            f"WARNING: the model DOUBLES WORDS: {100 * report.doubled_word_share:.1f}% of its outputs write a word twice in a row "
            f"(e.g. {example.strip()[:60]!r}), against {100 * floor:.1f}% of the sources; a discriminator or classifier with a blind spot "
            f"for repetition can be fooled this way (see --training_no_repeat_ngram_size and --kl_coef).")
    if len(outputs) >= 2 and (stats["distinct_fraction"] < min_distinct_fraction or stats["top_output_share"] > max_top_share):
        common = Counter(o.strip() for o in outputs).most_common(1)[0][0]
        report.warnings.append(
            f"WARNING: the model emits ONE output for (almost) every input: {stats['distinct']} distinct output"
            f"{'s' if stats['distinct'] != 1 else ''} over {len(outputs)} rows, the most common ({common[:60]!r}) for "
            f"{100 * stats['top_output_share']:.0f}% of them.")
    if loss_true is not None and len(outputs) >= 2 and report.source_gap < min_source_gap:
        if overlap_true is not None and report.overlap_gap >= min_overlap_gap:
            report.notices.append(
                f"NOTE: the loss of the {targets} barely depends on the source (gap {report.source_gap:+.4f} nats/token, below "
                f"{min_source_gap}), but the outputs read it: they take {100 * overlap_true:.1f}% of their words from their own source "
                f"against {100 * overlap_shuffled:.1f}% from another row's (gap {100 * report.overlap_gap:+.1f} points).")
        else:
            words = "" if overlap_true is None else (
                f"; its outputs take {100 * overlap_true:.1f}% of their words from their own source against {100 * overlap_shuffled:.1f}% from "
                f"another row's (gap {100 * report.overlap_gap:+.1f} points, below {100 * min_overlap_gap:.0f})")
            report.warnings.append(
                f"WARNING: the model IGNORES ITS INPUT: with the sources shuffled across rows the loss of the {targets} is "
                f"{loss_shuffled:.4f} against {loss_true:.4f} with the true sources (gap {report.source_gap:+.4f} nats/token, "
                f"below {min_source_gap}){words}.")
    if report.warnings and hint:
        report.hint = hint
    return report


def check_collapse(model, tokenizer, sources: Sequence[str], outputs: Sequence[str], references: Optional[Sequence[str]] = None, *,
                   max_rows: int = 256, seed: int = 0, **kwargs) -> CollapseReport:
    """Both checks on an evaluation: distinct ``outputs`` over all rows, and the source sensitivity
    on the first ``max_rows`` rows, scored on ``references`` when given (else on ``outputs``), and
    :func:`source_word_overlap` of ``outputs`` with ``sources`` over all rows (one output per source).
    ``kwargs`` go to :func:`source_sensitivity` (lengths, batch size, direction tags)."""
    thresholds = {k: kwargs.pop(k) for k in ("min_distinct_fraction", "max_top_share", "min_source_gap", "max_doubled_excess", "min_overlap_gap")
                  if k in kwargs}
    targets = list(references) if references is not None else list(outputs)
    n = min(len(sources), max_rows)
    loss = {}
    if n >= 2:  # an empty target still scores its EOS
        loss = source_sensitivity(model, tokenizer, list(sources[:n]), targets[:n], seed=seed, **kwargs)
    overlap = source_word_overlap(sources, outputs, seed=seed)
    return collapse_report(outputs, loss_true=loss.get("loss_true"), loss_shuffled=loss.get("loss_shuffled"),
                           targets="references" if references is not None else "model's own outputs", sources=sources,
                           overlap_true=overlap.get("overlap_true"), overlap_shuffled=overlap.get("overlap_shuffled"), **thresholds)
