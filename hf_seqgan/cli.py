"""The ``hf-seqgan`` command (also ``python -m hf_seqgan``): list the trainers, metrics and recipes, show a
trainer's configuration, run a recipe, plot a run's curves.

Usage:

    hf-seqgan list                                   # trainers, recipes and metrics, one line each
    hf-seqgan config adversarial                     # the method's own config fields: type, default, help
    hf-seqgan config adversarial --help              # every field, the Trainer's included (HfArgumentParser)
    hf-seqgan run summarization --trainer scheduled_sampling --max_steps 200   # hf_seqgan.recipes.summarization
    hf-seqgan run summarization --help               # the recipe's own options
    hf-seqgan plot outputs/my-run                    # outputs/my-run/training_curves.png

The recipes are the modules of :mod:`hf_seqgan.recipes` (``hf_seqgan/recipes/<name>.py``, each with a
``main``), so ``run`` works from a wheel install too; ``examples/run_<name>.py`` call the same ``main``.
The trainers are those of :mod:`hf_seqgan.registry`, read from the trainer modules without importing
them: a module is imported only when a command needs it, so ``list`` and ``--help`` stay light.
"""

import argparse
import ast
import dataclasses
import importlib
import re
import sys
from pathlib import Path
from typing import Optional, Sequence

PROG = "hf-seqgan"

class CLIError(Exception):
    """A user error: printed as ``hf-seqgan: error: ...`` with exit status 2, no traceback."""


# ---------------------------------------------------------------------- trainers
def trainers() -> dict:
    """Every trainer by name (:func:`hf_seqgan.registry.trainer_entries`: read from the trainer
    modules without importing them, plus those registered at run time)."""
    from .registry import trainer_entries

    return trainer_entries()


def config_class(name: str) -> type:
    """The configuration class of the trainer ``name`` (its module imported now)."""
    from .registry import load

    entries = trainers()
    if name not in entries:
        raise CLIError(f"unknown trainer {name!r}; the trainers are: {', '.join(entries)} (see `{PROG} list`).")
    entry = entries[name]
    try:
        return load(name)[0]
    except Exception as err:  # a missing or broken optional trainer is a message, not a traceback
        raise CLIError(
            f"the trainer {name!r} ({entry.module}.{entry.config}) cannot be imported in this installation "
            f"({type(err).__name__}: {err}). Update hf_seqgan, or pick another trainer from `{PROG} list`."
        ) from err


def _base_arguments(cls: type) -> type:
    """The transformers arguments class ``cls`` builds on."""
    from transformers import Seq2SeqTrainingArguments, TrainingArguments

    return TrainingArguments if cls is Seq2SeqTrainingArguments else Seq2SeqTrainingArguments


def own_fields(cls: type) -> list:
    """The dataclass fields ``cls`` adds to transformers' training arguments it builds on."""
    inherited = {f.name for f in dataclasses.fields(_base_arguments(cls))}
    return [f for f in dataclasses.fields(cls) if f.init and f.name not in inherited and not f.name.startswith("_")]


def _default(f: dataclasses.Field) -> str:
    if f.default is not dataclasses.MISSING:
        return repr(f.default)
    if f.default_factory is not dataclasses.MISSING:
        return repr(f.default_factory())
    return "(required)"


def describe_config(name: str) -> str:
    """The method's own config fields of trainer ``name``: ``--field (type, default): help``."""
    from .schedules import SCHEDULE_FORMS

    cls = config_class(name)
    fields = own_fields(cls)
    base = _base_arguments(cls).__name__
    lines = [f"{cls.__module__}.{cls.__name__}: the {len(fields)} fields it adds to {base}.", ""]
    schedule_note = " A schedule string: " + SCHEDULE_FORMS
    any_schedule = False
    for f in fields:
        kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
        help_text = " ".join(str(f.metadata.get("help", "")).split())
        if schedule_note in help_text:  # said once below instead of after every schedule field
            help_text, kind, any_schedule = help_text.replace(schedule_note, "").rstrip(".") + ".", "schedule", True
        lines.append(f"  --{f.name} ({kind}, default {_default(f)})")
        lines.append(f"      {help_text or '(no help)'}")
    if any_schedule:
        lines += ["", f"A schedule is a string: {SCHEDULE_FORMS}"]
    lines += ["", f"All fields, the Trainer's included: `{PROG} config {name} --help`."]
    return "\n".join(lines)


def config_help(name: str) -> str:
    """``HfArgumentParser`` help of the config of trainer ``name``: every field with its help."""
    from transformers import HfArgumentParser

    parser = HfArgumentParser(config_class(name))
    parser.prog = f"{PROG} config {name}"
    return parser.format_help()


# ---------------------------------------------------------------------- recipes
RECIPES_DIR = Path(__file__).resolve().parent / "recipes"


def _summary(path: Path) -> str:
    """First line of a module's docstring, read without running it."""
    try:
        doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
    except (SyntaxError, UnicodeDecodeError):
        return "(cannot be parsed)"
    text = " ".join(doc.split("\n\n")[0].split())
    first = re.split(r"(?<! al\.)(?<=[.;])\s", text, maxsplit=1)[0].rstrip(".;")
    return (first if len(first) <= 110 else first[:108].rsplit(" ", 1)[0] + " …") or "(no docstring)"


