"""Diversity metrics as pure functions: distinct-n and self-BLEU.

The evaluate modules in this folder (`distinct_n/`, `self_bleu/`) wrap these, and the evaluation
helpers and example recipes call them directly. Both work on plain strings, need no network and no
optional dependency for their default tokenizer.

Tokenization (``tokenizer=`` of both functions):

- ``"word"`` (default): words and single punctuation marks, ``re.findall(r"\\w+|[^\\w\\s]", text)``
  (close to ``nltk.word_tokenize``, which needs the ``punkt`` data that cannot be downloaded offline);
- ``"whitespace"``: ``text.split()``;
- ``"13a"``: sacreBLEU's mteval-v13a tokenizer, then ``split()`` (needs ``sacrebleu``);
- ``"char"``: characters, spaces removed;
- any callable ``str -> list[str]``.

Texts are not lowercased; lowercase them yourself for case-insensitive figures.
"""

import math
import random
import re
import sys
from collections import Counter
from typing import Callable, Iterable, Optional, Sequence, Union

import numpy as np

Tokenizer = Union[str, Callable[[str], list]]

_WORD_RE = re.compile(r"\w+|[^\w\s]")

__all__ = ["tokenize", "ngram_counts", "distinct_n", "self_bleu", "self_bleu_scores"]


def _tokenizer_13a() -> Callable[[str], list]:
    try:
        from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("tokenizer='13a' needs sacrebleu: `pip install sacrebleu`, or use tokenizer='word'.") from err
    tok = Tokenizer13a()
    return lambda text: tok(text).split()


_TOKENIZERS = {
    "word": lambda: _WORD_RE.findall,
    "whitespace": lambda: str.split,
    "13a": _tokenizer_13a,
    "char": lambda: (lambda text: [c for c in text if not c.isspace()]),
}


def tokenize(texts: Iterable[str], tokenizer: Tokenizer = "word") -> list:
    """Token lists of ``texts`` with one of the tokenizers named in the module docstring (or a callable)."""
    if isinstance(texts, str):
        raise TypeError("Expected a list of texts, got a single string: wrap it in a list ([text]).")
    if callable(tokenizer):
        fn = tokenizer
    elif tokenizer in _TOKENIZERS:
        fn = _TOKENIZERS[tokenizer]()
    else:
        raise ValueError(f"Unknown tokenizer {tokenizer!r}: use one of {sorted(_TOKENIZERS)} or a callable str -> list[str].")
    out = []
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"Text {i} is a {type(text).__name__}, not a str: decode token ids first (tokenizer.batch_decode).")
        out.append(list(fn(text)))
    return out


def ngram_counts(tokens: Sequence[str], n: int) -> Counter:
    """Counts of the ``n``-grams (tuples) of one token list."""
    return Counter(zip(*(tokens[i:] for i in range(n))))


def _orders(n: Union[int, Iterable[int]]) -> tuple:
    orders = (n,) if isinstance(n, int) else tuple(n)
    if not orders or any(not isinstance(k, int) or k < 1 for k in orders):
        raise ValueError(f"n must be a positive int or a non-empty sequence of them, got {n!r}.")
    return orders


def distinct_n(texts: Sequence[str], n: Union[int, Iterable[int]] = (1, 2), tokenizer: Tokenizer = "word") -> dict:
    """Distinct-n: unique n-grams over total n-grams, counted over the whole corpus.

    Li et al. 2016, "A Diversity-Promoting Objective Function for Neural Conversation Models"
    (https://arxiv.org/abs/1510.03055). A corpus with no n-gram of an order (texts shorter than n)
    scores 0.0 at that order.

    Args:
        texts (`list[str]`): generated texts.
        n (`int` or sequence of `int`, defaults to `(1, 2)`): the orders.
        tokenizer (`str` or callable, defaults to `"word"`): see the module docstring.

    Returns:
        `dict`: ``{"distinct_1": float, "distinct_2": float, ...}``, one key per order.

    Examples:

    ```python
    >>> distinct_n(["the cat sat", "the cat ran"])
    {'distinct_1': 0.6666666666666666, 'distinct_2': 0.75}

    ```
    """
    orders = _orders(n)
    token_lists = tokenize(texts, tokenizer)
    result = {}
    for k in orders:
        unique, total = set(), 0
        for tokens in token_lists:
            grams = list(zip(*(tokens[i:] for i in range(k))))
            unique.update(grams)
            total += len(grams)
        result[f"distinct_{k}"] = len(unique) / total if total else 0.0
    return result


def _max_count_of_others(counts: list) -> list:
    """For every text i and each of its n-grams, the largest count of that n-gram in any *other* text.

    One pass keeps, per n-gram, the best count, which text holds it, and the second-best count: the
    maximum over ``j != i`` is the best one unless text ``i`` holds it. Linear in the number of n-grams
    instead of quadratic in the number of texts.
    """
    top: dict = {}  # ngram -> [best, best_index, second]
    for i, c in enumerate(counts):
        for gram, value in c.items():
            entry = top.get(gram)
            if entry is None:
                top[gram] = [value, i, 0]
            elif value > entry[0]:
                entry[2], entry[0], entry[1] = entry[0], value, i
            elif value > entry[2]:
                entry[2] = value
    return [{gram: (top[gram][2] if top[gram][1] == i else top[gram][0]) for gram in c} for i, c in enumerate(counts)]


