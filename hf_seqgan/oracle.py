"""The synthetic oracle task: SeqGAN's synthetic experiment, made conditional.

A randomly initialised seq2seq model with large weights, built from a seed, *is* the data
distribution ``p(y | x)`` (Yu et al. 2017, https://arxiv.org/abs/1609.05473, section 5: there an
LSTM with N(0, 1) weights). Sources ``x`` are uniform random token strings; targets are the
oracle's samples. Because the true distribution is known, a student is scored exactly:

- **NLL_oracle** (quality): the oracle's NLL, per token, of the *student's samples*;
- **NLL_test** (coverage): the *student's* NLL, per token, of fresh oracle samples (held out);

both over a temperature sweep (:func:`hf_seqgan.evaluation.temperature_sweep`), since a lower
temperature buys quality with coverage and a method that only moves along that curve has not
improved the model ("Language GANs Falling Short", Caccia et al. 2020,
https://arxiv.org/abs/1811.02549).

The oracle gives probability 0 to special tokens (its ``final_logits_bias`` is ``-inf`` there), so
that its outputs are fixed-length strings of content tokens, as in SeqGAN (no EOS, length
``target_length``); :attr:`OracleTask.decode_kwargs` makes a student decode the same way (fixed
length, special tokens suppressed). Everything runs batched through the rollout engine, and every
random draw comes from a seeded `torch.Generator`.

Examples:

```python
>>> from hf_seqgan.oracle import OracleTask
>>> task = OracleTask.build(seed=0, vocab_size=32, source_length=6, target_length=8)
>>> train = task.sample_dataset(4, seed=1)
>>> train.column_names, len(train[0]["input_ids"]), len(train[0]["labels"])
(['input_ids', 'labels'], 7, 8)
>>> task.tokenizer.decode(train[0]["input_ids"]), task.tokenizer.decode(train[0]["labels"])
('w5 w11 w12 w8 w31 w9 </s>', 'w6 w26 w14 w29 w9 w9 w14 w11')
>>> test = task.sample_dataset(256, seed=2)  # NLL of its own samples and the exact entropy along them (nats/token)
>>> round(task.nll(test["input_ids"], test["labels"]), 3), round(task.entropy(test["input_ids"], test["labels"]), 3)
(1.924, 1.932)

```
"""

from __future__ import annotations

import dataclasses
import math
from typing import Optional, Sequence

import torch

from .rollout import RolloutEngine

__all__ = ["OracleTask", "oracle_tokenizer", "student_nll"]

SPECIAL_TOKENS = ("<pad>", "<s>", "</s>", "<unk>", "<mask>")


