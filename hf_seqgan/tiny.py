"""Tiny models and tokenizers built locally, with no hub: for tests, quick runs and the examples'
embedded default.

- :func:`train_tokenizer` trains a byte-level BPE tokenizer on an iterable of texts in well under a
  second and wraps it as a `PreTrainedTokenizerFast` with pad/bos/eos/unk/mask tokens (and
  optional language codes for mBART-style models). Sources are encoded as ``text </s>``.
- :func:`tiny_config` / :func:`build_tiny_model` give a small encoder–decoder of one of the
  families in :data:`TINY_FAMILIES`, with its special ids taken from that tokenizer. BART-style
  families are built with ``scale_embedding=True`` so that code handling input embeddings must
  get the embedding scale right.

Examples:

```python
>>> from hf_seqgan.tiny import train_tokenizer, build_tiny_model
>>> tok = train_tokenizer(["the cat sat on the mat", "a dog ran"] * 20, vocab_size=300)
>>> model = build_tiny_model("t5", tok, seed=0)
>>> type(model).__name__, model.config.d_model
('T5ForConditionalGeneration', 32)

```
"""

from __future__ import annotations

from typing import Iterable

import torch

__all__ = ["TINY_FAMILIES", "LANGUAGE_CODES", "train_tokenizer", "tiny_config", "build_tiny_model"]

TINY_FAMILIES = ("bart", "t5", "marian", "mbart", "pegasus")
LANGUAGE_CODES = ("en_XX", "de_DE")
SPECIAL_TOKENS = ("<pad>", "<s>", "</s>", "<unk>", "<mask>")


def train_tokenizer(texts: Iterable[str], vocab_size: int = 500, *, language_codes: Iterable[str] = LANGUAGE_CODES, model_max_length: int = 512):
    """Train a byte-level BPE tokenizer on ``texts``; ids 0-4 are ``<pad> <s> </s> <unk> <mask>``,
    followed by the language codes. Encoding appends ``</s>``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    codes = list(language_codes)
    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS) + codes,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    eos_id = tokenizer.token_to_id("</s>")
    tokenizer.post_processor = processors.TemplateProcessing(single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", eos_id)])
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        pad_token="<pad>",
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        mask_token="<mask>",
        additional_special_tokens=codes,
        model_max_length=model_max_length,
        clean_up_tokenization_spaces=False,
    )


def tiny_config(family: str, tokenizer, *, d_model: int = 32, layers: int = 2, heads: int = 4, ffn: int = 64, max_positions: int = 256, **overrides):
    """A small config of ``family`` whose vocabulary and special ids match ``tokenizer``."""
    from transformers import BartConfig, MarianConfig, MBartConfig, PegasusConfig, T5Config

    if family not in TINY_FAMILIES:
        raise ValueError(f"Unknown tiny family {family!r}; choose one of {TINY_FAMILIES}.")
    if tokenizer.pad_token_id is None or tokenizer.eos_token_id is None:
        raise ValueError("The tokenizer needs a pad and an eos token to build a model config.")
    vocab = len(tokenizer)
    pad, eos = tokenizer.pad_token_id, tokenizer.eos_token_id
    bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else eos
    if family == "t5":
        kwargs = dict(
            vocab_size=vocab, d_model=d_model, d_kv=d_model // heads, d_ff=ffn, num_layers=layers,
            num_decoder_layers=layers, num_heads=heads, relative_attention_num_buckets=8,
            pad_token_id=pad, eos_token_id=eos, decoder_start_token_id=pad, dropout_rate=0.0,
        )
        kwargs.update(overrides)
        return T5Config(**kwargs)
    common = dict(
        vocab_size=vocab, d_model=d_model, encoder_layers=layers, decoder_layers=layers,
        encoder_attention_heads=heads, decoder_attention_heads=heads, encoder_ffn_dim=ffn,
        decoder_ffn_dim=ffn, max_position_embeddings=max_positions, pad_token_id=pad,
        bos_token_id=bos, eos_token_id=eos, scale_embedding=True, dropout=0.0,
        attention_dropout=0.0, activation_dropout=0.0, forced_eos_token_id=None,
    )
    if family == "bart":
        cls, extra = BartConfig, dict(decoder_start_token_id=eos)
    elif family == "mbart":
        cls, extra = MBartConfig, dict(decoder_start_token_id=eos)
    elif family == "marian":
        cls, extra = MarianConfig, dict(decoder_start_token_id=pad, decoder_vocab_size=vocab, share_encoder_decoder_embeddings=True)
    else:
        cls, extra = PegasusConfig, dict(decoder_start_token_id=pad)
    common.update(extra)
    common.update(overrides)
    return cls(**common)


def build_tiny_model(family: str, tokenizer, *, seed: int = 0, **config_kwargs):
    """A randomly initialised (seeded) tiny `*ForConditionalGeneration` of ``family``, in eval mode."""
    from transformers import AutoModelForSeq2SeqLM

    config = tiny_config(family, tokenizer, **config_kwargs)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = AutoModelForSeq2SeqLM.from_config(config)
    gen = model.generation_config
    gen.pad_token_id, gen.eos_token_id = config.pad_token_id, config.eos_token_id
    gen.decoder_start_token_id = config.decoder_start_token_id
    if family == "mbart" and LANGUAGE_CODES[1] in tokenizer.get_vocab():
        # mBART-style: decoding starts with </s>, then the target language code is forced
        gen.forced_bos_token_id = tokenizer.convert_tokens_to_ids(LANGUAGE_CODES[1])
    return model.eval()
