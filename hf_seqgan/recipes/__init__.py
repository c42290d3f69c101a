"""The recipes: complete training and evaluation programs for the common tasks, and the helpers they share.

Each recipe is a module with a ``main(argv=None)``, run as ``hf-seqgan run <name> [options]`` (also from a
wheel install) or as ``python examples/run_<name>.py [options]`` from a checkout:

- :mod:`~hf_seqgan.recipes.summarization`: any trainer on article -> headline pairs, or cycle-style
  unsupervised summarization from unpaired corpora; ROUGE against Lead-N;
- :mod:`~hf_seqgan.recipes.translation`: supervised MT, or unsupervised (denoising + back-translation);
  sacreBLEU against copying the source;
- :mod:`~hf_seqgan.recipes.style_transfer`: unpaired style transfer; transfer accuracy, BLEU to the source;
- :mod:`~hf_seqgan.recipes.story_generation`: prompt -> story with the decoding tools;
- :mod:`~hf_seqgan.recipes.pretraining`: denoising pretraining of a small model and its tokenizer.

The shared helpers are public, for scripts of your own that follow the same steps:

- :mod:`~hf_seqgan.recipes.arguments`: :class:`ModelArguments`, :class:`DataArguments`,
  :func:`parse_recipe_args` (command line or one JSON file over the recipe's defaults, the chosen
  trainer's config fields as options), :data:`PRESETS`, :func:`fit_lengths`, the trainers by name;
- :mod:`~hf_seqgan.recipes.data`: :func:`load_corpus` -> :class:`Corpus`, :func:`load_test`,
  :func:`tokenize_pairs`, :func:`lead`;
- :mod:`~hf_seqgan.recipes.models`: :func:`load_model_and_tokenizer`, :func:`build_trainer`,
  :func:`build_cycle_trainer`, :func:`train_and_save`, :func:`generate_texts`, :func:`train_classifier`;
- :mod:`~hf_seqgan.recipes.reporting`: :func:`check_outputs` (the collapse check), :func:`report`.

All of them are importable from ``hf_seqgan.recipes`` itself. See ``docs/recipes.md``.
"""

from .arguments import *  # noqa: F401,F403
from .arguments import __all__ as _arguments
from .data import *  # noqa: F401,F403
from .data import __all__ as _data
from .models import *  # noqa: F401,F403
from .models import __all__ as _models
from .reporting import *  # noqa: F401,F403
from .reporting import __all__ as _reporting

__all__ = [*_arguments, *_data, *_models, *_reporting]
