"""The adaptive KL controller (hand-worked numbers) and the PPO loop that uses it."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from tailor.algos.kl_control import adapt_scale


@pytest.mark.parametrize(
    ("kl", "want"),
    [
        (0.1, 1.0),  # on target: unchanged
        (0.11, 1.0 + 0.1 * 4096 / 10_000),  # 10% above: e = 0.1
        (1.0, 1.0 + 0.2 * 4096 / 10_000),  # far above: e clipped to 0.2
        (0.0, 1.0 - 0.2 * 4096 / 10_000),  # far below: e clipped to -0.2
        (0.09, 1.0 - 0.1 * 4096 / 10_000),
        (math.nan, 1.0),  # a non-finite measurement leaves the scale
    ],
)
def test_adapt_scale_by_hand(kl: float, want: float) -> None:
    assert adapt_scale(1.0, kl, 0.1, 4096, 10_000) == pytest.approx(want, rel=1e-12)


def test_adapt_scale_is_multiplicative() -> None:
    # 0.5 * (1 + 0.2 * 0.4096) = 0.54096: the same relative change at any scale
    assert adapt_scale(0.5, 3.0, 0.1, 4096, 10_000) == pytest.approx(0.54096, rel=1e-12)


def test_the_loop_holds_the_kl_and_resumes_with_its_scale(tmp_path) -> None:
    """A customization with ``kl_target``: the scale moves after every PPO iteration (not in
    the critic warm-up), the rewards use it, and a run stopped and resumed ends with the
    straight run's scale and policy."""
    from tailor.algos.ppo import PPOConfig, train
    from tailor.methods import resolve
    from tailor.policyfile import load_policy
    from tailor.priors import load_prior

    base = dict(num_envs=8, num_steps=16, checkpoint_every=100, tensorboard=False, hidden=(16, 16))
    train("pointmass", resolve("soft", alpha=0.01), PPOConfig(total_steps=512, **base),
          tmp_path / "prior")  # fmt: skip
    prior = load_prior(tmp_path / "prior")
    method = resolve("kl", beta=0.05)
    cfg = PPOConfig(total_steps=8 * 16 * 8, kl_target=1e-4, kl_horizon=1000,
                    critic_warmup_fraction=0.25, **base)  # fmt: skip
    straight = train("pointmass", method, cfg, tmp_path / "straight", prior=prior)
    # 6 PPO iterations after 2 warm-up ones: the first one's rollout is still the prior's own
    # (KL exactly 0: x 0.9744), the next five measure a KL far above 1e-4 (x 1.0256 each).
    step = 0.2 * 128 / 1000
    assert straight.kl_scale == pytest.approx((1 + step) ** 5 * (1 - step), rel=1e-12)
    fixed_cfg = PPOConfig(total_steps=8 * 16 * 8, critic_warmup_fraction=0.25, **base)
    fixed = train("pointmass", method, fixed_cfg, tmp_path / "fixed", prior=prior)
    assert fixed.kl_scale == 1.0 and fixed.metrics[-1]["reward"] != straight.metrics[-1]["reward"]
    split = tmp_path / "split"
    train("pointmass", method, cfg, split, prior=prior, callback=lambda r: r["iteration"] >= 4)
    resumed = train("pointmass", method, cfg, split, prior=prior, resume=True)
    assert resumed.kl_scale == straight.kl_scale
    a, b = load_policy(tmp_path / "straight")[0], load_policy(split)[0]
    pairs = zip(a.state_dict().values(), b.state_dict().values(), strict=True)
    assert all(torch.equal(x, y) for x, y in pairs)


def test_split_kl_by_hand() -> None:
    from tailor.errors import TailorError
    from tailor.reward import RewardSpec, split_kl

    spec = RewardSpec(0.5, 0.25)
    assert split_kl(spec, "k1-reward") == (spec, 0.0)  # the paper's form: all in the reward
    # 0.5 log pi_prior - 0.25 log pi = 0.25 log pi_prior - 0.25 (log pi - log pi_prior)
    assert split_kl(spec, "exact-loss") == (RewardSpec(0.25, 0.0), 0.25)
    assert split_kl(spec, "k3-loss") == (RewardSpec(0.25, 0.0), 0.25)
    with pytest.raises(TailorError, match="kl_estimator must be one of"):
        split_kl(spec, "k2")


