"""Monte-Carlo continuations that decode each prefix once (:meth:`hf_seqgan.rollout.RolloutEngine.continue_from`).

:func:`branched_decode` runs one teacher-forced pass over the sources and branches every
continuation from its cache, in one batch that grows as prefixes end; :func:`branched_cache` is that
cache: plain `DynamicLayer` subclasses in an `EncoderDecoderCache` (self-attention K/V preallocated,
cross-attention K/V projected once per source), so every family that reads its K/V from an
`EncoderDecoderCache` works unpatched.
"""

from __future__ import annotations

import torch
from transformers.cache_utils import DynamicCache, DynamicLayer, EncoderDecoderCache
from transformers.modeling_outputs import BaseModelOutput

from .sequences import Encoded, Rollout, chosen_logprobs

__all__ = ["branched_decode", "branched_cache", "grow_branched_cache", "cross_attention_from_cache"]


class _BranchSelfLayer(DynamicLayer):
    """Self-attention K/V of a batch that grows: preallocated `(R, H, capacity, D)` buffers whose first
    ``rows`` rows are in the model's batch, all holding ``length`` entries. A row joins with the
    first entries of its source's teacher-forced cache (:meth:`grow`), then decodes its own."""

    def __init__(self, source_keys: torch.Tensor, source_values: torch.Tensor, rows_source: torch.Tensor, capacity: int):
        super().__init__()
        batch, heads, _, dim = source_keys.shape  # (B, H, m, D)
        self.source_keys, self.source_values, self.rows_source = source_keys, source_values, rows_source
        self.key_buffer = source_keys.new_empty((rows_source.numel(), heads, capacity, dim))  # (R, H, C, D)
        self.value_buffer = source_values.new_empty((rows_source.numel(), heads, capacity, source_values.shape[-1]))
        self.rows, self.length = 0, 0
        self.is_initialized, self.device = True, source_keys.device
        self.keys, self.values = self.key_buffer[:0, :, :0], self.value_buffer[:0, :, :0]

    def grow(self, rows: int, length: int) -> None:
        """Rows ``[self.rows, rows)`` join with their source's first ``length`` entries; every row then holds ``length``."""
        if rows > self.rows:
            index = self.rows_source[self.rows : rows]
            self.key_buffer[self.rows : rows, :, :length] = self.source_keys[:, :, :length].index_select(0, index)
            self.value_buffer[self.rows : rows, :, :length] = self.source_values[:, :, :length].index_select(0, index)
        self.rows, self.length = rows, length

    def update(self, key_states, value_states, *args, **kwargs):
        if key_states.shape[0] != self.rows:
            raise RuntimeError(f"branched cache: {key_states.shape[0]} rows updated, {self.rows} in the batch.")
        end = self.length + key_states.shape[-2]
        self.key_buffer[: self.rows, :, self.length : end] = key_states
        self.value_buffer[: self.rows, :, self.length : end] = value_states
        self.length = end
        self.keys, self.values = self.key_buffer[: self.rows, :, :end], self.value_buffer[: self.rows, :, :end]
        return self.keys, self.values

    def get_seq_length(self) -> int:
        return self.length


class _BranchCrossLayer(DynamicLayer):
    """Cross-attention K/V stored once per source `(B, H, S, D)`; the batch's rows read them through
    ``rows_source``. With ``copy=False`` the rows' K/V are gathered when the attention reads them (one
    layer at a time, freed after it); with ``copy=True`` each row's K/V is copied once, when it joins."""

    def __init__(self, source_keys: torch.Tensor, source_values: torch.Tensor, rows_source: torch.Tensor, copy: bool):
        super().__init__()
        self.source_keys, self.source_values, self.rows_source, self.copy = source_keys, source_values, rows_source, copy
        self.rows, self.is_initialized, self.device, self.computed = 0, True, source_keys.device, False
        if copy:
            self.key_buffer = source_keys.new_empty((rows_source.numel(), *source_keys.shape[1:]))  # (R, H, S, D)
            self.value_buffer = source_values.new_empty((rows_source.numel(), *source_values.shape[1:]))

    def grow(self, rows: int) -> None:
        if self.copy and rows > self.rows:
            index = self.rows_source[self.rows : rows]
            self.key_buffer[self.rows : rows] = self.source_keys.index_select(0, index)
            self.value_buffer[self.rows : rows] = self.source_values.index_select(0, index)
        self.rows = rows

    def _rows_of(self, source: torch.Tensor, buffer_name: str) -> torch.Tensor:
        if self.copy:
            return getattr(self, buffer_name)[: self.rows]
        return source.index_select(0, self.rows_source[: self.rows])

    # the attention reads ``layer.keys`` / ``layer.values``; the base class assigns them, which is ignored
    keys = property(lambda self: self._rows_of(self.source_keys, "key_buffer"), lambda self, value: None)
    values = property(lambda self: self._rows_of(self.source_values, "value_buffer"), lambda self, value: None)

    def update(self, key_states, value_states, *args, **kwargs):
        self.computed = True  # a model that computes its cross K/V itself: they are correct if its encoder states are the rows' own
        return key_states, value_states

    def get_seq_length(self) -> int:
        return self.source_keys.shape[-2]


