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


# ---------------------------------------------------------------------- model sizes (--size)
SIZES = ("tiny", "t5-small", "bart-base")
# the public configs' shapes, randomly initialised: (family, build_tiny_model arguments, vocabulary)
REAL_SHAPES = {
    "t5-small": ("t5", dict(d_model=512, layers=6, heads=8, ffn=2048, relative_attention_num_buckets=32), 32128),
    "bart-base": ("bart", dict(d_model=768, layers=6, heads=12, ffn=3072, max_positions=1024, scale_embedding=False), 50265),
}


def add_size_argument(parser) -> None:
    """``--size tiny|t5-small|bart-base`` (default tiny: the script's own tiny models, as before)."""
    parser.add_argument("--size", choices=SIZES, default="tiny",
                        help="model shape: tiny (the script's own tiny models), or the public t5-small / bart-base config "
                             "(random init, a word-level tokenizer of the full vocabulary)")


def size_families(size: str, families):
    """The model families a script runs at ``size``: its own at tiny size, the shape's family otherwise."""
    return tuple(families) if size == "tiny" else (REAL_SHAPES[size][0],)


def size_tokenizer(size: str, tiny_tokenizer=None):
    """The tokenizer at ``size``: ``tiny_tokenizer()`` (the script's own) at tiny size, else a word-level
    tokenizer of the shape's full vocabulary (``w0 w1 ...``; ids 0-4 the special tokens)."""
    if size == "tiny":
        return tiny_tokenizer()
    from hf_seqgan.oracle import oracle_tokenizer

    return oracle_tokenizer(REAL_SHAPES[size][2] - 5)


def build_model(size: str, tok, family: str = "bart", *, seed: int = 0, **tiny_shape):
    """A seeded, randomly initialised model: ``build_tiny_model(family, tok, **tiny_shape)`` at tiny
    size, the public shape of ``size`` (its own family) otherwise; special ids from ``tok``."""
    from hf_seqgan.tiny import build_tiny_model

    if size == "tiny":
        return build_tiny_model(family, tok, seed=seed, **tiny_shape)
    family, shape, vocab = REAL_SHAPES[size]
    extra = {"vocab_size": tiny_shape["vocab_size"]} if "vocab_size" in tiny_shape else {}
    return build_tiny_model(family, tok, seed=seed, **shape, **extra)


def size_label(size: str, family: str, **tiny_shape) -> str:
    """How a table names the model: ``tiny bart (d_model 64)`` or ``t5-small shape``."""
    if size == "tiny":
        return f"tiny {family} (d_model {tiny_shape.get('d_model', '?')})"
    return f"{size} shape"