def test_exact_loss_adds_the_closed_form_kl_to_the_update() -> None:
    """With zero advantages and no value loss, the update's only actor gradient is the one of
    ``coef * mean_s KL(pi_theta(.|s) || pi_prior(.|s))``: equal to autograd's of that formula."""
    from tailor.algos.ppo_config import PPOConfig
    from tailor.algos.ppo_learner import PPOLearner, PriorKL
    from tailor.algos.rollout import Rollout
    from tailor.methods import resolve
    from tailor.nets import gaussian_kl

    cfg = PPOConfig(num_envs=2, num_steps=4, num_minibatches=1, num_epochs=1, hidden=(8,),
                    value_loss_coef=0.0, schedule="fixed", max_grad_norm=1e9,
                    normalize_advantages=False)  # fmt: skip
    torch.manual_seed(0)
    learner = PPOLearner.build(cfg, 3, 2, None, torch.Generator().manual_seed(0))
    buf = Rollout.empty(4, 2, 3, 2, with_prior=True)
    buf.obs.normal_()
    norm_obs = buf.obs.clone()
    with torch.no_grad():
        mean, log_std = learner.actor(norm_obs.reshape(8, 3))
        buf.mean.copy_(mean.reshape(4, 2, 2))
        buf.log_std.copy_(log_std.expand_as(mean).reshape(4, 2, 2))
        buf.actions.copy_(buf.mean)
    prior_mean, prior_log_std = torch.randn(8, 2), torch.full((8, 2), -0.5)
    prior_kl = PriorKL(0.3, prior_mean, prior_log_std)
    # the reference gradient, on a copy of the actor
    ref = copy.deepcopy(learner.actor)
    m, ls = ref(norm_obs.reshape(8, 3))
    (0.3 * gaussian_kl(m, ls, prior_mean, prior_log_std).mean()).backward()
    want = {n: p.grad.clone() for n, p in ref.named_parameters()}
    learner.optimizer.step = lambda: None  # keep the gradients, move nothing
    zeros = torch.zeros(4, 2)
    learner.update(buf, norm_obs, zeros, zeros, resolve("kl", beta=0.3), cfg, False, prior_kl)
    for name, p in learner.actor.named_parameters():
        torch.testing.assert_close(p.grad, want[name], rtol=1e-5, atol=1e-7)
    assert any(float(g.abs().max()) > 1e-3 for g in want.values())  # a real gradient


def test_the_tensor_loop_adds_the_same_exact_kl_term(monkeypatch) -> None:
    """``TensorPPOConfig(kl_estimator="exact-loss")``: the tensor loop's reward drops the
    ``alpha_hat`` KL part and its update receives the prior's distribution at the rollout's
    states with ``coef = alpha_hat`` (the numpy loop's term, through the same helper)."""
    from tailor.algos import ppo_learner, tensor_ppo
    from tailor.envs.torch_pointmass import TorchPointMass
    from tailor.methods import resolve
    from tailor.nets import Actor, EmpiricalNormalization
    from tailor.priors import PolicyPrior

    torch.manual_seed(0)
    prior = PolicyPrior(Actor(4, 2, (8,), "elu", "global", 0.3), EmpiricalNormalization(4).eval())
    seen = []
    update = ppo_learner.PPOLearner.update

    def spy(self, buf, norm_obs, adv, ret, method, cfg, warmup, prior_kl=None):
        seen.append((prior_kl, buf.obs.reshape(-1, buf.obs.shape[-1]).clone()))
        return update(self, buf, norm_obs, adv, ret, method, cfg, warmup, prior_kl)

    monkeypatch.setattr(ppo_learner.PPOLearner, "update", spy)
    cfg = tensor_ppo.TensorPPOConfig(num_iterations=2, num_steps_per_env=4, num_minibatches=2,
                                     hidden=(8,), critic_warmup_fraction=0.0,
                                     kl_estimator="exact-loss")  # fmt: skip
    method = resolve("kl", beta=0.2)
    tensor_ppo.train_tensor(TorchPointMass(4), method, cfg, prior=prior)
    assert len(seen) == 2
    for prior_kl, obs in seen:
        assert prior_kl is not None and prior_kl.coef == pytest.approx(0.2)
        mean, log_std = prior.distribution(obs)
        torch.testing.assert_close(prior_kl.mean, mean)
        torch.testing.assert_close(prior_kl.log_std, log_std.expand_as(mean))
