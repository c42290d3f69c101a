"""CycleTrainer: learning a seq2seq mapping X -> Y from two unpaired corpora.

A generator G: X -> Y and a reconstructor R: Y -> X are trained together, with a discriminator D on
the Y domain, from texts of X and texts of Y that are not translations of each other:

- **reconstruction** R(G(x)) ≈ x (Wang & Lee 2018, "Learning to Encode Text as Human-Readable
  Summaries using Generative Adversarial Networks", https://arxiv.org/abs/1810.02851): the discrete
  bottleneck G(x) is crossed by straight-through Gumbel-softmax one-hots fed into R's encoder
  (``reconstruction_update="gumbel"``, needs one vocabulary) or by REINFORCE with R's
  log-likelihood of x as G's reward (``"reinforce"``); R learns from the same reconstruction;
- **adversarial**: D (real Y texts against G's outputs, outputs alone) rewards Y-like outputs, by
  REINFORCE on D's reward or by Gumbel one-hots into D; with ``source_adversarial_weight`` a second
  discriminator D_X (real X texts against R's outputs R(y)) pulls the other direction the same way,
  so that in style transfer each style has its discriminator;
- **denoising auto-encoding** of each domain (Lample et al. 2018, "Unsupervised Machine
  Translation Using Monolingual Corpora Only", https://arxiv.org/abs/1711.00043): R recovers x
  from a noised x and G recovers y from a noised y (word shuffle, drop, blank:
  :mod:`hf_seqgan.noise`);
- **on-the-fly back-translation** (Lample et al. 2018): R is trained on (G(x) -> x) and G on
  (R(y) -> y), the generated side decoded without gradients;
- **supervised pairs** when the X rows carry ``labels`` (semi-supervised).

Every term has a weight that may follow a `Schedule`. G and R are two models (R registered as the
auxiliary model ``"reconstructor"``: its own optimizer, saved to ``reconstructor/``, checkpointed)
or one shared model (``shared_model=True``) told the direction by tokens: language codes forced as
the first generated token (mBART's ``forced_bos_token_id``) or a tag in front of the source.

**Data.** ``train_dataset`` holds the X domain (``input_ids``, optionally ``labels``) and goes
through the Trainer's own dataloader, sampler and resume logic unchanged. The Y domain
(``target_domain_dataset``, or the rows of ``train_dataset`` whose ``domain`` column is 1/"y") is
read by a seeded sampler in the trainer (:class:`~hf_seqgan.trainers._cycle_setup.TargetDomainSampler`):
each X micro-batch is paired with the next ``target_batch_size`` rows of a fresh permutation of Y
per pass, and the sampler's position is checkpointed, so that resuming is exact. All randomness of a
step (noise, samples, Gumbel noise) comes from a generator seeded by the run's seed and the
micro-batch count. Evaluation is the plain teacher-forced loss of G, as in `Seq2SeqTrainer`.

Examples:

```python
>>> from datasets import Dataset
>>> from transformers import PrinterCallback
>>> from hf_seqgan.tiny import train_tokenizer, build_tiny_model
>>> from hf_seqgan.trainers.cycle import CycleConfig, CycleTrainer
>>> tok = train_tokenizer(["the cat sat on the mat", "a dog ran far", "cats sit", "dogs run"] * 20, vocab_size=300)
>>> x = Dataset.from_dict({"input_ids": tok(["the cat sat on the mat", "a dog ran far"] * 4).input_ids})
>>> y = Dataset.from_dict({"input_ids": tok(["cats sit", "dogs run"] * 4).input_ids})  # not x's translations
>>> args = CycleConfig(output_dir="cycle-doc", max_steps=2, per_device_train_batch_size=4, max_new_tokens=4, use_cpu=True,
...                    report_to="none", save_strategy="no", disable_tqdm=True, logging_steps=1, denoising_weight="1.0")
>>> trainer = CycleTrainer(build_tiny_model("bart", tok), args, train_dataset=x, target_domain_dataset=y, processing_class=tok)
>>> trainer.remove_callback(PrinterCallback)
>>> _ = trainer.train()
>>> sorted(k for k in trainer.state.log_history[0] if k.endswith("_loss") or k.startswith("d_acc"))
['d_acc', 'd_acc_fake', 'd_acc_real', 'd_loss', 'denoising_x_loss', 'denoising_y_loss', 'pg_loss', 'reconstruction_loss']

```
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import os
from typing import Callable, Optional

import torch
from transformers import DataCollatorForSeq2Seq

from ..discriminators import SequenceDiscriminator
from ..noise import TextNoiser, check_noise
from ..rewards import DiscriminatorReward, MovingAverageBaseline, drop_nonfinite, leave_one_out_baseline
from ..rollout import RolloutEngine
from ..sequences import token_logprobs
from ..sampling import unwrap_model
from ..schedules import as_schedule, schedule_field
from ._cycle_decoding import DirectionCallsMixin
from ._base import BaseConfig, BaseTrainer, apply_peft
from ._latent import latent_terms
from ._policy import (
    DiscriminatorFields, PolicyFields, check_shared_fields, disable_dropout, discriminator_step, frozen_reference, policy_loss, reference_of,
    sampled_logprobs, sync_discriminator_reference,
)
from ..directions import Direction, domain_suppressed_tokens
from ..hidden_discriminator import HiddenStateDiscriminator
from ._cycle_setup import TargetDomainSampler, build_domain_discriminator, check_reconstructor, split_domains, target_column

__all__ = ["CycleConfig", "CycleTrainer"]

logger = logging.getLogger(__name__)
DOMAIN_VOCABULARY_NAME = "domain_vocabulary.json"  # with domain_vocabulary_ratio > 0: each direction's suppressed token ids

LOSSES = ("reconstruction", "adversarial", "source_adversarial", "denoising", "backtranslation", "supervised", "latent_adversarial")
UPDATES = ("reinforce", "gumbel")
BASELINES = ("moving_average", "leave_one_out", "none")


@dataclasses.dataclass
class CycleConfig(PolicyFields, DiscriminatorFields, BaseConfig):
    """Configuration of :class:`CycleTrainer` (a `Seq2SeqTrainingArguments` plus the fields below).

    Models: ``shared_model``, ``x_token``, ``y_token``, ``direction_token_position``. Loss weights
    (schedules): ``reconstruction_weight``, ``adversarial_weight``, ``source_adversarial_weight``, ``denoising_weight``,
    ``backtranslation_weight``, ``supervised_weight``. Updates: ``reconstruction_update``,
    ``adversarial_update``, ``reward``, ``baseline`` (+ ``baseline_decay``), ``scale_rewards``, ``num_samples``,
    ``tau``. Decoding: ``max_new_tokens``, ``min_new_tokens``, ``reconstruction_max_new_tokens``,
    ``do_sample``, ``sampling_temperature``, ``backtranslation_do_sample``, ``training_no_repeat_ngram_size``,
    ``training_no_doubled_tokens``, ``domain_vocabulary_ratio``. Noise:
    ``word_shuffle``, ``word_dropout``, ``word_blank``, ``noise_whole_words``. Data:
    ``target_batch_size``, ``domain_column``. Reconstructor and discriminator optimizers and the
    default discriminator's size.
    """

    shared_model: bool = dataclasses.field(default=False, metadata={"help": "One model for both directions, told apart by x_token/y_token (False: a separate reconstructor)."})
    x_token: Optional[str] = dataclasses.field(default=None, metadata={"help": "Token naming the X domain (a language code such as en_XX, or a tag such as <2x>)."})
    y_token: Optional[str] = dataclasses.field(default=None, metadata={"help": "Token naming the Y domain (e.g. de_DE or <2y>)."})
    direction_token_position: str = dataclasses.field(default="decoder", metadata={"help": "'decoder': the output domain's token is forced as the first generated token (mBART forced_bos_token_id); 'encoder': it is put in front of the source (a tag)."})
    reconstruction_weight: str = schedule_field("1.0", "Weight of the reconstruction loss R(G(x)) ~ x.")
    adversarial_weight: str = schedule_field("1.0", "Weight of the adversarial loss (G's outputs judged Y-like by D); 0 = no discriminator.")
    source_adversarial_weight: str = schedule_field("0.0", "Weight of the adversarial loss of the other direction: a second discriminator D_X tells real X texts from R's "
                                                    "outputs R(y), and R (the shared model's y -> x direction) learns to pass as X, with the same update, reward and "
                                                    "discriminator type as D; 0 = no D_X.")
    denoising_weight: str = schedule_field("0.0", "Weight of denoising auto-encoding of both domains.")
    backtranslation_weight: str = schedule_field("0.0", "Weight of on-the-fly back-translation (R on G(x) -> x, G on R(y) -> y).")
    supervised_weight: str = schedule_field("1.0", "Weight of the cross-entropy on X rows that carry `labels` (both directions).")
    latent_adversarial_weight: str = schedule_field("0.0", "Weight of the latent adversary (Lample et al. 2018): the encoders learn to make a discriminator on their states unable to tell X from Y; 0 = off.")
    latent_discriminator_learning_rate: float = dataclasses.field(default=1e-4, metadata={"help": "Learning rate of the latent discriminator."})
    latent_discriminator_hidden_size: int = dataclasses.field(default=64, metadata={"help": "Hidden size of the latent discriminator (a bidirectional GRU over the encoder states)."})
    reconstruction_update: str = dataclasses.field(default="reinforce", metadata={"help": f"How reconstruction reaches G: one of {UPDATES}."})
    adversarial_update: str = dataclasses.field(default="reinforce", metadata={"help": f"How D's judgement reaches G: one of {UPDATES}."})
    baseline: str = dataclasses.field(default="moving_average", metadata={"help": f"REINFORCE baseline: one of {BASELINES}."})
    scale_rewards: str = dataclasses.field(default="none", metadata={"help": "'batch': divide each REINFORCE reward's advantage by its root-mean-square over the batch (each |advantage| <= sqrt(rows)), "
                                                                     "so that a term's pull does not depend on its reward's scale (log-odds rewards span tens of nats, p(real) "
                                                                     "thousandths); 'none': as is."})
    reconstruction_max_new_tokens: Optional[int] = dataclasses.field(default=None, metadata={"help": "Most tokens of R's outputs (back-translation); defaults to the X batch's width."})
    backtranslation_do_sample: bool = dataclasses.field(default=False, metadata={"help": "Sample the back-translations (False: greedy, as Lample et al.)."})
    training_no_repeat_ngram_size: int = dataclasses.field(default=0, metadata={"help": "Block repeated n-grams of this size in every decode of training (samples, Gumbel decodes, "
                                                                                     "back-translations; transformers' NoRepeatNGramLogitsProcessor, also in the policy "
                                                                                     "gradient's on-policy score), so that a discriminator's blind spot for repeated words "
                                                                                     "cannot be rewarded; decode with the same --no_repeat_ngram_size; 0 = off."})
    training_no_doubled_tokens: bool = dataclasses.field(default=False, metadata={"help": "Never decode the token just generated again in any decode of training "
                                                                                  "(hf_seqgan's NoDoubledTokenLogitsProcessor, also in the policy gradient's "
                                                                                  "on-policy score): no `not not` or `great great` for a discriminator to "
                                                                                  "reward; decode with the same --no_doubled_tokens."})
    kl_coef: float = dataclasses.field(default=0.0, metadata={"help": "KL penalty of the decodes of the reconstruction/adversarial terms (G: x -> y) and of the "
                                                                "source adversary (R: y -> x) to the frozen starting model, per token (the k3 estimator on "
                                                                "the decoded tokens, as AdversarialTrainer's kl_coef): keeps a pretrained start's words while "
                                                                "the adversaries pull; 0 = off (no copy is made; with PEFT the adapters are switched off)."})
    domain_vocabulary_ratio: float = dataclasses.field(default=0.0, metadata={"help": "Restrict every decode into a domain (training and CycleTrainer.transfer) to that domain's "
                                                                                 "tokens: a token may be emitted into Y only if it occurs in the Y training texts with a "
                                                                                 "relative frequency >= this ratio x its relative frequency in the X texts (and the same "
                                                                                 "for X); special tokens and tags are always allowed. For two languages sharing one "
                                                                                 "vocabulary it stops the back-translations from copying source-language words "
                                                                                 "(e.g. 0.1); 0 = off."})
    word_shuffle: float = dataclasses.field(default=3.0, metadata={"help": "Denoising: largest distance a word moves (k)."})
    word_dropout: float = dataclasses.field(default=0.1, metadata={"help": "Denoising: probability of dropping a word."})
    word_blank: float = dataclasses.field(default=0.2, metadata={"help": "Denoising: probability of replacing a word by the mask token."})
    noise_whole_words: bool = dataclasses.field(default=True, metadata={"help": "Noise whole words (runs of sub-word tokens) rather than tokens."})
    target_batch_size: Optional[int] = dataclasses.field(default=None, metadata={"help": "Y rows per micro-batch; defaults to per_device_train_batch_size."})
    domain_column: str = dataclasses.field(default="domain", metadata={"help": "With no target_domain_dataset: the train_dataset column telling X rows (0/'x') from Y rows (1/'y')."})
    reconstructor_learning_rate: Optional[float] = dataclasses.field(default=None, metadata={"help": "Learning rate of the separate reconstructor (default: learning_rate)."})
    reconstructor_optimizer: str = dataclasses.field(default="adamw", metadata={"help": "The reconstructor's optimizer: adamw, adam or sgd."})

    def __post_init__(self):
        super().__post_init__()
        check_shared_fields(self)
        for name, value, choices in (("reconstruction_update", self.reconstruction_update, UPDATES), ("adversarial_update", self.adversarial_update, UPDATES),
                                     ("baseline", self.baseline, BASELINES), ("scale_rewards", self.scale_rewards, ("batch", "none")),
                                     ("direction_token_position", self.direction_token_position, ("decoder", "encoder"))):
            if value not in choices:
                raise ValueError(f"{name}={value!r} is not one of {choices}.")
        for name in LOSSES:
            setattr(self, f"{name}_weight", str(as_schedule(getattr(self, f"{name}_weight"), name=f"{name}_weight", low=0.0)))
        if all(as_schedule(getattr(self, f"{name}_weight")).bounds()[1] == 0 for name in LOSSES):
            raise ValueError(f"Every loss weight is 0 ({', '.join(n + '_weight' for n in LOSSES)}): give at least one a positive value.")
        if (self.x_token is None) != (self.y_token is None) or (self.x_token is not None and self.x_token == self.y_token):
            raise ValueError(f"x_token and y_token name the two domains: give both, and different (got {self.x_token!r}, {self.y_token!r}).")
        if self.shared_model and self.x_token is None:
            raise ValueError("shared_model=True needs x_token and y_token to tell the directions apart (mBART language codes such as "
                             "en_XX/de_DE, or tags such as <2x>/<2y> added to the tokenizer).")
        if self.baseline == "leave_one_out" and self.num_samples < 2:
            raise ValueError(f"baseline='leave_one_out' needs num_samples >= 2 (the other samples of a source are the baseline), got {self.num_samples}.")
        if isinstance(self.training_no_repeat_ngram_size, bool) or not isinstance(self.training_no_repeat_ngram_size, int) or self.training_no_repeat_ngram_size < 0:
            raise ValueError(f"training_no_repeat_ngram_size must be an integer >= 0 (0 = off), got {self.training_no_repeat_ngram_size!r}.")
        if not isinstance(self.training_no_doubled_tokens, bool):
            raise ValueError(f"training_no_doubled_tokens must be True or False, got {self.training_no_doubled_tokens!r}.")
        if isinstance(self.kl_coef, bool) or not isinstance(self.kl_coef, (int, float)) or not 0 <= self.kl_coef < float("inf"):
            raise ValueError(f"kl_coef must be a finite number >= 0 (0 = off), got {self.kl_coef!r}.")
        if isinstance(self.domain_vocabulary_ratio, bool) or not isinstance(self.domain_vocabulary_ratio, (int, float)) \
                or not 0 <= self.domain_vocabulary_ratio < float("inf"):
            raise ValueError(f"domain_vocabulary_ratio must be a finite number >= 0 (0 = off), got {self.domain_vocabulary_ratio!r}.")
        if self.kl_coef > 0 and all(as_schedule(getattr(self, f"{name}_weight")).bounds()[1] == 0
                                    for name in ("reconstruction", "adversarial", "source_adversarial")):
            raise ValueError("kl_coef penalises the decodes of the reconstruction, adversarial and source-adversarial terms, but their weights "
                             "are 0: give one of them a positive value, or set kl_coef=0.")
        for name in ("reconstruction_max_new_tokens", "target_batch_size"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1 (or None), got {getattr(self, name)}.")
        check_noise(self.word_shuffle, self.word_dropout, self.word_blank)


class CycleTrainer(DirectionCallsMixin, BaseTrainer):
    """Unpaired training of a seq2seq model X -> Y (see the module docstring).

    Args:
        model: the generator G (an `AutoModelForSeq2SeqLM`, or a `PeftModel` around one).
        args (`CycleConfig`).
        train_dataset: the X domain, tokenized (``input_ids``; ``labels`` on rows that have a Y
            partner; or a ``domain`` column holding both domains when ``target_domain_dataset`` is None).
        target_domain_dataset: the Y domain, tokenized into ``input_ids``.
        reconstructor (*optional*): R, an `AutoModelForSeq2SeqLM` on the same tokenizer. None: a
            copy of G (two-model mode), or G itself with ``shared_model=True``.
        discriminator (*optional*): a :class:`~hf_seqgan.discriminators.SequenceDiscriminator` (or
            a raw classifier with ``discriminator_processing_class``); None: the default of
            ``discriminator_type``. It judges outputs alone (unconditional).
        source_discriminator (*optional*): D_X, the same for the X domain (with
            ``source_adversarial_weight`` > 0); None: the default of ``discriminator_type`` (made
            from R where it is made from a model).
        processing_class: G's tokenizer (required; R reads G's token ids, so it shares it).
        peft_config, reconstructor_peft_config, discriminator_peft_config (*optional*): PEFT configs.
        Other arguments: as in `Seq2SeqTrainer`.
    """

    cli_name = "cycle"
    config_class = CycleConfig
    summary = "Unpaired X -> Y (Lample et al. 2018): denoising, back-translation, reconstruction, adversarial terms."
    roles = {**BaseTrainer.roles, "latent_discriminator": "it tells the encoder's states of X-domain inputs from those of Y-domain inputs (the latent adversary).",
             "source_discriminator": "it scores texts of the source domain as real or as the reconstructor's outputs (the other direction's adversary)."}

    @classmethod
    def describe(cls, args):
        from ..cards import Method

        return Method("cycle training", "cycle-consistency",
                      "A forward model and a reconstructor are trained together without parallel data: the reconstructor maps the "
                      "forward model's outputs back to the (noised) inputs, and a discriminator keeps the outputs in the target domain.",
                      ["wang2018learning", "lample2018unsupervised"])

    def __init__(
        self,
        model,
        args: Optional[CycleConfig] = None,
        data_collator: Optional[Callable] = None,
        train_dataset=None,
        eval_dataset=None,
        processing_class=None,
        *,
        target_domain_dataset=None,
        reconstructor=None,
        discriminator=None,
        peft_config=None,
        reconstructor_peft_config=None,
        compute_metrics: Optional[Callable] = None,
        callbacks: Optional[list] = None,
        optimizers: tuple = (None, None),
        preprocess_logits_for_metrics: Optional[Callable] = None,
        discriminator_processing_class=None,
        discriminator_peft_config=None,
        source_discriminator=None,
    ):
        if reconstructor is None and model is not None and not getattr(args, "shared_model", False):
            reconstructor = copy.deepcopy(model)  # R starts as a copy of G
        model, args = self._generator_and_args(model, args, CycleConfig, "cycle", peft_config)
        if args.disable_dropout:
            disable_dropout(model)
        if processing_class is None:
            raise ValueError("CycleTrainer needs processing_class (the generator's tokenizer): noise, tags and the default discriminator use it.")
        if train_dataset is None:
            raise ValueError("CycleTrainer needs train_dataset: the X-domain texts, tokenized into `input_ids`.")
        train_dataset, target_domain_dataset = split_domains(train_dataset, target_domain_dataset, args.domain_column)
        if args.shared_model and (reconstructor is not None or reconstructor_peft_config is not None):
            raise ValueError("shared_model=True uses the generator in both directions: pass no reconstructor / reconstructor_peft_config.")
        super().__init__(
            model, args, data_collator or DataCollatorForSeq2Seq(processing_class), train_dataset, eval_dataset, processing_class,
            compute_metrics=compute_metrics, callbacks=callbacks, optimizers=optimizers, preprocess_logits_for_metrics=preprocess_logits_for_metrics,
        )
        self.model_accepts_loss_kwargs = self.loss_is_scaled_for_ga = True  # every term is scaled here (per-sequence means / accumulation)
        self.target_domain_dataset = target_domain_dataset
        self._target_column = target_column(target_domain_dataset)
        self.target_sampler = TargetDomainSampler(len(target_domain_dataset), seed=args.seed)
        self.weights = {name: as_schedule(getattr(args, f"{name}_weight")) for name in LOSSES}
        self.tau = as_schedule(args.tau)
        self.baselines = {name: MovingAverageBaseline(args.baseline_decay) for name in ("reconstruction", "adversarial", "source_adversarial")}
        self.micro_steps = 0
        self._synced_reference_at = {}  # id(discriminator) -> the step its reference was synced
        tags = [self._token_id(args.x_token), self._token_id(args.y_token)]
        self.noiser = TextNoiser(processing_class, word_shuffle=args.word_shuffle, word_dropout=args.word_dropout, word_blank=args.word_blank,
                                 whole_words=args.noise_whole_words, protected_ids=[t for t in tags if t is not None])
        engine = RolloutEngine(self.model, processing_class)
        self.to_y = Direction(self.model, engine, target_tag=tags[1], source_tag=tags[0], position=args.direction_token_position)
        self.reconstructor = None
        if args.shared_model:
            self.to_x = Direction(self.model, engine, target_tag=tags[0], source_tag=tags[1], position=args.direction_token_position)
        else:
            self.reconstructor = self._make_reconstructor(reconstructor, reconstructor_peft_config)
            aux = self.auxiliary("reconstructor")
            self.to_x = Direction(aux.model, RolloutEngine(aux.model, processing_class), target_tag=tags[0], source_tag=tags[1],
                                  position=args.direction_token_position)
        if args.domain_vocabulary_ratio > 0:
            self._restrict_vocabularies(train_dataset, target_domain_dataset, [t for t in tags if t is not None])
        for direction in (self.to_x, self.to_y)[int(args.shared_model):]:  # plain generate() decodes into the model's own domain
            if direction.forced_tag is not None:
                unwrap_model(direction.model).generation_config.forced_bos_token_id = direction.forced_tag
        self.discriminator: Optional[SequenceDiscriminator] = None
        self.source_discriminator: Optional[SequenceDiscriminator] = None
        self._rewards: dict = {}  # the loss name -> the DiscriminatorReward of its discriminator
        for name, given, loss in (("discriminator", discriminator, "adversarial"), ("source_discriminator", source_discriminator, "source_adversarial")):
            if self.weights[loss].bounds()[1] > 0:
                made_from = self.model if name == "discriminator" else self.to_x.model
                setattr(self, name, self._make_discriminator(given, discriminator_processing_class, discriminator_peft_config, name=name,
                                                             loss=loss, generator=made_from))
            elif given is not None:
                raise ValueError(f"A {name} was given but {loss}_weight is 0 throughout: give {loss}_weight a positive value or drop it.")
        if self.source_discriminator is not None and self.reconstructor is not None and args.disable_dropout:
            disable_dropout(self.to_x.model)  # R is trained by its own policy gradient: its samples and their score are one policy
        if self.weights["latent_adversarial"].bounds()[1] > 0:
            self._make_latent_discriminator()
        # the starting G and R of the KL penalty (a PEFT model is its base with the adapters off; a shared model is one copy)
        self.ref_model = frozen_reference(self.model) if args.kl_coef > 0 else None
        self.ref_reconstructor = None
        if args.kl_coef > 0 and self.source_discriminator is not None and self.reconstructor is not None:
            self.ref_reconstructor = frozen_reference(self.reconstructor)
        if args.world_size > 1 and "gumbel" in (args.reconstruction_update, args.adversarial_update):
            raise NotImplementedError("The gumbel updates decode step by step through the unwrapped generator, which a multi-process run "
                                      "cannot synchronise; use reconstruction_update='reinforce' and adversarial_update='reinforce'.")

    # ------------------------------------------------------------------ set-up
    def _token_id(self, token: Optional[str]) -> Optional[int]:
        if token is None:
            return None
        tok = self.processing_class
        index = tok.convert_tokens_to_ids(token)
        if index is None or index == tok.unk_token_id or token not in tok.get_vocab():
            raise ValueError(f"The direction token {token!r} is not in the tokenizer's vocabulary. Add it with "
                             f"tokenizer.add_special_tokens({{'additional_special_tokens': [{token!r}]}}) and "
                             "model.resize_token_embeddings(len(tokenizer)), or use the model's language codes.")
        return int(index)

    def _restrict_vocabularies(self, x_data, y_data, tags: list[int]) -> None:
        """Each direction's ``suppress_tokens``: the tokens rare in its output domain against the other
        (:func:`~hf_seqgan.directions.domain_suppressed_tokens`)."""
        def rows(data, column):
            ids = data[column] if hasattr(data, "column_names") else [row[column] for row in data]
            return [[t for t in row if t >= 0] for row in ids]

        x_rows, y_rows = rows(x_data, "input_ids"), rows(y_data, self._target_column)
        size = unwrap_model(self.model).get_output_embeddings().weight.shape[0]
        keep = list(self.processing_class.all_special_ids) + tags
        ratio = self.args.domain_vocabulary_ratio
        self.to_y.suppress_tokens = domain_suppressed_tokens(y_rows, x_rows, size, ratio=ratio, keep=keep)
        self.to_x.suppress_tokens = domain_suppressed_tokens(x_rows, y_rows, size, ratio=ratio, keep=keep)
        for name, direction in (("X", self.to_x), ("Y", self.to_y)):
            if len(direction.suppress_tokens) >= size - len(set(keep)):
                raise ValueError(f"domain_vocabulary_ratio={ratio} leaves no ordinary token to decode into {name}: lower it.")
            logger.info("Decodes into %s may use %d of %d tokens (domain_vocabulary_ratio=%s)", name, size - len(direction.suppress_tokens), size, ratio)

    def _save_auxiliaries(self, output_dir: str) -> None:
        super()._save_auxiliaries(output_dir)
        if self.to_y.suppress_tokens is not None:  # what a later decode needs to stay in each domain's vocabulary
            with open(os.path.join(output_dir, DOMAIN_VOCABULARY_NAME), "w", encoding="utf-8") as f:
                json.dump({"domain_vocabulary_ratio": self.args.domain_vocabulary_ratio, "x_token": self.args.x_token, "y_token": self.args.y_token,
                           "suppress_tokens_x": self.to_x.suppress_tokens, "suppress_tokens_y": self.to_y.suppress_tokens}, f)

    def _make_latent_discriminator(self) -> None:
        sizes = {getattr(unwrap_model(d.model).config, "d_model", None) for d in (self.to_x, self.to_y)}
        if len(sizes) != 1 or None in sizes:
            raise ValueError(f"The latent adversary compares G's and R's encoder states, which need one size; got d_model {sorted(map(str, sizes))}. "
                             "Use a reconstructor of G's architecture, or shared_model=True.")
        disc = HiddenStateDiscriminator(sizes.pop(), hidden_size=self.args.latent_discriminator_hidden_size, seed=self.args.seed)
        self.add_auxiliary("latent_discriminator", disc, learning_rate=self.args.latent_discriminator_learning_rate,
                           optimizer=self.args.discriminator_optimizer, max_grad_norm=self.args.discriminator_max_grad_norm or None)

    def _make_reconstructor(self, reconstructor, peft_config):
        args, tok = self.args, self.processing_class
        check_reconstructor(reconstructor, self.model, tok, gumbel=args.reconstruction_update == "gumbel")
        if peft_config is not None:
            reconstructor = apply_peft(reconstructor, peft_config, what="reconstructor")
        schedule = dict(lr_scheduler_type=args.lr_scheduler_type, warmup_steps=args.get_warmup_steps(args.max_steps), total_steps=args.max_steps) \
            if args.max_steps > 0 else {}  # G's learning-rate schedule when the length is known; constant otherwise
        self.add_auxiliary("reconstructor", reconstructor, learning_rate=args.reconstructor_learning_rate or args.learning_rate,
                           weight_decay=args.weight_decay, max_grad_norm=args.max_grad_norm or None,
                           optimizer=args.reconstructor_optimizer, processing_class=tok, **schedule)
        return reconstructor

    def _make_discriminator(self, discriminator, tokenizer, peft_config, *, name: str, loss: str, generator) -> SequenceDiscriminator:
        args = self.args
        discriminator = build_domain_discriminator(discriminator, self.processing_class, args, generator=generator, discriminator_tokenizer=tokenizer,
                                                   peft_config=peft_config)
        self.add_auxiliary(name, discriminator, learning_rate=args.discriminator_learning_rate,
                           max_grad_norm=args.discriminator_max_grad_norm or None, optimizer=args.discriminator_optimizer)
        shares = discriminator.shares_vocabulary(self.processing_class)
        self._rewards[loss] = DiscriminatorReward(discriminator, kind=args.reward, generator_tokenizer=None if shares else self.processing_class)
        return discriminator

    @property
    def _d_reward(self) -> DiscriminatorReward:
        """The reward of the Y-domain discriminator D."""
        return self._rewards["adversarial"]

    def _extra_state(self) -> dict:
        state = {"micro_steps": self.micro_steps, "target_sampler": self.target_sampler.state_dict(),
                 "baselines": {name: b.state_dict() for name, b in self.baselines.items()}}
        for name in ("ref_model", "ref_reconstructor"):
            if getattr(self, name) is not None:
                state[name] = getattr(self, name).state_dict()
        return state

    def _load_extra_state(self, state: dict) -> None:
        for name in ("ref_model", "ref_reconstructor"):
            if getattr(self, name) is not None:
                if name not in state:
                    raise ValueError("kl_coef > 0, but the checkpoint has no starting model to take the KL against (it was trained with "
                                     "kl_coef=0): resume with kl_coef=0, or start a new run from the checkpoint's model.")
                getattr(self, name).load_state_dict(state[name])
        self.micro_steps = state["micro_steps"]
        self.target_sampler.load_state_dict(state["target_sampler"])
        for name, b in self.baselines.items():
            if name in state["baselines"]:  # checkpoints from before the source adversary lack its baseline
                b.load_state_dict(state["baselines"][name])

    # ------------------------------------------------------------------ data and randomness
    def step_generator(self, micro_step: int) -> torch.Generator:
        """The generator of all randomness of micro-batch ``micro_step`` (noise, samples, Gumbel)."""
        return torch.Generator(device=self.args.device).manual_seed(self.args.seed * 1_000_003 + micro_step)

    def target_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The next Y-domain micro-batch `(B', T)` ids and mask (this process's share)."""
        args = self.args
        size = args.target_batch_size or args.per_device_train_batch_size
        rows = self.target_sampler.take(size * args.world_size)[args.process_index * size : (args.process_index + 1) * size]
        data = self.target_domain_dataset
        ids = data[rows][self._target_column] if hasattr(data, "column_names") else [data[i][self._target_column] for i in rows]
        ids = [[t for t in row if t >= 0] for row in ids]  # a `labels` column may hold -100
        batch = self.processing_class.pad({"input_ids": ids}, return_tensors="pt")
        return batch["input_ids"].to(args.device), batch["attention_mask"].to(args.device)

    @torch.no_grad()
    def transfer(self, input_ids: torch.Tensor, attention_mask: Optional[torch.Tensor] = None, *, to: str = "y",
                 max_new_tokens: int = 64, do_sample: bool = False, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """Decode a batch with G (``to="y"``) or R (``to="x"``), direction tokens included, and return
        the output ids `(B, T)` (the forced language code, if any, stays first: decode with
        ``skip_special_tokens=True``). Greedy unless ``do_sample``."""
        if to not in ("x", "y"):
            raise ValueError(f"to must be 'x' (the reconstructor's direction) or 'y' (the generator's), got {to!r}.")
        direction = self.to_y if to == "y" else self.to_x
        input_ids = input_ids.to(self.args.device)
        mask = (input_ids != self.processing_class.pad_token_id).long() if attention_mask is None else attention_mask.to(self.args.device)
        return self._decode(direction, input_ids, mask, max_new_tokens, generator, do_sample=do_sample).sequences

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None, **gen_kwargs):
        """Evaluation as `Seq2SeqTrainer`'s, with G's inputs and labels carrying the direction tokens."""
        inputs = dict(inputs)
        if "input_ids" in inputs:
            mask = inputs.get("attention_mask", torch.ones_like(inputs["input_ids"]))
            inputs["input_ids"], inputs["attention_mask"] = self.to_y.encoder_input(inputs["input_ids"], mask)
        if inputs.get("labels") is not None and self.to_y.forced_tag is not None:
            labels = inputs["labels"]
            inputs["labels"] = self.to_y.labels(labels.clamp_min(0), labels.ne(-100).long())
            inputs.pop("decoder_input_ids", None)
        return super().prediction_step(model, inputs, prediction_loss_only, ignore_keys=ignore_keys, **gen_kwargs)

    # ------------------------------------------------------------------ loss
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if not model.training:
            return super().compute_loss(model, inputs, return_outputs=return_outputs)
        if return_outputs:
            raise ValueError("CycleTrainer computes no model outputs during training (return_outputs=True).")
        return self._cycle_loss(model, inputs)

    def _cycle_loss(self, model, inputs):
        args, step = self.args, self.state.global_step
        accumulation = self.accumulation_steps
        w = {name: float(schedule(step)) for name, schedule in self.weights.items()}
        generator = self.step_generator(self.micro_steps)
        self.micro_steps += 1
        if self.reconstructor is not None:
            self.to_x.model.train()
        x, x_mask = inputs["input_ids"], inputs["attention_mask"]
        y, y_mask = self.target_batch()
        zero = torch.zeros((), device=x.device)
        g_loss, r_loss = torch.zeros((), device=x.device, requires_grad=True), zero  # G's and R's objectives
        if w["denoising"] > 0:
            nx, nx_mask = self.noiser(x, x_mask, generator=generator)
            ny, ny_mask = self.noiser(y, y_mask, generator=generator)
            den_x = self._forward(self.to_x, nx, nx_mask, x, x_mask).mean()
            den_y = self._forward(self.to_y, ny, ny_mask, y, y_mask).mean()
            r_loss, g_loss = r_loss + w["denoising"] * den_x, g_loss + w["denoising"] * den_y
            self.record(denoising_x_loss=den_x.detach(), denoising_y_loss=den_y.detach())
        if w["backtranslation"] > 0:
            bt = dict(do_sample=args.backtranslation_do_sample, eval_mode=True)
            y_hat = self._decode(self.to_y, x, x_mask, args.max_new_tokens or y.shape[1], generator, **bt)
            x_hat = self._decode(self.to_x, y, y_mask, args.reconstruction_max_new_tokens or x.shape[1], generator, **bt)
            bt_x = self._forward(self.to_x, y_hat.sequences, y_hat.attention_mask, x, x_mask).mean()
            bt_y = self._forward(self.to_y, x_hat.sequences, x_hat.attention_mask, y, y_mask).mean()
            r_loss, g_loss = r_loss + w["backtranslation"] * bt_x, g_loss + w["backtranslation"] * bt_y
            self.record(backtranslation_x_loss=bt_x.detach(), backtranslation_y_loss=bt_y.detach())
        if w["latent_adversarial"] > 0:
            fool_x, fool_y = latent_terms(self, x, x_mask, y, y_mask)
            r_loss, g_loss = r_loss + w["latent_adversarial"] * fool_y, g_loss + w["latent_adversarial"] * fool_x
        labels = inputs.get("labels")
        if labels is not None and w["supervised"] > 0 and bool(labels.ne(-100).any()):
            paired = labels.ne(-100).any(-1)  # (B,) rows with a Y partner
            y_ids, y_ids_mask = labels.clamp_min(0)[paired], labels.ne(-100)[paired].long()
            sup_y = self._forward(self.to_y, x[paired], x_mask[paired], y_ids, y_ids_mask).mean()
            sup_x = self._forward(self.to_x, y_ids, y_ids_mask, x[paired], x_mask[paired]).mean()
            r_loss, g_loss = r_loss + w["supervised"] * sup_x, g_loss + w["supervised"] * sup_y
            self.record(supervised_y_loss=sup_y.detach(), supervised_x_loss=sup_x.detach())
        if self.source_discriminator is not None:
            r_loss = r_loss + self._source_adversarial_term(x, x_mask, y, y_mask, w, generator)
        soft_leaf = None
        if w["reconstruction"] > 0 or self.discriminator is not None:
            g_cycle, r_cycle, soft_leaf = self._cycle_terms(model, x, x_mask, y, y_mask, w, generator)
            g_loss, r_loss = g_loss + g_cycle, r_loss + r_cycle
        for name in LOSSES:
            self.record(**{f"{name}_weight": w[name]})
        if self.reconstructor is None:
            return (g_loss + r_loss) / accumulation
        total = g_loss / accumulation + r_loss.detach() / accumulation
        if r_loss.requires_grad:
            self.auxiliary_step("reconstructor", r_loss)  # scales by 1/accumulation itself
        if soft_leaf is not None:
            soft, leaf = soft_leaf  # R's gradient on G's one-hots, carried on to G
            surrogate = (soft * leaf.grad).sum() if leaf.grad is not None else zero
            total = total + surrogate - surrogate.detach()
        return total

    def _cycle_terms(self, model, x, x_mask, y, y_mask, w, generator):
        """Reconstruction and adversarial terms on one decode of G, and D's update. Returns G's and
        R's losses and, for gumbel reconstruction with two models, (soft one-hots, R's input leaf)."""
        args = self.args
        gumbel = {name for name in ("reconstruction", "adversarial") if getattr(args, f"{name}_update") == "gumbel" and w[name] > 0}
        max_new = args.max_new_tokens or y.shape[1]
        fakes = self._decode(self.to_y, x, x_mask, max_new, generator, do_sample=args.do_sample, differentiable=bool(gumbel),
                             num_samples=args.num_samples)
        index = fakes.source_index
        d_mask = self._without_tag(fakes)  # what D sees: G's tokens, not the forced tag
        g_loss = r_loss = torch.zeros((), device=x.device)
        rewards, soft_leaf = {}, None
        if w["reconstruction"] > 0:
            if "reconstruction" in gumbel:
                soft = fakes.soft_tokens  # (R, T, V) straight-through one-hots, in G's graph
                leaf = soft.detach().requires_grad_() if self.reconstructor is not None else soft
                rec = self._forward(self.to_x, None, fakes.attention_mask, x[index], x_mask[index], soft=leaf)  # (R,)
                soft_leaf = (soft, leaf) if self.reconstructor is not None else None
            else:
                rec = self._forward(self.to_x, fakes.sequences, fakes.attention_mask, x[index], x_mask[index])  # (R,)
                rewards["reconstruction"] = -rec.detach()  # mean log-likelihood of x under R
            r_loss = w["reconstruction"] * rec.mean()
            self.record(reconstruction_loss=rec.detach().mean())
        if self.discriminator is not None and w["adversarial"] > 0:
            adv, reward = self._discriminator_signal("", fakes, d_mask, gumbel="adversarial" in gumbel)
            if adv is not None:
                g_loss = g_loss + w["adversarial"] * adv
            else:
                rewards["adversarial"] = reward
        if rewards:
            g_loss = g_loss + self._policy_gradient(self.to_y, x, x_mask, fakes, rewards, w, self._sampling(self.to_y, max_new, args.do_sample),
                                                    kl=args.kl_coef > 0)
        elif args.kl_coef > 0:
            # a teacher-forced forward on the decoded tokens, as the anchor's: the step-by-step decode's logits differ from it by rounding
            g_loss = g_loss + args.kl_coef * self._kl_to_start(self.to_y, x, x_mask, fakes)
        if self.discriminator is not None:
            self._discriminator_update("", self.to_y, y, y_mask, fakes, d_mask)
        self.record(output_length=d_mask.sum(-1).float().mean())
        if gumbel:
            self.record(tau=float(self.tau(self.state.global_step)))
        return g_loss, r_loss, soft_leaf

    def _source_adversarial_term(self, x, x_mask, y, y_mask, w, generator) -> torch.Tensor:
        """The other direction's adversarial term: R's loss for its outputs R(y) to pass D_X as real X
        texts (Gumbel one-hots into D_X, or REINFORCE on its reward), then D_X's update on real X
        against R(y). Returns R's loss (in the shared model's graph when ``shared_model``)."""
        args = self.args
        gumbel = args.adversarial_update == "gumbel"
        max_new = args.reconstruction_max_new_tokens or x.shape[1]
        fakes = self._decode(self.to_x, y, y_mask, max_new, generator, do_sample=args.do_sample, differentiable=gumbel, num_samples=args.num_samples)
        d_mask = self._without_tag(fakes, self.to_x)
        adv, reward = self._discriminator_signal("source_", fakes, d_mask, gumbel=gumbel)
        if adv is not None:
            loss = w["source_adversarial"] * adv
            if args.kl_coef > 0:
                loss = loss + args.kl_coef * self._kl_to_start(self.to_x, y, y_mask, fakes, prefix="source_")
        else:
            loss = self._policy_gradient(self.to_x, y, y_mask, fakes, {"source_adversarial": reward}, w,
                                         self._sampling(self.to_x, max_new, args.do_sample), prefix="source_", kl=args.kl_coef > 0)
        self._discriminator_update("source_", self.to_x, x, x_mask, fakes, d_mask)
        self.record(source_output_length=d_mask.sum(-1).float().mean())
        return loss

    def _discriminator_signal(self, prefix: str, fakes, d_mask, *, gumbel: bool):
        """The judgement of a decode by D (``prefix=""``) or D_X (``"source_"``): with ``gumbel``, the
        unweighted loss -log D(real | one-hots) through a frozen snapshot of the discriminator, else its
        reward `(R,)` for REINFORCE. Returns ``(loss, None)`` or ``(None, reward)``."""
        disc, judge = getattr(self, f"{prefix}discriminator"), self._rewards[f"{prefix}adversarial"]
        disc.eval()
        if gumbel:
            logp_real = disc.log_probs(disc.logits_from_soft(fakes.soft_tokens, d_mask, frozen=True))[:, judge.real_label]
            loss = -logp_real.mean()
            self.record(**{f"{prefix}adversarial_loss": loss.detach(), f"{prefix}discriminator_reward": logp_real.detach().exp().mean()})
            return loss, None
        reward = judge(fakes.sequences, d_mask, fakes.source_index)
        self.record(**{f"{prefix}discriminator_reward": reward.mean()})
        return None, reward

    def _discriminator_update(self, prefix: str, direction: Direction, real, real_mask, fakes, d_mask) -> None:
        """D's (``prefix=""``) or D_X's (``"source_"``) step on real texts against the decode of ``direction``."""
        disc = getattr(self, f"{prefix}discriminator")
        sync_discriminator_reference(self, disc, getattr(direction.model, "module", direction.model))
        discriminator_step(self, self._rewards[f"{prefix}adversarial"], real, real_mask, fakes.sequences.detach(), d_mask,
                           label_smoothing=self.args.discriminator_label_smoothing, name=f"{prefix}discriminator", prefix=prefix)

    @staticmethod
    def _teacher_forced(direction: Direction, x, x_mask, fakes) -> dict:
        """The inputs of ``direction``'s model that score its decode ``fakes`` in one forward (its tags
        included; one row per decoded row)."""
        src_ids, src_mask = direction.encoder_input(x, x_mask)
        index = fakes.source_index
        return dict(input_ids=src_ids[index], attention_mask=src_mask[index], decoder_input_ids=fakes.decoder_input_ids, use_cache=False)

    def _kl_to_start(self, direction: Direction, x, x_mask, fakes, logits=None, prefix: str = "") -> torch.Tensor:
        """The KL penalty of the decode ``fakes`` of ``direction`` (G's: ``self.to_y``; R's:
        ``self.to_x``) to its starting model: the k3 estimator exp(d) - d - 1,
        d = log p_start - log p, per decoded token (the forced tag left out), averaged over the
        tokens. ``logits``: the model's `(R, T, V)` on ``fakes`` if already computed. Logs ``{prefix}kl``."""
        kwargs = self._teacher_forced(direction, x, x_mask, fakes)
        if logits is None:
            logits = direction.model(**kwargs).logits
        own = self._without_tag(fakes, direction)
        start = self.ref_reconstructor if direction is self.to_x and self.reconstructor is not None else self.ref_model
        with torch.no_grad(), reference_of(start, direction.model) as reference:
            ref_logits = reference(**kwargs).logits
        delta = token_logprobs(ref_logits, fakes.sequences, own) - token_logprobs(logits, fakes.sequences, own)
        kl = ((delta.exp() - delta - 1) * own).sum() / own.sum().clamp_min(1)
        self.record(**{f"{prefix}kl": kl.detach()})
        return kl

    def _policy_gradient(self, direction: Direction, x, x_mask, fakes, rewards: dict, w: dict, sampling: dict, prefix: str = "",
                         kl: bool = False) -> torch.Tensor:
        """REINFORCE on the samples of ``direction`` (G's: ``self.to_y``; R's: ``self.to_x``):
        -(Σ_k w_k (r_k - b_k) / s_k) · log q(ŷ | x), averaged over rows, with q the distribution the
        samples were drawn from (temperature and processors applied) and s_k the batch's
        root-mean-square of r_k - b_k with ``scale_rewards="batch"`` (else 1). Logs ``{prefix}pg_loss``.
        ``kl``: add ``kl_coef`` times the KL penalty to the starting model on the same forward."""
        args = self.args
        advantage = torch.zeros_like(fakes.sequences[:, 0], dtype=torch.float32)
        valid = None
        for name, reward in rewards.items():
            reward, valid = drop_nonfinite(reward, name, valid)
            if args.baseline == "leave_one_out":
                baseline = leave_one_out_baseline(reward, args.num_samples)
            elif args.baseline == "moving_average":
                mean = self.process_mean(reward[valid])  # over every process's rows
                baseline = torch.full_like(reward, self.baselines[name].update(mean) if mean is not None else 0.0)
            else:
                baseline = torch.zeros_like(reward)
            centred = (reward - baseline).float()
            if args.scale_rewards == "batch":
                # the root-mean-square advantage over the valid rows (no host sync), not the rewards' std: with a moving-average
                # baseline a batch of near-equal rewards far from the baseline would otherwise be divided by ~0 (measured: pg_loss 1.9e6)
                rms = ((centred.pow(2) * valid).sum() / valid.sum().clamp_min(1)).sqrt()
                centred = centred / rms.clamp_min(1e-6)
            advantage = advantage + w[name] * centred
            self.record(**{f"{name}_reward": reward[valid].mean() if valid.any() else None})
        advantage = advantage * valid
        logits = direction.model(**self._teacher_forced(direction, x, x_mask, fakes)).logits  # outside DDP, as every other term
        # (gradients averaged in training_step)
        own = self._without_tag(fakes, direction)
        logp = sampled_logprobs(direction.engine, logits, fakes.sequences, own, **sampling)  # (R, T)
        loss, _ = policy_loss(logp, advantage.detach(), own, loss_type="reinforce")
        self.record(**{f"{prefix}pg_loss": loss.detach()})
        if kl:
            loss = loss + self.args.kl_coef * self._kl_to_start(direction, x, x_mask, fakes, logits, prefix=prefix)
        return loss

    def training_step(self, model, inputs, num_items_in_batch=None):
        loss = super().training_step(model, inputs, num_items_in_batch)
        if self.accelerator.num_processes > 1 and self.accelerator.sync_gradients:
            # every loss term runs G outside its DDP wrapper (several forwards and decodes a step): average here
            self._all_reduce_gradients(unwrap_model(self.model))
        return loss
