"""The rewards and baselines of :class:`~hf_seqgan.trainers.adversarial.AdversarialTrainer`'s REINFORCE
update: the discriminator's score (per sequence, per token from Monte-Carlo rollouts, or per prefix),
the ``reward_funcs`` on top, rows with a non-finite reward dropped, and the baseline (moving average,
self-critical greedy, leave-one-out or none).
"""

from __future__ import annotations

import torch

from ..rewards import (
    discounted_returns,
    drop_nonfinite,
    leave_one_out_baseline,
    monte_carlo_rewards,
    self_critical_baseline,
    step_level_rewards,
)

__all__ = ["DiscriminatorRewardsMixin"]


class DiscriminatorRewardsMixin:
    """What the REINFORCE update of the adversarial trainer rewards: needs the trainer's ``args``,
    ``engine``, ``discriminator`` with its ``_d_reward``, ``reward_funcs`` / ``reward_weights``,
    ``baseline``, ``processing_class``, ``record`` and ``process_mean``."""

    def _score_fn(self, src, source_texts):
        def score(sequences, mask, source_index):
            return self._d_reward(sequences, mask, source_index, source_ids=src["input_ids"], source_texts=source_texts)

        return score

    def _rewards(self, src, encoded, fakes, labels, sampling) -> torch.Tensor:
        args = self.args
        needs_texts = bool(self.reward_funcs) or (self._d_reward.text_path if self.discriminator is not None else False)
        source_texts = self.processing_class.batch_decode(src["input_ids"], skip_special_tokens=True) if needs_texts else None
        per_token = args.rollouts > 0 or args.step_rewards
        total = torch.zeros(fakes.sequences.shape if per_token else fakes.sequences.shape[:1], device=fakes.sequences.device)
        valid = torch.ones(fakes.sequences.shape[0], dtype=torch.bool, device=fakes.sequences.device)
        if self.discriminator is not None:
            self.discriminator.eval()
            score = self._score_fn(src, source_texts)
            if args.rollouts:
                d = monte_carlo_rewards(self.engine, encoded, fakes, score, num_rollouts=args.rollouts, **sampling)
            elif args.step_rewards:
                prefix = step_level_rewards(fakes, score, self.engine.pad_token_id)  # (R, T): D's score of each prefix
                if self._additive_score():  # a ratio head's prefix score is a running sum: reward each token's own term
                    prefix = torch.diff(prefix, dim=1, prepend=torch.zeros_like(prefix[:, :1])) * fakes.attention_mask
                d = discounted_returns(prefix, fakes.attention_mask, args.gamma)
            else:
                d = score(fakes.sequences, fakes.attention_mask, fakes.source_index)
            d, valid = drop_nonfinite(d, "of the discriminator", valid)
            self.record(discriminator_reward=(d.sum() / fakes.attention_mask.sum()) if per_token else d.mean())
            total = total + args.discriminator_reward_weight * d
        if self.reward_funcs:
            references = self._references(labels)
            for fn, weight in zip(self.reward_funcs, self.reward_weights):
                r = fn(fakes.sequences, fakes.attention_mask, fakes.source_index, source_texts=source_texts, references=references)
                r, valid = drop_nonfinite(r, fn.name, valid)
                self.record(**{f"reward_{fn.name}": r[valid].mean() if valid.any() else None})
                total = total + weight * (r[:, None] * fakes.attention_mask if per_token else r)
        return total, valid

    def _references(self, labels):
        if labels is None:
            return None
        return self.processing_class.batch_decode(labels.masked_fill(labels < 0, self.engine.pad_token_id), skip_special_tokens=True)

    def _baseline(self, src, encoded, fakes, labels, rewards, valid):
        """The baseline of each row and the rows still valid (a self-critical baseline can itself be non-finite)."""
        args = self.args
        if args.baseline == "none":
            return torch.zeros_like(rewards), valid
        if args.baseline == "leave_one_out":
            # a dropped row takes the mean reward of its source's valid rows, so that it moves no other row's baseline
            rows = valid.view(-1, args.num_samples, *([1] * (rewards.dim() - 1))).to(rewards.dtype)
            grouped = rewards.view(-1, args.num_samples, *rewards.shape[1:])
            fill = (grouped * rows).sum(1, keepdim=True) / rows.sum(1, keepdim=True).clamp_min(1)
            return leave_one_out_baseline(torch.where(rows.bool(), grouped, fill).reshape(rewards.shape), args.num_samples), valid
        if args.baseline == "moving_average":
            keep = fakes.attention_mask.bool() & valid[:, None] if rewards.dim() == 2 else valid
            mean = self.process_mean(rewards[keep])  # over every process's rows
            if mean is None:  # no valid row anywhere: the baseline stays as it is
                return torch.zeros_like(rewards), valid
            return torch.full_like(rewards, self.baseline.update(mean)), valid
        greedy = self.engine.sample(encoded=encoded, max_new_tokens=fakes.sequences.shape[1], do_sample=False)
        greedy_rewards, greedy_valid = self._sequence_rewards(src, greedy, labels)
        base = self_critical_baseline(greedy_rewards, fakes.source_index)
        valid = valid & greedy_valid[fakes.source_index]
        return (base[:, None] * fakes.attention_mask if rewards.dim() == 2 else base), valid

    def _sequence_rewards(self, src, rollout, labels) -> torch.Tensor:
        """Sequence-level reward of a rollout (the self-critical baseline's reward)."""
        total = torch.zeros(rollout.sequences.shape[0], device=rollout.sequences.device)
        valid = torch.ones(rollout.sequences.shape[0], dtype=torch.bool, device=rollout.sequences.device)
        source_texts = self.processing_class.batch_decode(src["input_ids"], skip_special_tokens=True) if self.reward_funcs else None
        if self.discriminator is not None:
            d = self._score_fn(src, source_texts)(rollout.sequences, rollout.attention_mask, rollout.source_index)
            d, valid = drop_nonfinite(d, "of the discriminator (self-critical baseline)", valid)
            total = total + self.args.discriminator_reward_weight * d
        references = self._references(labels) if self.reward_funcs else None
        for fn, weight in zip(self.reward_funcs, self.reward_weights):
            r = fn(rollout.sequences, rollout.attention_mask, rollout.source_index, source_texts=source_texts, references=references)
            r, valid = drop_nonfinite(r, f"{fn.name} (self-critical baseline)", valid)
            total = total + weight * r
        return total, valid

    def _additive_score(self) -> bool:
        """Whether D's reward is a sum over tokens (a ratio-head :class:`~hf_seqgan.seq2seq_discriminator.Seq2SeqDiscriminator`
        with the ``log_ratio`` or ``logit`` reward): then a prefix's score already holds every earlier token's
        term, and ``step_rewards`` rewards token t with its increment, so that with ``gamma=1`` the return
        is the log-ratio to go, not a sum of running sums."""
        return getattr(self.discriminator, "head_type", None) == "ratio" and self.args.reward in ("log_ratio", "logit")
