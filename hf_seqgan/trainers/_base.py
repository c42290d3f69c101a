"""What every trainer of the library shares.

:class:`BaseTrainer` is a `Seq2SeqTrainer` with three additions, so that each technique's trainer
only composes the engines:

- **auxiliary models** (a discriminator, a reconstructor): :meth:`BaseTrainer.add_auxiliary`
  registers a model with its own AdamW optimizer and learning-rate scheduler; the model is placed
  and wrapped by accelerate (DDP in a multi-process run) and updated by
  :meth:`BaseTrainer.auxiliary_step`. Auxiliary models are written by ``save_model`` to a subfolder
  named after them (``discriminator/``) and, with their optimizer, scheduler and any extra state a
  trainer declares (:meth:`BaseTrainer._extra_state`), into every checkpoint, from which
  ``train(resume_from_checkpoint=...)`` restores them exactly.
- **metrics**: :meth:`BaseTrainer.record` buffers method-specific figures per mode ("train" /
  "eval"); they are averaged over every process's values and merged into the Trainer's logs in
  :meth:`log`, so TensorBoard, W&B and ``trainer_state.json`` receive them.
- **PEFT**: :func:`apply_peft` wraps a model with `get_peft_model` after checking the config, picking
  the attention projections as LoRA targets for families peft has no default for (Marian, mBART,
  Pegasus).
- **the Hub**: ``create_model_card`` / ``save_model`` write a model card for the generator and each
  auxiliary model; ``push_to_hub`` and the periodic ``hub_strategy`` push them all (see
  :mod:`hf_seqgan.hub`). ``trainer.auxiliary_hub_model_ids = {"discriminator": "me/my-d"}`` sends
  an auxiliary model to a repo of its own instead of a subfolder of the generator's.

The auxiliary optimizers are deliberately not passed through ``accelerator.prepare``: an accelerate
optimizer skips ``step()`` on the generator's gradient-accumulation micro-batches, while an
auxiliary model is updated on every call of :meth:`auxiliary_step`.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import logging
from collections import defaultdict
from typing import Any, Optional

import torch
from transformers import Seq2SeqTrainer, Seq2SeqTrainingArguments, get_scheduler

from ._checkpointing import AUXILIARY_STATE_NAME, Checkpointing  # noqa: F401  (the state file's name, imported from here)
from ._guards import NonFiniteTrainingError, TrainingGuards

__all__ = ["BaseConfig", "BaseTrainer", "Auxiliary", "NonFiniteTrainingError", "apply_peft", "with_default_targets"]

logger = logging.getLogger(__name__)
# LoRA targets tried in order when peft has no default for the model family: the attention query and
# value projections of BART-style (Marian, mBART, Pegasus, M2M100...), T5-style and BERT-style models.
DEFAULT_PEFT_TARGETS = (("q_proj", "v_proj"), ("q", "v"), ("query", "value"))
AUXILIARY_OPTIMIZERS = {"adamw": torch.optim.AdamW, "adam": torch.optim.Adam, "sgd": torch.optim.SGD}


def apply_peft(model, peft_config, *, what: str = "model"):
    """``get_peft_model(model, peft_config)`` with clear errors (the import is guarded)."""
    try:
        from peft import PeftConfig, PeftModel, get_peft_model
    except ImportError:  # pragma: no cover - peft is a dependency, but keep the error clear
        raise ImportError("A peft_config needs the `peft` library: `pip install peft`.") from None
    if not isinstance(peft_config, PeftConfig):
        raise TypeError(f"The {what}'s peft_config must be a peft.PeftConfig (e.g. LoraConfig(task_type='SEQ_2_SEQ_LM')), got {type(peft_config).__name__}.")
    if isinstance(model, PeftModel):
        raise ValueError(f"The {what} is already a PeftModel and a peft_config was given too: pass one or the other.")
    return get_peft_model(model, with_default_targets(model, peft_config))


def with_default_targets(model, peft_config):
    """``peft_config`` with ``target_modules`` filled in when it has none and peft knows no default
    for the model's family (peft 0.21 has LoRA defaults for BART and T5 but not for Marian, mBART or
    Pegasus, and raises): the first of :data:`DEFAULT_PEFT_TARGETS` whose modules are all linear
    layers of the model, else ``"all-linear"``. The given config is not modified."""
    from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as defaults

    if getattr(peft_config, "target_modules", "") is not None or hasattr(peft_config, "feedforward_modules"):
        return peft_config  # set by the user, not a target-module method, or IA3 (which pairs targets with feed-forward modules)
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    if model_type in defaults:
        return peft_config
    linear = {name.rsplit(".", 1)[-1] for name, module in model.named_modules() if isinstance(module, torch.nn.Linear)}
    targets = next((list(pair) for pair in DEFAULT_PEFT_TARGETS if set(pair) <= linear), "all-linear")
    logger.info("peft has no default target modules for model_type=%r: using %s.", model_type, targets)
    peft_config = copy.deepcopy(peft_config)
    peft_config.target_modules = targets
    return peft_config


@dataclasses.dataclass
class BaseConfig(Seq2SeqTrainingArguments):
    """The fields every trainer of the library shares, on top of `Seq2SeqTrainingArguments`.

    ``max_nonfinite_steps``: an optimizer step whose loss or gradient norm is NaN or infinite is
    skipped (no parameter or optimizer moment moves; the learning-rate schedule goes on) and counted
    in the logged ``nonfinite_steps``; after this many such steps in a row training stops with a
    :class:`NonFiniteTrainingError` that names what went non-finite and the last good checkpoint.
    """

    max_nonfinite_steps: int = dataclasses.field(default=3, metadata={"help": "Consecutive optimizer steps with a NaN/inf loss or gradient norm (each skipped) after which training stops with an error."})

    def __post_init__(self):
        super().__post_init__()
        if isinstance(self.max_nonfinite_steps, bool) or not isinstance(self.max_nonfinite_steps, int) or self.max_nonfinite_steps < 1:
            raise ValueError(f"max_nonfinite_steps must be an integer >= 1, got {self.max_nonfinite_steps!r}.")


@dataclasses.dataclass
class Auxiliary:
    """A model trained beside the generator, with its own optimizer and scheduler."""

    model: torch.nn.Module  # as prepared by accelerate (DDP-wrapped in a multi-process run)
    optimizer: torch.optim.Optimizer
    scheduler: Optional[Any]
    max_grad_norm: Optional[float]
    processing_class: Any = None
    steps: int = 0
    pending: bool = False  # gradients accumulated, update not yet taken

    @property
    def unwrapped(self) -> torch.nn.Module:
        return getattr(self.model, "module", self.model)


class BaseTrainer(TrainingGuards, Checkpointing, Seq2SeqTrainer):
    """`Seq2SeqTrainer` with auxiliary models, metric buffers and checkpointed extra state.

    A trainer of the library describes itself with class attributes, read by the command line, the
    recipes and the model cards (:mod:`hf_seqgan.registry`), so that a new technique is one file:

    - ``cli_name``: its name in ``hf-seqgan config <name>`` and the recipes' ``--trainer`` (a string
      literal; a class without one is not listed);
    - ``config_class``: its config (a `BaseConfig` subclass);
    - ``summary``: one line for ``hf-seqgan list``;
    - ``supervised``: whether it learns from ``(source, target)`` pairs (the supervised recipes run it);
    - ``roles``: what each auxiliary model does, for its card;
    - :meth:`describe`: the method's name, tag, description and papers for the card, as a function of
      the config (e.g. the mode), with BibTeX for papers not in ``model_cards/references.bib``.
    """

    cli_name: Optional[str] = None
    config_class: Optional[type] = None
    summary: str = ""
    supervised: bool = False
    roles: dict = {
        "discriminator": "it scores outputs as real (a reference) or fake (a generated output).",
        "reconstructor": "it maps the forward model's outputs back to their inputs (cycle consistency).",
    }

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "cli_name" in cls.__dict__ and cls.cli_name:
            from ..registry import register

            register(cls)

    @classmethod
    def describe(cls, args):
        """The method of this trainer for its model card (a :class:`hf_seqgan.cards.Method`)."""
        from ..cards import Method

        return Method(cls.__name__, "seq2seq", cls.summary or f"Trained with `{cls.__name__}`.", [])

    @classmethod
    def _generator_and_args(cls, model, args, config_class, run_name: str, peft_config=None):
        """The opening every trainer shares: check the generator, default or type-check the config,
        wrap the generator with ``peft_config``. Returns ``(model, args)``."""
        from ..rollout import check_seq2seq_model
        from ..sampling import unwrap_model

        if model is None:
            raise ValueError(f"{cls.__name__} needs a model (an AutoModelForSeq2SeqLM).")
        check_seq2seq_model(model)
        if args is None:
            args = config_class(output_dir=f"{type(unwrap_model(model)).__name__}-{run_name}")
        elif not isinstance(args, config_class):
            raise TypeError(f"args must be a {config_class.__name__}, got {type(args).__name__}; build one with the same "
                            "fields (it subclasses Seq2SeqTrainingArguments).")
        if peft_config is not None:
            model = apply_peft(model, peft_config, what="generator")
        return model, args

    def __init__(self, *args, **kwargs):
        #: auxiliary model name -> Hub repo id of its own; absent: pushed as a subfolder of the generator's repo
        self.auxiliary_hub_model_ids: dict[str, str] = {}
        self._model_card_kwargs: dict[str, Any] = {}  # remembered from create_model_card/push_to_hub for later saves
        super().__init__(*args, **kwargs)
        self._auxiliaries: dict[str, Auxiliary] = {}
        self._metrics: dict[str, defaultdict] = {"train": defaultdict(list), "eval": defaultdict(list)}
        self._nonfinite = {"loss": None, "total": 0, "streak": 0, "first_bad_step": None}
        if self.train_dataset is not None and hasattr(self.train_dataset, "__len__") and len(self.train_dataset) == 0:
            raise ValueError(f"The train_dataset is empty (0 rows): {type(self).__name__} has nothing to train on. Check the data "
                             "files and any filtering or max_train_samples that removed every row.")

    # ------------------------------------------------------------------ auxiliary models
    def add_auxiliary(
        self,
        name: str,
        model: torch.nn.Module,
        *,
        learning_rate: float,
        weight_decay: float = 0.0,
        lr_scheduler_type: str = "constant",
        warmup_steps: int = 0,
        total_steps: Optional[int] = None,
        max_grad_norm: Optional[float] = 1.0,
        processing_class: Any = None,
        optimizer: str = "adamw",
    ) -> Auxiliary:
        """Register ``model`` under ``name`` (also its subfolder in saves) and build its optimizer
        (``"adamw"``, ``"adam"`` or ``"sgd"``) and learning-rate scheduler."""
        if name in self._auxiliaries:
            raise ValueError(f"An auxiliary model named {name!r} is already registered.")
        if not learning_rate > 0:
            raise ValueError(f"The {name}'s learning rate must be > 0, got {learning_rate}.")
        model = model.to(self.args.device)
        params = [p for p in model.parameters() if p.requires_grad]
        if not params:
            raise ValueError(f"The {name} has no trainable parameters.")
        if optimizer not in AUXILIARY_OPTIMIZERS:
            raise ValueError(f"The {name}'s optimizer must be one of {sorted(AUXILIARY_OPTIMIZERS)}, got {optimizer!r}.")
        opt = AUXILIARY_OPTIMIZERS[optimizer](params, lr=learning_rate, weight_decay=weight_decay)
        scheduler = get_scheduler(lr_scheduler_type, opt, num_warmup_steps=warmup_steps, num_training_steps=total_steps)
        prepared = self.accelerator.prepare_model(model)
        aux = Auxiliary(prepared, opt, scheduler, max_grad_norm, processing_class)
        self._auxiliaries[name] = aux
        return aux

    def auxiliary(self, name: str) -> Auxiliary:
        if name not in self._auxiliaries:
            raise KeyError(f"No auxiliary model {name!r}; registered: {sorted(self._auxiliaries)}.")
        return self._auxiliaries[name]

    def auxiliary_step(self, name: str, loss: torch.Tensor) -> bool:
        """Backward ``loss`` into the auxiliary model ``name`` and update it at the generator's
        optimizer-step boundary: under gradient accumulation its gradients accumulate over the
        micro-batches (each scaled by 1/accumulation steps) exactly like the generator's, so that
        2 x 8 and 1 x 16 give the same update. Returns whether the model was updated."""
        aux = self.auxiliary(name)
        if not aux.pending:
            aux.optimizer.zero_grad(set_to_none=True)
        accumulation = self.accumulation_steps
        in_training_loop = self.model.training and accumulation > 1
        (loss / accumulation if in_training_loop else loss).backward()
        if in_training_loop and not self.accelerator.sync_gradients:
            aux.pending = True
            return False
        if aux.max_grad_norm:
            torch.nn.utils.clip_grad_norm_(aux.model.parameters(), aux.max_grad_norm)
        aux.optimizer.step()
        if aux.scheduler is not None:
            aux.scheduler.step()
        aux.pending = False
        aux.steps += 1
        return True

    # ------------------------------------------------------------------ accumulation and several processes
    @property
    def accumulation_steps(self) -> int:
        """The gradient-accumulation steps of the current optimizer step (the last one of an epoch may be shorter)."""
        return getattr(self, "current_gradient_accumulation_steps", None) or self.args.gradient_accumulation_steps

    def _unsynced(self, model, always: bool = False):
        """``model.no_sync()`` for a DDP-wrapped model on a gradient-accumulation micro-batch (or
        ``always``); a null context otherwise."""
        if hasattr(model, "no_sync") and (always or not self.accelerator.sync_gradients):
            return model.no_sync()
        return contextlib.nullcontext()

    @torch.no_grad()
    def _all_reduce_gradients(self, module: torch.nn.Module) -> None:
        """Average ``module``'s accumulated gradients over the processes in one flat all-reduce: for a
        model whose forwards ran outside its DDP wrapper (step-by-step decodes, several forwards per
        step), so that DDP's reducer never fired. Call at the optimizer-step boundary."""
        params = [p for p in module.parameters() if p.requires_grad]
        if all(p.grad is None for p in params):
            return  # no loss reached this model this step, on every process alike
        for p in params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        flat = torch.cat([p.grad.reshape(-1) for p in params])  # (P,)
        torch.distributed.all_reduce(flat)
        flat /= self.accelerator.num_processes
        offset = 0
        for p in params:
            p.grad.copy_(flat[offset : offset + p.numel()].view_as(p.grad))
            offset += p.numel()

    def process_mean(self, values: torch.Tensor) -> Optional[float]:
        """The mean of ``values`` over every process's elements (None when there are none anywhere)."""
        stats = torch.stack([values.float().sum(), torch.tensor(float(values.numel()), device=values.device)])
        if self.accelerator.num_processes > 1:
            stats = self.accelerator.reduce(stats, reduction="sum")
        return float(stats[0] / stats[1]) if stats[1] > 0 else None

    # ------------------------------------------------------------------ metrics
    def record(self, **values) -> None:
        """Buffer figures for the next log (averaged there), under the current mode."""
        mode = "train" if self.model.training else "eval"
        for key, value in values.items():
            if value is None:
                continue
            self._metrics[mode][key].append(float(value.detach().float().mean()) if torch.is_tensor(value) else float(value))

    def _averaged(self, buffers: dict) -> dict[str, float]:
        """The mean of every buffered figure, over every process's values (TRL gathers them too): in
        a multi-process run the keys are gathered first, so that a figure recorded on one process
        only is still averaged over the values that exist."""
        if self.accelerator.num_processes == 1:
            return {key: sum(values) / len(values) for key, values in buffers.items() if values}
        from accelerate.utils import gather_object

        keys = sorted(set().union(*gather_object([sorted(k for k, v in buffers.items() if v)])))
        if not keys:
            return {}
        stats = torch.tensor([[sum(buffers.get(k, [])), float(len(buffers.get(k, [])))] for k in keys], dtype=torch.float64,
                             device=self.args.device)  # (K, 2): sum and count of this process
        stats = self.accelerator.reduce(stats, reduction="sum")
        return {key: float(total / count) for key, (total, count) in zip(keys, stats.tolist()) if count > 0}

    def log(self, logs: dict[str, float], start_time: Optional[float] = None) -> None:
        mode = "train" if self.model.training else "eval"
        metrics = self._averaged(self._metrics[mode])
        if mode == "train" and self._nonfinite["total"]:
            metrics["nonfinite_steps"] = self._nonfinite["total"]
        if mode == "eval":
            metrics = {f"eval_{key}": value for key, value in metrics.items()}
        logs.update(metrics)
        super().log(logs, start_time)
        self._metrics[mode].clear()

