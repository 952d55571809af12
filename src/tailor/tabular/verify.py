"""The identities behind every method, checked on fresh random Garnets (``tailor verify``).

Each check draws its own Garnets and random add-on rewards from one seed, computes an error that is
zero exactly when the claim holds, and compares the worst case with a tolerance. The same functions
back the test suite, so ``tailor verify`` and ``make test`` check the same things.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from tailor.methods import resolve
from tailor.tabular.mdp import FiniteMDP, evaluate_policy, garnet
from tailor.tabular.mdvi import (
    approximate_vi,
    da_vi,
    md_vi,
    mirror_descent_step,
    munchausen_vi,
)
from tailor.tabular.pg import PGSettings, exact_gradient, objective_value, policy_gradient
from tailor.tabular.solvers import residual_soft_value_iteration, soft_value_iteration

__all__ = ["CHECKS", "Check", "CheckResult", "format_table", "random_case", "run_checks"]


@dataclass(frozen=True)
class Case:
    """One random instance: a Garnet, an add-on reward and coefficients."""

    mdp: FiniteMDP
    r_addon: np.ndarray
    alpha: float
    omega: float
    alpha_hat: float


def random_case(
    rng: np.random.Generator, max_states: int = 15, min_temperature: float = 0.1
) -> Case:
    """A random Garnet (3..max_states states, 2..4 actions, gamma in [0.5, 0.95]), add-on reward
    ``U(-1, 1)`` and coefficients (temperatures in ``[min_temperature, 2]``, omega in [0.2, 3])."""
    S = int(rng.integers(3, max_states + 1))
    A = int(rng.integers(2, 5))
    mdp = garnet(
        S,
        A,
        int(rng.integers(1, min(S, 4) + 1)),
        float(rng.uniform(0.5, 0.95)),
        seed=int(rng.integers(2**31)),
    )
    return Case(
        mdp=mdp,
        r_addon=rng.uniform(-1, 1, size=(S, A)),
        alpha=float(rng.uniform(min_temperature, 2.0)),
        omega=float(rng.uniform(0.2, 3.0)),
        alpha_hat=float(rng.uniform(min_temperature, 2.0)),
    )


def _cases(
    seed: int,
    n: int,
    max_states: int = 15,
    min_temperature: float = 0.1,
    condition: Callable[[Case], bool] | None = None,
) -> Iterator[Case]:
    """``n`` random cases from ``seed``; with ``condition``, cases failing it are redrawn."""
    rng = np.random.default_rng(seed)
    for _ in range(n):
        for _attempt in range(10_000):
            case = random_case(rng, max_states, min_temperature)
            if condition is None or condition(case):
                break
        else:
            raise RuntimeError("no random case satisfies the check's condition")
        yield case


def _sup(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(np.asarray(a) - np.asarray(b))))


# --- Residual Q-learning and the reward view --------------------------------------------------


def residual_equals_full_soft(c: Case) -> float:
    """Residual soft VI (prior soft-optimal at alpha, omega' = omega alpha) vs soft VI on
    ``omega r + r_R`` at alpha_hat: policies and ``Q_R = Q_hat - omega Q_prior``."""
    q_prior, prior = soft_value_iteration(c.mdp, c.alpha)
    q_res, pi_hat = residual_soft_value_iteration(
        c.mdp.with_reward(c.r_addon), prior, c.omega * c.alpha, c.alpha_hat
    )
    q_full, pi_full = soft_value_iteration(
        c.mdp.with_reward(c.omega * c.mdp.r + c.r_addon), c.alpha_hat
    )
    return max(_sup(pi_hat, pi_full), _sup(q_res, q_full - c.omega * q_prior))


def residual_equals_kl(c: Case) -> float:
    """Residual soft VI with omega' = alpha_hat vs KL-regularized soft VI on r_R (prior as
    reference): policies and q's."""
    _, prior = soft_value_iteration(c.mdp, c.alpha)
    addon = c.mdp.with_reward(c.r_addon)
    q_res, pi_hat = residual_soft_value_iteration(addon, prior, c.alpha_hat, c.alpha_hat)
    q_kl, pi_kl = soft_value_iteration(addon, c.alpha_hat, reference=prior)
    return max(_sup(pi_hat, pi_kl), _sup(q_res, q_kl))


