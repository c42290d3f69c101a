"""The policy-gradient core every trainer of the library that samples and learns from rewards uses
(:class:`~hf_seqgan.trainers.AdversarialTrainer`, :class:`~hf_seqgan.trainers.CycleTrainer`,
:class:`~hf_seqgan.trainers.GRPOTrainer`).

- :func:`~hf_seqgan.scoring.sampled_logprobs`: the log-probabilities of the tokens under the distribution they were
  *actually sampled from* — the raw logits of a teacher-forced forward passed through the same
  temperature, top-k, top-p and generation-config processors, in the same order, as the
  :class:`~hf_seqgan.rollout.RolloutEngine` applied while sampling. Scoring samples drawn at a
  temperature T != 1 with ``log_softmax`` of the raw logits gives a biased estimator (a constant
  reward then moves the policy); this is the on-policy score.
- :func:`policy_loss`: the clipped-ratio surrogate (PPO/GRPO; with one update per batch of samples
  the ratio is exactly 1 and it is REINFORCE), a KL term to a reference (k3 estimator) and the
  token- or sequence-level aggregations of TRL's ``loss_type``.
- :func:`group_advantages`: GRPO's group-relative advantages (``scale_rewards``).
- :func:`disable_dropout`: dropout off in a model, so that the rollouts and the loss forward are the
  same policy (RL4LMs and TRL found dropout destabilising for RL).
- :func:`discriminator_step`: the discriminator's real-vs-generated update, always through its
  prepared (in a multi-process run DDP-wrapped) copy, so that its gradients are averaged.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
from typing import Optional

import torch

from ..rewards import REWARD_KINDS
from ..schedules import as_schedule, schedule_field

from ..scoring import sampled_logprobs  # noqa: F401  (re-exported: the trainers import the policy pieces from here)

__all__ = ["PolicyFields", "DiscriminatorFields", "check_shared_fields", "default_discriminator", "sync_discriminator_reference", "LOSS_TYPES", "SCALE_REWARDS", "sampled_logprobs", "policy_loss", "group_advantages", "disable_dropout", "discriminator_step", "frozen_reference", "reference_of"]

#: aggregations of the per-token loss: TRL's "grpo" (mean over each completion's tokens, then over
#: completions), "bnpo" (mean over every token of the batch), "dr_grpo" (sum over tokens / (rows x
#: max_completion_length)); "reinforce": sum over each completion's tokens, mean over completions
#: (the plain score-function estimator of a sequence reward).
LOSS_TYPES = ("grpo", "bnpo", "dr_grpo", "reinforce")
DISCRIMINATOR_TYPES = ("seq2seq", "classifier")
SCALE_REWARDS = ("group", "batch", "none")
# the module attributes transformers' models read their dropout probabilities from (besides nn.Dropout modules)
_DROPOUT_ATTRIBUTES = ("dropout", "attention_dropout", "activation_dropout", "dropout_rate", "layerdrop", "attn_dropout", "hidden_dropout")


@dataclasses.dataclass
class PolicyFields:
    """The sampling and policy-gradient fields every config of a trainer that samples shares
    (``AdversarialConfig``, ``CycleConfig``): put before the config's base class, e.g.
    ``class XConfig(PolicyFields, DiscriminatorFields, BaseConfig)``, and validate with
    :func:`check_shared_fields` in ``__post_init__``."""

    reward: str = dataclasses.field(default="prob", metadata={"help": f"The discriminator reward: one of {REWARD_KINDS} (p(real), log p(real), log-odds, the log density ratio log D/(1-D), MaliGAN's normalised weights)."})
    baseline_decay: float = dataclasses.field(default=0.9, metadata={"help": "Decay of the moving-average baseline(s)."})
    num_samples: int = dataclasses.field(default=1, metadata={"help": "Samples per source (>= 2 for the leave-one-out baseline)."})
    tau: str = schedule_field("1.0", "Gumbel-softmax temperature of the gumbel updates, over optimizer steps.")
    max_new_tokens: Optional[int] = dataclasses.field(default=None, metadata={"help": "Most tokens sampled per output; defaults to the width of the batch's targets."})
    min_new_tokens: int = dataclasses.field(default=0, metadata={"help": "EOS is blocked before this many sampled tokens."})
    do_sample: bool = dataclasses.field(default=True, metadata={"help": "Sample the generator's outputs (False: greedy, deterministic; the gumbel updates then add no noise)."})
    sampling_temperature: float = dataclasses.field(default=1.0, metadata={"help": "Temperature of the generator's samples (the policy gradient differentiates that distribution)."})
    disable_dropout: bool = dataclasses.field(default=True, metadata={"help": "Turn the generator's dropout off, so that its samples and the policy-gradient forward are the same policy (TRL/RL4LMs)."})


@dataclasses.dataclass
class DiscriminatorFields:
    """The fields of a trainer's discriminator: its optimizer and the default one's size."""

    discriminator_type: str = dataclasses.field(default="seq2seq", metadata={"help": "The default discriminator (when none is given): 'seq2seq' (Seq2SeqDiscriminator: a copy of the generator scoring log p_copy - log p_generator, which can see what the generator gets wrong) or 'classifier' (a small BERT on the generator's vocabulary, trained from scratch)."})
    discriminator_learning_rate: float = dataclasses.field(default=1e-4, metadata={"help": "Learning rate of the discriminator's own optimizer."})
    discriminator_optimizer: str = dataclasses.field(default="adamw", metadata={"help": "The discriminator's optimizer: adamw, adam or sgd."})
    discriminator_max_grad_norm: float = dataclasses.field(default=1.0, metadata={"help": "Gradient clipping of the discriminator (0 = off)."})
    discriminator_label_smoothing: float = dataclasses.field(default=0.0, metadata={"help": "One-sided label smoothing of the real targets (0.1 -> 0.9)."})
    discriminator_hidden_size: int = dataclasses.field(default=64, metadata={"help": "Hidden size of the default 'classifier' discriminator."})
    discriminator_layers: int = dataclasses.field(default=2, metadata={"help": "Layers of the default 'classifier' discriminator."})
    discriminator_dropout: float = dataclasses.field(default=0.1, metadata={"help": "Dropout of the default discriminator (of the 'seq2seq' one's trunk)."})


def check_shared_fields(config) -> None:
    """Validate (and normalise) the :class:`PolicyFields` and :class:`DiscriminatorFields` of a config."""
    if config.discriminator_type not in DISCRIMINATOR_TYPES:
        raise ValueError(f"discriminator_type={config.discriminator_type!r} is not one of {DISCRIMINATOR_TYPES}.")
    if config.reward not in REWARD_KINDS:
        raise ValueError(f"reward={config.reward!r} is not one of {REWARD_KINDS}.")
    if isinstance(config.num_samples, bool) or not isinstance(config.num_samples, int) or config.num_samples < 1:
        raise ValueError(f"num_samples must be an integer >= 1, got {config.num_samples!r}.")
    if not 0.0 <= config.baseline_decay < 1.0:
        raise ValueError(f"baseline_decay must be in [0, 1), got {config.baseline_decay}.")
    if not 0.0 <= config.discriminator_label_smoothing < 0.5:
        raise ValueError(f"discriminator_label_smoothing must be in [0, 0.5), got {config.discriminator_label_smoothing}.")
    if config.max_new_tokens is not None and config.max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {config.max_new_tokens}.")
    if isinstance(config.min_new_tokens, bool) or not isinstance(config.min_new_tokens, int) or config.min_new_tokens < 0:
        raise ValueError(f"min_new_tokens must be an integer >= 0, got {config.min_new_tokens!r}.")
    if not config.sampling_temperature > 0:
        raise ValueError(f"sampling_temperature must be > 0, got {config.sampling_temperature}; use do_sample=False for greedy outputs.")
    config.tau = str(as_schedule(config.tau, name="tau", low=1e-6))


def disable_dropout(model: torch.nn.Module) -> torch.nn.Module:
    """Set every dropout probability of ``model`` to 0, in place: ``nn.Dropout`` modules and the float
    attributes (``dropout``, ``activation_dropout``, ``attention_dropout``, ``layerdrop``, ...) that
    BART-style models pass to ``nn.functional.dropout``. The config is left as it is, so a saved
    model keeps its own dropout for later fine-tuning. Returns ``model``."""
    for module in model.modules():
        if isinstance(module, torch.nn.modules.dropout._DropoutNd):
            module.p = 0.0
        for name in _DROPOUT_ATTRIBUTES:
            value = module.__dict__.get(name)
            if isinstance(value, float) and not isinstance(value, bool):
                setattr(module, name, 0.0)
    return model


def group_advantages(rewards: torch.Tensor, num_generations: int, scale_rewards: str = "group", eps: float = 1e-4) -> torch.Tensor:
    """GRPO's advantages `(R,)`: each reward minus the mean of its group of ``num_generations``
    completions of one prompt (rows ordered prompt-major), divided by the group's standard deviation
    (``"group"``), the batch's (``"batch"``) or nothing (``"none"``)."""
    if scale_rewards not in SCALE_REWARDS:
        raise ValueError(f"scale_rewards must be one of {SCALE_REWARDS}, got {scale_rewards!r}.")
    grouped = rewards.view(-1, num_generations)  # (P, G)
    advantages = grouped - grouped.mean(-1, keepdim=True)
    if scale_rewards == "group":
        advantages = advantages / (grouped.std(-1, keepdim=True) + eps) if num_generations > 1 else advantages
    elif scale_rewards == "batch":
        advantages = advantages / (rewards.std() + eps) if rewards.numel() > 1 else advantages
    return advantages.reshape(-1)


