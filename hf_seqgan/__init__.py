"""hf_seqgan: train and decode any pretrained Hugging Face seq2seq model beyond teacher forcing.

The public API is listed in ``__all__``. The building blocks:

- :mod:`hf_seqgan.schedules`: `Schedule` for every knob that moves (teacher-forcing probability,
  Gumbel temperature, decoding temperature, loss weights), one CLI string each;
- :mod:`hf_seqgan.sampling`: Gumbel noise, Gumbel-softmax, `soft_embed`;
- :mod:`hf_seqgan.rollout`: `RolloutEngine`, the one decoding engine (sample, differentiable,
  continue-from-prefixes, teacher-forced score);
- :mod:`hf_seqgan.logits_process` and :mod:`hf_seqgan.reranking`: temperature schedules, Gumbel
  sampling, discriminator-guided decoding, best-of-N reranking;
- :mod:`hf_seqgan.discriminators` and :mod:`hf_seqgan.rewards`: the discriminator adapter, rewards
  and baselines; :mod:`hf_seqgan.seq2seq_discriminator`: the discriminator made from the generator
  (the trainers' default) and its held-out training loop; :mod:`hf_seqgan.residual_ebm`: decoding
  by importance resampling under a learned energy;
- :mod:`hf_seqgan.hidden_discriminator`: the hidden-state discriminator of professor forcing;
- :mod:`hf_seqgan.noise`: word shuffle / drop / blank input noise for denoising auto-encoding;
- :mod:`hf_seqgan.trainers`: `ScheduledSamplingTrainer`, `ProfessorForcingTrainer`,
  `AdversarialTrainer`, `CycleTrainer`, `GRPOTrainer` (TRL's GRPO for seq2seq models);
- :mod:`hf_seqgan.metrics`: ROUGE, sacreBLEU, self-BLEU and distinct-n as `evaluate` modules
  shipped in the package (`load_metric`, offline);
- :mod:`hf_seqgan.evaluation` and :mod:`hf_seqgan.oracle`: temperature sweeps, the
  quality-diversity frontier and the synthetic oracle task;
- :mod:`hf_seqgan.hub` and :mod:`hf_seqgan.plotting`: model cards, pushing with the auxiliary
  models, training curves;
- :mod:`hf_seqgan.tiny` and :mod:`hf_seqgan.synthetic`: tiny models, tokenizers and corpora
  built locally, for tests and quick runs with no network.
"""

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0.dev0"

# Public name -> the module that defines it. Imported on first use (PEP 562), so that `import hf_seqgan`
# and the `hf-seqgan` command stay fast; `from hf_seqgan import X` works as usual.
_LAZY = {
    "Schedule": ".schedules",
    "ConstantSchedule": ".schedules",
    "LinearSchedule": ".schedules",
    "ExponentialSchedule": ".schedules",
    "InverseSigmoidSchedule": ".schedules",
    "CosineSchedule": ".schedules",
    "PiecewiseSchedule": ".schedules",
    "as_schedule": ".schedules",
    "schedule_field": ".schedules",
    "gumbel_noise": ".sampling",
    "gumbel_max_sample": ".sampling",
    "gumbel_softmax": ".sampling",
    "soft_embed": ".sampling",
    "Rollout": ".rollout",
    "Encoded": ".rollout",
    "RolloutEngine": ".rollout",
    "check_seq2seq_model": ".rollout",
    "TemperatureScheduleLogitsWarper": ".logits_process",
    "GumbelSamplingLogitsProcessor": ".logits_process",
    "DiscriminatorGuidedLogitsProcessor": ".logits_process",
    "sentence_end_token_ids": ".logits_process",
    "generate_and_rerank": ".reranking",
    "RerankOutput": ".reranking",
    "SequenceDiscriminator": ".discriminators",
    "build_default_discriminator": ".discriminators",
    "discriminator_loss": ".discriminators",
    "Seq2SeqDiscriminator": ".seq2seq_discriminator",
    "train_discriminator": ".discriminator_training",
    "DiscriminatorTrainingResult": ".discriminator_training",
    "heldout_metrics": ".seq2seq_discriminator",
    "ResidualEBM": ".residual_ebm",
    "ResidualEBMOutput": ".residual_ebm",
    "discriminator_energy": ".residual_ebm",
    "importance_resample": ".residual_ebm",
    "DiscriminatorReward": ".rewards",
    "TextReward": ".rewards",
    "monte_carlo_rewards": ".rewards",
    "step_level_rewards": ".rewards",
    "discounted_returns": ".rewards",
    "MovingAverageBaseline": ".rewards",
    "leave_one_out_baseline": ".rewards",
    "self_critical_baseline": ".rewards",
    "ScheduledSamplingConfig": ".trainers",
    "ScheduledSamplingTrainer": ".trainers",
    "ProfessorForcingConfig": ".trainers",
    "ProfessorForcingTrainer": ".trainers",
    "AdversarialConfig": ".trainers",
    "AdversarialTrainer": ".trainers",
    "CycleConfig": ".trainers",
    "CycleTrainer": ".trainers",
    "GRPOConfig": ".trainers",
    "GRPOTrainer": ".trainers",
    "NonFiniteTrainingError": ".trainers",
    "HiddenStateDiscriminator": ".hidden_discriminator",
    "add_noise": ".noise",
    "TextNoiser": ".noise",
    "load_metric": ".metrics",
    "available_metrics": ".metrics",
    "distinct_n": ".metrics",
    "self_bleu": ".metrics",
    "temperature_sweep": ".evaluation",
    "heldout_nll": ".evaluation",
    "text_metrics": ".evaluation",
    "mean_sweeps": ".evaluation",
    "sweep_table": ".evaluation",
    "plot_frontier": ".evaluation",
    "OracleTask": ".oracle",
    "student_nll": ".oracle",
    "plot_training": ".plotting",
    "model_card": ".cards",
    "write_model_cards": ".cards",
    "describe_schedule": ".cards",
    "HubPushError": ".hub",
}

