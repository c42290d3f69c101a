"""ProfessorForcingTrainer: make a seq2seq decoder behave the same free-running as teacher-forced.

Professor forcing (Lamb et al. 2016, https://arxiv.org/abs/1610.09038) runs the decoder twice on
each source: teacher-forced (reading the gold prefix) and free-running (reading its own outputs).
A discriminator D (:class:`~hf_seqgan.hidden_discriminator.HiddenStateDiscriminator`) sees the two
sequences of decoder hidden states and learns to tell them apart (teacher-forced = real,
free-running = fake, binary cross-entropy). The generator is trained with

    NLL(teacher-forced) + w(step) * [ -log D(free-running)  (+ -log(1 - D(teacher-forced))) ]

the first adversarial term making free-running behaviour look teacher-forced, the optional second
one (the paper's) pulling teacher-forced behaviour toward free-running; ``w`` follows a `Schedule`
(e.g. 0 for a warm-up while D learns).

The free-running branch is the rollout engine's differentiable decode (straight-through
Gumbel-softmax with noise, or greedy), with the hidden states kept in the graph. It runs as many
steps as each row's gold target (EOS blocked before, so both branches have the same length) or
stops at its own EOS, and can be truncated to its first ``max_free_running_steps`` positions to
bound memory: the free-running graph is the cost (see docs/professor_forcing.md).

Order within a step, which keeps gradient accumulation exact: teacher-forced pass -> free-running
decode -> the generator's adversarial loss from a snapshot of the current D -> D's update on the
detached states (:meth:`BaseTrainer.auxiliary_step`, accumulated like the generator's). With
``adversarial_weight`` 0 the generator's update is exactly `Seq2SeqTrainer`'s (the free-running
decode then runs without a graph, for D alone). Evaluation is the plain teacher-forced loss.

Examples:

```python
>>> from datasets import Dataset
>>> from hf_seqgan.tiny import train_tokenizer, build_tiny_model
>>> from hf_seqgan.trainers.professor_forcing import ProfessorForcingConfig, ProfessorForcingTrainer
>>> pairs = [("the cat sat on the mat", "cat sat"), ("a dog ran far away", "dog ran")] * 8
>>> tok = train_tokenizer([a for a, _ in pairs] + [b for _, b in pairs], vocab_size=300)
>>> data = Dataset.from_dict({"input_ids": [tok(a).input_ids for a, _ in pairs], "labels": [tok(b).input_ids for _, b in pairs]})
>>> args = ProfessorForcingConfig("out", adversarial_weight="piecewise:0=0,2=0,3=1", max_steps=4, logging_steps=2,
...                               per_device_train_batch_size=4, use_cpu=True, save_strategy="no", disable_tqdm=True)
>>> trainer = ProfessorForcingTrainer(build_tiny_model("bart", tok), args, train_dataset=data, processing_class=tok)
>>> _ = trainer.train()  # doctest: +ELLIPSIS
{'loss': ..., 'adversarial_loss': ..., 'd_loss': ..., 'd_acc_teacher_forced': ..., 'd_acc_free_running': ..., 'nll_loss': ..., 'adversarial_weight': '0', ...}
{'loss': ..., 'adversarial_weight': '0.5', ...}
{'train_runtime': ...}

```
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from transformers import DataCollatorForSeq2Seq
from transformers.modeling_outputs import BaseModelOutput

from ..discriminators import discriminator_loss
from ..hidden_discriminator import ENCODERS, HiddenStateDiscriminator
from ..rollout import Encoded, RolloutEngine, gradient_checkpointing_on
from ..schedules import as_schedule, schedule_field
from ..sampling import frozen_call, frozen_parameters, unwrap_model
from ._base import AUXILIARY_OPTIMIZERS, BaseConfig, BaseTrainer
from .losses import token_cross_entropy, token_loss_func

__all__ = ["ProfessorForcingConfig", "ProfessorForcingTrainer"]

FREE_RUNNING = ("sample", "greedy")
REAL = 1  # the discriminator's class of teacher-forced behaviour


@dataclasses.dataclass
class ProfessorForcingConfig(BaseConfig):
    r"""Configuration of [`ProfessorForcingTrainer`]: `Seq2SeqTrainingArguments` plus the fields below.

    Parameters:
        > Generator loss

        adversarial_weight (`str`, defaults to `"1"`): weight ``w`` of the adversarial terms, a
            schedule over optimizer steps (e.g. ``piecewise:0=0,500=0,1000=1`` for a warm-up at 0).
        teacher_forced_term (`bool`, defaults to `False`): add the paper's second term,
            ``-log(1 - D(teacher-forced))``; needs ``detach_teacher_forced=False``.
        detach_teacher_forced (`bool`, defaults to `True`): stop the adversarial gradient at the
            teacher-forced branch: the free-running decode reads a detached encoder output, so the
            encoder and the teacher-forced pass learn from the NLL alone and the adversarial loss
            moves the decoder through the free-running branch only.

        > Free-running branch

        free_running (`str`, defaults to `"sample"`): `"sample"` (straight-through Gumbel-softmax
            tokens) or `"greedy"` (straight-through argmax).
        tau (`str`, defaults to `"1"`): Gumbel-softmax temperature of the straight-through
            gradient, a schedule, > 0.
        match_gold_length (`bool`, defaults to `True`): block EOS before each row's gold length so
            both branches have the same length; `False`: a row stops at its own EOS.
        max_free_running_steps (`int`, *optional*): truncated free running: decode at most this
            many steps, and compare both branches on their first this-many positions. (D never sees
            position 0, whose state reads only the decoder start token in both branches.)

        > Discriminator

        discriminator_encoder, discriminator_hidden_size, discriminator_num_layers,
        discriminator_dropout, discriminator_input_layers: the default
        `HiddenStateDiscriminator` (GRU or transformer; which ``decoder_hidden_states`` it reads).
        discriminator_learning_rate, discriminator_optimizer, discriminator_max_grad_norm,
        discriminator_steps: its own optimizer and its updates per generator step.
    """

    adversarial_weight: str = schedule_field("1", "Weight of the adversarial terms (>= 0), over optimizer steps; e.g. 'piecewise:0=0,500=0,1000=1' for a warm-up.")
    teacher_forced_term: bool = dataclasses.field(default=False, metadata={"help": "Add the paper's second term -log(1 - D(teacher-forced)) (needs detach_teacher_forced=False)."})
    detach_teacher_forced: bool = dataclasses.field(default=True, metadata={"help": "Stop the adversarial gradient at the teacher-forced branch (encoder output and teacher-forced states)."})
    free_running: str = dataclasses.field(default="sample", metadata={"help": f"Free-running tokens: one of {FREE_RUNNING} (straight-through in both).", "choices": list(FREE_RUNNING)})
    tau: str = schedule_field("1", "Gumbel-softmax temperature of the free-running branch's straight-through gradient (> 0), over optimizer steps.")
    match_gold_length: bool = dataclasses.field(default=True, metadata={"help": "Block EOS before each row's gold length so both branches have the same length; False: stop at the model's EOS."})
    max_free_running_steps: Optional[int] = dataclasses.field(default=None, metadata={"help": "Truncated free running: at most this many steps, both branches compared on these first positions (None: the whole target)."})
    discriminator_encoder: str = dataclasses.field(default="gru", metadata={"help": f"The default discriminator's encoder: one of {ENCODERS}.", "choices": list(ENCODERS)})
    discriminator_hidden_size: int = dataclasses.field(default=64, metadata={"help": "Hidden size of the default discriminator."})
    discriminator_num_layers: int = dataclasses.field(default=1, metadata={"help": "Layers of the default discriminator's encoder."})
    discriminator_dropout: float = dataclasses.field(default=0.0, metadata={"help": "Dropout of the default discriminator (0 keeps gradient accumulation exact)."})
    discriminator_input_layers: list[int] = dataclasses.field(default_factory=lambda: [-1], metadata={"help": "Entries of the generator's decoder_hidden_states the discriminator reads (0 = embeddings, -1 = last layer)."})
    discriminator_learning_rate: float = dataclasses.field(default=1e-3, metadata={"help": "Learning rate of the discriminator's own optimizer."})
    discriminator_optimizer: str = dataclasses.field(default="adamw", metadata={"help": f"The discriminator's optimizer: one of {sorted(AUXILIARY_OPTIMIZERS)}."})
    discriminator_max_grad_norm: float = dataclasses.field(default=1.0, metadata={"help": "Gradient clipping of the discriminator (0 = off)."})
    discriminator_steps: int = dataclasses.field(default=1, metadata={"help": "Discriminator updates per generator step."})

    def __post_init__(self):
        super().__post_init__()
        as_schedule(self.adversarial_weight, name="adversarial_weight", low=0.0)
        tau = as_schedule(self.tau, name="tau")
        if tau.bounds()[0] <= 0:
            raise ValueError(f"tau={str(tau)!r} reaches {tau.bounds()[0]:g}; it must stay > 0 (e.g. '1' or 'linear:1,0.5,1000').")
        if self.free_running not in FREE_RUNNING:
            raise ValueError(f"free_running={self.free_running!r} is not one of {list(FREE_RUNNING)}.")
        if self.discriminator_encoder not in ENCODERS:
            raise ValueError(f"discriminator_encoder={self.discriminator_encoder!r} is not one of {list(ENCODERS)}.")
        if self.discriminator_optimizer not in AUXILIARY_OPTIMIZERS:
            raise ValueError(f"discriminator_optimizer={self.discriminator_optimizer!r} is not one of {sorted(AUXILIARY_OPTIMIZERS)}.")
        if self.teacher_forced_term and self.detach_teacher_forced:
            raise ValueError("teacher_forced_term=True has no effect while detach_teacher_forced=True (its gradient is stopped): "
                             "set detach_teacher_forced=False, or leave teacher_forced_term off.")
        positive = dict(max_free_running_steps=self.max_free_running_steps, discriminator_steps=self.discriminator_steps,
                        discriminator_hidden_size=self.discriminator_hidden_size, discriminator_num_layers=self.discriminator_num_layers)
        for name, value in positive.items():
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be a positive integer, got {value!r}.")
        if not self.discriminator_learning_rate > 0:
            raise ValueError(f"discriminator_learning_rate must be > 0, got {self.discriminator_learning_rate}.")
        if not 0.0 <= self.discriminator_dropout < 1.0:
            raise ValueError(f"discriminator_dropout must be in [0, 1), got {self.discriminator_dropout}.")
        if not self.discriminator_input_layers:
            raise ValueError("discriminator_input_layers must name at least one decoder layer (e.g. [-1], the last).")
        if self.discriminator_steps > 1 and self.gradient_accumulation_steps > 1:
            raise ValueError("discriminator_steps > 1 with gradient_accumulation_steps > 1 is not supported: the discriminator's update "
                             "accumulates with the generator's. Use one of the two.")
        if self.gradient_checkpointing:
            raise ValueError("Professor forcing decodes the free-running branch step by step with the KV cache, which gradient "
                             "checkpointing drops in training mode: set gradient_checkpointing=False (bound the memory with "
                             "max_free_running_steps instead).")


def _prefix_mask(mask: torch.Tensor, width: int) -> torch.Tensor:
    """The first ``width`` columns of a right-padded mask, as a prefix mask (a row ends at its first 0)."""
    mask = mask[:, :width].long()
    return mask.cumprod(dim=1)


class ProfessorForcingTrainer(BaseTrainer):
    """Professor forcing for any seq2seq model (see the module docstring).

    Args:
        model: the generator, an `AutoModelForSeq2SeqLM` (or a `PeftModel` around one).
        args (`ProfessorForcingConfig`, *optional*).
        train_dataset, eval_dataset, processing_class, data_collator, compute_metrics, callbacks,
        optimizers, preprocess_logits_for_metrics: as in `Seq2SeqTrainer` (batches need ``labels``).
        discriminator (`HiddenStateDiscriminator`, *optional*): defaults to one built from the
            config's ``discriminator_*`` fields for the generator's hidden size.
        peft_config (`peft.PeftConfig`, *optional*): wrap the generator with `get_peft_model`.

    Logged: ``nll_loss``, ``adversarial_loss`` (``-log D(free-running)``, the term ``w``
    multiplies), ``teacher_forced_loss`` (with ``teacher_forced_term``), ``d_loss``,
    ``d_acc_teacher_forced``, ``d_acc_free_running``, ``adversarial_weight``, ``tau`` and
    ``free_running_length`` (mean compared positions per row).
    """

    cli_name = "professor_forcing"
    config_class = ProfessorForcingConfig
    summary = "Professor forcing (Lamb et al. 2016): a discriminator on decoder states aligns free-running with teacher forcing."
    supervised = True
    roles = {"discriminator": "it tells the decoder's free-running hidden states from its teacher-forced ones."}

    @classmethod
    def describe(cls, args):
        from ..cards import Method

        return Method("professor forcing", "professor-forcing",
                      "Professor forcing trains the decoder so that its hidden states when it runs free cannot be told apart by a "
                      "discriminator from those under teacher forcing, next to the usual cross-entropy.", ["lamb2016professor"])

    def __init__(
        self,
        model,
        args: Optional[ProfessorForcingConfig] = None,
        data_collator: Optional[Callable] = None,
        train_dataset=None,
        eval_dataset=None,
        processing_class=None,
        *,
        discriminator: Optional[HiddenStateDiscriminator] = None,
        peft_config=None,
        compute_metrics: Optional[Callable] = None,
        callbacks: Optional[list] = None,
        optimizers: tuple = (None, None),
        preprocess_logits_for_metrics: Optional[Callable] = None,
    ):
        model, args = self._generator_and_args(model, args, ProfessorForcingConfig, "professor-forcing", peft_config)
        if gradient_checkpointing_on(unwrap_model(model)):
            raise ValueError("The generator has gradient checkpointing enabled, which drops the KV cache the free-running decode "
                             "needs in training mode: call model.gradient_checkpointing_disable() first.")
        if args.world_size > 1:
            raise NotImplementedError("ProfessorForcingTrainer decodes step by step through the unwrapped generator, which a "
                                      "multi-process (DDP) run cannot synchronise; train on one process.")
        if data_collator is None and processing_class is not None and hasattr(processing_class, "pad"):
            data_collator = DataCollatorForSeq2Seq(processing_class)
        super().__init__(
            model=model, args=args, data_collator=data_collator, train_dataset=train_dataset, eval_dataset=eval_dataset,
            processing_class=processing_class, compute_metrics=compute_metrics, callbacks=callbacks, optimizers=optimizers,
            preprocess_logits_for_metrics=preprocess_logits_for_metrics,
            # the Trainer then counts num_items_in_batch over the accumulated batch: the NLL divides by it (exact accumulation)
            compute_loss_func=token_loss_func(args.label_smoothing_factor),
        )
        self.engine = RolloutEngine(self.model, use_generation_config=False)
        self.adversarial_weight = as_schedule(args.adversarial_weight, name="adversarial_weight", low=0.0)
        self.tau = as_schedule(args.tau, name="tau")
        self.discriminator = self._make_discriminator(discriminator)
        # Gumbel noise of the free-running branch: its own generator, checkpointed, so the global RNG
        # (data order, dropout) is the same as in Seq2SeqTrainer's run
        self._noise = torch.Generator(device=self.args.device).manual_seed(args.seed)

    def _make_discriminator(self, discriminator) -> HiddenStateDiscriminator:
        args, config = self.args, self.engine.base.config
        if discriminator is None:
            discriminator = HiddenStateDiscriminator.for_model(
                self.engine.base, layers=args.discriminator_input_layers, hidden_size=args.discriminator_hidden_size,
                num_layers=args.discriminator_num_layers, encoder=args.discriminator_encoder, dropout=args.discriminator_dropout,
                seed=args.seed,
            )
        elif not isinstance(discriminator, HiddenStateDiscriminator):
            raise TypeError(f"discriminator must be a HiddenStateDiscriminator (it reads decoder hidden states), got {type(discriminator).__name__}.")
        size = getattr(config, "d_model", None) or getattr(config, "hidden_size", None)
        if size is not None and discriminator.state_size != size:
            raise ValueError(f"The discriminator reads states of size {discriminator.state_size} but the generator's are {size}: "
                             "build it with HiddenStateDiscriminator.for_model(generator).")
        depth = getattr(config, "decoder_layers", None) or getattr(config, "num_decoder_layers", None) or getattr(config, "num_layers", None)
        if depth is not None:
            bad = [i for i in discriminator.layers if not -(depth + 1) <= i <= depth]
            if bad:
                raise ValueError(f"discriminator layers {bad} are out of range: the generator's decoder_hidden_states has {depth + 1} "
                                 f"entries (0 = embeddings, {depth} or -1 = the last layer).")
        self.add_auxiliary("discriminator", discriminator, learning_rate=args.discriminator_learning_rate,
                           max_grad_norm=args.discriminator_max_grad_norm or None, optimizer=args.discriminator_optimizer)
        return discriminator

    def _extra_state(self) -> dict:
        return {"noise": self._noise.get_state()}

    def _load_extra_state(self, state: dict) -> None:
        if "noise" in state:
            self._noise.set_state(state["noise"].cpu())

    # ------------------------------------------------------------------ loss
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if inputs.get("labels") is not None and inputs.get("decoder_input_ids") is None and inputs.get("decoder_inputs_embeds") is None:
            # the loss function takes the labels out of the model call: the decoder inputs must be there
            inputs = {**inputs, "decoder_input_ids": self.engine.base.prepare_decoder_input_ids_from_labels(labels=inputs["labels"])}
        if not model.training:
            return super().compute_loss(model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch)
        if return_outputs:
            raise ValueError("ProfessorForcingTrainer computes no model outputs during training (return_outputs=True).")
        if inputs.get("labels") is None or inputs.get("input_ids") is None:
            raise ValueError("ProfessorForcingTrainer needs `input_ids` and `labels` (the gold targets) in every batch; tokenize the "
                             "targets into a `labels` column (DataCollatorForSeq2Seq pads them with -100).")
        if inputs.get("decoder_input_ids") is None:
            raise ValueError("The batch holds decoder_inputs_embeds: professor forcing compares the decoder on gold token ids with its "
                             "free-running self, so give `labels` (or decoder_input_ids) instead.")
        return self._professor_forcing_loss(model, inputs, num_items_in_batch)

    def _professor_forcing_loss(self, model, inputs, num_items_in_batch):
        args, step = self.args, self.state.global_step
        labels = inputs["labels"]  # (B, T)
        accumulation = self.accumulation_steps
        weight = float(self.adversarial_weight(step))
        layers = self.discriminator.layers

        # 1. teacher-forced pass: the NLL and the real hidden states
        gold = inputs["decoder_input_ids"]  # (B, T)
        if bool((gold[:, 0] != self.engine.decoder_start_token_id).any()):
            raise ValueError(f"The free-running branch starts from decoder_start_token_id={self.engine.decoder_start_token_id}, but the gold "
                             f"decoder inputs start with {sorted(set(gold[:, 0].tolist()))}; set model.generation_config.decoder_start_token_id "
                             "to the start token the labels are shifted with.")
        enc = self.engine.encode(inputs["input_ids"], inputs.get("attention_mask"))
        out = model(encoder_outputs=BaseModelOutput(last_hidden_state=enc.last_hidden_state), attention_mask=enc.attention_mask,
                    decoder_input_ids=gold, output_hidden_states=True, use_cache=False, return_dict=True)
        nll = token_cross_entropy(out.logits, labels, label_smoothing=args.label_smoothing_factor, num_items_in_batch=num_items_in_batch)
        width = labels.shape[1] if args.max_free_running_steps is None else min(labels.shape[1], args.max_free_running_steps)
        real_mask = _prefix_mask(labels.ne(-100), width)  # (B, W)
        real = torch.cat([out.decoder_hidden_states[i][:, :width] for i in layers], dim=-1)  # (B, W, L*H)

        # 2. free-running branch (in the graph only when the adversarial loss needs it)
        fake, fake_mask = self._free_running(enc, real_mask, width, layers, grad=weight > 0)
        # the state at position 0 reads only the decoder start, the same in both branches: D compares from position 1
        real, real_mask, fake, fake_mask = real[:, 1:], real_mask[:, 1:], fake[:, 1:], fake_mask[:, 1:]

        # 3. the generator's adversarial loss, from a snapshot of the current D (updated below, before the backward)
        total = nll
        d_model = self.auxiliary("discriminator").unwrapped
        if weight > 0:
            params = frozen_parameters(d_model)
            d_model.eval()
            fool = F.softplus(-frozen_call(d_model, fake, fake_mask, params=params)).mean()  # -log D(free-running)
            adversarial = fool
            if args.teacher_forced_term:
                adversarial = adversarial + F.softplus(frozen_call(d_model, real, real_mask, params=params)).mean()  # -log(1 - D(tf))
            total = total + weight * adversarial / accumulation

        # 4. D's update on the detached states (teacher-forced = real, free-running = fake)
        self._discriminator_update(real.detach(), real_mask, fake.detach(), fake_mask)
        per_batch = num_items_in_batch / labels.ne(-100).sum().clamp_min(1) if num_items_in_batch is not None else 1.0
        self.record(nll_loss=nll.detach() * per_batch, adversarial_weight=weight, tau=float(self.tau(step)) if args.free_running == "sample" else None,
                    free_running_length=fake_mask.sum(-1).float().mean())
        return total

    def _free_running(self, enc: Encoded, real_mask: torch.Tensor, width: int, layers, grad: bool):
        """Decode ``width`` steps free-running; returns the states `(B, W', L*H)` and their mask `(B, W')`.

        With ``match_gold_length`` EOS is blocked at every step: the state at position t depends only
        on the tokens before t, so this equals blocking it before each row's own gold length on every
        position compared (those past a row's length are masked out), without a per-row processor.
        """
        args = self.args
        source = Encoded(enc.last_hidden_state.detach() if args.detach_teacher_forced or not grad else enc.last_hidden_state, enc.attention_mask)
        with torch.set_grad_enabled(grad and torch.is_grad_enabled()):
            rollout = self.engine.differentiable(
                encoded=source, max_new_tokens=width, min_new_tokens=width if args.match_gold_length else 0,
                tau=float(self.tau(self.state.global_step)), hard=True, noise=args.free_running == "sample", generator=self._noise,
                output_hidden_states=True, hidden_layers=layers,
            )
        states = torch.cat(rollout.hidden_states, dim=-1)  # (B, W', L*H)
        mask = rollout.attention_mask  # (B, W'): up to and including EOS
        if args.match_gold_length:
            mask = mask * (torch.arange(mask.shape[1], device=mask.device)[None, :] < real_mask.sum(-1)[:, None])
        return states, _prefix_mask(mask, mask.shape[1])

    def _discriminator_update(self, real, real_mask, fake, fake_mask) -> None:
        """D's steps on the detached states, both branches in one forward (padded to one width)."""
        aux = self.auxiliary("discriminator")
        aux.model.train()
        width = max(real.shape[1], fake.shape[1])
        states = torch.cat([F.pad(x, (0, 0, 0, width - x.shape[1])) for x in (real, fake)])  # (2B, W, L*H)
        masks = torch.cat([F.pad(m, (0, width - m.shape[1])) for m in (real_mask, fake_mask)])  # (2B, W)
        rows = real.shape[0]
        for i in range(self.args.discriminator_steps):
            logp = HiddenStateDiscriminator.log_probs(aux.model(states, masks))  # (2B, 2)
            loss, acc_real, acc_fake = discriminator_loss(logp[:rows], logp[rows:], REAL)
            if i == 0:  # the terms the generator's loss saw (D before this step's update)
                self.record(adversarial_loss=-logp[rows:, REAL].mean(),
                            teacher_forced_loss=-logp[:rows, 1 - REAL].mean() if self.args.teacher_forced_term else None)
            self.auxiliary_step("discriminator", loss)
        self.record(d_loss=loss.detach(), d_acc_teacher_forced=acc_real, d_acc_free_running=acc_fake)
