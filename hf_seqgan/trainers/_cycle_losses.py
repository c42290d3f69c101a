"""Pieces of :class:`~hf_seqgan.trainers.cycle.CycleTrainer` that need no trainer: the two-domain
data (splitting a ``domain`` column, the seeded, resumable sampler of target-domain batches), the
direction tags of a shared model, and the per-sequence cross-entropy every loss term uses.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Optional

import torch
import torch.nn.functional as F

__all__ = ["build_domain_discriminator", "check_reconstructor", "Direction", "TargetDomainSampler", "sequence_cross_entropy", "split_domains", "target_column", "prepend_token", "prepend_soft"]

X_VALUES, Y_VALUES = (0, "x", "X", "source"), (1, "y", "Y", "target")


def sequence_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    """`(B,)` each row's mean token cross-entropy of ``logits`` `(B, T, V)` against ``labels``
    `(B, T)` (-100 left out); 0 for a row with no label.

    Means per sequence, then over rows, make gradient accumulation exact for equal micro-batches
    (2 x 8 rows give the update of 1 x 16), whatever the sequences' lengths."""
    tokens = F.cross_entropy(logits.float().transpose(1, 2), labels.to(logits.device), ignore_index=-100,
                             reduction="none", label_smoothing=label_smoothing)  # (B, T)
    counts = labels.ne(-100).sum(-1)  # (B,)
    return tokens.sum(-1) / counts.clamp_min(1)


def check_reconstructor(reconstructor, generator, tokenizer, *, gumbel: bool) -> None:
    """Raise a `ValueError` unless ``reconstructor`` is a seq2seq LM that can read the generator's
    token ids (and, for Gumbel reconstruction, its soft one-hots: one vocabulary)."""
    from ..rollout import check_seq2seq_model
    from ..sampling import input_embedding, unwrap_model

    check_seq2seq_model(reconstructor)
    rows = input_embedding(reconstructor, "encoder").weight.shape[0]
    if rows < len(tokenizer):
        raise ValueError(f"The reconstructor's embedding has {rows} rows but the generator's tokenizer has {len(tokenizer)} tokens: R reads "
                         "G's token ids, so both must use the same tokenizer (or use shared_model=True).")
    g_vocab = unwrap_model(generator).get_output_embeddings().weight.shape[0]
    if gumbel and rows != g_vocab:
        raise ValueError(f"reconstruction_update='gumbel' feeds G's soft one-hots over its {g_vocab} output tokens into R's {rows}-row "
                         "input embedding: the two need one vocabulary (the same tokenizer and vocab_size). Use "
                         "reconstruction_update='reinforce', or a reconstructor built on G's vocabulary.")


def build_domain_discriminator(discriminator, generator_tokenizer, args, *, discriminator_tokenizer=None, peft_config=None, vocab_size=None):
    """The Y-domain discriminator of a cycle run: ``discriminator`` (a `SequenceDiscriminator` or a raw
    classifier with its tokenizer) or a default one on the generator's vocabulary; unconditional, since
    no pairs exist; checked for soft inputs when ``args.adversarial_update == "gumbel"``."""
    from ..discriminators import SequenceDiscriminator, build_default_discriminator
    from ._base import apply_peft

    if discriminator is None:
        discriminator = build_default_discriminator(
            generator_tokenizer, conditional=False, hidden_size=args.discriminator_hidden_size, num_layers=args.discriminator_layers,
            seed=args.seed, dropout=args.discriminator_dropout, vocab_size=vocab_size,
        )
    elif not isinstance(discriminator, SequenceDiscriminator):
        if discriminator_tokenizer is None:
            raise ValueError("A raw classifier as discriminator needs discriminator_processing_class (its tokenizer); or pass a SequenceDiscriminator.")
        discriminator = SequenceDiscriminator(discriminator, discriminator_tokenizer, conditional=False)
    if discriminator.conditional:
        raise ValueError("The cycle discriminator judges Y-domain texts alone (real Y vs G's outputs; no pairs exist): build it with conditional=False.")
    if peft_config is not None:
        discriminator.model = apply_peft(discriminator.model, peft_config, what="discriminator")
    if args.adversarial_update == "gumbel":
        if not discriminator.shares_vocabulary(generator_tokenizer):
            raise ValueError("adversarial_update='gumbel' feeds G's soft one-hots into D's embeddings: D must share G's vocabulary. "
                             "Use the default discriminator or adversarial_update='reinforce'.")
        discriminator.check_soft_inputs()
    return discriminator


def target_column(dataset) -> str:
    """The column of the target-domain dataset holding token ids: ``input_ids``, else ``labels``."""
    names = getattr(dataset, "column_names", None)
    if names is None:
        first = dataset[0]
        names = list(first) if isinstance(first, dict) else []
    for name in ("input_ids", "labels"):
        if name in names:
            return name
    raise ValueError(f"The target-domain dataset has no `input_ids` (or `labels`) column, only {names}: tokenize the Y-domain "
                     "texts into `input_ids`, e.g. dataset.map(lambda b: tokenizer(b['text'], truncation=True), batched=True).")


