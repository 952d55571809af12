"""An enumerable toy language model: the exactness bridge between the LM methods and their target.

Vocabulary of ``V`` tokens, fixed length ``L``, every one of the ``N = V**L`` sequences listed. A
*table policy* is an autoregressive policy with one row of logits per prefix: ``table[p]`` are the
logits of ``pi(. | prefix p)``, shape ``[P, V]`` with ``P = 1 + V + ... + V**(L-1)`` prefixes
(float64). Such a table can represent every distribution over sequences with full support, so the
optimum of each method is reachable exactly and we can check it against the closed form (paper
appendix V-B; reference section 2)::

    pi_hat(y)  ∝  pi_prior(y) ** (omega' / alpha_hat) * exp(r_R(y) / alpha_hat)

Three routes to that target are implemented and measured in :func:`bridge_report`:

* token-level policy gradient for the methods ``residual``, ``kl`` and ``greedy`` with the per-token
  reward ``tailor.reward.reformulate(r_R at the last token, log pi_prior, log pi_theta, spec)``,
  with exact expectations over all sequences (or a sampled estimator);
* decoupled DPO (eq. 25) on Bradley-Terry preferences ``P(y1 > y2) = sigmoid(r_R(y1) - r_R(y2))``,
  either the exact expected loss over all pairs or the loss on sampled pairs;
* plain DPO, which is decoupled DPO with ``omega' = alpha_hat = beta`` (target exponent 1).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

import torch

from tailor.errors import TailorError
from tailor.losses import decoupled_dpo_loss, dpo_loss
from tailor.methods import Method, resolve
from tailor.reward import RewardSpec, reformulate

__all__ = [
    "BridgeConfig",
    "DPOConfig",
    "PGConfig",
    "ToyProblem",
    "bradley_terry_weights",
    "bridge_report",
    "enumerate_sequences",
    "make_toy",
    "num_prefixes",
    "pg_surrogate",
    "prefix_indices",
    "random_table",
    "reward_to_go",
    "sample_preference_weights",
    "sequence_logp",
    "soft_objective",
    "table_from_distribution",
    "target_distribution",
    "token_logp",
    "token_rewards",
    "total_variation",
    "train_dpo",
    "train_policy_gradient",
]

DTYPE = torch.float64

PairLoss = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


# ---------------------------------------------------------------------------------------------
# Sequences and table policies
# ---------------------------------------------------------------------------------------------


def _check_space(vocab: int, length: int) -> None:
    for name, v, lo in (("vocab", vocab, 2), ("length", length, 1)):
        if isinstance(v, bool) or not isinstance(v, int) or v < lo:
            raise TailorError(f"toy {name} must be an integer >= {lo}, got {v!r}")
    if vocab**length > 100_000:
        raise TailorError(
            f"toy space has {vocab}**{length} sequences; keep it under 100000 so it "
            "can be enumerated"
        )


def num_prefixes(vocab: int, length: int) -> int:
    """Number of prefixes of length ``0 .. L-1``: ``P = (V**L - 1) / (V - 1)``."""
    _check_space(vocab, length)
    return (vocab**length - 1) // (vocab - 1)


def enumerate_sequences(vocab: int, length: int) -> torch.Tensor:
    """Every sequence in lexicographic order, long tensor ``[V**L, L]``."""
    _check_space(vocab, length)
    grids = torch.meshgrid(*[torch.arange(vocab)] * length, indexing="ij")
    return torch.stack([g.reshape(-1) for g in grids], dim=1)


def prefix_indices(seqs: torch.Tensor, vocab: int) -> torch.Tensor:
    """Row of the logit table used for each token: ``[N, L]`` long.

    The prefix ``y_<t`` of length ``t`` has index ``offset_t + sum_k y_k V**(t-1-k)`` with
    ``offset_t = (V**t - 1) / (V - 1)`` (all shorter prefixes come first).
    """
    n, length = seqs.shape
    idx = torch.zeros(n, length, dtype=torch.long)
    code = torch.zeros(n, dtype=torch.long)  # base-V value of the prefix read so far
    for t in range(length):
        idx[:, t] = (vocab**t - 1) // (vocab - 1) + code
        code = code * vocab + seqs[:, t]
    return idx


def token_logp(
    table: torch.Tensor, seqs: torch.Tensor, rows: torch.Tensor | None = None
) -> torch.Tensor:
    """Per-token log-probs ``log pi(y_t | y_<t)`` of a table policy, ``[N, L]``.

    Args:
        table: logits, ``[P, V]``.
        seqs: token ids, ``[N, L]``.
        rows: ``prefix_indices(seqs, V)`` if already computed (training loops cache it).
    """
    logp_rows = torch.log_softmax(table, dim=-1)  # [P, V]
    if rows is None:
        rows = prefix_indices(seqs, table.shape[1])  # [N, L]
    return logp_rows[rows, seqs]


def sequence_logp(table: torch.Tensor, seqs: torch.Tensor) -> torch.Tensor:
    """Sequence log-probs ``log pi(y) = sum_t log pi(y_t | y_<t)``, ``[N]``."""
    return token_logp(table, seqs).sum(dim=1)


def random_table(vocab: int, length: int, seed: int = 0, scale: float = 1.0) -> torch.Tensor:
    """A random table policy (e.g. a prior): logits ``scale * N(0, 1)``, float64 ``[P, V]``."""
    g = torch.Generator().manual_seed(seed)
    return scale * torch.randn(num_prefixes(vocab, length), vocab, generator=g, dtype=DTYPE)


def table_from_distribution(probs: torch.Tensor, vocab: int, length: int) -> torch.Tensor:
    """The table policy of a full-support distribution over sequences, float64 ``[P, V]``.

    Row ``p`` (a prefix of length ``t``) holds ``log P(prefix p, then v)``: its softmax is the
    conditional ``P(v | p)``, so ``sequence_logp(table) == log(probs)``.

    Args:
        probs: ``P(y)`` of every sequence in :func:`enumerate_sequences` order, ``[V**L]``, > 0.
    """
    _check_space(vocab, length)
    if tuple(probs.shape) != (vocab**length,) or not bool((probs > 0).all()):
        raise TailorError(f"probs must be a positive distribution of shape [{vocab**length}]")
    grid = probs.to(DTYPE).reshape([vocab] * length)
    rows = []
    for t in range(length):
        marginal = grid.sum(dim=tuple(range(t + 1, length))) if t + 1 < length else grid
        rows.append(marginal.reshape(vocab**t, vocab).log())  # prefixes of length t, in order
    return torch.cat(rows, dim=0)


def target_distribution(
    prior_logp: torch.Tensor,
    r_R: torch.Tensor,
    omega_prime: float,
    alpha_hat: float,
) -> torch.Tensor:
    """Closed-form customized policy over sequences, ``[N]`` probabilities::

        pi_hat(y) ∝ pi_prior(y) ** (omega'/alpha_hat) * exp(r_R(y) / alpha_hat)

    Args:
        prior_logp: ``log pi_prior(y)`` of every sequence, ``[N]``.
        r_R: add-on reward of every sequence, ``[N]``.
        omega_prime: weight of the prior, finite.
        alpha_hat: temperature, finite and ``> 0``.
    """
    if not (math.isfinite(omega_prime) and math.isfinite(alpha_hat) and alpha_hat > 0):
        raise TailorError(
            f"target_distribution needs finite omega' and alpha_hat > 0, got "
            f"omega'={omega_prime}, alpha_hat={alpha_hat}"
        )
    if prior_logp.shape != r_R.shape:
        raise TailorError(
            f"prior_logp has shape {tuple(prior_logp.shape)} but r_R has shape {tuple(r_R.shape)}"
        )
    return torch.softmax((omega_prime * prior_logp + r_R) / alpha_hat, dim=0)


def total_variation(p: torch.Tensor, q: torch.Tensor) -> float:
    """Total-variation distance ``0.5 * sum |p - q|`` between two distributions ``[N]``."""
    if p.shape != q.shape:
        raise TailorError(f"total_variation: shapes {tuple(p.shape)} and {tuple(q.shape)} differ")
    return 0.5 * float((p - q).abs().sum())


@dataclass(frozen=True, eq=False)
class ToyProblem:
    """A prior table policy and an add-on reward on the enumerable space.

    Attributes:
        vocab: number of tokens ``V``.
        length: sequence length ``L``.
        prior: logits of the frozen prior, float64 ``[P, V]``.
        r_R: add-on reward of every sequence (order of :func:`enumerate_sequences`), ``[N]``.
        seqs: every sequence, ``[N, L]`` (derived).
        rows: the logit-table row of every token, ``prefix_indices(seqs)``, ``[N, L]`` (derived).
        prior_tok: the prior's per-token log-probs, ``[N, L]`` (derived).
    """

    vocab: int
    length: int
    prior: torch.Tensor
    r_R: torch.Tensor
    seqs: torch.Tensor = field(init=False, repr=False)
    rows: torch.Tensor = field(init=False, repr=False)
    prior_tok: torch.Tensor = field(init=False, repr=False)

    def __post_init__(self) -> None:
        seqs = enumerate_sequences(self.vocab, self.length)
        if tuple(self.prior.shape) != (num_prefixes(self.vocab, self.length), self.vocab):
            raise TailorError(
                f"prior table must have shape [P, V] = "
                f"[{num_prefixes(self.vocab, self.length)}, {self.vocab}], got "
                f"{tuple(self.prior.shape)}"
            )
        if tuple(self.r_R.shape) != (seqs.shape[0],):
            raise TailorError(
                f"r_R must have one value per sequence, shape [{seqs.shape[0]}], "
                f"got {tuple(self.r_R.shape)}"
            )
        # Computed once: every training step reuses them.
        rows = prefix_indices(seqs, self.vocab)
        object.__setattr__(self, "seqs", seqs)
        object.__setattr__(self, "rows", rows)
        object.__setattr__(self, "prior_tok", token_logp(self.prior, seqs, rows).detach())

    def logp_tok(self, table: torch.Tensor) -> torch.Tensor:
        """Per-token log-probs of a table policy on every sequence, ``[N, L]``."""
        return token_logp(table, self.seqs, self.rows)

    def probs(self, table: torch.Tensor) -> torch.Tensor:
        """The distribution ``pi(y)`` of a table policy over every sequence, ``[N]``."""
        return self.logp_tok(table).sum(1).exp()

    def prior_logp(self) -> torch.Tensor:
        """``log pi_prior(y)`` of every sequence, ``[N]``."""
        return self.prior_tok.sum(1)

    def target(self, omega_prime: float, alpha_hat: float) -> torch.Tensor:
        """The closed-form target :func:`target_distribution` for this prior and reward."""
        return target_distribution(self.prior_logp(), self.r_R, omega_prime, alpha_hat)


def make_toy(
    vocab: int = 3,
    length: int = 3,
    seed: int = 0,
    prior_scale: float = 1.0,
    reward_scale: float = 1.0,
) -> ToyProblem:
    """A random toy: prior logits ``prior_scale * N(0,1)``, reward ``reward_scale * N(0,1)``."""
    prior = random_table(vocab, length, seed=seed, scale=prior_scale)
    g = torch.Generator().manual_seed(seed + 1_000_003)
    r_R = reward_scale * torch.randn(vocab**length, generator=g, dtype=DTYPE)
    return ToyProblem(vocab, length, prior, r_R)


# ---------------------------------------------------------------------------------------------
# Token-level policy gradient (residual / kl / greedy)
# ---------------------------------------------------------------------------------------------


def token_rewards(
    r_R: torch.Tensor,
    logp_prior_tok: torch.Tensor,
    logp_pi_tok: torch.Tensor,
    spec: RewardSpec,
) -> torch.Tensor:
    """Per-token reformulated reward, ``[N, L]``: exactly :func:`tailor.reward.reformulate` with
    the sequence reward ``r_R(y)`` at the last token and 0 elsewhere::

        r_t = 1[t = L-1] r_R(y) + omega' log pi_prior(y_t|y_<t) - alpha_hat log pi_theta(y_t|y_<t)

    ``log pi_theta`` is detached: it is the behaviour policy's log-prob, a constant of the reward.

    Args:
        r_R: sequence rewards, ``[N]``.
        logp_prior_tok: prior per-token log-probs, ``[N, L]``.
        logp_pi_tok: policy per-token log-probs, ``[N, L]``.
        spec: the method's coefficients.
    """
    r_tok = torch.zeros_like(logp_pi_tok)
    r_tok[:, -1] = r_R
    return reformulate(r_tok, logp_prior_tok, logp_pi_tok.detach(), spec)


def reward_to_go(rewards: torch.Tensor) -> torch.Tensor:
    """Undiscounted reward-to-go ``G_t = sum_{t' >= t} r_t'`` along the last axis, ``[N, L]``."""
    return rewards.flip(-1).cumsum(-1).flip(-1)


def soft_objective(table: torch.Tensor, problem: ToyProblem, spec: RewardSpec) -> torch.Tensor:
    """The max-entropy objective the token-level methods maximise, computed exactly::

        J(pi) = E_{y~pi}[ r_R(y) + omega' log pi_prior(y) - alpha_hat log pi(y) ]

    Its maximiser is :func:`target_distribution` and its maximum is
    ``alpha_hat * logsumexp((r_R + omega' log pi_prior) / alpha_hat)``. Differentiable.
    """
    logp = problem.logp_tok(table).sum(1)
    return (
        logp.exp() * (problem.r_R + spec.omega_prime * problem.prior_logp() - spec.alpha_hat * logp)
    ).sum()


def pg_surrogate(
    table: torch.Tensor,
    problem: ToyProblem,
    spec: RewardSpec,
    idx: torch.Tensor | None = None,
) -> torch.Tensor:
    """Policy-gradient surrogate whose gradient is ``E_y[sum_t grad log pi(y_t|y_<t) G_t]``.

    Exact version (``idx=None``): the expectation is the sum over every sequence weighted by the
    detached ``pi_theta(y)``, so the gradient is the exact gradient of the max-entropy objective
    ``E[r_R + omega' log pi_prior] + alpha_hat H(pi_theta)`` (the gradient of the detached
    ``-alpha_hat log pi`` reward term has zero expectation, appendix eq. 17). Sampled version:
    ``idx`` are the enumeration indices of ``M`` sequences drawn from ``pi_theta``, each weighted
    ``1/M`` (REINFORCE with reward-to-go and a per-position batch-mean baseline).

    Args:
        table: logits of the trained policy, ``[P, V]`` (requires grad).
        problem: prior and reward.
        spec: coefficients of the reformulated reward.
        idx: sampled sequences as indices into ``problem.seqs``, ``[M]``; default every sequence.

    Returns:
        Scalar to MAXIMISE.
    """
    if idx is None:
        logp_tok = problem.logp_tok(table)  # [N, L]
        prior_tok, r_R = problem.prior_tok, problem.r_R
    else:
        logp_tok = token_logp(table, problem.seqs[idx], problem.rows[idx])  # [M, L]
        prior_tok, r_R = problem.prior_tok[idx], problem.r_R[idx]
    with torch.no_grad():
        rtg = reward_to_go(token_rewards(r_R, prior_tok, logp_tok, spec))  # [M, L]
        if idx is None:
            weights = logp_tok.sum(1).exp()
        else:
            weights = torch.full((idx.shape[0],), 1.0 / idx.shape[0], dtype=logp_tok.dtype)
            # E[grad log pi(y_t|y_<t)] = 0, so subtracting a per-position constant keeps the
            # estimator unbiased (up to the O(1/M) of using the batch mean) and cuts its variance.
            rtg = rtg - rtg.mean(0, keepdim=True)
    return (weights[:, None] * logp_tok * rtg).sum()


def _check_schedule(name: str, steps: int, lr: float, lr_final: float) -> None:
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise TailorError(f"{name}.steps must be an integer >= 1, got {steps!r}")
    if not (math.isfinite(lr) and lr > 0 and math.isfinite(lr_final) and lr_final >= 0):
        raise TailorError(
            f"{name}: need lr > 0 and lr_final >= 0 (finite), got {lr!r}, {lr_final!r}"
        )


@dataclass(frozen=True)
class PGConfig:
    """Token-level policy gradient on the toy.

    Attributes:
        steps: number of Adam steps.
        lr: Adam learning rate at the start; it decays linearly to ``lr_final``.
        lr_final: learning rate at the last step.
        samples: ``None`` for exact expectations by enumeration; otherwise the number of
            sequences sampled from the current policy per step (REINFORCE with reward-to-go).
        seed: seed of the sampler (the exact version is deterministic anyway).
    """

    steps: int = 1000
    lr: float = 0.2
    lr_final: float = 0.05
    samples: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        _check_schedule("PGConfig", self.steps, self.lr, self.lr_final)
        if self.samples is not None and (not isinstance(self.samples, int) or self.samples < 1):
            raise TailorError(
                f"PGConfig.samples must be None or an integer >= 1, got {self.samples!r}"
            )


def train_policy_gradient(
    problem: ToyProblem,
    method: Method | str,
    config: PGConfig = PGConfig(),  # frozen dataclass: an immutable default
    **coefficients: float,
) -> tuple[torch.Tensor, list[float]]:
    """Customize the prior with token-level policy gradient for a method of :mod:`tailor.methods`.

    The policy starts from the prior's table (customization starts from the prior's weights).

    Args:
        problem: prior and add-on reward.
        method: a resolved :class:`~tailor.methods.Method` or a name (then ``coefficients`` are
            passed to :func:`tailor.methods.resolve`); must optimise the add-on reward.
        config: optimisation settings.

    Returns:
        ``(table, history)``: final logits ``[P, V]`` and, at every step, the exact soft
        objective :func:`soft_objective` of the policy after the update (the surrogate's own
        value means nothing; its gradient is what counts).
    """
    if isinstance(method, str):
        method = resolve(method, **coefficients)
    if method.reward != "addon":
        raise TailorError(
            f"the toy customizes with the add-on reward only; method "
            f"{method.name!r} uses the {method.reward} reward"
        )
    table = problem.prior.clone().requires_grad_(True)
    opt = torch.optim.Adam([table], lr=config.lr)
    g = torch.Generator().manual_seed(config.seed)
    history = []
    for step in range(config.steps):
        frac = step / max(config.steps - 1, 1)
        for group in opt.param_groups:
            group["lr"] = config.lr + frac * (config.lr_final - config.lr)
        if config.samples is None:
            objective = pg_surrogate(table, problem, method.spec)
        else:
            with torch.no_grad():
                probs = problem.probs(table)
            # Drawing whole sequences from pi(y) is the same as sampling token by token.
            idx = torch.multinomial(probs, config.samples, replacement=True, generator=g)
            objective = pg_surrogate(table, problem, method.spec, idx)
        opt.zero_grad()
        (-objective).backward()
        opt.step()
        with torch.no_grad():
            history.append(float(soft_objective(table, problem, method.spec)))
    return table.detach(), history


# ---------------------------------------------------------------------------------------------
# DPO family on Bradley-Terry preferences
# ---------------------------------------------------------------------------------------------


def bradley_terry_weights(r_R: torch.Tensor, sampling: torch.Tensor | None = None) -> torch.Tensor:
    """Exact probability of each (winner, loser) pair, ``[N, N]``, summing to 1.

    Pairs ``(y1, y2)`` are drawn independently from ``sampling`` (default uniform; it must have
    full support) and ``y1`` wins with ``P = sigmoid(r_R(y1) - r_R(y2))``. The outcome
    ``(w, l) = (i, j)`` arises from ``(y1, y2) = (i, j)`` with y1 winning or from ``(j, i)`` with
    y2 winning, so ``W[i, j] = 2 mu_i mu_j sigmoid(r_i - r_j)``.
    """
    n = r_R.shape[0]
    mu = torch.full((n,), 1.0 / n, dtype=DTYPE) if sampling is None else sampling
    return 2.0 * mu[:, None] * mu[None, :] * torch.sigmoid(r_R[:, None] - r_R[None, :])


def sample_preference_weights(
    r_R: torch.Tensor,
    n_pairs: int,
    seed: int = 0,
    sampling: torch.Tensor | None = None,
) -> torch.Tensor:
    """Draw ``n_pairs`` Bradley-Terry preferences and count them, ``[N, N]``.

    ``W[i, j]`` is the fraction of the sampled pairs in which ``i`` won against ``j``; the mean
    loss over the sampled pairs equals ``sum_ij W[i, j] loss(i, j)``, which is how
    :func:`train_dpo` evaluates it (the same number, N**2 terms instead of ``n_pairs``).
    """
    n = r_R.shape[0]
    g = torch.Generator().manual_seed(seed)
    mu = torch.full((n,), 1.0 / n, dtype=DTYPE) if sampling is None else sampling
    y1 = torch.multinomial(mu, n_pairs, replacement=True, generator=g)
    y2 = torch.multinomial(mu, n_pairs, replacement=True, generator=g)
    y1_wins = torch.rand(n_pairs, generator=g, dtype=DTYPE) < torch.sigmoid(r_R[y1] - r_R[y2])
    w, lo = torch.where(y1_wins, y1, y2), torch.where(y1_wins, y2, y1)
    counts = torch.zeros(n * n, dtype=DTYPE).index_add_(
        0, w * n + lo, torch.ones(n_pairs, dtype=DTYPE)
    )
    return counts.reshape(n, n) / n_pairs


@dataclass(frozen=True)
class DPOConfig:
    """Full-batch DPO-family training on the toy.

    Attributes:
        steps: number of Adam steps.
        lr: Adam learning rate at the start; it decays linearly to ``lr_final``.
        lr_final: learning rate at the last step.
    """

    steps: int = 1000
    lr: float = 0.2
    lr_final: float = 0.05

    def __post_init__(self) -> None:
        _check_schedule("DPOConfig", self.steps, self.lr, self.lr_final)


def train_dpo(
    problem: ToyProblem,
    pair_weights: torch.Tensor,
    pair_loss: PairLoss,
    config: DPOConfig = DPOConfig(),
) -> tuple[torch.Tensor, list[float]]:
    """Minimise ``sum_ij W[i, j] * pair_loss(logp_i, logp_j, prior_i, prior_j)`` from the prior.

    Args:
        problem: prior and (unused here) reward; the reward reaches the policy only through the
            preferences in ``pair_weights``.
        pair_weights: ``[N, N]`` weight of "sequence i preferred to j"
            (:func:`bradley_terry_weights` or :func:`sample_preference_weights`).
        pair_loss: ``(logp_w, logp_l, prior_w, prior_l) -> [B]``, e.g.
            ``partial(decoupled_dpo_loss, omega_prime=.., alpha_hat=..)``.
        config: optimisation settings.

    Returns:
        ``(table, history)``: final logits and the weighted loss at every step.
    """
    n = problem.seqs.shape[0]
    keep = pair_weights.reshape(-1) > 0  # pairs that never occur carry no loss
    w_idx = torch.arange(n).repeat_interleave(n)[keep]
    l_idx = torch.arange(n).repeat(n)[keep]
    weights = pair_weights.reshape(-1)[keep]
    prior = problem.prior_logp()
    table = problem.prior.clone().requires_grad_(True)
    opt = torch.optim.Adam([table], lr=config.lr)
    history = []
    for step in range(config.steps):
        frac = step / max(config.steps - 1, 1)
        for group in opt.param_groups:
            group["lr"] = config.lr + frac * (config.lr_final - config.lr)
        logp = problem.logp_tok(table).sum(1)
        loss = (weights * pair_loss(logp[w_idx], logp[l_idx], prior[w_idx], prior[l_idx])).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
        history.append(float(loss.detach()))
    return table.detach(), history


# ---------------------------------------------------------------------------------------------
# The bridge report
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BridgeConfig:
    """Settings of :func:`bridge_report`.

    Attributes:
        vocab: toy vocabulary size ``V``.
        length: toy sequence length ``L``.
        seed: seed of the random prior and reward (and of the samplers).
        omega_prime: residual coefficient on the prior (different from ``alpha_hat``).
        alpha_hat: residual temperature.
        beta: KL / DPO coefficient (``omega' = alpha_hat = beta``).
        pg: settings of the exact policy gradient.
        pg_sampled: settings of the sampled policy gradient.
        dpo: settings of the DPO-family training.
        dpo_pairs: number of sampled preference pairs for the sampled DPO version.
    """

    vocab: int = 3
    length: int = 3
    seed: int = 0
    omega_prime: float = 0.5
    alpha_hat: float = 1.0
    beta: float = 0.5
    pg: PGConfig = PGConfig()
    pg_sampled: PGConfig = PGConfig(steps=1000, lr=0.05, lr_final=0.0, samples=4096)
    dpo: DPOConfig = DPOConfig()
    dpo_pairs: int = 1_000_000


def bridge_report(config: BridgeConfig = BridgeConfig()) -> dict[str, float]:
    """Run every route to the closed-form target on one toy and measure how close each gets.

    Returns:
        Total-variation distances to the relevant closed-form target (``*_tv``), the distance
        of the prior itself (for scale), and two identity checks (``*_max_abs_diff``: the largest
        difference between two trajectories that must coincide exactly).
    """
    c = config
    problem = make_toy(c.vocab, c.length, seed=c.seed)
    target_res = problem.target(c.omega_prime, c.alpha_hat)
    target_kl = problem.target(c.beta, c.beta)
    target_greedy = problem.target(0.0, c.alpha_hat)

    dist = problem.probs
    out: dict[str, float] = {"prior_tv": total_variation(dist(problem.prior), target_res)}

    res, _ = train_policy_gradient(
        problem, "residual", c.pg, omega_prime=c.omega_prime, alpha_hat=c.alpha_hat
    )
    out["residual_pg_exact_tv"] = total_variation(dist(res), target_res)
    greedy, _ = train_policy_gradient(problem, "greedy", c.pg, alpha_hat=c.alpha_hat)
    out["greedy_pg_exact_tv"] = total_variation(dist(greedy), target_greedy)
    kl, kl_hist = train_policy_gradient(problem, "kl", c.pg, beta=c.beta)
    out["kl_pg_exact_tv"] = total_variation(dist(kl), target_kl)
    res_eq, res_eq_hist = train_policy_gradient(
        problem, "residual", c.pg, omega_prime=c.beta, alpha_hat=c.beta
    )
    out["kl_vs_residual_max_abs_diff"] = max(
        float((kl - res_eq).abs().max()),
        max(abs(a - b) for a, b in zip(kl_hist, res_eq_hist, strict=True)),
    )
    sampled, _ = train_policy_gradient(
        problem, "residual", c.pg_sampled, omega_prime=c.omega_prime, alpha_hat=c.alpha_hat
    )
    out["residual_pg_sampled_tv"] = total_variation(dist(sampled), target_res)

    exact_w = bradley_terry_weights(problem.r_R)
    sampled_w = sample_preference_weights(problem.r_R, c.dpo_pairs, seed=c.seed)
    decoupled = partial(decoupled_dpo_loss, omega_prime=c.omega_prime, alpha_hat=c.alpha_hat)
    ddpo, _ = train_dpo(problem, exact_w, decoupled, c.dpo)
    out["decoupled_dpo_exact_tv"] = total_variation(dist(ddpo), target_res)
    ddpo_s, _ = train_dpo(problem, sampled_w, decoupled, c.dpo)
    out["decoupled_dpo_sampled_tv"] = total_variation(dist(ddpo_s), target_res)
    dpo, dpo_hist = train_dpo(problem, exact_w, partial(dpo_loss, beta=c.beta), c.dpo)
    out["dpo_exact_tv"] = total_variation(dist(dpo), target_kl)
    ddpo_b, ddpo_b_hist = train_dpo(
        problem, exact_w, partial(decoupled_dpo_loss, omega_prime=c.beta, alpha_hat=c.beta), c.dpo
    )
    out["dpo_vs_decoupled_max_abs_diff"] = max(
        float((dpo - ddpo_b).abs().max()),
        max(abs(a - b) for a, b in zip(dpo_hist, ddpo_b_hist, strict=True)),
    )
    return out
