"""SequenceDiscriminator: the ids path reproduces the tokenizer's encoding (specials, token types,
truncation), scores agree between paths, candidates are scored in one batch, inputs are validated."""

import pytest
import torch
from transformers import (
    BartConfig,
    BartForSequenceClassification,
    BertConfig,
    BertForSequenceClassification,
    PreTrainedTokenizerFast,
    RobertaConfig,
    RobertaForSequenceClassification,
)

from hf_seqgan.discriminators import SequenceDiscriminator, special_template

SMALL = dict(num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)


def classifier(kind, tokenizer, num_labels=2, seed=0):
    """A tiny sequence classifier over ``tokenizer``'s vocabulary, in eval mode."""
    vocab, pad = len(tokenizer), tokenizer.pad_token_id
    torch.manual_seed(seed)
    if kind == "bert":
        return BertForSequenceClassification(BertConfig(vocab_size=vocab, hidden_size=32, pad_token_id=pad, num_labels=num_labels, **SMALL)).eval()
    if kind == "roberta":
        config = RobertaConfig(vocab_size=vocab, hidden_size=32, pad_token_id=pad, num_labels=num_labels, max_position_embeddings=130, **SMALL)
        return RobertaForSequenceClassification(config).eval()
    config = BartConfig(
        vocab_size=vocab, d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2, decoder_attention_heads=2,
        encoder_ffn_dim=64, decoder_ffn_dim=64, pad_token_id=pad, eos_token_id=tokenizer.eos_token_id, bos_token_id=1,
        num_labels=num_labels, dropout=0.0,
    )
    return BartForSequenceClassification(config).eval()


