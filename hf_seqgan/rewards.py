"""Rewards for policy-gradient training: where they come from, how they spread over tokens, and
the baselines that reduce their variance.

Reward sources score decoded rows ``(sequences (R, T), attention_mask (R, T), source_index (R,))``
of a batch and return `(R,)`:

- :class:`DiscriminatorReward`: a :class:`~hf_seqgan.discriminators.SequenceDiscriminator`'s belief
  that the output is real, as a probability, a log-probability or log-odds (SeqGAN, Yu et al. 2017,
  https://arxiv.org/abs/1609.05473);
- :class:`TextReward`: any callable ``fn(sources, outputs, references) -> scores`` on texts, or an
  `evaluate` metric against the references (e.g. ROUGE for SCST, Rennie et al. 2017,
  https://arxiv.org/abs/1612.00563).

Per-token rewards:

- :func:`monte_carlo_rewards`: every prefix completed N times by
  :meth:`~hf_seqgan.rollout.RolloutEngine.continue_from` (all prefixes and samples in one batched
  decode), scored, averaged; the last token gets the score of the full sequence (SeqGAN);
- :func:`step_level_rewards`: every prefix scored as it is, all prefixes in one batched forward
  (REGS, Li et al. 2017; ScratchGAN, de Masson d'Autume et al. 2019);
- :func:`discounted_returns`: ``G_t = r_t + γ G_{t+1}`` within each row's real tokens.

Baselines: :class:`MovingAverageBaseline`, :func:`leave_one_out_baseline` (k samples per source,
Kool et al. 2019, https://openreview.net/forum?id=r1lgTGL5DE) and :func:`self_critical_baseline`
(the reward of the greedy decode, Rennie et al. 2017).
"""

from __future__ import annotations

import inspect
import logging
import math
from typing import Callable, Optional, Union

import torch

from .rollout import Encoded, Rollout, RolloutEngine

__all__ = [
    "REWARD_KINDS",
    "DiscriminatorReward",
    "TextReward",
    "monte_carlo_rewards",
    "step_level_rewards",
    "discounted_returns",
    "MovingAverageBaseline",
    "leave_one_out_baseline",
    "self_critical_baseline",
    "drop_nonfinite",
    "call_reward_function",
    "is_trl_reward_function",
]

logger = logging.getLogger(__name__)

REWARD_KINDS = ("prob", "logprob", "logit", "log_ratio", "maligan")
ScoreFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def _mask_after(sequences: torch.Tensor, attention_mask: torch.Tensor, pad_token_id: int) -> torch.Tensor:
    return sequences.masked_fill(attention_mask == 0, pad_token_id)


class DiscriminatorReward:
    """``D(source, output)`` as a reward.

    Args:
        discriminator (`SequenceDiscriminator`): the judge; label ``real_label`` means "human".
        kind (`str`, defaults to ``"prob"``): ``"prob"`` (p(real), SeqGAN), ``"logprob"``
            (log p(real)), ``"logit"`` / ``"log_ratio"`` (the log-odds log D/(1-D): for a
            discriminator trained to optimality it is log p_data(y|x) - log p_G(y|x), the density
            ratio the residual-EBM and MaliGAN estimators use), or ``"maligan"`` (MaliGAN's
            normalised importance weights, Che et al. 2017, https://arxiv.org/abs/1702.07983:
            ``R * softmax(log-ratio)`` over the R rows scored together, so that they average 1;
            with a baseline of 1 this is MaliGAN's ``r_i / sum_j r_j - 1/R``).
        real_label (`int` or `str`, defaults to 1).
        generator_tokenizer (*optional*): when the discriminator does not share the generator's
            vocabulary, outputs are decoded with this tokenizer and re-encoded (slower: a text round
            trip per row); sources are then taken as texts.
    """

    def __init__(self, discriminator, *, kind: str = "prob", real_label: Union[int, str] = 1, generator_tokenizer=None):
        if kind not in REWARD_KINDS:
            raise ValueError(f"reward kind must be one of {REWARD_KINDS}, got {kind!r}.")
        self.discriminator = discriminator
        self.kind = kind
        self.real_label = discriminator.label_index(real_label)
        self.generator_tokenizer = generator_tokenizer
        self.text_path = generator_tokenizer is not None and not discriminator.shares_vocabulary(generator_tokenizer)

    def from_log_probs(self, logp: torch.Tensor) -> torch.Tensor:
        """`(R, C)` class log-probabilities -> `(R,)` rewards of this kind."""
        real = logp[:, self.real_label]
        if self.kind == "prob":
            return real.exp()
        if self.kind == "logprob":
            return real
        others = torch.cat([logp[:, : self.real_label], logp[:, self.real_label + 1 :]], dim=1)  # (R, C-1)
        ratio = real - torch.logsumexp(others, dim=1)  # (R,) log D / (1 - D)
        if self.kind == "maligan":
            return ratio.shape[0] * torch.softmax(ratio, dim=0)
        return ratio

    @torch.no_grad()
    def __call__(self, sequences, attention_mask, source_index, *, source_ids=None, source_texts=None) -> torch.Tensor:
        disc = self.discriminator
        pad = self.generator_tokenizer.pad_token_id if self.generator_tokenizer is not None else disc.tokenizer.pad_token_id
        sequences = _mask_after(sequences, attention_mask, pad)
        if self.text_path:
            outputs = self.generator_tokenizer.batch_decode(sequences, skip_special_tokens=True)
            sources = [source_texts[i] for i in source_index.tolist()] if disc.conditional else None
            logits = disc.logits_from_texts(outputs, sources)
        else:
            logits = disc.logits_from_ids(sequences, source_ids if disc.conditional else None, source_index if disc.conditional else None)
        return self.from_log_probs(disc.log_probs(logits)).to(sequences.device)


