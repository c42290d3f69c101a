"""Input noise for denoising auto-encoding: word shuffle, word drop and word blank.

Lample et al. 2018, "Unsupervised Machine Translation Using Monolingual Corpora Only"
(https://arxiv.org/abs/1711.00043), section 2.3: a model trained to recover a sentence from a
corrupted copy of it learns the language's structure instead of copying. Three corruptions, applied
in this order to each sentence of a batch:

- **word shuffle**: a random permutation σ with ``|σ(i) - i| <= k`` for every word: the words are
  sorted by ``q_i = i + U(0, k + 1)``;
- **word drop**: each word is removed with probability ``p_drop`` (at least one word is kept);
- **word blank**: each word is replaced by one blank token (the tokenizer's mask token) with
  probability ``p_blank``.

Everything works on padded batches of token ids and is vectorized over the batch (no Python loop
over rows). With ``word_starts`` a "word" is a run of sub-word tokens starting at a word start
(byte-level ``Ġ``, SentencePiece ``▁``, WordPiece tokens not starting with ``##``), so sub-words of
one word move, disappear and are blanked together; without it every token is a word. Special tokens
(padding, EOS, BOS, language codes, direction tags) are never moved, dropped or blanked. A
`torch.Generator` makes the noise reproducible. The output is right-padded.

Examples:

```python
>>> import torch
>>> from hf_seqgan.noise import add_noise
>>> ids = torch.tensor([[11, 12, 13, 14, 15, 2], [21, 22, 2, 0, 0, 0]])
>>> out, mask = add_noise(ids, ids.ne(0), word_shuffle=0, word_dropout=0.0, word_blank=0.0, special_token_ids=[0, 2])
>>> torch.equal(out, ids), mask.tolist()[1]
(True, [1, 1, 1, 0, 0, 0])
>>> out, mask = add_noise(ids, ids.ne(0), word_shuffle=3, word_dropout=0.2, blank_token_id=4, special_token_ids=[0, 2],
...                       generator=torch.Generator().manual_seed(0))
>>> out  # shuffled within 3 positions, 14 dropped, EOS (2) and padding (0) in place
tensor([[12, 13, 11, 15,  2],
        [21, 22,  2,  0,  0]])

```
"""

from __future__ import annotations

from typing import Iterable, Optional

import torch

__all__ = ["add_noise", "check_noise", "word_start_table", "TextNoiser"]

_WORD_PREFIXES = ("Ġ", "▁")


def word_start_table(tokenizer) -> torch.Tensor:
    """`(V,)` booleans: whether each token id of ``tokenizer`` begins a word.

    Byte-level BPE (``Ġ``) and SentencePiece (``▁``) mark word starts; WordPiece marks continuations
    (``##``). A vocabulary with none of these marks gets all True (every token is a word).
    """
    vocab = tokenizer.get_vocab()
    size = max(len(tokenizer), max(vocab.values()) + 1)
    table = torch.ones(size, dtype=torch.bool)
    tokens = list(vocab)
    marked = {prefix: sum(t.startswith(prefix) for t in tokens) for prefix in _WORD_PREFIXES + ("##",)}
    prefix = max(_WORD_PREFIXES, key=lambda p: marked[p])
    if marked[prefix] > 0:
        table.zero_()
        for token, index in vocab.items():
            table[index] = token.startswith(prefix)
    elif marked["##"] > 0:
        for token, index in vocab.items():
            table[index] = not token.startswith("##")
    for index in tokenizer.all_special_ids:
        table[index] = True
    return table


def check_noise(word_shuffle: float, word_dropout: float, word_blank: float) -> None:
    """Raise a `ValueError` naming the setting that is out of range."""
    if word_shuffle < 0:
        raise ValueError(f"word_shuffle (the largest distance a word may move) must be >= 0, got {word_shuffle}.")
    for name, p in (("word_dropout", word_dropout), ("word_blank", word_blank)):
        if not 0.0 <= p < 1.0:
            raise ValueError(f"{name} is a probability in [0, 1), got {p}.")


def _per_word(values: torch.Tensor, word: torch.Tensor) -> torch.Tensor:
    """Broadcast one value per (row, word) `(B, W)` to the tokens `(B, T)` of each word."""
    return values.gather(1, word)


