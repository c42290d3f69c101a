"""Logits processors: validation, purity, exact temperature schedules (per position and per sentence),
Gumbel sampling and stochastic beam search checked with chi-square tests, and discriminator guidance
on every model family, through generate() and the rollout engine."""

import collections
import math

import pytest
import torch
from scipy.stats import chisquare
from transformers import BertConfig, BertForSequenceClassification, LogitsProcessorList, TopKLogitsWarper

from hf_seqgan.discriminators import SequenceDiscriminator
from hf_seqgan.logits_process import (
    DiscriminatorGuidedLogitsProcessor,
    GumbelSamplingLogitsProcessor,
    NoDoubledTokenLogitsProcessor,
    TemperatureScheduleLogitsWarper,
    sentence_end_token_ids,
)
from hf_seqgan.rollout import RolloutEngine
from hf_seqgan.schedules import Schedule

from hf_seqgan.tiny import TINY_FAMILIES as FAMILIES

ENDS = [7, 20, 37]  # made-up sentence-end ids


def tiny_bert(tokenizer, seed=0):
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                        pad_token_id=tokenizer.pad_token_id, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, max_position_embeddings=128)
    return BertForSequenceClassification(config)


@pytest.fixture(scope="module")
def target_token(tokenizer):
    return tokenizer(" peru", add_special_tokens=False).input_ids[0]


