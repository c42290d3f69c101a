"""Honest evaluation of a seq2seq model: quality and diversity over a temperature (or top-p) sweep.

A text GAN that reports quality at one temperature proves little: sampled at a lower temperature,
plain MLE trades diversity for quality and beat the language GANs on the whole quality–diversity
curve ("Language GANs Falling Short", Caccia et al. 2020, https://arxiv.org/abs/1811.02549). So a
model is evaluated at several decoding settings, and models are compared by their curves.

- :func:`temperature_sweep`: samples a model over a dataset at each temperature / top-p (batched
  through :class:`~hf_seqgan.rollout.RolloutEngine`, seeded) and returns one row of figures per
  setting: the NLL of the samples under a reference model (quality: an oracle, or any scorer
  model), the NLL of the samples under the sampling distribution itself, the model's NLL on the
  held-out references under that setting's distribution (coverage), BLEU and ROUGE to the
  references, self-BLEU and distinct-n among the samples (diversity) and the length;
- :func:`mean_sweeps`: mean and standard deviation of several sweeps (seeds);
- :func:`sweep_table`: a Markdown table of several models' sweeps;
- :func:`plot_frontier`: the quality–diversity frontier of several models on one matplotlib plot.

All NLL figures are nats per token (EOS included where a sequence has one). BLEU is sacreBLEU's
corpus BLEU (0-100), ROUGE is `rouge_score`'s mean F-measure (0-1); self-BLEU and distinct-n come
from :mod:`hf_seqgan.metrics.functional`.

Examples:

```python
>>> from hf_seqgan.oracle import OracleTask
>>> from hf_seqgan.evaluation import temperature_sweep, sweep_table
>>> task = OracleTask.build(seed=0, vocab_size=32, source_length=6, target_length=8)
>>> test = task.sample_dataset(16, seed=1)
>>> rows = temperature_sweep(task.oracle, task.tokenizer, test, temperatures=(1.0, 0.5), reference_model=task.oracle,
...                          metrics=("distinct",), **task.decode_kwargs)
>>> abs(rows[0]["nll_reference"] - rows[0]["nll_self"]) < 1e-5  # its own samples at T=1: scored = sampled log-probs
True
>>> print(sweep_table({"oracle": rows}, columns=("nll_reference", "nll_self", "nll_test", "distinct_2")))
| model | setting | nll_reference | nll_self | nll_test | distinct_2 |
|---|---|---|---|---|---|
| oracle | T=1 | 1.810 | 1.810 | 1.759 | 0.688 |
| oracle | T=0.5 | 1.318 | 1.109 | 2.115 | 0.589 |

```
"""

from __future__ import annotations

import math
import statistics
from typing import Mapping, Optional, Sequence

import torch
from transformers import LogitsProcessorList, SuppressTokensLogitsProcessor

from .rollout import RolloutEngine, token_logprobs

__all__ = ["temperature_sweep", "heldout_nll", "text_metrics", "mean_sweeps", "sweep_table", "plot_frontier", "DEFAULT_METRICS", "DEFAULT_COLUMNS"]

DEFAULT_METRICS = ("bleu", "rouge", "self_bleu", "distinct")
DEFAULT_COLUMNS = ("nll_reference", "nll_test", "bleu", "rougeL", "self_bleu", "distinct_2", "length")
_METRICS = ("bleu", "rouge", "self_bleu", "distinct")


