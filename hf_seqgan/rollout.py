"""The decoding engine every trainer of the library uses.

:class:`RolloutEngine` wraps any encoder–decoder `PreTrainedModel` (BART, T5, Marian, mBART,
Pegasus, ...) or a `PeftModel` around one. It encodes a batch once and decodes with the KV cache,
all rows together, in three modes:

- :meth:`RolloutEngine.sample`: sampling or greedy decoding without gradients (temperature,
  top-k/top-p, any `LogitsProcessorList`), returning tokens, mask and per-token log-probs;
- :meth:`RolloutEngine.differentiable`: free-running decoding whose next input is a soft or
  straight-through Gumbel-softmax distribution fed through :func:`~hf_seqgan.sampling.soft_embed`;
  the graph is kept, and decoder hidden states and soft one-hots can be returned;
- :meth:`RolloutEngine.continue_from`: continuation of given decoder prefixes, N samples each
  (Monte-Carlo rollouts): one teacher-forced pass over the prefixes, then one batch that grows as
  the prefixes end, each continuation branching from that pass's cache (forced prefixes are not
  decoded again; cross-attention K/V are stored once per source).

:meth:`RolloutEngine.score` is the teacher-forced counterpart (log-probs of given sequences, with
gradients). All modes return one :class:`Rollout` record. Sequences stop at EOS and are padded
with the pad id after it; ``max_new_tokens`` and ``min_new_tokens`` are respected.

By default the processors that `generate()` would build from ``model.generation_config`` for
forced BOS/EOS tokens, ``min_length``, n-gram blocking, repetition penalty and suppressed or bad
words are applied too (``use_generation_config=False`` turns that off), so greedy decoding equals
``model.generate(do_sample=False)`` token for token.

``cache_implementation="static"`` (or ``model.generation_config.cache_implementation = "static"``)
preallocates the KV cache of :meth:`RolloutEngine.sample` (`StaticCache` for self- and
cross-attention), so every decode step after the first has the same shapes; ``compile=True`` then
runs those steps through ``torch.compile(model)`` (compiled once per batch shape; on a GPU this is
the path for CUDA graphs). Both give the tokens and log-probs of the default dynamic cache (tested).
They apply to the decodes run without gradients (:meth:`~RolloutEngine.sample`, greedy or
sampled); the differentiable mode writes its cache out of place for backward, and
:meth:`~RolloutEngine.continue_from` already decodes into preallocated buffers whose batch grows
every step.

Examples:

```python
>>> import torch
>>> from hf_seqgan.tiny import train_tokenizer, build_tiny_model
>>> from hf_seqgan.rollout import RolloutEngine
>>> tok = train_tokenizer(["the cat sat on the mat", "a dog ran far"] * 20, vocab_size=300)
>>> engine = RolloutEngine(build_tiny_model("bart", tok), tok)
>>> batch = tok(["the cat sat", "a dog"], return_tensors="pt", padding=True)
>>> out = engine.sample(**batch, max_new_tokens=5, generator=torch.Generator().manual_seed(0))
>>> out.sequences.shape, out.logprobs.shape
(torch.Size([2, 5]), torch.Size([2, 5]))

```
"""

from __future__ import annotations

import inspect
import logging
import math
from typing import Callable, Optional, Sequence, Union

import torch
from transformers import LogitsProcessorList, TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper
from transformers.cache_utils import DynamicCache, EncoderDecoderCache, StaticCache
from transformers.modeling_outputs import BaseModelOutput

from .sampling import DeferredVocabGradients, categorical_sample, gumbel_softmax, soft_embed, unwrap_model
from .continuation import branched_decode
from .sequences import (
    _UNHANDLED_GENERATION_FIELDS,
    Encoded,
    Rollout,
    _as_eos_list,
    _positive_int,
    check_seq2seq_model,
    chosen_logprobs,
    first_eos_mask,
    generation_config_processors,
    gradient_checkpointing_on,
    token_logprobs,
)

__all__ = ["Rollout", "Encoded", "RolloutEngine", "check_seq2seq_model", "gradient_checkpointing_on", "token_logprobs", "first_eos_mask"]

logger = logging.getLogger(__name__)

def _cache_argument(model) -> str:
    """The keyword of ``model``'s forward (and output) for the KV cache, read once from the signature:
    ``cache`` where transformers renamed it (``past_key_values`` then warns), else ``past_key_values``."""
    try:
        return "cache" if "cache" in inspect.signature(type(model).forward).parameters else "past_key_values"
    except (TypeError, ValueError):
        return "past_key_values"


