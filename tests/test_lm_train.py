"""Token-level PPO and the offline DPO family on the tiny pretrained model."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

pytest.importorskip("transformers")

from tailor.algos.dpo import LMDPOConfig, customize_offline, offline_coefficients
from tailor.algos.lm_ppo import LMPPOConfig, customize_ppo, last_token_rewards, token_advantages
from tailor.errors import TailorError
from tailor.lm import PreferencePair, register_reward, unregister_reward
from tailor.lm.evaluate import EvalSampling, evaluate_model
from tailor.lm.model import load_model, load_tokenizer
from tailor.lm.sampling import encode_completions, encode_prompts, sequence_logprobs
from test_lm_model import tiny_model_dir  # the session's tiny model, pretrained once

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path = tiny_model_dir(tmp_path_factory)
    return load_model(path), load_tokenizer(path)


def _success(model, prior, tok, reward: str) -> float:
    return evaluate_model(model, prior, tok, reward, EvalSampling(samples=256, seed=123))["success"]


# --- pieces of the PPO update, known answers ----------------------------------------------------


def test_last_token_rewards_places_reward_at_the_end():
    mask = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0], [1, 1, 1, 1]])
    out = last_token_rewards(torch.tensor([2.0, -1.0, 0.5]), mask)
    assert out.tolist() == [[0, 0, 2.0, 0], [-1.0, 0, 0, 0], [0, 0, 0, 0.5]]
    with pytest.raises(TailorError):
        last_token_rewards(torch.tensor([1.0]), torch.zeros(1, 3, dtype=torch.long))


def test_token_advantages_known_answers():
    mask = torch.tensor([[1, 1, 1, 0]])
    rewards = torch.tensor([[0.5, 0.0, 2.0, 0.0]])
    values = torch.tensor([[1.0, 2.0, 3.0, 9.0]])  # the 9 sits on padding and must be ignored
    # lambda = 1, gamma = 1: A_t = sum_{t'>=t} r_t' - V(s_t) = [2.5-1, 2-2, 2-3]; returns = G_t.
    adv, ret = token_advantages(rewards, values, mask, gamma=1.0, lam=1.0)
    torch.testing.assert_close(adv, torch.tensor([[1.5, 0.0, -1.0, 0.0]]))
    torch.testing.assert_close(ret, torch.tensor([[2.5, 2.0, 2.0, 0.0]]))
    # lambda = 0: one-step TD errors r_t + V(s_{t+1}) - V(s_t), no bootstrap after the end.
    adv0, _ = token_advantages(rewards, values, mask, gamma=1.0, lam=0.0)
    torch.testing.assert_close(adv0, torch.tensor([[1.5, 1.0, -1.0, 0.0]]))


# --- token-level PPO ----------------------------------------------------------------------------

FAST_PPO = LMPPOConfig(steps=8, batch_size=32, minibatch_size=16, max_new_tokens=10, lr=1e-3)


def test_ppo_increases_the_addon_reward_and_follows_its_sign(tiny):
    prior, tok = tiny
    before = _success(prior, prior, tok, "ends-with-vowel")
    up, hist = customize_ppo(prior, tok, "ends-with-vowel", "kl", FAST_PPO, beta=0.02)
    assert _success(up, prior, tok, "ends-with-vowel") > before + 0.15
    assert hist[0]["kl_to_prior"] == pytest.approx(0.0, abs=1e-4)  # starts at the prior
    register_reward("test-not-vowel", lambda p, c: 1.0 - float(c[-1:] in set("aeiou")), True)
    try:
        down, _ = customize_ppo(prior, tok, "test-not-vowel", "kl", FAST_PPO, beta=0.02)
    finally:
        unregister_reward("test-not-vowel")
    assert _success(down, prior, tok, "ends-with-vowel") < before - 0.15
    # The prior itself was frozen, not trained.
    assert all(not p.requires_grad for p in prior.parameters())


def test_kl_equals_residual_with_equal_coefficients(tiny):
    prior, tok = tiny
    cfg = LMPPOConfig(steps=2, batch_size=16, minibatch_size=8, max_new_tokens=8, critic_warmup=0)
    kl, h_kl = customize_ppo(prior, tok, "ends-with-vowel", "kl", cfg, beta=0.3)
    res, h_res = customize_ppo(
        prior, tok, "ends-with-vowel", "residual", cfg, omega_prime=0.3, alpha_hat=0.3
    )
    assert h_kl == h_res
    for (n, a), (_, b) in zip(kl.state_dict().items(), res.state_dict().items(), strict=True):
        assert torch.equal(a, b), n
    # ... and a different omega' gives a different run (the prior term is really used).
    other, _ = customize_ppo(
        prior, tok, "ends-with-vowel", "residual", cfg, omega_prime=1.0, alpha_hat=0.3
    )
    assert not torch.equal(other.lm_head.weight, kl.lm_head.weight)


@pytest.mark.parametrize("advantage", ["grpo", "rloo"])
def test_group_estimators_increase_the_addon_reward(tiny, advantage):
    prior, tok = tiny
    before = _success(prior, prior, tok, "ends-with-vowel")
    cfg = LMPPOConfig(
        steps=8, batch_size=32, minibatch_size=16, max_new_tokens=10, lr=1e-3,
        advantage=advantage, group_size=4,
    )  # fmt: skip
    up, hist = customize_ppo(prior, tok, "ends-with-vowel", "kl", cfg, beta=0.02)
    assert _success(up, prior, tok, "ends-with-vowel") > before + 0.15
    assert all(math.isnan(h["value_loss"]) for h in hist)  # no value head is trained
    assert not math.isnan(hist[0]["policy_loss"])  # no critic warm-up either


@pytest.mark.parametrize("method", ["residual", "kl", "greedy"])
@pytest.mark.parametrize("kl_estimator", ["k1-reward", "k3-loss"])
def test_every_method_runs_with_each_estimator(tiny, method, kl_estimator):
    prior, tok = tiny
    for advantage in ("gae", "grpo", "rloo"):
        cfg = LMPPOConfig(
            steps=2, batch_size=8, minibatch_size=4, max_new_tokens=6, critic_warmup=0,
            advantage=advantage, group_size=2, kl_estimator=kl_estimator,
        )  # fmt: skip
        _, hist = customize_ppo(
            prior, tok, "ends-with-vowel", method, cfg, ["", "ja", "mi"], **COEF[method]
        )
        assert len(hist) == 2 and math.isfinite(hist[-1]["policy_loss"]), advantage


COEF = {
    "residual": {"omega_prime": 0.3, "alpha_hat": 0.1},
    "kl": {"beta": 0.1},
    "greedy": {"alpha_hat": 0.1},
}


def test_k3_loss_moves_the_kl_out_of_the_reward(tiny):
    """``k3-loss`` for ``kl``: the reward is ``r_R`` alone (TRL's GRPO with beta); for residual
    it keeps ``(omega' - alpha_hat) log pi_prior``, which at the first iteration (policy = prior)
    is all that k1's ``omega' log pi_prior - alpha_hat log pi`` is."""
    prior, tok = tiny
    cfg = LMPPOConfig(
        steps=1, batch_size=8, minibatch_size=8, max_new_tokens=6, advantage="rloo",
        group_size=2, kl_estimator="k3-loss",
    )  # fmt: skip
    _, hist = customize_ppo(prior, tok, "ends-with-vowel", "kl", cfg, beta=0.5)
    assert hist[0]["return"] == pytest.approx(hist[0]["addon"])
    coef = {"omega_prime": 0.5, "alpha_hat": 0.1}
    _, k3 = customize_ppo(prior, tok, "ends-with-vowel", "residual", cfg, **coef)
    k1_cfg = replace(cfg, kl_estimator="k1-reward")
    _, k1 = customize_ppo(prior, tok, "ends-with-vowel", "residual", k1_cfg, **coef)
    assert k1[0]["addon"] == k3[0]["addon"]  # the same samples
    assert k3[0]["return"] == pytest.approx(k1[0]["return"], rel=1e-5)
    assert k3[0]["return"] < k3[0]["addon"] - 0.1  # 0.4 log pi_prior < 0 is in the reward


def test_long_prompt_lists_are_all_used(tiny):
    prior, tok = tiny
    seen: list[str] = []
    register_reward("test-seen", lambda p, c: seen.append(p) or 0.0, True)
    prompts = [f"{a}{b}" for a in "abcdefghij" for b in "aeiou"]  # 50 distinct prompts
    cfg = LMPPOConfig(steps=3, batch_size=40, minibatch_size=40, max_new_tokens=2, epochs=1,
                      advantage="grpo", group_size=2)  # fmt: skip
    try:
        customize_ppo(prior, tok, "test-seen", "greedy", cfg, prompts, alpha_hat=0.1)
    finally:
        unregister_reward("test-seen")
    assert len(seen) == 120 and set(seen) == set(prompts)  # 60 slots: every prompt in 50


def test_group_settings_are_checked():
    with pytest.raises(TailorError, match="advantage must be one of gae, grpo, rloo"):
        LMPPOConfig(advantage="ppo")
    with pytest.raises(TailorError, match="kl_estimator must be one of"):
        LMPPOConfig(kl_estimator="k2")
    with pytest.raises(TailorError, match="group_size must be >= 2 for grpo"):
        LMPPOConfig(advantage="grpo", group_size=1)
    with pytest.raises(TailorError, match="multiple of group_size"):
        LMPPOConfig(advantage="rloo", batch_size=10, group_size=4)
    LMPPOConfig(batch_size=10, group_size=4)  # gae ignores group_size


def test_ppo_rejects_offline_methods(tiny):
    prior, tok = tiny
    with pytest.raises(TailorError, match="token-level PPO"):
        customize_ppo(prior, tok, "ends-with-vowel", "dpo", FAST_PPO)


# --- offline family -----------------------------------------------------------------------------

FAST_DPO = LMDPOConfig(steps=30, batch_size=16, lr=1e-3, samples=96, max_new_tokens=10)


@pytest.mark.parametrize(
    ("method", "coef"),
    [("dpo", {"beta": 0.5}), ("ce-dpo", {"beta": 0.5}), ("decoupled-dpo", {})],
)
def test_offline_losses_decrease_and_move_toward_the_reward(tiny, method, coef):
    prior, tok = tiny
    policy, hist, info = customize_offline(
        prior, tok, method, FAST_DPO, reward="ends-with-vowel", **coef
    )
    first = sum(h["loss"] for h in hist[:5]) / 5
    last = sum(h["loss"] for h in hist[-5:]) / 5
    assert last < first - 0.1
    assert info["coefficients"] == offline_coefficients(method, **coef)
    assert _success(policy, prior, tok, "ends-with-vowel") > _success(
        prior, prior, tok, "ends-with-vowel"
    )


def test_decoupled_dpo_with_equal_coefficients_is_dpo(tiny):
    prior, tok = tiny
    cfg = LMDPOConfig(steps=5, batch_size=8, samples=48, max_new_tokens=8)
    a, ha, _ = customize_offline(prior, tok, "dpo", cfg, reward="ends-with-vowel", beta=0.2)
    b, hb, _ = customize_offline(
        prior, tok, "decoupled-dpo", cfg, reward="ends-with-vowel", omega_prime=0.2, alpha_hat=0.2
    )
    assert ha == hb
    assert torch.equal(a.lm_head.weight, b.lm_head.weight)


def test_offline_training_on_given_pairs_raises_chosen_over_rejected(tiny):
    prior, tok = tiny
    pairs = [PreferencePair("", "mia", "bob"), PreferencePair("an", "na", "ugo")] * 4
    policy, _, info = customize_offline(prior, tok, "decoupled-dpo", FAST_DPO, pairs=pairs)
    assert info == {
        "source": "preference file",
        "pairs": 8,
        "coefficients": {"omega_prime": 0.15, "alpha_hat": 0.1},
    }
    ids, pm = encode_prompts(tok, ["", "", "an", "an"])
    tokens, mask = encode_completions(tok, ["mia", "bob", "na", "ugo"])
    gap = sequence_logprobs(policy, ids, pm, tokens, mask) - sequence_logprobs(
        prior, ids, pm, tokens, mask
    )
    assert gap[0] > 0 > gap[1] and gap[2] > 0 > gap[3]


def test_offline_coefficient_errors():
    with pytest.raises(TailorError, match="does not take beta"):
        offline_coefficients("decoupled-dpo", beta=0.1)
    with pytest.raises(TailorError, match="unknown offline method"):
        offline_coefficients("ppo")
    with pytest.raises(TailorError, match="finite"):
        offline_coefficients("dpo", beta=float("nan"))
