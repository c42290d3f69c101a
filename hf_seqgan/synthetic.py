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

__all__ = ["summarization_pairs", "translation_pairs", "style_corpora", "story_pairs"]

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


# ---------------------------------------------------------------------- translation (a toy en -> de)
# (english, german, gender) ; German articles and adjective endings follow gender and case.
_NOUNS = [("man", "mann", "m"), ("woman", "frau", "f"), ("child", "kind", "n"), ("dog", "hund", "m"),
          ("girl", "mädchen", "n"), ("boy", "junge", "m"), ("cat", "katze", "f"), ("worker", "arbeiter", "m")]
_THINGS = [("ball", "ball", "m"), ("bike", "fahrrad", "n"), ("hat", "hut", "m"), ("shirt", "hemd", "n"),
           ("guitar", "gitarre", "f"), ("bag", "tasche", "f"), ("box", "kiste", "f"), ("book", "buch", "n")]
_ADJECTIVES = [("young", "jung"), ("old", "alt"), ("red", "rot"), ("blue", "blau"), ("small", "klein"),
               ("big", "groß"), ("black", "schwarz"), ("white", "weiß")]
_TRANSITIVE = [("is holding", "hält"), ("is carrying", "trägt"), ("is pushing", "schiebt"), ("is throwing", "wirft"),
               ("is watching", "beobachtet"), ("is painting", "malt")]
_LOCATIONS = [("on the street", "auf der straße"), ("at the beach", "am strand"), ("in the park", "im park"),
              ("in the water", "im wasser"), ("near a house", "neben einem haus"), ("in the snow", "im schnee")]
# article and adjective ending by (definite, case, gender)
_DE_ARTICLE = {(True, "nom"): {"m": "der", "f": "die", "n": "das"}, (False, "nom"): {"m": "ein", "f": "eine", "n": "ein"},
               (True, "acc"): {"m": "den", "f": "die", "n": "das"}, (False, "acc"): {"m": "einen", "f": "eine", "n": "ein"}}
_DE_ENDING = {(True, "nom"): {"m": "e", "f": "e", "n": "e"}, (False, "nom"): {"m": "er", "f": "e", "n": "es"},
              (True, "acc"): {"m": "en", "f": "e", "n": "e"}, (False, "acc"): {"m": "en", "f": "e", "n": "es"}}


def _noun_phrase(rng: random.Random, nouns, case: str) -> tuple[str, str]:
    en_noun, de_noun, gender = rng.choice(nouns)
    definite = rng.random() < 0.5
    adjective = rng.choice(_ADJECTIVES) if rng.random() < 0.6 else None
    en = ["the" if definite else ("an" if adjective is None and en_noun[0] in "aeiou" else "a")]
    de = [_DE_ARTICLE[definite, case][gender]]
    if adjective is not None:
        en[0] = "the" if definite else ("an" if adjective[0][0] in "aeiou" else "a")
        en.append(adjective[0])
        de.append(adjective[1] + _DE_ENDING[definite, case][gender])
    return " ".join(en + [en_noun]), " ".join(de + [de_noun])


def translation_pairs(n: int, *, seed: int = 0) -> list[dict[str, str]]:
    """``n`` Multi30k-like ``{"en", "de"}`` caption pairs from a small grammar with German gender,
    case endings and verb-second word order (a fronted place moves the verb before the subject), so
    that a word-by-word copy is a floor to beat, not the answer.

    For unsupervised training take ``en`` from one half and ``de`` from the other (no pair seen).
    """
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        subject_en, subject_de = _noun_phrase(rng, _NOUNS, "nom")
        object_en, object_de = _noun_phrase(rng, _THINGS, "acc")
        verb_en, verb_de = rng.choice(_TRANSITIVE)
        place_en, place_de = rng.choice(_LOCATIONS)
        if rng.random() < 0.3:  # fronted place: "im park hält ein junger mann ..."
            en = f"{place_en} , {subject_en} {verb_en} {object_en} ."
            de = f"{place_de} {verb_de} {subject_de} {object_de} ."
        else:
            en = f"{subject_en} {verb_en} {object_en} {place_en} ."
            de = f"{subject_de} {verb_de} {object_de} {place_de} ."
        out.append({"en": en, "de": de})
    return out


