#!/usr/bin/env python
"""Sentiment (style) transfer from two unpaired style corpora with `CycleTrainer`, evaluated by
transfer accuracy under a classifier trained here, BLEU to the source (content kept) and fluency
under the cycle's discriminator.

The recipe is :mod:`hf_seqgan.recipes.style_transfer` (also ``hf-seqgan run style_transfer``); its docstring and
``--help`` list the options. Copy that module to start a script of your own.
"""

from hf_seqgan.recipes.style_transfer import main

if __name__ == "__main__":
    main()
