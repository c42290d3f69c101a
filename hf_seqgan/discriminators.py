"""One adapter over any sequence classifier, used as the discriminator of the library.

:class:`SequenceDiscriminator` wraps an `AutoModelForSequenceClassification` (BERT, RoBERTa, BART,
DeBERTa, ...) and its own tokenizer. It judges a target text, alone (``conditional=False``) or
together with its source (``conditional=True``: the pair ``(source, target)`` as the classifier's
tokenizer encodes sentence pairs), and returns logits or ``log p(label | ...)``.

Inputs come in two forms:

- **texts** (:meth:`SequenceDiscriminator.score_texts`): encoded by the discriminator's tokenizer;
  this works whatever tokenizer the generator uses.
- **token ids** (:meth:`SequenceDiscriminator.score_ids`): generator ids used as they are, which
  needs the discriminator's tokenizer to share the generator's vocabulary
  (:meth:`SequenceDiscriminator.shares_vocabulary`). Special tokens (padding, EOS, decoder start,
  language codes) are dropped from the ids and the tokenizer's own special tokens are put back
  around source and target by a vectorized packing that reproduces the tokenizer's pair (or
  single) template, token types included. No text round trip, no Python loop over rows.

:meth:`SequenceDiscriminator.score_candidates` scores every prefix + candidate token of a decoding
step in one batched forward; discriminator-guided decoding
(:class:`~hf_seqgan.logits_process.DiscriminatorGuidedLogitsProcessor`) is built on it.

Examples:

```python
>>> import torch
>>> from transformers import BertConfig, BertForSequenceClassification
>>> from hf_seqgan.tiny import train_tokenizer
>>> from hf_seqgan.discriminators import SequenceDiscriminator
>>> tok = train_tokenizer(["the cat sat on the mat", "a dog ran far"] * 20, vocab_size=300)
>>> config = BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
...                     intermediate_size=64, pad_token_id=tok.pad_token_id, num_labels=2)
>>> torch.manual_seed(0)  # doctest: +ELLIPSIS
<torch._C.Generator object at ...>
>>> disc = SequenceDiscriminator(BertForSequenceClassification(config).eval(), tok)
>>> ids = tok(["a dog ran"], return_tensors="pt").input_ids
>>> torch.allclose(disc.score_texts(["a dog ran"], ["the cat"]), disc.score_ids(ids, tok(["the cat"], return_tensors="pt").input_ids))
True

```
"""

from __future__ import annotations

from typing import Optional, Sequence, Union

import torch
import torch.nn.functional as F

__all__ = ["SequenceDiscriminator", "special_template", "discriminator_loss", "build_default_discriminator"]


# Classifiers whose learned positions are offset by padding_idx + 1 (usable length = max - offset).
_POSITION_OFFSET_FAMILIES = ("roberta", "xlm-roberta", "camembert", "longformer", "data2vec-text", "xmod")


def special_template(tokenizer, pair: bool) -> tuple[tuple[list[int], list[int]], ...]:
    """The special tokens a tokenizer puts around one text (``pair=False``) or a pair of texts.

    Returns ``(ids, token_types)`` for the specials before the first text, between the two texts
    (empty for a single text) and after the last one, read from an encoding of sample texts.
    """
    first, second = "hello", "world"
    encode = lambda *texts, **kw: tokenizer(*texts, return_token_type_ids=True, **kw)  # noqa: E731
    full = encode(first, second if pair else None, add_special_tokens=True, return_special_tokens_mask=True)
    lengths = [len(encode(first, add_special_tokens=False)["input_ids"])]
    if pair:
        lengths.append(len(encode(second, add_special_tokens=False)["input_ids"]))
    ids, types, special = full["input_ids"], full["token_type_ids"], full["special_tokens_mask"]
    groups: list[tuple[list[int], list[int]]] = [([], [])]
    pos, text = 0, 0
    while pos < len(ids):
        if special[pos] or text >= len(lengths):
            groups[-1][0].append(ids[pos])
            groups[-1][1].append(types[pos])
            pos += 1
        else:
            pos += lengths[text]
            text += 1
            groups.append(([], []))
    if len(groups) != len(lengths) + 1:
        raise ValueError(f"Could not read the special-token template of {type(tokenizer).__name__} from {ids}.")
    if not pair:
        groups.insert(1, ([], []))
    return tuple(groups)