def reformulated_reward_equals_residual(c: Case) -> float:
    """Soft VI on the RPG reward ``r_R + omega' log pi`` at alpha_hat (what Residual PPO
    optimises) vs residual soft VI: policies and ``Q_aug = Q_R + omega' log pi``."""
    _, prior = soft_value_iteration(c.mdp, c.alpha)
    method = resolve("residual", omega_prime=c.omega * c.alpha, alpha_hat=c.alpha_hat)
    addon = c.mdp.with_reward(c.r_addon)
    q_res, pi_hat = residual_soft_value_iteration(
        addon, prior, method.spec.omega_prime, method.spec.alpha_hat
    )
    aug = c.r_addon + method.spec.omega_prime * np.log(prior)
    q_aug, pi_aug = soft_value_iteration(c.mdp.with_reward(aug), method.spec.alpha_hat)
    return max(_sup(pi_aug, pi_hat), _sup(q_aug, q_res + method.spec.omega_prime * np.log(prior)))


def kl_view(c: Case) -> float:
    """KL PPO's reward with beta = alpha (prior soft-optimal at alpha, omega = 1) leads to the
    soft-optimal policy of ``r + r_R``."""
    _, prior = soft_value_iteration(c.mdp, c.alpha)
    spec = resolve("kl", beta=c.alpha).spec
    aug = c.r_addon + spec.omega_prime * np.log(prior)
    _, pi_kl = soft_value_iteration(c.mdp.with_reward(aug), spec.alpha_hat)
    _, pi_full = soft_value_iteration(c.mdp.with_reward(c.mdp.r + c.r_addon), c.alpha)
    return _sup(pi_kl, pi_full)


def evaluation_consistent(c: Case) -> float:
    """The soft-optimal q is the exact soft evaluation of the soft-optimal policy."""
    q, pi = soft_value_iteration(c.mdp, c.alpha)
    q_eval, _ = evaluate_policy(c.mdp, pi, c.alpha)
    return _sup(q, q_eval)


# --- KL regularization averages q-values --------------------------------------------------------


def _lam_tau(c: Case) -> tuple[float, float]:
    return c.alpha, 0.5 * c.alpha_hat


def mirror_step_closed_form(c: Case) -> float:
    """The closed-form MD-VI step attains ``max <pi,q> - lam KL(pi||pi_k) + tau H(pi)``: its
    value equals the objective at its policy, and no random policy does better (error = the larger
    gap)."""
    rng = np.random.default_rng(0)
    lam, tau = _lam_tau(c)
    S, A = c.mdp.n_states, c.mdp.n_actions
    q = rng.normal(size=(S, A))
    log_pk = np.log(rng.dirichlet(np.ones(A), size=S))

    def objective(log_p: np.ndarray) -> np.ndarray:
        p = np.exp(log_p)
        return np.sum(p * (q - lam * (log_p - log_pk) - tau * log_p), axis=1)

    log_p1, value = mirror_descent_step(q, log_pk, lam, tau)
    worst = _sup(objective(log_p1), value)
    for _ in range(200):
        other = np.log(rng.dirichlet(np.ones(A), size=S))
        worst = max(worst, float(np.max(objective(other) - value)))
    return worst


def mdvi_tau0_is_softmax_of_sum(c: Case) -> float:
    """With tau = 0 the MD-VI policy is ``softmax(sum_{j<=k} q_j / lam)`` (noise included)."""
    lam = c.alpha
    h = md_vi(c.mdp, lam, 0.0, 50, noise_std=0.3, seed=1)
    total = np.cumsum(h.qs[:-1], axis=0) / lam
    expected = np.exp(total - total.max(axis=2, keepdims=True))
    expected /= expected.sum(axis=2, keepdims=True)
    return _sup(h.policies[1:], expected)


def dual_averaging_equals_mdvi(c: Case) -> float:
    """DA-VI (policy from the weighted average h_k at temperature tau_k) equals MD-VI, with and
    without entropy, under the same noise."""
    worst = 0.0
    for lam, tau in (_lam_tau(c), (c.alpha, 0.0)):
        a = md_vi(c.mdp, lam, tau, 60, noise_std=0.3, seed=2)
        b = da_vi(c.mdp, lam, tau, 60, noise_std=0.3, seed=2)
        worst = max(worst, _sup(a.policies, b.policies), _sup(a.qs, b.qs))
    return worst