def frozen_reference(model):
    """The reference of a KL penalty: a frozen copy of ``model`` in eval mode, or ``None`` for a PEFT
    model (its base, with the adapters switched off, is the reference: no copy is made)."""
    from ..sampling import unwrap_model

    if hasattr(model, "disable_adapter"):
        return None
    return copy.deepcopy(unwrap_model(model)).eval().requires_grad_(False)


@contextlib.contextmanager
def reference_of(ref_model, model):
    """The model to run as the reference: ``ref_model`` (from :func:`frozen_reference`), or, when it
    is ``None``, the PEFT ``model`` with its adapters switched off for the ``with`` block."""
    if ref_model is not None:
        yield ref_model
    else:
        with model.disable_adapter():
            yield model


def policy_loss(logp: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor, *, old_logp: Optional[torch.Tensor] = None,
                ref_logp: Optional[torch.Tensor] = None, beta: float = 0.0, epsilon: float = 0.2, epsilon_high: Optional[float] = None,
                loss_type: str = "grpo", max_completion_length: Optional[int] = None) -> tuple[torch.Tensor, dict]:
    """The policy-gradient surrogate over sampled tokens.

    Args:
        logp: `(R, T)` log-probs of the sampled tokens under the current policy (in the graph).
        advantages: `(R,)` per completion or `(R, T)` per token.
        mask: `(R, T)` 1 at the completions' real tokens.
        old_logp: `(R, T)` log-probs under the policy that sampled (several updates per batch of
            samples); ``None``: the current one, detached, so the ratio is exactly 1.
        ref_logp, beta: the reference model's log-probs and the weight of the k3 KL estimate.
        epsilon, epsilon_high: the ratio is clipped to ``[1 - epsilon, 1 + epsilon_high]``.
        loss_type: one of :data:`LOSS_TYPES`.

    Returns ``(loss, stats)`` with ``stats``: ``clip_ratio`` (share of tokens whose ratio was
    clipped where it mattered), ``kl`` (mean per token, when ``ref_logp`` is given).
    """
    if loss_type not in LOSS_TYPES:
        raise ValueError(f"loss_type must be one of {LOSS_TYPES}, got {loss_type!r}.")
    mask = mask.to(logp.dtype)
    adv = advantages[:, None] if advantages.dim() == 1 else advantages  # (R, 1) or (R, T)
    old = logp.detach() if old_logp is None else old_logp
    ratio = torch.exp(logp - old)  # (R, T): 1 in value on the first update, with the score function's gradient
    high = epsilon if epsilon_high is None else epsilon_high
    clipped = torch.clamp(ratio, 1.0 - epsilon, 1.0 + high)
    per_token = -torch.min(ratio * adv, clipped * adv)  # (R, T)
    tokens = mask.sum().clamp_min(1.0)
    stats = {"clip_ratio": (((ratio * adv) > (clipped * adv)).to(mask.dtype) * mask).sum() / tokens}
    if ref_logp is not None and beta:
        delta = ref_logp - logp
        kl = torch.exp(delta) - delta - 1.0  # (R, T), k3: unbiased and >= 0
        per_token = per_token + beta * kl
        stats["kl"] = (kl.detach() * mask).sum() / tokens
    per_token = per_token * mask
    rows = logp.shape[0]
    if loss_type == "grpo":
        loss = (per_token.sum(-1) / mask.sum(-1).clamp_min(1.0)).mean()
    elif loss_type == "bnpo":
        loss = per_token.sum() / tokens
    elif loss_type == "dr_grpo":
        width = max_completion_length or logp.shape[1]
        loss = per_token.sum() / (rows * width)
    else:
        loss = per_token.sum() / max(rows, 1)
    return loss, stats