def _compact(ids: torch.Tensor, drop: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Move the entries not in ``drop`` to the left of each row, in order: `(N, L)` -> ids, lengths."""
    order = torch.argsort(drop.to(torch.int8), dim=1, stable=True)  # (N, L)
    return ids.gather(1, order), (~drop).sum(1)


def _pack(segments: Sequence[tuple[torch.Tensor, torch.Tensor, torch.Tensor]], pad_id: int):
    """Concatenate per-row variable-length segments, right-padded, in one gather.

    Each segment is ``(ids (N, Li), types (N, Li), lengths (N,))``; returns ``(ids, types, mask)``
    of shape `(N, max total length)`.
    """
    n = segments[0][0].shape[0]
    device = segments[0][0].device
    ids = torch.cat([s[0] for s in segments] + [torch.full((n, 1), pad_id, device=device, dtype=torch.long)], dim=1)
    types = torch.cat([s[1] for s in segments] + [torch.zeros(n, 1, device=device, dtype=torch.long)], dim=1)
    widths = torch.tensor([s[0].shape[1] for s in segments], device=device)
    offsets = torch.cumsum(widths, 0) - widths  # where each segment starts in `ids`
    lengths = torch.stack([s[2] for s in segments], dim=1)  # (N, S)
    ends = torch.cumsum(lengths, 1)  # (N, S)
    total = int(ends[:, -1].max()) if n else 0
    pos = torch.arange(max(total, 1), device=device)  # (T,)
    seg = (pos[None, :, None] >= ends[:, None, :]).sum(-1)  # (N, T) segment of each output position
    valid = seg < len(segments)
    seg = seg.clamp(max=len(segments) - 1)
    within = pos[None, :] - (ends - lengths).gather(1, seg)
    index = torch.where(valid, offsets[seg] + within, ids.shape[1] - 1)  # (N, T)
    mask = valid.long()
    return ids.gather(1, index), types.gather(1, index) * mask, mask


class SequenceDiscriminator(torch.nn.Module):
    """A sequence classifier and its tokenizer, judging (source, target) pairs or targets alone.

    Args:
        model: an `AutoModelForSequenceClassification` model. With ``num_labels == 1`` its logit
            is read as a binary score (``log p(1) = logsigmoid(logit)``).
        tokenizer: the classifier's tokenizer; it needs a pad token.
        conditional (`bool`, defaults to `True`): encode ``(source, target)`` pairs, as the
            tokenizer encodes sentence pairs; `False` judges the target alone.
        max_length (`int`, *optional*): the longest input; defaults to what the tokenizer and the
            position embeddings allow. Longer inputs are truncated (source first on the ids path,
            the tokenizer's ``longest_first`` on the text path).

    Examples:
        See the module docstring.
    """

    def __init__(self, model, tokenizer, *, conditional: bool = True, max_length: Optional[int] = None):
        super().__init__()
        config = getattr(model, "config", None)
        can_generate = getattr(model, "can_generate", None)
        if config is None or (callable(can_generate) and can_generate()):
            raise ValueError(
                f"{type(model).__name__} is not a sequence classifier (it has no config, or it is a generator): load the "
                "discriminator with AutoModelForSequenceClassification."
            )
        if getattr(config, "num_labels", 0) < 1:
            raise ValueError(f"The discriminator must have at least one label, got num_labels={getattr(config, 'num_labels', None)}.")
        if tokenizer is None or tokenizer.pad_token_id is None:
            raise ValueError(
                f"The discriminator's tokenizer ({type(tokenizer).__name__}) has no pad token, which batched scoring needs. "
                "Set one, e.g. `tokenizer.pad_token = tokenizer.eos_token`, and set `model.config.pad_token_id` to match."
            )
        embeddings = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
        if embeddings is not None and embeddings.weight.shape[0] < len(tokenizer):
            raise ValueError(
                f"The discriminator's tokenizer has {len(tokenizer)} tokens but its model only {embeddings.weight.shape[0]} "
                "embeddings: pass the classifier's own tokenizer (or resize its embeddings)."
            )
        self.model = model
        self.tokenizer = tokenizer
        self.train(model.training)  # the adapter's mode is the classifier's
        self.conditional = bool(conditional)
        self.max_length = int(max_length) if max_length is not None else self._default_max_length()
        if self.max_length < 1:
            raise ValueError(f"max_length must be >= 1, got {max_length!r}.")
        self._template = special_template(tokenizer, pair=self.conditional)
        if self.max_length <= sum(len(ids) for ids, _ in self._template):
            raise ValueError(f"max_length={self.max_length} leaves no room for text next to the special tokens {self._template}.")
        self._use_token_types = "token_type_ids" in getattr(tokenizer, "model_input_names", ())
        self._special_ids = sorted(set(tokenizer.all_special_ids))

    def _default_max_length(self) -> int:
        config = self.model.config
        limit = getattr(config, "max_position_embeddings", None) or 512
        if getattr(config, "model_type", "") in _POSITION_OFFSET_FAMILIES:
            limit -= (config.pad_token_id or 0) + 1
        model_max = getattr(self.tokenizer, "model_max_length", None)
        return int(min(limit, model_max)) if model_max else int(limit)

    # ------------------------------------------------------------------ basics
    @property
    def num_labels(self) -> int:
        return int(self.model.config.num_labels)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def label_index(self, label: Union[int, str]) -> int:
        """The class index of ``label`` (an index, or a name from ``config.label2id``)."""
        if isinstance(label, str):
            label2id = getattr(self.model.config, "label2id", None) or {}
            if label not in label2id:
                raise ValueError(f"Unknown label {label!r}; the discriminator's labels are {sorted(label2id)}.")
            label = label2id[label]
        classes = max(self.num_labels, 2)
        if isinstance(label, bool) or not isinstance(label, int) or not 0 <= label < classes:
            raise ValueError(f"label must be a class index in [0, {classes - 1}] (or a name in config.label2id), got {label!r}.")
        return label

    def shares_vocabulary(self, tokenizer) -> bool:
        """Whether ids of ``tokenizer`` (the generator's) mean the same tokens to this discriminator,
        so that :meth:`score_ids` can take them without a text round trip."""
        if tokenizer is None or tokenizer is self.tokenizer:
            return tokenizer is not None
        return tokenizer.get_vocab() == self.tokenizer.get_vocab()

    def forward(self, input_ids: Optional[torch.Tensor] = None, attention_mask: Optional[torch.Tensor] = None, **kwargs) -> torch.Tensor:
        """The classifier's logits `(N, num_labels)` for encoded inputs."""
        return self.model(input_ids=input_ids, attention_mask=attention_mask, return_dict=True, **kwargs).logits

    def log_probs(self, logits: torch.Tensor, label: Optional[Union[int, str]] = None) -> torch.Tensor:
        """``log p`` of every class `(N, C)` (C = 2 for a one-logit classifier), or of ``label`` `(N,)`."""
        logits = logits.float()
        if logits.shape[-1] == 1:
            logp = torch.cat([F.logsigmoid(-logits), F.logsigmoid(logits)], dim=-1)  # (N, 2)
        else:
            logp = torch.log_softmax(logits, dim=-1)  # (N, C)
        return logp if label is None else logp[:, self.label_index(label)]

    # ------------------------------------------------------------------ encoding
    def encode_texts(self, targets: Sequence[str], sources: Optional[Sequence[str]] = None) -> dict:
        """Tokenize targets (with their sources when conditional) as model inputs on the device."""
        targets = list(targets)
        if self.conditional:
            if sources is None or len(sources) != len(targets):
                raise ValueError(f"A conditional discriminator needs one source per target: got {None if sources is None else len(sources)} sources for {len(targets)} targets.")
            enc = self.tokenizer(list(sources), targets, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")
        else:
            enc = self.tokenizer(targets, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")
        keep = ("input_ids", "attention_mask") + (("token_type_ids",) if self._use_token_types else ())
        return {k: v.to(self.device) for k, v in enc.items() if k in keep}

    def _dropped(self, ids: torch.Tensor) -> torch.Tensor:
        return torch.isin(ids, torch.tensor(self._special_ids, device=ids.device)) | (ids < 0)

    def _content(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return _compact(ids, self._dropped(ids))

    def encode_ids(self, target_ids: torch.Tensor, source_ids: Optional[torch.Tensor] = None, source_index: Optional[torch.Tensor] = None,
                   *, return_target_positions: bool = False) -> dict:
        """Model inputs from token ids of the discriminator's vocabulary, without a text round trip.

        Args:
            target_ids (`torch.Tensor`): `(N, T)` targets; special and negative ids (padding, EOS,
                decoder start, -100) are dropped.
            source_ids (`torch.Tensor`, *optional*): `(B, S)` sources (conditional only).
            source_index (`torch.Tensor`, *optional*): `(N,)` the source row of each target;
                defaults to ``arange(N)`` (then B must equal N).

            return_target_positions (`bool`): also return ``target_positions`` `(N, L)`: for each
                input position, the target position it came from, or -1 (used by the soft path).

        Returns:
            ``input_ids`` and ``attention_mask`` (and ``token_type_ids`` when the tokenizer uses
            them) laid out exactly as the tokenizer lays out the same texts.
        """
        device = self.device
        target_ids = target_ids.to(device).long()
        target, t_len = self._content(target_ids)
        (pre, pre_t), (mid, mid_t), (suf, suf_t) = self._template
        budget = self.max_length - len(pre) - len(mid) - len(suf)
        t_len = t_len.clamp(max=budget)
        n = target.shape[0]
        content_types = (0, 1) if self.conditional else (0,)

        def const(values, types):
            row = torch.tensor(values, dtype=torch.long, device=device).view(1, -1)
            typ = torch.tensor(types, dtype=torch.long, device=device).view(1, -1)
            return row.expand(n, -1), typ.expand(n, -1), torch.full((n,), len(values), device=device, dtype=torch.long)

        tail = [(target, torch.full_like(target, content_types[-1]), t_len), const(suf, suf_t)]
        if self.conditional:
            if source_ids is None:
                raise ValueError("A conditional discriminator needs source_ids.")
            source, s_len = self._content(source_ids.to(device).long())
            if source_index is None:
                if source.shape[0] != n:
                    raise ValueError(f"{n} targets for {source.shape[0]} sources: pass source_index.")
            else:
                index = source_index.to(device)
                source, s_len = source.index_select(0, index), s_len.index_select(0, index)
            s_len = torch.minimum(s_len, budget - t_len)
            segments = [const(pre, pre_t), (source, torch.zeros_like(source), s_len), const(mid, mid_t)] + tail
        else:
            segments = [const(pre, pre_t)] + tail
        ids, types, mask = _pack(segments, self.tokenizer.pad_token_id)
        out = {"input_ids": ids, "attention_mask": mask}
        if self._use_token_types:
            out["token_type_ids"] = types
        if return_target_positions:
            steps = torch.arange(target_ids.shape[1], device=device).expand_as(target_ids)
            positions, _ = _compact(steps, self._dropped(target_ids))
            t = len(segments) - 2  # the target segment
            pos_segments = [(positions, seg[1], seg[2]) if i == t else (torch.full_like(seg[0], -1), seg[1], seg[2]) for i, seg in enumerate(segments)]
            out["target_positions"] = _pack(pos_segments, -1)[0]
        return out

    # ------------------------------------------------------------------ saving
    def save_pretrained(self, save_directory: str) -> None:
        """Write the classifier, its tokenizer and the adapter's settings (``conditional``,
        ``max_length``) to ``save_directory``; :meth:`from_pretrained` reads them back."""
        import json
        import os

        self.model.save_pretrained(save_directory)
        self.tokenizer.save_pretrained(save_directory)
        with open(os.path.join(save_directory, "hf_seqgan_discriminator.json"), "w") as f:
            json.dump({"conditional": self.conditional, "max_length": self.max_length}, f, indent=2)

    @classmethod
    def from_pretrained(cls, path: str, **model_kwargs) -> "SequenceDiscriminator":
        """Load a discriminator written by :meth:`save_pretrained` (or any classifier folder)."""
        import json
        import os

        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        settings_file = os.path.join(path, "hf_seqgan_discriminator.json")
        settings = json.load(open(settings_file)) if os.path.isfile(settings_file) else {}
        model = AutoModelForSequenceClassification.from_pretrained(path, **model_kwargs)
        return cls(model, AutoTokenizer.from_pretrained(path), **settings)

    # ------------------------------------------------------------------ soft inputs
    def check_soft_inputs(self) -> None:
        """Raise a `ValueError` unless the classifier takes ``inputs_embeds`` and gives, for one-hot
        inputs, the logits of the token ids (BART classifiers refuse ``inputs_embeds``; a classifier
        that scales its embeddings inside the lookup would differ)."""
        embed = self.model.get_input_embeddings()
        ids = torch.tensor([[min(5, embed.weight.shape[0] - 1), embed.weight.shape[0] - 1]], device=self.device)
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad():
                ref = self.model(input_ids=ids, return_dict=True).logits
                out = self.model(inputs_embeds=embed.weight[ids], return_dict=True).logits
        except (NotImplementedError, ValueError, TypeError) as err:
            raise ValueError(
                f"{type(self.model).__name__} cannot take soft inputs (inputs_embeds): {err}. Soft (Gumbel) training needs a "
                "classifier that accepts inputs_embeds, e.g. BERT/RoBERTa-style (the default discriminator is one)."
            ) from None
        finally:
            self.model.train(was_training)
        if not torch.allclose(out, ref, rtol=1e-4, atol=1e-5):
            raise ValueError(f"{type(self.model).__name__} gives different logits for inputs_embeds than for input_ids (scaled embeddings?); "
                             "soft (Gumbel) training needs a classifier whose embedding lookup is a plain table, e.g. BERT/RoBERTa-style.")

    def logits_from_soft(self, soft_targets: torch.Tensor, target_mask: torch.Tensor, source_ids: Optional[torch.Tensor] = None,
                         source_index: Optional[torch.Tensor] = None, *, frozen: bool = False) -> torch.Tensor:
        """Logits `(N, num_labels)` for soft targets `(N, T, V)` (distributions over the shared
        vocabulary, e.g. straight-through Gumbel one-hots), differentiable in them.

        The input is laid out as :meth:`encode_ids` lays out the argmax tokens; the target's
        positions then take ``soft @ E`` (E the classifier's word embeddings) instead of the lookup,
        so with one-hots the logits equal those of the ids. With ``frozen=True`` the classifier runs
        on a detached snapshot of its parameters: gradients reach the soft targets only, and the
        discriminator may be updated in place before that backward happens (the generator's loss
        in adversarial training).
        """
        from .sampling import frozen_call, frozen_parameters

        params = frozen_parameters(self.model) if frozen else None
        embed = self.model.get_input_embeddings().weight  # (V_D, H)
        if frozen:
            embed = params[next(n for n, p in self.model.named_parameters() if p is embed)]
        if soft_targets.shape[-1] > embed.shape[0]:
            raise ValueError(f"The soft targets span {soft_targets.shape[-1]} tokens but the discriminator's embedding has {embed.shape[0]} rows.")
        hard = soft_targets.detach().argmax(-1).masked_fill(target_mask == 0, self.tokenizer.pad_token_id)  # (N, T)
        enc = self.encode_ids(hard, source_ids, source_index, return_target_positions=True)
        positions = enc.pop("target_positions")  # (N, L): target position j, or -1
        weight = embed[: soft_targets.shape[-1]]
        soft_emb = soft_targets.to(weight.dtype) @ weight  # (N, T, H)
        from_target = soft_emb.gather(1, positions.clamp_min(0)[..., None].expand(-1, -1, soft_emb.shape[-1]))  # (N, L, H)
        inputs_embeds = torch.where((positions >= 0)[..., None], from_target, embed[enc.pop("input_ids")])
        if params is None:
            return self(inputs_embeds=inputs_embeds, **enc)
        return frozen_call(self.model, params=params, inputs_embeds=inputs_embeds, return_dict=True, **enc).logits

    # ------------------------------------------------------------------ scoring
    def logits_from_texts(self, targets: Sequence[str], sources: Optional[Sequence[str]] = None) -> torch.Tensor:
        """Logits `(N, num_labels)` for target texts (and their sources)."""
        return self(**self.encode_texts(targets, sources))

    def logits_from_ids(self, target_ids: torch.Tensor, source_ids: Optional[torch.Tensor] = None, source_index: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Logits `(N, num_labels)` for target ids (see :meth:`encode_ids`)."""
        return self(**self.encode_ids(target_ids, source_ids, source_index))

    def score_texts(self, targets: Sequence[str], sources: Optional[Sequence[str]] = None, *, label: Union[int, str] = 1) -> torch.Tensor:
        """``log p(label | source, target)`` `(N,)` for texts."""
        return self.log_probs(self.logits_from_texts(targets, sources), label)

    def score_ids(self, target_ids: torch.Tensor, source_ids: Optional[torch.Tensor] = None, source_index: Optional[torch.Tensor] = None, *, label: Union[int, str] = 1) -> torch.Tensor:
        """``log p(label | source, target)`` `(N,)` for token ids of the shared vocabulary."""
        return self.log_probs(self.logits_from_ids(target_ids, source_ids, source_index), label)

    @torch.no_grad()
    def score_candidates(
        self,
        prefix_ids: torch.Tensor,
        candidate_ids: torch.Tensor,
        *,
        label: Union[int, str] = 1,
        source_index: Optional[torch.Tensor] = None,
        source_ids: Optional[torch.Tensor] = None,
        source_texts: Optional[Sequence[str]] = None,
        generator_tokenizer=None,
    ) -> torch.Tensor:
        """``log p(label | source, prefix + candidate)`` for every candidate, in one forward.

        Args:
            prefix_ids (`torch.Tensor`): `(R, L)` generated prefixes (generator ids; special ids
                such as the decoder start and padding are ignored).
            candidate_ids (`torch.Tensor`): `(R, k)` candidate next tokens of each row.
            label: the class whose log-probability is returned.
            source_index (`torch.Tensor`, *optional*): `(R,)` the source of each row; defaults to
                ``arange(R)``.
            source_ids (`torch.Tensor`, *optional*): `(B, S)` sources as ids of this
                discriminator's vocabulary (the shared-vocabulary path).
            source_texts (`list[str]`, *optional*): `B` source texts (the text path).
            generator_tokenizer (*optional*): the generator's tokenizer. When given, the R·k
                sequences are decoded with it and re-encoded with the discriminator's tokenizer
                (needed when the vocabularies differ); otherwise ids are used as they are.

        Returns:
            `torch.Tensor` of shape `(R, k)`.
        """
        rows, k = candidate_ids.shape
        sequences = torch.cat([prefix_ids.repeat_interleave(k, dim=0), candidate_ids.reshape(-1, 1)], dim=1)  # (R*k, L+1)
        if source_index is None:
            source_index = torch.arange(rows, device=candidate_ids.device)
        index = source_index.repeat_interleave(k)  # (R*k,)
        if generator_tokenizer is None:
            scores = self.score_ids(sequences, source_ids, index, label=label)
        else:
            texts = generator_tokenizer.batch_decode(sequences, skip_special_tokens=True)
            sources = None
            if self.conditional:
                if source_texts is None:
                    raise ValueError("A conditional discriminator on the text path needs source_texts.")
                sources = [source_texts[i] for i in index.tolist()]
            scores = self.score_texts(texts, sources, label=label)
        return scores.view(rows, k)


# ---------------------------------------------------------------------- adversarial training
def discriminator_loss(real_logp: torch.Tensor, fake_logp: torch.Tensor, real_label: int, label_smoothing: float = 0.0):
    """Binary cross-entropy of a real/fake discriminator: real rows should get ``real_label`` (with
    one-sided label smoothing: target ``1 - label_smoothing``), fake rows the other class.

    Args:
        real_logp, fake_logp (`torch.Tensor`): `(N, 2)` / `(M, 2)` class log-probabilities
            (:meth:`SequenceDiscriminator.log_probs`).

    Returns:
        ``(loss, accuracy on real, accuracy on fake)``; the loss is the mean over real rows plus the
        mean over fake rows.
    """
    if real_logp.shape[-1] != 2 or fake_logp.shape[-1] != 2:
        raise ValueError(f"A real/fake discriminator needs two classes (num_labels 1 or 2), got {real_logp.shape[-1]}.")
    fake_label = 1 - real_label
    real_term = (1.0 - label_smoothing) * real_logp[:, real_label] + label_smoothing * real_logp[:, fake_label]
    loss = -real_term.mean() - fake_logp[:, fake_label].mean()
    half = torch.log(torch.tensor(0.5))
    acc_real = (real_logp[:, real_label] > half).float().mean()
    acc_fake = (fake_logp[:, real_label] < half).float().mean()
    return loss, acc_real.detach(), acc_fake.detach()


def build_default_discriminator(
    tokenizer,
    *,
    conditional: bool = True,
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: Optional[int] = None,
    vocab_size: Optional[int] = None,
    max_length: int = 512,
    dropout: float = 0.1,
    seed: int = 0,
) -> "SequenceDiscriminator":
    """A small BERT-style real/fake classifier on the generator's own vocabulary (so ids are shared
    and soft one-hots can be fed to its embeddings), randomly initialised with ``seed``."""
    from transformers import BertConfig, BertForSequenceClassification

    heads = num_heads or max(1, hidden_size // 16)
    if hidden_size % heads:
        raise ValueError(f"hidden_size={hidden_size} is not a multiple of num_heads={heads}.")
    config = BertConfig(
        vocab_size=max(vocab_size or 0, len(tokenizer)), hidden_size=hidden_size, num_hidden_layers=num_layers,
        num_attention_heads=heads, intermediate_size=4 * hidden_size, max_position_embeddings=max_length,
        type_vocab_size=2, pad_token_id=tokenizer.pad_token_id, num_labels=2, hidden_dropout_prob=dropout,
        attention_probs_dropout_prob=dropout, id2label={0: "fake", 1: "real"}, label2id={"fake": 0, "real": 1},
    )
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = BertForSequenceClassification(config)
    return SequenceDiscriminator(model, tokenizer, conditional=conditional, max_length=max_length)
