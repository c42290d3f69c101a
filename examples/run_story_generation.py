#!/usr/bin/env python
"""Story generation (title or first line -> story) with a seq2seq model, decoded with a temperature
schedule -- a diverse first sentence, then near-argmax text -- and optional best-of-N reranking by a
discriminator; distinct-n and self-BLEU (through `evaluate`, loaded offline) next to plain decoding.

The recipe is :mod:`hf_seqgan.recipes.story_generation` (also ``hf-seqgan run story_generation``); its docstring and
``--help`` list the options. Copy that module to start a script of your own.
"""

from hf_seqgan.recipes.story_generation import main

if __name__ == "__main__":
    main()
