"""Scoring a decode: the log-probabilities of sampled tokens under the distribution the
:class:`~hf_seqgan.rollout.RolloutEngine` actually sampled them from.

Samples drawn from ``softmax(z / T)``, after top-k / top-p and the generation config's processors,
are samples of that processed distribution, not of ``softmax(z)``: a policy gradient must
differentiate the processed log-probabilities, or a constant reward moves the policy at T != 1.
:func:`sampled_logprobs` recomputes them from a teacher-forced forward, in the graph, with the
engine's own processors in the engine's order.
"""

from __future__ import annotations

from typing import Optional

import torch
from transformers import TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

__all__ = ["sampled_logprobs", "sampling_processors"]

_POSITION_FREE = (TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper)


def sampling_processors(engine, *, max_new_tokens: int, do_sample: bool = True, temperature: float = 1.0, top_k=None, top_p=None,
                        logits_processor=None):
    """The processors :meth:`RolloutEngine.sample` applies for these settings, in its order."""
    warpers, _ = engine._sampling_setup(do_sample, temperature, top_k, top_p, None)
    return engine._processors(max_new_tokens, logits_processor, warpers)


def sampled_logprobs(engine, logits: torch.Tensor, sequences: torch.Tensor, mask: torch.Tensor, *, max_new_tokens: int,
                     min_new_tokens: int = 0, do_sample: bool = True, temperature: float = 1.0, top_k: Optional[int] = None,
                     top_p: Optional[float] = None, logits_processor=None) -> torch.Tensor:
    """`(R, T)` log-probabilities of ``sequences`` under the distribution the engine sampled them
    from, computed from teacher-forced ``logits`` `(R, T, V)` (differentiable; 0 where ``mask`` is 0).

    The settings are those given to :meth:`RolloutEngine.sample` (``max_new_tokens`` matters for the
    generation config's forced EOS); ``logits_processor`` must hold only stateless processors (a
    function of the prefix and the scores, as transformers' own are). Temperature, top-k and top-p act on every position at once;
    processors that read the decoded prefix (repetition penalty, n-gram blocking, forced tokens,
    minimum length) are applied position by position on the prefix, exactly as in the decode. A
    sampled token that a top-k/top-p cut would now exclude (a tie at the boundary moved by float
    noise between the cached decode and this forward) keeps its temperature-scaled score.
    """
    processors = sampling_processors(engine, max_new_tokens=max_new_tokens, do_sample=do_sample, temperature=temperature, top_k=top_k, top_p=top_p,
                                     logits_processor=logits_processor)
    rows, steps, vocab = logits.shape
    scores = logits.float()  # (R, T, V)
    eos = engine.eos_token_ids
    if min_new_tokens and eos:
        blocked = torch.zeros(steps, vocab, dtype=torch.bool, device=scores.device)
        blocked[: min(min_new_tokens, steps), eos] = True
        scores = scores.masked_fill(blocked, float("-inf"))  # EOS blocked before min_new_tokens, as in the decode
    fallback = scores / temperature if do_sample and temperature != 1.0 else scores
    if all(isinstance(p, _POSITION_FREE) for p in processors):
        flat = scores.reshape(rows * steps, vocab)
        dummy = sequences.new_zeros(rows * steps, 1)
        for proc in processors:
            flat = proc(dummy, flat)
        processed = flat.view(rows, steps, vocab)
    else:
        start = torch.full_like(sequences[:, :1], engine.decoder_start_token_id)
        history = torch.cat([start, sequences], dim=1)  # (R, 1 + T)
        processed = torch.stack([processors(history[:, : t + 1], scores[:, t]) for t in range(steps)], dim=1)
    token = processed.gather(-1, sequences[..., None]).squeeze(-1)  # (R, T)
    norm = processed.logsumexp(-1)  # (R, T)
    live = mask.bool()
    flipped = torch.isneginf(token) & live
    if bool(flipped.any()):
        kept = fallback.gather(-1, sequences[..., None]).squeeze(-1)
        norm = torch.where(flipped, torch.logaddexp(norm, kept), norm)
        token = torch.where(flipped, kept, token)
    return torch.where(live, token - norm, torch.zeros_like(norm))
