"""Residual energy-based decoding: the generator proposes, an energy reweights, one sample is drawn.

The residual EBM (Deng et al. 2020, https://arxiv.org/abs/2004.11714; Bakhtin et al. 2021,
https://jmlr.org/papers/v22/20-326.html) is the generator ``p_G`` corrected by an energy ``E``::

    q(y | x) = p_G(y | x) exp(-E(x, y) / T_E) / Z(x),     Z(x) = E_{y ~ p_G}[exp(-E(x, y) / T_E)].

With a discriminator ``D`` trained to tell data from ``p_G``'s samples, its log-odds
``l = log D / (1 - D)`` estimate ``log p_data / p_G``, so ``E = -l`` makes ``q`` the data
distribution when ``D`` is optimal (:func:`discriminator_energy`).

- :meth:`ResidualEBM.sample` draws from ``q`` by **self-normalised importance resampling**: N
  samples of the generator (through :class:`~hf_seqgan.rollout.RolloutEngine`), weights
  ``exp(-E / T_E)``, one of them *drawn* with probability proportional to its weight (never the
  argmax, which is reranking: :func:`~hf_seqgan.reranking.generate_and_rerank`). The chosen
  sample's distribution ``q_N`` goes from ``p_G`` (N = 1) to ``q`` (N -> infinity). Cost: N samples
  and N energy evaluations per output.
- :meth:`ResidualEBM.nll` estimates the reweighted model's NLL of references, as the papers
  report it: ``NLL_q(y) = NLL_G(y) + E(x, y) / T_E + log Z(x)``, with ``log Z(x)`` the log-mean-exp of
  ``-E / T_E`` over M generator samples (its Monte-Carlo standard error by the delta method). That
  plug-in ``log Z`` is biased low (Jensen), so the NLL is a lower estimate; the upper estimate uses
  Deng et al.'s ``(2M - 1) T_M - 2 (M - 1) T_{M-1}`` (their theorem 2). It also estimates the NLL of
  the *finite-N sampler* ``q_N``, whose ratio to ``p_G`` is
  ``E[N w(y) / (w(y) + sum of N - 1 other weights)]``, averaged over disjoint groups of the M samples.

Examples:

```python
>>> import torch
>>> from hf_seqgan.oracle import OracleTask
>>> from hf_seqgan.residual_ebm import ResidualEBM
>>> task = OracleTask.build(seed=0, vocab_size=20, source_length=4, target_length=6)
>>> first_token_bonus = lambda seqs, mask, src, index: -2.0 * (seqs[:, 0] == 5).float()  # E: prefer w0 first
>>> ebm = ResidualEBM(task.oracle, first_token_bonus, task.tokenizer)
>>> sources = task.sample_sources(2, torch.Generator().manual_seed(0))
>>> out = ebm.sample(sources, num_candidates=8, max_new_tokens=6, generator=torch.Generator().manual_seed(0))
>>> out.sequences.shape, out.candidates.shape, out.weights.sum(-1)
(torch.Size([2, 6]), torch.Size([2, 8, 6]), tensor([1., 1.]))

```
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, Optional, Sequence

import torch

from .rollout import RolloutEngine

__all__ = ["EnergyFn", "discriminator_energy", "importance_resample", "log_mean_exp", "ResidualEBM", "ResidualEBMOutput"]

#: ``energy(sequences (R, T), attention_mask (R, T), source_ids (B, S), source_index (R,)) -> (R,)``
EnergyFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def discriminator_energy(discriminator, *, real_label: int = 1, batch_size: int = 1024) -> EnergyFn:
    """``E = -log D / (1 - D)`` of a :class:`~hf_seqgan.discriminators.SequenceDiscriminator` or
    :class:`~hf_seqgan.seq2seq_discriminator.Seq2SeqDiscriminator` sharing the generator's
    vocabulary (scored in batches of ``batch_size`` rows, in eval mode, without gradients)."""
    from .seq2seq_discriminator import log_odds

    pad = discriminator.tokenizer.pad_token_id

    @torch.no_grad()
    def energy(sequences, attention_mask, source_ids, source_index):
        discriminator.eval()
        ids = sequences.masked_fill(attention_mask == 0, pad)
        out = []
        for start in range(0, ids.shape[0], batch_size):
            sl = slice(start, start + batch_size)
            src, idx = (source_ids, source_index[sl]) if discriminator.conditional else (None, None)
            out.append(-log_odds(discriminator, discriminator.logits_from_ids(ids[sl], src, idx), real_label).float())
        return torch.cat(out).to(sequences.device)

    return energy


def log_mean_exp(values: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """``log(mean(exp(values)))`` along ``dim``, stably."""
    return torch.logsumexp(values, dim=dim) - math.log(values.shape[dim])


def importance_resample(log_weights: torch.Tensor, *, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """`(B,)` one index per row of `(B, N)` unnormalised log-weights, drawn with probability
    ``softmax(log_weights)`` (self-normalised importance resampling)."""
    probs = torch.softmax(log_weights.double(), dim=-1)  # (B, N)
    return torch.multinomial(probs.float().cpu(), 1, generator=generator).squeeze(-1).to(log_weights.device)


@dataclasses.dataclass
class ResidualEBMOutput:
    """What :meth:`ResidualEBM.sample` returns, for B sources and N candidates each.

    Attributes:
        sequences, attention_mask: `(B, T)` the drawn sample of each source.
        chosen: `(B,)` which candidate was drawn.
        candidates, candidate_mask: `(B, N, T)` the generator's samples.
        energies: `(B, N)` E of each candidate.
        weights: `(B, N)` the normalised importance weights ``softmax(-E / T_E)``.
        log_z: `(B,)` ``log mean exp(-E / T_E)``: the N candidates' estimate of ``log Z(x)``.
        ess: `(B,)` effective sample size ``1 / sum(weights ** 2)`` (N: uniform weights, 1: one candidate).
    """

    sequences: torch.Tensor
    attention_mask: torch.Tensor
    chosen: torch.Tensor
    candidates: torch.Tensor
    candidate_mask: torch.Tensor
    energies: torch.Tensor
    weights: torch.Tensor
    log_z: torch.Tensor
    ess: torch.Tensor


class ResidualEBM:
    """``q(y | x) ∝ p_G(y | x) exp(-E(x, y) / T_E)`` over a seq2seq generator (see the module docstring).

    Args:
        model: the generator (a seq2seq `PreTrainedModel` or a `PeftModel` around one).
        energy: an :data:`EnergyFn`, or a discriminator (turned into one by :func:`discriminator_energy`).
        tokenizer (*optional*): the generator's tokenizer.
        energy_temperature (`float`, defaults to 1.0): T_E; 1 is the density-ratio reading of a
            discriminator's log-odds, lower sharpens the correction, larger softens it.
        suppress_token_ids (*optional*): ids the generator may not emit (removed from the proposal,
            and from the distribution that scores references).
        use_generation_config (`bool`, defaults to `False`): apply the generation config's processors
            (see :class:`~hf_seqgan.rollout.RolloutEngine`).
    """

    def __init__(self, model, energy, tokenizer=None, *, energy_temperature: float = 1.0, suppress_token_ids: Optional[Sequence[int]] = None,
                 use_generation_config: bool = False):
        from transformers import LogitsProcessorList, SuppressTokensLogitsProcessor

        if isinstance(energy_temperature, bool) or not isinstance(energy_temperature, (int, float)) or not 0 < energy_temperature < math.inf:
            raise ValueError(f"energy_temperature must be a finite number > 0, got {energy_temperature!r}.")
        if not callable(energy):
            raise ValueError(f"energy must be a function (sequences, mask, source_ids, source_index) -> (R,) or a discriminator, got {type(energy).__name__}.")
        self.energy = discriminator_energy(energy) if hasattr(energy, "logits_from_ids") else energy
        self.engine = RolloutEngine(model, tokenizer, use_generation_config=use_generation_config)
        self.energy_temperature = float(energy_temperature)
        self.suppress = list(suppress_token_ids or [])
        self._processors = LogitsProcessorList([SuppressTokensLogitsProcessor(self.suppress, device=self.engine.device)]) if self.suppress else None

    # ------------------------------------------------------------------ proposals
    def _mask(self, input_ids, attention_mask):
        return attention_mask if attention_mask is not None else (input_ids != self.engine.pad_token_id).long()

    @torch.no_grad()
    def propose(self, input_ids: torch.Tensor, attention_mask: Optional[torch.Tensor] = None, *, num_samples: int = 8,
                generator: Optional[torch.Generator] = None, **sample_kwargs):
        """``num_samples`` generator samples per source (a source-major :class:`~hf_seqgan.rollout.Rollout`)
        and their log-weights ``-E / T_E`` `(B * num_samples,)`."""
        if sample_kwargs.get("do_sample") is False:
            raise ValueError("Importance resampling needs samples of the generator: do_sample=False gives one greedy output, not p_G.")
        mask = self._mask(input_ids, attention_mask)
        rollout = self.engine.sample(input_ids, mask, num_samples=num_samples, generator=generator, logits_processor=self._processors, **sample_kwargs)
        energies = self.energy(rollout.sequences, rollout.attention_mask, input_ids, rollout.source_index).float()  # (R,)
        if energies.shape != rollout.source_index.shape:
            raise ValueError(f"The energy returned shape {tuple(energies.shape)} for {rollout.source_index.shape[0]} sequences; it must return one value per row.")
        return rollout, -energies / self.energy_temperature

    @torch.no_grad()
    def sample(self, input_ids: torch.Tensor, attention_mask: Optional[torch.Tensor] = None, *, num_candidates: int = 8,
               generator: Optional[torch.Generator] = None, **sample_kwargs) -> ResidualEBMOutput:
        """Draw one output per source from ``q_N``: ``num_candidates`` generator samples, resampled by
        their weights ``exp(-E / T_E)``. ``generator`` (a `torch.Generator`) seeds both draws;
        ``sample_kwargs`` go to :meth:`RolloutEngine.sample` (``max_new_tokens``, ``temperature``, ...)."""
        rollout, logw = self.propose(input_ids, attention_mask, num_samples=num_candidates, generator=generator, **sample_kwargs)
        b, n = input_ids.shape[0], num_candidates
        logw = logw.view(b, n)  # (B, N)
        chosen = importance_resample(logw, generator=generator if generator is None or generator.device.type == "cpu" else None)
        seqs = rollout.sequences.view(b, n, -1)  # (B, N, T)
        masks = rollout.attention_mask.view(b, n, -1)
        rows = torch.arange(b, device=seqs.device)
        weights = torch.softmax(logw.double(), -1).float()
        return ResidualEBMOutput(
            sequences=seqs[rows, chosen], attention_mask=masks[rows, chosen], chosen=chosen, candidates=seqs, candidate_mask=masks,
            energies=-logw * self.energy_temperature, weights=weights, log_z=log_mean_exp(logw), ess=1.0 / (weights ** 2).sum(-1),
        )

    # ------------------------------------------------------------------ likelihood estimates
    @staticmethod
    def log_partition(log_weights: torch.Tensor) -> dict:
        """Estimates of ``log Z(x)`` from `(B, M)` log-weights of M generator samples per source:
        ``log_z`` (log-mean-exp, biased low), ``log_z_upper`` (Deng et al.'s
        ``(2M - 1) T_M - 2 (M - 1) T_{M-1}``, ``T_{M-1}`` averaged over the M leave-one-out subsets)
        and ``stderr`` (delta method: ``sd(w) / (sqrt(M) mean(w))``), each `(B,)`."""
        m = log_weights.shape[-1]
        lw = log_weights.double()
        t_m = log_mean_exp(lw)  # (B,)
        out = {"log_z": t_m.float()}
        w = torch.exp(lw - lw.max(-1, keepdim=True).values)  # (B, M)
        out["stderr"] = (w.std(-1, unbiased=True) / (math.sqrt(m) * w.mean(-1))).float() if m > 1 else torch.full_like(t_m, float("nan")).float()
        if m > 1:
            total = torch.logsumexp(lw, -1, keepdim=True)  # (B, 1)
            loo = torch.log(-torch.expm1((lw - total).clamp_max(-1e-12))) + total - math.log(m - 1)  # (B, M): log-mean-exp without sample i
            out["log_z_upper"] = ((2 * m - 1) * t_m - 2 * (m - 1) * loo.mean(-1)).float()
        else:
            out["log_z_upper"] = t_m.float()
        return out

    @staticmethod
    def sir_log_ratio(ref_log_weight: torch.Tensor, pool_log_weights: torch.Tensor, num_candidates: int) -> torch.Tensor:
        """`(B,)` estimates of ``log q_N(y) - log p_G(y)`` for importance resampling from N candidates:
        ``log mean_k [N w(y) / (w(y) + S_k)]`` over the disjoint groups k of N - 1 pool samples
        (``S_k`` their summed weights); ``ref_log_weight`` `(B,)`, ``pool_log_weights`` `(B, M)`."""
        if num_candidates == 1:
            return torch.zeros_like(ref_log_weight)
        size = num_candidates - 1
        groups = pool_log_weights.shape[-1] // size
        if groups < 1:
            raise ValueError(f"N={num_candidates} needs at least {size} pool samples per source, got {pool_log_weights.shape[-1]}.")
        pool = pool_log_weights[:, : groups * size].double().reshape(-1, groups, size)  # (B, K, N-1)
        a = ref_log_weight.double()[:, None]  # (B, 1)
        terms = math.log(num_candidates) + a - torch.logaddexp(a, torch.logsumexp(pool, -1))  # (B, K)
        return log_mean_exp(terms).float()

    @torch.no_grad()
    def nll(self, dataset, *, num_samples: int = 64, num_candidates: Sequence[int] = (), batch_size: int = 32, seed: int = 0,
            temperature: float = 1.0, max_new_tokens: Optional[int] = None, min_new_tokens: int = 0) -> dict:
        """Per-token NLL estimates (nats) of ``dataset``'s references (token columns ``input_ids``,
        ``labels``) under the generator and the reweighted model.

        Args:
            num_samples (`int`, defaults to 64): M generator samples per source for ``log Z(x)``.
            num_candidates (`Sequence[int]`): also estimate the NLL of the finite-N sampler for each N.
            temperature, max_new_tokens, min_new_tokens: the proposal's settings (as in :meth:`sample`;
                top-k/top-p would give references probability 0, so they are not offered).

        Returns:
            `dict`: ``nll_generator``; ``nll_q`` (plug-in ``log Z``: a lower estimate),
            ``nll_q_upper`` (Deng et al.'s upper estimate), ``nll_q_stderr`` (Monte-Carlo standard
            error of ``nll_q`` from the ``log Z`` estimates); ``nll_sir_<N>`` per N; ``mean_log_z``,
            ``mean_energy`` (of the references), ``tokens``, ``num_samples``.
        """
        from .evaluation import _batches, _examples
        from .scoring import sampled_logprobs

        if num_samples < 2:
            raise ValueError(f"num_samples must be >= 2 (a standard error needs two samples), got {num_samples!r}.")
        engine = self.engine
        sources, labels, _ = _examples(dataset, engine.tokenizer, "source", "target", None, need_text=False)
        steps = max_new_tokens or max(len(lab) for lab in labels)
        generator = torch.Generator(device=engine.device).manual_seed(seed)
        settings = dict(max_new_tokens=steps, min_new_tokens=min_new_tokens, temperature=temperature)
        sums = {"nll_generator": 0.0, "nll_q": 0.0, "nll_q_upper": 0.0, "energy": 0.0, "log_z": 0.0, **{f"nll_sir_{n}": 0.0 for n in num_candidates}}
        variance, tokens, rows_seen = 0.0, 0, 0
        was_training = engine.base.training
        engine.base.eval()
        try:
            for _, ids, mask, lab in _batches(sources, labels, batch_size, engine.pad_token_id, engine.device):
                lab_mask = (lab != -100).long()  # (B, T)
                refs = lab.clamp_min(0)
                logits = engine.score(ids, mask, sequences=refs, sequence_mask=lab_mask, output_logits=True).logits
                ref_logp = sampled_logprobs(engine, logits, refs, lab_mask, logits_processor=self._processors, **settings).sum(-1)  # (B,)
                ref_logw = -self.energy(refs.masked_fill(lab_mask == 0, engine.pad_token_id), lab_mask, ids, torch.arange(ids.shape[0], device=ids.device)).float() / self.energy_temperature
                _, pool = self.propose(ids, mask, num_samples=num_samples, generator=generator, **settings)
                pool = pool.view(ids.shape[0], num_samples)  # (B, M)
                est = self.log_partition(pool)
                sums["nll_generator"] -= float(ref_logp.sum())
                sums["nll_q"] -= float((ref_logp + ref_logw - est["log_z"]).sum())
                sums["nll_q_upper"] -= float((ref_logp + ref_logw - est["log_z_upper"]).sum())
                sums["energy"] -= float(ref_logw.sum()) * self.energy_temperature
                sums["log_z"] += float(est["log_z"].sum())
                for n in num_candidates:
                    sums[f"nll_sir_{n}"] -= float((ref_logp + self.sir_log_ratio(ref_logw, pool, n)).sum())
                variance += float((est["stderr"].double() ** 2).sum())
                tokens += int(lab_mask.sum())
                rows_seen += ids.shape[0]
        finally:
            engine.base.train(was_training)
        out = {key: value / tokens for key, value in sums.items() if key.startswith("nll")}
        out.update(nll_q_stderr=math.sqrt(variance) / tokens, mean_log_z=sums["log_z"] / rows_seen, mean_energy=sums["energy"] / rows_seen,
                   tokens=tokens, num_samples=num_samples)
        return out