def split_domains(train_dataset, target_domain_dataset, domain_column: str):
    """``(X dataset, Y dataset)`` from the two datasets, or from one dataset with a domain column
    (0 / "x" for the X domain, 1 / "y" for the Y domain)."""
    names = getattr(train_dataset, "column_names", None) or []
    if target_domain_dataset is not None:
        if domain_column in names:
            raise ValueError(f"train_dataset has a {domain_column!r} column and target_domain_dataset was given too: pass the two "
                             f"domains one way only (drop the column, or the target_domain_dataset).")
        return train_dataset, target_domain_dataset
    if domain_column not in names:
        raise ValueError(
            "CycleTrainer learns from two unpaired corpora but got no target-domain (Y) data: pass target_domain_dataset= (the "
            f"Y-domain texts, tokenized into `input_ids`) or give train_dataset a {domain_column!r} column (0 or 'x' for X rows, "
            "1 or 'y' for Y rows)."
        )
    values = train_dataset[domain_column]
    unknown = sorted({str(v) for v in values if v not in X_VALUES and v not in Y_VALUES})
    if unknown:
        raise ValueError(f"The {domain_column!r} column holds {unknown[:5]}; use 0/'x' for the X domain and 1/'y' for the Y domain.")
    x_rows = [i for i, v in enumerate(values) if v in X_VALUES]
    y_rows = [i for i, v in enumerate(values) if v in Y_VALUES]
    if not x_rows or not y_rows:
        raise ValueError(f"The {domain_column!r} column gives {len(x_rows)} X rows and {len(y_rows)} Y rows: both domains need data.")
    x = train_dataset.select(x_rows).remove_columns(domain_column)
    y = train_dataset.select(y_rows).remove_columns(domain_column)
    return x, y


class TargetDomainSampler:
    """Endless batches of row indices of the target-domain dataset: a new seeded permutation each
    pass, read in order. Its state (pass, position) goes into checkpoints, so that a resumed run
    draws exactly the Y batches the uninterrupted run would have drawn. Drawing 2 x 8 rows gives
    the same rows as 1 x 16."""

    def __init__(self, size: int, seed: int):
        if size < 1:
            raise ValueError("The target-domain dataset is empty.")
        self.size, self.seed = int(size), int(seed)
        self.epoch, self.position = 0, 0
        self._order = self._permutation()

    def _permutation(self) -> torch.Tensor:
        return torch.randperm(self.size, generator=torch.Generator().manual_seed(self.seed * 7919 + self.epoch))

    def take(self, n: int) -> list[int]:
        out: list[int] = []
        while len(out) < n:
            if self.position >= self.size:
                self.epoch, self.position = self.epoch + 1, 0
                self._order = self._permutation()
            chunk = self._order[self.position : self.position + n - len(out)].tolist()
            self.position += len(chunk)
            out.extend(chunk)
        return out

    def state_dict(self) -> dict:
        return {"size": self.size, "seed": self.seed, "epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict) -> None:
        if state["size"] != self.size:
            raise ValueError(f"The checkpoint's target-domain sampler covers {state['size']} rows but target_domain_dataset has "
                             f"{self.size}: resume with the same target-domain data.")
        self.seed, self.epoch, self.position = state["seed"], state["epoch"], state["position"]
        self._order = self._permutation()


@dataclasses.dataclass
class Direction:
    """One translation direction: the model that runs it and the tags of its domains.

    ``target_tag`` names the output domain, ``source_tag`` the input domain (token ids, or None).
    With ``position="decoder"`` (mBART-style language codes) a sequence of domain d is written
    ``[tag_d] + tokens``: the target tag is forced as the first generated token and put in front of
    the labels, the source tag in front of the encoder input. With ``position="encoder"`` (a prefix
    tag, as for multilingual Marian/T5) the *target* tag is put in front of the encoder input.
    """

    model: Any
    engine: Any
    target_tag: Optional[int] = None
    source_tag: Optional[int] = None
    position: str = "decoder"

    @property
    def forced_tag(self) -> Optional[int]:
        return self.target_tag if self.position == "decoder" else None

    @property
    def encoder_tag(self) -> Optional[int]:
        return self.source_tag if self.position == "decoder" else self.target_tag

    def encoder_input(self, ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return prepend_token(ids, mask, self.encoder_tag)

    def labels(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        ids, mask = prepend_token(ids, mask, self.forced_tag)
        return ids.masked_fill(mask == 0, -100)


def prepend_token(ids: torch.Tensor, mask: torch.Tensor, token: Optional[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """`(B, T)` -> `(B, 1 + T)` with ``token`` in front, unless ``token`` is None or every row starts
    with it already (generated sequences with a forced tag, data tokenized with the code)."""
    if token is None or bool((ids[:, 0] == token).all()):
        return ids, mask
    column = torch.full_like(ids[:, :1], token)
    return torch.cat([column, ids], dim=1), torch.cat([torch.ones_like(mask[:, :1]), mask], dim=1)


def prepend_soft(soft: torch.Tensor, mask: torch.Tensor, token: Optional[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`prepend_token` for distributions `(R, T, V)`: a one-hot of ``token`` in front."""
    if token is None:
        return soft, mask
    one_hot = torch.zeros_like(soft[:, :1]).index_fill_(-1, torch.tensor([token], device=soft.device), 1.0)  # (R, 1, V)
    return torch.cat([one_hot, soft], dim=1), torch.cat([torch.ones_like(mask[:, :1]), mask], dim=1)
