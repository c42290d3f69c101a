#!/usr/bin/env python
"""Summarization with any trainer of hf_seqgan, or unsupervised from unpaired article and headline
corpora; ROUGE (through `evaluate`, loaded offline) against the Lead-N baseline.

The recipe is :mod:`hf_seqgan.recipes.summarization` (also ``hf-seqgan run summarization``); its docstring and
``--help`` list the options. Copy that module to start a script of your own.
"""

from hf_seqgan.recipes.summarization import main

if __name__ == "__main__":
    main()