@pytest.fixture(scope="module")
def wordpiece(corpus):
    """A BERT-style tokenizer: [CLS] A [SEP] B [SEP] with token types, a vocabulary unlike the kit's."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.decoder = decoders.WordPiece()
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok.train_from_iterator([p["article"] for p in corpus], trainers.WordPieceTrainer(vocab_size=300, special_tokens=specials, show_progress=False))
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]",
        model_input_names=["input_ids", "token_type_ids", "attention_mask"],
    )


@pytest.fixture
def texts(corpus):
    return [corpus[i]["article"] for i in range(5)], [corpus[i]["headline"] for i in range(5)]


def test_special_template_reads_pair_and_single_layouts(tokenizer, wordpiece):
    eos = tokenizer.eos_token_id
    assert special_template(tokenizer, pair=True) == (([], []), ([eos], [0]), ([eos], [0]))
    assert special_template(tokenizer, pair=False) == (([], []), ([], []), ([eos], [0]))
    assert special_template(wordpiece, pair=True) == (([2], [0]), ([3], [0]), ([3], [1]))


@pytest.mark.parametrize("kind", ["bert", "roberta", "bart"])
@pytest.mark.parametrize("conditional", [True, False])
def test_ids_path_equals_tokenizer_encoding_and_scores(kind, conditional, tokenizer, texts):
    sources, targets = texts
    disc = SequenceDiscriminator(classifier(kind, tokenizer), tokenizer, conditional=conditional)
    src_ids = tokenizer(sources, return_tensors="pt", padding=True).input_ids if conditional else None
    tgt_ids = tokenizer(targets, return_tensors="pt", padding=True).input_ids
    tgt_ids[:, -1] = torch.where(tgt_ids[:, -1] == tokenizer.pad_token_id, -100, tgt_ids[:, -1])  # labels-style padding is dropped too
    by_text = disc.encode_texts(targets, sources if conditional else None)
    by_ids = disc.encode_ids(tgt_ids, src_ids)
    assert torch.equal(by_ids["input_ids"], by_text["input_ids"])
    assert torch.equal(by_ids["attention_mask"], by_text["attention_mask"])
    torch.testing.assert_close(disc.score_ids(tgt_ids, src_ids), disc.score_texts(targets, sources if conditional else None))


def test_ids_path_token_types_and_source_index(wordpiece, texts):
    sources, targets = texts
    disc = SequenceDiscriminator(classifier("bert", wordpiece), wordpiece)
    src = wordpiece(sources, return_tensors="pt", padding=True).input_ids
    tgt = wordpiece(targets[:2] * 3, return_tensors="pt", padding=True).input_ids
    index = torch.tensor([4, 0, 1, 1, 3, 2])
    by_ids = disc.encode_ids(tgt, src, index)
    by_text = disc.encode_texts(targets[:2] * 3, [sources[i] for i in index.tolist()])
    for key in ("input_ids", "attention_mask", "token_type_ids"):
        assert torch.equal(by_ids[key], by_text[key]), key
    assert by_ids["token_type_ids"].max() == 1


def test_truncation_keeps_the_target_and_the_template(tokenizer, texts):
    sources, targets = texts
    disc = SequenceDiscriminator(classifier("bert", tokenizer), tokenizer, max_length=16)
    tgt = tokenizer(targets, return_tensors="pt", padding=True).input_ids
    enc = disc.encode_ids(tgt, tokenizer(sources, return_tensors="pt", padding=True).input_ids)
    assert enc["input_ids"].shape[1] == 16 and bool((enc["attention_mask"].sum(1) == 16).all())
    eos = tokenizer.eos_token_id
    assert bool((enc["input_ids"][:, -1] == eos).all()) and bool(((enc["input_ids"] == eos).sum(1) == 2).all())
    first_target = tgt[:, 0]
    middle = (enc["input_ids"] == eos).long().argmax(1)  # the separator
    assert torch.equal(enc["input_ids"][torch.arange(5), middle + 1], first_target)


def test_score_candidates_is_one_batch_equal_to_a_loop(tokenizer, texts):
    sources, _ = texts
    disc = SequenceDiscriminator(classifier("bart", tokenizer), tokenizer)
    src = tokenizer(sources[:2], return_tensors="pt", padding=True).input_ids
    prefixes = torch.tensor([[2, 50, 60, 0], [2, 70, 2, 0], [2, 80, 90, 100]])  # decoder start, tokens, EOS/padding
    candidates = torch.tensor([[11, 12], [13, 2], [14, 15]])
    index = torch.tensor([0, 1, 1])
    calls = []
    disc.model.register_forward_hook(lambda *a: calls.append(1))
    batched = disc.score_candidates(prefixes, candidates, source_ids=src, source_index=index)
    assert batched.shape == (3, 2) and len(calls) == 1
    for r in range(3):
        for j in range(2):
            seq = torch.cat([prefixes[r], candidates[r, j : j + 1]])[None]
            expected = disc.score_ids(seq, src[index[r] : index[r] + 1])
            torch.testing.assert_close(batched[r, j], expected[0], rtol=1e-5, atol=1e-5)


def test_text_path_decodes_with_the_generator_tokenizer(tokenizer, wordpiece, texts):
    sources, _ = texts
    disc = SequenceDiscriminator(classifier("bert", wordpiece), wordpiece)
    assert not disc.shares_vocabulary(tokenizer) and disc.shares_vocabulary(wordpiece)
    prefixes = tokenizer(["the bank of", "the court"], return_tensors="pt", padding=True).input_ids
    candidates = torch.tensor([tokenizer(" peru", add_special_tokens=False).input_ids[:1] * 2, [tokenizer.eos_token_id, 30]])
    scores = disc.score_candidates(prefixes, candidates, source_texts=sources[:2], generator_tokenizer=tokenizer)
    decoded = tokenizer.batch_decode(torch.cat([prefixes.repeat_interleave(2, 0), candidates.reshape(-1, 1)], 1), skip_special_tokens=True)
    expected = disc.score_texts(decoded, [sources[0]] * 2 + [sources[1]] * 2)
    torch.testing.assert_close(scores.reshape(-1), expected)


def test_log_probs_for_one_logit_and_named_labels(tokenizer):
    model = classifier("bert", tokenizer, num_labels=1)
    disc = SequenceDiscriminator(model, tokenizer, conditional=False)
    logits = torch.tensor([[0.3], [-2.0]])
    torch.testing.assert_close(disc.log_probs(logits).exp().sum(-1), torch.ones(2))
    torch.testing.assert_close(disc.log_probs(logits, 1), torch.nn.functional.logsigmoid(logits[:, 0]))
    named = SequenceDiscriminator(classifier("bert", tokenizer), tokenizer)
    named.model.config.label2id = {"fake": 0, "real": 1}
    assert named.label_index("real") == 1


def test_validation_errors(tokenizer, make_model):
    model = classifier("bert", tokenizer)
    with pytest.raises(ValueError, match="generator"):
        SequenceDiscriminator(make_model("bart", warm=False), tokenizer)
    no_pad = PreTrainedTokenizerFast(tokenizer_object=tokenizer.backend_tokenizer, eos_token="</s>")
    with pytest.raises(ValueError, match="no pad token"):
        SequenceDiscriminator(model, no_pad)
    disc = SequenceDiscriminator(model, tokenizer)
    for bad in (2, -1, "real", True):
        with pytest.raises(ValueError, match="label"):
            disc.label_index(bad)
    with pytest.raises(ValueError, match="one source per target"):
        disc.encode_texts(["a"], None)
    with pytest.raises(ValueError, match="source_ids"):
        disc.encode_ids(torch.tensor([[5, 6]]))
    with pytest.raises(ValueError, match="no room"):
        SequenceDiscriminator(model, tokenizer, max_length=2)
    with pytest.raises(ValueError, match="embeddings"):
        SequenceDiscriminator(classifier("bert", tokenizer), PreTrainedTokenizerFast(tokenizer_object=tokenizer.backend_tokenizer, pad_token="<pad>", extra_special_tokens=[f"<x{i}>" for i in range(10)]))
