"""The model calls of :class:`~hf_seqgan.trainers.cycle.CycleTrainer`, for either direction (x -> y by
the generator, y -> x by the reconstructor): a teacher-forced per-sequence loss from ids or soft
one-hots, and decoding (sampled, greedy or differentiable) with the direction's tags.
"""

from __future__ import annotations

import torch
from transformers import ForcedBOSTokenLogitsProcessor, LogitsProcessorList, NoRepeatNGramLogitsProcessor, SuppressTokensLogitsProcessor

from ..directions import Direction, prepend_soft
from ..logits_process import NoDoubledTokenLogitsProcessor
from ..sampling import soft_embed, unwrap_model
from .losses import sequence_cross_entropy

__all__ = ["DirectionCallsMixin"]


class DirectionCallsMixin:
    """Needs the trainer's ``args`` (``label_smoothing_factor``, ``min_new_tokens``,
    ``sampling_temperature``, ``training_no_repeat_ngram_size``, ``training_no_doubled_tokens``), ``tau``, ``state`` and ``to_y``."""

    def _forward(self, direction: Direction, src_ids, src_mask, tgt_ids, tgt_mask, soft=None) -> torch.Tensor:
        """`(B,)` per-sequence cross-entropy of ``direction`` translating the source (ids, or soft
        one-hots `(B, S, V)` fed through the encoder's embedding) into the target."""
        labels = direction.labels(tgt_ids, tgt_mask)  # (B, T)
        decoder_input_ids = unwrap_model(direction.model).prepare_decoder_input_ids_from_labels(labels=labels)
        if soft is None:
            src_ids, src_mask = direction.encoder_input(src_ids, src_mask)
            source = {"input_ids": src_ids}
        else:
            tag = direction.target_tag if direction.position == "encoder" else direction.source_tag
            if tag is not None and not bool((soft[:, 0].argmax(-1) == tag).all()):
                soft, src_mask = prepend_soft(soft, src_mask, tag)
            source = {"inputs_embeds": soft_embed(direction.model, soft, side="encoder")}  # (B, S, H)
        logits = direction.model(**source, attention_mask=src_mask, decoder_input_ids=decoder_input_ids, use_cache=False).logits
        return sequence_cross_entropy(logits, labels, self.args.label_smoothing_factor)

    def _decode(self, direction: Direction, ids, mask, max_new: int, generator, *, do_sample: bool, differentiable: bool = False,
                num_samples: int = 1, eval_mode: bool = False):
        """Decode with ``direction`` (its tags included); ``eval_mode``: without dropout, as Lample et al.
        generate back-translations."""
        was_training = direction.model.training
        direction.model.train(was_training and not eval_mode)
        try:
            return self._decode_rows(direction, ids, mask, max_new, generator, do_sample, differentiable, num_samples)
        finally:
            direction.model.train(was_training)

    def _sampling(self, direction: Direction, max_new: int, do_sample: bool) -> dict:
        """The settings of a decode with ``direction``: its forced tag, n-gram and doubled-token blocking, its domain's vocabulary, lengths, temperature."""
        tag = direction.forced_tag
        max_new += int(tag is not None)
        processors = LogitsProcessorList([ForcedBOSTokenLogitsProcessor(tag)] if tag is not None else [])
        if self.args.training_no_repeat_ngram_size:
            processors.append(NoRepeatNGramLogitsProcessor(self.args.training_no_repeat_ngram_size))
        if self.args.training_no_doubled_tokens:
            processors.append(NoDoubledTokenLogitsProcessor())
        if direction.suppress_tokens:
            processors.append(SuppressTokensLogitsProcessor(direction.suppress_tokens, device=self.args.device))
        return dict(max_new_tokens=max_new, min_new_tokens=min(self.args.min_new_tokens, max_new), do_sample=do_sample,
                    logits_processor=processors or None, temperature=self.args.sampling_temperature if do_sample else 1.0)

    def _decode_rows(self, direction: Direction, ids, mask, max_new, generator, do_sample, differentiable, num_samples):
        ids, mask = direction.encoder_input(ids, mask)
        common = self._sampling(direction, max_new, do_sample)
        if differentiable:
            common.pop("temperature"), common.pop("do_sample")
            return direction.engine.differentiable(ids, mask, tau=float(self.tau(self.state.global_step)), hard=True, noise=do_sample,
                                                   generator=generator, num_samples=num_samples, **common)
        return direction.engine.sample(ids, mask, generator=generator, num_samples=num_samples, **common)

    def _without_tag(self, rollout, direction: Direction = None) -> torch.Tensor:
        """`(R, T)` the mask of the model's own choices in a decode of ``direction`` (default: G's,
        ``to_y``): the forced direction tag left out."""
        mask = rollout.attention_mask
        tag = (direction or self.to_y).forced_tag
        return torch.cat([torch.zeros_like(mask[:, :1]), mask[:, 1:]], dim=1) if tag is not None else mask
