"""The cross-entropies the trainers share: the token-level loss and its `Trainer` hook, and the
per-sequence cross-entropy of the cycle terms.

Gradient accumulation is exact only when the loss of every micro-batch is a *sum* over its tokens
divided by the number of label tokens in the whole accumulated batch. transformers' `Trainer`
counts that number (``num_items_in_batch``, summed over the accumulated micro-batches and across
devices) only when the model accepts loss kwargs or a ``compute_loss_func`` is set, and it then
treats the returned loss as already scaled. BART, T5, Marian, mBART and Pegasus take ``**kwargs``
but ignore ``num_items_in_batch``, so a plain `Seq2SeqTrainer` applies a too large update under
accumulation. A trainer that passes :func:`token_loss_func` as its ``compute_loss_func`` gets the
count and divides by it itself.
"""

from __future__ import annotations

from typing import Callable, Optional, Union

import torch
import torch.nn.functional as F

__all__ = ["token_cross_entropy", "token_loss_func", "sequence_cross_entropy"]


def token_cross_entropy(
    logits: torch.Tensor,
    labels: torch.Tensor,
    *,
    label_smoothing: float = 0.0,
    num_items_in_batch: Optional[Union[torch.Tensor, int]] = None,
    ignore_index: int = -100,
) -> torch.Tensor:
    """Cross-entropy of ``logits`` `(B, T, V)` against ``labels`` `(B, T)`, positions equal to
    ``ignore_index`` left out.

    The per-token losses are summed and divided by ``num_items_in_batch`` when given (the label
    count of the whole accumulated batch, as the `Trainer` passes it), else by this batch's label
    count. ``label_smoothing`` mixes in the uniform distribution exactly as transformers'
    `LabelSmoother` (and ``torch.nn.CrossEntropyLoss(label_smoothing=...)``) do.
    """
    vocab = logits.shape[-1]
    labels = labels.to(logits.device)
    total = F.cross_entropy(
        logits.float().reshape(-1, vocab), labels.reshape(-1), ignore_index=ignore_index,
        reduction="sum", label_smoothing=label_smoothing,
    )
    if num_items_in_batch is None:
        num_items_in_batch = labels.ne(ignore_index).sum()
    if torch.is_tensor(num_items_in_batch):
        num_items_in_batch = num_items_in_batch.to(total.device)
    return total / num_items_in_batch


def token_loss_func(label_smoothing: float = 0.0) -> Callable:
    """A ``compute_loss_func(outputs, labels, num_items_in_batch=None)`` for `Trainer` computing
    :func:`token_cross_entropy` on ``outputs.logits`` (see the module docstring for why)."""

    def loss_func(outputs, labels, num_items_in_batch=None):
        logits = outputs["logits"] if isinstance(outputs, dict) else outputs[0]
        return token_cross_entropy(logits, labels, label_smoothing=label_smoothing, num_items_in_batch=num_items_in_batch)

    return loss_func


def sequence_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    """`(B,)` each row's mean token cross-entropy of ``logits`` `(B, T, V)` against ``labels``
    `(B, T)` (-100 left out); 0 for a row with no label.

    Means per sequence, then over rows, make gradient accumulation exact for equal micro-batches
    (2 x 8 rows give the update of 1 x 16), whatever the sequences' lengths."""
    tokens = F.cross_entropy(logits.float().transpose(1, 2), labels.to(logits.device), ignore_index=-100,
                             reduction="none", label_smoothing=label_smoothing)  # (B, T)
    counts = labels.ne(-100).sum(-1)  # (B,)
    return tokens.sum(-1) / counts.clamp_min(1)