def _closest_other_lengths(lengths: np.ndarray) -> np.ndarray:
    """For each text, the length of the other text closest to its own (ties go to the shorter), as NLTK."""
    values, multiplicity = np.unique(lengths, return_counts=True)  # (D,), (D,)
    dist = np.abs(values[None, :] - lengths[:, None]).astype(np.float64)  # (N, D)
    # a text is not its own reference: drop its length unless another text shares it
    alone = (values[None, :] == lengths[:, None]) & (multiplicity[None, :] == 1)  # (N, D)
    dist[alone] = np.inf
    # ties on distance go to the shorter length: values are sorted, argmin takes the first
    return values[np.argmin(dist, axis=1)]  # (N,)


def self_bleu_scores(
    texts: Sequence[str],
    max_order: int = 4,
    weights: Optional[Sequence[float]] = None,
    smoothing: str = "epsilon",
    epsilon: float = 0.1,
    tokenizer: Tokenizer = "word",
    sample_size: Optional[int] = None,
    seed: int = 0,
) -> list:
    """Sentence BLEU of every (sampled) text against all the other (sampled) texts: `self_bleu` before the mean.

    Takes the arguments of `self_bleu`.
    """
    if smoothing not in ("epsilon", "none"):
        raise ValueError(f"smoothing must be 'epsilon' (NLTK method1, as Texygen) or 'none' (NLTK method0), got {smoothing!r}.")
    weights = tuple(weights) if weights is not None else (1.0 / max_order,) * max_order
    if max_order < 1 or len(weights) != max_order:
        raise ValueError(f"max_order must be >= 1 and weights must have max_order={max_order} entries, got {weights!r}.")
    texts = list(texts)
    if sample_size is not None:
        if sample_size < 2:
            raise ValueError(f"sample_size must be at least 2, got {sample_size}.")
        if sample_size < len(texts):
            picked = sorted(random.Random(seed).sample(range(len(texts)), sample_size))
            texts = [texts[i] for i in picked]
    token_lists = tokenize(texts, tokenizer)
    if len(token_lists) < 2:
        raise ValueError(f"Self-BLEU needs at least 2 texts (each is scored against the others), got {len(token_lists)}.")
    lengths = np.array([len(t) for t in token_lists])  # (N,)
    closest = _closest_other_lengths(lengths)  # (N,)
    numerators = np.zeros((len(token_lists), max_order))  # (N, K)
    denominators = np.zeros((len(token_lists), max_order))  # (N, K)
    for k in range(1, max_order + 1):
        counts = [ngram_counts(t, k) for t in token_lists]
        clip = _max_count_of_others(counts)
        for i, (c, m) in enumerate(zip(counts, clip)):
            numerators[i, k - 1] = sum(min(v, m[g]) for g, v in c.items())
            denominators[i, k - 1] = max(1, sum(c.values()))
    scores = []
    for i in range(len(token_lists)):
        hyp_len, ref_len = int(lengths[i]), int(closest[i])
        if numerators[i, 0] == 0:  # no unigram match (or an empty text): NLTK returns 0
            scores.append(0.0)
            continue
        bp = 1.0 if hyp_len > ref_len else math.exp(1 - ref_len / hyp_len)
        log_sum = []
        for w, num, den in zip(weights, numerators[i], denominators[i]):
            p = num / den if num > 0 else (epsilon / den if smoothing == "epsilon" else sys.float_info.min)
            log_sum.append(w * math.log(p))
        scores.append(bp * math.exp(math.fsum(log_sum)))
    return scores


def self_bleu(texts: Sequence[str], max_order: int = 4, **options) -> float:
    """Self-BLEU: the mean BLEU of each text against all the other texts as references (lower = more diverse).

    Zhu et al. 2018, "Texygen: A Benchmarking Platform for Text Generation Models"
    (https://arxiv.org/abs/1802.01886). Each text is scored with NLTK's ``sentence_bleu`` semantics:
    n-gram counts clipped by the largest count in any single reference, brevity penalty against the
    closest reference length (ties to the shorter), geometric mean of the precisions with ``weights``
    (uniform over ``max_order`` by default), and 0 when no unigram matches. The result equals
    ``mean(nltk.translate.bleu_score.sentence_bleu(others, text, weights, SmoothingFunction().method1))``
    on the same tokens, as Texygen's parallel self-BLEU computes it, but in time linear in the number of
    n-grams (the clipping maximum over the others comes from a best / second-best table).

    Args:
        texts (`list[str]`): generated texts (at least 2).
        max_order (`int`, defaults to 4): highest n-gram order (Texygen reports 2 to 5).
        weights (`list[float]`, *optional*): per-order weights; uniform ``1/max_order`` by default.
        smoothing (`str`, defaults to `"epsilon"`): ``"epsilon"`` replaces a zero precision count by
            ``epsilon`` (NLTK ``method1``, Texygen's choice); ``"none"`` is NLTK ``method0`` (a zero
            precision makes the score ~0).
        epsilon (`float`, defaults to 0.1): the count used by ``"epsilon"`` smoothing.
        tokenizer (`str` or callable, defaults to `"word"`): see the module docstring.
        sample_size (`int`, *optional*): score only this many texts, drawn at random with ``seed``, each
            against the other sampled texts (Texygen uses 500, its first 500 lines). ``None``: all.
        seed (`int`, defaults to 0): seed of the sample.

    Returns:
        `float` in [0, 1].

    Examples:

    ```python
    >>> round(self_bleu(["the cat sat on the mat", "the cat sat on the hat", "a dog ran far away"], max_order=2), 4)
    0.5443

    ```
    """
    return float(np.mean(self_bleu_scores(texts, max_order=max_order, **options)))
