"""The recipes' models and training: :func:`load_model_and_tokenizer` (a given checkpoint, or a tiny model
built from a config with a tokenizer trained on the text), :func:`build_trainer` /
:func:`build_cycle_trainer`, :func:`train_and_save`, decoding (:func:`generate_texts`,
:func:`direction_tokens`) and a small evaluation classifier (:func:`train_classifier`, :func:`classify`).
"""

from __future__ import annotations

import logging
from typing import Optional, Sequence

import torch

from .arguments import _check_model_sources, trainer_classes

logger = logging.getLogger("hf_seqgan.recipes")

__all__ = ["build_trainer", "load_model_and_tokenizer", "generate_texts", "direction_tokens", "domain_vocabulary", "build_cycle_trainer", "train_classifier", "classify", "train_and_save"]


def build_trainer(name: str, model, args, tokenizer, train_dataset, eval_dataset=None, **kwargs):
    """The trainer ``name`` on tokenized ``(input_ids, labels)`` datasets, with a padding collator.

    ``mle`` is `Seq2SeqTrainer` with :func:`~hf_seqgan.trainers.losses.token_loss_func` (plain
    `Seq2SeqTrainer` over-scales the update under gradient accumulation, see NOTES)."""
    from transformers import DataCollatorForSeq2Seq

    _, trainer_cls = trainer_classes(name)
    if name == "mle":
        from ..trainers.losses import token_loss_func

        kwargs.setdefault("compute_loss_func", token_loss_func(args.label_smoothing_factor))
    # with a compute_loss_func the Trainer hands the labels to it, not to the model: the gold decoder
    # inputs come from the collator (the trainers take them from the batch when present)
    collator = DataCollatorForSeq2Seq(tokenizer, model=model, label_pad_token_id=-100)
    return trainer_cls(model=model, args=args, train_dataset=train_dataset, eval_dataset=eval_dataset,
                       processing_class=tokenizer, data_collator=kwargs.pop("data_collator", collator), **kwargs)


