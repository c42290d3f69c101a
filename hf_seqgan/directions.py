"""Domain tags of a model that translates in both directions (mBART-style language codes forced as
the first generated token, or a tag in front of the source), used by :class:`~hf_seqgan.trainers.CycleTrainer`
and by anyone decoding a cycle model: put the tags where the trainer put them.

Examples:

```python
>>> import torch
>>> from hf_seqgan.directions import prepend_token
>>> ids, mask = prepend_token(torch.tensor([[5, 6, 2]]), torch.tensor([[1, 1, 1]]), 9)
>>> ids.tolist(), mask.tolist()
([[9, 5, 6, 2]], [[1, 1, 1, 1]])

```
"""

from __future__ import annotations

import dataclasses
from typing import Any, Iterable, Optional, Sequence

import torch

__all__ = ["Direction", "prepend_token", "prepend_soft", "domain_suppressed_tokens"]


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
    suppress_tokens: Optional[list[int]] = None  # the tokens its decodes may not emit (see domain_suppressed_tokens)

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


def _token_counts(rows: Iterable[Sequence[int]], size: int) -> torch.Tensor:
    flat = [t for row in rows for t in row if 0 <= t < size]
    return torch.bincount(torch.tensor(flat, dtype=torch.long), minlength=size).double() if flat else torch.zeros(size, dtype=torch.float64)


def domain_suppressed_tokens(own_rows: Iterable[Sequence[int]], other_rows: Iterable[Sequence[int]], vocab_size: int, *, ratio: float,
                             keep: Iterable[int] = ()) -> list[int]:
    """The token ids a decode into a domain should not emit, from the token ids of the domain's own
    texts (``own_rows``) and of the other domain's (``other_rows``): a token is kept when it occurs in
    the own domain and its relative frequency there is at least ``ratio`` times its relative frequency
    in the other domain; ``keep`` (special tokens, direction tags) is never suppressed.

    With one vocabulary shared by two languages, a back-translating model can copy the words of the
    source language it cannot translate yet; its back-translations then teach the other direction to
    copy too. Restricting each direction to its language's tokens removes that fixed point.

    >>> domain_suppressed_tokens([[3, 4, 4], [5]], [[3, 6], [6, 6]], 8, ratio=0.5, keep=[0, 1, 2])
    [6, 7]
    """
    if not ratio > 0:
        raise ValueError(f"ratio must be > 0 (a token is kept when its frequency in its domain is >= ratio x its frequency in the other), got {ratio!r}.")
    own, other = _token_counts(own_rows, vocab_size), _token_counts(other_rows, vocab_size)
    if own.sum() == 0:
        raise ValueError("The domain's texts hold no token ids below the vocabulary size: tokenize them with the model's tokenizer.")
    own_freq, other_freq = own / own.sum(), other / other.sum().clamp_min(1.0)
    allowed = (own > 0) & (own_freq >= ratio * other_freq)
    keep = [t for t in keep if t is not None and 0 <= t < vocab_size]
    if keep:
        allowed[torch.tensor(keep, dtype=torch.long)] = True
    return torch.nonzero(~allowed).flatten().tolist()


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
