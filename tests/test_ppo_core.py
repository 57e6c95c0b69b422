"""The PPO maths in rlft/rl/core.py against values computed by hand (shared/notes/ppo.md, section 6.1)."""

import math

import pytest
import torch

from rlft.rl import core

pytestmark = pytest.mark.unit  # pure functions, configs, data: no model is trained


def t(*rows):
    return torch.tensor(rows, dtype=torch.float32)


def test_gae_hand_computed():
    """rewards [0,0,1], values .5 each, V after the end 0.
    gamma 1, lam .95: delta = [0, 0, .5]; A2 = .5, A1 = 0 + .95*.5 = .475, A0 = .95*.475 = .45125.
    gamma .9, lam .5: delta = [-.05, -.05, .5]; A2 = .5, A1 = -.05 + .45*.5 = .175, A0 = -.05 + .45*.175 = .02875."""
    mask = torch.ones(1, 3, dtype=torch.bool)
    adv, ret = core.gae(t([0, 0, 1]), t([.5, .5, .5]), mask, gamma=1.0, lam=0.95)
    assert torch.allclose(adv, t([0.45125, 0.475, 0.5]))
    assert torch.allclose(ret, t([0.95125, 0.975, 1.0]))
    adv, ret = core.gae(t([0, 0, 1]), t([.5, .5, .5]), mask, gamma=0.9, lam=0.5)
    assert torch.allclose(adv, t([0.02875, 0.175, 0.5]))
    assert torch.allclose(ret, t([0.52875, 0.675, 1.0]))


def test_gae_lambda_one_is_monte_carlo():
    """lam = 1, gamma = 1: A_t = (sum of rewards from t) - V_t = 1 - .5 at every t."""
    adv, _ = core.gae(t([0, 0, 1]), t([.5, .5, .5]), torch.ones(1, 3, dtype=torch.bool), 1.0, 1.0)
    assert torch.allclose(adv, t([0.5, 0.5, 0.5]))


def test_gae_padding_is_ignored():
    """Garbage rewards and values after the last real token change nothing before it."""
    mask = torch.tensor([[True, True, True, False, False]])
    adv, ret = core.gae(t([0, 0, 1, 7, -3]), t([.5, .5, .5, 9, 9]), mask, 1.0, 0.95)
    assert torch.allclose(adv[0, :3], torch.tensor([0.45125, 0.475, 0.5]))
    assert (adv[0, 3:] == 0).all() and (ret[0, 3:] == 0).all()


def test_gae_batched_equals_a_plain_loop():
    torch.manual_seed(0)
    B, T, gamma, lam = 7, 13, 0.97, 0.9
    rewards, values = torch.randn(B, T), torch.randn(B, T)
    last = torch.randint(0, T, (B,))
    mask = core.response_mask(last, T)
    adv, _ = core.gae(rewards, values, mask, gamma, lam)
    for b in range(B):
        n = int(last[b]) + 1
        running = 0.0
        for i in reversed(range(n)):
            next_v = float(values[b, i + 1]) if i + 1 < n else 0.0
            running = float(rewards[b, i]) + gamma * next_v - float(values[b, i]) + gamma * lam * running
            assert abs(float(adv[b, i]) - running) < 1e-5


def test_kl_estimators_hand_computed():
    """p = .5, q = .25: k1 = ln 2 = .693147; k2 = ln(2)^2 / 2 = .240227; k3 = q/p - 1 - ln(q/p) = .193147."""
    lp, lq = torch.tensor([math.log(0.5)]), torch.tensor([math.log(0.25)])
    assert core.kl_per_token(lp, lq, "k1").item() == pytest.approx(0.693147, abs=1e-6)
    assert core.kl_per_token(lp, lq, "k2").item() == pytest.approx(0.240227, abs=1e-6)
    assert core.kl_per_token(lp, lq, "k3").item() == pytest.approx(0.193147, abs=1e-6)
    for k in ("k1", "k2", "k3"):
        assert core.kl_per_token(lp, lp, k).item() == 0
    assert (core.kl_per_token(torch.randn(1000), torch.randn(1000), "k3") >= 0).all()


