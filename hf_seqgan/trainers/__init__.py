"""Trainers: each a thin `Seq2SeqTrainer` subclass composing the shared engines, with its config."""

from ._base import BaseTrainer, apply_peft
from .adversarial import AdversarialConfig, AdversarialTrainer
from .scheduled_sampling import ScheduledSamplingConfig, ScheduledSamplingTrainer

__all__ = ["BaseTrainer", "apply_peft", "ScheduledSamplingConfig", "ScheduledSamplingTrainer", "AdversarialConfig", "AdversarialTrainer"]
