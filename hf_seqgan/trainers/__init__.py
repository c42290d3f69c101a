"""Trainers: each a thin `Seq2SeqTrainer` subclass composing the shared engines, with its config."""

from ._base import BaseConfig, BaseTrainer, NonFiniteTrainingError, apply_peft, with_default_targets
from .adversarial import AdversarialConfig, AdversarialTrainer
from .cycle import CycleConfig, CycleTrainer
from .grpo import GRPOConfig, GRPOTrainer
from .professor_forcing import ProfessorForcingConfig, ProfessorForcingTrainer
from .scheduled_sampling import ScheduledSamplingConfig, ScheduledSamplingTrainer

__all__ = [
    "BaseConfig",
    "BaseTrainer",
    "NonFiniteTrainingError",
    "apply_peft",
    "with_default_targets",
    "ScheduledSamplingConfig",
    "ScheduledSamplingTrainer",
    "ProfessorForcingConfig",
    "ProfessorForcingTrainer",
    "AdversarialConfig",
    "AdversarialTrainer",
    "CycleConfig",
    "CycleTrainer",
    "GRPOConfig",
    "GRPOTrainer",
]