def test_k1_and_k3_are_unbiased_estimates_of_the_exact_kl():
    """Averaged over tokens sampled from p, k1 and k3 approach KL(p || q) summed over the vocabulary."""
    g = torch.Generator().manual_seed(0)
    logits_p, logits_q = torch.randn(50, generator=g), torch.randn(50, generator=g)
    exact = core.exact_kl_per_row(logits_p.view(1, 1, -1), logits_q.view(1, 1, -1), torch.ones(1, 1))
    tokens = torch.multinomial(logits_p.softmax(-1), 200_000, replacement=True, generator=g)
    lp, lq = logits_p.log_softmax(-1)[tokens], logits_q.log_softmax(-1)[tokens]
    for k in ("k1", "k3"):
        assert core.kl_per_token(lp, lq, k).mean().item() == pytest.approx(exact.item(), abs=2e-2)


def test_whitening_hand_computed():
    """[1,2,3,4]: mean 2.5, unbiased var 5/3, so (x - 2.5) / 1.290994 = [-1.161895, -.387298, .387298, 1.161895].
    Masked [2,4,6,(1e6)]: mean 4, unbiased var 4 → [-1, 0, 1, 0]; without the mean shift [3, 4, 5, 0]."""
    out = core.masked_whiten(t([1, 2, 3, 4]), torch.ones(1, 4, dtype=torch.bool))
    assert torch.allclose(out, t([-1.161895, -0.387298, 0.387298, 1.161895]), atol=1e-5)
    mask = torch.tensor([[True, True, True, False]])
    assert torch.allclose(core.masked_whiten(t([2, 4, 6, 1e6]), mask), t([-1, 0, 1, 0]), atol=1e-5)
    assert torch.allclose(core.masked_whiten(t([2, 4, 6, 1e6]), mask, shift_mean=False), t([3, 4, 5, 0]), atol=1e-5)


def test_truncate_after_stop():
    """Stop id 3, pad 0: [5,3,7,3,9] → [5,3,0,0,0], last 1; no stop → untouched, last T-1; stop first → last 0."""
    out, last, has_stop = core.truncate_after_stop(torch.tensor([[5, 3, 7, 3, 9], [5, 6, 7, 8, 9], [3, 5, 5, 5, 5]]),
                                                   stop_id=3, pad_id=0)
    assert out.tolist() == [[5, 3, 0, 0, 0], [5, 6, 7, 8, 9], [3, 0, 0, 0, 0]]
    assert last.tolist() == [1, 4, 0]
    assert has_stop.tolist() == [True, False, True]
    assert core.response_mask(last, 5).tolist()[0] == [True, True, False, False, False]
    with pytest.raises(ValueError, match="pad token id equals the stop"):
        core.truncate_after_stop(torch.tensor([[1, 2]]), stop_id=2, pad_id=2)


def test_reward_assembly_and_advantages_hand_computed():
    """Response [t0, t1, EOS, PAD, PAD], kl [.1,.2,.3], beta .05, score 2 on the EOS token:
    r = [-.005, -.010, -.015 + 2, 0, 0] = [-.005, -.01, 1.985, 0, 0]. Values [.1,.2,.3] (pads ignored),
    gamma 1, lam .95: A2 = 1.985 - .3 = 1.685; A1 = -.01 + .3 - .2 + .95 * 1.685 = 1.69075;
    A0 = -.005 + .2 - .1 + .95 * 1.69075 = 1.701212."""
    mask = torch.tensor([[True, True, True, False, False]])
    kl = t([.1, .2, .3, 0, 0])
    rewards = core.assemble_rewards(kl, torch.tensor([2.0]), torch.tensor([2]), mask, kl_coef=0.05)
    assert torch.allclose(rewards, t([-0.005, -0.010, 1.985, 0, 0]))
    adv, ret = core.gae(rewards, t([.1, .2, .3, .4, .5]), mask, 1.0, 0.95)
    assert torch.allclose(adv, t([1.701212, 1.69075, 1.685, 0, 0]), atol=1e-6)
    assert torch.allclose(ret, t([1.801212, 1.89075, 1.985, 0, 0]), atol=1e-6)