def branched_cache(source: EncoderDecoderCache, rows_source: torch.Tensor, capacity: int, *, copy_cross: bool = True) -> EncoderDecoderCache:
    """A cache for rows that continue the sequences of ``source`` (a teacher-forced pass over `B`
    source rows): row i branches from source row ``rows_source[i]``. Rows join in order with
    ``grow(cache, rows, length)`` (:func:`grow_branched_cache`); self-attention K/V are preallocated
    for ``capacity`` positions, cross-attention K/V stay those of the `B` sources."""
    self_layers, cross_layers = [], []
    for layer in source.self_attention_cache.layers:
        self_layers.append(_BranchSelfLayer(layer.keys, layer.values, rows_source, capacity))
    for layer in source.cross_attention_cache.layers:
        cross_layers.append(_BranchCrossLayer(layer.keys, layer.values, rows_source, copy_cross))
    self_cache, cross_cache = DynamicCache(), DynamicCache()
    self_cache.layers, cross_cache.layers = self_layers, cross_layers
    return EncoderDecoderCache(self_cache, cross_cache)


def grow_branched_cache(cache: EncoderDecoderCache, rows: int, length: int) -> None:
    """The first ``rows`` rows of a :func:`branched_cache` are in the batch, each holding ``length`` self-attention entries."""
    for layer in cache.self_attention_cache.layers:
        layer.grow(rows, length)
    for layer in cache.cross_attention_cache.layers:
        layer.grow(rows)


def cross_attention_from_cache(cache: EncoderDecoderCache) -> bool:
    """Whether every cross-attention layer of a :func:`branched_cache` read its K/V from the cache in
    the calls so far (none computed them from the encoder states): then the encoder states passed
    to the model are never read and need not be the rows' own."""
    return not any(layer.computed for layer in cache.cross_attention_cache.layers)