def oracle_tokenizer(vocab_size: int):
    """A word-level tokenizer over ``vocab_size`` content tokens ``w0 .. w{vocab_size-1}`` after the
    special tokens ``<pad> <s> </s> <unk> <mask>`` (ids 0-4). Sources encode as ``text </s>``;
    decoding joins the words with spaces, so texts and ids round-trip."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < 2:
        raise ValueError(f"vocab_size must be an integer >= 2 (content tokens), got {vocab_size!r}.")
    vocab = {token: i for i, token in enumerate(SPECIAL_TOKENS)}
    vocab.update({f"w{i}": len(SPECIAL_TOKENS) + i for i in range(vocab_size)})
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    eos = vocab["</s>"]
    tokenizer.post_processor = processors.TemplateProcessing(single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", eos)])
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, pad_token="<pad>", bos_token="<s>", eos_token="</s>", unk_token="<unk>",
        mask_token="<mask>", clean_up_tokenization_spaces=False,
    )


def _rows(values) -> torch.Tensor:
    """A `(N, L)` long tensor from a tensor or a list of equal-length id lists."""
    tensor = values if isinstance(values, torch.Tensor) else torch.tensor(list(values), dtype=torch.long)
    if tensor.dim() != 2:
        raise ValueError(f"expected a (rows, length) batch of token ids, got shape {tuple(tensor.shape)}.")
    return tensor.long()


def _label_mask(labels: torch.Tensor) -> torch.Tensor:
    return (labels != -100).long()


def student_nll(student, test_set, *, temperature: float = 1.0, suppress_token_ids: Optional[Sequence[int]] = None,
                batch_size: int = 256) -> float:
    """NLL_test: the mean NLL per token (nats) of ``test_set``'s ``labels`` under ``student`` given its
    ``input_ids`` (teacher-forced, batched); with ``temperature`` and ``suppress_token_ids``, under the
    distribution the student samples from at that setting (see :func:`hf_seqgan.evaluation.heldout_nll`)."""
    from .evaluation import heldout_nll

    return heldout_nll(student, test_set, temperatures=(temperature,), suppress_token_ids=suppress_token_ids, batch_size=batch_size)[0]


@dataclasses.dataclass
class OracleTask:
    """A seq2seq oracle ``p(y | x)``: a random BART with large weights (see the module docstring).

    Build one with :meth:`build`. Attributes: ``oracle`` (the model, in eval mode), ``tokenizer``
    (word level, :func:`oracle_tokenizer`), ``source_length`` and ``target_length`` (content tokens;
    sources get a final ``</s>``), ``seed``, ``engine`` (the oracle's :class:`RolloutEngine`).
    """

    oracle: torch.nn.Module
    tokenizer: object
    source_length: int
    target_length: int
    seed: int = 0
    engine: RolloutEngine = dataclasses.field(init=False, repr=False)

    def __post_init__(self):
        self.engine = RolloutEngine(self.oracle, self.tokenizer, use_generation_config=False)

    @classmethod
    def build(
        cls,
        seed: int = 0,
        vocab_size: int = 100,
        source_length: int = 8,
        target_length: int = 12,
        *,
        d_model: int = 32,
        layers: int = 1,
        heads: int = 4,
        ffn: int = 64,
        init_std: float = 0.5,
    ) -> "OracleTask":
        """The oracle of ``seed``: a BART (``layers`` encoder and decoder layers, ``d_model``, ``heads``,
        ``ffn``) whose weights are drawn with standard deviation ``init_std`` (large: a peaked,
        structured distribution; the default 0.02 of BART gives near-uniform outputs), over
        ``vocab_size`` content tokens. Same arguments, same oracle."""
        from .tiny import build_tiny_model

        for name, value in (("source_length", source_length), ("target_length", target_length)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}.")
        if not init_std > 0:
            raise ValueError(f"init_std must be > 0, got {init_std!r}.")
        tokenizer = oracle_tokenizer(vocab_size)
        oracle = build_tiny_model("bart", tokenizer, seed=seed, d_model=d_model, layers=layers, heads=heads, ffn=ffn,
                                  init_std=init_std, max_positions=max(64, source_length + target_length + 2))
        with torch.no_grad():
            oracle.final_logits_bias[:, : len(SPECIAL_TOKENS)] = float("-inf")  # content tokens only
        oracle.requires_grad_(False)
        return cls(oracle.eval(), tokenizer, source_length, target_length, seed)

    # ------------------------------------------------------------------ properties
    @property
    def special_token_ids(self) -> list[int]:
        """Ids the oracle never emits (the special tokens)."""
        return list(range(len(SPECIAL_TOKENS)))

    @property
    def decode_kwargs(self) -> dict:
        """How a student decodes on this task: exactly ``target_length`` tokens, special tokens
        suppressed (keyword arguments of :func:`hf_seqgan.evaluation.temperature_sweep`)."""
        return dict(max_new_tokens=self.target_length, min_new_tokens=self.target_length, suppress_token_ids=self.special_token_ids)

    # ------------------------------------------------------------------ data
    def sample_sources(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """`(n, source_length + 1)` uniform random content tokens, then ``</s>``."""
        low = len(SPECIAL_TOKENS)
        ids = torch.randint(low, len(self.tokenizer), (n, self.source_length + 1), generator=generator)  # (n, S+1)
        ids[:, -1] = self.tokenizer.eos_token_id
        return ids

    @torch.no_grad()
    def sample(self, sources: torch.Tensor, *, generator: Optional[torch.Generator] = None, temperature: float = 1.0,
               batch_size: int = 512):
        """The oracle's samples for ``sources`` (a :class:`~hf_seqgan.rollout.Rollout` per batch,
        concatenated): ``(sequences, logprobs)``, each `(n, target_length)`."""
        seqs, logps = [], []
        for chunk in _rows(sources).split(batch_size):
            out = self.engine.sample(input_ids=chunk, max_new_tokens=self.target_length, temperature=temperature, generator=generator)
            seqs.append(out.sequences)
            logps.append(out.logprobs)
        return torch.cat(seqs), torch.cat(logps)

    def sample_dataset(self, n: int, seed: int = 0):
        """``n`` pairs ``{"input_ids": source ids + </s>, "labels": the oracle's sample}`` as a
        `datasets.Dataset`, drawn with a generator seeded by ``seed`` (same seed, same data)."""
        from datasets import Dataset

        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive integer, got {n!r}.")
        generator = torch.Generator().manual_seed(seed)
        sources = self.sample_sources(n, generator)
        targets, _ = self.sample(sources, generator=generator)
        return Dataset.from_dict({"input_ids": sources.tolist(), "labels": targets.tolist()})

    # ------------------------------------------------------------------ scores
    @torch.no_grad()
    def _per_row(self, sources, targets, batch_size: int, entropy: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """Per row: the summed NLL (or exact next-token entropy) over the target tokens, and their count."""
        sources, targets = _rows(sources), _rows(targets)
        if sources.shape[0] != targets.shape[0]:
            raise ValueError(f"{sources.shape[0]} sources for {targets.shape[0]} targets.")
        sums, counts = [], []
        for src, tgt in zip(sources.split(batch_size), targets.split(batch_size)):
            mask = _label_mask(tgt)  # (B, T)
            out = self.engine.score(input_ids=src, sequences=tgt.clamp_min(0), sequence_mask=mask, output_logits=entropy)
            if entropy:
                logp = torch.log_softmax(out.logits.float(), dim=-1)  # (B, T, V)
                values = -(logp.exp() * logp.nan_to_num(neginf=0.0)).sum(-1) * mask  # (B, T); 0 * -inf counted as 0
            else:
                values = -out.logprobs  # (B, T), 0 where masked
            sums.append(values.sum(-1))
            counts.append(mask.sum(-1))
        return torch.cat(sums), torch.cat(counts)

    def nll(self, sources, targets, *, batch_size: int = 512, reduce: bool = True):
        """NLL_oracle: the oracle's mean NLL per token (nats) of ``targets`` `(n, T)` given ``sources``
        (ids; -100 in ``targets`` is ignored); ``inf`` if a target holds a special token. With
        ``reduce=False``, an `(n,)` tensor: each row's mean per token."""
        sums, counts = self._per_row(sources, targets, batch_size, entropy=False)
        return float(sums.sum() / counts.sum()) if reduce else sums / counts

    def entropy(self, sources, targets, *, batch_size: int = 512, reduce: bool = True):
        """Mean over positions of the exact entropy (nats) of the oracle's next-token distribution
        along ``targets`` (teacher-forced). With ``targets`` the oracle's own samples this is an
        unbiased, low-variance estimate of its entropy rate ``H(Y | X) / T`` (chain rule), which
        :meth:`nll` of the same samples estimates with more variance. ``reduce=False``: per row."""
        sums, counts = self._per_row(sources, targets, batch_size, entropy=True)
        return float(sums.sum() / counts.sum()) if reduce else sums / counts

    def evaluate(self, student, test_set, *, temperatures: Sequence[float] = (1.0,), seed: int = 0, batch_size: int = 256,
                 metrics: Sequence[str] = ()) -> list[dict]:
        """NLL_oracle and NLL_test of ``student`` on ``test_set`` at each temperature: the rows of
        :func:`hf_seqgan.evaluation.temperature_sweep` with the oracle as the reference model (its
        ``nll_reference`` renamed ``nll_oracle``), the student decoding as :attr:`decode_kwargs` says."""
        from .evaluation import temperature_sweep

        rows = temperature_sweep(student, self.tokenizer, test_set, temperatures=temperatures, reference_model=self.oracle,
                                 seed=seed, batch_size=batch_size, metrics=metrics, **self.decode_kwargs)
        for row in rows:
            row["nll_oracle"] = row.pop("nll_reference")
        return rows

    def describe(self) -> str:
        """One line naming the task's sizes (for benchmark tables)."""
        params = sum(p.numel() for p in self.oracle.parameters())
        cfg = self.oracle.config
        return (f"oracle seed {self.seed}: BART d_model {cfg.d_model}, {cfg.encoder_layers}+{cfg.decoder_layers} layers, "
                f"init_std {cfg.init_std}, {params / 1e3:.0f}k params; {len(self.tokenizer) - len(SPECIAL_TOKENS)} content tokens, "
                f"source {self.source_length}, target {self.target_length} (log V = {math.log(len(self.tokenizer) - len(SPECIAL_TOKENS)):.2f} nats)")
