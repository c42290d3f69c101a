"""Scheduled sampling for any pretrained seq2seq model.

A model trained only on gold prefixes never learns to recover from its own mistakes (exposure
bias). Scheduled sampling (Bengio et al. 2015, https://arxiv.org/abs/1506.03099) feeds the decoder
its own predictions in place of gold tokens, with a probability that grows during training; the
loss stays the cross-entropy against the gold labels.

Two modes:

- ``parallel`` (default; Mihaylova & Martins 2019, https://arxiv.org/abs/1906.07651): a first
  teacher-forced decoder pass predicts every position at once; each gold decoder input is replaced
  by the prediction for it with probability ``1 - p``, as a hard token or as a soft mixture of
  embeddings (softmax or Gumbel-softmax through :func:`~hf_seqgan.sampling.soft_embed`); a second
  pass computes the loss. The encoder runs once and both passes share its output.
- ``autoregressive`` (Bengio et al.'s exact form): the decoder runs step by step with the
  :class:`~hf_seqgan.rollout.RolloutEngine`, each step's input chosen by the coin flip (gold, or
  the model's choice given the mixed prefix so far). No gradient flows through the choices, so one
  teacher-forced pass over the resulting decoder inputs gives exactly the per-step losses.

Examples:

```python
>>> from datasets import Dataset
>>> from hf_seqgan.tiny import train_tokenizer, build_tiny_model
>>> from hf_seqgan.trainers import ScheduledSamplingConfig, ScheduledSamplingTrainer
>>> pairs = [("the cat sat on the mat", "cat sat"), ("a dog ran far away", "dog ran")] * 8
>>> tok = train_tokenizer([a for a, _ in pairs] + [b for _, b in pairs], vocab_size=300)
>>> data = Dataset.from_dict({"input_ids": [tok(a).input_ids for a, _ in pairs], "labels": [tok(b).input_ids for _, b in pairs]})
>>> args = ScheduledSamplingConfig("out", gold_probability="linear:1,0,4", max_steps=4, logging_steps=2,
...                                per_device_train_batch_size=4, use_cpu=True, save_strategy="no", disable_tqdm=True)
>>> trainer = ScheduledSamplingTrainer(build_tiny_model("bart", tok), args, train_dataset=data, processing_class=tok)
>>> _ = trainer.train()  # doctest: +ELLIPSIS
{'loss': ..., 'gold_probability': '0.875', 'replaced_fraction': '0.0625', 'epoch': '0.5'}
{'loss': ..., 'gold_probability': '0.375', 'replaced_fraction': '0.75', 'epoch': '1'}
{'train_runtime': ...}

```
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Optional

import torch
from transformers import DataCollatorForSeq2Seq, TopKLogitsWarper
from transformers.modeling_outputs import BaseModelOutput

from ..rollout import Encoded, RolloutEngine
from ..sampling import gumbel_max_sample, gumbel_softmax, soft_embed
from ..schedules import Schedule, as_schedule, schedule_field
from ._base import BaseConfig, BaseTrainer
from .losses import token_loss_func

__all__ = ["ScheduledSamplingConfig", "ScheduledSamplingTrainer"]

MODES = ("parallel", "autoregressive")
PREDICTIONS = ("argmax", "sample", "top_k")
MIXINGS = ("hard", "softmax", "gumbel")


def _check_choice(value: str, name: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name}={value!r} is not one of {list(choices)}; pass e.g. `--{name} {choices[0]}`.")


def _shift_right(x: torch.Tensor, first: torch.Tensor) -> torch.Tensor:
    """``first`` `(B, 1, ...)` then ``x[:, :-1]``: what position t-1 predicted becomes input t."""
    return torch.cat([first, x[:, :-1]], dim=1)


@dataclasses.dataclass
class ScheduledSamplingConfig(BaseConfig):
    r"""Configuration of [`ScheduledSamplingTrainer`]: `Seq2SeqTrainingArguments` plus the fields
    below, all settable from the command line with `HfArgumentParser`.

    Parameters:
        > The schedule

        gold_probability (`str`, defaults to `"inverse_sigmoid:k=1000"`):
            Probability ``p`` of feeding the gold token at a decoder position, a schedule over optimizer
            steps (``state.global_step``, so it continues where it stopped on resume) with values in
            [0, 1]. ``1`` is plain teacher forcing; Bengio et al. decay it (``inverse_sigmoid:k=...``).

        > How predictions replace gold tokens

        mode (`str`, defaults to `"parallel"`):
            `"parallel"` (two decoder passes) or `"autoregressive"` (step-by-step decoding, exact).
        prediction (`str`, defaults to `"argmax"`):
            How the model's token is chosen: `"argmax"`, `"sample"` (from the softmax at
            ``mixing_temperature``) or `"top_k"` (sample among the ``prediction_top_k`` best). With
            soft mixing, `"top_k"` restricts the mixed distribution to those tokens.
        prediction_top_k (`int`, defaults to 10): k for ``prediction="top_k"``.
        mixing (`str`, defaults to `"hard"`):
            `"hard"` feeds token ids; `"softmax"` feeds the expected embedding under the predicted
            distribution; `"gumbel"` a Gumbel-softmax sample of it (parallel mode only).
        mixing_temperature (`str`, defaults to `"1"`):
            Temperature τ of sampling and soft mixing, a schedule over optimizer steps, > 0.
        backprop_predictions (`bool`, defaults to `False`):
            Let the gradient flow through the first pass into the soft mixtures (soft mixing only).
    """

    gold_probability: str = schedule_field(
        "inverse_sigmoid:k=1000",
        help="Probability of feeding the gold token at a decoder position (1 = teacher forcing), over optimizer steps.",
    )
    mode: str = dataclasses.field(
        default="parallel",
        metadata={"help": "'parallel' (a teacher-forced pass predicts every position, a second pass learns; "
                          "Mihaylova & Martins 2019) or 'autoregressive' (step-by-step decoding; Bengio et al. 2015).",
                  "choices": list(MODES)},
    )
    prediction: str = dataclasses.field(
        default="argmax",
        metadata={"help": "How the model's token is chosen: 'argmax', 'sample' or 'top_k'. With soft mixing, "
                          "'top_k' restricts the mixed distribution to the k best tokens.", "choices": list(PREDICTIONS)},
    )
    prediction_top_k: int = dataclasses.field(default=10, metadata={"help": "k for prediction='top_k'."})
    mixing: str = dataclasses.field(
        default="hard",
        metadata={"help": "'hard' feeds token ids; 'softmax' the expected embedding under the predicted distribution; "
                          "'gumbel' a Gumbel-softmax sample of it (parallel mode only).", "choices": list(MIXINGS)},
    )
    mixing_temperature: str = schedule_field("1", help="Temperature of sampling and soft mixing (> 0), over optimizer steps.")
    backprop_predictions: bool = dataclasses.field(
        default=False,
        metadata={"help": "Backpropagate through the first pass into the soft mixtures (soft mixing only)."},
    )

    def __post_init__(self):
        super().__post_init__()
        as_schedule(self.gold_probability, name="gold_probability", low=0.0, high=1.0)
        tau = as_schedule(self.mixing_temperature, name="mixing_temperature")
        if tau.bounds()[0] <= 0:
            raise ValueError(f"mixing_temperature={str(tau)!r} reaches {tau.bounds()[0]:g}; it must stay > 0 (e.g. '1' or 'linear:1,0.1,1000').")
        _check_choice(self.mode, "mode", MODES)
        _check_choice(self.prediction, "prediction", PREDICTIONS)
        _check_choice(self.mixing, "mixing", MIXINGS)
        if self.prediction == "top_k" and (isinstance(self.prediction_top_k, bool) or not isinstance(self.prediction_top_k, int) or self.prediction_top_k < 1):
            raise ValueError(f"prediction_top_k={self.prediction_top_k!r} must be a positive integer with prediction='top_k'.")
        if self.mode == "autoregressive" and self.mixing != "hard":
            raise ValueError(f"mixing={self.mixing!r} needs mode='parallel'; the autoregressive mode feeds hard tokens (mixing='hard').")
        if self.backprop_predictions and self.mixing == "hard":
            raise ValueError("backprop_predictions=True has no effect with hard tokens (no gradient crosses a token choice); "
                             "use mixing='softmax' or 'gumbel', or leave backprop_predictions off.")
        if self.mode == "autoregressive" and self.gradient_checkpointing:
            raise ValueError("mode='autoregressive' decodes with the KV cache, which gradient checkpointing drops in training "
                             "mode; use mode='parallel' or turn gradient_checkpointing off.")


class ScheduledSamplingTrainer(BaseTrainer):
    """A `Seq2SeqTrainer` that trains with scheduled sampling (see the module docstring).

    Used exactly like `Seq2SeqTrainer`; evaluation and ``predict_with_generate`` are unchanged (no
    mixing outside training). The loss is token-level cross-entropy on the gold labels, padding
    (-100) ignored, ``label_smoothing_factor`` honoured, normalised by the label count of the whole
    accumulated batch so that gradient accumulation is exact. Logged every ``logging_steps``:
    ``gold_probability`` and ``replaced_fraction`` (the share of label positions after the decoder
    start whose input was a prediction). Predictions come from the model's raw distribution (no
    ``generation_config`` processors) in training mode, i.e. with the dropout of the learning pass.

    Args:
        model: an encoder–decoder `PreTrainedModel` with a LM head (or a `PeftModel` around one).
        args (`ScheduledSamplingConfig`, *optional*): the configuration.
        data_collator (*optional*): defaults to `DataCollatorForSeq2Seq(processing_class)`. Batches
            need ``input_ids`` and ``labels``; gold decoder inputs are built from the labels with the
            model's own shift unless the batch carries ``decoder_input_ids``.
        train_dataset, eval_dataset, processing_class, compute_metrics, callbacks, optimizers,
        preprocess_logits_for_metrics: as in `Seq2SeqTrainer`.
        peft_config (`peft.PeftConfig`, *optional*): wrap the model with `get_peft_model` (e.g.
            `LoraConfig(task_type="SEQ_2_SEQ_LM", target_modules="all-linear")`).
    """

    cli_name = "scheduled_sampling"
    config_class = ScheduledSamplingConfig
    summary = "Scheduled sampling (Bengio et al. 2015): the decoder reads its own tokens with a scheduled probability."
    supervised = True

    @classmethod
    def describe(cls, args):
        from ..cards import Method

        parallel = getattr(args, "mode", "parallel") == "parallel"
        how = ("a first teacher-forced pass predicts every position and a second pass learns on the gold inputs mixed with "
               "those predictions (Mihaylova & Martins 2019)") if parallel else "the decoder runs step by step on its own mixed prefix (Bengio et al. 2015)"
        return Method("scheduled sampling", "scheduled-sampling",
                      "Scheduled sampling feeds the decoder its own predictions in place of gold tokens with a probability that grows "
                      f"during training, to reduce exposure bias; the loss stays the cross-entropy on the gold labels. Here {how}.",
                      ["bengio2015scheduled"] + (["mihaylova2019scheduled"] if parallel else []))

    def __init__(
        self,
        model,
        args: Optional[ScheduledSamplingConfig] = None,
        data_collator: Optional[Callable] = None,
        train_dataset=None,
        eval_dataset=None,
        processing_class=None,
        *,
        compute_metrics: Optional[Callable] = None,
        callbacks: Optional[list] = None,
        optimizers: tuple = (None, None),
        preprocess_logits_for_metrics: Optional[Callable] = None,
        peft_config=None,
    ):
        model, args = self._generator_and_args(model, args, ScheduledSamplingConfig, "scheduled-sampling", peft_config)
        if data_collator is None and processing_class is not None and hasattr(processing_class, "pad"):
            data_collator = DataCollatorForSeq2Seq(processing_class)
        super().__init__(
            model=model, args=args, data_collator=data_collator, train_dataset=train_dataset, eval_dataset=eval_dataset,
            processing_class=processing_class, compute_metrics=compute_metrics, callbacks=callbacks, optimizers=optimizers,
            preprocess_logits_for_metrics=preprocess_logits_for_metrics,
            # The Trainer counts num_items_in_batch over the accumulated batch only for a compute_loss_func
            # (or a model that uses it, which these do not): this one makes accumulation exact.
            compute_loss_func=token_loss_func(args.label_smoothing_factor),
        )
        self.gold_probability: Schedule = as_schedule(args.gold_probability, name="gold_probability", low=0.0, high=1.0)
        self.mixing_temperature: Schedule = as_schedule(args.mixing_temperature, name="mixing_temperature")
        # Raw model distributions (no generation_config processors), as in the parallel mode. Bengio's
        # decode runs the gold length: a predicted EOS is one more token fed back, not the end.
        self._engine = RolloutEngine(self.model, use_generation_config=False)

    # ------------------------------------------------------------------ loss
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if inputs.get("labels") is None:
            raise ValueError("ScheduledSamplingTrainer needs `labels` (the gold targets) in every batch; "
                             "tokenize the targets into a `labels` column (DataCollatorForSeq2Seq pads them with -100).")
        inputs = self._with_gold_decoder_inputs(inputs)
        if model.training:
            inputs = self._scheduled_inputs(inputs)
        return super().compute_loss(model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch)

    def _with_gold_decoder_inputs(self, inputs: dict) -> dict:
        if inputs.get("decoder_input_ids") is not None or inputs.get("decoder_inputs_embeds") is not None:
            return inputs
        prepare = getattr(self._engine.base, "prepare_decoder_input_ids_from_labels", None)
        if prepare is None:
            raise ValueError(f"{type(self._engine.base).__name__} has no prepare_decoder_input_ids_from_labels: put the gold "
                             "`decoder_input_ids` in the batch (e.g. DataCollatorForSeq2Seq(tokenizer, model=model)).")
        return {**inputs, "decoder_input_ids": prepare(labels=inputs["labels"])}

    def _scheduled_inputs(self, inputs: dict) -> dict:
        """The model inputs of the learning pass: the encoder output (computed once) and the gold
        decoder inputs with the coin's positions replaced by the model's predictions."""
        if inputs.get("input_ids") is None or inputs.get("decoder_input_ids") is None:
            raise ValueError("Scheduled sampling needs `input_ids` and gold `decoder_input_ids` (or `labels`) in the batch.")
        labels, gold = inputs["labels"], inputs["decoder_input_ids"]  # (B, T) each
        step = self.state.global_step
        p = self.gold_probability.value(step)
        candidates = labels.ne(-100)  # (B, T) positions with a loss
        candidates[:, 0] = False  # the decoder start is always gold
        replace = (torch.rand(labels.shape, device=labels.device) >= p) & candidates  # (B, T)
        self.record(gold_probability=p, replaced_fraction=replace.sum() / candidates.sum().clamp_min(1))

        if not bool(replace.any()):  # teacher forcing: one ordinary pass
            return inputs
        enc = self._engine.encode(inputs["input_ids"], inputs.get("attention_mask"))
        model_inputs = {k: v for k, v in inputs.items() if k not in ("input_ids", "decoder_input_ids")}
        model_inputs.update(encoder_outputs=BaseModelOutput(last_hidden_state=enc.last_hidden_state), attention_mask=enc.attention_mask)
        tau = self.mixing_temperature.value(step)
        if self.args.mode == "autoregressive":
            return {**model_inputs, "decoder_input_ids": self._autoregressive_inputs(enc, gold, replace, tau)}
        return {**model_inputs, **self._parallel_inputs(model_inputs, gold, replace, tau)}

    def _parallel_inputs(self, model_inputs: dict, gold: torch.Tensor, replace: torch.Tensor, tau: float) -> dict:
        """First teacher-forced pass -> predictions -> mixed decoder ids or embeddings."""
        with torch.set_grad_enabled(self.args.backprop_predictions and torch.is_grad_enabled()):
            logits = self._engine.model(
                encoder_outputs=model_inputs["encoder_outputs"], attention_mask=model_inputs["attention_mask"],
                decoder_input_ids=gold, use_cache=False, return_dict=True,
            ).logits  # (B, T, V)
            predicted = self._predict(logits, tau)  # (B, T) ids or (B, T, V) distributions
        if self.args.mixing == "hard":
            return {"decoder_input_ids": torch.where(replace, _shift_right(predicted, gold[:, :1]), gold)}
        # Mix in probability space (the predicted distribution, or the gold one-hot) and embed once, so
        # that gold positions get exactly the embedding their ids would.
        probs = _shift_right(predicted, predicted[:, :1]) * replace[..., None]  # (B, T, V); column 0 is gold
        probs = probs.scatter_add(-1, gold[..., None], (~replace)[..., None].to(probs.dtype))
        return {"decoder_inputs_embeds": soft_embed(self.model, probs)}

    def _predict(self, logits: torch.Tensor, tau: float) -> torch.Tensor:
        scores = logits.float()  # (B, T, V)
        if self.args.prediction == "top_k":
            scores = TopKLogitsWarper(self.args.prediction_top_k)(None, scores)
        if self.args.mixing == "gumbel":
            return gumbel_softmax(scores, tau)  # (B, T, V)
        if self.args.mixing == "softmax":
            return torch.softmax(scores / tau, dim=-1)  # (B, T, V)
        if self.args.prediction == "argmax":
            return scores.argmax(dim=-1)  # (B, T)
        return gumbel_max_sample(scores / tau)  # (B, T), exact samples of softmax(scores / tau)

    def _autoregressive_inputs(self, enc: Encoded, gold: torch.Tensor, replace: torch.Tensor, tau: float) -> torch.Tensor:
        """Decode step by step: output step s feeds decoder input s + 1, forced to gold where the coin
        says so (``~replace[:, s + 1]``), the model's choice given the mixed prefix elsewhere."""
        steps = gold.shape[1] - 1
        if steps < 1:
            return gold
        if bool((gold[:, 0] != self._engine.decoder_start_token_id).any()):
            raise ValueError(
                f"mode='autoregressive' decodes from decoder_start_token_id={self._engine.decoder_start_token_id}, but the gold "
                f"decoder inputs start with {sorted(set(gold[:, 0].tolist()))}; set model.generation_config.decoder_start_token_id "
                "to the start token the labels are shifted with, or use mode='parallel'."
            )
        sampling = {"do_sample": self.args.prediction != "argmax", "temperature": tau}
        if self.args.prediction == "top_k":
            sampling["top_k"] = self.args.prediction_top_k
        rollout = self._engine.sample(
            encoded=Encoded(enc.last_hidden_state.detach(), enc.attention_mask), max_new_tokens=steps,
            forced_tokens=gold[:, 1:], forced_mask=~replace[:, 1:], stop_at_eos=False, **sampling,
        )
        return torch.where(replace, torch.cat([gold[:, :1], rollout.sequences], dim=1), gold)