def branched_decode(engine, enc: Encoded, *, prefixes, lengths, source_index, steps, processors, choose, draws, generator) -> Rollout:
    """``engine``'s rows ``i`` continuing ``prefixes[source_index[i], :lengths[i]]`` to ``steps`` tokens: the same
    tokens, log-probs and random draws as one cached decode of every row with the prefixes forced
    (``sample(forced_tokens=..., forced_mask=...)`` on expanded rows), without decoding the prefixes.

    One teacher-forced pass over the `B` sources gives every forced position's logits, each
    prefix's first free distribution and the cache to branch from. The rows, sorted by prefix
    length, form one batch that grows: at position p the rows whose prefix ended before p decode
    (their self-attention cache preallocated, all of length p), the rows whose prefix ends at p
    take the teacher-forced logits and join. Every step draws one uniform per row in the original
    row order, as the expanded decode did, so that sampled rows get the same tokens."""
    engine._check_cache_usable()
    device, rows, pad = prefixes.device, lengths.numel(), engine.pad_token_id
    eos = torch.tensor(engine.eos_token_ids, device=device, dtype=torch.long)
    # the prefixes as the expanded decode fed them: the pad id after a first EOS, pad beyond the width
    forced = torch.full((prefixes.shape[0], steps), pad, dtype=torch.long, device=device)  # (B, T)
    width = min(prefixes.shape[1], steps)
    forced[:, :width] = prefixes[:, :width]
    if eos.numel():
        hit = torch.isin(forced, eos).long()
        forced = forced.masked_fill((hit.cumsum(-1) - hit) > 0, pad)
    # 1. one teacher-forced pass over the longest prefix needed (and the first free position after it)
    m = min(int(lengths.max()) if rows else 0, steps - 1) + 1
    start = torch.full_like(forced[:, :1], engine.decoder_start_token_id)
    cfg = engine.base.config
    tf = engine.model(
        encoder_outputs=BaseModelOutput(last_hidden_state=enc.last_hidden_state), attention_mask=enc.attention_mask,
        decoder_input_ids=torch.cat([start, forced[:, : m - 1]], dim=1), use_cache=True, return_dict=True,
        **{engine._cache_arg: EncoderDecoderCache(DynamicCache(config=cfg), DynamicCache(config=cfg))},
    )
    tf_logits = tf.logits  # (B, m, V)
    history_src = torch.cat([start, forced], dim=1)  # (B, 1+T)
    # the forced tokens' log-probs, once per source and position: raw, and under the processed scores
    tf_raw = tf_logits.float()
    tokens_src = forced[:, :m, None]  # (B, m, 1)
    forced_logp = tf_raw.gather(-1, tokens_src).squeeze(-1) - tf_raw.logsumexp(-1)  # (B, m)
    if processors:
        processed = torch.stack([processors(history_src[:, : t + 1], tf_logits[:, t]).float() for t in range(m)], dim=1)  # (B, m, V)
        forced_slogp = processed.gather(-1, tokens_src).squeeze(-1) - processed.logsumexp(-1)
    else:
        forced_slogp = forced_logp
    # 2. rows sorted by prefix length: the batch at position p is a leading block of them
    order = torch.argsort(lengths, stable=True)  # (R,)
    src = source_index.index_select(0, order)
    joined = torch.searchsorted(lengths.index_select(0, order), torch.arange(steps, device=device), right=True).tolist()  # rows with L <= p
    cache = branched_cache(getattr(tf, engine._cache_arg), src, steps, copy_cross=engine.copy_cross_attention)
    history = history_src.index_select(0, src)  # (R, 1+T): the forced tokens, overwritten where rows decode
    unfinished = torch.ones(rows, dtype=torch.bool, device=device)
    masks, token_logps, sampled_logps = [], [], []
    called = False
    for p in range(steps):
        uniform = torch.rand((rows, 1), generator=generator, device=device).index_select(0, order) if draws else None  # the expanded decode's draw
        calling, free = (joined[p - 1] if p else 0), joined[p]
        parts = []
        if calling:
            grow_branched_cache(cache, calling, p)  # rows whose prefix ended at p - 1 join with its cache
            index = src[:calling]
            # the encoder states feed only the cross-attention K/V, taken from the cache: once the first call has shown
            # that the model reads them there, a view of one row stands for them (no copy per row and step)
            states = enc.last_hidden_state
            states = states[:1].expand(calling, -1, -1) if called and cross_attention_from_cache(cache) else states.index_select(0, index)
            out = engine.model(
                encoder_outputs=BaseModelOutput(last_hidden_state=states),
                attention_mask=enc.attention_mask.index_select(0, index), decoder_input_ids=history[:calling, p : p + 1],
                use_cache=True, return_dict=True, **{engine._cache_arg: cache},
            )
            parts.append(out.logits[:, -1, :])  # (calling, V)
            called = True
        if free > calling:
            parts.append(tf_logits[src[calling:free], p])  # prefixes ending at p: the teacher-forced distribution
        tokens = history[:, p + 1].clone()
        logp = forced_logp[:, min(p, m - 1)].index_select(0, src)  # used where the prefix covers p (then p < m)
        slogp = forced_slogp[:, min(p, m - 1)].index_select(0, src)
        if free:
            logits = torch.cat(parts) if len(parts) > 1 else parts[0]  # (free, V)
            scores = processors(history[:free, : p + 1], logits) if processors else logits
            chosen, _, lse = choose(scores, None if uniform is None else uniform[:free])
            tokens[:free] = chosen
            logp[:free], slogp[:free] = chosen_logprobs(logits, scores, chosen, lse, bool(processors))
        tokens = torch.where(unfinished, tokens, pad)
        masks.append(unfinished.long())
        token_logps.append(logp * unfinished)
        sampled_logps.append(torch.where(unfinished, slogp, torch.zeros_like(slogp)))
        history[:, p + 1] = tokens
        if eos.numel():
            unfinished = unfinished & ~torch.isin(tokens, eos)
            if not bool(unfinished.any()):
                break
    n, back = len(masks), torch.argsort(order)
    return Rollout(
        sequences=history[:, 1 : n + 1].index_select(0, back),
        attention_mask=torch.stack(masks, dim=1).index_select(0, back),
        logprobs=torch.stack(token_logps, dim=1).index_select(0, back),
        source_index=source_index,
        decoder_start_token_id=int(engine.decoder_start_token_id),
        sample_logprobs=torch.stack(sampled_logps, dim=1).index_select(0, back),
    )