def discriminator_step(trainer, reward, real_ids: torch.Tensor, real_mask: torch.Tensor, fake_ids: torch.Tensor, fake_mask: torch.Tensor, *,
                       source_ids: Optional[torch.Tensor] = None, fake_source_index: Optional[torch.Tensor] = None,
                       label_smoothing: float = 0.0, steps: int = 1, name: str = "discriminator", prefix: str = "") -> None:
    """Update the trainer's discriminator ``name`` on real ``y`` `(B, L)` against generated ``ŷ``
    `(R, T)` (ids of the generator's vocabulary; the pairs ``(x, y)`` / ``(x_i, ŷ)`` when it is
    conditional, real row b reading source b and fake row r source ``fake_source_index[r]``).

    Real and fake rows go through one forward of the *prepared* discriminator, so that in a
    multi-process run DDP averages its gradients; ``reward`` (a
    :class:`~hf_seqgan.rewards.DiscriminatorReward`) says the real label and whether the
    discriminator reads texts (another vocabulary). Logs ``d_loss``, ``d_acc_real``, ``d_acc_fake``,
    ``d_acc``, and ``d_heldout_acc`` / ``d_heldout_auc``: the accuracy (mean over real and fake rows)
    and the AUC of the discriminator on this batch *before* it trains on it — the generated rows are
    always new to it, the real ones are new until the data repeats; each name after ``prefix`` (a
    second discriminator's figures apart from the first's). Returns ``d_heldout_acc``."""
    from ..discriminators import discriminator_loss
    from ..seq2seq_discriminator import heldout_metrics

    disc = reward.discriminator
    wrapped = trainer.auxiliary(name).model
    tokenizer = trainer.processing_class
    pad = tokenizer.pad_token_id
    real_ids, fake_ids = real_ids.masked_fill(real_mask == 0, pad), fake_ids.masked_fill(fake_mask == 0, pad)
    rows = real_ids.shape[0]
    conditional = disc.conditional and source_ids is not None
    index = None
    if conditional:
        fakes_index = fake_source_index if fake_source_index is not None else torch.arange(fake_ids.shape[0], device=fake_ids.device)
        index = torch.cat([torch.arange(rows, device=fake_ids.device), fakes_index])  # (B + R,)
    if reward.text_path:
        texts = tokenizer.batch_decode(real_ids, skip_special_tokens=True) + tokenizer.batch_decode(fake_ids, skip_special_tokens=True)
        sources = None
        if conditional:
            decoded = tokenizer.batch_decode(source_ids, skip_special_tokens=True)
            sources = [decoded[i] for i in index.tolist()]
        enc = disc.encode_texts(texts, sources)
    else:
        width = max(real_ids.shape[1], fake_ids.shape[1])
        ids = torch.cat([torch.nn.functional.pad(t, (0, width - t.shape[1]), value=pad) for t in (real_ids, fake_ids)])  # (B + R, W)
        enc = disc.encode_ids(ids, source_ids if conditional else None, index)
    disc.train()
    heldout = None
    for i in range(steps):
        with trainer._unsynced(wrapped):
            logp = disc.log_probs(wrapped(**enc))  # (B + R, 2)
        loss, acc_real, acc_fake = discriminator_loss(logp[:rows], logp[rows:], reward.real_label, label_smoothing)
        if i == 0:  # before any update on this batch
            odds = (logp[:, reward.real_label] - torch.logsumexp(logp.index_fill(1, torch.tensor([reward.real_label], device=logp.device),
                                                                                 float("-inf")), 1)).detach().float()
            metrics = heldout_metrics(odds[:rows], odds[rows:])  # accuracy with ties counted half, and the AUC
            heldout = metrics["d_heldout_acc"]
            trainer.record(**{f"{prefix}d_heldout_acc": heldout, f"{prefix}d_heldout_auc": metrics["d_heldout_auc"]})
        trainer.auxiliary_step(name, loss)
    trainer.record(**{f"{prefix}d_loss": loss.detach(), f"{prefix}d_acc_real": acc_real, f"{prefix}d_acc_fake": acc_fake,
                      f"{prefix}d_acc": 0.5 * (acc_real + acc_fake)})
    return heldout


