"""Tensor PPO runs you can leave (run directory, exact resume, SIGTERM) and the KL controller."""

from __future__ import annotations

import csv
import dataclasses
import math
import os
import signal

import numpy as np
import pytest
import torch

from tailor.algos.kl_control import adapt_scale, scaled_method
from tailor.algos.tensor_ppo import TensorPPOConfig, TensorRun, rollout_reward, train_tensor
from tailor.algos.tensor_ppo_state import STATE_FILE
from tailor.envs.tensor_vec import TaskTensorEnv, extras_addon, observation_tensor
from tailor.envs.torch_pointmass import TorchPointMass
from tailor.errors import TailorError
from tailor.experiments.unknown_temperature import tensor_customization
from tailor.methods import resolve
from tailor.nets import Actor, EmpiricalNormalization
from tailor.priors import PolicyPrior, load_prior
from tailor.rundir import Stopped, latest_checkpoint, list_checkpoints

# 16 envs x 8 steps = a batch of 128; 6 iterations, the first 2 the critic warm-up
CFG = TensorPPOConfig(
    num_iterations=6,
    num_steps_per_env=8,
    num_minibatches=2,
    num_epochs=2,
    hidden=(16, 16),
    critic_warmup_fraction=1 / 3,
    kl_target=0.01,
)
METHOD = resolve("residual", omega_prime=0.3, alpha_hat=0.1)


def _prior(std: float = 0.5) -> PolicyPrior:
    torch.manual_seed(7)
    return PolicyPrior(Actor(4, 2, (16, 16), "elu", init_std=std), EmpiricalNormalization(4))


def _env(seed: int = 3, n: int = 16, cls: type = TorchPointMass) -> TorchPointMass:
    """The point mass with 20-step episodes: some end inside every 8-step rollout split."""
    env = cls(n, seed=seed)
    env.max_episode_length = 20
    return env


def _train(out=None, config=CFG, method=METHOD, env=None, **kw):
    env = env if env is not None else _env()
    run = None if out is None else TensorRun(out, checkpoint_every=2, tensorboard=False, **kw)
    return train_tensor(env, method, config, prior=_prior(), addon=extras_addon(), run=run)


def _numbers(rows):
    return [[str(v) for k, v in r.items() if k != "steps_per_s"] for r in rows]


def _csv(path):
    with open(path, newline="") as f:
        return [{k: v for k, v in r.items() if k not in ("steps_per_s", "wall_s")} for r in
                csv.DictReader(f)]  # fmt: skip


def _same_learner(a, b):
    for name in ("actor", "critic", "obs_norm", "return_norm"):
        sa, sb = getattr(a, name).state_dict(), getattr(b, name).state_dict()
        assert sa.keys() == sb.keys()
        assert all(torch.equal(sa[k], sb[k]) for k in sa), name
    oa, ob = a.optimizer.state_dict()["state"], b.optimizer.state_dict()["state"]
    assert all(torch.equal(oa[i][k], ob[i][k]) for i in oa for k in oa[i])
    assert (
        a.lr == b.lr
        and a.kl_scale == b.kl_scale
        and torch.equal(a.gen.get_state(), b.gen.get_state())
    )


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    out = tmp_path_factory.mktemp("straight") / "run"
    return _train(out), out


# --- the KL controller ---------------------------------------------------------------------


@pytest.mark.parametrize(("target", "up"), [(1e-6, True), (10.0, False)])
def test_kl_controller_moves_the_scale_by_adapt_scale(target, up):
    """Warm-up iterations 1-2 leave the scale at 1; iteration 3's rollout is still the prior's
    own (KL exactly 0, so e = -0.2: x 0.95 with 128 steps / horizon 512); iterations 4-6 measure
    a KL far above 1e-6 (x 1.05 each) or far below 10 (x 0.95 each). Each reward used the scale
    of its iteration."""
    cfg = dataclasses.replace(CFG, kl_target=target, kl_horizon=512)
    result = _train(config=cfg)
    rows = result.metrics
    assert rows[2]["kl_prior"] == 0.0 and all(r["kl_prior"] > 1e-6 for r in rows[3:])
    scales = [1.0, 1.0, 1.0]
    for row in rows[2:]:
        scales.append(adapt_scale(scales[-1], row["kl_prior"], target, 128, 512))
    step = 1.05 if up else 0.95
    assert scales[3:] == pytest.approx([0.95, 0.95 * step, 0.95 * step**2, 0.95 * step**3])
    assert [r["kl_scale"] for r in rows] == scales[:6] and result.kl_scale == scales[6]
    used = scaled_method(METHOD, rows[-1]["kl_scale"])  # the last rollout's reward
    assert rows[-1]["reward"] == pytest.approx(float(rollout_reward(result.buf, used).mean()))
    assert used.spec.omega_prime / used.spec.alpha_hat == pytest.approx(3.0)  # omega kept