def test_policy_loss_hand_computed():
    """A = [1, -1], ratio [1.5, .5], clip .2: max(-1.5, -1.2) = -1.2 and max(.5, .8) = .8 → mean -.2, both clipped.
    ratio [1.1, .9] is inside the clip range: (-1.1 + .9) / 2 = -.1, nothing clipped."""
    mask = torch.ones(1, 2, dtype=torch.bool)
    adv = t([1, -1])
    loss, stats = core.policy_loss(torch.log(t([1.5, 0.5])), torch.zeros(1, 2), adv, mask, 0.2)
    assert loss.item() == pytest.approx(-0.2) and stats["clipfrac"].item() == 1.0
    loss, stats = core.policy_loss(torch.log(t([1.1, 0.9])), torch.zeros(1, 2), adv, mask, 0.2)
    assert loss.item() == pytest.approx(-0.1) and stats["clipfrac"].item() == 0.0
    _, stats = core.policy_loss(torch.zeros(1, 2), torch.zeros(1, 2), adv, mask, 0.2)
    assert stats["ratio_mean"].item() == 1.0 and stats["approx_kl"].item() == 0.0


def test_value_loss_hand_computed():
    """(V 1.0, old .5, R 0): clipped V .7; max(1, .49) / 2 = .5, not clipped.
    (V .9, old .5, R 1): clipped V .7; max(.01, .09) / 2 = .045, clipped."""
    mask = torch.ones(1, 1, dtype=torch.bool)
    loss, stats = core.value_loss(t([1.0]), t([0.5]), t([0.0]), mask, 0.2)
    assert loss.item() == pytest.approx(0.5) and stats["clipfrac"].item() == 0.0
    loss, stats = core.value_loss(t([0.9]), t([0.5]), t([1.0]), mask, 0.2)
    assert loss.item() == pytest.approx(0.045) and stats["clipfrac"].item() == 1.0


def test_micro_batches_add_up_to_the_minibatch_loss():
    """Dividing each micro-batch's token sum by the minibatch's token count: 2 x 2 rows = 1 x 4 rows."""
    torch.manual_seed(1)
    lp, old, adv = torch.randn(4, 6), torch.randn(4, 6), torch.randn(4, 6)
    mask = core.response_mask(torch.tensor([5, 1, 3, 0]), 6)
    full, _ = core.policy_loss(lp, old, adv, mask, 0.2)
    n = mask.sum()
    halves = sum(core.policy_loss(lp[i:i + 2], old[i:i + 2], adv[i:i + 2], mask[i:i + 2], 0.2, n)[0] for i in (0, 2))
    assert torch.allclose(full, halves)


def test_explained_variance_and_kl_controller():
    mask = torch.ones(1, 4, dtype=torch.bool)
    returns = t([1, 2, 3, 4])
    assert core.explained_variance(returns, returns, mask).item() == pytest.approx(1.0)
    assert core.explained_variance(torch.full((1, 4), 2.5), returns, mask).item() == pytest.approx(0.0)
    # KL twice the target: error clipped to +.2, coef * (1 + .2 * 64 / 10000)
    assert core.adaptive_kl_coef(0.1, 12.0, 6.0, 10000, 64) == pytest.approx(0.1 * (1 + 0.2 * 64 / 10000))
    assert core.adaptive_kl_coef(0.1, 3.0, 6.0, 10000, 64) < 0.1
