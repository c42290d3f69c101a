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
from typing import Any, Optional

import torch

__all__ = ["Direction", "prepend_token", "prepend_soft"]


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
