"""A discriminator built from the generator itself, and a training loop that says whether it learned.

:class:`Seq2SeqDiscriminator` copies a generator (any `AutoModelForSeq2SeqLM`: BART, T5, Marian,
mBART, Pegasus) into an encoder–decoder *trunk* that reads ``(source, target)`` teacher-forced, and
puts a head over the decoder states. It starts from everything the generator knows about the task,
where a classifier trained from scratch has to learn the task first (in the issue's calibration on
the oracle task a small BERT from scratch stayed at chance against an MLE student 0.9 nats/token
away from the data).
Heads (``head=``):

- ``"mean"``: a linear layer over the masked mean of the decoder states;
- ``"token"``: an MLP scores every position and the scores are summed: a per-token log-ratio
  ``log p_data(y_t | ...) - log p_G(y_t | ...)``, the form of a residual energy (Deng et al. 2020,
  https://arxiv.org/abs/2004.11714; Bakhtin et al. 2021, https://jmlr.org/papers/v22/20-326.html);
- ``"ratio"`` (the default): the logit *is* ``sum_t log p_trunk(y_t | ...) - log p_G(y_t | ...)``
  (the trunk keeps its LM head; the generator is a frozen copy): noise-contrastive estimation with
  the generator as the noise distribution (Gutmann & Hyvärinen 2010,
  https://proceedings.mlr.press/v9/gutmann10a.html), 0 at initialisation. As a residual energy at
  T_E = 1 it makes ``q = p_trunk`` exactly (``Z = 1``).

On the oracle task (``benchmarks/bench_discriminator.py --designs``: real side = the student's own
4,000 training pairs, fresh student samples as fakes, early stopping on 500 validation pairs) the
ratio head reached held-out accuracy 0.755 / AUC 0.838 against an MLE student, the pooled and
per-token heads 0.58-0.63 and a BERT from scratch 0.60-0.65: hence the default.

``residual=True`` starts the head at 0 (logit 0, ``D = 1/2``, energy 0: the reweighted model equals
the generator until the discriminator learns otherwise). ``generator_features=True`` feeds the
frozen generator's per-token ``log p_G(y_t)``, entropy and gap to its argmax to the head next to the
states. The class subclasses :class:`~hf_seqgan.discriminators.SequenceDiscriminator` and keeps its
interface (``logits_from_ids``, ``encode_ids`` + forward, ``log_probs``, ``label_index``,
``shares_vocabulary``, ``conditional``, ``score_*``, ``logits_from_soft`` for Gumbel training,
``save_pretrained``/``from_pretrained``), so it drops in wherever the library takes a
discriminator. It has one logit: ``log p(real) = logsigmoid(logit)``, label 1 is ``"real"``.

:func:`train_discriminator` trains any such discriminator against a generator's fresh samples,
keeps a held-out slice of the real pairs (with fixed generated partners), reports
``d_heldout_acc`` / ``d_heldout_auc``, restores the best state by held-out loss, can stop at a
target held-out accuracy, and warns when the discriminator stays within a margin of chance.

Examples:

```python
>>> import torch
>>> from hf_seqgan.oracle import OracleTask
>>> from hf_seqgan.seq2seq_discriminator import Seq2SeqDiscriminator
>>> task = OracleTask.build(seed=0, vocab_size=20, source_length=4, target_length=6)
>>> data = task.sample_dataset(4, seed=1)
>>> disc = Seq2SeqDiscriminator(task.oracle, task.tokenizer, head="token", seed=0).eval()
>>> logits = disc.logits_from_ids(torch.tensor(data["labels"]), torch.tensor(data["input_ids"]))
>>> logits.shape, bool((logits == 0).all())  # residual: every logit starts at 0
(torch.Size([4, 1]), True)

```
"""

from __future__ import annotations

import copy
import json
import logging
import os
from typing import Optional, Sequence

import torch
import torch.nn.functional as F

from .discriminators import SequenceDiscriminator
from .sampling import soft_embed, unwrap_model

# train_discriminator and DiscriminatorTrainingResult (hf_seqgan.discriminator_training) are importable from here too
__all__ = ["Seq2SeqDiscriminator", "HEADS", "log_odds", "heldout_metrics", "CHANCE_WARNING"]

