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
  and baselines;
- :mod:`hf_seqgan.hidden_discriminator`: the hidden-state discriminator of professor forcing;
- :mod:`hf_seqgan.noise`: word shuffle / drop / blank input noise for denoising auto-encoding;
- :mod:`hf_seqgan.trainers`: `ScheduledSamplingTrainer`, `ProfessorForcingTrainer`,
  `AdversarialTrainer`, `CycleTrainer`;
- :mod:`hf_seqgan.metrics`: ROUGE, sacreBLEU, self-BLEU and distinct-n as `evaluate` modules
  shipped in the package (`load_metric`, offline);
- :mod:`hf_seqgan.evaluation` and :mod:`hf_seqgan.oracle`: temperature sweeps, the
  quality-diversity frontier and the synthetic oracle task;
- :mod:`hf_seqgan.hub` and :mod:`hf_seqgan.plotting`: model cards, pushing with the auxiliary
  models, training curves;
- :mod:`hf_seqgan.tiny` and :mod:`hf_seqgan.synthetic`: tiny models, tokenizers and corpora
  built locally, for tests and quick runs with no network.
"""

from .discriminators import SequenceDiscriminator, build_default_discriminator, discriminator_loss
from .evaluation import heldout_nll, mean_sweeps, plot_frontier, sweep_table, temperature_sweep, text_metrics
from .hidden_discriminator import HiddenStateDiscriminator
from .hub import HubPushError, describe_schedule, model_card, write_model_cards
from .logits_process import DiscriminatorGuidedLogitsProcessor, GumbelSamplingLogitsProcessor, TemperatureScheduleLogitsWarper, sentence_end_token_ids
from .metrics import available_metrics, distinct_n, load_metric, self_bleu
from .noise import TextNoiser, add_noise
from .oracle import OracleTask, student_nll
from .plotting import plot_training
from .reranking import RerankOutput, generate_and_rerank
from .rewards import (
    DiscriminatorReward,
    MovingAverageBaseline,
    TextReward,
    discounted_returns,
    leave_one_out_baseline,
    monte_carlo_rewards,
    self_critical_baseline,
    step_level_rewards,
)
from .rollout import Encoded, Rollout, RolloutEngine, check_seq2seq_model
from .sampling import gumbel_max_sample, gumbel_noise, gumbel_softmax, soft_embed
from .schedules import (
    ConstantSchedule,
    CosineSchedule,
    ExponentialSchedule,
    InverseSigmoidSchedule,
    LinearSchedule,
    PiecewiseSchedule,
    Schedule,
    as_schedule,
    schedule_field,
)

from .trainers import (
    AdversarialConfig,
    AdversarialTrainer,
    CycleConfig,
    CycleTrainer,
    ProfessorForcingConfig,
    ProfessorForcingTrainer,
    ScheduledSamplingConfig,
    ScheduledSamplingTrainer,
)

__version__ = "0.1.0.dev0"

__all__ = [
    "Schedule",
    "ConstantSchedule",
    "LinearSchedule",
    "ExponentialSchedule",
    "InverseSigmoidSchedule",
    "CosineSchedule",
    "PiecewiseSchedule",
    "as_schedule",
    "schedule_field",
    "gumbel_noise",
    "gumbel_max_sample",
    "gumbel_softmax",
    "soft_embed",
    "Rollout",
    "Encoded",
    "RolloutEngine",
    "check_seq2seq_model",
    "TemperatureScheduleLogitsWarper",
    "GumbelSamplingLogitsProcessor",
    "DiscriminatorGuidedLogitsProcessor",
    "sentence_end_token_ids",
    "generate_and_rerank",
    "RerankOutput",
    "SequenceDiscriminator",
    "build_default_discriminator",
    "discriminator_loss",
    "DiscriminatorReward",
    "TextReward",
    "monte_carlo_rewards",
    "step_level_rewards",
    "discounted_returns",
    "MovingAverageBaseline",
    "leave_one_out_baseline",
    "self_critical_baseline",
    "ScheduledSamplingConfig",
    "ScheduledSamplingTrainer",
    "ProfessorForcingConfig",
    "ProfessorForcingTrainer",
    "AdversarialConfig",
    "AdversarialTrainer",
    "CycleConfig",
    "CycleTrainer",
    "HiddenStateDiscriminator",
    "add_noise",
    "TextNoiser",
    "load_metric",
    "available_metrics",
    "distinct_n",
    "self_bleu",
    "temperature_sweep",
    "heldout_nll",
    "text_metrics",
    "mean_sweeps",
    "sweep_table",
    "plot_frontier",
    "OracleTask",
    "student_nll",
    "plot_training",
    "model_card",
    "write_model_cards",
    "describe_schedule",
    "HubPushError",
    "__version__",
]
