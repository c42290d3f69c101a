"""Training a discriminator against a generator's own samples, with its held-out quality measured:
:func:`train_discriminator` (fresh fakes every step, early stopping on held-out loss or a target
accuracy, the chance warning) and its :class:`DiscriminatorTrainingResult`.

Both are re-exported by :mod:`hf_seqgan.seq2seq_discriminator`, where the discriminator itself lives.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import time
import warnings
from typing import Callable, Optional, Sequence

import torch
import torch.nn.functional as F

from .discriminators import discriminator_loss
from .seq2seq_discriminator import CHANCE_WARNING, heldout_metrics, log_odds

__all__ = ["DiscriminatorTrainingResult", "train_discriminator"]

_SELECT = {"loss": ("d_heldout_loss", -1), "auc": ("d_heldout_auc", 1), "acc": ("d_heldout_acc", 1)}  # figure, sign of better

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class DiscriminatorTrainingResult:
    """What :func:`train_discriminator` returns. The held-out figures are those of the restored
    (best held-out loss, or first to reach ``target_accuracy``) state; ``history`` holds one row per
    evaluation (``step``, ``d_heldout_acc``, ``d_heldout_auc``, ``d_heldout_loss``, ``d_train_loss``,
    ``d_train_acc``)."""

    d_heldout_acc: float
    d_heldout_auc: float
    d_heldout_loss: float
    best_step: int
    steps: int
    at_chance: bool
    reached_target: Optional[bool]
    seconds: float
    history: list = dataclasses.field(default_factory=list)


def _score(disc, targets, sources, batch_size: int) -> torch.Tensor:
    out = []
    with torch.no_grad():
        for start in range(0, targets.shape[0], batch_size):
            sl = slice(start, start + batch_size)
            out.append(log_odds(disc, disc.logits_from_ids(targets[sl], sources[sl] if disc.conditional else None)).float().cpu())
    return torch.cat(out)


def train_discriminator(
    discriminator,
    generator,
    real_dataset,
    *,
    tokenizer=None,
    max_steps: Optional[int] = 1000,
    target_accuracy: Optional[float] = None,
    heldout=0.1,
    batch_size: int = 64,
    learning_rate: float = 3e-4,
    weight_decay: float = 0.01,
    max_grad_norm: Optional[float] = 1.0,
    eval_every: int = 50,
    patience: Optional[int] = 6,
    select_by: str = "loss",
    chance_margin: float = 0.05,
    label_smoothing: float = 0.0,
    sampling: Optional[dict] = None,
    suppress_token_ids: Optional[Sequence[int]] = None,
    seed: int = 0,
    log: Optional[Callable[[dict], None]] = None,
) -> DiscriminatorTrainingResult:
    """Train ``discriminator`` on real pairs of ``real_dataset`` against fresh samples of ``generator``.

    Each step takes ``batch_size`` real pairs and as many fakes sampled *now* from the generator for
    the same sources (so a conditional discriminator must read the source), and takes one AdamW step
    on :func:`~hf_seqgan.discriminators.discriminator_loss`. A ``heldout`` slice of the real pairs
    never trains; each of its sources gets one fixed generated partner. Every ``eval_every`` steps
    the held-out accuracy (mean over the two classes), AUC and loss are measured; the state with the
    best held-out ``select_by`` figure is restored at the end (early stopping after ``patience``
    evaluations without improvement; `None`: never). The untrained state is measured (the first row
    of ``history``) but only kept when it already reaches ``target_accuracy``: a head that starts at
    logit 0 has the loss ln 2 there, which an overconfident trained head can exceed while it separates
    the classes well, so "lowest loss" would silently return the untrained discriminator.

    Args:
        discriminator: a :class:`Seq2SeqDiscriminator` or a
            :class:`~hf_seqgan.discriminators.SequenceDiscriminator` sharing the generator's vocabulary.
        generator: the seq2seq model whose samples are the fakes (left unchanged, in eval mode while sampling).
        real_dataset: token columns ``input_ids`` and ``labels`` (a `datasets.Dataset` or a dict of lists).
        tokenizer (*optional*): the generator's tokenizer (pad id); defaults to the discriminator's.
        max_steps (`int`, defaults to 1000): the most optimizer steps.
        target_accuracy (`float`, *optional*): stop at the first evaluation whose held-out accuracy
            reaches it and keep that state (``reached_target`` says whether it did).
        heldout (`float`, `int` or a dataset, defaults to 0.1): the held-out share (< 1) or count of
            the real pairs, or a validation set of its own (same columns; then every pair of
            ``real_dataset`` trains).
        sampling (`dict`, *optional*): how fakes are drawn, keyword arguments of
            :meth:`~hf_seqgan.rollout.RolloutEngine.sample` (``max_new_tokens``, ``min_new_tokens``,
            ``temperature``, ``top_k``, ``top_p``); ``max_new_tokens`` defaults to the longest label.
        suppress_token_ids (*optional*): ids the generator may not emit (an oracle task's specials).
        select_by (`str`, defaults to `"loss"`): which held-out figure picks the state kept and drives
            early stopping: ``"loss"`` (lowest), ``"auc"`` or ``"acc"`` (highest). ``"auc"`` suits a
            discriminator used for ranking (reranking, importance resampling), whose calibration matters less.
        chance_margin (`float`, defaults to 0.05): warn (:data:`CHANCE_WARNING`) when the held-out
            accuracy stays below ``0.5 + chance_margin``.
        log (*optional*): called with each evaluation row; default: the module logger at INFO.

    Returns:
        :class:`DiscriminatorTrainingResult`.
    """
    from transformers import LogitsProcessorList, SuppressTokensLogitsProcessor

    from .evaluation import _examples, _pad
    from .rollout import RolloutEngine

    if select_by not in _SELECT:
        raise ValueError(f"select_by must be one of {tuple(_SELECT)}, got {select_by!r}.")
    if max_steps is None and target_accuracy is None:
        raise ValueError("Give max_steps, target_accuracy, or both.")
    if target_accuracy is not None and not 0.5 < target_accuracy <= 1.0:
        raise ValueError(f"target_accuracy must lie in (0.5, 1], got {target_accuracy!r}.")
    max_steps = int(max_steps) if max_steps is not None else 100_000
    if max_steps < 1 or eval_every < 1 or batch_size < 1:
        raise ValueError(f"max_steps, eval_every and batch_size must be >= 1, got {max_steps}, {eval_every}, {batch_size}.")
    tokenizer = tokenizer or discriminator.tokenizer
    if not discriminator.shares_vocabulary(tokenizer):
        raise ValueError("train_discriminator feeds generator ids to the discriminator: it must share the generator's vocabulary.")
    sources, labels, _ = _examples(real_dataset, tokenizer, "source", "target", None, need_text=False)
    n, pad = len(sources), tokenizer.pad_token_id
    g = torch.Generator().manual_seed(seed)
    if isinstance(heldout, (int, float)) and not isinstance(heldout, bool):
        k = int(round(heldout * n)) if heldout < 1 else int(heldout)
        if not 1 <= k < n:
            raise ValueError(f"heldout={heldout!r} leaves {k} held-out and {n - k} training pairs; both must be >= 1.")
        order = torch.randperm(n, generator=g).tolist()
        held, train = order[:k], order[k:]
    else:  # a validation set of its own: every real pair of real_dataset trains
        held_sources, held_labels, _ = _examples(heldout, tokenizer, "source", "target", None, need_text=False)
        held, train, k = list(range(n, n + len(held_sources))), list(range(n)), len(held_sources)
        sources, labels = sources + held_sources, labels + held_labels
    device = discriminator.device
    engine = RolloutEngine(generator, tokenizer, use_generation_config=False)
    sampling = dict(sampling or {})
    sampling.setdefault("max_new_tokens", max(len(lab) for lab in labels))
    if suppress_token_ids:
        sampling["logits_processor"] = LogitsProcessorList([SuppressTokensLogitsProcessor(list(suppress_token_ids), device=engine.device)])
    rows = lambda idx, col: _pad([col[i] for i in idx], pad).to(device)  # noqa: E731
    gen_mode = engine.base.training
    engine.base.eval()

    def fakes_for(src: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        out = engine.sample(src.to(engine.device), (src != pad).long().to(engine.device), generator=gen, **sampling)
        return out.sequences.masked_fill(out.attention_mask == 0, pad).to(device)

    held_src = rows(held, sources)
    held_real = rows(held, labels).masked_fill(rows(held, labels) < 0, pad)
    held_fake = torch.cat([fakes_for(held_src[i : i + 256], g) for i in range(0, k, 256)])
    params = [p for p in discriminator.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=learning_rate, weight_decay=weight_decay)
    real_label = discriminator.label_index(1)

    def evaluate() -> dict:
        discriminator.eval()
        return heldout_metrics(_score(discriminator, held_real, held_src, 256), _score(discriminator, held_fake, held_src, 256))

    start_time = time.perf_counter()
    initial = {**evaluate(), "step": 0}
    history = [dict(initial, d_train_loss=None, d_train_acc=None)]
    reached = (initial["d_heldout_acc"] >= target_accuracy) if target_accuracy is not None else None
    best, best_state = (initial, copy.deepcopy(discriminator.state_dict())) if reached else (None, None)
    key, sign = _SELECT[select_by]
    since_best, step, losses, accs, cursor = 0, 0, [], [], len(train)
    while step < max_steps and not reached:
        if cursor + batch_size > len(train):
            perm = torch.randperm(len(train), generator=g).tolist()
            train, cursor = [train[i] for i in perm], 0
        idx = train[cursor : cursor + batch_size]
        cursor += batch_size
        src = rows(idx, sources)
        real = rows(idx, labels)
        real = real.masked_fill(real < 0, pad)
        fake = fakes_for(src, g)
        width = max(real.shape[1], fake.shape[1])
        ids = torch.cat([F.pad(t, (0, width - t.shape[1]), value=pad) for t in (real, fake)])  # (2B, W)
        both = torch.cat([src, src]) if discriminator.conditional else None
        discriminator.train()
        logp = discriminator.log_probs(discriminator(**discriminator.encode_ids(ids, both)))  # (2B, 2)
        loss, acc_real, acc_fake = discriminator_loss(logp[: len(idx)], logp[len(idx):], real_label, label_smoothing)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if max_grad_norm:
            torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
        opt.step()
        step += 1
        losses.append(loss.item() / 2)
        accs.append(float(acc_real + acc_fake) / 2)
        if step % eval_every == 0 or step == max_steps:
            row = {**evaluate(), "step": step, "d_train_loss": sum(losses) / len(losses), "d_train_acc": sum(accs) / len(accs)}
            losses, accs = [], []
            history.append(row)
            (log or (lambda r: logger.info("discriminator %s", r)))(row)
            if target_accuracy is not None and row["d_heldout_acc"] >= target_accuracy:
                reached, best, best_state = True, row, copy.deepcopy(discriminator.state_dict())
            elif best is None or sign * row[key] > sign * best[key]:
                best, best_state, since_best = row, copy.deepcopy(discriminator.state_dict()), 0
            else:
                since_best += 1
                if patience is not None and since_best >= patience:
                    break
    discriminator.load_state_dict(best_state)
    discriminator.eval()
    engine.base.train(gen_mode)
    at_chance = best["d_heldout_acc"] < 0.5 + chance_margin  # the state returned
    if at_chance:
        warnings.warn(f"{CHANCE_WARNING} (held-out accuracy {best['d_heldout_acc']:.3f}, AUC {best['d_heldout_auc']:.3f} after {step} steps, "
                      f"chance 0.5 + margin {chance_margin}). Train it longer or with another design, or give the generator no adversarial "
                      "reward.", stacklevel=2)
    return DiscriminatorTrainingResult(
        d_heldout_acc=best["d_heldout_acc"], d_heldout_auc=best["d_heldout_auc"], d_heldout_loss=best["d_heldout_loss"],
        best_step=best["step"], steps=step, at_chance=at_chance, reached_target=reached, seconds=time.perf_counter() - start_time,
        history=history,
    )