def _optional(module: str, what: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise ImportError(f"{what} needs `{module.split('.')[0]}`: `pip install {module.split('.')[0].replace('_', '-')}` "
                          f"(or `pip install hf_seqgan[examples]`), or leave it out of `metrics`.") from None


def text_metrics(predictions: Sequence[str], references: Optional[Sequence[str]] = None, *,
                 metrics: Sequence[str] = DEFAULT_METRICS, self_bleu_sample_size: Optional[int] = 500, seed: int = 0,
                 tokenizer: str = "word") -> dict:
    """Text figures of ``predictions``: ``bleu`` (sacreBLEU corpus BLEU against ``references``, one
    per prediction), ``rouge`` (``rouge1``, ``rouge2``, ``rougeL``: mean F-measure of `rouge_score`),
    ``self_bleu`` (Texygen self-BLEU among the predictions, on at most ``self_bleu_sample_size`` of
    them) and ``distinct`` (``distinct_1``, ``distinct_2``)."""
    unknown = [m for m in metrics if m not in _METRICS]
    if unknown:
        raise ValueError(f"Unknown metrics {unknown}: choose from {_METRICS}.")
    predictions = list(predictions)
    out = {}
    if ("bleu" in metrics or "rouge" in metrics) and (references is None or len(references) != len(predictions)):
        raise ValueError(f"BLEU and ROUGE need one reference per prediction: got {len(predictions)} predictions and "
                         f"{'no' if references is None else len(references)} references.")
    if "bleu" in metrics:
        sacrebleu = _optional("sacrebleu", "metrics=('bleu',)")
        out["bleu"] = float(sacrebleu.corpus_bleu(predictions, [list(references)]).score)
    if "rouge" in metrics:
        rouge_scorer = _optional("rouge_score.rouge_scorer", "metrics=('rouge',)")
        keys = ("rouge1", "rouge2", "rougeL")
        scorer = rouge_scorer.RougeScorer(list(keys))
        scores = [scorer.score(ref, pred) for pred, ref in zip(predictions, references)]
        out.update({k: statistics.fmean(s[k].fmeasure for s in scores) for k in keys})
    if "self_bleu" in metrics or "distinct" in metrics:
        from .metrics.functional import distinct_n, self_bleu

        if "self_bleu" in metrics:
            out["self_bleu"] = self_bleu(predictions, sample_size=self_bleu_sample_size, seed=seed, tokenizer=tokenizer) if len(predictions) > 1 else float("nan")
        if "distinct" in metrics:
            out.update(distinct_n(predictions, n=(1, 2), tokenizer=tokenizer))
    return out


def _pad(rows: list, value: int) -> torch.Tensor:
    width = max(len(r) for r in rows)
    return torch.tensor([list(r) + [value] * (width - len(r)) for r in rows], dtype=torch.long)  # (B, W)


def _examples(dataset, tokenizer, source_column: str, target_column: str, max_source_length: Optional[int], need_text: bool = True):
    """Source id lists, label id lists (-100 = ignored) and reference texts (if ``need_text``) of ``dataset``."""
    columns = list(getattr(dataset, "column_names", None) or dataset.keys())
    if "input_ids" in columns:
        sources = [list(ids) for ids in dataset["input_ids"]]
        if "labels" not in columns:
            raise ValueError(f"The dataset has input_ids but no labels (columns {columns}): add the reference target ids as labels.")
        labels = [list(ids) for ids in dataset["labels"]]
        references = tokenizer.batch_decode([[i for i in ids if i >= 0] for ids in labels], skip_special_tokens=True) if need_text else None
    elif tokenizer is None:
        raise ValueError("A dataset of text columns needs the tokenizer to turn them into ids: pass tokenizer=.")
    elif source_column in columns and target_column in columns:
        sources = tokenizer(list(dataset[source_column]), truncation=max_source_length is not None, max_length=max_source_length)["input_ids"]
        references = list(dataset[target_column])
        labels = tokenizer(text_target=references)["input_ids"]
    else:
        raise ValueError(f"The dataset needs token columns (input_ids, labels) or text columns ({source_column!r}, {target_column!r}); "
                         f"it has {columns}. Name the text columns with source_column= and target_column=.")
    if not sources:
        raise ValueError("The dataset is empty.")
    return sources, labels, references


def _batches(sources: list, labels: list, batch_size: int, pad: int, device) -> list[tuple]:
    """``(index, source ids (B, S), source mask (B, S), labels (B, T) with -100)`` per batch, right-padded."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}.")
    out = []
    for start in range(0, len(sources), batch_size):
        idx = range(start, min(start + batch_size, len(sources)))
        ids = _pad([sources[i] for i in idx], pad).to(device)  # (B, S)
        mask = _pad([[1] * len(sources[i]) for i in idx], 0).to(device)  # (B, S)
        out.append((idx, ids, mask, _pad([labels[i] for i in idx], -100).to(device)))  # labels (B, T)
    return out


def _heldout(engine: RolloutEngine, batches: list, temperatures: Sequence[float], suppress: list) -> list[float]:
    """The model's mean NLL per token of the labels under logits / T (suppressed ids removed), per T."""
    totals, count = [0.0] * len(temperatures), 0
    for _, ids, mask, lab in batches:
        lab_mask = (lab != -100).long()  # (B, T)
        logits = engine.score(ids, mask, sequences=lab.clamp_min(0), sequence_mask=lab_mask, output_logits=True).logits.float()  # (B, T, V)
        if suppress:
            logits[..., suppress] = float("-inf")
        for k, t in enumerate(temperatures):
            totals[k] -= float(token_logprobs(logits / t, lab, lab_mask).sum())
        count += int(lab_mask.sum())
    return [total / count for total in totals]


@torch.no_grad()
def heldout_nll(model, dataset, tokenizer=None, *, temperatures: Sequence[float] = (1.0,), suppress_token_ids: Optional[Sequence[int]] = None,
                batch_size: int = 64, source_column: str = "source", target_column: str = "target") -> list[float]:
    """The model's mean NLL per token (nats) of ``dataset``'s references (teacher-forced, batched
    through :meth:`RolloutEngine.score`), under each temperature's distribution (logits / T, the
    ``suppress_token_ids`` removed): one float per temperature. ``tokenizer`` is needed only for text
    columns (see :func:`temperature_sweep` for the dataset's form)."""
    if any(not t > 0 for t in temperatures):
        raise ValueError(f"temperatures must be > 0, got {list(temperatures)}.")
    engine = RolloutEngine(model, tokenizer, use_generation_config=False)
    sources, labels, _ = _examples(dataset, tokenizer, source_column, target_column, None, need_text=False)
    was_training = engine.base.training
    engine.base.eval()
    try:
        return _heldout(engine, _batches(sources, labels, batch_size, engine.pad_token_id, engine.device), temperatures, list(suppress_token_ids or []))
    finally:
        engine.base.train(was_training)


def _settings(temperatures: Sequence[float], top_ps: Sequence[float]) -> list[dict]:
    settings = [{"setting": f"T={t:g}", "temperature": float(t), "top_p": 1.0} for t in temperatures]
    settings += [{"setting": f"top-p={p:g}", "temperature": 1.0, "top_p": float(p)} for p in top_ps]
    if not settings:
        raise ValueError("Give at least one temperature or top-p value to sweep.")
    for s in settings:
        if not s["temperature"] > 0 or not 0 < s["top_p"] <= 1:
            raise ValueError(f"temperatures must be > 0 and top-p values in (0, 1]; got {s['setting']}.")
    return settings


@torch.no_grad()
def temperature_sweep(
    model,
    tokenizer,
    dataset,
    *,
    temperatures: Sequence[float] = (1.0,),
    top_ps: Sequence[float] = (),
    reference_model=None,
    num_samples: int = 1,
    max_new_tokens: Optional[int] = None,
    min_new_tokens: int = 0,
    suppress_token_ids: Optional[Sequence[int]] = None,
    batch_size: int = 64,
    seed: int = 0,
    metrics: Sequence[str] = DEFAULT_METRICS,
    source_column: str = "source",
    target_column: str = "target",
    max_source_length: Optional[int] = None,
    self_bleu_sample_size: Optional[int] = 500,
    use_generation_config: bool = False,
) -> list[dict]:
    """Sample ``model`` over ``dataset`` at each setting and measure quality and diversity.

    Args:
        model: a seq2seq `PreTrainedModel` (or a `PeftModel` around one); put in eval mode for the
            sweep, its mode restored after.
        tokenizer: its tokenizer (pads the sources, decodes the samples for the text metrics).
        dataset: a `datasets.Dataset` (or a dict of lists) with token columns ``input_ids`` and
            ``labels`` (the references, -100 ignored), or text columns ``source_column`` and
            ``target_column``.
        temperatures (`Sequence[float]`, defaults to `(1.0,)`), top_ps (`Sequence[float]`): one
            setting per temperature, then one per top-p value (at temperature 1).
        reference_model (*optional*): scores the samples (``nll_reference``): an oracle, a larger
            model, or the model itself. It must share the tokenizer's vocabulary.
        num_samples (`int`, defaults to 1): samples per source.
        max_new_tokens, min_new_tokens: the decode's length (``max_new_tokens`` defaults to the
            longest reference + 1).
        suppress_token_ids (*optional*): ids the model may not emit (e.g. an oracle task's special
            tokens); they are removed from the distribution that is sampled and from the one that
            scores the held-out references.
        batch_size (`int`, defaults to 64): sources per decode.
        seed (`int`, defaults to 0): seeds the sampling; every setting starts from the same seed.
        metrics (`Sequence[str]`): text figures among ``"bleu"``, ``"rouge"``, ``"self_bleu"``,
            ``"distinct"`` (see :func:`text_metrics`); ``()`` for the NLL figures only.
        use_generation_config (`bool`, defaults to `False`): apply the processors of
            ``model.generation_config`` (see :class:`~hf_seqgan.rollout.RolloutEngine`).

    Returns:
        `list[dict]`, one row per setting: ``setting``, ``temperature``, ``top_p``,
        ``nll_reference`` (the reference model's NLL of the samples; absent without one),
        ``nll_self`` (the samples' NLL under the distribution they were sampled from: an entropy
        estimate of the model at that setting), ``nll_test`` (the model's NLL of the references
        under that setting's distribution: logits / temperature, suppressed ids removed; ``None`` for
        top-p < 1, whose truncated distribution gives many references probability 0), ``length``
        (mean generated tokens), ``num_samples`` (sampled sequences) and the text metrics.
    """
    engine = RolloutEngine(model, tokenizer, use_generation_config=use_generation_config)
    reference = None
    if reference_model is not None:
        reference = engine if reference_model is model else RolloutEngine(reference_model, use_generation_config=False)
        if reference.base.config.vocab_size != engine.base.config.vocab_size:
            raise ValueError(f"The reference model's vocabulary ({reference.base.config.vocab_size}) differs from the model's "
                             f"({engine.base.config.vocab_size}): it must score the same token ids (share the tokenizer).")
    settings = _settings(temperatures, top_ps)
    sources, labels, references = _examples(dataset, tokenizer, source_column, target_column, max_source_length)
    if max_new_tokens is None:
        max_new_tokens = max(len(lab) for lab in labels) + 1
    suppress = list(suppress_token_ids or [])
    processors = LogitsProcessorList([SuppressTokensLogitsProcessor(suppress, device=engine.device)]) if suppress else None
    batches = _batches(sources, labels, batch_size, engine.pad_token_id, engine.device)
    models = [engine.base] + ([reference.base] if reference is not None and reference.base is not engine.base else [])
    modes = [m.training for m in models]
    for m in models:
        m.eval()
    try:
        plain = [s["temperature"] for s in settings if s["top_p"] == 1.0]
        held = dict(zip(plain, _heldout(engine, batches, plain, suppress)))
        rows = []
        for s in settings:
            generator = torch.Generator(device=engine.device).manual_seed(seed)
            texts, refs, self_nll, ref_nll, tokens = [], [], 0.0, 0.0, 0
            for idx, ids, mask, _ in batches:
                out = engine.sample(ids, mask, max_new_tokens=max_new_tokens, min_new_tokens=min_new_tokens, temperature=s["temperature"],
                                    top_p=s["top_p"], top_k=0, logits_processor=processors, num_samples=num_samples, generator=generator)
                self_nll -= float(out.sample_logprobs.sum())
                tokens += int(out.attention_mask.sum())
                if reference is not None:
                    scored = reference.score(ids, mask, sequences=out.sequences, sequence_mask=out.attention_mask, source_index=out.source_index)
                    ref_nll -= float(scored.logprobs.sum())
                texts += tokenizer.batch_decode(out.sequences, skip_special_tokens=True)
                refs += [references[idx[int(j)]] for j in out.source_index]
            row = dict(s)
            if reference is not None:
                row["nll_reference"] = ref_nll / tokens
            row["nll_self"] = self_nll / tokens
            row["nll_test"] = held[s["temperature"]] if s["top_p"] == 1.0 else None
            row["length"] = tokens / len(texts)
            row["num_samples"] = len(texts)
            row.update(text_metrics(texts, refs, metrics=metrics, self_bleu_sample_size=self_bleu_sample_size, seed=seed))
            rows.append(row)
    finally:
        for m, was_training in zip(models, modes):
            m.train(was_training)
    return rows


def mean_sweeps(sweeps: Sequence[Sequence[Mapping]]) -> list[dict]:
    """Average several sweeps of the same settings (e.g. one per seed): each numeric figure becomes
    its mean, with its standard deviation under ``<name>_std`` (``None`` for a single sweep)."""
    if not sweeps:
        raise ValueError("mean_sweeps needs at least one sweep.")
    settings = [r["setting"] for r in sweeps[0]]
    if any([r["setting"] for r in sweep] != settings for sweep in sweeps):
        raise ValueError("The sweeps do not share the same settings in the same order; average sweeps of one configuration.")
    out = []
    for i, setting in enumerate(settings):
        row = {"setting": setting}
        for key, value in sweeps[0][i].items():
            if key == "setting":
                continue
            values = [sweep[i][key] for sweep in sweeps]
            if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
                row[key] = statistics.fmean(values)
                if key not in ("temperature", "top_p", "num_samples"):
                    row[f"{key}_std"] = statistics.stdev(values) if len(values) > 1 else None
            else:
                row[key] = values[0]
        row["runs"] = len(sweeps)
        out.append(row)
    return out


def _cell(row: Mapping, key: str, digits: int) -> str:
    value = row.get(key)
    if value is None:
        return "–"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        text = f"{value:.{digits}f}"
        std = row.get(f"{key}_std")
        return f"{text} ± {std:.{digits}f}" if std is not None else text
    return str(value)


def sweep_table(sweeps: Mapping[str, Sequence[Mapping]], columns: Sequence[str] = DEFAULT_COLUMNS, digits: int = 3) -> str:
    """A Markdown table of several models' sweeps (``{name: rows}``), one line per model and
    setting; a figure with a ``<name>_std`` (from :func:`mean_sweeps`) prints as mean ± std."""
    lines = ["| model | setting | " + " | ".join(columns) + " |", "|---|---|" + "---|" * len(columns)]
    for name, rows in sweeps.items():
        for row in rows:
            lines.append(f"| {name} | {row['setting']} | " + " | ".join(_cell(row, c, digits) for c in columns) + " |")
    return "\n".join(lines)


def plot_frontier(sweeps: Mapping[str, Sequence[Mapping]], path: str, *, x: str = "nll_reference", y: str = "nll_test",
                  xlabel: Optional[str] = None, ylabel: Optional[str] = None, title: Optional[str] = None) -> str:
    """Plot the quality–diversity frontier of several models (``{name: rows}``) on one figure and
    write it to ``path`` (PNG, PDF, SVG, by its suffix); returns ``path``.

    Each model is one line through its settings (labelled by temperature / top-p), with error bars
    where the rows carry ``<x>_std`` / ``<y>_std``. By default x is the NLL of the samples under the
    reference (quality) and y the model's NLL of held-out references (coverage): lower is better on
    both, so the better frontier lies towards the lower left (Caccia et al. 2020, figure 1).
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.8))
    try:
        for name, rows in sweeps.items():
            points = [r for r in rows if r.get(x) is not None and r.get(y) is not None]
            if not points:
                raise ValueError(f"{name}: no setting has both {x!r} and {y!r}; pick figures the rows hold ({sorted(rows[0]) if rows else []}).")
            xs, ys = [r[x] for r in points], [r[y] for r in points]
            xerr = [r.get(f"{x}_std") or 0.0 for r in points]
            yerr = [r.get(f"{y}_std") or 0.0 for r in points]
            line = ax.errorbar(xs, ys, xerr=xerr if any(xerr) else None, yerr=yerr if any(yerr) else None, marker="o", ms=4, capsize=2, label=name)
            for r, xv, yv in zip(points, xs, ys):
                ax.annotate(r["setting"].replace("T=", ""), (xv, yv), textcoords="offset points", xytext=(3, 3), fontsize=7,
                            color=line.lines[0].get_color())
        ax.set_xlabel(xlabel or f"{x} (lower: better quality)")
        ax.set_ylabel(ylabel or f"{y} (lower: better coverage)")
        ax.set_title(title or "Quality–diversity frontier (labels: temperature / top-p)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(path, dpi=120)
    finally:
        plt.close(fig)
    return str(path)