def test_kl_controller_inputs_are_checked():
    with pytest.raises(TailorError, match="trains from scratch"):
        _train(config=CFG, method=resolve("no-entropy"))
    with pytest.raises(TailorError, match="kl_horizon=25 is too short for a batch of 128"):
        _train(config=dataclasses.replace(CFG, kl_horizon=25))
    plain = dataclasses.replace(CFG, kl_target=None, num_iterations=1)
    assert _train(config=plain).metrics[0]["kl_scale"] == 1.0  # off: fixed coefficients


# --- the run directory ---------------------------------------------------------------------


def test_run_directory_holds_metrics_checkpoints_and_the_rsl_rl_file(straight):
    result, out = straight
    assert _csv(out / "metrics.csv") == [
        {k: str(v) for k, v in r.items() if k != "steps_per_s"} for r in result.metrics
    ]
    ckpts = list_checkpoints(out)
    assert [c.step for c in ckpts] == [256, 512, 768]  # every 2 iterations of 128 steps
    assert STATE_FILE in ckpts[-1].files and STATE_FILE not in ckpts[0].files  # retention
    assert "policy.safetensors" in ckpts[0].files
    assert (ckpts[-1].directory / "tensor-state.json").is_file()  # the header, readable
    policy = load_prior(out)  # the latest actor as a tailor policy
    assert torch.equal(policy.actor.log_std, result.learner.actor.log_std)
    saved = torch.load(out / "rsl-rl" / "model_6.pt", weights_only=True)
    assert saved["iter"] == 6
    assert torch.equal(
        saved["actor_state_dict"]["mlp.0.weight"], result.learner.actor.body[0].weight
    )


def test_stopped_and_resumed_equals_the_straight_run(straight, tmp_path):
    """6 iterations straight == 3 (stopped by the callback) + resume 3: rows, metrics.csv and
    every weight, moment and generator, bit for bit (the env restored through set_state)."""
    result, out = straight
    split = tmp_path / "split"
    env = _env()
    first = train_tensor(env, METHOD, CFG, prior=_prior(), addon=extras_addon(),
                         callback=lambda r: r["iteration"] >= 3,
                         run=TensorRun(split, checkpoint_every=2, tensorboard=False))  # fmt: skip
    assert first.iterations == 3 and latest_checkpoint(split).step == 384
    rest = _train(split, env=_env(seed=99), resume=True)  # a fresh env: restored
    assert rest.iterations == 6 and [r["iteration"] for r in rest.metrics] == [4, 5, 6]
    assert _numbers(first.metrics + rest.metrics) == _numbers(result.metrics)
    assert [r["episodes"] for r in result.metrics] == [0, 0, 16, 0, 16, 0]  # ends at steps 20, 40
    assert _csv(split / "metrics.csv") == _csv(out / "metrics.csv")
    _same_learner(rest.learner, result.learner)


def test_sigterm_saves_and_exits_143_and_the_run_resumes(straight, tmp_path):
    result, _ = straight
    split = tmp_path / "term"

    def term(row):
        if row["iteration"] == 2:
            os.kill(os.getpid(), signal.SIGTERM)  # arrives during the iteration's callback

    with pytest.raises(Stopped) as stop:
        train_tensor(_env(), METHOD, CFG, prior=_prior(),
                     addon=extras_addon(), callback=term,
                     run=TensorRun(split, checkpoint_every=5, tensorboard=False))  # fmt: skip
    assert stop.value.exit_code == 143
    assert latest_checkpoint(split).step == 256  # iteration 2, though checkpoint_every is 5
    assert (split / "rsl-rl" / "model_2.pt").is_file()
    assert len(_csv(split / "metrics.csv")) == 2
    rest = _train(split, env=_env(), resume=True)
    _same_learner(rest.learner, result.learner)


def test_resume_refuses_another_run(straight, tmp_path):
    _, out = straight
    with pytest.raises(TailorError, match="already holds a run"):
        _train(out)
    with pytest.raises(TailorError, match="coefficients"):
        _train(out, method=resolve("residual", omega_prime=0.2, alpha_hat=0.1), resume=True)
    with pytest.raises(TailorError, match=r"learning_rate=0\.01 \(saved 0\.001\)"):
        _train(out, config=dataclasses.replace(CFG, learning_rate=0.01), resume=True)
    with pytest.raises(TailorError, match="num_envs"):
        _train(out, env=_env(n=8), resume=True)


