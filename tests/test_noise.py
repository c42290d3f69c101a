import math

import pytest
import torch

from hf_seqgan.noise import TextNoiser, add_noise, word_start_table

PAD, EOS, BLANK = 0, 2, 4


def _batch(rows=64, length=12, seed=0):
    """Right-padded rows of distinct content ids (10..) ending with EOS, of varied lengths."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(3, length, (rows,), generator=g)
    ids = torch.full((rows, length + 1), PAD)
    for i, n in enumerate(lengths.tolist()):
        ids[i, :n] = torch.arange(10, 10 + n)
        ids[i, n] = EOS
    return ids, ids.ne(PAD).long()


def _content(ids, mask):
    return [[t for t, m in zip(row, mrow) if m and t not in (PAD, EOS)] for row, mrow in zip(ids.tolist(), mask.tolist())]


def test_zero_noise_is_the_identity_and_inputs_are_untouched():
    ids, mask = _batch()
    before = ids.clone()
    out, out_mask = add_noise(ids, mask, word_shuffle=0, word_dropout=0.0, word_blank=0.0, special_token_ids=[PAD, EOS])
    width = out.shape[1]  # the output is as wide as its longest row
    assert torch.equal(out, ids[:, :width]) and torch.equal(out_mask, mask[:, :width]) and not bool(mask[:, width:].any())
    assert torch.equal(ids, before)


def test_shuffle_moves_words_at_most_k_and_keeps_specials():
    ids, mask = _batch(rows=256)
    for k in (1, 3):
        out, out_mask = add_noise(ids, mask, word_shuffle=k, word_dropout=0.0, word_blank=0.0, special_token_ids=[PAD, EOS],
                                  generator=torch.Generator().manual_seed(k))
        assert torch.equal(out_mask, mask[:, : out.shape[1]])
        moved = 0
        for row, new in zip(_content(ids, mask), _content(out, out_mask)):
            assert sorted(row) == sorted(new)  # a permutation of the content
            displacement = [abs(new.index(t) - i) for i, t in enumerate(row)]
            assert max(displacement) <= k
            moved += sum(d > 0 for d in displacement)
        assert moved > 0
        eos_at = mask.sum(1) - 1
        assert torch.equal(out.gather(1, eos_at[:, None]).squeeze(1), torch.full_like(eos_at, EOS))


def test_drop_and_blank_rates_match_their_probabilities():
    ids, mask = _batch(rows=400, length=20)
    words = sum(len(r) for r in _content(ids, mask))
    out, out_mask = add_noise(ids, mask, word_shuffle=0, word_dropout=0.2, word_blank=0.3, blank_token_id=BLANK,
                              special_token_ids=[PAD, EOS], generator=torch.Generator().manual_seed(0))
    kept = _content(out, out_mask)
    assert all(len(r) >= 1 for r in kept)  # at least one word survives
    dropped = words - sum(len(r) for r in kept)
    blanked = sum(t == BLANK for r in kept for t in r)
    # binomial counts within 5 standard deviations
    assert abs(dropped - 0.2 * words) < 5 * math.sqrt(words * 0.2 * 0.8)
    survivors = words - dropped
    assert abs(blanked - 0.3 * survivors) < 5 * math.sqrt(survivors * 0.3 * 0.7)
    # the non-blanked survivors keep their order (no shuffle)
    for row, new in zip(_content(ids, mask), kept):
        rest = [t for t in new if t != BLANK]
        assert rest == [t for t in row if t in rest]


def test_one_word_rows_are_never_emptied():
    ids = torch.tensor([[11, EOS]] * 200)
    out, out_mask = add_noise(ids, None, word_shuffle=3, word_dropout=0.9, word_blank=0.0, special_token_ids=[EOS],
                              generator=torch.Generator().manual_seed(0))
    assert torch.equal(out, ids) and bool(out_mask.all())


def test_whole_words_move_drop_and_blank_together(tokenizer):
    texts = ["the president of france announced a new trade deal on monday", "the union of kenya rejected the merger"] * 16
    enc = tokenizer(texts, return_tensors="pt", padding=True)
    noiser = TextNoiser(tokenizer, word_shuffle=3, word_dropout=0.0, word_blank=0.0)
    out, mask = noiser(enc.input_ids, enc.attention_mask, generator=torch.Generator().manual_seed(0))
    decoded = tokenizer.batch_decode(out, skip_special_tokens=True)
    assert all(sorted(d.split()) == sorted(t.split()) for d, t in zip(decoded, texts))
    assert any(d.split() != t.split() for d, t in zip(decoded, texts))
    assert bool((out.gather(1, mask.sum(1, keepdim=True) - 1) == tokenizer.eos_token_id).all())
    blanker = TextNoiser(tokenizer, word_shuffle=0, word_dropout=0.0, word_blank=0.5)
    out, mask = blanker(enc.input_ids, enc.attention_mask, generator=torch.Generator().manual_seed(1))
    for row, text in zip(tokenizer.batch_decode(out, skip_special_tokens=False), texts):
        words = row.replace("<pad>", "").replace("</s>", "").replace("<mask>", " <mask> ").split()
        assert len(words) == len(text.split())  # a blanked word becomes one mask token
        assert [w for w in words if w != "<mask>"] == [w for w, v in zip(text.split(), words) if v != "<mask>"]
    table = word_start_table(tokenizer)
    assert bool(table[tokenizer.convert_tokens_to_ids("Ġthe")]) and table.shape[0] >= len(tokenizer)


def test_noise_is_seeded_and_vectorized_over_rows():
    ids, mask = _batch(rows=32)
    kw = dict(word_shuffle=3, word_dropout=0.1, word_blank=0.2, blank_token_id=BLANK, special_token_ids=[PAD, EOS])
    a = add_noise(ids, mask, generator=torch.Generator().manual_seed(5), **kw)
    b = add_noise(ids, mask, generator=torch.Generator().manual_seed(5), **kw)
    c = add_noise(ids, mask, generator=torch.Generator().manual_seed(6), **kw)
    assert torch.equal(a[0], b[0]) and not torch.equal(a[0], c[0])
    assert a[0].shape[0] == 32 and a[0].shape[1] <= ids.shape[1]


def test_clear_errors(tokenizer):
    ids, mask = _batch(rows=2)
    with pytest.raises(ValueError, match="word_dropout is a probability"):
        add_noise(ids, mask, word_dropout=1.5)
    with pytest.raises(ValueError, match="word_shuffle"):
        add_noise(ids, mask, word_shuffle=-1)
    with pytest.raises(ValueError, match="blank_token_id"):
        add_noise(ids, mask, word_blank=0.1)
    with pytest.raises(ValueError, match="batch, length"):
        add_noise(ids[0], None)
    with pytest.raises(ValueError, match="word_blank is a probability"):
        TextNoiser(tokenizer, word_blank=1.0)
