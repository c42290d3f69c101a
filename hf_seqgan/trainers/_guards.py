"""What every trainer checks while it trains: batches that hold no target token, and optimizer steps
whose loss or gradient norm is not finite (skipped, counted, and after ``max_nonfinite_steps`` in a
row a :class:`NonFiniteTrainingError` naming the last good checkpoint). A mixin of
:class:`~hf_seqgan.trainers.BaseTrainer`."""

from __future__ import annotations

import logging
import math
import os

import torch

__all__ = ["NonFiniteTrainingError", "TrainingGuards"]

logger = logging.getLogger("hf_seqgan.trainers._base")


class NonFiniteTrainingError(RuntimeError):
    """Training stopped: the loss or the gradient norm was NaN or infinite for too many optimizer steps in a row."""


class TrainingGuards:
    """Input checks and the non-finite guard of :class:`~hf_seqgan.trainers.BaseTrainer`."""

    # ------------------------------------------------------------------ input checks
    def _check_labels(self, inputs) -> None:
        """A batch whose labels are all -100 trains on nothing (a loss of 0 or NaN, a discriminator fed
        empty "real" texts): refuse it; warn once when only some rows have no target token."""
        labels = inputs.get("labels") if hasattr(inputs, "get") else None
        if not torch.is_tensor(labels) or labels.numel() == 0:
            return
        per_row = labels.ne(-100).any(-1) if labels.dim() > 1 else labels.ne(-100)
        if not bool(per_row.any()):
            raise ValueError(
                f"Every label of this batch is -100 (ignored): the {labels.shape[0]} rows have no target token to train on. The "
                "targets were probably truncated away or padded with -100 throughout: check the tokenized `labels` column "
                "(max target length, the tokenizer's text_target) and the collator's label_pad_token_id.")
        if not bool(per_row.all()) and not getattr(self, "_warned_empty_rows", False):
            self._warned_empty_rows = True
            logger.warning("%d of %d rows of a training batch have no target token (labels all -100): they train on empty targets. "
                           "Drop empty targets from the dataset.", int((~per_row).sum()), per_row.numel())

    # ------------------------------------------------------------------ non-finite steps
    def training_step(self, model, inputs, num_items_in_batch=None):
        self._check_labels(inputs)
        loss = super().training_step(model, inputs, num_items_in_batch)
        if not bool(torch.isfinite(loss.detach()).all()) and self._nonfinite["loss"] is None:
            self._nonfinite["loss"] = float(loss.detach().float().mean())
        return loss

    def _get_grad_norm(self, model, grad_norm=None):
        """The Trainer's gradient norm, then the non-finite check: a step whose loss or gradient norm
        is NaN/inf drops its gradients (so the optimizer moves nothing) and counts towards
        ``max_nonfinite_steps``."""
        grad_norm = super()._get_grad_norm(model, grad_norm=grad_norm)
        state, bad = self._nonfinite, []
        if state["loss"] is not None:
            bad.append(f"the loss ({state['loss']})")
        norm = float(grad_norm) if grad_norm is not None else None
        if norm is not None and not math.isfinite(norm):
            bad.append(f"the gradient norm ({norm})")
        state["loss"] = None
        if not bad:
            state["streak"], state["first_bad_step"] = 0, None
            return grad_norm
        for param in model.parameters():
            param.grad = None  # optimizers skip parameters without a gradient: weights and moments stay as they are
        state["total"] += 1
        state["streak"] += 1
        if state["first_bad_step"] is None:
            state["first_bad_step"] = self.state.global_step
        limit = getattr(self.args, "max_nonfinite_steps", 3)
        what = " and ".join(bad)
        if state["streak"] >= limit:
            raise NonFiniteTrainingError(
                f"Training stopped at step {self.state.global_step}: {what} went non-finite for {state['streak']} optimizer steps in a row "
                f"(max_nonfinite_steps={limit}; each was skipped). {self._last_good_checkpoint(state['first_bad_step'])} Lower the "
                "learning rate, check the reward functions and the data, or raise max_nonfinite_steps.")
        logger.warning("Step %d: %s went non-finite; the update is skipped (%d in a row, the limit is %d).", self.state.global_step, what,
                       state["streak"], limit)
        return grad_norm

    def _last_good_checkpoint(self, first_bad_step: int) -> str:
        """The newest checkpoint saved before the weights went bad (the weights of step s are judged by the loss of step s + 1)."""
        from ._checkpointing import checkpoint_steps

        out = self.args.output_dir
        steps = [step for step in checkpoint_steps(out) if step < first_bad_step]
        if not steps:
            return "No checkpoint was saved before the first non-finite step."
        return f"The last good checkpoint is {os.path.join(out, f'checkpoint-{steps[-1]}')} (resume with resume_from_checkpoint=<that folder>)."