class _NoState(TorchPointMass):
    """An env that cannot save its state (as Isaac Lab's)."""

    get_state = None
    set_state = None


def test_resume_without_env_state_warns(tmp_path):
    cfg = dataclasses.replace(CFG, num_iterations=1)
    _train(tmp_path / "r", config=cfg, env=_env(cls=_NoState))
    with pytest.warns(UserWarning, match="not continue exactly"):
        rest = _train(tmp_path / "r", config=dataclasses.replace(cfg, num_iterations=2),
                      env=_env(cls=_NoState), resume=True)  # fmt: skip
    assert rest.iterations == 2


def test_task_tensor_env_state_round_trip():
    """TaskTensorEnv's get_state / set_state: a fresh env of another seed set to the state
    steps on as the original (observations, rewards, dones, step counters), across the time
    limit at step 100 (the resets draw from the restored generators)."""
    env = TaskTensorEnv("pointmass", 3, seed=4)
    rng = np.random.default_rng(0)
    actions = [torch.from_numpy(rng.uniform(-1, 1, (3, 2)).astype(np.float32)) for _ in range(150)]
    for a in actions[:50]:
        env.step(a)
    tensors, info = env.get_state()
    other = TaskTensorEnv("pointmass", 3, seed=11)
    other.set_state(tensors, info)
    assert torch.equal(other.episode_length_buf, env.episode_length_buf)
    assert torch.equal(observation_tensor(other.get_observations(), "policy"),
                       observation_tensor(env.get_observations(), "policy"))  # fmt: skip
    ended = False
    for a in actions[50:]:
        mine, theirs = env.step(a), other.step(a)
        ended |= bool(mine[2].all())
        assert all(torch.equal(x, y) for x, y in zip(mine[1:3], theirs[1:3], strict=True))
        assert torch.equal(mine[0]["policy"], theirs[0]["policy"])
    assert ended  # the time limit (step 100) came after the restore
    with pytest.raises(TailorError, match="3 envs, not 2"):
        TaskTensorEnv("pointmass", 2).set_state(tensors, info)


# --- the unknown-temperature rule ------------------------------------------------------------


def test_the_rule_for_a_tensor_customization_says_what_it_chose():
    """Prior std 0.05 on 2 action dims: KL target 0.05 x 2 = 0.1 nats, learning rate 1e-3 x
    sqrt(0.05 / 0.5), lr_max 10x, target_kl = desired_kl, horizon one batch (16 x 8), omega' =
    alpha_hat = 1; what the user set is kept and not claimed by the rule."""
    prior = _prior(std=0.05)
    given = {"num_iterations": 2, "num_steps_per_env": 8, "num_minibatches": 2,
             "hidden": (16, 16), "target_kl": 0.05}  # fmt: skip
    rule = tensor_customization(prior, 16, "residual", given)
    lr = 1e-3 * math.sqrt(0.1)
    cfg = rule.config
    assert cfg.kl_target == pytest.approx(0.1) and cfg.kl_horizon == 128
    assert cfg.learning_rate == pytest.approx(lr) and cfg.lr_max == pytest.approx(10 * lr)
    assert cfg.target_kl == 0.05 and "target_kl" not in rule.sources  # the user's
    assert rule.method.coefficients == {"omega_prime": 1.0, "alpha_hat": 1.0}
    assert cfg.kl_estimator == "exact-loss"  # the KL term in the loss, in closed form
    assert set(rule.sources) == {"kl_target", "kl_horizon", "learning_rate", "lr_max",
                                 "kl_estimator", "omega_prime", "alpha_hat"}  # fmt: skip
    assert all(v.startswith("prior temperature unknown") for v in rule.sources.values())
    assert "kl_target=0.1" in rule.line and "kl_horizon=128 (one rollout batch)" in rule.line
    assert "omega_prime=1, alpha_hat=1 (prior temperature unknown: start of the KL-held weight)" \
        in rule.line and "target_kl" not in rule.line  # fmt: skip
    result = train_tensor(TorchPointMass(16), rule.method, cfg, prior=prior, addon=extras_addon())
    assert result.metrics[-1]["kl_scale"] == 1.0 and result.iterations == 2
    with pytest.raises(TailorError, match="no TensorPPOConfig field named lr"):
        tensor_customization(prior, 16, "kl", {"lr": 1e-3})
    with pytest.raises(TailorError, match="not of 'greedy'"):
        tensor_customization(prior, 16, "greedy")
