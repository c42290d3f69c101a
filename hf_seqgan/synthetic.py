"""Small synthetic corpora the library generates deterministically, so that examples and tests run
on a machine with no network. They are toys with real structure (a headline is recoverable from
its article), not benchmarks: use real data for any claim about quality.

Examples:

```python
>>> from hf_seqgan.synthetic import summarization_pairs
>>> pairs = summarization_pairs(2, seed=0)
>>> len(pairs), sorted(pairs[0])
(2, ['article', 'headline'])
```
"""

from __future__ import annotations

import random

__all__ = ["summarization_pairs"]

_SUBJECTS = ["the president", "the minister", "the company", "the union", "the court", "the army", "the bank",
             "the police", "the council", "the team", "the mayor", "the senate", "the airline", "the university"]
_PLACES = ["china", "france", "brazil", "kenya", "japan", "canada", "egypt", "india", "mexico", "norway", "peru", "spain"]
_VERBS = [("announced", "announces"), ("rejected", "rejects"), ("approved", "approves"), ("criticized", "criticizes"),
          ("signed", "signs"), ("delayed", "delays"), ("launched", "launches"), ("cancelled", "cancels"),
          ("welcomed", "welcomes"), ("proposed", "proposes")]
_OBJECTS = ["a new trade deal", "the budget plan", "a peace agreement", "new tax rules", "the merger", "a climate pact",
            "the election results", "a rescue package", "new safety rules", "the strike", "a border treaty", "the reforms"]
_DAYS = ["on monday", "on tuesday", "on wednesday", "on thursday", "on friday", "on saturday", "on sunday"]
_TAILS = ["officials said", "according to local media", "in a statement", "after long talks",
          "despite strong protests", "amid growing pressure", "a spokesman said", "sources said"]
_EXTRAS = ["", "", "in a move that surprised analysts", "for the second time this year",
           "after weeks of debate", "in the capital", "ending months of uncertainty"]


def summarization_pairs(n: int, *, seed: int = 0) -> list[dict[str, str]]:
    """``n`` Gigaword-like (lowercased, tokenized) ``{"article", "headline"}`` pairs.

    The headline keeps the place, subject, verb (present tense) and object of the article lead,
    so a model has to select and rewrite, not only copy the first words.
    """
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        subject, place = rng.choice(_SUBJECTS), rng.choice(_PLACES)
        past, present = rng.choice(_VERBS)
        obj, day, tail, extra = rng.choice(_OBJECTS), rng.choice(_DAYS), rng.choice(_TAILS), rng.choice(_EXTRAS)
        lead = f"{subject} of {place} {past} {obj} {day}"
        article = " ".join(x for x in [lead, extra, ",", tail, "."] if x)
        headline = f"{place} {subject.replace('the ', '')} {present} {obj.replace('the ', '').replace('a ', '', 1)}"
        out.append({"article": article, "headline": headline})
    return out
