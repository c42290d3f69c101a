"""AdversarialTrainer: GAN training of any pretrained seq2seq model with discriminator rewards.

A discriminator D, trained inside the same ``trainer.train()`` on real ``(x, y)`` against fake
``(x, ŷ)`` pairs, judges the generator's samples; the generator is updated by

- ``generator_update="reinforce"``: policy gradient (REINFORCE) on sampled outputs, with a reward
  from D (a probability, log-probability or log-odds) and/or ``reward_funcs``, and a baseline
  (moving average, greedy self-critical as in SCST, or leave-one-out over ``num_samples``). The
  reward is per sequence, or per token from Monte-Carlo rollouts (``rollouts=N``, SeqGAN, Yu et al.
  2017, https://arxiv.org/abs/1609.05473) or from D scoring every prefix (``step_rewards=True``,
  discounted by ``gamma``; Li et al. 2017, de Masson d'Autume et al. 2019);
- ``generator_update="gumbel"``: straight-through Gumbel-softmax through the differentiable rollout
  into D's input embeddings (RelGAN, Nie et al. 2019, https://openreview.net/forum?id=rJedV3R5tm),
  with the temperature τ following a `Schedule`;

plus, for both, an MLE term on the gold pairs (teacher-forcing interleave, Li et al. 2017), an
optional KL penalty to the frozen starting model and an entropy bonus. With ``reward_funcs`` and
``use_discriminator=False`` it is self-critical sequence training on a metric alone (e.g. ROUGE).

Order within a step: sample -> rewards from the current D -> generator loss -> D update on the same
samples. D's update accumulates over gradient-accumulation micro-batches like the generator's, so
accumulation is exact (with deterministic decoding and no moving-average baseline, 2 x 8 equals
1 x 16). Evaluation is the plain teacher-forced loss, as in `Seq2SeqTrainer`.

Several processes (``accelerate launch`` / ``torchrun``, DDP; gloo on CPU): the REINFORCE forward
goes through the DDP-wrapped generator and D's update through its DDP-wrapped copy, so both are
averaged over the processes; the Gumbel mode decodes through the unwrapped generator step by step,
so the trainer averages the generator's gradients itself at the optimizer-step boundary. The MLE
term divides by the label count over every process and the moving-average baseline follows the
mean reward over every process, so that with deterministic decoding 2 processes x 8 equal
1 process x 16 (tested). The KL and entropy terms are averaged per process.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
from typing import Callable, Optional, Sequence

import torch
import torch.nn.functional as F
from transformers import DataCollatorForSeq2Seq
from transformers.modeling_outputs import BaseModelOutput

from ..discriminators import SequenceDiscriminator
from ..rewards import (
    DiscriminatorReward,
    MovingAverageBaseline,
    TextReward,
)
from ..rollout import Encoded, RolloutEngine, token_logprobs
from ..sampling import unwrap_model
from ..schedules import as_schedule, schedule_field
from ._adversarial_rewards import DiscriminatorRewardsMixin
from ._base import BaseConfig, BaseTrainer, apply_peft
from ._policy import (
    DiscriminatorFields, PolicyFields, check_shared_fields, default_discriminator, disable_dropout, discriminator_step, frozen_reference,
    policy_loss, reference_of, sampled_logprobs, sync_discriminator_reference,
)

__all__ = ["AdversarialConfig", "AdversarialTrainer"]

logger = logging.getLogger(__name__)
UPDATES = ("reinforce", "gumbel")
CHANCE_MARGIN = 0.05  # a held-out accuracy below 0.5 + this is "at chance"
BASELINES = ("moving_average", "self_critical", "leave_one_out", "none")


@dataclasses.dataclass
class AdversarialConfig(PolicyFields, DiscriminatorFields, BaseConfig):
    """Configuration of :class:`AdversarialTrainer` (a `Seq2SeqTrainingArguments` plus the fields below).

    Generator update: ``generator_update``, ``reward``, ``baseline`` (+ ``baseline_decay``),
    ``num_samples``, ``rollouts``, ``step_rewards`` (+ ``gamma``), ``tau``, ``gumbel_loss``.
    Sampling: ``max_new_tokens``, ``min_new_tokens``, ``do_sample``, ``sampling_temperature``,
    ``top_k``, ``top_p``. Loss mix: ``adversarial_weight``, ``mle_weight``, ``kl_coef``,
    ``entropy_coef``, ``discriminator_reward_weight``, ``reward_weights``. Discriminator:
    ``use_discriminator``, ``conditional_discriminator``, ``discriminator_learning_rate``,
    ``discriminator_steps``, ``discriminator_label_smoothing``, ``discriminator_pretrain_steps``,
    ``discriminator_max_grad_norm`` and the default discriminator's size.
    """

    generator_update: str = dataclasses.field(default="reinforce", metadata={"help": f"How the generator learns from the rewards: one of {UPDATES}."})
    baseline: str = dataclasses.field(default="moving_average", metadata={"help": f"REINFORCE baseline: one of {BASELINES}."})
    rollouts: int = dataclasses.field(default=0, metadata={"help": "Monte-Carlo completions per prefix for per-token rewards (SeqGAN); 0 = sequence-level reward."})
    step_rewards: bool = dataclasses.field(default=False, metadata={"help": "Per-token rewards from the discriminator scoring every prefix (REGS/ScratchGAN)."})
    gamma: float = dataclasses.field(default=1.0, metadata={"help": "Discount of per-step rewards (step_rewards=True)."})
    gumbel_loss: str = dataclasses.field(default="standard", metadata={"help": "Generator loss of the gumbel mode: 'standard' (-log D(fake)) or 'relativistic' (RelGAN: -log sigmoid(D(fake) - D(real)))."})
    top_k: int = dataclasses.field(default=0, metadata={"help": "Top-k of the generator's samples (0 = off)."})
    top_p: float = dataclasses.field(default=1.0, metadata={"help": "Top-p of the generator's samples (1 = off)."})
    adversarial_weight: str = schedule_field("1.0", "Weight of the policy-gradient / Gumbel loss.")
    mle_weight: str = schedule_field("1.0", "Weight of the teacher-forced MLE loss on gold pairs (0 = pure adversarial).")
    kl_coef: float = dataclasses.field(default=0.0, metadata={"help": "KL penalty to the frozen starting model (0 = off; no copy is made)."})
    entropy_coef: float = dataclasses.field(default=0.0, metadata={"help": "Entropy bonus on the generator's token distributions."})
    discriminator_reward_weight: float = dataclasses.field(default=1.0, metadata={"help": "Weight of the discriminator's reward next to reward_funcs."})
    reward_weights: Optional[list[float]] = dataclasses.field(default=None, metadata={"help": "One weight per reward function (default 1 each)."})
    use_discriminator: bool = dataclasses.field(default=True, metadata={"help": "Train and use a discriminator (False: rewards from reward_funcs alone)."})
    conditional_discriminator: bool = dataclasses.field(default=True, metadata={"help": "The default discriminator judges (source, output) pairs; False: outputs alone."})
    discriminator_steps: int = dataclasses.field(default=1, metadata={"help": "Discriminator updates per generator step."})
    discriminator_pretrain_steps: int = dataclasses.field(default=0, metadata={"help": "Optimizer steps at the start that train only the discriminator (with discriminator_pretrain_target_accuracy: the most)."})
    discriminator_pretrain_target_accuracy: Optional[float] = dataclasses.field(default=None, metadata={"help": "End the discriminator's pre-training as soon as its held-out accuracy (mean of the last 10 updates) reaches this, within discriminator_pretrain_steps."})

    def __post_init__(self):
        super().__post_init__()
        check_shared_fields(self)
        for name, value, choices in (("generator_update", self.generator_update, UPDATES), ("baseline", self.baseline, BASELINES),
                                     ("gumbel_loss", self.gumbel_loss, ("standard", "relativistic"))):
            if value not in choices:
                raise ValueError(f"{name}={value!r} is not one of {choices}.")
        if isinstance(self.rollouts, bool) or not isinstance(self.rollouts, int) or self.rollouts < 0:
            raise ValueError(f"rollouts must be an integer >= 1 for Monte-Carlo rewards (0 = off), got {self.rollouts!r}.")
        if self.reward == "maligan" and (self.rollouts or self.step_rewards or self.generator_update == "gumbel"):
            raise ValueError("reward='maligan' normalises the sequence rewards of a batch of samples (MaliGAN): it is a REINFORCE reward "
                             "per sequence; drop rollouts/step_rewards (or use reward='log_ratio' for per-token rewards).")
        if self.rollouts and self.step_rewards:
            raise ValueError("rollouts (Monte-Carlo) and step_rewards (discriminator on prefixes) are two ways to get per-token rewards: pick one.")
        if self.generator_update == "gumbel" and (self.rollouts or self.step_rewards):
            raise ValueError("rollouts/step_rewards are REINFORCE options; generator_update='gumbel' backpropagates through D instead.")
        if self.baseline == "leave_one_out" and self.num_samples < 2:
            raise ValueError("baseline='leave_one_out' needs num_samples >= 2 (the other samples of a source are the baseline).")
        if not 0.0 <= self.gamma <= 1.0:
            raise ValueError(f"gamma must be in [0, 1], got {self.gamma}.")
        target = self.discriminator_pretrain_target_accuracy
        if target is not None and (not 0.5 < target < 1.0 or self.discriminator_pretrain_steps < 1):
            raise ValueError(f"discriminator_pretrain_target_accuracy must be in (0.5, 1) with discriminator_pretrain_steps >= 1 as the most "
                             f"steps it may take; got {target} and {self.discriminator_pretrain_steps}.")
        if self.discriminator_steps < 1:
            raise ValueError(f"discriminator_steps must be >= 1, got {self.discriminator_steps}.")
        if self.discriminator_steps > 1 and self.gradient_accumulation_steps > 1:
            raise ValueError("discriminator_steps > 1 with gradient_accumulation_steps > 1 is not supported: the discriminator's update "
                             "accumulates with the generator's. Use one of the two.")
        self.adversarial_weight = str(as_schedule(self.adversarial_weight, name="adversarial_weight", low=0.0))
        self.mle_weight = str(as_schedule(self.mle_weight, name="mle_weight", low=0.0))


class AdversarialTrainer(DiscriminatorRewardsMixin, BaseTrainer):
    """GAN training of a seq2seq generator against a discriminator (see the module docstring).

    Args:
        model: the generator, an `AutoModelForSeq2SeqLM` (or a `PeftModel` around one).
        discriminator (*optional*): a :class:`~hf_seqgan.discriminators.SequenceDiscriminator`, or an
            `AutoModelForSequenceClassification` with ``discriminator_processing_class`` its
            tokenizer. None: a small classifier built from the generator's vocabulary.
        args (`AdversarialConfig`).
        discriminator_processing_class (*optional*): the tokenizer of a raw classifier.
        peft_config, discriminator_peft_config (*optional*): LoRA (or other) configs for the
            generator and the discriminator's classifier.
        reward_funcs (*optional*): callables with TRL's signature ``fn(prompts, completions,
            completion_ids=..., references=..., **kwargs) -> list[float | None]``, callables
            ``fn(sources, outputs, references) -> scores``, or `evaluate` metrics (scored against
            the references), added to D's reward with ``reward_weights``.
        reward_metric_keys (*optional*): for each metric in ``reward_funcs``, the result used.
        Other arguments: as in `Seq2SeqTrainer`, in its order (``model, args, data_collator,
        train_dataset, eval_dataset, processing_class``); the rest are keyword-only.
    """

    cli_name = "adversarial"
    config_class = AdversarialConfig
    summary = "SeqGAN-style training (Yu et al. 2017): REINFORCE or Gumbel-softmax updates against a discriminator."
    supervised = True

    @classmethod
    def describe(cls, args):
        from ..cards import Method

        if getattr(args, "generator_update", "reinforce") == "gumbel":
            return Method("adversarial training (Gumbel-softmax)", "gan",
                          "The generator is trained against a discriminator updated in the same loop, through straight-through "
                          "Gumbel-softmax samples fed to the discriminator's embeddings (RelGAN), next to an MLE term.",
                          ["nie2019relgan", "jang2017categorical"])
        papers, parts = [], []
        if getattr(args, "use_discriminator", True):
            papers.append("yu2017seqgan")
            parts.append("policy gradient (REINFORCE) on sampled outputs rewarded by a discriminator trained in the same loop (SeqGAN)")
        else:
            parts.append("policy gradient (REINFORCE) on sampled outputs rewarded by metric functions alone")
        if getattr(args, "rollouts", 0):
            parts.append(f"per-token rewards from {args.rollouts} Monte-Carlo rollouts per prefix")
        if getattr(args, "step_rewards", False):
            papers.append("li2017adversarial")
            parts.append("per-token rewards from the discriminator scoring every prefix")
        baseline = getattr(args, "baseline", "moving_average")
        if baseline == "self_critical" or not getattr(args, "use_discriminator", True):
            papers.append("rennie2017self")
        parts.append(f"baseline: {baseline.replace('_', ' ')} (self-critical = the greedy output's reward, SCST)" if baseline == "self_critical"
                     else f"baseline: {baseline.replace('_', ' ')}")
        return Method("adversarial training (REINFORCE)", "gan", "The generator is trained with " + "; ".join(parts) + ", next to an MLE term.", papers)

    def __init__(
        self,
        model,
        args: Optional[AdversarialConfig] = None,
        data_collator: Optional[Callable] = None,
        train_dataset=None,
        eval_dataset=None,
        processing_class=None,
        *,
        compute_metrics: Optional[Callable] = None,
        callbacks: Optional[list] = None,
        optimizers: tuple = (None, None),
        preprocess_logits_for_metrics: Optional[Callable] = None,
        discriminator=None,
        peft_config=None,
        discriminator_peft_config=None,
        discriminator_processing_class=None,
        reward_funcs: Optional[Sequence] = None,
        reward_metric_keys: Optional[Sequence[Optional[str]]] = None,
    ):
        model, args = self._generator_and_args(model, args, AdversarialConfig, "adversarial", peft_config)
        if args.disable_dropout:
            disable_dropout(model)
        if processing_class is None:
            raise ValueError("AdversarialTrainer needs processing_class (the generator's tokenizer): rewards and the default discriminator read texts and ids through it.")
        reward_funcs = list(reward_funcs or [])
        if not args.use_discriminator and not reward_funcs:
            raise ValueError("use_discriminator=False leaves no reward: pass reward_funcs (e.g. an evaluate ROUGE metric).")
        if args.reward_weights is not None and len(args.reward_weights) != len(reward_funcs):
            raise ValueError(f"reward_weights has {len(args.reward_weights)} weights for {len(reward_funcs)} reward functions.")
        if data_collator is None:
            data_collator = DataCollatorForSeq2Seq(processing_class)
        super().__init__(
            model=model, args=args, data_collator=data_collator, train_dataset=train_dataset, eval_dataset=eval_dataset,
            processing_class=processing_class, compute_metrics=compute_metrics, callbacks=callbacks, optimizers=optimizers,
            preprocess_logits_for_metrics=preprocess_logits_for_metrics,
        )
        # the loss is scaled here (per-row means over the micro-batch / accumulation steps, the MLE
        # term by the label count of the accumulated batch), which needs the Trainer to count it
        self.model_accepts_loss_kwargs = True
        self.loss_is_scaled_for_ga = True
        self.engine = RolloutEngine(self.model, processing_class)
        self.tau = as_schedule(args.tau)
        self.adversarial_weight = as_schedule(args.adversarial_weight)
        self.mle_weight = as_schedule(args.mle_weight)
        self.baseline = MovingAverageBaseline(args.baseline_decay)
        self.discriminator: Optional[SequenceDiscriminator] = None
        if args.use_discriminator:
            self.discriminator = self._make_discriminator(discriminator, discriminator_processing_class, discriminator_peft_config)
        elif discriminator is not None:
            raise ValueError("A discriminator was given with use_discriminator=False: drop one of the two.")
        keys = list(reward_metric_keys or [None] * len(reward_funcs))
        self.reward_funcs = [TextReward(fn, processing_class, key=key) for fn, key in zip(reward_funcs, keys)]
        self.reward_weights = list(args.reward_weights or [1.0] * len(reward_funcs))
        self._heldout: collections.deque = collections.deque(maxlen=10)  # the discriminator's recent held-out accuracies
        self._pretrained = False  # pre-training ended on discriminator_pretrain_target_accuracy
        self._checked_discriminator = False
        self._synced_reference_at = {}  # id(discriminator) -> the step its reference was synced
        self.ref_model = frozen_reference(self.model) if args.kl_coef > 0 else None

    # ------------------------------------------------------------------ set-up
    def _make_discriminator(self, discriminator, tokenizer, peft_config) -> SequenceDiscriminator:
        args = self.args
        if discriminator is None:
            discriminator = default_discriminator(self.model, self.processing_class, args, conditional=args.conditional_discriminator)
        elif not isinstance(discriminator, SequenceDiscriminator):
            if tokenizer is None:
                raise ValueError("A raw classifier as discriminator needs discriminator_processing_class (its tokenizer); "
                                 "or pass a hf_seqgan SequenceDiscriminator.")
            discriminator = SequenceDiscriminator(discriminator, tokenizer, conditional=args.conditional_discriminator)
        if peft_config is not None:
            discriminator.model = apply_peft(discriminator.model, peft_config, what="discriminator")
        shares = discriminator.shares_vocabulary(self.processing_class)
        if args.generator_update == "gumbel":
            if not shares:
                raise ValueError(
                    "generator_update='gumbel' feeds the generator's soft one-hots into the discriminator's embeddings, so the "
                    "discriminator must share the generator's vocabulary (same tokenizer vocabulary). Use the default "
                    "discriminator, one built on the generator's tokenizer, or generator_update='reinforce'."
                )
            discriminator.check_soft_inputs()
        self.add_auxiliary(
            "discriminator", discriminator, learning_rate=args.discriminator_learning_rate,
            max_grad_norm=args.discriminator_max_grad_norm or None, optimizer=args.discriminator_optimizer,
        )
        self._d_reward = DiscriminatorReward(discriminator, kind=args.reward, generator_tokenizer=None if shares else self.processing_class)
        return discriminator

    def _extra_state(self) -> dict:
        state = {"baseline": self.baseline.state_dict(), "discriminator_heldout": list(self._heldout), "pretrained": self._pretrained,
                 "checked_discriminator": self._checked_discriminator}
        if self.ref_model is not None:
            state["ref_model"] = self.ref_model.state_dict()
        return state

    def _load_extra_state(self, state: dict) -> None:
        self.baseline.load_state_dict(state["baseline"])
        self._heldout.extend(state.get("discriminator_heldout", []))
        self._pretrained = state.get("pretrained", False)
        self._checked_discriminator = state.get("checked_discriminator", False)
        if self.ref_model is not None and "ref_model" in state:
            self.ref_model.load_state_dict(state["ref_model"])

    # ------------------------------------------------------------------ loss
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if not model.training:
            return super().compute_loss(model, inputs, return_outputs=return_outputs)
        if return_outputs:
            raise ValueError("AdversarialTrainer computes no model outputs during training (return_outputs=True).")
        return self._adversarial_loss(model, inputs, num_items_in_batch)

    def _adversarial_loss(self, model, inputs, num_items_in_batch):
        args, step = self.args, self.state.global_step
        labels = inputs.get("labels")
        needs_labels = self.discriminator is not None or float(self.mle_weight(step)) > 0 or any(f.needs_references for f in self.reward_funcs)
        if labels is None and (needs_labels or args.max_new_tokens is None):
            raise ValueError("The batch has no `labels`: the discriminator's real examples, the MLE term, metric rewards and the default "
                             "sample length need the gold targets. Tokenize them into a `labels` column.")
        src = {"input_ids": inputs["input_ids"], "attention_mask": inputs["attention_mask"]}
        accumulation = self.accumulation_steps
        max_new = args.max_new_tokens or labels.shape[1]
        sampling = dict(do_sample=args.do_sample, temperature=args.sampling_temperature, top_k=args.top_k or None, top_p=args.top_p)
        pretraining = self.discriminator is not None and step < args.discriminator_pretrain_steps and not self._pretrained
        if self.discriminator is not None:
            sync_discriminator_reference(self, self.discriminator)  # its rewards and update are against this step's generator
        if self.discriminator is not None and not pretraining and not self._checked_discriminator:
            self._check_discriminator()
        # the encoder runs once per source: in the graph when the REINFORCE forward needs it, detached for the decodes
        with torch.set_grad_enabled(args.generator_update == "reinforce" and not pretraining and torch.is_grad_enabled()):
            source_states = self.engine.encode(**src)
        encoded = Encoded(source_states.last_hidden_state.detach(), source_states.attention_mask)
        total = torch.zeros((), device=src["input_ids"].device, requires_grad=True)
        if args.generator_update == "gumbel":
            fakes, adv_loss, logits, seq_mask = self._gumbel_loss(src, labels, max_new)
        else:
            fakes = self.engine.sample(encoded=encoded, max_new_tokens=max_new, min_new_tokens=args.min_new_tokens, num_samples=args.num_samples, **sampling)
            adv_loss, logits, seq_mask = None, None, fakes.attention_mask
        if not pretraining:
            mle_w, adv_w = float(self.mle_weight(step)), float(self.adversarial_weight(step))
            if args.generator_update == "reinforce":
                adv_loss, logits, mle_logits = self._reinforce_loss(model, src, encoded, source_states, fakes, labels, sampling, mle_w > 0, max_new)
            else:
                with self._unsynced(model, always=True):
                    mle_logits = model(**src, labels=labels).logits if mle_w > 0 else None
            total = total + adv_w * adv_loss / accumulation
            if mle_logits is not None:
                count = num_items_in_batch if num_items_in_batch is not None else labels.ne(-100).sum() * accumulation
                if num_items_in_batch is not None and args.average_tokens_across_devices and args.world_size > 1:
                    # the count is over every process, and the processes' gradients are averaged
                    count = count / self.accelerator.num_processes
                mle = F.cross_entropy(mle_logits.float().reshape(-1, mle_logits.shape[-1]), labels.reshape(-1), ignore_index=-100,
                                      reduction="sum", label_smoothing=args.label_smoothing_factor)
                total = total + mle_w * mle / count
                self.record(mle_loss=mle.detach() / labels.ne(-100).sum().clamp_min(1))
            total = total + self._regularizers(src, fakes, logits, seq_mask, accumulation)
            self.record(adversarial_weight=adv_w, mle_weight=mle_w)
        if self.discriminator is not None:
            self._discriminator_update(src, labels, fakes.sequences.detach(), seq_mask, fakes.source_index)
        self.record(output_length=fakes.attention_mask.sum(-1).float().mean())
        return total

    def _reinforce_loss(self, model, src, encoded: Encoded, source_states: Encoded, fakes, labels, sampling, with_mle: bool, max_new: int):
        """REINFORCE: one decoder forward of the (possibly DDP-wrapped) generator over the sampled rows,
        plus the gold rows when the MLE term is on, on the step's one encoder pass (``source_states``,
        in the graph)."""
        rewards, valid = self._rewards(src, encoded, fakes, labels, sampling)  # (R,) or (R, T); (R,)
        baseline, valid = self._baseline(src, encoded, fakes, labels, rewards, valid)
        advantage = (rewards - baseline).detach()
        advantage = advantage * (valid if advantage.dim() == 1 else valid[:, None])  # rows with a non-finite reward are left out
        rows, steps = fakes.sequences.shape
        dec = [fakes.decoder_input_ids]
        if with_mle:
            gold_dec = unwrap_model(model).prepare_decoder_input_ids_from_labels(labels=labels)
            width = max(steps, gold_dec.shape[1])
            dec = [F.pad(d, (0, width - d.shape[1]), value=self.engine.pad_token_id) for d in (dec[0], gold_dec)]
        index = torch.cat([fakes.source_index, torch.arange(labels.shape[0], device=labels.device)]) if with_mle else fakes.source_index
        states = BaseModelOutput(last_hidden_state=source_states.last_hidden_state.index_select(0, index))  # (R [+ B], S, H)
        out = model(encoder_outputs=states, attention_mask=src["attention_mask"][index], decoder_input_ids=torch.cat(dec), use_cache=False)
        logits = out.logits[:rows, :steps]  # (R, T, V)
        # the log-probs of the distribution the samples were drawn from (temperature, top-k/top-p, processors)
        logp = sampled_logprobs(self.engine, logits, fakes.sequences, fakes.attention_mask, max_new_tokens=max_new,
                                min_new_tokens=self.args.min_new_tokens, **sampling)  # (R, T)
        loss, _ = policy_loss(logp, advantage, fakes.attention_mask, loss_type="reinforce")
        self.record(reward=rewards[valid].float().mean() if valid.any() else None, pg_loss=loss.detach(),
                    baseline=torch.as_tensor(baseline)[valid].float().mean() if valid.any() else None)
        mle_logits = out.logits[rows:, : labels.shape[1]] if with_mle else None
        return loss, logits, mle_logits

    def _gumbel_loss(self, src, labels, max_new):
        """RelGAN: straight-through Gumbel-softmax samples into D's input embeddings."""
        args, step = self.args, self.state.global_step
        tau = float(self.tau(step))
        soft = self.engine.differentiable(**src, max_new_tokens=max_new, min_new_tokens=args.min_new_tokens, tau=tau, hard=True,
                                          num_samples=args.num_samples, noise=args.do_sample)
        disc = self.discriminator
        disc.eval()
        fake_logp = disc.log_probs(disc.logits_from_soft(soft.soft_tokens, soft.attention_mask, src["input_ids"], soft.source_index, frozen=True))
        real_label = self._d_reward.real_label
        if args.gumbel_loss == "relativistic":
            with torch.no_grad():
                real_logp = disc.log_probs(disc.logits_from_ids(labels, src["input_ids"], None))
            fake_odds = fake_logp[:, real_label] - fake_logp[:, 1 - real_label]
            real_odds = (real_logp[:, real_label] - real_logp[:, 1 - real_label])[soft.source_index]
            loss = -F.logsigmoid(fake_odds - real_odds).mean()
        else:
            loss = -fake_logp[:, real_label].mean()
        self.record(tau=tau, gumbel_loss=loss.detach(), reward=fake_logp[:, real_label].exp().mean())
        return soft, loss, soft.logits, soft.attention_mask

    def _regularizers(self, src, fakes, logits, mask, accumulation):
        """KL to the starting model (k3 estimator) and the entropy bonus, per token, averaged per row."""
        args = self.args
        extra = torch.zeros((), device=mask.device)
        if logits is None or (args.kl_coef == 0 and args.entropy_coef == 0):
            return extra
        logp_all = torch.log_softmax(logits.float(), -1)  # (R, T, V)
        tokens = mask.sum().clamp_min(1)
        if args.entropy_coef:
            entropy = -(logp_all.exp() * logp_all).sum(-1)  # (R, T)
            mean_entropy = (entropy * mask).sum() / tokens
            extra = extra - args.entropy_coef * mean_entropy / accumulation
            self.record(entropy=mean_entropy.detach())
        if args.kl_coef:
            ref_logp = self._reference_logprobs(src, fakes)
            logp = logp_all.gather(-1, fakes.sequences[..., None]).squeeze(-1)
            delta = ref_logp - logp
            kl = ((delta.exp() - delta - 1) * mask).sum() / tokens
            extra = extra + args.kl_coef * kl / accumulation
            self.record(kl=kl.detach())
        return extra

    @torch.no_grad()
    def _reference_logprobs(self, src, fakes):
        index = fakes.source_index
        kwargs = dict(input_ids=src["input_ids"][index], attention_mask=src["attention_mask"][index], decoder_input_ids=fakes.decoder_input_ids)
        with reference_of(self.ref_model, self.model) as reference:
            logits = reference(**kwargs).logits
        return token_logprobs(logits, fakes.sequences, fakes.attention_mask)

    def _discriminator_update(self, src, labels, fake_sequences, fake_mask, source_index) -> None:
        """Update D on real ``(x, y)`` against fake ``(x, ŷ)`` through its prepared (DDP) copy; track
        its held-out accuracy (pre-training may end on a target accuracy)."""
        args = self.args
        heldout = discriminator_step(self, self._d_reward, labels.clamp_min(0), labels.ne(-100), fake_sequences, fake_mask,
                                     source_ids=src["input_ids"], fake_source_index=source_index,
                                     label_smoothing=args.discriminator_label_smoothing, steps=args.discriminator_steps)
        self._heldout.append(self.process_mean(torch.tensor([heldout], device=labels.device)))
        target = args.discriminator_pretrain_target_accuracy
        if (target is not None and not self._pretrained and len(self._heldout) == self._heldout.maxlen
                and sum(self._heldout) / len(self._heldout) >= target):
            self._pretrained = True
            logger.info("The discriminator reached held-out accuracy %.3f >= %.3f at step %d: its pre-training ends.",
                        sum(self._heldout) / len(self._heldout), target, self.state.global_step)

    def _check_discriminator(self) -> None:
        """Once, when the generator starts learning from the discriminator (after its pre-training,
        or after its first updates without one): warn when its held-out accuracy is near chance."""
        if self.args.discriminator_pretrain_steps == 0 and len(self._heldout) < self._heldout.maxlen:
            return
        self._checked_discriminator = True
        accuracy = sum(self._heldout) / len(self._heldout) if self._heldout else None
        if accuracy is not None and accuracy < 0.5 + CHANCE_MARGIN:
            logger.warning(
                "The discriminator cannot tell real from generated: its held-out accuracy is %.3f (chance is 0.5), so its rewards carry no "
                "signal and adversarial training is MLE with noise. Give it a representation that can see what the generator gets wrong "
                "(Seq2SeqDiscriminator, built from the generator), more pre-training (discriminator_pretrain_steps, or "
                "discriminator_pretrain_target_accuracy), or a higher discriminator_learning_rate.", accuracy)

    # ------------------------------------------------------------------ several processes
    def training_step(self, model, inputs, num_items_in_batch=None):
        loss = super().training_step(model, inputs, num_items_in_batch)
        if self.args.generator_update == "gumbel" and self.accelerator.num_processes > 1 and self.accelerator.sync_gradients:
            # the Gumbel decode runs the unwrapped generator step by step (and its MLE forward runs under no_sync)
            self._all_reduce_gradients(unwrap_model(self.model))
        return loss