def is_trl_reward_function(fn) -> bool:
    """Whether ``fn`` has TRL's reward signature ``f(prompts, completions, **kwargs)`` (a parameter
    named ``completions``) rather than the positional ``f(sources, outputs, references)``."""
    try:
        return "completions" in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def call_reward_function(fn, prompts: list, completions: list, completion_ids: list, **columns) -> list:
    """Call a TRL-style reward function: ``fn(prompts=..., completions=..., completion_ids=...,
    **columns)``, passing only the keyword arguments it accepts unless it takes ``**kwargs``."""
    params = inspect.signature(fn).parameters
    given = {"prompts": prompts, "completions": completions, "completion_ids": completion_ids, **columns}
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        given = {k: v for k, v in given.items() if k in params}
    scores = fn(**given)
    return scores.tolist() if torch.is_tensor(scores) else list(scores)


class TextReward:
    """A reward computed on texts: a callable, or an `evaluate` metric against the references.

    Args:
        fn: ``fn(sources: list[str], outputs: list[str], references: list[str] | None) -> (R,)``
            scores (list or tensor); or a function with TRL's signature ``fn(prompts, completions,
            completion_ids=..., references=..., **kwargs) -> list[float | None]`` (recognised by its
            ``completions`` parameter; None means "not applicable" and drops the row); or an
            `evaluate.EvaluationModule`, scored per row as
            ``metric.compute(predictions=[output], references=[reference])[key]``.
        tokenizer: the generator's tokenizer (to decode outputs and sources).
        key (`str`, *optional*): which result of the metric is the reward (e.g. ``"rougeL"``);
            defaults to the metric's only result.
        name (`str`, *optional*): a name for logs.
    """

    def __init__(self, fn, tokenizer, *, key: Optional[str] = None, name: Optional[str] = None):
        if tokenizer is None:
            raise ValueError("TextReward needs the generator's tokenizer to decode outputs.")
        self.is_metric = hasattr(fn, "compute")
        if not self.is_metric and not callable(fn):
            raise TypeError(f"A reward function must be callable or an evaluate metric, got {type(fn).__name__}.")
        self.fn, self.tokenizer, self.key = fn, tokenizer, key
        self.name = name or getattr(fn, "name", None) or getattr(fn, "__name__", type(fn).__name__)
        self.needs_references = self.is_metric
        self.trl_style = not self.is_metric and is_trl_reward_function(fn)

    def _metric(self, outputs: list[str], references: list[str]) -> list[float]:
        scores = []
        for out, ref in zip(outputs, references):
            result = self.fn.compute(predictions=[out], references=[ref])
            if self.key is None:
                numeric = {k: v for k, v in result.items() if isinstance(v, (int, float))}
                if len(numeric) != 1:
                    raise ValueError(f"The metric {self.name} returns {sorted(result)}: choose one with key=.")
                value = next(iter(numeric.values()))
            else:
                if self.key not in result:
                    raise ValueError(f"The metric {self.name} has no result {self.key!r}; it returns {sorted(result)}.")
                value = result[self.key]
            scores.append(float(value))
        return scores

    def __call__(self, sequences, attention_mask, source_index, *, source_texts=None, references=None, **_) -> torch.Tensor:
        pad = self.tokenizer.pad_token_id
        outputs = self.tokenizer.batch_decode(_mask_after(sequences, attention_mask, pad), skip_special_tokens=True)
        index = source_index.tolist()
        refs = [references[i] for i in index] if references is not None else None
        if self.is_metric:
            if refs is None:
                raise ValueError(f"The metric reward {self.name} needs references: the batch must carry labels.")
            scores = self._metric(outputs, refs)
        elif self.trl_style:
            sources = [source_texts[i] for i in index] if source_texts is not None else [None] * len(outputs)
            ids = [row[: int(n)].tolist() for row, n in zip(sequences, attention_mask.sum(-1))]
            scores = [float("nan") if s is None else s for s in call_reward_function(self.fn, sources, outputs, ids, references=refs)]
        else:
            sources = [source_texts[i] for i in index] if source_texts is not None else None
            scores = self.fn(sources, outputs, refs)
        scores = torch.as_tensor(scores, dtype=torch.float32, device=sequences.device).reshape(-1)
        if scores.shape[0] != sequences.shape[0]:
            raise ValueError(f"The reward function {self.name} returned {scores.shape[0]} scores for {sequences.shape[0]} outputs.")
        return scores