def munchausen_equals_mdvi(c: Case) -> float:
    """Munchausen VI(alpha_m, tau_m) equals MD-VI(alpha_m tau_m, (1-alpha_m) tau_m):
    same policies and ``q_M = q_MD + lam log pi_k``."""
    lam, tau = _lam_tau(c)
    alpha_m, tau_m = lam / (lam + tau), lam + tau
    a = md_vi(c.mdp, lam, tau, 60, noise_std=0.3, seed=3)
    m = munchausen_vi(c.mdp, alpha_m, tau_m, 60, noise_std=0.3, seed=3)
    return max(_sup(a.policies, m.policies), _sup(a.qs, m.qs - lam * np.log(m.policies)))


def mdvi_converges(c: Case) -> float:
    """Without noise MD-VI reaches the tau-regularized optimum: final ``||q*_tau - q^pi_k||``."""
    lam, tau = _lam_tau(c)
    return float(md_vi(c.mdp, lam, tau, 600).errors[-1])


def mdvi_bound_holds(c: Case) -> float:
    """Under noise, MD-VI (tau = 0) stays under the bound of reference section 5:
    ``max_k (error_k - bound_k)`` must be <= 0."""
    h = md_vi(c.mdp, c.alpha, 0.0, 300, noise_std=1.0, seed=4)
    return float(np.max(h.errors[1:] - h.bound[1:]))


def mdvi_beats_vi_under_noise(c: Case) -> float:
    """Under the same noise draws, the ratio of MD-VI's (lam = 1, tau = 0) final error (mean over
    the last 100 of 400 iterations) to plain approximate VI's; averaging makes it small."""
    scale = float(np.max(np.abs(c.mdp.r)))
    kwargs = {"iterations": 400, "noise_std": scale, "seed": 5}
    md = md_vi(c.mdp, 1.0, 0.0, **kwargs).errors[-100:].mean()
    vi = approximate_vi(c.mdp, **kwargs).errors[-100:].mean()
    return float(md / max(vi, 1e-12))


# --- Policy gradient ----------------------------------------------------------------------------


def well_conditioned(c: Case, min_prob: float = 1e-3) -> bool:
    """Whether the soft-optimal prior and the residual target give every action at least
    ``min_prob``. Vanilla softmax policy gradient slows down in proportion to the smallest
    probability of its target, so the policy-gradient checks draw such cases."""
    _, prior = soft_value_iteration(c.mdp, c.alpha)
    if prior.min() < min_prob:
        return False
    _, pi_hat = residual_soft_value_iteration(
        c.mdp.with_reward(c.r_addon), prior, c.omega * c.alpha, c.alpha_hat
    )
    return bool(pi_hat.min() >= min_prob)


def _pg(mdp: FiniteMDP, variant: str, temperature: float, **kwargs: object):
    """Exact PG run to convergence. The step ``min(2, 4 (1 - gamma) / temperature)`` keeps the
    stiff entropy direction (curvature ~ temperature / (1 - gamma)) stable."""
    lr = min(2.0, 4.0 * (1.0 - mdp.gamma) / temperature)
    return policy_gradient(mdp, variant, PGSettings(iterations=100_000, lr=lr, tol=1e-14), **kwargs)


def soft_pg_reaches_soft_vi(c: Case) -> float:
    """Exact Soft PG (reformulated reward ``r - alpha log pi``) converges to the soft-VI policy."""
    r = _pg(c.mdp, "soft", c.alpha, alpha=c.alpha)
    _, pi_star = soft_value_iteration(c.mdp, c.alpha)
    return _sup(r.pi, pi_star)


def residual_pg_reaches_residual_vi(c: Case) -> float:
    """Exact Residual PG on the add-on MDP, from the prior, converges to residual soft VI."""
    _, prior = soft_value_iteration(c.mdp, c.alpha)
    addon = c.mdp.with_reward(c.r_addon)
    omega_prime = c.omega * c.alpha
    r = _pg(
        addon,
        "residual",
        c.alpha_hat,
        prior=prior,
        omega_prime=omega_prime,
        alpha_hat=c.alpha_hat,
    )
    _, pi_hat = residual_soft_value_iteration(addon, prior, omega_prime, c.alpha_hat)
    return _sup(r.pi, pi_hat)


