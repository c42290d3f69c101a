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
