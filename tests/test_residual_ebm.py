"""Residual-EBM decoding, checked against distributions computed exactly.

The generator is a tiny oracle BART over 3 content tokens emitting exactly 2 tokens, so that every
output (9 of them) can be enumerated: ``p_G`` exactly, the reweighted ``q ∝ p_G exp(-E)`` exactly,
and the distribution ``q_N`` of importance resampling from N candidates exactly (the weights take
few values, so the sum of the N - 1 other weights is a multinomial over them).
"""

import itertools
import math

import numpy as np
import pytest
import torch
from scipy import stats

from hf_seqgan.oracle import OracleTask
from hf_seqgan.residual_ebm import ResidualEBM, discriminator_energy, importance_resample, log_mean_exp
from hf_seqgan.seq2seq_discriminator import Seq2SeqDiscriminator

CONTENT = (5, 6, 7)
OUTCOMES = list(itertools.product(CONTENT, repeat=2))


@pytest.fixture(scope="module")
def case():
    task = OracleTask.build(seed=0, vocab_size=3, source_length=2, target_length=2, init_std=0.3)
    source = task.sample_sources(1, torch.Generator().manual_seed(0))  # (1, 3)
    ys = torch.tensor(OUTCOMES)  # (9, 2)
    with torch.no_grad():
        p = task.engine.score(source.expand(9, -1), sequences=ys, sequence_mask=torch.ones_like(ys)).logprobs.sum(-1).exp().double()
    return task, source, p / p.sum()  # float32 scores: renormalised in double


def energy(seqs, mask, src, index):
    """A known energy: favour a first token w2 (id 7), disfavour a second token w0 (id 5)."""
    return -1.5 * (seqs[:, 0] == 7).float() + 1.0 * (seqs[:, 1] == 5).float()


def zero_energy(seqs, mask, src, index):
    return torch.zeros(seqs.shape[0])


def _weights(fn):
    ys = torch.tensor(OUTCOMES)
    return torch.exp(-fn(ys, torch.ones_like(ys), None, None)).double()


def _compositions(total: int, parts: int):
    """Every tuple of ``parts`` non-negative integers summing to ``total``."""
    if parts == 1:
        yield (total,)
        return
    for first in range(total + 1):
        for rest in _compositions(total - first, parts - 1):
            yield (first,) + rest


def exact_q_n(p: torch.Tensor, w: torch.Tensor, n: int) -> torch.Tensor:
    """The exact distribution of importance resampling from n candidates (n - 1 others ~ p)."""
    values = sorted(set(w.tolist()))
    classes = [float(p[w == v].sum()) for v in values]
    expect = torch.zeros(len(p), dtype=torch.double)
    for counts in _compositions(n - 1, len(values)):
        coef = math.factorial(n - 1) / math.prod(math.factorial(c) for c in counts)
        prob = coef * math.prod(c ** k for c, k in zip(classes, counts))
        others = sum(c * v for c, v in zip(counts, values))
        expect += prob * n / (w + others)
    return p * w * expect


def _expected(probs: torch.Tensor, counts: np.ndarray) -> np.ndarray:
    probs = probs.numpy() / float(probs.sum())  # exactly normalised for scipy's sum check
    return probs * counts.sum()


def _counts(sequences: torch.Tensor) -> np.ndarray:
    index = {o: i for i, o in enumerate(OUTCOMES)}
    counts = np.zeros(len(OUTCOMES))
    for row in sequences.tolist():
        counts[index[tuple(row)]] += 1
    return counts


def _draw(task, source, fn, n, rows, seed):
    ebm = ResidualEBM(task.oracle, fn, task.tokenizer)
    src = source.expand(rows, -1).clone()
    before = src.clone()
    out = ebm.sample(src, num_candidates=n, max_new_tokens=2, generator=torch.Generator().manual_seed(seed))
    assert torch.equal(src, before)  # inputs untouched
    return out


def test_zero_energy_resampling_is_plain_sampling(case):
    task, source, p = case
    out = _draw(task, source, zero_energy, n=4, rows=3000, seed=0)
    assert torch.allclose(out.weights, torch.full_like(out.weights, 0.25)) and torch.allclose(out.ess, torch.full_like(out.ess, 4.0))
    assert torch.allclose(out.log_z, torch.zeros_like(out.log_z))
    counts = _counts(out.sequences)
    assert stats.chisquare(counts, _expected(p, counts)).pvalue > 1e-3
    # and the same counts against plain sampling of the engine (two-sample test)
    plain = task.engine.sample(source.expand(3000, -1), max_new_tokens=2, generator=torch.Generator().manual_seed(1)).sequences
    assert stats.chi2_contingency(np.stack([counts, _counts(plain)])).pvalue > 1e-3