def exact_gradient_is_gradient(c: Case) -> float:
    """For Soft PG the exact update direction equals the finite-difference gradient of
    ``J = mu0 . v_alpha`` (relative error)."""
    method = resolve("soft", alpha=c.alpha)
    rng = np.random.default_rng(6)
    theta = rng.normal(size=c.mdp.r.shape)
    g, _ = exact_gradient(c.mdp, theta, method, c.mdp.r)
    eps = 1e-6
    fd = np.zeros_like(theta)
    for idx in np.ndindex(theta.shape):
        e = np.zeros_like(theta)
        e[idx] = eps
        fd[idx] = (
            objective_value(c.mdp, theta + e, method, c.mdp.r)
            - objective_value(c.mdp, theta - e, method, c.mdp.r)
        ) / (2 * eps)
    return _sup(g, fd) / max(1.0, float(np.max(np.abs(fd))))


def _stationarity(c: Case, variant: str, temperature_factor: float, alpha_eval: float) -> float:
    r = _pg(c.mdp, variant, c.alpha, alpha=c.alpha)
    q, _ = evaluate_policy(c.mdp, r.pi, alpha_eval)
    z = q / (temperature_factor * c.alpha)
    predicted = np.exp(z - z.max(axis=1, keepdims=True))
    predicted /= predicted.sum(axis=1, keepdims=True)
    return _sup(r.pi, predicted)


def end_entropy_fixed_point(c: Case) -> float:
    """End-Entropy PG converges to ``pi ∝ exp(q^pi_0 / alpha)`` (future entropy ignored)."""
    return _stationarity(c, "end-entropy", 1.0, 0.0)


def repeat_entropy_fixed_point(c: Case) -> float:
    """Repeat-Entropy PG converges to ``pi ∝ exp(q^pi_alpha / (2 alpha))``."""
    return _stationarity(c, "repeat-entropy", 2.0, c.alpha)


def entropy_variants_differ(c: Case) -> float:
    """How far End- and Repeat-Entropy PG end from the soft-optimal policy (the smaller of the
    two ``max |pi - pi*|``); the check passes when it is clearly above 0."""
    _, pi_star = soft_value_iteration(c.mdp, c.alpha)
    end = _pg(c.mdp, "end-entropy", c.alpha, alpha=c.alpha).pi
    rep = _pg(c.mdp, "repeat-entropy", c.alpha, alpha=c.alpha).pi
    return min(_sup(end, pi_star), _sup(rep, pi_star))


def sampled_soft_pg(c: Case) -> float:
    """Sampled Soft PG (Monte-Carlo episodes, ``reformulate`` on the rollout) on a small MDP
    (a 5-state, 3-action Garnet, gamma 0.9, alpha 0.5) ends within 0.03 of the soft-VI policy
    after 300 iterations of 256 episodes."""
    seed = int(np.random.default_rng(int(c.mdp.r[0, 0] * 1e9) % 2**31).integers(2**31))
    mdp, alpha = garnet(5, 3, 2, 0.9, seed=seed), 0.5
    settings = PGSettings(
        iterations=300, lr=3.0, lr_decay=0.02, estimator="sampled", episodes=256, seed=seed
    )
    r = policy_gradient(mdp, "soft", settings, alpha=alpha)
    _, pi_star = soft_value_iteration(mdp, alpha)
    return _sup(r.pi, pi_star)


@dataclass(frozen=True)
class Check:
    """An identity: ``fn(case) -> error``; passes when every case's error ``<= tol`` (or, with
    ``at_least``, when the smallest is ``>= tol``). Cases have at most ``max_states`` states and
    temperatures of at least ``min_temperature``, and satisfy ``condition`` when given (plain
    softmax policy gradient converges slowly at low temperature and near-deterministic targets,
    so its checks use smaller, :func:`well_conditioned` Garnets)."""

    name: str
    fn: Callable[[Case], float]
    tol: float
    cases: int
    at_least: bool = False
    max_states: int = 15
    min_temperature: float = 0.1
    condition: Callable[[Case], bool] | None = None


_PG = {"max_states": 6, "min_temperature": 0.3, "condition": well_conditioned}

