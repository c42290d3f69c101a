"""GRPOTrainer: Group Relative Policy Optimization for encoder–decoder models, shaped like TRL's.

TRL's ``GRPOTrainer`` serves causal models only; this one takes any ``AutoModelForSeq2SeqLM`` (T5,
BART, mBART, Marian, Pegasus, ...) with TRL's field names, semantics and reward-function signature,
so that a TRL script changes only its import (see ``docs/rl.md``). Shao et al. 2024, DeepSeekMath
(https://arxiv.org/abs/2402.03300).

Each step: every prompt (the ``prompt`` column, the encoder's input) is decoded ``num_generations``
times by :class:`~hf_seqgan.rollout.RolloutEngine` (``temperature``, ``top_k``, ``top_p``, at most
``max_completion_length`` tokens); every reward function scores the completions; the weighted sum
of the rewards, minus the mean of its prompt's group (divided by the group's standard deviation
with ``scale_rewards="group"``), is the advantage of every token of a completion; the loss is the
clipped-ratio surrogate of :func:`~hf_seqgan.trainers._policy.policy_loss` on the log-probs of the
distribution actually sampled from, plus ``beta`` times the k3 KL to the frozen reference model.
With ``num_iterations > 1`` each batch of completions is used for that many optimizer steps (the
data sampler repeats it), with the ratio to the log-probs at sampling time clipped to
``[1 - epsilon, 1 + epsilon_high]``.

Batch sizes follow TRL: ``per_device_train_batch_size`` counts *completions*; it must be a multiple of
``num_generations``, and each process decodes ``per_device_train_batch_size / num_generations``
prompts a micro-batch (whole groups stay on one process).
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Optional

import torch
from transformers.modeling_outputs import BaseModelOutput

from ..rollout import Encoded, RolloutEngine, first_eos_mask
from ._base import BaseConfig, BaseTrainer
from ._policy import LOSS_TYPES, SCALE_REWARDS, disable_dropout, frozen_reference, group_advantages, policy_loss, reference_of, sampled_logprobs
from ._rewards import RewardFunctions

__all__ = ["GRPOConfig", "GRPOTrainer"]

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class GRPOConfig(BaseConfig):
    """Configuration of :class:`GRPOTrainer`: `Seq2SeqTrainingArguments` plus TRL's GRPO fields.

    Generation: ``num_generations``, ``max_prompt_length``, ``max_completion_length``,
    ``temperature``, ``top_k``, ``top_p``. Loss: ``beta``, ``epsilon``, ``epsilon_high``,
    ``num_iterations``, ``loss_type``, ``scale_rewards``, ``reward_weights``. Logging:
    ``log_completions``, ``num_completions_to_print``. ``disable_dropout`` (default on). As in TRL,
    ``learning_rate`` defaults to 1e-6 and ``remove_unused_columns`` to False (the reward functions
    receive the dataset's other columns).
    """

    learning_rate: float = dataclasses.field(default=1e-6, metadata={"help": "AdamW learning rate (TRL's GRPO default)."})
    remove_unused_columns: Optional[bool] = dataclasses.field(default=False, metadata={"help": "Keep the dataset's columns: reward functions receive them."})
    num_generations: int = dataclasses.field(default=8, metadata={"help": "Completions per prompt (the group); divides per_device_train_batch_size."})
    max_prompt_length: Optional[int] = dataclasses.field(default=512, metadata={"help": "Prompts are truncated to this many tokens (None: no truncation)."})
    max_completion_length: int = dataclasses.field(default=256, metadata={"help": "Most tokens of a completion."})
    temperature: float = dataclasses.field(default=1.0, metadata={"help": "Sampling temperature of the completions."})
    top_k: int = dataclasses.field(default=0, metadata={"help": "Top-k of the completions (0 = off)."})
    top_p: float = dataclasses.field(default=1.0, metadata={"help": "Top-p of the completions (1 = off)."})
    beta: float = dataclasses.field(default=0.0, metadata={"help": "Weight of the KL to the reference model (0: no reference model is kept)."})
    epsilon: float = dataclasses.field(default=0.2, metadata={"help": "Lower clipping range of the ratio."})
    epsilon_high: Optional[float] = dataclasses.field(default=None, metadata={"help": "Upper clipping range (None: epsilon)."})
    num_iterations: int = dataclasses.field(default=1, metadata={"help": "Optimizer steps per batch of completions (TRL's mu)."})
    loss_type: str = dataclasses.field(default="bnpo", metadata={"help": f"Aggregation of the per-token loss: one of {LOSS_TYPES[:3]}."})
    scale_rewards: str = dataclasses.field(default="group", metadata={"help": f"Divide the advantages by the std of the {SCALE_REWARDS} (or True/False)."})
    reward_weights: Optional[list[float]] = dataclasses.field(default=None, metadata={"help": "One weight per reward function (default 1 each)."})
    log_completions: bool = dataclasses.field(default=False, metadata={"help": "Log a table of prompts, completions and rewards every logging step."})
    num_completions_to_print: Optional[int] = dataclasses.field(default=None, metadata={"help": "Rows of that table printed (None: all)."})
    disable_dropout: bool = dataclasses.field(default=True, metadata={"help": "Turn the policy's dropout off (rollouts and loss forward are the same policy)."})

    def __post_init__(self):
        super().__post_init__()
        if self.scale_rewards is True or self.scale_rewards is False:
            self.scale_rewards = "group" if self.scale_rewards else "none"
        if self.scale_rewards not in SCALE_REWARDS:
            raise ValueError(f"scale_rewards={self.scale_rewards!r} is not one of {SCALE_REWARDS} (or True/False).")
        if self.loss_type not in LOSS_TYPES[:3]:
            raise ValueError(f"loss_type={self.loss_type!r} is not one of {LOSS_TYPES[:3]}. ('dapo' normalizes by the token count of "
                             "the whole accumulated batch, which this trainer does not know while it decodes one micro-batch at a time: use 'bnpo'.)")
        for name in ("num_generations", "num_iterations", "max_completion_length"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}.")
        if self.per_device_train_batch_size % self.num_generations:
            raise ValueError(f"per_device_train_batch_size={self.per_device_train_batch_size} counts completions and must be a multiple of "
                             f"num_generations={self.num_generations}: e.g. per_device_train_batch_size={self.num_generations * max(1, self.per_device_train_batch_size // self.num_generations)}.")
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}.")
        if not 0 < self.top_p <= 1 or self.top_k < 0:
            raise ValueError(f"top_p must be in (0, 1] and top_k >= 0, got {self.top_p} and {self.top_k}.")
        if self.epsilon < 0 or (self.epsilon_high is not None and self.epsilon_high < 0) or self.beta < 0:
            raise ValueError(f"epsilon, epsilon_high and beta must be >= 0, got {self.epsilon}, {self.epsilon_high}, {self.beta}.")


class _RepeatSampler(torch.utils.data.Sampler):
    """Shuffled indices, each chunk of ``chunk`` indices (one optimizer step's prompts) yielded
    ``repeats`` times in a row, so that a batch of completions serves ``num_iterations`` steps."""

    def __init__(self, size: int, chunk: int, repeats: int, seed: int):
        self.size, self.chunk, self.repeats = size, chunk, repeats
        self.generator = torch.Generator().manual_seed(seed)

    def __iter__(self):
        order = torch.randperm(self.size, generator=self.generator).tolist()
        for start in range(0, self.size, self.chunk):
            for _ in range(self.repeats):
                yield from order[start : start + self.chunk]

    def __len__(self):
        return self.size * self.repeats


class GRPOTrainer(BaseTrainer):
    """GRPO for seq2seq models (see the module docstring); the call is TRL's.

    Args:
        model: an `AutoModelForSeq2SeqLM` (or a `PeftModel` around one), or its id / local folder.
        reward_funcs: a reward function, a sequence-classification model (or its id / folder), or a
            list of them. A function is called as ``f(prompts=..., completions=..., completion_ids=...,
            **columns)`` with one entry per completion and returns one float (or None: not
            applicable) each — TRL's signature; a model scores ``prompt + completion`` by its first logit.
        args (`GRPOConfig`).
        train_dataset, eval_dataset: datasets with a ``prompt`` column (text) and optional others.
        processing_class: the model's tokenizer (loaded from ``model`` when it is an id or folder).
        reward_processing_classes: the tokenizers of reward models (loaded with them when None).
        callbacks, optimizers: as in `Trainer`.
        peft_config (*optional*): wrap the model with `get_peft_model`.
    """

    cli_name = "grpo"
    config_class = GRPOConfig
    summary = "GRPO (Shao et al. 2024) with TRL's fields and reward functions: group-relative policy optimization for seq2seq models."
    bibtex = {"shao2024deepseekmath": """@article{shao2024deepseekmath,
  title = {DeepSeekMath: Pushing the Limits of Mathematical Reasoning in Open Language Models},
  author = {Shao, Zhihong and Wang, Peiyi and Zhu, Qihao and Xu, Runxin and Song, Junxiao and Zhang, Mingchuan and Li, Y. K. and Wu, Y. and Guo, Daya},
  journal = {arXiv preprint arXiv:2402.03300},
  year = {2024},
  url = {https://arxiv.org/abs/2402.03300}
}"""}

    @classmethod
    def describe(cls, args):
        from ..cards import Method

        kl = f", a KL penalty of weight {args.beta} to the starting model" if getattr(args, "beta", 0) else ""
        return Method("GRPO", "grpo", f"Group Relative Policy Optimization: {getattr(args, 'num_generations', 8)} completions of each prompt are "
                      "sampled and scored by the reward functions; each completion's reward minus its group's mean (scaled by "
                      f"{getattr(args, 'scale_rewards', 'group')}) is the advantage of a clipped policy-gradient surrogate{kl}.",
                      ["shao2024deepseekmath"], bibtex=cls.bibtex)

    def __init__(self, model, reward_funcs, args: Optional[GRPOConfig] = None, train_dataset=None, eval_dataset=None,
                 processing_class=None, reward_processing_classes=None, callbacks: Optional[list] = None, optimizers: tuple = (None, None),
                 peft_config=None):
        if isinstance(model, str):
            from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

            processing_class = processing_class or AutoTokenizer.from_pretrained(model)
            model = AutoModelForSeq2SeqLM.from_pretrained(model)
        model, args = self._generator_and_args(model, args, GRPOConfig, "GRPO", peft_config)
        if processing_class is None:
            raise ValueError("GRPOTrainer needs processing_class (the model's tokenizer): prompts are tokenized and completions decoded with it.")
        for name, data in (("train_dataset", train_dataset), ("eval_dataset", eval_dataset)):
            columns = getattr(data, "column_names", None)
            if columns is not None and "prompt" not in columns:
                raise ValueError(f"The {name} has columns {columns} but no 'prompt' column: GRPOTrainer decodes from the texts in 'prompt' "
                                 "(rename the source column, e.g. dataset.rename_column('article', 'prompt')).")
        if args.disable_dropout:
            disable_dropout(model)
        self.rewards = RewardFunctions(reward_funcs, reward_processing_classes, args.reward_weights)
        super().__init__(model=model, args=args, data_collator=self._collate, train_dataset=train_dataset, eval_dataset=eval_dataset,
                         processing_class=processing_class, callbacks=callbacks, optimizers=optimizers)
        self.model_accepts_loss_kwargs = True
        self.loss_is_scaled_for_ga = True  # the loss is divided by the accumulation steps here
        self._train_batch_size = args.per_device_train_batch_size // args.num_generations  # prompts per micro-batch
        self.rewards.to(self.args.device)
        self.engine = RolloutEngine(self.model, processing_class)
        self.ref_model = frozen_reference(self.model) if args.beta > 0 else None
        self._micro_step = 0
        self._buffer: dict[int, dict] = {}
        self._table: list[dict] = []

    # ------------------------------------------------------------------ data
    def _collate(self, rows: list[dict]) -> dict:
        prompts = [row["prompt"] for row in rows]
        if not all(isinstance(p, str) for p in prompts):
            raise TypeError("The 'prompt' column must hold texts (the encoder's input); conversational prompts are not supported.")
        args = self.args
        enc = self.processing_class(prompts, padding=True, truncation=args.max_prompt_length is not None, max_length=args.max_prompt_length,
                                    return_tensors="pt")
        columns = {key: [row[key] for row in rows] for key in rows[0] if key != "prompt"}
        return {"input_ids": enc.input_ids, "attention_mask": enc.attention_mask, "prompts": prompts, "columns": columns}

    def _get_train_sampler(self, train_dataset=None):
        if self.args.num_iterations == 1:
            return super()._get_train_sampler(train_dataset)
        data = train_dataset if train_dataset is not None else self.train_dataset
        chunk = self._train_batch_size * self.args.gradient_accumulation_steps
        return _RepeatSampler(len(data), chunk, self.args.num_iterations, self.args.data_seed or self.args.seed)

    def _extra_state(self) -> dict:
        return {"micro_step": self._micro_step}

    def _load_extra_state(self, state: dict) -> None:
        self._micro_step = state["micro_step"]

    # ------------------------------------------------------------------ generation and rewards
    @torch.no_grad()
    def _generate(self, inputs: dict, encoded: Optional[Encoded] = None) -> dict:
        """Decode, score and take the advantages of one micro-batch's completions (``encoded``: the
        prompts' encoder states when the caller has them)."""
        args, G = self.args, self.args.num_generations
        ids, mask = inputs["input_ids"], inputs["attention_mask"]
        sampling = dict(do_sample=True, temperature=args.temperature, top_k=args.top_k or None, top_p=args.top_p,
                        max_new_tokens=args.max_completion_length)
        fakes = self.engine.sample(ids, mask, encoded=encoded, num_samples=G, **sampling)
        seqs, seq_mask = fakes.sequences, fakes.attention_mask
        completions = self.processing_class.batch_decode(seqs.masked_fill(seq_mask == 0, self.engine.pad_token_id), skip_special_tokens=True)
        completion_ids = [row[: int(n)].tolist() for row, n in zip(seqs, seq_mask.sum(-1))]
        prompts = [p for p in inputs["prompts"] for _ in range(G)]
        columns = {key: [v for v in values for _ in range(G)] for key, values in inputs["columns"].items()}
        rewards, per_func, valid = self.rewards(prompts, completions, completion_ids, columns, trainer_state=self.state)
        advantages = group_advantages(rewards, G, args.scale_rewards) * valid
        batch = {"input_ids": ids, "attention_mask": mask, "fakes": fakes, "advantages": advantages, "sampling": sampling}
        if args.num_iterations > 1:
            batch["old_logp"] = self._logprobs(self.model, ids, mask, fakes, sampling, encoded)
        if args.beta > 0:
            batch["ref_logp"] = self._reference_logprobs(ids, mask, fakes, sampling)
        grouped = rewards.view(-1, G)
        mode = "train" if self.model.training else "eval"
        self.record(reward=rewards[valid].mean() if valid.any() else None, reward_std=grouped.std(-1).mean() if G > 1 else 0.0,
                    frac_reward_zero_std=(grouped.std(-1) < 1e-6).float().mean() if G > 1 else 1.0,
                    completion_length=seq_mask.sum(-1).float().mean(),
                    clipped_completions=(~first_eos_mask(seqs, self.engine.eos_token_ids).any(-1) | (seq_mask[:, -1] == 1)).float().mean()
                    if seqs.shape[1] == args.max_completion_length else 0.0,
                    **{f"rewards/{name}/mean": col[~col.isnan()].mean() if (~col.isnan()).any() else None for name, col in per_func.items()})
        if args.log_completions and mode == "train":
            for i in range(len(completions)):
                self._table.append({"step": self.state.global_step, "prompt": prompts[i], "completion": completions[i],
                                    **{name: float(col[i]) for name, col in per_func.items()}, "advantage": float(advantages[i])})
        return batch

    def _logprobs(self, model, ids, mask, fakes, sampling, states: Optional[Encoded] = None) -> torch.Tensor:
        """`(R, T)` log-probs of the completions under the sampled distribution of ``model``, from the
        prompts ``ids`` `(P, S)` (or their encoder ``states``, reused: the encoder then does not run again)."""
        index = fakes.source_index
        source = ({"encoder_outputs": BaseModelOutput(last_hidden_state=states.last_hidden_state.index_select(0, index))} if states is not None
                  else {"input_ids": ids.index_select(0, index)})
        logits = model(**source, attention_mask=mask.index_select(0, index), decoder_input_ids=fakes.decoder_input_ids, use_cache=False).logits
        return sampled_logprobs(self.engine, logits, fakes.sequences, fakes.attention_mask, **sampling)

    @torch.no_grad()
    def _reference_logprobs(self, ids, mask, fakes, sampling) -> torch.Tensor:
        with reference_of(self.ref_model, self.model) as reference:
            return self._logprobs(reference, ids, mask, fakes, sampling)

    def _batch(self, inputs: dict) -> tuple[dict, Optional[Encoded]]:
        """This micro-batch's completions: decoded now on the first of ``num_iterations`` passes over
        a batch of prompts (then also the prompts' encoder states, in the graph: the encoder runs once
        for the decode and the loss), taken from the buffer on the later ones."""
        accumulation = self.args.gradient_accumulation_steps
        position = self._micro_step % (accumulation * self.args.num_iterations)
        slot = position % accumulation
        self._micro_step += 1
        if position < accumulation or slot not in self._buffer:
            states = self.engine.encode(inputs["input_ids"], inputs["attention_mask"])  # (P, S, H), in the graph
            self._buffer[slot] = self._generate(inputs, Encoded(states.last_hidden_state.detach(), states.attention_mask))
            return self._buffer[slot], states
        return self._buffer[slot], None

    # ------------------------------------------------------------------ loss
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if return_outputs:
            raise ValueError("GRPOTrainer computes no model outputs (return_outputs=True).")
        batch, states = self._batch(inputs) if model.training else (self._generate(inputs), None)
        args, fakes = self.args, batch["fakes"]
        logp = self._logprobs(model, batch["input_ids"], batch["attention_mask"], fakes, batch["sampling"], states)
        loss, stats = policy_loss(logp, batch["advantages"], fakes.attention_mask, old_logp=batch.get("old_logp"), ref_logp=batch.get("ref_logp"),
                                  beta=args.beta, epsilon=args.epsilon, epsilon_high=args.epsilon_high, loss_type=args.loss_type,
                                  max_completion_length=args.max_completion_length)
        self.record(**stats)
        accumulation = self.accumulation_steps
        return loss / accumulation if model.training else loss

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        inputs = self._prepare_inputs(inputs)
        with torch.no_grad():
            loss = self.compute_loss(model, inputs)
        return loss.detach(), None, None

    # ------------------------------------------------------------------ logging
    def log(self, logs: dict, start_time=None) -> None:
        if self._table and self.model.training:
            self._log_completions()
        super().log(logs, start_time)

    def _log_completions(self) -> None:
        rows, self._table = self._table, []
        shown = rows if self.args.num_completions_to_print is None else rows[: self.args.num_completions_to_print]
        keys = list(shown[0])
        lines = [" | ".join(keys)] + [" | ".join(f"{row[k]:.3f}" if isinstance(row[k], float) else str(row[k]).replace("\n", " ") for k in keys) for row in shown]
        logger.info("Completions at step %d:\n%s", self.state.global_step, "\n".join(lines))
        print("\n".join(lines))
        self.completions_table = rows
        if "wandb" in (self.args.report_to or []):
            import wandb

            if wandb.run is not None:
                wandb.log({"completions": wandb.Table(columns=keys, rows=[[row[k] for k in keys] for row in rows])})