def drop_nonfinite(rewards: torch.Tensor, name: str, valid: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Check one reward source's scores `(R,)` or `(R, T)` where the rewards are combined: rows with
    a NaN or infinite score are dropped from the policy gradient (a warning names the reward and
    the rows) instead of turning every weight into NaN.

    Returns ``(scores, valid)``: the scores with each dropped row set to 0, and the `(R,)` mask of
    the rows still valid (``valid`` folded in, when given: the mask of earlier sources)."""
    finite = torch.isfinite(rewards)
    row_ok = finite if rewards.dim() == 1 else finite.all(-1)  # (R,)
    if not bool(row_ok.all()):
        bad = (~row_ok).nonzero().flatten().tolist()
        logger.warning("The reward %s returned a non-finite value (NaN or inf) for %d of %d rows (rows %s): those rows are left "
                       "out of this step's policy gradient and baseline. Make the reward return finite numbers (or None, in a "
                       "reward function, for a row it does not apply to).", name, len(bad), row_ok.numel(), bad[:10])
        rewards = torch.where(finite, rewards, torch.zeros_like(rewards))
    return rewards, row_ok if valid is None else valid & row_ok


# ---------------------------------------------------------------------- per-token rewards
def monte_carlo_rewards(
    engine: RolloutEngine,
    encoded: Encoded,
    rollout: Rollout,
    score: ScoreFn,
    *,
    num_rollouts: int,
    **sampling,
) -> torch.Tensor:
    """Per-token rewards `(R, T)` by Monte-Carlo search (SeqGAN): the reward of token t is the mean
    score of ``num_rollouts`` completions of the prefix ending at t; the last position holds the
    score of the full sequence. All prefixes and completions are decoded in one batched call.

    Args:
        engine: the generator's engine; ``encoded`` its encoder output for the source batch.
        rollout: the sampled sequences `(R, T)` with their ``source_index``.
        score: ``score(sequences, attention_mask, source_index) -> (R',)``.
        num_rollouts: completions per prefix (N >= 1).
        sampling: passed to :meth:`RolloutEngine.continue_from` (temperature, top_k, ...), so that
            completions follow the policy that sampled ``rollout``.
    """
    if isinstance(num_rollouts, bool) or not isinstance(num_rollouts, int) or num_rollouts < 1:
        raise ValueError(f"num_rollouts (Monte-Carlo completions per prefix) must be an integer >= 1, got {num_rollouts!r}.")
    rows, steps = rollout.sequences.shape
    final = score(rollout.sequences, rollout.attention_mask, rollout.source_index)  # (R,)
    rewards = final[:, None].expand(rows, steps).clone()  # (R, T)
    if steps > 1:
        cont = engine.continue_from(
            encoded=encoded.select(rollout.source_index), prefixes=rollout.sequences,
            prefix_lengths=torch.arange(1, steps, device=rollout.sequences.device), num_samples=num_rollouts,
            max_length=steps, **sampling,
        )  # rows ordered (row, prefix, sample)
        scores = score(cont.sequences, cont.attention_mask, rollout.source_index[cont.source_index])  # (R*(T-1)*N,)
        rewards[:, :-1] = scores.view(rows, steps - 1, num_rollouts).mean(-1)
    # a row that ended at position L < T: its last real token is scored on the full sequence
    last = (rollout.attention_mask.sum(-1) - 1).clamp_min(0)  # (R,)
    rewards.scatter_(1, last[:, None], final[:, None])
    return rewards * rollout.attention_mask


def step_level_rewards(rollout: Rollout, score: ScoreFn, pad_token_id: int) -> torch.Tensor:
    """Per-token rewards `(R, T)`: the score of every prefix ``y[:t+1]`` as it is, all ``R * T``
    prefixes in one batched call of ``score``."""
    rows, steps = rollout.sequences.shape
    keep = torch.arange(steps, device=rollout.sequences.device)
    prefix_mask = (keep[None, :] <= keep[:, None]).long()  # (T, T): row t keeps positions <= t
    masks = prefix_mask[None] * rollout.attention_mask[:, None, :]  # (R, T, T)
    seqs = rollout.sequences[:, None, :].expand(rows, steps, steps)  # (R, T, T)
    seqs = seqs.masked_fill(masks == 0, pad_token_id)
    scores = score(seqs.reshape(rows * steps, steps), masks.reshape(rows * steps, steps), rollout.source_index.repeat_interleave(steps))
    return scores.view(rows, steps) * rollout.attention_mask


def discounted_returns(rewards: torch.Tensor, attention_mask: torch.Tensor, gamma: float) -> torch.Tensor:
    """``G_t = sum_{k >= t} gamma^(k - t) r_k`` over each row's real tokens `(R, T)`."""
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"The discount gamma must be in [0, 1], got {gamma}.")
    steps = rewards.shape[1]
    idx = torch.arange(steps, device=rewards.device, dtype=rewards.dtype)
    power = idx[None, :] - idx[:, None]  # (T, T): k - t
    weights = torch.where(power >= 0, torch.pow(torch.tensor(gamma, dtype=rewards.dtype, device=rewards.device), power.clamp_min(0)), torch.zeros_like(power))
    return (rewards * attention_mask) @ weights.T * attention_mask


# ---------------------------------------------------------------------- baselines
class MovingAverageBaseline:
    """An exponential moving average of past mean rewards: ``b <- decay * b + (1 - decay) * mean(r)``.
    The baseline for a batch is the value *before* it is updated with that batch."""

    def __init__(self, decay: float = 0.9):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"The moving-average decay must be in [0, 1), got {decay}.")
        self.decay = decay
        self.value: Optional[float] = None

    def __call__(self, rewards: torch.Tensor) -> torch.Tensor:
        return torch.full_like(rewards, self.update(float(rewards.detach().float().mean())))

    def update(self, mean: float) -> float:
        """Fold in a batch's mean reward (e.g. the mean over every process of a distributed run);
        returns the baseline for that batch. A non-finite mean is never absorbed: the baseline keeps
        its value (0 before the first finite batch) and a warning says so."""
        if not math.isfinite(mean):
            logger.warning("The moving-average baseline was given a non-finite mean reward (%s): it keeps its value %s.", mean, self.value)
            return 0.0 if self.value is None else self.value
        baseline = mean if self.value is None else self.value
        self.value = mean if self.value is None else self.decay * self.value + (1.0 - self.decay) * mean
        return baseline

    def state_dict(self) -> dict:
        return {"decay": self.decay, "value": self.value}

    def load_state_dict(self, state: dict) -> None:
        self.decay, self.value = state["decay"], state["value"]


def leave_one_out_baseline(rewards: torch.Tensor, num_samples: int) -> torch.Tensor:
    """For ``k = num_samples`` samples per source (rows ordered source-major), each sample's baseline
    is the mean reward of the other ``k - 1`` samples of its source."""
    if num_samples < 2:
        raise ValueError(f"The leave-one-out baseline needs at least 2 samples per source, got {num_samples}.")
    grouped = rewards.view(-1, num_samples, *rewards.shape[1:])
    total = grouped.sum(1, keepdim=True)
    return ((total - grouped) / (num_samples - 1)).reshape(rewards.shape)


def self_critical_baseline(greedy_rewards: torch.Tensor, source_index: torch.Tensor) -> torch.Tensor:
    """The reward of the greedy output of each row's source (SCST)."""
    return greedy_rewards.index_select(0, source_index)
