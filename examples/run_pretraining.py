#!/usr/bin/env python
"""Pretrain a small BART-style model by denoising (Lewis et al. 2020, https://arxiv.org/abs/1910.13461:
text infilling, sentence permutation) on unlabeled plain-text files, so that the recipes start from
a model that writes the language: the saved folder (model + tokenizer) loads in every recipe with
``--model_name_or_path``.

The recipe is :mod:`hf_seqgan.recipes.pretraining` (also ``hf-seqgan run pretraining``); its docstring and
``--help`` list the options. Copy that module to start a script of your own.
"""

from hf_seqgan.recipes.pretraining import main

if __name__ == "__main__":
    main()