def _defines_main(path: Path) -> bool:
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (SyntaxError, UnicodeDecodeError):
        return False
    return any(isinstance(node, ast.FunctionDef) and node.name == "main" for node in tree.body)


def recipes() -> dict:
    """``{name: path}`` of the recipes: the modules of :mod:`hf_seqgan.recipes` with a top-level ``main``
    (read without importing them)."""
    return {p.stem: p for p in sorted(RECIPES_DIR.glob("*.py")) if not p.stem.startswith("_") and _defines_main(p)}


def run_recipe(name: str, args: Sequence[str]) -> int:
    """Run the recipe ``hf_seqgan.recipes.<name>`` in this process with ``args`` as its command line; its exit status."""
    name = name.replace("-", "_").removesuffix(".py").removeprefix("run_")
    found = recipes()
    if name not in found:
        raise CLIError(f"unknown recipe {name!r}; the recipes are: {', '.join(found) or '(none)'} (see `{PROG} list`).")
    module = importlib.import_module(f"hf_seqgan.recipes.{name}")
    saved_argv = sys.argv[:]
    sys.argv = [f"{PROG} run {name}", *args]  # what --help prints as the program
    try:
        module.main(list(args))
    except SystemExit as exit_:
        code = exit_.code
        if code is None or isinstance(code, int):
            return code or 0
        print(code, file=sys.stderr)
        return 1
    finally:
        sys.argv = saved_argv
    return 0


# ---------------------------------------------------------------------- commands
def _cmd_list(ns) -> int:
    print("Trainers (`hf-seqgan config <name>` for the options; the recipes take `--trainer <name>`):")
    entries = trainers()
    width = max(map(len, entries))
    for name, entry in entries.items():
        print(f"  {name:<{width}}  {entry.summary}")
    print("\nRecipes (`hf-seqgan run <name> [options]`, `--help` after the name for its options):")
    found = recipes()
    width = max(map(len, found), default=0)
    for name, path in found.items():
        print(f"  {name:<{width}}  {_summary(path)}")
    from .metrics import available_metrics

    print("\nMetrics (`hf_seqgan.metrics.load_metric(<name>)`, offline):")
    print("  " + ", ".join(available_metrics()))
    return 0


def _cmd_config(ns) -> int:
    print(config_help(ns.trainer) if ns.help else describe_config(ns.trainer))
    return 0


def _cmd_plot(ns) -> int:
    from .plotting import plot_training

    try:
        path, panels = plot_training(ns.output_dir, path=ns.path, keys=ns.keys, return_panels=True)
    except (FileNotFoundError, ValueError) as err:
        raise CLIError(str(err)) from err
    print(f"{path}: {len(panels)} panels ({', '.join(panels)})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="Train and decode Hugging Face seq2seq models beyond teacher forcing (hf_seqgan).",
        epilog=f"Examples: `{PROG} list`, `{PROG} config adversarial`, `{PROG} run summarization --help`.",
    )
    sub = parser.add_subparsers(dest="command", metavar="{list,config,run,plot}")
    sub.add_parser("list", help="the trainers, recipes and metrics").set_defaults(func=_cmd_list)
    config = sub.add_parser(
        "config", add_help=False, help="a trainer's configuration fields (--help: all of them, the Trainer's included)",
        description="The fields of a trainer's configuration class.",
    )
    config.add_argument("trainer", help="a trainer's name (see `list`)")
    config.add_argument("-h", "--help", action="store_true", help="every field with its help, as HfArgumentParser prints it")
    config.set_defaults(func=_cmd_config)
    run = sub.add_parser("run", help="run a recipe (hf_seqgan.recipes.<recipe>) with the options that follow")
    run.add_argument("recipe", help="summarization, translation, style_transfer, story_generation, ... (see `list`)")
    run.add_argument("args", nargs=argparse.REMAINDER, help="the recipe's options (`--help` for them)")
    plot = sub.add_parser("plot", help="draw a run's logged curves (trainer_state.json) into a PNG")
    plot.add_argument("output_dir", help="the run's output folder (or its trainer_state.json)")
    plot.add_argument("--path", default=None, help="the PNG to write (default: <output_dir>/training_curves.png)")
    plot.add_argument("--keys", nargs="+", default=None, help="regular expressions selecting the logged keys to draw")
    plot.set_defaults(func=_cmd_plot)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of ``hf-seqgan`` and ``python -m hf_seqgan``; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        # `run <recipe> ...`: everything after the recipe belongs to it, --help included
        if len(argv) >= 2 and argv[0] == "run" and not argv[1].startswith("-"):
            return run_recipe(argv[1], argv[2:])
        parser = build_parser()
        ns = parser.parse_args(argv)
        if ns.command is None:
            parser.print_help()
            return 0
        return ns.func(ns)
    except CLIError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `hf-seqgan config x --help | head`
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
