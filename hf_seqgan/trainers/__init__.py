"""Trainers: each a thin `Seq2SeqTrainer` subclass composing the shared engines, with its config.

Every public module of this folder is imported here and its ``__all__`` re-exported, so that a new
technique is one new file (its trainer describes itself: see :class:`BaseTrainer` and
:mod:`hf_seqgan.registry`).
"""

import importlib as _importlib
import pkgutil as _pkgutil

from ..registry import module_order
from ._base import BaseConfig, BaseTrainer, NonFiniteTrainingError, apply_peft, with_default_targets

__all__ = ["BaseConfig", "BaseTrainer", "NonFiniteTrainingError", "apply_peft", "with_default_targets"]

for _name in sorted((m.name for m in _pkgutil.iter_modules(__path__) if not m.name.startswith("_")), key=module_order):
    _module = _importlib.import_module(f".{_name}", __name__)
    for _public in getattr(_module, "__all__", ()):
        globals()[_public] = getattr(_module, _public)
        __all__.append(_public)
