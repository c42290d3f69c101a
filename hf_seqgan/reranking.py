"""Best-of-N decoding: the generator proposes, the discriminator judges, the best candidate wins.

:func:`generate_and_rerank` samples (or beam-searches) N candidates per input with plain
``model.generate`` (or a :class:`~hf_seqgan.rollout.RolloutEngine`), scores each with a
:class:`~hf_seqgan.discriminators.SequenceDiscriminator` (``log p_D(label | source, candidate)``),
optionally adds an `evaluate` metric against references and any callable, and returns the
best candidate per input together with every score (:class:`RerankOutput`).

Examples:
    See ``docs/decoding.md`` for a run on a tiny model with a trained tiny discriminator.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from typing import Callable, Optional, Sequence, Union

import torch
from transformers import LogitsProcessorList

from .discriminators import SequenceDiscriminator
from .logits_process import GumbelSamplingLogitsProcessor
from .rollout import RolloutEngine

__all__ = ["RerankOutput", "generate_and_rerank", "STRATEGIES"]

STRATEGIES = ("sample", "beam", "stochastic_beam")


@dataclasses.dataclass
class RerankOutput:
    """What :func:`generate_and_rerank` returns, for B inputs and N candidates each.

    Attributes:
        sequences: `(B, T)` the best candidate of each input (generator ids, decoder start included
            when ``generate`` returns it).
        best_index: `(B,)` which candidate won.
        candidates: `(B, N, T)` every candidate.
        scores: `(B, N)` the total used for ranking.
        discriminator_scores: `(B, N)` ``log p_D(label | source, candidate)``.
        metric_scores: `(B, N)` the metric's per-candidate value, when a metric was given.
        scorer_scores: `(B, N)` the callable's value, when one was given.
        texts: `B` best texts, and candidate_texts: `B` lists of N texts (with a tokenizer).
    """

    sequences: torch.Tensor
    best_index: torch.Tensor
    candidates: torch.Tensor
    scores: torch.Tensor
    discriminator_scores: torch.Tensor
    metric_scores: Optional[torch.Tensor] = None
    scorer_scores: Optional[torch.Tensor] = None
    texts: Optional[list[str]] = None
    candidate_texts: Optional[list[list[str]]] = None


def _generate(model, inputs: dict, n: int, strategy: str, generate_kwargs: dict) -> torch.Tensor:
    """`(B * N, T)` candidates, source-major."""
    if isinstance(model, RolloutEngine):
        if strategy != "sample":
            raise ValueError(f"A RolloutEngine proposes candidates by sampling; strategy={strategy!r} needs a model's generate().")
        return model.sample(inputs["input_ids"], inputs.get("attention_mask"), num_samples=n, **generate_kwargs).sequences
    kwargs = dict(generate_kwargs)
    if strategy == "sample":
        kwargs = {"do_sample": True, "num_return_sequences": n, **kwargs}
    elif strategy == "beam":
        kwargs = {"do_sample": False, "num_beams": n, "num_return_sequences": n, **kwargs}
    else:
        seed = kwargs.pop("seed", None)
        gumbel = GumbelSamplingLogitsProcessor(kwargs.pop("gumbel_temperature", 1.0), num_beams=n, seed=seed, generator=kwargs.pop("generator", None))
        processors = LogitsProcessorList(kwargs.pop("logits_processor", None) or [])
        processors.append(gumbel)
        kwargs = {**gumbel.beam_search_kwargs(n), **kwargs, "logits_processor": processors}
    return model.generate(**inputs, **kwargs)


def _metric_scores(metric, predictions: list[str], references: list, metric_key: Optional[str], metric_kwargs: dict) -> list[float]:
    """One value per prediction from an `evaluate` module (one call if it returns per-item values)."""
    result = metric.compute(predictions=predictions, references=references, **metric_kwargs)
    key = metric_key or (next(iter(result)) if len(result) == 1 else None)
    if key is None or key not in result:
        raise ValueError(f"Pick the metric's value with metric_key; {getattr(metric, 'name', 'the metric')} returned {sorted(result)}.")
    value = result[key]
    if isinstance(value, (list, tuple)) and len(value) == len(predictions):
        return [float(v) for v in value]
    # corpus-level metric: one call per candidate
    return [float(metric.compute(predictions=[p], references=[r], **metric_kwargs)[key]) for p, r in zip(predictions, references)]


@torch.no_grad()
def generate_and_rerank(
    model,
    inputs,
    discriminator: SequenceDiscriminator,
    num_candidates: int = 4,
    *,
    tokenizer=None,
    label: Union[int, str] = 1,
    strategy: str = "sample",
    sources: Optional[Sequence[str]] = None,
    discriminator_weight: float = 1.0,
    metric=None,
    references: Optional[Sequence] = None,
    metric_key: Optional[str] = None,
    metric_weight: float = 1.0,
    metric_kwargs: Optional[dict] = None,
    scorer: Optional[Callable[[list[str], list[str]], Sequence[float]]] = None,
    scorer_weight: float = 1.0,
    **generate_kwargs,
) -> RerankOutput:
    """Propose ``num_candidates`` outputs per input, score them, return the best of each.

    ``score = discriminator_weight * log p_D(label | source, candidate)
    + metric_weight * metric(candidate, reference) + scorer_weight * scorer(source, candidate)``
    (the last two terms only when given); the highest score wins, the first candidate on ties.

    Args:
        model: a seq2seq model (its ``generate`` proposes) or a :class:`RolloutEngine` (sampling).
        inputs: the tokenized sources (``input_ids``, ``attention_mask``), a `BatchEncoding` or dict.
        discriminator (`SequenceDiscriminator`): the judge; candidates go through its ids path when it
            shares the generator's vocabulary, through texts otherwise. Put it in eval mode.
        num_candidates (`int`, defaults to 4): N >= 1 candidates per input.
        tokenizer (*optional*): the generator's tokenizer; needed for texts (the text path, a
            metric, a scorer, ``RerankOutput.texts``). Defaults to the engine's tokenizer.
        label (`int` or `str`, defaults to 1): the class whose log-probability ranks candidates.
        strategy (`str`, defaults to `"sample"`): ``"sample"`` (``num_return_sequences=N``),
            ``"beam"`` (the N best beams) or ``"stochastic_beam"`` (N distinct samples without
            replacement with :class:`GumbelSamplingLogitsProcessor`; ``seed=`` and
            ``gumbel_temperature=`` are read from the keyword arguments).
        sources (`list[str]`, *optional*): source texts for a conditional discriminator on the text
            path and for a scorer; decoded from ``inputs`` by default.
        metric (*optional*): an `evaluate` module, e.g. ``evaluate.load(path)``; called with the
            candidates as predictions and ``references`` (one per input) repeated per candidate.
        metric_key (`str`, *optional*): which entry of the metric's result to use.
        metric_kwargs (`dict`, *optional*): extra arguments of ``metric.compute``.
        scorer (*optional*): ``scorer(sources, candidates) -> B*N floats``, higher is better.
        discriminator_weight, metric_weight, scorer_weight (`float`): finite weights.
        **generate_kwargs: passed on to ``generate`` (or :meth:`RolloutEngine.sample`), e.g.
            ``max_new_tokens``, ``top_p``, ``logits_processor``.

    Returns:
        :class:`RerankOutput`.
    """
    if isinstance(num_candidates, bool) or not isinstance(num_candidates, int) or num_candidates < 1:
        raise ValueError(f"num_candidates must be a positive integer, got {num_candidates!r}.")
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}.")
    for name, w in (("discriminator_weight", discriminator_weight), ("metric_weight", metric_weight), ("scorer_weight", scorer_weight)):
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w):
            raise ValueError(f"{name} must be a finite number, got {w!r}.")
    if not isinstance(discriminator, SequenceDiscriminator):
        raise ValueError("discriminator must be a SequenceDiscriminator (wrap the classifier and its tokenizer in one).")
    if discriminator.training:
        warnings.warn("The discriminator is in training mode (dropout on): call .eval() for deterministic scores.", stacklevel=2)
    if metric is not None and (references is None or len(references) != inputs["input_ids"].shape[0]):
        raise ValueError("A metric needs references, one per input.")
    if tokenizer is None and isinstance(model, RolloutEngine):
        tokenizer = model.tokenizer
    text_path = not discriminator.shares_vocabulary(tokenizer) if tokenizer is not None else False
    if tokenizer is None and (metric is not None or scorer is not None):
        raise ValueError("Pass the generator's tokenizer: a metric and a scorer work on texts.")

    n, batch = num_candidates, inputs["input_ids"].shape[0]
    candidates = _generate(model, inputs, n, strategy, generate_kwargs)  # (B*N, T)
    source_index = torch.arange(batch, device=candidates.device).repeat_interleave(n)  # (B*N,)
    texts = tokenizer.batch_decode(candidates, skip_special_tokens=True) if tokenizer is not None else None
    if sources is None and tokenizer is not None:
        sources = tokenizer.batch_decode(inputs["input_ids"], skip_special_tokens=True)
    if text_path:
        d_sources = [sources[i] for i in source_index.tolist()] if discriminator.conditional else None
        d_scores = discriminator.score_texts(texts, d_sources, label=label)
    else:
        src = inputs["input_ids"] if discriminator.conditional else None
        d_scores = discriminator.score_ids(candidates, src, source_index if src is not None else None, label=label)
    d_scores = d_scores.float().cpu().view(batch, n)
    total = discriminator_weight * d_scores
    metric_scores = scorer_scores = None
    if metric is not None:
        refs = [references[i] for i in source_index.tolist()]
        metric_scores = torch.tensor(_metric_scores(metric, texts, refs, metric_key, metric_kwargs or {})).view(batch, n)
        total = total + metric_weight * metric_scores
    if scorer is not None:
        values = list(scorer([sources[i] for i in source_index.tolist()], texts))
        if len(values) != batch * n:
            raise ValueError(f"scorer returned {len(values)} values for {batch * n} candidates.")
        scorer_scores = torch.tensor([float(v) for v in values]).view(batch, n)
        total = total + scorer_weight * scorer_scores
    best = total.argmax(-1)  # (B,) first maximum on ties
    grouped = candidates.view(batch, n, -1)  # (B, N, T)
    chosen = grouped[torch.arange(batch), best.to(grouped.device)]
    grouped_texts = [texts[i * n : (i + 1) * n] for i in range(batch)] if texts is not None else None
    return RerankOutput(
        sequences=chosen, best_index=best, candidates=grouped, scores=total, discriminator_scores=d_scores,
        metric_scores=metric_scores, scorer_scores=scorer_scores,
        texts=[grouped_texts[i][int(best[i])] for i in range(batch)] if grouped_texts is not None else None,
        candidate_texts=grouped_texts,
    )
