"""What a decode produces and what it needs: the records and checks shared by the rollout engine,
the scorers and the trainers.

- :class:`Encoded`: an encoder output computed once, with :meth:`Encoded.select` to expand rows;
- :class:`Rollout`: tokens, mask, per-token log-probs and whatever else a decode returned;
- :func:`token_logprobs`, :func:`first_eos_mask`: per-token log-probs and the mask up to the first EOS;
- :func:`check_seq2seq_model`, :func:`gradient_checkpointing_on`: what a model must be for cached decoding;
- :func:`generation_config_processors`: the processors ``generate()`` builds from a generation config.

Every name is re-exported by :mod:`hf_seqgan.rollout`.
"""

from __future__ import annotations

import dataclasses
from typing import Optional, Sequence

import torch
from transformers import (
    ForcedBOSTokenLogitsProcessor,
    ForcedEOSTokenLogitsProcessor,
    LogitsProcessorList,
    MinLengthLogitsProcessor,
    NoBadWordsLogitsProcessor,
    NoRepeatNGramLogitsProcessor,
    RepetitionPenaltyLogitsProcessor,
    SuppressTokensAtBeginLogitsProcessor,
    SuppressTokensLogitsProcessor,
)


from .sampling import unwrap_model

__all__ = [
    "Encoded", "Rollout", "token_logprobs", "first_eos_mask", "check_seq2seq_model", "gradient_checkpointing_on",
    "generation_config_processors", "chosen_logprobs",
]

# generation_config fields the engine turns into processors; other non-default processor fields
# are reported once, since sampling here would then differ from generate().
_UNHANDLED_GENERATION_FIELDS = {
    "encoder_no_repeat_ngram_size": 0, "encoder_repetition_penalty": 1.0, "sequence_bias": None,
    "exponential_decay_length_penalty": None, "typical_p": 1.0, "epsilon_cutoff": 0.0,
    "eta_cutoff": 0.0, "min_p": None, "guidance_scale": None, "watermarking_config": None,
}


@dataclasses.dataclass
class Encoded:
    """The encoder's output for a batch, computed once and shared (``index_select`` to expand)."""

    last_hidden_state: torch.Tensor  # (B, S, H)
    attention_mask: torch.Tensor  # (B, S)

    @property
    def batch_size(self) -> int:
        return self.last_hidden_state.shape[0]

    def select(self, index: torch.Tensor) -> "Encoded":
        """Rows ``index`` of the batch (repeats allowed): expansion for samples and prefixes."""
        return Encoded(self.last_hidden_state.index_select(0, index), self.attention_mask.index_select(0, index))


@dataclasses.dataclass
class Rollout:
    """What a decode produced. ``R`` rows, ``T`` decoder positions (the decoder start excluded).

    Attributes:
        sequences: `(R, T)` token ids; the pad id after EOS.
        attention_mask: `(R, T)` 1 for real tokens (EOS included), 0 after.
        logprobs: `(R, T)` log-probability of each token under the model's own (unprocessed)
            distribution; 0 at padding. Differentiable in the differentiable and score modes.
        source_index: `(R,)` which row of the encoder batch each row decodes for.
        decoder_start_token_id: the id the decoder started from.
        sample_logprobs: `(R, T)` log-probability under the processed distribution actually sampled
            from (temperature, top-k, processors), sample and continuation modes only.
        prefix_lengths: `(R,)` forced prefix length of each row (continuation mode only).
        logits: `(R, T, V)` raw logits, when asked for (always in differentiable mode).
        soft_tokens: `(R, T, V)` the (soft or straight-through) one-hots fed back (differentiable mode).
        hidden_states: tuple of `(R, T, H)` decoder hidden states of the requested layers: the state
            at position t is the one whose output predicts token t.
    """

    sequences: torch.Tensor
    attention_mask: torch.Tensor
    logprobs: torch.Tensor
    source_index: torch.Tensor
    decoder_start_token_id: int
    sample_logprobs: Optional[torch.Tensor] = None
    prefix_lengths: Optional[torch.Tensor] = None
    logits: Optional[torch.Tensor] = None
    soft_tokens: Optional[torch.Tensor] = None
    hidden_states: Optional[tuple[torch.Tensor, ...]] = None

    @property
    def lengths(self) -> torch.Tensor:
        """`(R,)` number of real tokens per row (EOS included)."""
        return self.attention_mask.sum(-1)

    @property
    def decoder_input_ids(self) -> torch.Tensor:
        """`(R, T)` the decoder inputs of a teacher-forced pass over ``sequences``."""
        start = torch.full_like(self.sequences[:, :1], self.decoder_start_token_id)
        return torch.cat([start, self.sequences[:, :-1]], dim=1)

    def labels(self) -> torch.Tensor:
        """``sequences`` with -100 at padding: labels for a cross-entropy loss."""
        return self.sequences.masked_fill(self.attention_mask == 0, -100)

    def sequence_logprobs(self) -> torch.Tensor:
        """`(R,)` sum of the token log-probs."""
        return self.logprobs.sum(-1)