def default_discriminator(generator, tokenizer, args, *, conditional: bool):
    """The discriminator a trainer builds when none is given (``args.discriminator_type``): a
    :class:`~hf_seqgan.seq2seq_discriminator.Seq2SeqDiscriminator` made from the generator (the
    default: on the oracle task it reached held-out accuracy 0.76 where a classifier trained from
    scratch reached 0.60-0.65), or the small classifier of
    :func:`~hf_seqgan.discriminators.build_default_discriminator`."""
    from ..sampling import unwrap_model

    if args.discriminator_type == "seq2seq":
        from ..seq2seq_discriminator import Seq2SeqDiscriminator

        # a PeftModel as it is (its adapters are merged into the copy), outside any DDP wrapper
        return Seq2SeqDiscriminator(getattr(generator, "module", generator), tokenizer, conditional=conditional, dropout=args.discriminator_dropout,
                                    seed=args.seed)
    from ..discriminators import build_default_discriminator

    return build_default_discriminator(tokenizer, conditional=conditional, hidden_size=args.discriminator_hidden_size,
                                       num_layers=args.discriminator_layers, seed=args.seed, dropout=args.discriminator_dropout,
                                       vocab_size=unwrap_model(generator).config.vocab_size)


def sync_discriminator_reference(trainer, discriminator, generator=None) -> None:
    """Keep a generator-made discriminator's frozen copy of the generator current: its log-ratio is
    then taken against the generator being trained (``generator``: the model it was made from, by
    default the trainer's). Once per optimizer step and discriminator; not for a PEFT generator
    (whose weights are the base plus adapters: the copy keeps the starting model)."""
    from ..sampling import unwrap_model

    if getattr(discriminator, "reference", None) is None or trainer._synced_reference_at.get(id(discriminator)) == trainer.state.global_step:
        return
    trainer._synced_reference_at[id(discriminator)] = trainer.state.global_step
    generator = getattr(trainer.model, "module", trainer.model) if generator is None else generator
    if hasattr(generator, "peft_config"):
        return
    discriminator.sync_reference(unwrap_model(generator))
