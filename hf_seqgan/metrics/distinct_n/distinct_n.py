"""Distinct-n as an `evaluate` module shipped with hf_seqgan (loaded by path, no network).

Wraps `hf_seqgan.metrics.functional.distinct_n`: unique n-grams over total n-grams in the corpus of
generated texts. Higher means more diverse.
"""

import evaluate
from hf_seqgan.metrics._module_info import predictions_only_info
from hf_seqgan.metrics.functional import distinct_n

_CITATION = """\
@inproceedings{li-etal-2016-diversity,
    title = "A Diversity-Promoting Objective Function for Neural Conversation Models",
    author = "Li, Jiwei and Galley, Michel and Brockett, Chris and Gao, Jianfeng and Dolan, Bill",
    booktitle = "NAACL-HLT",
    year = "2016",
    url = "https://aclanthology.org/N16-1014",
    pages = "110--119",
}
"""

_DESCRIPTION = """\
Distinct-n counts the distinct n-grams of all generated texts together and divides by the total
number of n-grams: 1.0 when no n-gram repeats, near 0 when the same n-grams come back again and again.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[str]`): generated texts.
    n (`int` or `list[int]`, defaults to `[1, 2]`): the n-gram orders.
    tokenizer (`str` or callable, defaults to `"word"`): `"word"`, `"whitespace"`, `"13a"`, `"char"`
        or a callable `str -> list[str]`.
Returns:
    `dict`: `{"distinct_1": float, "distinct_2": float, ...}`, one key per order.
Examples:

    >>> from hf_seqgan.metrics import load_metric
    >>> metric = load_metric("distinct_n")
    >>> metric.compute(predictions=["the cat sat", "the cat ran"])
    {'distinct_1': 0.6666666666666666, 'distinct_2': 0.75}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class DistinctN(evaluate.Metric):
    def _info(self):
        return predictions_only_info(_DESCRIPTION, _CITATION, _KWARGS_DESCRIPTION, ["https://aclanthology.org/N16-1014"])

    def _compute(self, predictions, n=(1, 2), tokenizer="word"):
        return distinct_n(predictions, n=n, tokenizer=tokenizer)
