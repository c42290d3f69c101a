"""Logits processors for decoding beyond a fixed temperature.

They work with plain ``model.generate(..., logits_processor=LogitsProcessorList([...]))`` of any
seq2seq model and with :meth:`hf_seqgan.rollout.RolloutEngine.sample`. Each one validates its
arguments in ``__init__``, returns a new tensor (its inputs are never modified) and reads the step
from ``input_ids.shape[-1]``: for an encoder–decoder the decoder ids hold the decoder start token,
so ``cur_len == 1`` when the first token is generated (``prompt_length=1``, the default).

- :class:`TemperatureScheduleLogitsWarper`: a temperature that moves with the generated position,
  the sentence index or the position inside the sentence, taken from a
  :class:`~hf_seqgan.schedules.Schedule`; 0 is argmax.
- :class:`GumbelSamplingLogitsProcessor`: Gumbel noise, so that greedy decoding is exact sampling
  and beam search is stochastic beam search (Kool et al. 2019).
- :class:`DiscriminatorGuidedLogitsProcessor`: FUDGE-style guidance (Yang & Klein 2021), the top-k
  next tokens re-scored by a discriminator in one batched forward per step.
- :class:`NoDoubledTokenLogitsProcessor`: never the token just generated again (no "not not" or
  "great great"), the word-level stutter a policy learns against a small discriminator, which
  `NoRepeatNGramLogitsProcessor` (size 2 allows one doubling; size 1 forbids every repeated word)
  does not target.
- :func:`sentence_end_token_ids`: the ids of a tokenizer's tokens that end a sentence.

Order matters: processors run in list order, after the built-in ones of ``generate()`` and before
the generation config's temperature/top-k/top-p warpers (sampling only). Put the Gumbel processor
last among yours.
"""

from __future__ import annotations

import math
import warnings
from typing import Optional, Sequence, Union

import torch
import torch.nn.functional as F
from transformers import LogitsProcessor

from .discriminators import SequenceDiscriminator
from .sampling import gumbel_noise
from .schedules import Schedule, as_schedule

__all__ = [
    "TemperatureScheduleLogitsWarper",
    "GumbelSamplingLogitsProcessor",
    "DiscriminatorGuidedLogitsProcessor",
    "NoDoubledTokenLogitsProcessor",
    "sentence_end_token_ids",
]


TEMPERATURE_MODES = ("position", "sentence", "position_in_sentence")


def _nonneg_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {value!r}.")
    return value


