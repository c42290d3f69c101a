"""Set-up of :class:`~hf_seqgan.trainers.cycle.CycleTrainer` that needs no trainer: the two-domain
data (splitting a ``domain`` column, the seeded, resumable sampler of target-domain batches) and the
checks and defaults of its reconstructor and Y-domain discriminator.
"""

from __future__ import annotations



import torch

__all__ = ["build_domain_discriminator", "check_reconstructor", "TargetDomainSampler", "split_domains", "target_column"]

X_VALUES, Y_VALUES = (0, "x", "X", "source"), (1, "y", "Y", "target")


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


def build_domain_discriminator(discriminator, generator_tokenizer, args, *, generator, discriminator_tokenizer=None, peft_config=None):
    """The Y-domain discriminator of a cycle run: ``discriminator`` (a `SequenceDiscriminator` or a raw
    classifier with its tokenizer) or the default of ``args.discriminator_type`` (built from the
    generator, or a small classifier on its vocabulary); unconditional, since no pairs exist; checked
    for soft inputs when ``args.adversarial_update == "gumbel"``."""
    from ..discriminators import SequenceDiscriminator
    from ._base import apply_peft
    from ._policy import default_discriminator

    if discriminator is None:
        discriminator = default_discriminator(generator, generator_tokenizer, args, conditional=False)
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
