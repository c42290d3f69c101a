"""Gumbel noise, Gumbel-softmax, and soft token distributions -> model input embeddings.

- :func:`gumbel_noise` draws standard Gumbel noise, seedable with a `torch.Generator`.
- :func:`gumbel_max_sample` draws exact samples from ``softmax(logits)`` by ``argmax(logits + g)``.
- :func:`gumbel_softmax` is the Gumbel-softmax relaxation (Jang et al. 2017,
  https://arxiv.org/abs/1611.01144; Maddison et al. 2017), soft or straight-through hard.
- :func:`soft_embed` turns a distribution over the vocabulary into the ``inputs_embeds`` /
  ``decoder_inputs_embeds`` a seq2seq model expects, with each family's embedding scale handled:
  BART and mBART scale inside their embedding module (not applied to ``inputs_embeds``, so it is
  applied here), Pegasus and Marian's decoder scale ``inputs_embeds`` themselves (not applied
  here), Marian's encoder scales only looked-up ids (applied here), T5 has no input scale. The
  factor is determined once per encoder/decoder by checking which candidate reproduces the ids
  path, so families not listed here are handled too. With a one-hot distribution the model's
  outputs equal those for the token ids, which the tests check for every family.
"""

from __future__ import annotations

import weakref
from typing import Optional

import torch

__all__ = [
    "gumbel_noise", "gumbel_max_sample", "categorical_sample", "gumbel_softmax", "soft_embed", "unwrap_model", "input_embedding",
    "frozen_parameters", "frozen_call", "DeferredVocabGradients",
]


def gumbel_noise(shape, *, generator: Optional[torch.Generator] = None, device=None, dtype=torch.float32) -> torch.Tensor:
    """Standard Gumbel(0, 1) noise of ``shape``: ``-log(-log(U))`` with ``U ~ Uniform(0, 1)``.

    (Uniform draws are several times cheaper than ``exponential_`` on CPU, which is why sampling in
    the rollout engine goes through this rather than ``torch.multinomial``.)"""
    uniform = torch.rand(shape, device=device, dtype=dtype, generator=generator)
    tiny = torch.finfo(dtype).tiny
    return -torch.log(-torch.log(uniform.clamp(min=tiny, max=1.0 - torch.finfo(dtype).eps)))