logger = logging.getLogger(__name__)

HEADS = ("ratio", "token", "mean")
SETTINGS_NAME = "hf_seqgan_seq2seq_discriminator.json"
HEAD_WEIGHTS_NAME = "hf_seqgan_head.safetensors"
REFERENCE_FOLDER = "reference"
CHANCE_WARNING = "the discriminator cannot tell real from generated: its rewards carry no signal"
_DROPOUT_FIELDS = ("dropout", "dropout_rate", "attention_dropout", "activation_dropout")
NUM_FEATURES = 3  # log p_G(y_t), entropy of p_G at t, log p_G(y_t) - max_v log p_G(v)


# ---------------------------------------------------------------------- small pure helpers
def _copy_generator(generator, dropout: Optional[float]):
    """A plain (unwrapped, adapters merged) copy of ``generator``, with ``dropout`` in every dropout field if given."""
    model = unwrap_model(generator)
    if hasattr(generator, "merge_and_unload") and type(generator).__module__.startswith("peft"):
        model = copy.deepcopy(generator).merge_and_unload()
    model = copy.deepcopy(model)
    if dropout is not None:
        config = copy.deepcopy(model.config)
        for name in _DROPOUT_FIELDS:
            if hasattr(config, name):
                setattr(config, name, float(dropout))
        rebuilt = type(model)(config)
        rebuilt.load_state_dict(model.state_dict())
        model = rebuilt
    return model.requires_grad_(True)


def _token_features(logits: torch.Tensor, targets: torch.Tensor, soft: Optional[torch.Tensor] = None) -> torch.Tensor:
    """`(N, T, 3)` per-token features of a distribution `(N, T, V)` along ``targets`` `(N, T)` (or soft one-hots)."""
    logp = torch.log_softmax(logits.float(), dim=-1)  # (N, T, V)
    if soft is not None:  # tokens of probability 0 are clamped so that 0 * log 0 stays 0 and their gradient finite
        chosen = (soft.float() * logp.clamp_min(-1e4)).sum(-1)  # (N, T)
    else:
        chosen = logp.gather(-1, targets[..., None]).squeeze(-1)  # (N, T)
    entropy = -(logp.exp() * logp.nan_to_num(neginf=0.0)).sum(-1)  # (N, T); tokens of probability 0 (logit -inf) count 0
    return torch.stack([chosen, entropy, chosen - logp.max(-1).values], dim=-1)


def log_odds(discriminator, logits: torch.Tensor, real_label: int = 1) -> torch.Tensor:
    """`(N,)` ``log D / (1 - D)`` with D = p(real): the log-odds of ``real_label`` against the other class."""
    logp = discriminator.log_probs(logits)  # (N, 2)
    real = discriminator.label_index(real_label)
    return logp[:, real] - logp[:, 1 - real]


def _auc(real: torch.Tensor, fake: torch.Tensor) -> float:
    """P(score_real > score_fake) + P(tie) / 2 (Mann–Whitney), from average ranks."""
    scores = torch.cat([real, fake]).double()
    order = scores.argsort()
    ranks = torch.empty_like(scores)
    ranks[order] = torch.arange(1, len(scores) + 1, dtype=torch.double)
    for value in scores.unique():  # average ranks over ties
        tie = scores == value
        if int(tie.sum()) > 1:
            ranks[tie] = ranks[tie].mean()
    n_real, n_fake = len(real), len(fake)
    return float((ranks[:n_real].sum() - n_real * (n_real + 1) / 2) / (n_real * n_fake))


def heldout_metrics(real_log_odds: torch.Tensor, fake_log_odds: torch.Tensor) -> dict:
    """Accuracy (mean over the two classes, threshold 0, ties half right), AUC and mean binary cross-entropy of log-odds."""
    real, fake = real_log_odds.detach().float().cpu(), fake_log_odds.detach().float().cpu()
    hit = lambda x: (x > 0).float().mean() + 0.5 * (x == 0).float().mean()  # noqa: E731  (a log-odds of exactly 0 is a coin flip)
    acc = 0.5 * float(hit(real) + hit(-fake))
    loss = float(-F.logsigmoid(real).mean() - F.logsigmoid(-fake).mean()) / 2
    return {"d_heldout_acc": acc, "d_heldout_auc": _auc(real, fake), "d_heldout_loss": loss}


