"""The one list of the library's trainers, read from the trainers themselves.

A trainer describes itself with class attributes (see :class:`~hf_seqgan.trainers.BaseTrainer`):
``cli_name`` (its name on the command line and in the recipes' ``--trainer``), ``config_class``,
``summary`` (one line), ``supervised`` (whether it learns from ``(source, target)`` pairs, so that
a supervised recipe can run it), and, for its model card, ``describe(args)`` and ``roles``.

Two sources, merged by :func:`trainer_entries`:

- the modules of ``hf_seqgan/trainers/`` (every ``*.py`` not starting with ``_``), read *without
  importing them*: their class attributes are literals, found with `ast`, so that ``hf-seqgan
  list`` and ``--help`` load neither torch nor transformers;
- any subclass of ``BaseTrainer`` with a ``cli_name`` defined elsewhere (a user's module, a test)
  and imported: it registers itself when its class is created (``BaseTrainer.__init_subclass__``).

A new technique is therefore one file in ``hf_seqgan/trainers/``: the command line, the recipes,
the model cards and ``from hf_seqgan import XTrainer`` find it with no other edit.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import importlib.machinery
import importlib.util
import sys
from pathlib import Path
from typing import Optional

__all__ = ["Entry", "trainer_entries", "load", "register", "module_order", "RUNTIME", "MLE"]


@dataclasses.dataclass(frozen=True)
class Entry:
    """Where a trainer lives and what it says of itself."""

    module: str
    trainer: str
    config: str
    summary: str
    supervised: bool = False


#: transformers' own Seq2SeqTrainer: the teacher-forcing baseline every supervised recipe can run
MLE = Entry("transformers", "Seq2SeqTrainer", "Seq2SeqTrainingArguments",
            "Teacher forcing (transformers' Seq2SeqTrainer): the baseline every recipe can run.", supervised=True)
#: trainers registered at run time (classes defined outside hf_seqgan/trainers/), by cli_name
RUNTIME: dict[str, Entry] = {}


def register(cls) -> None:
    """Record a trainer class that has a ``cli_name`` (called by ``BaseTrainer.__init_subclass__``)."""
    config = getattr(cls, "config_class", None)
    RUNTIME[cls.cli_name] = Entry(cls.__module__, cls.__qualname__, getattr(config, "__qualname__", ""), getattr(cls, "summary", ""),
                                  bool(getattr(cls, "supervised", False)))


def _trainers_folder() -> Optional[Path]:
    """``hf_seqgan/trainers/`` of the imported package (an editable install imports it through a
    finder, not a ``sys.path`` entry), found without importing it."""
    package = sys.modules.get(__name__.split(".")[0])
    roots = list(getattr(package, "__path__", []) or [])
    if not roots:
        spec = importlib.util.find_spec(__name__.split(".")[0])
        roots = list(spec.submodule_search_locations or []) if spec is not None else []
    for root in roots:
        spec = importlib.machinery.PathFinder.find_spec("trainers", [root])
        if spec is not None and spec.submodule_search_locations:
            return Path(list(spec.submodule_search_locations)[0])
    return None


def _literal(node) -> object:
    try:
        return ast.literal_eval(node)
    except ValueError:
        return node.id if isinstance(node, ast.Name) else None


def _scan(path: Path, module: str) -> dict[str, Entry]:
    """The trainers a module file declares, from its class attributes (the file is not imported)."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (SyntaxError, UnicodeDecodeError):
        return {}
    found = {}
    for node in tree.body:
        if not isinstance(node, ast.ClassDef):
            continue
        attrs = {}
        for stmt in node.body:
            if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name):
                attrs[stmt.targets[0].id] = _literal(stmt.value)
            elif isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name) and stmt.value is not None:
                attrs[stmt.target.id] = _literal(stmt.value)
        if isinstance(attrs.get("cli_name"), str):
            found[attrs["cli_name"]] = Entry(module, node.name, str(attrs.get("config_class") or ""), str(attrs.get("summary") or ""),
                                             bool(attrs.get("supervised", False)))
    return found


def trainer_entries() -> dict[str, Entry]:
    """Every trainer by name: ``mle`` first, then the package's trainer modules (in file order),
    then the trainers registered at run time."""
    entries = {"mle": MLE}
    folder = _trainers_folder()
    if folder is not None:
        for path in sorted(folder.glob("*.py"), key=lambda p: module_order(p.stem)):
            if not path.stem.startswith("_"):
                entries.update(_scan(path, f"{__name__.split('.')[0]}.trainers.{path.stem}"))
    entries.update({name: entry for name, entry in RUNTIME.items() if name not in entries})
    return entries


# the order the library's own trainer modules are listed and imported in (a new module goes after them)
_ORDER = {"scheduled_sampling": 0, "professor_forcing": 1, "adversarial": 2, "cycle": 3, "grpo": 4}


def module_order(stem: str) -> tuple[int, str]:
    """Sort key of a trainer module's name: the library's own first, in their order, then by name."""
    return _ORDER.get(stem, len(_ORDER)), stem


def load(name: str) -> tuple[type, type]:
    """``(config class, trainer class)`` of the trainer ``name`` (its module imported now).
    Raises `KeyError` for an unknown name and the import's error for a module that cannot load."""
    entries = trainer_entries()
    if name not in entries:
        raise KeyError(name)
    entry = entries[name]
    module = importlib.import_module(entry.module)
    trainer = module
    for part in entry.trainer.split("."):
        trainer = getattr(trainer, part)
    config = getattr(trainer, "config_class", None) or getattr(module, entry.config)
    return config, trainer