__all__ = [*_LAZY, "__version__"]
_SUBMODULES = {"seq2seq_discriminator", "discriminator_training", "sequences", "continuation", "collapse", "pretraining", "residual_ebm", "cards", "directions", "scoring", "discriminators", "evaluation", "hidden_discriminator", "hub", "logits_process", "metrics", "noise", "oracle", "plotting",
               "recipes", "registry", "reranking", "rewards", "rollout", "sampling", "schedules", "synthetic", "tiny", "trainers"}



def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value  # later lookups skip this hook
        return value
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    if name.endswith(("Trainer", "Config")):  # a trainer module added to hf_seqgan/trainers/ needs no line here
        trainers = importlib.import_module(".trainers", __name__)
        if name in trainers.__all__:
            globals()[name] = value = getattr(trainers, name)
            return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:  # the eager imports, for type checkers and IDEs
    from .schedules import Schedule, ConstantSchedule, LinearSchedule, ExponentialSchedule, InverseSigmoidSchedule, CosineSchedule, PiecewiseSchedule, as_schedule, schedule_field
    from .sampling import gumbel_noise, gumbel_max_sample, gumbel_softmax, soft_embed
    from .rollout import Rollout, Encoded, RolloutEngine, check_seq2seq_model
    from .logits_process import TemperatureScheduleLogitsWarper, GumbelSamplingLogitsProcessor, DiscriminatorGuidedLogitsProcessor, sentence_end_token_ids
    from .reranking import generate_and_rerank, RerankOutput
    from .discriminators import SequenceDiscriminator, build_default_discriminator, discriminator_loss
    from .seq2seq_discriminator import Seq2SeqDiscriminator, heldout_metrics
    from .discriminator_training import train_discriminator, DiscriminatorTrainingResult
    from .residual_ebm import ResidualEBM, ResidualEBMOutput, discriminator_energy, importance_resample
    from .rewards import DiscriminatorReward, TextReward, monte_carlo_rewards, step_level_rewards, discounted_returns, MovingAverageBaseline, leave_one_out_baseline, self_critical_baseline
    from .trainers import ScheduledSamplingConfig, ScheduledSamplingTrainer, ProfessorForcingConfig, ProfessorForcingTrainer, AdversarialConfig, AdversarialTrainer, CycleConfig, CycleTrainer, GRPOConfig, GRPOTrainer, NonFiniteTrainingError
    from .hidden_discriminator import HiddenStateDiscriminator
    from .noise import add_noise, TextNoiser
    from .metrics import load_metric, available_metrics, distinct_n, self_bleu
    from .evaluation import temperature_sweep, heldout_nll, text_metrics, mean_sweeps, sweep_table, plot_frontier
    from .oracle import OracleTask, student_nll
    from .plotting import plot_training
    from .cards import model_card, write_model_cards, describe_schedule
    from .hub import HubPushError