def _argmax_only(scores: torch.Tensor, rows: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``scores`` with every entry but the row's argmax set to the dtype's lowest finite value (no
    inf, no NaN), for all rows or where ``rows`` `(R, 1)` is true."""
    keep = torch.zeros_like(scores, dtype=torch.bool).scatter_(-1, scores.argmax(-1, keepdim=True), True)  # (R, V)
    if rows is not None:
        keep = keep | ~rows
    return scores.masked_fill(~keep, torch.finfo(scores.dtype).min)


def sentence_end_token_ids(tokenizer, marks: str = ".!?") -> list[int]:
    """Ids of the tokens whose text, stripped, ends with one of ``marks`` (``.``, ``Ġ.``, ``."``
    ... for a byte-level BPE), to pass as ``sentence_end_token_ids``. Decodes the whole vocabulary
    once; special tokens are left out."""
    if not marks:
        raise ValueError("marks must hold at least one character, e.g. '.!?'.")
    special = set(tokenizer.all_special_ids)
    ids = [i for i in range(len(tokenizer)) if i not in special]
    texts = tokenizer.batch_decode([[i] for i in ids])
    found = [i for i, text in zip(ids, texts) if text.strip() and text.strip().rstrip("\"')]»”’").endswith(tuple(marks))]
    if not found:
        raise ValueError(f"No token of {type(tokenizer).__name__} ends with one of {marks!r}.")
    return found


class NoDoubledTokenLogitsProcessor(LogitsProcessor):
    """Forbid each row's last generated token as its next one: an output never holds a token twice
    in a row (``not not``, ``great great``, ``weißen weißen``), while a word may come back later
    (``the ... the``), which about a fifth of real review sentences do and only 1% double a word.

    The first ``prompt_length`` decoder ids (the decoder start token; 1 for an encoder-decoder, as in
    the other processors here) are not counted. A row whose only allowed token is its last one
    (another processor forced it) keeps it, so no row is left without a finite score. Banned scores
    are ``-inf``, as in transformers' own bans.
    """

    def __init__(self, prompt_length: int = 1):
        self.prompt_length = _nonneg_int(prompt_length, "prompt_length")

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if input_ids.shape[-1] <= self.prompt_length:
            return scores
        banned = torch.zeros_like(scores, dtype=torch.bool).scatter_(-1, input_ids[:, -1:], True)  # (R, V)
        allowed = scores > float("-inf")  # (R, V)
        keep_one = (allowed & ~banned).any(-1, keepdim=True)  # (R, 1): another token stays allowed
        return scores.masked_fill(banned & keep_one, float("-inf"))


class TemperatureScheduleLogitsWarper(LogitsProcessor):
    r"""Divide the scores by a temperature that follows a :class:`~hf_seqgan.schedules.Schedule`.

    The temperature at a step is ``schedule.value(step)``, where the step is, per ``mode``:

    - ``"position"``: the index of the token being generated (0 for the first), the same for all
      rows: ``input_ids.shape[-1] - prompt_length``;
    - ``"sentence"``: the index of the sentence the token belongs to, per row: the number of
      sentence-end tokens generated so far in that row (a diverse first sentence, then near-greedy
      text: ``piecewise:0=1.2,1=0.3``);
    - ``"position_in_sentence"``: the index of the token inside its sentence, per row, restarting
      after each sentence end.

    A temperature of 0 (or below ``argmax_below``) keeps only the row's argmax: the other scores get
    the dtype's lowest finite value, so no inf or NaN appears and sampling from that row *is* greedy
    decoding. With beam search (which passes log-softmax scores) each beam then extends with its
    argmax; otherwise the per-step log-probs are divided by the temperature.

    The step is always read from ``input_ids`` (never from a counter), so the processor is pure and
    can be reused across ``generate`` calls and beams. transformers'
    ``LinearTemperatureScheduleLogitsProcessor`` (diffusion Gemma) instead receives the step as an
    extra ``cur_step`` argument from its own denoising loop and is linear only.

    **Interplay with ``generation_config.temperature``**: ``generate()`` applies the config's
    temperature *after* the user processors when sampling, so the two multiply
    (``logits / (schedule * config_temperature)``); :meth:`RolloutEngine.sample`'s ``temperature``
    does the same. Keep those at 1.0 and put the whole temperature in the schedule; pass
    ``generation_config`` to have that checked.

    Args:
        schedule (`Schedule` or `str` or `float`): the temperature, >= 0 at every step (e.g.
            ``"linear:start=1.5,end=0,steps=20"``).
        mode (`str`, defaults to `"position"`): ``"position"``, ``"sentence"`` or
            ``"position_in_sentence"``.
        sentence_end_token_ids (`list[int]`, *optional*): the ids that end a sentence (see
            :func:`sentence_end_token_ids`); required by the sentence modes.
        prompt_length (`int`, defaults to 1): decoder ids present before the first generated token
            (the decoder start token; more with a decoder prompt).
        argmax_below (`float`, defaults to 1e-6): temperatures below this are treated as 0.
        generation_config (`GenerationConfig`, *optional*): if given, a temperature other than 1.0
            in it raises a `ValueError` (it would multiply with the schedule).

    Examples:

    ```python
    >>> import torch
    >>> from transformers import LogitsProcessorList
    >>> from hf_seqgan.tiny import train_tokenizer, build_tiny_model
    >>> from hf_seqgan.logits_process import TemperatureScheduleLogitsWarper
    >>> tok = train_tokenizer(["the cat sat on the mat .", "a dog ran far !"] * 20, vocab_size=300)
    >>> model = build_tiny_model("bart", tok)
    >>> warper = TemperatureScheduleLogitsWarper("piecewise:0=1.5,3=1.5,4=0", generation_config=model.generation_config)
    >>> batch = tok(["the cat sat"], return_tensors="pt")
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> out = model.generate(**batch, do_sample=True, max_new_tokens=8, logits_processor=LogitsProcessorList([warper]))
    >>> greedy = model.generate(**batch, decoder_input_ids=out[:, :5], do_sample=False, max_new_tokens=4)
    >>> torch.equal(out, greedy)  # from the 5th token on (temperature 0), sampling is greedy
    True

    ```
    """

    def __init__(
        self,
        schedule: Union[Schedule, str, float],
        *,
        mode: str = "position",
        sentence_end_token_ids: Optional[Sequence[int]] = None,
        prompt_length: int = 1,
        argmax_below: float = 1e-6,
        generation_config=None,
    ):
        self.schedule = as_schedule(schedule, name="temperature schedule", low=0.0)
        if mode not in TEMPERATURE_MODES:
            raise ValueError(f"mode must be one of {TEMPERATURE_MODES}, got {mode!r}.")
        self.mode = mode
        self.prompt_length = _nonneg_int(prompt_length, "prompt_length")
        if not isinstance(argmax_below, (int, float)) or not 0.0 <= argmax_below < math.inf:
            raise ValueError(f"argmax_below must be a finite number >= 0, got {argmax_below!r}.")
        self.argmax_below = float(argmax_below)
        if mode == "position":
            if sentence_end_token_ids is not None:
                raise ValueError("sentence_end_token_ids is only used by mode='sentence' or 'position_in_sentence'.")
            self.sentence_end_token_ids = None
        else:
            ids = [] if sentence_end_token_ids is None else list(sentence_end_token_ids)
            if not ids or any(isinstance(i, bool) or not isinstance(i, int) or i < 0 for i in ids):
                raise ValueError(
                    f"mode={mode!r} needs a non-empty list of non-negative sentence_end_token_ids, got {sentence_end_token_ids!r}; "
                    "hf_seqgan.logits_process.sentence_end_token_ids(tokenizer) finds them."
                )
            self.sentence_end_token_ids = torch.tensor(sorted(set(ids)), dtype=torch.long)
        temperature = getattr(generation_config, "temperature", None)
        if temperature is not None and temperature != 1.0:
            raise ValueError(
                f"generation_config.temperature={temperature} would multiply with the temperature schedule "
                "(generate() applies it after the logits processors when sampling). Set "
                "generation_config.temperature = 1.0 and fold that factor into the schedule."
            )
        self._table = torch.empty(0)  # memo of the pure function step -> temperature, steps 0..n-1
        self._table_argmax, self._table_has_argmax = torch.empty(0, dtype=torch.bool), False  # where it is "0"

    def steps(self, input_ids: torch.LongTensor) -> torch.Tensor:
        """`(R,)` the schedule's step for the token each row generates next (see ``mode``)."""
        generated = input_ids[:, self.prompt_length :]  # (R, L)
        length = generated.shape[-1]
        if self.mode == "position":
            return torch.full((input_ids.shape[0],), length, dtype=torch.long, device=input_ids.device)
        is_end = torch.isin(generated, self.sentence_end_token_ids.to(generated.device))  # (R, L)
        if self.mode == "sentence":
            return is_end.sum(-1)
        positions = torch.arange(length, device=generated.device)
        last_end = torch.where(is_end, positions, -1).amax(-1) if length else torch.full_like(input_ids[:, 0], -1)
        return length - 1 - last_end

    def temperatures(self, largest_step: int) -> torch.Tensor:
        """`(n,)` float32 temperatures of steps ``0..n-1`` (n > ``largest_step``), computed once."""
        if largest_step >= self._table.numel():
            self._table = self.schedule.values(torch.arange(max(64, 2 * largest_step + 2), dtype=torch.float64))
            self._table_argmax = self._table < self.argmax_below if self.argmax_below > 0 else self._table == 0
            self._table_has_argmax = bool(self._table_argmax.any())
        return self._table

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if self.mode == "position":
            step = max(input_ids.shape[-1] - self.prompt_length, 0)
            t = float(self.temperatures(step)[step])
            return _argmax_only(scores) if t < self.argmax_below or t == 0.0 else scores / t
        steps = self.steps(input_ids)  # (R,), at most the generated length: no need to look at them
        table = self.temperatures(max(input_ids.shape[-1] - self.prompt_length, 0)).to(scores.device)
        t = table[steps][:, None].to(scores.dtype)  # (R, 1)
        if not self._table_has_argmax:
            return scores / t
        zero = self._table_argmax.to(scores.device)[steps][:, None]  # (R, 1)
        scaled = scores / torch.where(zero, torch.ones_like(t), t)  # (R, V)
        return _argmax_only(scaled, zero) if bool(zero.any()) else scaled


def _gumbel_with_maximum(perturbed: torch.Tensor, maximum: torch.Tensor) -> torch.Tensor:
    """Gumbels conditioned on their row maximum being ``maximum`` `(R,)`, given unconditioned
    Gumbels ``perturbed`` `(R, V)` with their own maximum (Kool et al. 2019, appendix B; the stable
    form of ``-log(exp(-maximum) - exp(-max(perturbed)) + exp(-perturbed))``)."""
    t = maximum[:, None]  # (R, 1)
    v = torch.log(torch.expm1(perturbed - perturbed.amax(-1, keepdim=True)).neg_()).add_(t - perturbed)  # (R, V)
    return t - F.softplus(v)  # t - log(1 + exp(v)); the row's argmax gets exactly t


class GumbelSamplingLogitsProcessor(LogitsProcessor):
    r"""Add Gumbel noise to the (tempered) scores: greedy decoding becomes exact sampling and beam
    search becomes stochastic beam search.

    - **Greedy** (``num_beams=1``): returns ``scores / temperature + G`` with ``G ~ Gumbel(0, 1)``
      i.i.d., so ``argmax`` is an exact sample of ``softmax(scores / temperature)`` (the Gumbel-max
      trick): ``generate(do_sample=False)`` samples.
    - **Beam search** (``num_beams=k > 1``): stochastic beam search (Kool, van Hoof & Welling 2019,
      https://arxiv.org/abs/1903.06059). Each prefix carries a perturbed log-probability; its
      children's perturbations are Gumbels conditioned on their maximum being the parent's, and the
      processor returns the child-minus-parent increments, so that beam search's accumulated score
      *is* the perturbed log-probability. The top k by that score are k distinct sequences sampled
      without replacement (Gumbel-top-k). Use :meth:`generate_kwargs` (``num_beams=k``,
      ``length_penalty=0``, ``do_sample=False``): a length penalty would re-rank the samples. The
      per-prefix state is looked up from ``input_ids`` (the previous step's rows, matched by prefix
      within each group of ``num_beams`` rows), and reset when a decode starts
      (``input_ids.shape[-1] == prompt_length``). Beam search keeps ``max(2, 1 + number of EOS ids) * num_beams``
      candidates a step, and the perturbed score is increasing in each child's own perturbed
      log-probability, so only each row's ``4 * num_beams`` best children are scored; the others get
      ``-inf`` (exact for up to three EOS ids).

    Put it last among the processors and use it with ``do_sample=False`` (with sampling on top the
    noise would be drawn twice): ``generate(..., **processor.generate_kwargs())`` sets the decode up
    to match the processor. With ``num_beams > 1`` a mismatch it can see raises a `ValueError`: a
    row count that is not a multiple of ``num_beams`` (at once), or groups of ``num_beams`` rows
    whose first-step scores differ, so that they are not the beams of one source (``generate()``
    ran with another ``num_beams``, greedy or sampling; raised at the second step). Groups holding
    copies of one source (sampling with ``num_return_sequences=num_beams``, repeated sources) look
    like beams and pass. :class:`~hf_seqgan.rollout.RolloutEngine` refuses the processor with
    ``num_beams > 1`` or ``do_sample=True``. Noise costs one random number per vocabulary entry and row.

    Args:
        temperature (`float`, defaults to 1.0): > 0; samples follow ``softmax(scores / temperature)``.
            A temperature schedule goes in a :class:`TemperatureScheduleLogitsWarper` placed before.
        num_beams (`int`, defaults to 1): the ``num_beams`` of the decode.
        generator (`torch.Generator`, *optional*): the noise's random stream (on the scores'
            device); consumed across calls.
        seed (`int`, *optional*): re-seed a private generator at the start of every decode, so that
            each call with the same inputs returns the same samples. Exclusive with ``generator``.
        prompt_length (`int`, defaults to 1): decoder ids before the first generated token.

    Examples:

    ```python
    >>> from transformers import LogitsProcessorList
    >>> from hf_seqgan.tiny import train_tokenizer, build_tiny_model
    >>> from hf_seqgan.logits_process import GumbelSamplingLogitsProcessor
    >>> tok = train_tokenizer(["the cat sat on the mat", "a dog ran far"] * 20, vocab_size=300)
    >>> model = build_tiny_model("bart", tok)
    >>> batch = tok(["the cat sat"], return_tensors="pt")
    >>> sbs = GumbelSamplingLogitsProcessor(num_beams=4, seed=0)
    >>> out = model.generate(**batch, max_new_tokens=4, logits_processor=LogitsProcessorList([sbs]), **sbs.generate_kwargs())
    >>> len({tuple(row) for row in out.tolist()})  # 4 distinct samples without replacement
    4

    ```
    """

    def __init__(
        self,
        temperature: float = 1.0,
        *,
        num_beams: int = 1,
        generator: Optional[torch.Generator] = None,
        seed: Optional[int] = None,
        prompt_length: int = 1,
    ):
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not 0.0 < temperature < math.inf:
            raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}; for greedy decoding leave the Gumbel processor out.")
        if isinstance(num_beams, bool) or not isinstance(num_beams, int) or num_beams < 1:
            raise ValueError(f"num_beams must be a positive integer, got {num_beams!r}.")
        if generator is not None and seed is not None:
            raise ValueError("Pass either generator or seed, not both.")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ValueError(f"seed must be an integer, got {seed!r}.")
        self.temperature = float(temperature)
        self.num_beams = num_beams
        self.generator = generator
        self.seed = seed
        self.prompt_length = _nonneg_int(prompt_length, "prompt_length")
        self._state: Optional[tuple[torch.Tensor, ...]] = None  # ids, kept children, their log-probs and perturbed scores
        self._mixed_groups = False  # the decode's first step showed groups of num_beams rows from different sources

    @staticmethod
    def beam_search_kwargs(num_samples: int) -> dict:
        """``generate()`` arguments for stochastic beam search returning ``num_samples`` samples
        (prefer :meth:`generate_kwargs`, which takes ``num_beams`` from the processor)."""
        return dict(num_beams=num_samples, num_return_sequences=num_samples, do_sample=False, length_penalty=0.0, early_stopping=False)

    def generate_kwargs(self, num_return_sequences: Optional[int] = None) -> dict:
        """The ``generate()`` arguments this processor is built for: greedy decoding for
        ``num_beams=1``, else beam search with its ``num_beams``, no length penalty and
        ``num_return_sequences`` samples per source (default: ``num_beams``)."""
        if self.num_beams == 1:
            if num_return_sequences not in (None, 1):
                raise ValueError("num_return_sequences > 1 needs num_beams > 1 (distinct samples); or repeat the sources for independent ones.")
            return dict(do_sample=False, num_beams=1)
        n = self.num_beams if num_return_sequences is None else num_return_sequences
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= self.num_beams:
            raise ValueError(f"num_return_sequences must be an integer in [1, num_beams={self.num_beams}], got {num_return_sequences!r}.")
        return {**self.beam_search_kwargs(self.num_beams), "num_return_sequences": n}

    def _fix(self) -> str:
        return (f"Call generate(..., logits_processor=LogitsProcessorList([..., processor]), **processor.generate_kwargs()), which "
                f"runs beam search with num_beams={self.num_beams} and do_sample=False.")

    def _check_first_step(self, scores: torch.Tensor) -> None:
        """At a decode's first step, rows come in groups of ``num_beams`` with one source's (identical)
        scores. A mixed group is reported at the next step, so that a lone call on made-up scores passes."""
        rows, k = scores.shape[0], self.num_beams
        if rows % k:
            raise ValueError(f"GumbelSamplingLogitsProcessor(num_beams={k}) got {rows} decoder rows, not a multiple of {k}: generate() "
                             f"runs another num_beams (or greedy/sampling decoding). {self._fix()}")
        grouped = scores.float().reshape(rows // k, k, -1)  # (B, k, V)
        self._mixed_groups = not bool(torch.isclose(grouped, grouped[:, :1], rtol=1e-4, atol=1e-4, equal_nan=True).all())

    def _noise(self, scores: torch.Tensor, fresh: bool) -> torch.Tensor:
        if self.seed is not None and (fresh or self.generator is None or self.generator.device != scores.device):
            self.generator = torch.Generator(device=scores.device).manual_seed(self.seed)
        return gumbel_noise(scores.shape, generator=self.generator, device=scores.device, dtype=torch.float32)

    def _parents(self, input_ids: torch.LongTensor) -> torch.Tensor:
        """`(R,)` the previous step's row each row continues (prefix match within its beam group)."""
        old_ids = self._state[0]
        rows, k = input_ids.shape[0], self.num_beams
        if old_ids.shape != (rows, input_ids.shape[1] - 1) or rows % k:
            raise RuntimeError(
                f"GumbelSamplingLogitsProcessor(num_beams={k}) got {tuple(input_ids.shape)} decoder ids after "
                f"{tuple(old_ids.shape)}: it must see every step of one decode, with num_beams equal to generate()'s."
            )
        new = input_ids[:, :-1].reshape(rows // k, k, 1, -1)
        same = (new == old_ids.reshape(rows // k, 1, k, -1)).all(-1)  # (B, k, k)
        if not bool(same.any(-1).all()):
            raise RuntimeError(f"A decoder row continues none of the previous rows: is num_beams={k} the decode's num_beams?")
        return (same.int().argmax(-1) + torch.arange(0, rows, k, device=input_ids.device)[:, None]).reshape(-1)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        fresh = input_ids.shape[-1] <= self.prompt_length
        noise = self._noise(scores, fresh)  # (R, V)
        if self.num_beams == 1:
            return (scores.float() / self.temperature + noise).to(scores.dtype)
        rows = scores.shape[0]
        logp = torch.log_softmax(scores.float() / self.temperature, dim=-1)  # (R, V)
        if fresh or self._state is None:
            self._check_first_step(scores)
            parent_phi = parent_g = torch.zeros(rows, device=scores.device)
        else:
            if self._mixed_groups:
                raise ValueError(
                    f"GumbelSamplingLogitsProcessor(num_beams={self.num_beams}): at the first step its groups of {self.num_beams} rows had "
                    f"different scores, so they are not the beams of one source: generate() ran with another num_beams, or with greedy "
                    f"or sampling decoding (do_sample=True). {self._fix()}"
                )
            parent, token = self._parents(input_ids), input_ids[:, -1:]
            _, old_tokens, old_phi, old_g = self._state
            slot = old_tokens.index_select(0, parent) == token  # (R, M) where the parent kept this child
            found = slot.any(-1)
            slot = slot.int().argmax(-1, keepdim=True)
            parent_phi = old_phi.index_select(0, parent).gather(1, slot).squeeze(1)  # (R,)
            parent_g = torch.where(found, old_g.index_select(0, parent).gather(1, slot).squeeze(1), -math.inf)  # (R,)
        # the children that can enter the beam: the best by perturbed log-prob (G~ is increasing in it)
        perturbed, tokens = (logp + noise).topk(min(4 * self.num_beams, scores.shape[-1]), dim=-1)  # (R, M)
        phi = parent_phi[:, None] + logp.gather(1, tokens)  # (R, M) log-prob of each child sequence
        g = torch.nan_to_num(_gumbel_with_maximum(parent_phi[:, None] + perturbed, parent_g), nan=-math.inf)  # (R, M)
        self._state = (input_ids, tokens, phi, g)
        alive = torch.isfinite(parent_g)[:, None]
        increments = torch.where(alive, g - torch.where(alive, parent_g[:, None], 0.0), -math.inf)  # (R, M)
        return torch.full_like(scores, -math.inf).scatter_(1, tokens, increments.to(scores.dtype))


class DiscriminatorGuidedLogitsProcessor(LogitsProcessor):
    r"""Discriminator-guided decoding: re-score the top-k next tokens by ``log p_D(label | source,
    prefix + token)`` (FUDGE, Yang & Klein 2021, https://arxiv.org/abs/2104.05218).

    At each step the ``top_k`` best-scored tokens of every row become ``score + weight * log
    p_D(label | ...)``; every other token gets ``filter_value`` (FUDGE samples among the top-k
    only, and leaving them untouched would favour them over the penalised candidates). All
    ``R * top_k`` candidate sequences of a step are scored in **one** batched discriminator
    forward.

    A logits processor never sees the encoder input, so it is built with the batch's sources. Rows
    map back to sources by position: ``generate()`` repeats each source ``num_beams`` times (beam
    search) or ``num_return_sequences`` times (sampling), :meth:`RolloutEngine.sample` repeats it
    ``num_samples`` times, all source-major, so row ``r`` of ``R`` belongs to source
    ``r // (R // B)``.

    Two paths, chosen once in ``__init__``:

    - **shared vocabulary** (``tokenizer`` is None or has the discriminator's vocabulary): the
      generator's ids are packed into the discriminator's input by tensor ops; cost per step is one
      forward over ``R * top_k`` sequences of length ``source + prefix``.
    - **different tokenizers**: each step decodes the ``R * top_k`` prefix + candidate sequences
      to text with the generator's tokenizer (a Python call over token lists: the one place with a
      ``.tolist()`` on this path) and re-encodes them, with their sources, with the discriminator's
      tokenizer. That adds ``O(R * top_k * prefix length)`` CPU tokenizer work per step, so
      ``O(R * top_k * T^2)`` over a decode of ``T`` tokens, on top of the same forward.

    Args:
        discriminator (`SequenceDiscriminator` or a sequence classifier): the judge; a bare
            `AutoModelForSequenceClassification` needs ``discriminator_tokenizer``. Put it in eval mode.
        sources (*optional*): the batch's sources, as texts, a `(B, S)` tensor of generator ids, or
            the tokenized batch (its ``input_ids``). Required by a conditional discriminator;
            otherwise only their number is used (``num_sources`` can be given instead).
        label (`int` or `str`, defaults to 1): the class to steer towards.
        weight (`float`, defaults to 1.0): multiplier of ``log p_D``; finite (negative steers away).
        top_k (`int`, defaults to 10): candidates re-scored per row and step, >= 1.
        tokenizer (*optional*): the generator's tokenizer; needed when its vocabulary differs from
            the discriminator's, and to decode id sources for that path.
        discriminator_tokenizer (*optional*): the classifier's tokenizer, when a bare model is given.
        conditional (`bool`, defaults to `True`): for a bare model, whether it judges pairs.
        num_sources (`int`, *optional*): the batch size, when no sources are given.
        prompt_length (`int`, defaults to 1): decoder ids before the first generated token; they are
            not part of the judged prefix.
        filter_value (`float`, defaults to `-inf`): the score of tokens outside the top-k.

    Examples:
        See ``docs/decoding.md`` for a guided decode with a trained tiny discriminator.
    """

    def __init__(
        self,
        discriminator,
        sources=None,
        *,
        label: Union[int, str] = 1,
        weight: float = 1.0,
        top_k: int = 10,
        tokenizer=None,
        discriminator_tokenizer=None,
        conditional: bool = True,
        num_sources: Optional[int] = None,
        prompt_length: int = 1,
        filter_value: float = -math.inf,
    ):
        if not isinstance(discriminator, SequenceDiscriminator):
            if discriminator_tokenizer is None:
                raise ValueError("Pass a SequenceDiscriminator, or a sequence classifier together with discriminator_tokenizer.")
            discriminator = SequenceDiscriminator(discriminator, discriminator_tokenizer, conditional=conditional)
        if discriminator.training:
            warnings.warn("The discriminator is in training mode (dropout on): call .eval() for deterministic guidance.", stacklevel=2)
        self.discriminator = discriminator
        self.label = discriminator.label_index(label)
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight):
            raise ValueError(f"weight must be a finite number, got {weight!r}.")
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
            raise ValueError(f"top_k must be an integer >= 1, got {top_k!r}.")
        self.weight, self.top_k = float(weight), top_k
        self.prompt_length = _nonneg_int(prompt_length, "prompt_length")
        self.filter_value = float(filter_value)
        self.text_path = tokenizer is not None and not discriminator.shares_vocabulary(tokenizer)
        self.tokenizer = tokenizer if self.text_path else None
        self.source_ids, self.source_texts = self._sources(sources, tokenizer)
        if self.source_ids is not None:
            num_sources = self.source_ids.shape[0]
        elif self.source_texts is not None:
            num_sources = len(self.source_texts)
        if num_sources is None or isinstance(num_sources, bool) or not isinstance(num_sources, int) or num_sources < 1:
            raise ValueError("Pass the batch's sources (required by a conditional discriminator) or num_sources, the batch size.")
        self.num_sources = num_sources

    def _sources(self, sources, tokenizer):
        """Sources in the form the chosen path needs: ids of the shared vocabulary, or texts."""
        if sources is None:
            if self.discriminator.conditional:
                raise ValueError("A conditional discriminator needs the batch's sources (texts or generator input_ids).")
            return None, None
        if hasattr(sources, "keys") and "input_ids" in sources:
            sources = sources["input_ids"]
        if isinstance(sources, str):
            raise ValueError("sources must be a list of texts or a tensor of ids, not one string.")
        if torch.is_tensor(sources):
            if sources.dim() != 2:
                raise ValueError(f"Source ids must be (batch, length), got shape {tuple(sources.shape)}.")
            if not self.text_path:
                return sources.long(), None
            return None, tokenizer.batch_decode(sources, skip_special_tokens=True)
        texts = list(sources)
        if not all(isinstance(t, str) for t in texts):
            raise ValueError("sources must be a list of texts or a tensor of ids.")
        if self.text_path:
            return None, texts
        return self.discriminator.tokenizer(texts, padding=True, return_tensors="pt").input_ids, None

    def source_index(self, rows: int, device=None) -> torch.Tensor:
        """`(R,)` the source of each of ``rows`` decoder rows (source-major repetition)."""
        if rows % self.num_sources:
            raise ValueError(
                f"{rows} decoder rows for {self.num_sources} sources: the processor must be built with the same batch "
                "that generate()/RolloutEngine.sample() decodes (rows are sources repeated num_beams or num_return_sequences times)."
            )
        return torch.arange(self.num_sources, device=device).repeat_interleave(rows // self.num_sources)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        k = min(self.top_k, scores.shape[-1])
        top_scores, candidates = scores.topk(k, dim=-1)  # (R, k)
        log_p = self.discriminator.score_candidates(
            input_ids[:, self.prompt_length :], candidates, label=self.label,
            source_index=self.source_index(scores.shape[0], input_ids.device), source_ids=self.source_ids,
            source_texts=self.source_texts, generator_tokenizer=self.tokenizer,
        )  # (R, k)
        guided = top_scores + self.weight * log_p.to(device=scores.device, dtype=scores.dtype)
        return torch.full_like(scores, self.filter_value).scatter(-1, candidates, guided)
