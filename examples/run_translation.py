#!/usr/bin/env python
"""Unsupervised translation from two monolingual corpora: denoising auto-encoding and on-the-fly
back-translation (Lample et al. 2018, https://arxiv.org/abs/1711.00043) with `CycleTrainer`,
optionally with a discriminator on the target language; sacreBLEU (through `evaluate`, loaded
offline) against the floor of copying the source word for word.

The recipe is :mod:`hf_seqgan.recipes.translation` (also ``hf-seqgan run translation``); its docstring and
``--help`` list the options. Copy that module to start a script of your own.
"""

from hf_seqgan.recipes.translation import main

if __name__ == "__main__":
    main()