@pytest.mark.parametrize("n", [3, 16])
def test_known_energy_matches_the_exact_resampled_distribution(case, n):
    task, source, p = case
    w = _weights(energy)
    q_n = exact_q_n(p, w, n)
    assert abs(float(q_n.sum()) - 1) < 1e-9
    out = _draw(task, source, energy, n=n, rows=3000, seed=2)
    counts = _counts(out.sequences)
    assert stats.chisquare(counts, _expected(q_n, counts)).pvalue > 1e-3
    # the test has power: the same draws are far from the generator (and from an argmax pick)
    assert stats.chisquare(counts, _expected(p, counts)).pvalue < 1e-6
    # the candidates' own weights: softmax(-E), drawn (not the argmax) in a share of rows
    assert torch.allclose(out.weights, torch.softmax(-out.energies, -1), atol=1e-6)
    best = out.energies.argmin(-1)
    assert 0.05 < float((out.chosen != best).float().mean()) < 0.95


def test_resampling_approaches_the_reweighted_distribution(case):
    _, _, p = case
    w = _weights(energy)
    q = p * w / (p * w).sum()
    tv = [0.5 * float((exact_q_n(p, w, n) - q).abs().sum()) for n in (1, 2, 4, 16, 64)]
    assert tv[0] == pytest.approx(0.5 * float((p - q).abs().sum()))
    assert all(a > b for a, b in zip(tv, tv[1:])) and tv[-1] < 0.02


def test_log_partition_is_unbiased_in_z_with_a_fair_standard_error(case):
    task, source, p = case
    w = _weights(energy)
    z = float((p * w).sum())
    m, repeats = 32, 2000
    ebm = ResidualEBM(task.oracle, energy, task.tokenizer)
    _, logw = ebm.propose(source.expand(repeats, -1), num_samples=m, max_new_tokens=2, generator=torch.Generator().manual_seed(3))
    est = ebm.log_partition(logw.view(repeats, m))
    z_hat = est["log_z"].double().exp()
    assert abs(float(z_hat.mean()) - z) < 4 * float(z_hat.std()) / math.sqrt(repeats)  # E[Z_hat] = Z
    # Jensen: log Z_hat is biased low; Deng et al.'s correction lands above log Z
    assert float(est["log_z"].mean()) < math.log(z) < float(est["log_z_upper"].mean())
    spread = float(est["log_z"].std())
    assert 0.8 < float(est["stderr"].pow(2).mean().sqrt()) / spread < 1.2  # the delta-method error matches the spread over repeats


def test_importance_resample_frequencies():
    logw = torch.log(torch.tensor([[0.1, 0.2, 0.7]])).expand(20000, -1)
    idx = importance_resample(logw, generator=torch.Generator().manual_seed(0))
    counts = np.bincount(idx.numpy(), minlength=3)
    assert stats.chisquare(counts, np.array([0.1, 0.2, 0.7]) * 20000).pvalue > 1e-3
    assert torch.allclose(log_mean_exp(torch.zeros(2, 5)), torch.zeros(2))


def test_nll_estimates_match_the_exact_reweighted_likelihoods(case):
    task, source, p = case
    w = _weights(energy)
    q = p * w / (p * w).sum()
    q3 = exact_q_n(p, w, 3)
    refs = {"input_ids": [source[0].tolist()] * 9, "labels": [list(o) for o in OUTCOMES]}
    ebm = ResidualEBM(task.oracle, energy, task.tokenizer)
    out = ebm.nll(refs, num_samples=4000, num_candidates=(1, 3), batch_size=9, seed=0, max_new_tokens=2)
    tokens = 18
    assert out["tokens"] == tokens
    assert out["nll_generator"] == pytest.approx(-float(p.log().sum()) / tokens, abs=1e-4)
    assert out["nll_sir_1"] == pytest.approx(out["nll_generator"], abs=1e-6)
    exact_q = -float(q.log().sum()) / tokens
    assert abs(out["nll_q"] - exact_q) < 5 * out["nll_q_stderr"] + 1e-3
    assert out["nll_q_upper"] >= out["nll_q"] - 1e-6
    assert out["nll_sir_3"] == pytest.approx(-float(q3.log().sum()) / tokens, abs=0.01)
    assert out["mean_energy"] == pytest.approx(-float(w.log().mean()), abs=1e-5)


def test_a_residual_discriminator_starts_as_zero_energy(case):
    task, source, _ = case
    disc = Seq2SeqDiscriminator(task.oracle, task.tokenizer, head="token", seed=0)
    fn = discriminator_energy(disc)
    ys = torch.tensor(OUTCOMES)
    assert torch.equal(fn(ys, torch.ones_like(ys), source, torch.zeros(9, dtype=torch.long)), torch.zeros(9))
    ebm = ResidualEBM(task.oracle, disc, task.tokenizer)  # a discriminator is turned into its energy
    out = ebm.sample(source.expand(4, -1), num_candidates=2, max_new_tokens=2, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out.energies, torch.zeros(4, 2))


def test_errors(case):
    task, source, _ = case
    with pytest.raises(ValueError, match="energy_temperature"):
        ResidualEBM(task.oracle, energy, task.tokenizer, energy_temperature=0)
    with pytest.raises(ValueError, match="greedy"):
        ResidualEBM(task.oracle, energy, task.tokenizer).sample(source, num_candidates=2, max_new_tokens=2, do_sample=False)
    with pytest.raises(ValueError, match="one value per row"):
        ResidualEBM(task.oracle, lambda s, m, x, i: torch.zeros(1), task.tokenizer).sample(source, num_candidates=2, max_new_tokens=2)
