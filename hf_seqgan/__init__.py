"""hf_seqgan: train and decode any pretrained Hugging Face seq2seq model beyond teacher forcing.

The public API is listed in ``__all__``. The building blocks:

- :mod:`hf_seqgan.schedules`: `Schedule` for every knob that moves (teacher-forcing probability,
  Gumbel temperature, decoding temperature, loss weights), one CLI string each;
- :mod:`hf_seqgan.sampling`: Gumbel noise, Gumbel-softmax, `soft_embed`;
- :mod:`hf_seqgan.rollout`: `RolloutEngine`, the one decoding engine (sample, differentiable,
  continue-from-prefixes, teacher-forced score);
- :mod:`hf_seqgan.tiny` and :mod:`hf_seqgan.synthetic`: tiny models, tokenizers and corpora
  built locally, for tests and quick runs with no network.
"""

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
    "__version__",
]