def token_logprobs(logits: torch.Tensor, sequences: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
    """`(R, T)` log-probabilities of ``sequences`` under ``logits`` `(R, T, V)`, 0 where ``mask`` is 0
    (negative ids such as -100 are allowed there)."""
    logp = torch.log_softmax(logits.float(), dim=-1)  # (R, T, V)
    out = logp.gather(-1, sequences.clamp_min(0)[..., None]).squeeze(-1)  # (R, T)
    return out if mask is None else out * mask


def first_eos_mask(sequences: torch.Tensor, eos_token_ids: Sequence[int]) -> torch.Tensor:
    """`(R, T)` 1 up to and including each row's first EOS, 0 after."""
    is_eos = torch.isin(sequences, torch.tensor(list(eos_token_ids), device=sequences.device, dtype=sequences.dtype))
    return ((is_eos.long().cumsum(-1) - is_eos.long()) == 0).long()


def check_seq2seq_model(model) -> None:
    """Raise a `ValueError` unless ``model`` is an encoder–decoder language model (or a tuner-type
    `PeftModel` around one) that the engine can decode with."""
    if getattr(model, "active_peft_config", None) is not None and getattr(model.active_peft_config, "is_prompt_learning", False):
        raise ValueError(
            f"{type(model).__name__} uses a prompt-learning adapter ({model.active_peft_config.peft_type}); the rollout "
            "engine supports tuner adapters injected into the model (LoRA, IA3, ...). Use one of those."
        )
    base = unwrap_model(model)
    name = type(base).__name__
    config = getattr(base, "config", None)
    if config is None or not getattr(config, "is_encoder_decoder", False):
        raise ValueError(
            f"{name} is not an encoder-decoder model (config.is_encoder_decoder is False). hf_seqgan decodes "
            "sequence-to-sequence models: load one with AutoModelForSeq2SeqLM (BART, T5, Marian, mBART, Pegasus, ...)."
        )
    can_generate = getattr(base, "can_generate", None)
    if not (callable(can_generate) and can_generate()) or not hasattr(base, "get_encoder"):
        raise ValueError(
            f"{name} has no language-modelling head to decode with (is it a classification model?). "
            "Pass the generator loaded with AutoModelForSeq2SeqLM; classifiers belong in the discriminator slot."
        )


def _as_eos_list(eos) -> list[int]:
    if eos is None:
        return []
    return [int(e) for e in (eos if isinstance(eos, (list, tuple)) else [eos])]


def _positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}.")
    return value


def gradient_checkpointing_on(model) -> bool:
    """Whether ``model`` (unwrapped) has gradient (activation) checkpointing enabled: in training mode
    transformers then drops the KV cache, which cached step-by-step decoding needs."""
    checkpointing = getattr(model, "is_activation_checkpointing", None)
    return bool(checkpointing if checkpointing is not None else getattr(model, "is_gradient_checkpointing", False))


def generation_config_processors(gen, eos: Sequence[int], steps: int, user: Optional[LogitsProcessorList] = None,
                                  warpers: Sequence = ()) -> LogitsProcessorList:
    """The processors `generate()` builds from generation config ``gen`` (forced BOS/EOS, ``min_length``,
    n-gram blocking, repetition penalty, suppressed and bad words; none when ``gen`` is None), then
    ``user``'s, then the ``warpers`` (temperature, top-k, top-p), in that order."""
    procs = LogitsProcessorList()
    if gen is not None:
        if getattr(gen, "min_length", 0) and eos:
            procs.append(MinLengthLogitsProcessor(gen.min_length, eos))
        if getattr(gen, "no_repeat_ngram_size", 0):
            procs.append(NoRepeatNGramLogitsProcessor(gen.no_repeat_ngram_size))
        if getattr(gen, "repetition_penalty", 1.0) not in (None, 1.0):
            procs.append(RepetitionPenaltyLogitsProcessor(gen.repetition_penalty))
        if getattr(gen, "bad_words_ids", None):
            procs.append(NoBadWordsLogitsProcessor(gen.bad_words_ids, eos))
        if getattr(gen, "forced_bos_token_id", None) is not None:
            procs.append(ForcedBOSTokenLogitsProcessor(gen.forced_bos_token_id))
        if getattr(gen, "forced_eos_token_id", None) is not None:
            procs.append(ForcedEOSTokenLogitsProcessor(steps + 1, gen.forced_eos_token_id))
        if getattr(gen, "begin_suppress_tokens", None):
            procs.append(SuppressTokensAtBeginLogitsProcessor(gen.begin_suppress_tokens, 1))
        if getattr(gen, "suppress_tokens", None):
            procs.append(SuppressTokensLogitsProcessor(gen.suppress_tokens))
    if user:
        procs.extend(user)
    procs.extend(warpers)
    return procs


def chosen_logprobs(logits: torch.Tensor, scores: torch.Tensor, tokens: torch.Tensor, scores_lse: Optional[torch.Tensor], processed: bool,
                    *, sampled: bool = True) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """`(R,)` log-probs of the chosen ``tokens`` under the raw ``logits`` `(R, V)` and (``sampled``) under
    the processed ``scores`` they were drawn from. ``scores_lse``: the scores' log-normaliser when the
    sampler computed it, reused for the raw logits when nothing ``processed`` them (one log-sum-exp a step)."""
    raw = logits.float()
    raw_lse = scores_lse if scores_lse is not None and not processed else raw.logsumexp(-1)
    logp = raw.gather(-1, tokens[:, None]).squeeze(-1) - raw_lse
    if not sampled:
        return logp, None
    done = scores.float()
    return logp, done.gather(-1, tokens[:, None]).squeeze(-1) - (scores_lse if scores_lse is not None else done.logsumexp(-1))
