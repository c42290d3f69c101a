"""TRL-style reward sources for the policy-gradient trainers: functions with TRL's signature and
sequence-classification reward models, weighted and combined in one place."""

from __future__ import annotations

import logging
from typing import Optional

import torch

from ..rewards import call_reward_function, drop_nonfinite

logger = logging.getLogger(__name__)


def _load_reward_model(path: str):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    return AutoModelForSequenceClassification.from_pretrained(path, num_labels=1), AutoTokenizer.from_pretrained(path)


class RewardFunctions:
    """The reward sources of a trainer (``reward_funcs``), scored and combined.

    Each source is a callable with TRL's signature ``f(prompts, completions, completion_ids=...,
    **columns) -> list[float | None]``, a `PreTrainedModel` for sequence classification (its first
    logit on ``prompt + completion``, tokenized by its entry of ``processing_classes``), or the id /
    folder of one. ``None`` means "not applicable to this row": a row's reward is the weighted sum
    over the sources that apply (TRL's ``nansum``). A NaN or infinite value is a bug of the source:
    the row is dropped from the advantage with a warning naming the source.
    """

    def __init__(self, funcs, processing_classes=None, weights: Optional[list[float]] = None):
        funcs = list(funcs) if isinstance(funcs, (list, tuple)) else [funcs]
        if not funcs:
            raise ValueError("reward_funcs is empty: give at least one reward function or reward model.")
        classes = list(processing_classes) if isinstance(processing_classes, (list, tuple)) else [processing_classes] * len(funcs)
        if len(classes) != len(funcs):
            raise ValueError(f"reward_processing_classes has {len(classes)} entries for {len(funcs)} reward functions.")
        self.funcs, self.tokenizers, self.names = [], [], []
        for fn, tok in zip(funcs, classes):
            if isinstance(fn, str):
                fn, loaded = _load_reward_model(fn)
                tok = tok or loaded
            if isinstance(fn, torch.nn.Module):
                if tok is None:
                    raise ValueError(f"The reward model {type(fn).__name__} needs its tokenizer in reward_processing_classes.")
                if tok.pad_token_id is None:
                    tok.pad_token = tok.eos_token
                fn.eval().requires_grad_(False)
                self.names.append(getattr(fn.config, "_name_or_path", "") .split("/")[-1] or type(fn).__name__)
            elif callable(fn):
                self.names.append(getattr(fn, "__name__", type(fn).__name__))
            else:
                raise TypeError(f"A reward function must be callable, a sequence-classification model or its path; got {type(fn).__name__}.")
            self.funcs.append(fn)
            self.tokenizers.append(tok)
        if weights is not None and len(weights) != len(self.funcs):
            raise ValueError(f"reward_weights has {len(weights)} weights for {len(self.funcs)} reward functions.")
        self.weights = torch.tensor(weights if weights is not None else [1.0] * len(self.funcs), dtype=torch.float32)

    def to(self, device) -> "RewardFunctions":
        for fn in self.funcs:
            if isinstance(fn, torch.nn.Module):
                fn.to(device)
        self.device = device
        return self

    @torch.no_grad()
    def _model_scores(self, model, tokenizer, prompts, completions) -> list[float]:
        enc = tokenizer([p + c for p, c in zip(prompts, completions)], padding=True, truncation=True, return_tensors="pt")
        enc = enc.to(next(model.parameters()).device)
        return model(**enc).logits[:, 0].float().cpu().tolist()

    def __call__(self, prompts, completions, completion_ids, columns: dict, **extra):
        """Returns ``(rewards (R,), {name: (R,) with NaN where not applicable}, valid (R,))``."""
        rows = len(completions)
        per_func, values, valid = {}, [], torch.ones(rows, dtype=torch.bool)
        for fn, tok, name in zip(self.funcs, self.tokenizers, self.names):
            if isinstance(fn, torch.nn.Module):
                scores = self._model_scores(fn, tok, prompts, completions)
            else:
                scores = call_reward_function(fn, prompts, completions, completion_ids, **columns, **extra)
            if len(scores) != rows:
                raise ValueError(f"The reward function {name} returned {len(scores)} values for {rows} completions.")
            missing = torch.tensor([s is None for s in scores])
            column = torch.tensor([0.0 if s is None else float(s) for s in scores], dtype=torch.float32)
            column, valid = drop_nonfinite(column, name, valid)
            per_func[name] = column.masked_fill(missing, float("nan"))
            values.append(per_func[name])
        stacked = torch.stack(values, dim=1)  # (R, F)
        none_at_all = stacked.isnan().all(-1)
        if bool(none_at_all.any()):
            logger.warning("Every reward function returned None for %d of %d completions: their reward is 0.", int(none_at_all.sum()), rows)
        rewards = (stacked * self.weights[None, :]).nansum(-1)
        device = getattr(self, "device", "cpu")
        return rewards.to(device), {k: v.to(device) for k, v in per_func.items()}, valid.to(device)