def load_model_and_tokenizer(model_args, training_texts: Sequence[str], *, seed: int = 0, special_tokens: Sequence[str] = (), max_length: int = 256):
    """Step 4 of every recipe: ``(model, tokenizer, description)``: the given model and its
    tokenizer (``special_tokens`` added, embeddings resized), or a tiny model of
    ``model_args.tiny_family`` with a byte-level BPE tokenizer trained on ``training_texts``."""
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    from ..tiny import LANGUAGE_CODES, build_tiny_model, train_tokenizer

    if model_args.model_name_or_path:
        name = model_args.model_name_or_path
        _check_model_sources(model_args)
        try:
            tokenizer = AutoTokenizer.from_pretrained(model_args.tokenizer_name or name)
            model = AutoModelForSeq2SeqLM.from_pretrained(name)
        except OSError as err:
            raise OSError(f"Could not load {name!r} ({err}). With no network, pass a local folder saved with save_pretrained, "
                          "or leave --model_name_or_path unset for the tiny embedded model.") from err
        new = [t for t in special_tokens if t not in tokenizer.get_vocab()]
        if new:
            tokenizer.add_special_tokens({"additional_special_tokens": new}, replace_extra_special_tokens=False)
            model.resize_token_embeddings(len(tokenizer))
        return model, tokenizer, name
    d = model_args.tiny_d_model
    vocab = model_args.tiny_vocab_size
    if getattr(model_args, "preset", None) and "tiny_vocab_size" not in getattr(model_args, "explicit", set()):
        from ..pretraining import choose_vocab_size

        vocab = choose_vocab_size(training_texts, maximum=vocab)  # the preset's size is the cap
    tokenizer = train_tokenizer(training_texts, vocab_size=vocab, language_codes=tuple(LANGUAGE_CODES) + tuple(special_tokens),
                                model_max_length=max_length)
    drop = model_args.tiny_dropout
    attention_drop = drop if model_args.tiny_attention_dropout is None else model_args.tiny_attention_dropout
    dropout = (dict(dropout_rate=drop) if model_args.tiny_family == "t5" else
               dict(dropout=drop, attention_dropout=attention_drop, scale_embedding=model_args.tiny_scale_embedding))
    model = build_tiny_model(model_args.tiny_family, tokenizer, seed=seed, d_model=d, ffn=4 * d, layers=model_args.tiny_layers,
                             heads=model_args.tiny_heads or max(1, d // 16), max_positions=max(256, max_length + 8), **dropout)
    description = (f"tiny {model_args.tiny_family} built from a config (d_model={d}, {model_args.tiny_layers} layers, "
                   f"{sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters), tokenizer of {len(tokenizer)} tokens trained on the training text"
                   + (f", --preset {model_args.preset}" if getattr(model_args, "preset", None) else ""))
    return model, tokenizer, description


def generate_texts(model, tokenizer, sources: Sequence[str], *, max_source_length: int, max_new_tokens: int, batch_size: int = 64,
                   num_samples: int = 1, source_token_id: Optional[int] = None, forced_token_id: Optional[int] = None,
                   logits_processor=None, no_repeat_ngram_size: int = 0, no_doubled_tokens: bool = False, **sample_kwargs) -> list[str]:
    """Decode ``sources`` in batches with the :class:`~hf_seqgan.rollout.RolloutEngine` (greedy
    unless ``do_sample=True``; ``generator``, ``top_k``, ... passed on); ``num_samples`` outputs per
    source, source-major. ``source_token_id`` is put in front of every source and ``forced_token_id``
    forced as the first generated token (a shared model's direction tags, see :func:`direction_tokens`).
    ``no_repeat_ngram_size`` > 0 adds transformers' `NoRepeatNGramLogitsProcessor` (no n-gram of the
    output repeated); ``no_doubled_tokens`` adds :class:`~hf_seqgan.logits_process.NoDoubledTokenLogitsProcessor`
    (no token twice in a row)."""
    from transformers import ForcedBOSTokenLogitsProcessor, LogitsProcessorList, NoRepeatNGramLogitsProcessor

    from ..directions import prepend_token
    from ..logits_process import NoDoubledTokenLogitsProcessor
    from ..rollout import RolloutEngine

    sample_kwargs.setdefault("do_sample", False)
    processors = LogitsProcessorList(logits_processor or [])
    if forced_token_id is not None:
        processors.insert(0, ForcedBOSTokenLogitsProcessor(forced_token_id))
        max_new_tokens += 1
    if no_repeat_ngram_size:
        processors.append(NoRepeatNGramLogitsProcessor(no_repeat_ngram_size))
    if no_doubled_tokens:
        processors.append(NoDoubledTokenLogitsProcessor())
    model.eval()
    engine = RolloutEngine(model, tokenizer)
    out: list[str] = []
    for i in range(0, len(sources), batch_size):
        batch = engine.tokenize(list(sources[i : i + batch_size]), max_length=max_source_length)
        ids, mask = batch["input_ids"], batch["attention_mask"]  # (B, S)
        ids, mask = prepend_token(ids, mask, source_token_id)  # (B, 1 + S) with a direction tag
        rollout = engine.sample(ids, mask, max_new_tokens=max_new_tokens, num_samples=num_samples,
                                logits_processor=processors or None, **sample_kwargs)
        out += engine.decode(rollout)
    return [text.strip() for text in out]


def direction_tokens(args, tokenizer, to: str = "y") -> dict:
    """The :func:`generate_texts` keywords that make a model of a
    :class:`~hf_seqgan.trainers.cycle.CycleTrainer` (``args``: its `CycleConfig`) translate into
    domain ``to`` ("x" or "y"): its direction tokens, nothing when the config has none."""
    from ..directions import Direction

    if not args.x_token:
        return {}
    tags = tokenizer.convert_tokens_to_ids([args.x_token, args.y_token])
    source, target = tags if to == "y" else tags[::-1]
    direction = Direction(model=None, engine=None, target_tag=target, source_tag=source, position=args.direction_token_position)
    return {"source_token_id": direction.encoder_tag, "forced_token_id": direction.forced_tag}


def domain_vocabulary(trainer, to: str = "y") -> dict:
    """The :func:`generate_texts` keywords that keep a decode of a
    :class:`~hf_seqgan.trainers.cycle.CycleTrainer`'s model into domain ``to`` in that domain's tokens
    (its ``domain_vocabulary_ratio``), as in training; nothing when the restriction is off."""
    from transformers import SuppressTokensLogitsProcessor

    suppressed = (trainer.to_y if to == "y" else trainer.to_x).suppress_tokens
    return {"logits_processor": [SuppressTokensLogitsProcessor(suppressed, device=trainer.args.device)]} if suppressed else {}


def build_cycle_trainer(model, args, tokenizer, x_texts: Sequence[str], y_texts: Sequence[str], *, max_x_length: int, max_y_length: int, **kwargs):
    """A :class:`~hf_seqgan.trainers.cycle.CycleTrainer` on two unaligned corpora of texts (X, the
    source domain, and Y), tokenized here; ``kwargs`` go to the trainer (reconstructor, discriminator...)."""
    from datasets import Dataset

    _, trainer_cls = trainer_classes("cycle")
    if args.x_token:  # each direction forces its own domain token (mBART's generation config forces one language)
        model.generation_config.forced_bos_token_id = None

    def tokenized(texts, max_length):
        data = Dataset.from_dict({"text": list(texts)})
        return data.map(lambda b: tokenizer(b["text"], max_length=max_length, truncation=True), batched=True, remove_columns=["text"], desc="Tokenizing")

    return trainer_cls(model=model, args=args, train_dataset=tokenized(x_texts, max_x_length), target_domain_dataset=tokenized(y_texts, max_y_length),
                       processing_class=tokenizer, **kwargs)


def train_classifier(classifier, texts: Sequence[str], labels: Sequence[int], *, sources: Optional[Sequence[str]] = None, steps: int = 100,
                     batch_size: int = 32, learning_rate: float = 1e-3, seed: int = 0, disable_tqdm: bool = False):
    """Train a :class:`~hf_seqgan.discriminators.SequenceDiscriminator` (its classifier) on labeled
    texts (with sources when conditional) by cross-entropy; returns it in eval mode."""
    from tqdm.auto import trange

    if len(texts) != len(labels) or not texts:
        raise ValueError(f"train_classifier needs one label per text and at least one text, got {len(texts)} texts and {len(labels)} labels.")
    device = classifier.device
    targets = torch.as_tensor(list(labels), dtype=torch.long)  # (N,)
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW([p for p in classifier.parameters() if p.requires_grad], lr=learning_rate)
    classifier.train()
    for _ in trange(steps, desc="Training the evaluation classifier", disable=disable_tqdm):
        idx = torch.randint(len(texts), (min(batch_size, len(texts)),), generator=generator)  # (b,)
        logits = classifier.logits_from_texts([texts[i] for i in idx], [sources[i] for i in idx] if sources is not None else None)  # (b, C)
        loss = torch.nn.functional.nll_loss(classifier.log_probs(logits), targets[idx].to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return classifier.eval()


@torch.no_grad()
def classify(classifier, texts: Sequence[str], *, sources: Optional[Sequence[str]] = None, batch_size: int = 128) -> torch.Tensor:
    """Class log-probabilities `(N, C)` of ``texts`` under ``classifier`` (eval mode)."""
    classifier.eval()
    out = []
    for i in range(0, len(texts), batch_size):
        part = list(sources[i : i + batch_size]) if sources is not None else None
        out.append(classifier.log_probs(classifier.logits_from_texts(list(texts[i : i + batch_size]), part)).cpu())
    return torch.cat(out) if out else torch.empty(0, classifier.num_labels)


def train_and_save(trainer, training_args, eval_dataset=None, *, time_budget: float = 0.0, skip_training: bool = False) -> dict[str, float]:
    """Train; evaluate the teacher-forced loss on ``eval_dataset`` if given; save the model (and the
    tokenizer, auxiliary models) and the trainer state (the curves' source); push to the hub with
    ``--push_to_hub``. Returns ``train_loss``, ``train_runtime_s``, ``train_steps`` (and ``eval_loss``).
    ``time_budget`` (minutes) stops training early; a progress line (steps/s, ETA) is logged every
    ``logging_steps``; ``skip_training`` only evaluates.

    The loss is evaluated before saving, so that nothing saving does (model cards, hub pushes) can
    touch the state `evaluate()` runs in: in transformers 5, building a second `TrainingArguments`
    resets accelerate's shared state."""
    from ..pretraining import ProgressCallback, TimeBudgetCallback

    if skip_training:
        metrics = {}
        if eval_dataset is not None:
            metrics["eval_loss"] = trainer.evaluate(eval_dataset)["eval_loss"]
        return metrics
    trainer.add_callback(ProgressCallback(time_budget))
    if time_budget:
        trainer.add_callback(TimeBudgetCallback(time_budget))
    result = trainer.train()
    metrics = {"train_loss": result.training_loss, "train_runtime_s": result.metrics["train_runtime"], "train_steps": float(trainer.state.global_step)}
    if eval_dataset is not None:
        metrics["eval_loss"] = trainer.evaluate(eval_dataset)["eval_loss"]
    trainer.save_model()
    trainer.save_state()
    if training_args.push_to_hub:
        trainer.push_to_hub()
    return metrics
