import pytest
import torch

from hf_seqgan.rewards import (
    MovingAverageBaseline,
    TextReward,
    discounted_returns,
    leave_one_out_baseline,
    monte_carlo_rewards,
    self_critical_baseline,
    step_level_rewards,
)
from hf_seqgan.rollout import RolloutEngine


def _count_score(token):
    """A deterministic judge: the share of real tokens equal to ``token``."""

    def score(sequences, mask, source_index):
        return ((sequences == token) & (mask == 1)).float().sum(-1) / mask.sum(-1).clamp_min(1)

    return score


def test_monte_carlo_rewards_last_token_is_full_sequence_score(make_model, tokenizer, source_batch):
    engine = RolloutEngine(make_model("bart"), tokenizer)
    encoded = engine.encode(**source_batch)
    rollout = engine.sample(encoded=encoded, max_new_tokens=8, num_samples=2, generator=torch.Generator().manual_seed(0))
    token = int(rollout.sequences[0, 1])
    score = _count_score(token)
    calls = []

    def counting(seqs, mask, idx):
        calls.append(seqs.shape[0])
        return score(seqs, mask, idx)

    torch.manual_seed(0)
    rewards = monte_carlo_rewards(engine, encoded, rollout, counting, num_rollouts=3)
    rows, steps = rollout.sequences.shape
    assert rewards.shape == (rows, steps)
    # one score call for the full sequences, one batched call for every prefix x rollout
    assert calls == [rows, rows * (steps - 1) * 3]
    full = score(rollout.sequences, rollout.attention_mask, rollout.source_index)
    last = rollout.attention_mask.sum(-1) - 1
    assert torch.allclose(rewards[torch.arange(rows), last], full)
    assert (rewards[rollout.attention_mask == 0] == 0).all()
    # rewards are in the judge's range and vary along the sequence
    assert (rewards >= 0).all() and (rewards <= 1).all()
    with pytest.raises(ValueError, match="num_rollouts"):
        monte_carlo_rewards(engine, encoded, rollout, score, num_rollouts=0)


def test_step_level_rewards_score_every_prefix_in_one_call(make_model, tokenizer, source_batch):
    engine = RolloutEngine(make_model("t5"), tokenizer)
    rollout = engine.sample(**source_batch, max_new_tokens=6, generator=torch.Generator().manual_seed(1))
    seen = []

    def length_score(seqs, mask, idx):
        seen.append(seqs.shape)
        return mask.sum(-1).float()

    rewards = step_level_rewards(rollout, length_score, tokenizer.pad_token_id)
    rows, steps = rollout.sequences.shape
    assert seen == [(rows * steps, steps)]
    expected = torch.arange(1, steps + 1).float().expand(rows, steps) * rollout.attention_mask
    assert torch.equal(rewards, expected)


def test_discounted_returns():
    rewards = torch.tensor([[1.0, 0.0, 2.0, 5.0], [1.0, 1.0, 0.0, 0.0]])
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])
    out = discounted_returns(rewards, mask, 0.5)
    assert torch.allclose(out, torch.tensor([[1 + 0 + 0.25 * 2, 0 + 0.5 * 2, 2.0, 0.0], [1 + 0.5, 1.0, 0.0, 0.0]]))
    assert torch.allclose(discounted_returns(rewards, mask, 1.0)[0, :3], torch.tensor([3.0, 2.0, 2.0]))
    with pytest.raises(ValueError, match="gamma"):
        discounted_returns(rewards, mask, 1.5)


def test_baselines_have_the_documented_form():
    r = torch.tensor([1.0, 2.0, 3.0, 10.0, 20.0, 30.0])  # 2 sources x 3 samples
    loo = leave_one_out_baseline(r, 3)
    assert torch.allclose(loo, torch.tensor([2.5, 2.0, 1.5, 25.0, 20.0, 15.0]))
    with pytest.raises(ValueError, match="at least 2 samples"):
        leave_one_out_baseline(r, 1)
    greedy = torch.tensor([0.5, 7.0])
    assert torch.equal(self_critical_baseline(greedy, torch.tensor([0, 0, 0, 1, 1, 1])), torch.tensor([0.5, 0.5, 0.5, 7.0, 7.0, 7.0]))
    ma = MovingAverageBaseline(decay=0.5)
    assert torch.equal(ma(torch.tensor([2.0, 4.0])), torch.tensor([3.0, 3.0]))  # first batch: its own mean
    assert torch.equal(ma(torch.tensor([7.0, 7.0])), torch.tensor([3.0, 3.0]))  # the value before this batch
    assert ma.value == pytest.approx(5.0)
    state = ma.state_dict()
    other = MovingAverageBaseline()
    other.load_state_dict(state)
    assert other.value == 5.0 and other.decay == 0.5
    with pytest.raises(ValueError, match="decay"):
        MovingAverageBaseline(1.0)


def test_text_reward_callable_and_metric(tokenizer):
    seqs = tokenizer(["japan army signs deal", "peru bank"], return_tensors="pt", padding=True).input_ids
    mask = (seqs != tokenizer.pad_token_id).long()
    idx = torch.tensor([0, 1])

    def word_count(sources, outputs, references):
        return [len(o.split()) for o in outputs]

    reward = TextReward(word_count, tokenizer)
    assert torch.equal(reward(seqs, mask, idx, source_texts=["a", "b"]), torch.tensor([4.0, 2.0]))

    class ExactMatch:  # the evaluate-module interface: compute(predictions=..., references=...)
        name = "exact_match"

        def compute(self, predictions, references):
            return {"exact_match": float(predictions[0].strip() == references[0].strip())}

    metric = TextReward(ExactMatch(), tokenizer)
    assert metric.needs_references
    out = metric(seqs, mask, idx, references=["japan army signs deal", "no"])
    assert torch.equal(out, torch.tensor([1.0, 0.0]))
    with pytest.raises(ValueError, match="needs references"):
        metric(seqs, mask, idx)
    with pytest.raises(ValueError, match="returned 1 scores for 2 outputs"):
        TextReward(lambda s, o, r: [1.0], tokenizer)(seqs, mask, idx)


def test_density_ratio_rewards():
    """log_ratio is log D/(1-D) (the logit of the real class); maligan is R * softmax(log_ratio) over the rows."""
    from types import SimpleNamespace

    from hf_seqgan.rewards import DiscriminatorReward

    judge = SimpleNamespace(label_index=lambda label: 1, shares_vocabulary=lambda tok: True)
    p_real = torch.tensor([0.9, 0.5, 0.2, 0.6])
    logp = torch.stack([(1 - p_real).log(), p_real.log()], dim=1)  # (R, 2)
    ratio = DiscriminatorReward(judge, kind="log_ratio").from_log_probs(logp)
    torch.testing.assert_close(ratio, (p_real / (1 - p_real)).log())
    torch.testing.assert_close(DiscriminatorReward(judge, kind="logit").from_log_probs(logp), ratio)
    weights = DiscriminatorReward(judge, kind="maligan").from_log_probs(logp)
    odds = p_real / (1 - p_real)
    torch.testing.assert_close(weights, 4 * odds / odds.sum())
    assert abs(float(weights.mean()) - 1.0) < 1e-6
    with pytest.raises(ValueError, match="reward kind must be one of"):
        DiscriminatorReward(judge, kind="odds")