CHECKS: tuple[Check, ...] = (
    Check("soft VI q == exact soft evaluation of its policy", evaluation_consistent, 1e-8, 20),
    Check(
        "residual soft VI == soft VI on omega*r + r_R (pi, Q_R)",
        residual_equals_full_soft,
        1e-8,
        20,
    ),
    Check("residual soft VI (omega'=alpha_hat) == KL-regularized VI", residual_equals_kl, 1e-8, 20),
    Check(
        "soft VI on RPG reward r_R + omega' log pi == residual",
        reformulated_reward_equals_residual,
        1e-8,
        20,
    ),
    Check("KL view: KL reward (beta=alpha) -> soft-optimal of r + r_R", kl_view, 1e-8, 20),
    Check("MD-VI greedy step: closed form is the maximum", mirror_step_closed_form, 1e-10, 10),
    Check("MD-VI tau=0: pi_k+1 = softmax(sum q_j / lam)", mdvi_tau0_is_softmax_of_sum, 1e-8, 10),
    Check("DA-VI == MD-VI (pi, q; tau=0 and tau>0)", dual_averaging_equals_mdvi, 1e-8, 10),
    Check("Munchausen VI == MD-VI (pi, q_M - lam log pi)", munchausen_equals_mdvi, 1e-8, 10),
    Check("MD-VI without noise -> tau-regularized optimum", mdvi_converges, 1e-8, 10),
    Check("MD-VI error <= bound under noise (max error - bound)", mdvi_bound_holds, 0.0, 5),
    Check("MD-VI / VI final error, same noise (ratio)", mdvi_beats_vi_under_noise, 0.5, 5),
    Check(
        "exact PG direction == finite-difference grad J (rel.)",
        exact_gradient_is_gradient,
        1e-6,
        5,
        **_PG,
    ),
    Check("exact Soft PG -> soft VI policy", soft_pg_reaches_soft_vi, 1e-8, 3, **_PG),
    Check(
        "exact Residual PG -> residual soft VI policy",
        residual_pg_reaches_residual_vi,
        1e-8,
        3,
        **_PG,
    ),
    Check("End-Entropy PG -> pi ∝ exp(q0^pi/alpha)", end_entropy_fixed_point, 1e-8, 3, **_PG),
    Check(
        "Repeat-Entropy PG -> pi ∝ exp(q^pi/(2 alpha))", repeat_entropy_fixed_point, 1e-8, 3, **_PG
    ),
    Check(
        "End/Repeat-Entropy differ from soft VI (min dist)",
        entropy_variants_differ,
        1e-5,
        3,
        at_least=True,
        **_PG,
    ),
    Check("sampled Soft PG within 0.03 of soft VI policy", sampled_soft_pg, 0.03, 2, **_PG),
)


@dataclass(frozen=True)
class CheckResult:
    name: str
    cases: int
    error: float
    tol: float
    at_least: bool
    passed: bool
    seconds: float


def run_checks(
    seed: int,
    cases_scale: float = 1.0,
    checks: tuple[Check, ...] | None = None,
    progress: Callable[[CheckResult], None] | None = None,
) -> list[CheckResult]:
    """Run ``checks`` (default: all of :data:`CHECKS`) on fresh Garnets drawn from ``seed``;
    ``cases_scale`` scales case counts.

    The reported ``error`` is the worst case (largest, or smallest for ``at_least`` checks).
    """
    checks = CHECKS if checks is None else checks
    results = []
    for i, check in enumerate(checks):
        n = max(1, round(check.cases * cases_scale))
        start = time.perf_counter()
        cases = _cases(seed * 1000 + i, n, check.max_states, check.min_temperature, check.condition)
        errors = [check.fn(c) for c in cases]
        worst = min(errors) if check.at_least else max(errors)
        ok = bool(
            np.isfinite(worst) and (worst >= check.tol if check.at_least else worst <= check.tol)
        )
        res = CheckResult(
            check.name, n, worst, check.tol, check.at_least, ok, time.perf_counter() - start
        )
        if progress is not None:
            progress(res)
        results.append(res)
    return results


def format_table(results: list[CheckResult]) -> str:
    """Markdown table: identity, cases, worst error, tolerance, pass/fail."""
    lines = ["| identity | cases | worst error | tolerance | result |", "|---|---:|---:|---:|---|"]
    for r in results:
        tol = (">= " if r.at_least else "<= ") + f"{r.tol:.0e}"
        lines.append(
            f"| {r.name} | {r.cases} | {r.error:.2e} | {tol} | {'pass' if r.passed else 'FAIL'} |"
        )
    return "\n".join(lines)