# ---------------------------------------------------------------------- sentiment style (Yelp-like)
# (aspect, [(positive, negative) adjectives that fit it])
_ASPECTS = [("food", [("delicious", "bland"), ("fresh", "stale"), ("great", "terrible")]),
            ("service", [("fast", "slow"), ("friendly", "rude"), ("excellent", "horrible")]),
            ("staff", [("friendly", "rude"), ("helpful", "unhelpful"), ("nice", "mean")]),
            ("pizza", [("delicious", "soggy"), ("hot", "cold"), ("amazing", "awful")]),
            ("place", [("clean", "dirty"), ("cozy", "noisy"), ("wonderful", "awful")]),
            ("price", [("fair", "crazy"), ("reasonable", "too high"), ("good", "bad")])]
_STYLE_TEMPLATES = ["the {a} was {x} .", "the {a} was {x} and the {b} was {y} .", "{x} {a} , {y} {b} .",
                    "i thought the {a} was {x} .", "the {a} here is always {x} !", "{a} : {x} . {b} : {y} ."]
_VERDICTS = [("i will definitely come back .", "i will never come back ."), ("highly recommend !", "do not recommend ."),
             ("love this place .", "hate this place ."), ("five stars .", "one star .")]


def style_corpora(n: int, *, seed: int = 0) -> list[dict]:
    """``n`` Yelp-like review sentences ``{"text", "label", "transferred"}``: ``label`` 0 negative,
    1 positive (alternating), ``transferred`` the same sentence in the other sentiment (each
    sentiment word swapped for its counterpart) -- a reference that the real Yelp files lack."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        label = i % 2
        (a, adjs_a), (b, adjs_b) = rng.sample(_ASPECTS, 2)
        x, y = rng.choice(adjs_a), rng.choice(adjs_b)
        template = rng.choice(_STYLE_TEMPLATES)
        sides = [template.format(a=a, b=b, x=x[s], y=y[s]) for s in (1, 0)]  # sides[s]: sentiment s (0 neg, 1 pos)
        if rng.random() < 0.3:
            verdict = rng.choice(_VERDICTS)
            sides = [f"{sides[s]} {verdict[1 - s]}" for s in (0, 1)]
        out.append({"text": sides[label], "label": label, "transferred": sides[1 - label]})
    return out


# ---------------------------------------------------------------------- fables (title -> story)
_ANIMALS = ["fox", "crow", "lion", "mouse", "ant", "grasshopper", "tortoise", "hare", "wolf", "lamb", "dog", "frog", "ox", "goat"]
_OPENINGS = ["one day", "long ago", "one summer morning", "on a cold winter night"]
_STORY_PLACES = ["by the river", "in the forest", "on a hill", "near the farm", "under an old oak", "in a green meadow"]
_WANTS = ["a piece of cheese", "some grain", "a warm place to sleep", "the sweet grapes", "a drink of water", "a bone"]
_TURNS = ["{b} refused to share it", "{b} laughed at {a}", "{b} tricked {a} with sweet words",
          "{b} offered to help {a}", "{b} ran away as fast as it could", "{b} told {a} to wait until winter"]
_ENDINGS = ["in the end {a} went home hungry", "so {a} learned to work hard", "and the two became good friends",
            "but {a} was too proud to listen", "after that {a} never trusted {b} again", "and {a} thanked {b} for its kindness"]
_LESSONS = ["slow and steady wins the race .", "a kindness is never wasted .", "do not trust flatterers .",
            "pride goes before a fall .", "work today for the needs of tomorrow .", "little friends may prove great friends ."]


def story_pairs(n: int, *, seed: int = 0) -> list[dict[str, str]]:
    """``n`` fable-like ``{"title", "story"}`` pairs: the title names two animals, the four-sentence
    story (meeting, want, turn, ending, lesson) is one of many for that title, so that decoding can
    be diverse (the first sentence in particular) and still fit the title."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        a, b = rng.sample(_ANIMALS, 2)
        ta, tb = f"the {a}", f"the {b}"
        fill = {"a": ta, "b": tb}
        sentences = [
            f"{rng.choice(_OPENINGS)} {ta} met {tb} {rng.choice(_STORY_PLACES)} .",
            f"{ta} wanted {rng.choice(_WANTS)} .",
            rng.choice(_TURNS).format(**fill) + " .",
            rng.choice(_ENDINGS).format(**fill) + " .",
            rng.choice(_LESSONS),
        ]
        out.append({"title": f"the {a} and the {b}", "story": " ".join(sentences)})
    return out