def _check_gumbel_processors(processors, *, noise: bool) -> None:
    """Refuse a `GumbelSamplingLogitsProcessor` for beam search (the engine has none) or on top of sampling (noise twice)."""
    if not processors:
        return
    from .logits_process import GumbelSamplingLogitsProcessor

    for proc in (p for p in processors if isinstance(p, GumbelSamplingLogitsProcessor)):
        if proc.num_beams > 1:
            raise ValueError(f"GumbelSamplingLogitsProcessor(num_beams={proc.num_beams}) is stochastic beam search, which the rollout "
                             "engine does not run: use model.generate(..., **processor.generate_kwargs()), or num_beams=1 here.")
        if noise:
            raise ValueError("GumbelSamplingLogitsProcessor already makes argmax decoding an exact sample; on top of sampling the noise "
                             "would be drawn twice. Pass do_sample=False (noise=False in the differentiable mode).")


class RolloutEngine:
    """Batched, KV-cached decoding of one seq2seq model (see the module docstring).

    ``defer_vocab_gradients`` (class attribute, `True`): the differentiable mode computes the
    embedding's and LM head's weight gradients once over all steps (see
    :class:`~hf_seqgan.sampling.DeferredVocabGradients`); `False` gives the per-step products.
    ``copy_cross_attention`` (class attribute, `True`): Monte-Carlo continuations copy each row's
    cross-attention K/V once, when it joins the batch (fast); `False` keeps them once per source and
    gathers them layer by layer at every step (less memory, slower; see benchmarks/RESULTS.md).

    Args:
        model: an encoder–decoder `PreTrainedModel` with a LM head, or a `PeftModel` around one.
        tokenizer (*optional*): its tokenizer; needed for :meth:`tokenize` and :meth:`decode`, and
            must have a pad token.
        use_generation_config (`bool`, defaults to `True`): apply the processors `generate()`
            builds from ``model.generation_config`` (forced BOS/EOS, ``min_length``, n-gram
            blocking, repetition penalty, suppressed/bad words).
        cache_implementation (`str`, *optional*): ``"dynamic"`` or ``"static"`` (preallocated KV
            cache for :meth:`sample`); defaults to ``model.generation_config.cache_implementation``
            when that is ``"static"`` (and ``use_generation_config``), else ``"dynamic"``.
        compile (`bool`, defaults to `False`): run the decode steps of :meth:`sample` after the
            first through ``torch.compile(model)``; needs ``cache_implementation="static"``. The
            first call per batch shape pays the compilation (tens of seconds on CPU).
    """

    defer_vocab_gradients = True
    copy_cross_attention = True

    def __init__(self, model, tokenizer=None, *, use_generation_config: bool = True, cache_implementation: Optional[str] = None,
                 compile: bool = False):
        check_seq2seq_model(model)
        self.model = model
        self.base = unwrap_model(model)
        self.tokenizer = tokenizer
        config, gen = self.base.config, getattr(self.base, "generation_config", None)
        if tokenizer is not None and tokenizer.pad_token_id is None:
            raise ValueError(
                f"The tokenizer ({type(tokenizer).__name__}) has no pad token, which batched decoding needs. "
                "Set one, e.g. `tokenizer.pad_token = tokenizer.eos_token`, or add one with "
                "`tokenizer.add_special_tokens({'pad_token': '<pad>'})` and resize the model's embeddings."
            )

        def pick(name):
            value = getattr(gen, name, None) if gen is not None else None
            return value if value is not None else getattr(config, name, None)

        self.pad_token_id = pick("pad_token_id")
        if self.pad_token_id is None and tokenizer is not None:
            self.pad_token_id = tokenizer.pad_token_id
        if self.pad_token_id is None:
            raise ValueError(
                f"{type(self.base).__name__} has no pad_token_id in its config or generation_config; set "
                "model.generation_config.pad_token_id (or pass a tokenizer with a pad token)."
            )
        self.eos_token_ids = _as_eos_list(pick("eos_token_id"))
        if not self.eos_token_ids and tokenizer is not None and tokenizer.eos_token_id is not None:
            self.eos_token_ids = [tokenizer.eos_token_id]
        self.decoder_start_token_id = pick("decoder_start_token_id")
        if self.decoder_start_token_id is None:
            raise ValueError(f"{type(self.base).__name__} has no decoder_start_token_id; set model.generation_config.decoder_start_token_id.")
        self.use_generation_config = use_generation_config
        self._cache_arg = _cache_argument(self.base)
        self.cache_implementation = self._pick_cache_implementation(cache_implementation, gen if use_generation_config else None)
        if not isinstance(compile, bool):
            raise ValueError(f"compile must be True or False, got {compile!r}.")
        if compile and self.cache_implementation != "static":
            raise ValueError("compile=True needs cache_implementation='static': with the dynamic cache every decode step has new "
                             "shapes and would compile again. Pass cache_implementation='static' too.")
        self.compile = compile
        self._compiled_model = None
        if use_generation_config and gen is not None:
            odd = [k for k, default in _UNHANDLED_GENERATION_FIELDS.items() if getattr(gen, k, default) not in (default, None)]
            if odd:
                logger.warning("generation_config sets %s, which the rollout engine does not apply; its samples will differ from generate().", odd)

    @staticmethod
    def _pick_cache_implementation(requested: Optional[str], gen) -> str:
        if requested is None:
            configured = getattr(gen, "cache_implementation", None) if gen is not None else None
            if configured not in (None, "dynamic", "static"):
                logger.warning("generation_config.cache_implementation=%r is not one the rollout engine has ('dynamic', 'static'); "
                               "it decodes with the dynamic cache.", configured)
            return "static" if configured == "static" else "dynamic"
        if requested not in ("dynamic", "static"):
            raise ValueError(f"cache_implementation must be 'dynamic' or 'static', got {requested!r}.")
        return requested

    def _step_model(self, static: bool, t: int):
        """The callable for decode step ``t``: the compiled model for the steps after the first of a
        static-cache decode with ``compile=True`` (the first step fills the cross-attention cache,
        with other shapes), else the model."""
        if not (static and self.compile and t > 0):
            return self.model
        if self._compiled_model is None:
            self._compiled_model = torch.compile(self.model)
        return self._compiled_model

    # ------------------------------------------------------------------ helpers
    @property
    def device(self) -> torch.device:
        return next(self.base.parameters()).device

    def tokenize(self, texts: Sequence[str], *, max_length: Optional[int] = None, **kwargs):
        """Tokenize sources with padding (and truncation to ``max_length``) as tensors on the model's device."""
        if self.tokenizer is None:
            raise ValueError("RolloutEngine.tokenize needs the engine to be built with a tokenizer.")
        enc = self.tokenizer(list(texts), padding=True, truncation=max_length is not None, max_length=max_length, return_tensors="pt", **kwargs)
        return enc.to(self.device)

    def decode(self, rollout: Union[Rollout, torch.Tensor], skip_special_tokens: bool = True) -> list[str]:
        """Texts of a rollout's sequences."""
        if self.tokenizer is None:
            raise ValueError("RolloutEngine.decode needs the engine to be built with a tokenizer.")
        seqs = rollout.sequences if isinstance(rollout, Rollout) else rollout
        return self.tokenizer.batch_decode(seqs, skip_special_tokens=skip_special_tokens)

    def encode(self, input_ids: torch.Tensor, attention_mask: Optional[torch.Tensor] = None) -> Encoded:
        """Run the encoder once (with gradients unless called under `torch.no_grad`)."""
        if input_ids is None or input_ids.dim() != 2:
            raise ValueError(f"input_ids must be a (batch, length) tensor, got {None if input_ids is None else tuple(input_ids.shape)}.")
        if attention_mask is None:
            attention_mask = (input_ids != self.pad_token_id).long()
        elif attention_mask.shape != input_ids.shape:
            raise ValueError(f"attention_mask has shape {tuple(attention_mask.shape)} but input_ids has shape {tuple(input_ids.shape)}: "
                             "pass the mask the tokenizer returned with these ids (same rows and length), or none to mask the pad tokens.")
        out = self.base.get_encoder()(input_ids=input_ids, attention_mask=attention_mask, return_dict=True)
        return Encoded(out.last_hidden_state, attention_mask)

    def _encoded(self, input_ids, attention_mask, encoded: Optional[Encoded]) -> Encoded:
        if encoded is not None:
            return encoded
        return self.encode(input_ids, attention_mask)

    def _check_cache_usable(self) -> None:
        if gradient_checkpointing_on(self.base) and self.base.training:
            raise ValueError(
                "Gradient checkpointing is on and the model is in training mode: transformers then drops the KV "
                "cache, and cached step-by-step decoding would be wrong. Call model.gradient_checkpointing_disable() "
                "(or put the model in eval mode for sampling without gradients)."
            )

    def _processors(self, steps: int, user: Optional[LogitsProcessorList], warpers: list) -> LogitsProcessorList:
        gen = getattr(self.base, "generation_config", None) if self.use_generation_config else None
        return generation_config_processors(gen, self.eos_token_ids, steps, user, warpers)

    # ------------------------------------------------------------------ the loop
    def _decode(self, enc: Encoded, *, hard_inputs: bool = False, **kwargs) -> Rollout:
        """:meth:`_decode_loop`; in the differentiable mode with gradients on, inside a
        :class:`~hf_seqgan.sampling.DeferredVocabGradients` (the embedding's and the LM head's weight
        gradients computed once over all steps, hard inputs looked up) unless ``defer_vocab_gradients``
        is off (the per-step products, the reference the tests compare with)."""
        if not (kwargs.get("differentiable") and self.defer_vocab_gradients and torch.is_grad_enabled()):
            return self._decode_loop(enc, **kwargs)
        with DeferredVocabGradients() as deferred:
            deferred.patch_head(self.model)
            return self._decode_loop(enc, deferred=deferred, hard_inputs=hard_inputs, **kwargs)

    def _decode_loop(
        self,
        enc: Encoded,
        *,
        steps: int,
        processors: LogitsProcessorList,
        min_new_tokens: int = 0,
        choose: Callable[[torch.Tensor], tuple[torch.Tensor, Optional[torch.Tensor], Optional[torch.Tensor]]],
        source_index: torch.Tensor,
        forced: Optional[tuple[torch.Tensor, torch.Tensor]] = None,
        differentiable: bool = False,
        hidden_layers: Optional[Sequence[int]] = None,
        output_logits: bool = False,
        sample_logprobs: bool = False,
        stop_at_eos: bool = True,
        deferred: Optional[DeferredVocabGradients] = None,
        hard_inputs: bool = False,
    ) -> Rollout:
        """One cached decode of ``enc.batch_size`` rows for at most ``steps`` tokens.

        ``choose(scores) -> (tokens, soft, lse)`` picks the next token from the processed scores (and,
        in the differentiable mode, the distribution fed back; when sampling, the scores'
        log-normaliser, so that no second log-sum-exp is needed). ``forced = (tokens, mask)``, both
        `(R, W)`, overrides the choice with ``tokens[:, t]`` where ``mask[:, t]`` is true.
        """
        self._check_cache_usable()
        rows, device = enc.batch_size, enc.last_hidden_state.device
        cfg = self.base.config
        static = self.cache_implementation == "static" and not differentiable and not torch.is_grad_enabled()
        if static:  # preallocated: every step after the first has the same shapes (compilable)
            cache = EncoderDecoderCache(StaticCache(config=cfg, max_cache_len=steps), StaticCache(config=cfg, max_cache_len=enc.last_hidden_state.shape[1]))
        else:
            cache = EncoderDecoderCache(DynamicCache(config=cfg), DynamicCache(config=cfg))
        encoder_outputs = BaseModelOutput(last_hidden_state=enc.last_hidden_state)
        eos = torch.tensor(self.eos_token_ids if stop_at_eos else [], device=device, dtype=torch.long)
        history = torch.full((rows, steps + 1), self.pad_token_id, dtype=torch.long, device=device)  # (R, 1+T)
        history[:, 0] = self.decoder_start_token_id
        unfinished = torch.ones(rows, dtype=torch.bool, device=device)
        masks, token_logps, sampled_logps, logits_out, softs, hiddens = [], [], [], [], [], []
        pad_one_hot = None
        step_input: dict = {"decoder_input_ids": history[:, :1].clone()}
        for t in range(steps):
            out = self._step_model(static, t)(
                encoder_outputs=encoder_outputs, attention_mask=enc.attention_mask, **{self._cache_arg: cache},
                use_cache=True, output_hidden_states=hidden_layers is not None, return_dict=True, **step_input,
            )
            cache = getattr(out, self._cache_arg)
            logits = out.logits[:, -1, :]  # (R, V)
            scores = logits
            if t < min_new_tokens and eos.numel():
                scores = scores.index_fill(-1, eos, float("-inf"))  # EOS blocked before min_new_tokens, as generate() does first
            processed_here = bool(processors) or (t < min_new_tokens and bool(eos.numel()))
            scores = processors(history[:, : t + 1], scores) if processors else scores
            tokens, soft, scores_lse = choose(scores)
            if forced is not None and t < forced[0].shape[1]:
                tokens = torch.where(forced[1][:, t], forced[0][:, t], tokens)
            tokens = torch.where(unfinished, tokens, self.pad_token_id)  # (R,)
            masks.append(unfinished.long())
            # log p(token) = logit - logsumexp(logits): no full-vocabulary log_softmax per step
            logp, slogp = chosen_logprobs(logits, scores, tokens, scores_lse, processed_here, sampled=sample_logprobs)
            token_logps.append(logp * unfinished)
            if sample_logprobs:
                sampled_logps.append(torch.where(unfinished, slogp, torch.zeros_like(slogp)))
            if output_logits:
                logits_out.append(logits)
            if hidden_layers is not None:
                states = out.decoder_hidden_states
                hiddens.append([states[i][:, -1, :] for i in hidden_layers])
            history[:, t + 1] = tokens
            if differentiable:
                if pad_one_hot is None:
                    pad_one_hot = torch.zeros_like(soft[:1]).index_fill_(-1, torch.tensor([self.pad_token_id], device=device), 1.0)
                soft = torch.where(unfinished[:, None], soft, pad_one_hot)  # (R, V)
                softs.append(soft)
                index = tokens[:, None] if hard_inputs and deferred is not None else None  # straight-through: the value fed is one_hot(tokens)
                step_input = {"decoder_inputs_embeds": soft_embed(self.model, soft[:, None, :], index=index, deferred=deferred)}  # (R, 1, H)
            else:
                step_input = {"decoder_input_ids": tokens[:, None]}
            if eos.numel():
                unfinished = unfinished & ~torch.isin(tokens, eos)
                # the one host sync of a step: skipped while EOS is blocked (no row can end unless a forced token is EOS)
                if (t + 1 >= min_new_tokens or forced is not None) and not bool(unfinished.any()):
                    break
        n = len(masks)
        return Rollout(
            sequences=history[:, 1 : n + 1].clone(),
            attention_mask=torch.stack(masks, dim=1),
            logprobs=torch.stack(token_logps, dim=1),
            source_index=source_index,
            decoder_start_token_id=int(self.decoder_start_token_id),
            sample_logprobs=torch.stack(sampled_logps, dim=1) if sample_logprobs else None,
            logits=torch.stack(logits_out, dim=1) if output_logits else None,
            soft_tokens=torch.stack(softs, dim=1) if differentiable else None,
            hidden_states=tuple(torch.stack([h[i] for h in hiddens], dim=1) for i in range(len(hidden_layers))) if hidden_layers is not None else None,
        )

    def _sampling_setup(self, do_sample, temperature, top_k, top_p, generator, logits_processor=None):
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not 0 < temperature < math.inf:
            raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}; for argmax decoding pass do_sample=False.")
        if top_k is not None and (not isinstance(top_k, int) or top_k < 0):
            raise ValueError(f"top_k must be a non-negative integer (0 = off), got {top_k!r}.")
        if top_p is not None and not 0.0 < top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {top_p!r}.")
        _check_gumbel_processors(logits_processor, noise=do_sample)
        warpers = []
        if do_sample:
            if temperature != 1.0:
                warpers.append(TemperatureLogitsWarper(float(temperature)))
            if top_k:
                warpers.append(TopKLogitsWarper(top_k))
            if top_p is not None and top_p < 1.0:
                warpers.append(TopPLogitsWarper(top_p))

        def choose(scores, uniform=None):
            if not do_sample:
                return scores.argmax(dim=-1), None, None
            tokens, lse = categorical_sample(scores, generator=generator, uniform=uniform)  # exact sampling from softmax(scores), with its log-normaliser
            return tokens, None, lse

        return warpers, choose

    def _steps(self, max_new_tokens) -> int:
        if max_new_tokens is None:
            gen = getattr(self.base, "generation_config", None)
            max_new_tokens = getattr(gen, "max_new_tokens", None)
            if max_new_tokens is None:
                raise ValueError("Pass max_new_tokens (or set model.generation_config.max_new_tokens).")
        return _positive_int(max_new_tokens, "max_new_tokens")

    @staticmethod
    def _check_min(min_new_tokens, steps) -> int:
        if isinstance(min_new_tokens, bool) or not isinstance(min_new_tokens, int) or min_new_tokens < 0:
            raise ValueError(f"min_new_tokens must be a non-negative integer, got {min_new_tokens!r}.")
        if min_new_tokens > steps:
            raise ValueError(f"min_new_tokens={min_new_tokens} exceeds max_new_tokens={steps}.")
        return min_new_tokens

    def _expand(self, enc: Encoded, num_samples) -> tuple[Encoded, torch.Tensor]:
        num_samples = _positive_int(num_samples, "num_samples")
        index = torch.arange(enc.batch_size, device=enc.last_hidden_state.device).repeat_interleave(num_samples)
        return (enc if num_samples == 1 else enc.select(index)), index

    # ------------------------------------------------------------------ public modes
    @torch.no_grad()
    def sample(
        self,
        input_ids: Optional[torch.Tensor] = None,
        attention_mask: Optional[torch.Tensor] = None,
        *,
        encoded: Optional[Encoded] = None,
        max_new_tokens: Optional[int] = None,
        min_new_tokens: int = 0,
        do_sample: bool = True,
        temperature: float = 1.0,
        top_k: Optional[int] = None,
        top_p: Optional[float] = None,
        logits_processor: Optional[LogitsProcessorList] = None,
        num_samples: int = 1,
        generator: Optional[torch.Generator] = None,
        output_hidden_states: bool = False,
        hidden_layers: Sequence[int] = (-1,),
        output_logits: bool = False,
        forced_tokens: Optional[torch.Tensor] = None,
        forced_mask: Optional[torch.Tensor] = None,
        stop_at_eos: bool = True,
    ) -> Rollout:
        """Sample (or, with ``do_sample=False``, greedily decode) without gradients.

        Args:
            input_ids, attention_mask: the source batch `(B, S)`; or ``encoded`` from :meth:`encode`.
            max_new_tokens (`int`): the most tokens to generate per row.
            min_new_tokens (`int`, defaults to 0): EOS is blocked before this many tokens.
            do_sample (`bool`, defaults to `True`): sample, or take the argmax.
            temperature, top_k, top_p: the usual warpers, applied after ``logits_processor``.
            logits_processor (`LogitsProcessorList`, *optional*): any processors, called with the
                decoder ids so far `(R, 1 + t)` (decoder start included) and the scores `(R, V)`.
            num_samples (`int`, defaults to 1): samples per source; rows are ordered source-major.
            generator (`torch.Generator`, *optional*): makes sampling reproducible.
            output_hidden_states, hidden_layers: return decoder hidden states of these layers
                (indices into the model's ``decoder_hidden_states``; -1 is the last layer).
            output_logits (`bool`): return the raw logits `(R, T, V)`.
            forced_tokens, forced_mask (*optional*): `(R, W)` tokens and a boolean mask: where the
                mask is true, position t takes ``forced_tokens[:, t]`` instead of the model's choice
                and the decode continues from it (e.g. scheduled sampling's gold-token coin flips;
                prefixes are :meth:`continue_from`). Rows are the expanded rows (``num_samples``).
            stop_at_eos (`bool`, defaults to `True`): with `False` every row decodes
                ``max_new_tokens`` tokens, an EOS being one more token fed back (scheduled
                sampling's fixed-length decode).
        """
        steps = self._steps(max_new_tokens)
        min_new_tokens = self._check_min(min_new_tokens, steps)
        warpers, choose = self._sampling_setup(do_sample, temperature, top_k, top_p, generator, logits_processor)
        enc, index = self._expand(self._encoded(input_ids, attention_mask, encoded), num_samples)
        forced = None
        if forced_tokens is not None or forced_mask is not None:
            if forced_tokens is None or forced_mask is None or forced_tokens.shape != forced_mask.shape or forced_tokens.shape[0] != enc.batch_size:
                raise ValueError(
                    f"forced_tokens and forced_mask must both be given with shape ({enc.batch_size}, W); got "
                    f"{None if forced_tokens is None else tuple(forced_tokens.shape)} and {None if forced_mask is None else tuple(forced_mask.shape)}."
                )
            forced = (forced_tokens.long(), forced_mask.bool())
        return self._decode(
            enc, steps=steps, processors=self._processors(steps, logits_processor, warpers), min_new_tokens=min_new_tokens, choose=choose,
            source_index=index, hidden_layers=tuple(hidden_layers) if output_hidden_states else None,
            output_logits=output_logits, sample_logprobs=True, forced=forced, stop_at_eos=stop_at_eos,
        )

    def differentiable(
        self,
        input_ids: Optional[torch.Tensor] = None,
        attention_mask: Optional[torch.Tensor] = None,
        *,
        encoded: Optional[Encoded] = None,
        max_new_tokens: Optional[int] = None,
        min_new_tokens: int = 0,
        tau: float = 1.0,
        hard: bool = True,
        noise: bool = True,
        logits_processor: Optional[LogitsProcessorList] = None,
        num_samples: int = 1,
        generator: Optional[torch.Generator] = None,
        output_hidden_states: bool = False,
        hidden_layers: Sequence[int] = (-1,),
    ) -> Rollout:
        """Free-running decoding that keeps the graph (Gumbel-softmax inputs, Jang et al. 2017).

        Each step's distribution ``gumbel_softmax(scores, tau, hard=hard, noise=noise)`` is fed back
        through :func:`~hf_seqgan.sampling.soft_embed`; the emitted token is its argmax. With
        ``hard=True`` (straight-through) the forward pass sees exact one-hots, so the logits equal a
        teacher-forced pass over the emitted tokens; ``noise=False`` makes it greedy.

        Returns a :class:`Rollout` with ``logits``, ``soft_tokens`` and ``logprobs`` in the graph
        (and ``hidden_states`` if asked). Memory grows with the length: the cache and every step's
        activations are kept for backward. Call it with the encoder in the graph (no ``encoded``
        computed under `no_grad`) for gradients to reach the encoder.
        """
        steps = self._steps(max_new_tokens)
        min_new_tokens = self._check_min(min_new_tokens, steps)
        if isinstance(tau, bool) or not isinstance(tau, (int, float)) or not 0 < tau < math.inf:
            raise ValueError(f"tau must be a finite number > 0, got {tau!r}.")
        _check_gumbel_processors(logits_processor, noise=noise)
        enc, index = self._expand(self._encoded(input_ids, attention_mask, encoded), num_samples)

        def choose(scores):
            soft = gumbel_softmax(scores, float(tau), hard=hard, noise=noise, generator=generator)  # (R, V)
            return soft.argmax(dim=-1), soft, None

        return self._decode(
            enc, steps=steps, processors=self._processors(steps, logits_processor, []), min_new_tokens=min_new_tokens, choose=choose,
            source_index=index, differentiable=True, output_logits=True, hard_inputs=bool(hard),
            hidden_layers=tuple(hidden_layers) if output_hidden_states else None,
        )

    @torch.no_grad()
    def continue_from(
        self,
        input_ids: Optional[torch.Tensor] = None,
        attention_mask: Optional[torch.Tensor] = None,
        *,
        prefixes: torch.Tensor,
        prefix_lengths: Optional[torch.Tensor] = None,
        encoded: Optional[Encoded] = None,
        max_length: Optional[int] = None,
        num_samples: int = 1,
        do_sample: bool = True,
        temperature: float = 1.0,
        top_k: Optional[int] = None,
        top_p: Optional[float] = None,
        logits_processor: Optional[LogitsProcessorList] = None,
        generator: Optional[torch.Generator] = None,
    ) -> Rollout:
        """Complete decoder prefixes ``num_samples`` times each, all in one batched decode
        (Monte-Carlo rollouts, Yu et al. 2017, https://arxiv.org/abs/1609.05473).

        Args:
            prefixes (`torch.Tensor`): `(B, P)` decoder tokens (no decoder start), one row per source,
                e.g. ``rollout.sequences``.
            prefix_lengths (`torch.Tensor`, *optional*): `(K,)` or `(B, K)` prefix lengths to continue
                from, each in ``[0, P]``; defaults to every length ``1..P``.
            max_length (`int`): the most tokens of a full sequence (prefix included); defaults to P.
            num_samples (`int`): completions per prefix.

        Returns:
            A :class:`Rollout` of ``B * K * num_samples`` rows ordered (source, prefix, sample), with
            ``source_index`` and ``prefix_lengths`` per row. The forced tokens are copied, so a row
            whose prefix holds an EOS ends there.
        """
        if prefixes.dim() != 2:
            raise ValueError(f"prefixes must be (batch, length), got shape {tuple(prefixes.shape)}.")
        enc = self._encoded(input_ids, attention_mask, encoded)
        batch, plen = prefixes.shape
        if batch != enc.batch_size:
            raise ValueError(f"prefixes has {batch} rows but the source batch has {enc.batch_size}.")
        num_samples = _positive_int(num_samples, "num_samples")
        steps = _positive_int(max_length if max_length is not None else plen, "max_length")
        device = prefixes.device
        if prefix_lengths is None:
            prefix_lengths = torch.arange(1, plen + 1, device=device)
        prefix_lengths = torch.as_tensor(prefix_lengths, device=device, dtype=torch.long)
        if prefix_lengths.dim() == 1:
            prefix_lengths = prefix_lengths.expand(batch, -1)
        if prefix_lengths.shape[0] != batch or prefix_lengths.dim() != 2:
            raise ValueError(f"prefix_lengths must be (K,) or ({batch}, K), got shape {tuple(prefix_lengths.shape)}.")
        if prefix_lengths.numel() and (int(prefix_lengths.min()) < 0 or int(prefix_lengths.max()) > min(plen, steps)):
            raise ValueError(f"prefix_lengths must lie in [0, {min(plen, steps)}] (prefix width and max_length).")
        k = prefix_lengths.shape[1]
        source_index = torch.arange(batch, device=device).repeat_interleave(k * num_samples)  # (B*K*N,)
        lengths = prefix_lengths.repeat_interleave(num_samples, dim=1).reshape(-1)  # (B*K*N,)
        warpers, choose = self._sampling_setup(do_sample, temperature, top_k, top_p, generator, logits_processor)
        rollout = branched_decode(
            self, enc, prefixes=prefixes, lengths=lengths, source_index=source_index, steps=steps,
            processors=self._processors(steps, logits_processor, warpers), choose=choose, draws=do_sample, generator=generator,
        )
        rollout.prefix_lengths = lengths
        return rollout

    def score(
        self,
        input_ids: Optional[torch.Tensor] = None,
        attention_mask: Optional[torch.Tensor] = None,
        *,
        sequences: torch.Tensor,
        sequence_mask: Optional[torch.Tensor] = None,
        encoded: Optional[Encoded] = None,
        source_index: Optional[torch.Tensor] = None,
        output_hidden_states: bool = False,
        hidden_layers: Sequence[int] = (-1,),
        output_logits: bool = False,
    ) -> Rollout:
        """Teacher-forced log-probs of given decoder ``sequences`` `(R, T)` (with gradients).

        ``source_index`` `(R,)` maps rows to the source batch (e.g. ``rollout.source_index``);
        ``sequence_mask`` defaults to the real tokens up to and including the first EOS.
        """
        enc = self._encoded(input_ids, attention_mask, encoded)
        rows = sequences.shape[0]
        if source_index is None:
            if rows != enc.batch_size:
                raise ValueError(f"{rows} sequences for {enc.batch_size} sources: pass source_index.")
            source_index = torch.arange(rows, device=sequences.device)
        else:
            enc = enc.select(source_index)
        if sequence_mask is None:
            sequence_mask = first_eos_mask(sequences, self.eos_token_ids)
        start = torch.full_like(sequences[:, :1], self.decoder_start_token_id)
        decoder_input_ids = torch.cat([start, sequences[:, :-1]], dim=1)
        out = self.model(
            encoder_outputs=BaseModelOutput(last_hidden_state=enc.last_hidden_state), attention_mask=enc.attention_mask,
            decoder_input_ids=decoder_input_ids, use_cache=False, output_hidden_states=output_hidden_states, return_dict=True,
        )
        token_logp = token_logprobs(out.logits, sequences, sequence_mask)
        hidden = tuple(out.decoder_hidden_states[i] for i in hidden_layers) if output_hidden_states else None
        return Rollout(
            sequences=sequences, attention_mask=sequence_mask.long(), logprobs=token_logp, source_index=source_index,
            decoder_start_token_id=int(self.decoder_start_token_id), logits=out.logits if output_logits else None,
            hidden_states=hidden,
        )
