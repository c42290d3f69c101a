"""What every benchmark script does before it imports transformers: work offline, and import the
package from this checkout when it is not pip-installed. ``import _bench_env`` first (the scripts'
folder is on ``sys.path`` when they run as scripts)."""

import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
for folder in (ROOT, HERE):  # the package, and the sibling scripts whose helpers a benchmark shares
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))


def with_overrides(settings, cli, *fields):
    """``settings`` (a dataclass) with each of ``fields`` that the command line ``cli`` gave (not
    ``None``; a list becomes a tuple): how every script's ``main`` applies its options."""
    import dataclasses

    given = {field: getattr(cli, field) for field in fields if getattr(cli, field, None) is not None}
    return dataclasses.replace(settings, **{k: tuple(v) if isinstance(v, list) else v for k, v in given.items()})