@pytest.fixture(scope="module")
def trained_discriminator(tokenizer, target_token):
    """A target-only classifier trained for a few steps to say 1 when ``target_token`` is present."""
    disc = SequenceDiscriminator(tiny_bert(tokenizer), tokenizer, conditional=False)
    opt = torch.optim.Adam(disc.parameters(), lr=5e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(40):
        ids = torch.randint(5, len(tokenizer), (32, 12), generator=g)
        ids[ids == target_token] = 10
        label = torch.rand(32, generator=g) < 0.5
        pos = torch.randint(0, 12, (32,), generator=g)
        ids[label, pos[label]] = target_token
        length = torch.maximum(torch.randint(1, 13, (32,), generator=g), torch.where(label, pos + 1, 0))
        ids = ids.masked_fill(torch.arange(12)[None] >= length[:, None], tokenizer.pad_token_id)
        loss = torch.nn.functional.cross_entropy(disc.logits_from_ids(ids), label.long())
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.2, loss.item()
    return disc.eval()


def _gen(model, batch, processors=(), **kwargs):
    return model.generate(**batch, logits_processor=LogitsProcessorList(list(processors)), **kwargs)


def _pvalue(observed, probs):
    """Chi-square p-value of counts against probabilities (the rest of the mass as a last cell)."""
    observed = [float(o) for o in observed]
    probs = [float(p) for p in probs]
    total = sum(observed)
    expected = [p * total for p in probs]
    if len(expected) < len(observed):
        expected.append(total - sum(expected))
    return chisquare(observed, [e * total / sum(expected) for e in expected]).pvalue


# ----------------------------------------------------------------------------- validation & purity
@pytest.mark.parametrize(
    "build, match",
    [
        (lambda d: TemperatureScheduleLogitsWarper(-0.5), "outside the allowed range"),
        (lambda d: TemperatureScheduleLogitsWarper("linear:start=1,end=-1,steps=10"), "outside the allowed range"),
        (lambda d: TemperatureScheduleLogitsWarper(1.0, mode="sentence"), "sentence_end_token_ids"),
        (lambda d: TemperatureScheduleLogitsWarper(1.0, mode="sentence", sentence_end_token_ids=[]), "non-empty"),
        (lambda d: TemperatureScheduleLogitsWarper(1.0, sentence_end_token_ids=ENDS), "only used by"),
        (lambda d: TemperatureScheduleLogitsWarper(1.0, mode="paragraph"), "mode must be"),
        (lambda d: TemperatureScheduleLogitsWarper(1.0, argmax_below=-1), "argmax_below"),
        (lambda d: GumbelSamplingLogitsProcessor(-1.0), "temperature"),
        (lambda d: GumbelSamplingLogitsProcessor(0.0), "temperature"),
        (lambda d: GumbelSamplingLogitsProcessor(num_beams=0), "num_beams"),
        (lambda d: GumbelSamplingLogitsProcessor(seed=0, generator=torch.Generator()), "either"),
        (lambda d: DiscriminatorGuidedLogitsProcessor(d, num_sources=2, weight=math.inf), "weight"),
        (lambda d: DiscriminatorGuidedLogitsProcessor(d, num_sources=2, weight=float("nan")), "weight"),
        (lambda d: DiscriminatorGuidedLogitsProcessor(d, num_sources=2, top_k=0), "top_k"),
        (lambda d: DiscriminatorGuidedLogitsProcessor(d, num_sources=2, label=5), "label"),
        (lambda d: DiscriminatorGuidedLogitsProcessor(d), "num_sources"),
        (lambda d: DiscriminatorGuidedLogitsProcessor(d.model, num_sources=2), "discriminator_tokenizer"),
    ],
)
def test_processors_validate_in_init(build, match, tokenizer):
    disc = SequenceDiscriminator(tiny_bert(tokenizer).eval(), tokenizer, conditional=False)
    with pytest.raises(ValueError, match=match):
        build(disc)


def test_conditional_guidance_needs_sources_and_double_temperature_is_rejected(tokenizer, make_model):
    disc = SequenceDiscriminator(tiny_bert(tokenizer).eval(), tokenizer)
    with pytest.raises(ValueError, match="sources"):
        DiscriminatorGuidedLogitsProcessor(disc, num_sources=2)
    model = make_model("bart")
    model.generation_config.temperature = 0.7
    with pytest.raises(ValueError, match="multiply"):
        TemperatureScheduleLogitsWarper("linear:1,0,10", generation_config=model.generation_config)


def test_processors_are_pure(tokenizer):
    disc = SequenceDiscriminator(tiny_bert(tokenizer).eval(), tokenizer, conditional=False)
    ids = torch.tensor([[2, 50, 7, 60], [2, 70, 80, 20]])
    scores = torch.randn(2, len(tokenizer))
    for proc in (
        TemperatureScheduleLogitsWarper(0.0),
        TemperatureScheduleLogitsWarper("linear:2,0,4", mode="position_in_sentence", sentence_end_token_ids=ENDS),
        GumbelSamplingLogitsProcessor(seed=0),
        GumbelSamplingLogitsProcessor(num_beams=2, seed=0),
        DiscriminatorGuidedLogitsProcessor(disc, num_sources=1, top_k=3),
        NoDoubledTokenLogitsProcessor(),
    ):
        ids_before, scores_before = ids.clone(), scores.clone()
        out = proc(ids, scores)
        assert out is not scores and out.shape == scores.shape
        assert torch.equal(ids, ids_before) and torch.equal(scores, scores_before), type(proc).__name__


# ----------------------------------------------------------------------------- doubled tokens
def test_no_doubled_token_bans_each_rows_last_token_only():
    """Row-wise ban of the last generated id; the decoder start is not counted; a row whose only
    finite score is its last token keeps it (no row without a finite score)."""
    proc = NoDoubledTokenLogitsProcessor()
    scores = torch.zeros(3, 10)
    assert torch.equal(proc(torch.tensor([[2], [2], [2]]), scores), scores)  # first step: only the decoder start
    forced = torch.full((10,), float("-inf"))
    forced[4] = 0.0
    scores = torch.stack([torch.zeros(10), torch.zeros(10), forced])
    out = proc(torch.tensor([[2, 5, 7], [2, 7, 5], [2, 3, 4]]), scores)
    assert out[0, 7] == float("-inf") and out[1, 5] == float("-inf")
    assert int(torch.isinf(out[:2]).sum()) == 2  # nothing else banned, earlier tokens (5 in row 0) allowed
    assert out[2, 4] == 0.0 and torch.isfinite(out[2]).sum() == 1
    with pytest.raises(ValueError, match="prompt_length"):
        NoDoubledTokenLogitsProcessor(prompt_length=-1)


def test_no_doubled_token_stops_a_stuttering_model_in_generate(make_model, source_batch, tokenizer):
    """A model pushed to emit one token at every step (final_logits_bias) doubles it under plain
    greedy `generate`; with the processor no output holds a token twice in a row."""
    model = make_model("bart", warm=False).eval()
    the = tokenizer.convert_tokens_to_ids(tokenizer.tokenize(" the"))[0]
    model.final_logits_bias.data[0, the] = 30.0
    kwargs = dict(max_new_tokens=8, do_sample=False)
    plain = model.generate(**source_batch, **kwargs)
    blocked = model.generate(**source_batch, logits_processor=LogitsProcessorList([NoDoubledTokenLogitsProcessor()]), **kwargs)
    doubled = lambda ids: bool(((ids[:, 1:] == ids[:, :-1]) & (ids[:, 1:] != model.config.pad_token_id)).any())
    assert doubled(plain) and not doubled(blocked)
    assert int((blocked == the).sum(-1).min()) > 1  # the word comes back, just never twice in a row


# ----------------------------------------------------------------------------- temperature schedule
def test_sentence_modes_follow_each_rows_own_count():
    ids = torch.tensor([
        [2, 50, 51, 52, 53, 54],  # no sentence end: sentence 0, position 5
        [2, 50, 7, 52, 53, 54],  # one end at generated index 1: sentence 1, position 3
        [2, 7, 20, 52, 37, 54],  # three ends, the last at index 3: sentence 3, position 1
        [2, 50, 51, 52, 53, 37],  # ends right before: sentence 1, position 0
    ])
    assert TemperatureScheduleLogitsWarper(1.0, mode="sentence", sentence_end_token_ids=ENDS).steps(ids).tolist() == [0, 1, 3, 1]
    assert TemperatureScheduleLogitsWarper(1.0, mode="position_in_sentence", sentence_end_token_ids=ENDS).steps(ids).tolist() == [5, 3, 1, 0]
    schedule = Schedule.from_string("piecewise:0=2,1=0.5,2=0.25")
    warper = TemperatureScheduleLogitsWarper(schedule, mode="sentence", sentence_end_token_ids=ENDS)
    scores = torch.randn(4, 100)
    expected = scores / torch.tensor([2.0, 0.5, 0.25, 0.5])[:, None]
    assert torch.equal(warper(ids, scores), expected)
    first = TemperatureScheduleLogitsWarper(schedule, mode="sentence", sentence_end_token_ids=ENDS)(ids[:, :1], scores)
    assert torch.equal(first, scores / 2.0)  # nothing generated yet: sentence 0 for every row


def test_zero_temperature_is_argmax_without_nan_or_inf():
    scores = torch.tensor([[1.0, 3.0, 3.0, -math.inf], [0.5, -1.0, 0.2, 0.1]])
    out = TemperatureScheduleLogitsWarper(0.0)(torch.zeros(2, 4, dtype=torch.long), scores)
    assert not out.isnan().any() and not out.isinf().any()
    assert out.argmax(-1).tolist() == [1, 0] and out[0, 1] == 3.0 and out[1, 0] == 0.5
    assert torch.softmax(out, -1).max(-1).values.tolist() == [1.0, 1.0]
    ids = torch.tensor([[2, 50, 7], [2, 50, 51]])  # row 0 is in sentence 1 (temperature 0), row 1 in sentence 0
    mixed = TemperatureScheduleLogitsWarper("piecewise:0=2,1=0", mode="sentence", sentence_end_token_ids=ENDS)(ids, scores)
    assert torch.equal(mixed[1], scores[1] / 2) and mixed[0].argmax() == 1 and torch.isfinite(mixed[0]).all()


class Flat:
    """A processor that makes every token equally likely: what follows depends on the noise alone."""

    def __call__(self, input_ids, scores):
        return torch.zeros_like(scores)


class Recorder:
    """A processor that records what it receives and changes nothing."""

    def __init__(self):
        self.calls = []

    def __call__(self, input_ids, scores):
        self.calls.append((input_ids.clone(), scores.clone()))
        return scores


@pytest.mark.parametrize("family", FAMILIES)
def test_scores_equal_logits_over_schedule_at_every_step(family, make_model, source_batch):
    model = make_model(family)
    schedule = Schedule.from_string("linear:start=2,end=0.25,steps=5")
    before = Recorder()
    torch.manual_seed(0)
    # min_new_tokens: all 7 steps run (past the schedule's end at step 5) whenever the model would stop
    out = _gen(model, source_batch, [before, TemperatureScheduleLogitsWarper(schedule)], do_sample=True, top_k=0, max_new_tokens=7,
               min_new_tokens=7, output_scores=True, return_dict_in_generate=True)
    assert len(out.scores) == len(before.calls) == 7
    for step, (scores, (_, received)) in enumerate(zip(out.scores, before.calls)):
        assert torch.equal(scores, received / torch.tensor(schedule.value(step), dtype=torch.float32)), step


@pytest.mark.parametrize("family", FAMILIES)
def test_schedule_dropping_to_zero_becomes_greedy(family, make_model, source_batch, tokenizer):
    model = make_model(family)
    warper = TemperatureScheduleLogitsWarper("piecewise:0=1.5,2=1.5,3=0", generation_config=model.generation_config)
    torch.manual_seed(1)
    # no EOS among the 3 sampled tokens (generate() would not know such a prompt row had ended)
    sampled = _gen(model, source_batch, [warper], do_sample=True, max_new_tokens=10, min_new_tokens=3)
    greedy = model.generate(**source_batch, decoder_input_ids=sampled[:, :4], do_sample=False, max_new_tokens=7)
    assert torch.equal(sampled, greedy[:, : sampled.shape[1]])
    engine = RolloutEngine(model, tokenizer)
    rollout = engine.sample(**source_batch, max_new_tokens=10, logits_processor=LogitsProcessorList([warper]), generator=torch.Generator().manual_seed(1))
    resumed = engine.continue_from(**source_batch, prefixes=rollout.sequences, prefix_lengths=[3], max_length=10, do_sample=False)
    assert torch.equal(rollout.sequences, resumed.sequences)


def test_temperature_schedule_in_beam_search(make_model, source_batch):
    model = make_model("bart")
    plain = model.generate(**source_batch, num_beams=3, max_new_tokens=6)
    assert torch.equal(_gen(model, source_batch, [TemperatureScheduleLogitsWarper(1.0)], num_beams=3, max_new_tokens=6), plain)
    frozen = _gen(model, source_batch, [TemperatureScheduleLogitsWarper(0.0)], num_beams=3, num_return_sequences=3, max_new_tokens=6,
                  output_scores=True, return_dict_in_generate=True)
    assert torch.isfinite(frozen.sequences_scores).all()
    greedy = model.generate(**source_batch, do_sample=False, max_new_tokens=6)
    assert torch.equal(frozen.sequences[::3, : greedy.shape[1]], greedy)  # each beam extends with its argmax: the best is greedy


def test_sentence_end_token_ids_finds_punctuation(tokenizer):
    ids = sentence_end_token_ids(tokenizer)
    assert set(tokenizer(" .", add_special_tokens=False).input_ids) <= set(ids)
    assert all(tokenizer.decode([i]).strip()[-1] in ".!?" for i in ids)


# ----------------------------------------------------------------------------- Gumbel
def test_gumbel_greedy_reproduces_softmax_on_made_up_logits():
    logits = torch.tensor([2.0, 1.0, 0.5, 0.0, -1.0, -3.0])
    n = 20000
    proc = GumbelSamplingLogitsProcessor(temperature=1.5, generator=torch.Generator().manual_seed(0))
    picks = proc(torch.zeros(n, 1, dtype=torch.long), logits.expand(n, -1)).argmax(-1)
    observed = torch.bincount(picks, minlength=6).tolist()
    assert _pvalue(observed, torch.softmax(logits / 1.5, -1).tolist()) > 1e-3
    # the test has power: sampling at temperature 1 instead of 1.5 is rejected
    assert _pvalue(observed, torch.softmax(logits, -1).tolist()) < 1e-6


def test_gumbel_greedy_generate_samples_the_model_distribution(make_model, tokenizer):
    """Chi-square of greedy + Gumbel first tokens against the model's softmax. The cells are built, not hoped for:
    the model's 5 best tokens, at a temperature that keeps their probabilities within a factor 10 of each other."""
    model = make_model("bart")
    n = 3000
    batch = tokenizer(["the bank of peru"] * n, return_tensors="pt")
    start = torch.tensor([[model.generation_config.decoder_start_token_id]])
    with torch.no_grad():
        logits = model(**{k: v[:1] for k, v in batch.items()}, decoder_input_ids=start).logits[0, -1]
    top = logits.topk(5)
    temperature = max(1.0, float(top.values[0] - top.values[-1]) / math.log(10))
    out = _gen(model, batch, [TopKLogitsWarper(5), GumbelSamplingLogitsProcessor(temperature, seed=0)], do_sample=False, max_new_tokens=1)
    counts = collections.Counter(out[:, 1].tolist())
    assert set(counts) <= set(top.indices.tolist())
    observed = [counts[t] for t in top.indices.tolist()]
    assert _pvalue(observed, torch.softmax(top.values / temperature, -1)) > 1e-3


def test_gumbel_seed_and_engine_match_generate(make_model, source_batch, tokenizer):
    model = make_model("t5")
    a = _gen(model, source_batch, [GumbelSamplingLogitsProcessor(seed=3)], do_sample=False, max_new_tokens=8)
    proc = GumbelSamplingLogitsProcessor(seed=3)
    assert torch.equal(_gen(model, source_batch, [proc], do_sample=False, max_new_tokens=8), a)
    assert torch.equal(_gen(model, source_batch, [proc], do_sample=False, max_new_tokens=8), a)  # re-seeded per decode
    # another seed, other samples: shown on a flat distribution, where it holds whatever the model emits
    flat3, flat4 = (_gen(model, source_batch, [Flat(), GumbelSamplingLogitsProcessor(seed=s)], do_sample=False, max_new_tokens=2) for s in (3, 4))
    assert not torch.equal(flat3[:, :2], flat4[:, :2])
    engine = RolloutEngine(model, tokenizer)
    rollout = engine.sample(**source_batch, do_sample=False, max_new_tokens=8, logits_processor=LogitsProcessorList([proc]))
    assert torch.equal(rollout.sequences, a[:, 1:])  # same noise stream, same samples


@pytest.mark.parametrize("family", FAMILIES)
def test_stochastic_beam_search_returns_distinct_samples(family, make_model, source_batch):
    model = make_model(family)
    sbs = GumbelSamplingLogitsProcessor(num_beams=4, seed=0)
    out = _gen(model, source_batch, [sbs], max_new_tokens=6, **sbs.generate_kwargs())
    rows = out.view(4, 4, -1).tolist()
    assert all(len({tuple(r) for r in group}) == 4 for group in rows)
    # the seed matters and it is not plain beam search: shown on a flat distribution (plain beam search then keeps its
    # tie-broken lowest ids), where that holds whatever the model emits
    seeded = [_gen(model, source_batch, [Flat(), GumbelSamplingLogitsProcessor(num_beams=4, seed=s)], max_new_tokens=2, **sbs.generate_kwargs())
              for s in (0, 1)]
    plain = _gen(model, source_batch, [Flat()], max_new_tokens=2, **sbs.generate_kwargs())
    assert not torch.equal(seeded[0][:, :2], seeded[1][:, :2]) and not torch.equal(seeded[0][:, :2], plain[:, :2])


def test_stochastic_beam_search_top_sample_is_exact(make_model, tokenizer):
    """The best of Gumbel-top-k over whole sequences is an exact sample of the model's joint distribution over 2-token
    sequences: chi-square against teacher-forced probabilities. The cells are built, not hoped for: the model's 3 best
    tokens at each step, at a temperature (at least 2) that keeps them within a factor 3 of each other."""
    model, n, k = make_model("bart"), 2000, 3
    batch = tokenizer(["the bank of peru"] * n, return_tensors="pt")
    one = {key: v[:1] for key, v in batch.items()}
    start, eos = model.generation_config.decoder_start_token_id, tokenizer.eos_token_id

    def best(prefix):
        with torch.no_grad():
            return model(**one, decoder_input_ids=torch.tensor([[start, *prefix]])).logits[0, -1].topk(k)

    first = best([])
    second = {t: best([t]) for t in first.indices.tolist() if t != eos}
    spread = max(float(top.values[0] - top.values[-1]) for top in [first, *second.values()])
    temperature = max(2.0, spread / math.log(3))
    sbs = GumbelSamplingLogitsProcessor(temperature, num_beams=2, seed=0)
    out = _gen(model, batch, [TopKLogitsWarper(k), sbs], max_new_tokens=2, **sbs.generate_kwargs())
    counts = collections.Counter(tuple(r) for r in out.view(n, 2, -1)[:, 0, 1:].tolist())

    def probs(top):
        return dict(zip(top.indices.tolist(), torch.softmax(top.values / temperature, -1).tolist()))

    p_first = probs(first)
    cells = {(t, tokenizer.pad_token_id): p for t, p in p_first.items() if t == eos}
    cells.update({(t, u): p_first[t] * q for t, top in second.items() for u, q in probs(top).items()})
    assert set(counts) <= set(cells), set(counts) - set(cells)
    assert _pvalue([counts[c] for c in cells], list(cells.values())) > 1e-3


def test_stochastic_beam_search_follows_each_beam_to_its_parent():
    """Beams are reordered between steps; each row's state must come from the row it continues."""
    torch.manual_seed(0)
    proc = GumbelSamplingLogitsProcessor(num_beams=2, seed=0)  # scores the 4 * 2 = 8 best children of a row
    logp = [torch.log_softmax(torch.randn(4, 8), -1) for _ in range(3)]  # 2 sources x 2 beams, 3 steps, 8 tokens
    logp[0] = logp[0][::2].repeat_interleave(2, 0)  # at the first step a source's beams are the same row
    steps = [
        (torch.zeros(4, 1, dtype=torch.long), None),  # the decoder start: a fresh decode
        (torch.tensor([[0, 3], [0, 5], [0, 7], [0, 2]]), torch.tensor([0, 0, 2, 2])),  # first beam of each group
        (torch.tensor([[0, 5, 1], [0, 3, 4], [0, 2, 6], [0, 2, 0]]), torch.tensor([1, 0, 3, 3])),  # reordered beams
    ]
    phi = torch.zeros(4, 1)
    accumulated = torch.zeros(4, 1)
    for (ids, parents), scores in zip(steps, logp):
        increments = proc(ids, scores)
        if parents is not None:
            phi = phi[parents, ids[:, -1]][:, None]
            accumulated = accumulated[parents, ids[:, -1]][:, None]
        phi = phi + scores  # log-prob of every child sequence, through the right parent
        _, kept, kept_phi, kept_g = proc._state
        assert torch.equal(kept.sort(-1).values, torch.arange(8).expand(4, -1))
        torch.testing.assert_close(kept_phi, phi.gather(1, kept))
        torch.testing.assert_close(increments.max(-1).values, torch.zeros(4))  # children's maximum = the parent's value
        accumulated = accumulated + increments
        torch.testing.assert_close(kept_g, accumulated.gather(1, kept))  # beam search's running sum is the perturbed log-prob


def test_stochastic_beam_search_refuses_a_decode_it_was_not_built_for(make_model, source_batch):
    model = make_model("bart")
    start = torch.full((4, 1), model.generation_config.decoder_start_token_id)
    with torch.no_grad():
        first = model(**source_batch, decoder_input_ids=start).logits[:, -1]
    assert (first[0] - first[2]).abs().max() > 0.01  # the sources differ (what tells a group of beams from a mix of sources)
    sbs = GumbelSamplingLogitsProcessor(num_beams=4, seed=0)
    for kwargs in (dict(num_beams=2, num_return_sequences=2, length_penalty=0.0), dict(do_sample=True), dict(do_sample=False)):
        with pytest.raises(ValueError, match=r"num_beams=4\): at the first step .* not the beams of one source.*generate_kwargs\(\)"):
            _gen(model, source_batch, [sbs], max_new_tokens=4, **kwargs)
    wrong = GumbelSamplingLogitsProcessor(num_beams=3, seed=0)
    with pytest.raises(ValueError, match=r"8 decoder rows, not a multiple of 3.*generate_kwargs"):
        _gen(model, source_batch, [wrong], max_new_tokens=4, **GumbelSamplingLogitsProcessor.beam_search_kwargs(2))
    # the decode it is built for passes, the same processor reused
    assert _gen(model, source_batch, [sbs], max_new_tokens=4, **sbs.generate_kwargs()).shape[0] == 16
    assert sbs.generate_kwargs(2)["num_return_sequences"] == 2 and GumbelSamplingLogitsProcessor().generate_kwargs() == {"do_sample": False, "num_beams": 1}
    with pytest.raises(ValueError, match="num_return_sequences"):
        sbs.generate_kwargs(5)


# ----------------------------------------------------------------------------- discriminator guidance
@pytest.mark.parametrize("family", FAMILIES)
def test_guidance_puts_the_preferred_token_in_every_row(family, make_model, source_batch, tokenizer, trained_discriminator, target_token):
    model = make_model(family)
    batch = {k: v.repeat(3, 1) for k, v in source_batch.items()}
    # built, not hoped for: every token is a candidate (top_k = the vocabulary), and the weight times the trained
    # discriminator's margin (log p_D ~ -6 without the token, ~0 with it) exceeds any tiny model's logit range
    guide = DiscriminatorGuidedLogitsProcessor(trained_discriminator, num_sources=12, weight=10.0, top_k=len(tokenizer))
    torch.manual_seed(0)
    guided = _gen(model, batch, [guide], do_sample=True, max_new_tokens=8)
    assert (guided == target_token).any(-1).all(), (guided == target_token).any(-1)
    engine_guided = RolloutEngine(model, tokenizer).sample(**batch, max_new_tokens=8, logits_processor=LogitsProcessorList([guide]),
                                                           generator=torch.Generator().manual_seed(0))
    assert (engine_guided.sequences == target_token).any(-1).all()


def test_guidance_scores_top_k_in_one_forward_and_filters_the_rest(tokenizer, trained_discriminator, target_token):
    guide = DiscriminatorGuidedLogitsProcessor(trained_discriminator, num_sources=2, weight=2.0, top_k=3)
    calls = []
    hook = trained_discriminator.model.register_forward_hook(lambda module, args, kwargs_out: calls.append(1))
    ids = torch.tensor([[2, 50, 60], [2, 70, 80], [2, 90, 91], [2, 92, 93]])
    scores = torch.randn(4, len(tokenizer))
    scores[:, target_token] = scores.max() + 1  # in every top-3
    try:
        out = guide(ids, scores)
    finally:
        hook.remove()
    assert len(calls) == 1
    kept = torch.isfinite(out)
    assert kept.sum(-1).tolist() == [3, 3, 3, 3] and torch.equal(kept, torch.zeros_like(kept).scatter(1, scores.topk(3).indices, True))
    top = scores.topk(3).indices
    log_p = trained_discriminator.score_candidates(ids[:, 1:], top)
    torch.testing.assert_close(out.gather(1, top), scores.gather(1, top) + 2.0 * log_p)
    assert bool((out.argmax(-1) == target_token).all())


def test_guidance_maps_rows_to_sources_under_beams_and_samples(tokenizer, make_model):
    """Each decoder row is scored with its own source, for beam search, num_return_sequences and the engine."""
    model = make_model("bart")
    sources = ["the bank of peru", "the army of japan", "the court of spain"]
    batch = tokenizer(sources, return_tensors="pt", padding=True)
    disc = SequenceDiscriminator(tiny_bert(tokenizer).eval(), tokenizer)
    markers = torch.tensor([40, 41, 42])  # a marker token per source, put in the decoder prompt
    prompt = torch.stack([torch.full((3,), model.generation_config.decoder_start_token_id), markers], 1)
    recorder = Recorder()
    guide = DiscriminatorGuidedLogitsProcessor(disc, batch, prompt_length=2, top_k=4)
    original = disc.score_candidates
    mapped = []
    disc.score_candidates = lambda *a, **kw: (mapped.append(kw["source_index"].clone()), original(*a, **kw))[1]
    for kwargs in (dict(num_beams=3), dict(do_sample=True, num_return_sequences=2)):
        recorder.calls.clear(), mapped.clear()
        _gen(model, batch, [guide, recorder], decoder_input_ids=prompt, max_new_tokens=3, min_new_tokens=3, **kwargs)  # 3 steps, always
        assert len(mapped) == len(recorder.calls) == 3
        assert all(torch.equal(markers[i], ids[:, 1]) for i, (ids, _) in zip(mapped, recorder.calls))
    recorder.calls.clear(), mapped.clear()
    forced = markers.repeat_interleave(2)[:, None]  # the engine's rows: 2 samples per source, marker forced first
    RolloutEngine(model, tokenizer).sample(**batch, num_samples=2, max_new_tokens=3, min_new_tokens=3, forced_tokens=forced, forced_mask=torch.ones_like(forced, dtype=torch.bool),
                                           logits_processor=LogitsProcessorList([guide, recorder]))
    assert len(mapped) == 3 and all(torch.equal(markers[i], ids[:, 1]) for i, (ids, _) in zip(mapped[1:], recorder.calls[1:]))
    with pytest.raises(ValueError, match="rows"):
        guide(torch.zeros(4, 3, dtype=torch.long), torch.zeros(4, len(tokenizer)))


def test_guidance_text_path_with_a_different_tokenizer(tokenizer, corpus, make_model, source_batch):
    from hf_seqgan.tiny import train_tokenizer

    other = train_tokenizer([p["headline"] for p in corpus], vocab_size=300)
    disc = SequenceDiscriminator(tiny_bert(other).eval(), other)
    guide = DiscriminatorGuidedLogitsProcessor(disc, source_batch, tokenizer=tokenizer, top_k=2)
    assert guide.text_path and len(guide.source_texts) == 4
    ids = torch.tensor([[2, 50, 60]] * 4)
    scores = torch.randn(4, len(tokenizer))
    top = scores.topk(2).indices
    sequences = torch.cat([ids[:, 1:].repeat_interleave(2, 0), top.reshape(-1, 1)], 1)
    expected = disc.score_texts(tokenizer.batch_decode(sequences, skip_special_tokens=True), [t for t in guide.source_texts for _ in range(2)])
    torch.testing.assert_close(guide(ids, scores).gather(1, top), scores.gather(1, top) + expected.view(4, 2))
    out = _gen(make_model("t5"), source_batch, [guide], do_sample=True, max_new_tokens=4)
    assert out.shape[0] == 4