def add_noise(
    input_ids: torch.Tensor,
    attention_mask: Optional[torch.Tensor] = None,
    *,
    word_shuffle: float = 3.0,
    word_dropout: float = 0.1,
    word_blank: float = 0.2,
    blank_token_id: Optional[int] = None,
    special_token_ids: Iterable[int] = (),
    word_starts: Optional[torch.Tensor] = None,
    pad_token_id: int = 0,
    generator: Optional[torch.Generator] = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Shuffle, drop and blank the words of a batch (see the module docstring).

    Args:
        input_ids (`torch.Tensor`): `(B, T)` token ids.
        attention_mask (`torch.Tensor`, *optional*): `(B, T)`, 0 at padding (default: all real).
        word_shuffle (`float`, defaults to 3): k, the largest distance a word may move (0 = off).
        word_dropout (`float`, defaults to 0.1): probability of removing a word.
        word_blank (`float`, defaults to 0.2): probability of replacing a word by ``blank_token_id``.
        blank_token_id (`int`, *optional*): the blank token; required when ``word_blank > 0``.
        special_token_ids: ids that are never touched (padding, EOS, language codes, ...).
        word_starts (`torch.Tensor`, *optional*): `(B, T)` booleans, True where a token begins a
            word (e.g. ``word_start_table(tokenizer)[input_ids]``); default: every token is a word.
        pad_token_id (`int`): the id written after each row's end.
        generator (`torch.Generator`, *optional*): for reproducible noise (on the ids' device).

    Returns:
        ``(noised_ids, attention_mask)``, right-padded `(B, T')` with ``T' <= T``; the inputs are
        not modified.
    """
    if input_ids.dim() != 2:
        raise ValueError(f"input_ids must be (batch, length), got shape {tuple(input_ids.shape)}.")
    check_noise(word_shuffle, word_dropout, word_blank)
    if word_blank > 0 and blank_token_id is None:
        raise ValueError("word_blank > 0 needs blank_token_id (e.g. the tokenizer's mask or unk token id).")
    rows, steps = input_ids.shape
    device = input_ids.device
    mask = torch.ones_like(input_ids, dtype=torch.bool) if attention_mask is None else attention_mask.bool()
    special = torch.isin(input_ids, torch.tensor(sorted(set(int(i) for i in special_token_ids)), device=device, dtype=input_ids.dtype))
    content = mask & ~special  # (B, T) tokens that noise may touch
    if not bool(content.any()):
        return input_ids.clone(), mask.long()
    first = content & (content.long().cumsum(1) == 1)
    starts = content & (torch.ones_like(content) if word_starts is None else word_starts.to(device).bool()) | first
    word = (starts & content).long().cumsum(1)  # (B, T): word number 1..W of each content token
    ids = input_ids.clone()
    positions = torch.arange(steps, device=device, dtype=torch.float32).expand(rows, steps)

    def uniform() -> torch.Tensor:  # one draw per (row, word)
        return torch.rand((rows, steps + 1), device=device, generator=generator)

    if word_shuffle > 0:
        key = torch.where(content, word.float() + _per_word(uniform(), word) * (word_shuffle + 1.0), float("inf"))  # (B, T)
        order = torch.argsort(key, dim=1, stable=True)  # content tokens in their new order first
        slots = torch.argsort(torch.where(content, positions, float("inf")), dim=1, stable=True)  # content slots first
        ids = ids.scatter(1, slots, ids.gather(1, order))
        word = word.scatter(1, slots, word.gather(1, order))
        previous = torch.cat([torch.zeros_like(word[:, :1]), word[:, :-1]], dim=1)
        starts = content & (word != previous)
    dropped = content & _per_word(uniform() < word_dropout, word) if word_dropout > 0 else torch.zeros_like(content)
    emptied = content.any(1) & ~(content & ~dropped).any(1)  # (B,) rows that would lose every word
    if bool(emptied.any()):
        first_word = word.gather(1, (content & starts).float().argmax(1, keepdim=True))  # (B, 1)
        dropped = dropped & ~(emptied[:, None] & (word == first_word))
    blanked = torch.zeros_like(content)
    if word_blank > 0:
        blanked = content & ~dropped & _per_word(uniform() < word_blank, word)
        ids = torch.where(blanked & starts, torch.full_like(ids, blank_token_id), ids)
    remove = dropped | (blanked & ~starts) | ~mask  # (B, T)
    order = torch.argsort(remove.to(torch.int8), dim=1, stable=True)
    lengths = (~remove).sum(1)  # (B,)
    width = max(int(lengths.max()), 1)
    ids = ids.gather(1, order)[:, :width]
    new_mask = torch.arange(width, device=device)[None, :] < lengths[:, None]  # (B, T')
    return ids.masked_fill(~new_mask, pad_token_id), new_mask.long()


class TextNoiser:
    """:func:`add_noise` bound to a tokenizer: its special ids are protected, its mask (or unk)
    token is the blank and, with ``whole_words=True``, its word starts define the words.

    Args:
        tokenizer: the model's tokenizer.
        word_shuffle, word_dropout, word_blank: as in :func:`add_noise` (Lample et al. 2018 use
            k = 3, p_drop = 0.1, p_blank = 0.2).
        whole_words (`bool`, defaults to `True`): noise words (runs of sub-words), not tokens.
        protected_ids: more ids never touched (e.g. direction tags that are not special tokens).
    """

    def __init__(self, tokenizer, *, word_shuffle: float = 3.0, word_dropout: float = 0.1, word_blank: float = 0.2,
                 whole_words: bool = True, protected_ids: Iterable[int] = ()):
        blank = tokenizer.mask_token_id if tokenizer.mask_token_id is not None else tokenizer.unk_token_id
        if word_blank > 0 and blank is None:
            raise ValueError("word_blank > 0 needs a blank token, but the tokenizer has neither a mask nor an unk token; set word_blank=0.")
        self.settings = dict(word_shuffle=word_shuffle, word_dropout=word_dropout, word_blank=word_blank, blank_token_id=blank,
                             pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0)
        check_noise(word_shuffle, word_dropout, word_blank)
        self.special_token_ids = sorted(set(tokenizer.all_special_ids) | {int(i) for i in protected_ids})
        self.table = word_start_table(tokenizer) if whole_words else None

    def __call__(self, input_ids: torch.Tensor, attention_mask: Optional[torch.Tensor] = None, *,
                 generator: Optional[torch.Generator] = None) -> tuple[torch.Tensor, torch.Tensor]:
        starts = None
        if self.table is not None:
            table = self.table.to(input_ids.device)
            starts = table[input_ids.clamp(0, table.shape[0] - 1)]  # (B, T)
        return add_noise(input_ids, attention_mask, special_token_ids=self.special_token_ids, word_starts=starts,
                         generator=generator, **self.settings)