def gumbel_max_sample(logits: torch.Tensor, *, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Exact samples from ``softmax(logits)`` over the last dimension (Gumbel-max trick)."""
    g = gumbel_noise(logits.shape, generator=generator, device=logits.device, dtype=torch.float32)
    return (logits.float() + g).argmax(dim=-1)


def categorical_sample(
    scores: torch.Tensor, *, generator: Optional[torch.Generator] = None, uniform: Optional[torch.Tensor] = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact samples from ``softmax(scores)`` over the last dimension `(R, V)` in one pass:
    ``exp(scores - max)`` once, its running sum, one uniform draw per row, and the inverse of the
    cumulative distribution. Returns ``(tokens (R,), logsumexp (R,))``: the log-normaliser comes
    from the same pass, so a caller needs no second log-sum-exp for the sampled log-probs.

    Against the Gumbel-max trick (:func:`gumbel_max_sample`: V uniforms, two logarithms each, a
    maximum) this draws one uniform a row and takes one exponential per entry; a token of zero
    probability (a ``-inf`` score) is never drawn. ``uniform`` `(R, 1)`, when given, are the draws in
    [0, 1) to use instead of drawing them (the same tokens as drawing them from ``generator``)."""
    x = scores.float()
    top = x.max(dim=-1, keepdim=True).values  # (R, 1)
    cdf = torch.exp(x - top).cumsum(dim=-1)  # (R, V)
    total = cdf[..., -1:]  # (R, 1)
    if uniform is None:
        uniform = torch.rand(total.shape, generator=generator, device=x.device, dtype=x.dtype)
    u = uniform * total  # in [0, total)
    tokens = torch.searchsorted(cdf, u, right=True).clamp_max(x.shape[-1] - 1).squeeze(-1)  # first index with cdf > u
    return tokens, (top + total.log()).squeeze(-1)


def gumbel_softmax(
    logits: torch.Tensor,
    tau: float = 1.0,
    *,
    hard: bool = False,
    noise: bool = True,
    generator: Optional[torch.Generator] = None,
    dim: int = -1,
) -> torch.Tensor:
    """Gumbel-softmax ``softmax((logits + g) / tau)``.

    Args:
        logits (`torch.Tensor`): unnormalised scores, e.g. `(B, V)`.
        tau (`float`, defaults to 1.0): temperature, > 0. Low values approach one-hot samples.
        hard (`bool`, defaults to `False`): straight-through: the forward value is the one-hot of the
            argmax, the gradient is that of the soft sample.
        noise (`bool`, defaults to `True`): add Gumbel noise; without it this is a tempered softmax
            (with ``hard=True``: straight-through greedy).
        generator (`torch.Generator`, *optional*): for reproducible noise.
    """
    if not tau > 0:
        raise ValueError(f"gumbel_softmax needs tau > 0, got {tau}; for argmax use hard=True with a small tau.")
    scores = logits.float()
    if noise:
        scores = scores + gumbel_noise(scores.shape, generator=generator, device=scores.device)
    soft = torch.softmax(scores / tau, dim=dim)  # (..., V)
    if not hard:
        return soft.to(logits.dtype)
    index = soft.argmax(dim=dim, keepdim=True)
    one_hot = torch.zeros_like(soft).scatter_(dim, index, 1.0)
    return (one_hot - soft.detach() + soft).to(logits.dtype)


def unwrap_model(model):
    """The transformers model inside a (Distributed)DataParallel wrapper and/or a `PeftModel`
    (tuner adapters such as LoRA are injected in place, so calling it runs the adapters)."""
    if isinstance(model, (torch.nn.parallel.DistributedDataParallel, torch.nn.DataParallel)):
        model = model.module
    get_base = getattr(model, "get_base_model", None)
    if get_base is not None and type(model).__module__.startswith("peft"):
        return get_base()
    return model


def input_embedding(model, side: str = "decoder") -> torch.nn.Embedding:
    """The token embedding that feeds the ``side`` ("encoder" or "decoder") of a seq2seq model."""
    if side not in ("encoder", "decoder"):
        raise ValueError(f"side must be 'encoder' or 'decoder', got {side!r}.")
    base = unwrap_model(model)
    stack = base.get_decoder() if side == "decoder" else base.get_encoder()
    embed = getattr(stack, "embed_tokens", None)
    if embed is None:
        embed = base.get_input_embeddings()
    return embed


_SCALE_CACHE: "weakref.WeakKeyDictionary[torch.nn.Module, float]" = weakref.WeakKeyDictionary()


def _inputs_embeds_scale(stack: torch.nn.Module, embed: torch.nn.Module) -> float:
    """The factor by which raw embedding rows must be multiplied so that ``inputs_embeds`` gives the
    same result as ``input_ids`` in ``stack`` (an encoder or decoder).

    Families differ, and even the two stacks of one model can (Marian's encoder scales only looked-up
    ids, its decoder scales ``inputs_embeds`` too), so the factor is found once per stack by trying
    the candidate scales on a two-token input, and cached.
    """
    if stack in _SCALE_CACHE:
        return _SCALE_CACHE[stack]
    candidates = [1.0]
    for owner in (embed, stack):
        scale = getattr(owner, "embed_scale", None)
        if scale is not None:
            scale = float(scale)
            if all(abs(scale - c) > 1e-12 for c in candidates):
                candidates.append(scale)
    if len(candidates) == 1:
        _SCALE_CACHE[stack] = 1.0
        return 1.0
    weight = embed.weight
    ids = torch.tensor([[min(5, weight.shape[0] - 1), weight.shape[0] - 1]], device=weight.device)
    was_training = stack.training
    stack.eval()
    try:
        with torch.no_grad():
            ref = stack(input_ids=ids, return_dict=True).last_hidden_state
            found = None
            for scale in candidates:
                out = stack(inputs_embeds=weight[ids] * scale, return_dict=True).last_hidden_state
                if torch.allclose(out, ref, rtol=1e-4, atol=1e-5):
                    found = scale
                    break
    finally:
        stack.train(was_training)
    if found is None:
        raise RuntimeError(
            f"soft_embed could not determine how {type(stack).__name__} scales inputs_embeds (tried {candidates}); "
            "this model family is not supported by soft inputs yet."
        )
    _SCALE_CACHE[stack] = found
    return found


class _Collector:
    """One weight's deferred gradient: dense pairs ``(a, b)`` adding ``a^T @ b`` and sparse rows ``(index, g)``."""

    def __init__(self):
        self.dense, self.rows = [], []

    def gradient(self, weight: torch.Tensor) -> torch.Tensor:
        grad = None
        if self.dense:
            a = torch.cat([x.reshape(-1, x.shape[-1]) for x, _ in self.dense])  # (N, V)
            b = torch.cat([y.reshape(-1, y.shape[-1]) for _, y in self.dense])  # (N, H)
            grad = (a.t() @ b).to(weight.dtype)  # (V, H): one product over every step
        if self.rows:
            grad = torch.zeros_like(weight) if grad is None else grad
            grad.index_add_(0, torch.cat([i.reshape(-1) for i, _ in self.rows]), torch.cat([g.reshape(-1, g.shape[-1]) for _, g in self.rows]).to(weight.dtype))
        self.dense, self.rows = [], []
        return torch.zeros_like(weight) if grad is None else grad


class _Anchor(torch.autograd.Function):
    """A one-element tensor standing for ``weight`` in the graph: every deferred product takes it as an
    input, so autograd runs its backward once, after all of theirs, and it returns the weight's gradient."""

    @staticmethod
    def forward(ctx, weight, collector):
        ctx.collector, ctx.weight = collector, weight.detach()
        return weight.new_zeros(1)

    @staticmethod
    def backward(ctx, _):
        return ctx.collector.gradient(ctx.weight), None


class _DeferredEmbed(torch.autograd.Function):
    """``probs @ weight`` (``weight[index]`` when the value of ``probs`` is ``one_hot(index)``), its weight gradient deferred."""

    @staticmethod
    def forward(ctx, probs, weight, anchor, collector, index):
        ctx.save_for_backward(probs if index is None else None, weight, index)
        ctx.collector = collector
        return probs @ weight if index is None else weight[index]

    @staticmethod
    def backward(ctx, grad):
        probs, weight, index = ctx.saved_tensors
        grad_probs = grad @ weight.t() if ctx.needs_input_grad[0] else None  # (..., V)
        if index is None:
            ctx.collector.dense.append((probs, grad))
        else:
            ctx.collector.rows.append((index, grad))
        return grad_probs, None, grad.new_zeros(1), None, None


class _IndexEmbed(torch.autograd.Function):
    """``weight[index]`` standing for ``probs @ weight`` where ``probs`` has the value ``one_hot(index)``."""

    @staticmethod
    def forward(ctx, probs, weight, index):
        ctx.save_for_backward(weight, index)
        return weight[index]

    @staticmethod
    def backward(ctx, grad):
        weight, index = ctx.saved_tensors
        grad_probs = grad @ weight.t() if ctx.needs_input_grad[0] else None
        grad_weight = None
        if ctx.needs_input_grad[1]:
            grad_weight = torch.zeros_like(weight).index_add_(0, index.reshape(-1), grad.reshape(-1, grad.shape[-1]).to(weight.dtype))
        return grad_probs, grad_weight, None


class _DeferredLinear(torch.autograd.Function):
    """``x @ weight^T + bias`` (a LM head), its weight gradient deferred."""

    @staticmethod
    def forward(ctx, x, weight, bias, anchor, collector):
        ctx.save_for_backward(x, weight)
        ctx.collector, ctx.has_bias = collector, bias is not None
        out = x @ weight.t()
        return out + bias if bias is not None else out

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        ctx.collector.dense.append((grad, x))  # grad^T @ x: (V, H)
        grad_bias = grad.reshape(-1, grad.shape[-1]).sum(0) if ctx.has_bias else None
        return (grad @ weight if ctx.needs_input_grad[0] else None), None, grad_bias, grad.new_zeros(1), None


class DeferredVocabGradients:
    """The vocabulary-sized weight gradients of a step-by-step differentiable decode, computed once.

    Each step of a free-running decode multiplies by the embedding (:func:`soft_embed`) and the LM
    head, whose weight gradients are `(V, H)` products: one per step and weight, each also added
    into the `(V, H)` gradient. Here every step records its factors instead, and each weight's
    gradient is one product over all steps (the embedding's, with hard one-hot inputs, an
    ``index_add``), in the backward of one anchor node that autograd runs after every step's. The
    gradients equal the per-step ones up to float summation order. Used as a context manager around
    the decode: :meth:`patch_head` routes the model's LM head through it until the block ends."""

    def __init__(self):
        self._anchors: dict = {}
        self._patched: list = []

    def _anchor(self, weight: torch.Tensor):
        key = id(weight)
        if key not in self._anchors:
            collector = _Collector()
            self._anchors[key] = (_Anchor.apply(weight, collector), collector)
        return self._anchors[key]

    def embed(self, probs: torch.Tensor, weight: torch.Tensor, index: Optional[torch.Tensor] = None) -> torch.Tensor:
        anchor, collector = self._anchor(weight)
        return _DeferredEmbed.apply(probs, weight.detach(), anchor, collector, index)

    def patch_head(self, model) -> None:
        """Route ``model``'s output embedding (an `nn.Linear` with a trainable weight) through a deferred product."""
        head = unwrap_model(model).get_output_embeddings()
        if not isinstance(head, torch.nn.Linear) or not head.weight.requires_grad or "forward" in vars(head):
            return

        def forward(x, head=head):
            anchor, collector = self._anchor(head.weight)
            return _DeferredLinear.apply(x, head.weight.detach(), head.bias, anchor, collector)

        head.forward = forward
        self._patched.append(head)

    def __enter__(self) -> "DeferredVocabGradients":
        return self

    def __exit__(self, *exc) -> None:
        for head in self._patched:
            del head.forward
        self._patched = []


def soft_embed(model, probs: torch.Tensor, *, side: str = "decoder", index: Optional[torch.Tensor] = None,
               deferred: Optional[DeferredVocabGradients] = None) -> torch.Tensor:
    """Embeddings ``probs @ E`` for a distribution over the vocabulary, ready to pass as
    ``decoder_inputs_embeds`` (``side="decoder"``) or ``inputs_embeds`` (``side="encoder"``).

    The family's embedding scale is applied where the model itself would not apply it to input
    embeddings (found once per encoder/decoder and cached), so one-hot inputs reproduce the token
    ids' outputs exactly.

    Args:
        model: a seq2seq `PreTrainedModel` or a `PeftModel` around one.
        probs (`torch.Tensor`): `(..., V)` with V the model's embedding rows (soft or one-hot).
        side (`str`): which stack the embeddings feed.
        index (`torch.Tensor`, *optional*): `(...)` token ids when the *value* of ``probs`` is their
            one-hot (straight-through inputs): the rows are looked up, and the embedding's gradient
            is an ``index_add`` of the rows' gradients (equal to ``probs^T @ grad`` for one-hot values).
        deferred (:class:`DeferredVocabGradients`, *optional*): defer the embedding's weight gradient
            to one product over all the calls made with it.

    Returns:
        `torch.Tensor` of shape `(..., d_model)`, differentiable in ``probs`` and in the embedding.
    """
    embed = input_embedding(model, side)
    weight = embed.weight  # (V, H)
    if probs.shape[-1] != weight.shape[0]:
        raise ValueError(
            f"soft_embed: the distribution's last dimension is {probs.shape[-1]} but the model's {side} "
            f"embedding has {weight.shape[0]} rows; pass probabilities over the model's full vocabulary "
            f"(config.vocab_size={getattr(unwrap_model(model).config, 'vocab_size', '?')}), e.g. pad them with zeros."
        )
    base = unwrap_model(model)
    stack = base.get_decoder() if side == "decoder" else base.get_encoder()
    scale = _inputs_embeds_scale(stack, embed)
    probs = probs.to(weight.dtype)
    if deferred is not None and weight.requires_grad and torch.is_grad_enabled():
        out = deferred.embed(probs, weight, index)  # (..., H)
    elif index is not None:
        out = _IndexEmbed.apply(probs, weight, index)
    else:
        out = probs @ weight  # (..., H)
    return out * scale if scale != 1.0 else out


def frozen_parameters(module: torch.nn.Module) -> dict:
    """A detached *copy* of ``module``'s parameters (and its buffers) for :func:`torch.func.functional_call`:
    gradients then reach only the inputs, and the module may be updated in place before that
    backward happens (a detached view would share the version counter and still break it)."""
    params = {name: value.detach().clone() for name, value in module.named_parameters()}
    params.update(dict(module.named_buffers()))
    return params


def frozen_call(module: torch.nn.Module, *args, params: Optional[dict] = None, **kwargs):
    """``module(*args, **kwargs)`` on a snapshot of its parameters (:func:`frozen_parameters`, or
    ``params`` taken once for several calls)."""
    return torch.func.functional_call(module, params if params is not None else frozen_parameters(module), args=args, kwargs=kwargs)
