"""``python -m hf_seqgan``: the ``hf-seqgan`` command (see :mod:`hf_seqgan.cli`)."""

import sys

from .cli import main

sys.exit(main())