class _Head(torch.nn.Module):
    """The head of the ``"mean"`` and ``"token"`` designs (a linear layer, or a one-hidden-layer MLP)."""

    def __init__(self, inputs: int, hidden: int, residual: bool, dropout: float):
        super().__init__()
        self.dropout = torch.nn.Dropout(dropout)
        self.hidden = torch.nn.Linear(inputs, hidden) if hidden else None
        self.out = torch.nn.Linear(hidden or inputs, 1)
        if residual:  # the logit starts at exactly 0; gradients reach the weights first, the trunk after
            torch.nn.init.zeros_(self.out.weight)
            torch.nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.dropout(x)
        if self.hidden is not None:
            x = self.dropout(F.gelu(self.hidden(x)))
        return self.out(x)


class Seq2SeqDiscriminator(SequenceDiscriminator):
    """A real/fake discriminator whose encoder–decoder trunk is a copy of the generator (see the module docstring).

    Args:
        generator: the seq2seq generator (a `PreTrainedModel`, or a `PeftModel` whose adapters are
            merged into the copy). It is copied; the original is never modified.
        tokenizer: the generator's tokenizer (texts in, vocabulary check).
        head (`str`, defaults to `"ratio"`): ``"ratio"``, ``"token"`` or ``"mean"``.
        residual (`bool`, defaults to `True`): start the logit at 0 (the ``"ratio"`` head always does).
        generator_features (`bool`, defaults to `True`): feed the frozen generator's per-token
            log-prob, entropy and argmax gap to the ``"mean"``/``"token"`` head (costs one no-grad
            forward of the frozen copy).
        conditional (`bool`, defaults to `True`): read ``(source, target)``; `False`: the encoder
            reads a lone EOS, so the target is judged alone.
        dropout (`float`, *optional*): dropout of the trunk (every dropout field of its config);
            `None` keeps the generator's. The head's dropout is ``head_dropout``.
        head_dropout (`float`, defaults to 0.1), head_hidden (`int`, defaults to 64: the
            ``"token"`` head's MLP width; ``"mean"`` is linear).
        seed (`int`, defaults to 0): seeds the head's initialisation.
    """

    def __init__(self, generator, tokenizer, *, head: str = "ratio", residual: bool = True, generator_features: bool = True,
                 conditional: bool = True, dropout: Optional[float] = 0.1, head_dropout: float = 0.1, head_hidden: int = 64,
                 seed: int = 0):
        torch.nn.Module.__init__(self)  # SequenceDiscriminator.__init__ wants a sequence classifier: its interface, not its set-up
        if head not in HEADS:
            raise ValueError(f"head must be one of {HEADS}, got {head!r}.")
        base = unwrap_model(generator)
        if not getattr(getattr(base, "config", None), "is_encoder_decoder", False) or not hasattr(base, "get_decoder"):
            raise ValueError(f"{type(base).__name__} is not an encoder–decoder generator: build a Seq2SeqDiscriminator from an AutoModelForSeq2SeqLM "
                             "(BART, T5, Marian, ...); wrap a sequence classifier in SequenceDiscriminator instead.")
        if tokenizer is None or tokenizer.pad_token_id is None:
            raise ValueError("Seq2SeqDiscriminator needs the generator's tokenizer, with a pad token.")
        if dropout is not None and not 0.0 <= dropout < 1.0 or not 0.0 <= head_dropout < 1.0:
            raise ValueError(f"dropout and head_dropout must lie in [0, 1), got {dropout!r} and {head_dropout!r}.")
        self.tokenizer = tokenizer
        self.conditional = bool(conditional)
        self.head_type, self.residual, self.generator_features = head, bool(residual) or head == "ratio", bool(generator_features)
        self.settings = dict(head=head, residual=self.residual, generator_features=self.generator_features, conditional=self.conditional,
                             dropout=dropout, head_dropout=head_dropout, head_hidden=head_hidden, seed=seed)
        self.model = _copy_generator(generator, dropout)
        self.model.config.id2label, self.model.config.label2id = {0: "fake", 1: "real"}, {"fake": 0, "real": 1}
        needs_reference = head == "ratio" or self.generator_features
        self.reference = copy.deepcopy(self.model).eval().requires_grad_(False) if needs_reference else None
        config = self.model.config
        self.pad_token_id = int(config.pad_token_id)
        self.eos_token_id = int(config.eos_token_id if not isinstance(config.eos_token_id, list) else config.eos_token_id[0])
        self.decoder_start_token_id = int(config.decoder_start_token_id)
        self.max_length = getattr(config, "max_position_embeddings", None)
        if head == "ratio":
            self.head = None
            self.ratio_bias = torch.nn.Parameter(torch.zeros(()))
        else:
            width = config.d_model + (NUM_FEATURES if self.generator_features else 0)
            with torch.random.fork_rng():
                torch.manual_seed(seed)
                self.head = _Head(width, head_hidden if head == "token" else 0, self.residual, head_dropout)
        self.train(False)

    # ------------------------------------------------------------------ basics
    @property
    def num_labels(self) -> int:
        return 1

    def label_index(self, label) -> int:
        """1 for ``"real"`` / 1, 0 for ``"fake"`` / 0."""
        index = {"fake": 0, "real": 1}.get(label, label) if isinstance(label, str) else label
        if isinstance(index, bool) or index not in (0, 1):
            raise ValueError(f"label must be 0 / 'fake' or 1 / 'real', got {label!r}.")
        return int(index)

    def shares_vocabulary(self, tokenizer) -> bool:
        return tokenizer is not None and (tokenizer is self.tokenizer or tokenizer.get_vocab() == self.tokenizer.get_vocab())

    def train(self, mode: bool = True):
        super().train(mode)
        if self.reference is not None:
            self.reference.eval()  # the frozen generator never drops out
        return self

    @torch.no_grad()
    def sync_reference(self, generator) -> None:
        """Copy ``generator``'s current weights into the frozen reference (e.g. after generator updates)."""
        if self.reference is None:
            raise ValueError("This discriminator has no reference generator (head != 'ratio' and generator_features=False).")
        self.reference.load_state_dict(unwrap_model(generator).state_dict())

    # ------------------------------------------------------------------ encoding
    def _target(self, target_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Targets `(N, T)` -> ids with pad where masked, and the mask of real tokens (up to the first EOS).

        A first column holding the decoder start token in every row (ids as ``generate()`` returns
        them) is dropped; pad, negative ids (-100) and everything after the first EOS are masked."""
        ids = target_ids.long()
        if ids.shape[1] > 1 and bool((ids[:, 0] == self.decoder_start_token_id).all()):
            ids = ids[:, 1:]
        valid = (ids >= 0) & (ids != self.pad_token_id)
        is_eos = (ids == self.eos_token_id).long()
        mask = valid & ((is_eos.cumsum(-1) - is_eos) == 0)
        return ids.masked_fill(~mask, self.pad_token_id), mask.long()

    def encode_ids(self, target_ids: torch.Tensor, source_ids: Optional[torch.Tensor] = None, source_index: Optional[torch.Tensor] = None,
                   *, return_target_positions: bool = False) -> dict:
        """Trunk inputs: ``input_ids``/``attention_mask`` (the source of each row; a lone EOS when not
        conditional) and ``target_ids``/``target_mask`` `(N, T)` (see :meth:`_target`)."""
        device = self.device
        target, mask = self._target(target_ids.to(device))
        n = target.shape[0]
        if self.conditional:
            if source_ids is None:
                raise ValueError("A conditional discriminator needs source_ids.")
            source = source_ids.to(device).long()
            if source_index is not None:
                source = source.index_select(0, source_index.to(device))
            elif source.shape[0] != n:
                raise ValueError(f"{n} targets for {source.shape[0]} sources: pass source_index.")
            source_mask = ((source != self.pad_token_id) & (source >= 0)).long()
            source = source.clamp_min(0)
        else:
            source = torch.full((n, 1), self.eos_token_id, device=device, dtype=torch.long)
            source_mask = torch.ones_like(source)
        out = {"input_ids": source, "attention_mask": source_mask, "target_ids": target, "target_mask": mask}
        if return_target_positions:
            out["target_positions"] = torch.arange(target.shape[1], device=device).expand_as(target).masked_fill(mask == 0, -1)
        return out

    def encode_texts(self, targets: Sequence[str], sources: Optional[Sequence[str]] = None) -> dict:
        targets = list(targets)
        ids = self.tokenizer(text_target=targets, padding=True, return_tensors="pt").input_ids
        src = None
        if self.conditional:
            if sources is None or len(sources) != len(targets):
                raise ValueError(f"A conditional discriminator needs one source per target: got {None if sources is None else len(sources)} for {len(targets)}.")
            src = self.tokenizer(list(sources), padding=True, return_tensors="pt").input_ids
        return self.encode_ids(ids, src)

    # ------------------------------------------------------------------ forward
    def _run(self, model, input_ids, attention_mask, target_ids, target_mask, soft_targets, *, with_logits: bool):
        """Decoder states `(N, T + 1, H)` over ``[start] + target`` (state t + 1 has read token t),
        and with ``with_logits`` the LM logits `(N, T, V)` that predict each target token."""
        start = torch.full_like(target_ids[:, :1], self.decoder_start_token_id)
        dec_mask = torch.cat([torch.ones_like(target_mask[:, :1]), target_mask], dim=1)  # (N, T + 1)
        dec = dict(decoder_input_ids=torch.cat([start, target_ids], dim=1))
        if soft_targets is not None:
            start_soft = F.one_hot(start, soft_targets.shape[-1]).to(soft_targets.dtype)  # (N, 1, V)
            dec = dict(decoder_inputs_embeds=soft_embed(model, torch.cat([start_soft, soft_targets], dim=1)))
        if with_logits:
            out = model(input_ids=input_ids, attention_mask=attention_mask, decoder_attention_mask=dec_mask, use_cache=False,
                        output_hidden_states=True, return_dict=True, **dec)
            return out.decoder_hidden_states[-1], out.logits[:, :-1]
        memory = model.get_encoder()(input_ids=input_ids, attention_mask=attention_mask, return_dict=True).last_hidden_state
        states = model.get_decoder()(input_ids=dec.get("decoder_input_ids"), inputs_embeds=dec.get("decoder_inputs_embeds"), attention_mask=dec_mask,
                                     encoder_hidden_states=memory, encoder_attention_mask=attention_mask, use_cache=False, return_dict=True)
        return states.last_hidden_state, None

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, target_ids: torch.Tensor, target_mask: torch.Tensor,
                soft_targets: Optional[torch.Tensor] = None, target_positions: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Logits `(N, 1)` of :meth:`encode_ids`'s inputs; ``soft_targets`` `(N, T, V)` replace the
        target tokens by distributions (differentiable; one-hots give the ids' logits).

        The head reads, at each target position t, the decoder state that has read token t (and the
        frozen generator's features of token t), so the last token counts too."""
        mask = target_mask.to(torch.float32)  # (N, T)
        states, logits = self._run(self.model, input_ids, attention_mask, target_ids, target_mask, soft_targets, with_logits=self.head_type == "ratio")
        features = None
        if self.reference is not None:
            with torch.set_grad_enabled(torch.is_grad_enabled() and soft_targets is not None):  # gradients reach soft inputs only
                _, ref_logits = self._run(self.reference, input_ids, attention_mask, target_ids, target_mask, soft_targets, with_logits=True)
            features = _token_features(ref_logits, target_ids, soft_targets)  # (N, T, 3)
        if self.head_type == "ratio":
            ratio = _token_features(logits, target_ids, soft_targets)[..., 0] - features[..., 0]  # (N, T)
            return ((ratio * mask).sum(-1) + self.ratio_bias)[:, None]
        states = states[:, 1:].float()  # (N, T, H): position t has read y_t
        x = torch.cat([states, features], dim=-1) if self.generator_features else states  # (N, T, H')
        if self.head_type == "mean":
            pooled = (x * mask[..., None]).sum(1) / mask.sum(1, keepdim=True).clamp_min(1)  # (N, H')
            return self.head(pooled)
        return (self.head(x).squeeze(-1) * mask).sum(-1, keepdim=True)  # (N, 1): per-token scores summed

    # ------------------------------------------------------------------ soft inputs (Gumbel)
    def check_soft_inputs(self) -> None:
        """Soft inputs always work here (the trunk is the generator's architecture); nothing to check."""

    def logits_from_soft(self, soft_targets: torch.Tensor, target_mask: torch.Tensor, source_ids: Optional[torch.Tensor] = None,
                         source_index: Optional[torch.Tensor] = None, *, frozen: bool = False) -> torch.Tensor:
        """Logits `(N, 1)` for soft targets `(N, T, V)` (e.g. straight-through Gumbel one-hots),
        differentiable in them; ``frozen=True`` runs on a detached copy of the parameters (see
        :meth:`SequenceDiscriminator.logits_from_soft`)."""
        if soft_targets.shape[-1] != self.model.config.vocab_size:
            raise ValueError(f"The soft targets span {soft_targets.shape[-1]} tokens, the trunk's vocabulary {self.model.config.vocab_size}.")
        hard = soft_targets.detach().argmax(-1).masked_fill(target_mask == 0, self.pad_token_id)  # (N, T)
        enc = self.encode_ids(hard, source_ids, source_index)
        if enc["target_ids"].shape[1] != soft_targets.shape[1]:
            raise ValueError("Soft targets must not start with the decoder start token.")
        if not frozen:
            return self(**enc, soft_targets=soft_targets)
        params = {name: value.detach().clone() for name, value in self.named_parameters()}
        params.update(dict(self.named_buffers()))
        return torch.func.functional_call(self, params, args=(), kwargs=dict(**enc, soft_targets=soft_targets))

    # ------------------------------------------------------------------ saving
    def save_pretrained(self, save_directory: str) -> None:
        """Write the trunk (a loadable seq2seq model), the tokenizer, the head, the settings and the
        frozen reference generator (``reference/``, when the design uses one)."""
        from safetensors.torch import save_file

        os.makedirs(save_directory, exist_ok=True)
        self.model.save_pretrained(save_directory)
        self.tokenizer.save_pretrained(save_directory)
        if self.reference is not None:
            self.reference.save_pretrained(os.path.join(save_directory, REFERENCE_FOLDER))
        head = {k: v.detach().contiguous() for k, v in self.state_dict().items() if not k.startswith(("model.", "reference."))}
        save_file(head, os.path.join(save_directory, HEAD_WEIGHTS_NAME))
        with open(os.path.join(save_directory, SETTINGS_NAME), "w") as f:
            json.dump(self.settings, f, indent=2)

    @classmethod
    def from_pretrained(cls, path: str, **model_kwargs) -> "Seq2SeqDiscriminator":
        """Load what :meth:`save_pretrained` wrote."""
        from safetensors.torch import load_file
        from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

        with open(os.path.join(path, SETTINGS_NAME)) as f:
            settings = json.load(f)
        trunk = AutoModelForSeq2SeqLM.from_pretrained(path, **model_kwargs)
        disc = cls(trunk, AutoTokenizer.from_pretrained(path), **{**settings, "dropout": None})
        disc.settings = settings
        if disc.reference is not None:
            disc.reference = AutoModelForSeq2SeqLM.from_pretrained(os.path.join(path, REFERENCE_FOLDER), **model_kwargs).eval().requires_grad_(False)
        missing, unexpected = disc.load_state_dict(load_file(os.path.join(path, HEAD_WEIGHTS_NAME)), strict=False)
        if unexpected or any(not k.startswith(("model.", "reference.")) for k in missing):
            raise ValueError(f"{path} does not hold this discriminator's head (missing {missing}, unexpected {unexpected}).")
        return disc.eval()


def __getattr__(name):  # the training helpers live in discriminator_training (imported on first use)
    if name in ("train_discriminator", "DiscriminatorTrainingResult"):
        from . import discriminator_training

        return getattr(discriminator_training, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
