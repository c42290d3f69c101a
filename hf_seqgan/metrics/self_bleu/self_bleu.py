"""Self-BLEU (Texygen) as an `evaluate` module shipped with hf_seqgan (loaded by path, no network).

Wraps `hf_seqgan.metrics.functional.self_bleu`: the mean BLEU of each generated text against all the
others as references. Lower means more diverse.
"""

import evaluate
from hf_seqgan.metrics._module_info import predictions_only_info
from hf_seqgan.metrics.functional import self_bleu

_CITATION = """\
@inproceedings{zhu2018texygen,
    title = {Texygen: A Benchmarking Platform for Text Generation Models},
    author = {Zhu, Yaoming and Lu, Sidi and Zheng, Lei and Guo, Jiaxian and Zhang, Weinan and Wang, Jun and Yu, Yong},
    booktitle = {SIGIR},
    year = {2018},
    url = {https://arxiv.org/abs/1802.01886},
}
"""

_DESCRIPTION = """\
Self-BLEU scores each generated text with BLEU (NLTK `sentence_bleu` semantics, smoothing method1 as
Texygen) against every other generated text as references and averages. It measures how much the
samples resemble each other: 1.0 when all are identical, near 0 when they share no n-grams.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[str]`): generated texts (at least 2).
    max_order (`int`, defaults to 4): highest n-gram order.
    weights (`list[float]`, *optional*): per-order weights (uniform by default).
    smoothing (`str`, defaults to `"epsilon"`): `"epsilon"` (NLTK method1) or `"none"` (method0).
    epsilon (`float`, defaults to 0.1): count replacing a zero precision count.
    tokenizer (`str` or callable, defaults to `"word"`): `"word"`, `"whitespace"`, `"13a"`, `"char"`
        or a callable `str -> list[str]`.
    sample_size (`int`, *optional*): score a random sample of this many texts (seeded by `seed`).
    seed (`int`, defaults to 0): seed of the sample.
Returns:
    `dict`: `{"self_bleu": float}` in [0, 1].
Examples:

    >>> from hf_seqgan.metrics import load_metric
    >>> metric = load_metric("self_bleu")
    >>> texts = ["the cat sat on the mat", "the cat sat on the hat", "a dog ran far away"]
    >>> round(metric.compute(predictions=texts, max_order=2)["self_bleu"], 4)
    0.5443
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class SelfBleu(evaluate.Metric):
    def _info(self):
        return predictions_only_info(_DESCRIPTION, _CITATION, _KWARGS_DESCRIPTION, ["https://arxiv.org/abs/1802.01886", "https://github.com/geek-ai/Texygen"])

    def _compute(self, predictions, max_order=4, weights=None, smoothing="epsilon", epsilon=0.1, tokenizer="word", sample_size=None, seed=0):
        score = self_bleu(
            predictions, max_order=max_order, weights=weights, smoothing=smoothing, epsilon=epsilon, tokenizer=tokenizer, sample_size=sample_size, seed=seed
        )
        return {"self_bleu": score}
