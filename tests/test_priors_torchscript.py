"""TorchScript deploy exports as priors: read without running them, exact, refusals that say why.

Every archive is made here by ``torch.jit.script(module).save`` (or ``torch.jit.trace``) of the
exporter modules below, shaped like Isaac Lab's ``_TorchPolicyExporter``, rsl-rl's
``_TorchMLPModel`` and unitree_rl_gym's ``PolicyExporterLSTM``. The tests compare the prior's
deterministic action with the scripted module's own ``forward`` (``torch.jit.load`` of the files
the tests made is the oracle; tailor itself never calls it).
"""

from __future__ import annotations

import copy
import os
import pickle
import re
import zipfile
from pathlib import Path

import pytest
import torch
from torch import nn

from tailor.cli import main
from tailor.errors import TailorError
from tailor.priors import PolicyPrior, load_prior
from tailor.priors import torchscript as ts
from tailor.priors.detect import detect_format

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.*:DeprecationWarning")


class PolicyExporter(nn.Module):
    """Isaac Lab's ``_TorchPolicyExporter`` (feed-forward): ``actor(normalizer(x))``."""

    def __init__(self, actor: nn.Module, normalizer: nn.Module | None = None) -> None:
        super().__init__()
        self.is_recurrent = False
        self.actor = copy.deepcopy(actor)
        self.normalizer = copy.deepcopy(normalizer) if normalizer else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.actor(self.normalizer(x))

    @torch.jit.export
    def reset(self) -> None:
        pass


class PolicyExporterLSTM(nn.Module):
    """unitree_rl_gym's recurrent exporter: LSTM ``memory`` + ``actor`` MLP, state buffers."""

    def __init__(self, actor: nn.Module, memory: nn.Module) -> None:
        super().__init__()
        self.actor = copy.deepcopy(actor)
        self.is_recurrent = True
        self.memory = copy.deepcopy(memory)
        self.register_buffer("hidden_state", torch.zeros(1, 1, 8))
        self.register_buffer("cell_state", torch.zeros(1, 1, 8))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, (h, c) = self.memory(x.unsqueeze(0), (self.hidden_state, self.cell_state))
        self.hidden_state[:] = h
        self.cell_state[:] = c
        return self.actor(out.squeeze(0))


class ClampedExporter(nn.Module):
    """An exporter whose forward computes more than its sub-modules: not read as an MLP."""

    def __init__(self, actor: nn.Module) -> None:
        super().__init__()
        self.actor = copy.deepcopy(actor)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.clamp(self.actor(x), -0.5, 0.5)


class ActorCriticMLP(nn.Module):
    """legged_gym-style scripted actor-critic: ``actor(torch.detach(obs))``, a critic beside it,
    and its own ``std`` parameter (``log_std=True``: stores ``log_std`` instead)."""

    def __init__(self, actor: nn.Module, std: torch.Tensor, log_std: bool = False) -> None:
        super().__init__()
        self.actor = copy.deepcopy(actor)
        self.critic = nn.Sequential(nn.Linear(7, 4), nn.ELU(), nn.Linear(4, 1))
        name = "log_std" if log_std else "std"
        self.register_parameter(name, nn.Parameter(std.log() if log_std else std.clone()))

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        return self.actor(torch.detach(observations))


def mlp(
    obs: int = 5, act: int = 3, activation: type[nn.Module] = nn.ELU, seed: int = 0
) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(obs, 16), activation(), nn.Linear(16, 8), activation(), nn.Linear(8, act)
    )


def rsl_normalizer(dim: int = 5) -> nn.Module:
    pytest.importorskip("rsl_rl")
    from rsl_rl.modules.normalization import EmpiricalNormalization

    norm = EmpiricalNormalization(dim)
    norm.train()
    gen = torch.Generator().manual_seed(1)
    for _ in range(3):
        norm.update(torch.randn(64, dim, generator=gen) * 3 + 1)
    return norm.eval()


def script(module: nn.Module, path: Path, trace: bool = False) -> Path:
    module.eval()
    if trace:
        obs_dim = next(m for m in module.modules() if isinstance(m, nn.Linear)).in_features
        torch.jit.trace(module, torch.zeros(1, obs_dim)).save(str(path))
    else:
        torch.jit.script(module).save(str(path))
    return path


def assert_matches_forward(path: Path, prior: PolicyPrior, obs_dim: int) -> None:
    obs = torch.randn(64, obs_dim, generator=torch.Generator().manual_seed(2)) * 3
    oracle = torch.jit.load(str(path))  # only on files this test wrote
    with torch.no_grad():
        expected = oracle(obs)
        got = prior.act(obs, deterministic=True)
    torch.testing.assert_close(got.double(), expected.double(), rtol=0, atol=1e-6)


@pytest.mark.parametrize("trace", [False, True], ids=["script", "trace"])
@pytest.mark.parametrize("normalized", [False, True], ids=["identity", "normalizer"])
@pytest.mark.parametrize("activation", [nn.ELU, nn.Tanh], ids=["elu", "tanh"])
def test_isaac_export_matches_forward(
    tmp_path: Path, activation: type[nn.Module], normalized: bool, trace: bool
) -> None:
    norm = rsl_normalizer() if normalized else None
    path = script(PolicyExporter(mlp(activation=activation), norm), tmp_path / "policy.pt", trace)
    assert detect_format(path) == "torchscript"
    prior = load_prior(path, 5, 3, "t", std=0.3)
    assert isinstance(prior, PolicyPrior)
    assert_matches_forward(path, prior, 5)
    meta = prior.meta
    assert meta["source"]["format"] == "torchscript"
    assert meta["source"]["root_class"].endswith("PolicyExporter")
    assert meta["source"]["modules"]["actor.0"] == "torch.nn.modules.linear.Linear"
    assert meta["activation"] == activation.__name__.lower()
    assert meta["architecture"]["hidden"] == [16, 8]
    kind = meta["obs_normalizer"]["kind"]
    assert kind == ("rsl-rl EmpiricalNormalization" if normalized else "none")
    if normalized:
        assert meta["obs_normalizer"]["eps"] == pytest.approx(1e-2)
    # The Gaussian around the export's action has the given std.
    obs = torch.randn(4, 5)
    action = prior.act(obs) + 0.1
    expected = torch.distributions.Normal(prior.act(obs), 0.3).log_prob(action).sum(-1)
    torch.testing.assert_close(prior.log_prob(obs, action), expected)


def test_rsl_rl_export_matches_forward(tmp_path: Path) -> None:
    """rsl-rl 5's ``export_policy_to_jit`` module (``obs_normalizer``, ``mlp``,
    ``deterministic_output``)."""
    pytest.importorskip("rsl_rl")
    from rsl_rl.models import MLPModel
    from tensordict import TensorDict

    torch.manual_seed(0)
    batch = TensorDict({"policy": torch.randn(64, 5) * 3 + 1}, batch_size=[64])
    gaussian = {"class_name": "rsl_rl.modules.distribution:GaussianDistribution"}
    kwargs = {"hidden_dims": [16, 8], "obs_normalization": True, "distribution_cfg": gaussian}
    model = MLPModel(batch, {"actor": ["policy"]}, "actor", 3, **kwargs)
    model.train().update_normalization(batch)
    path = script(model.eval().as_jit(), tmp_path / "policy.pt")
    prior = load_prior(path, std=[0.1, 0.2, 0.3])
    assert_matches_forward(path, prior, 5)
    assert prior.meta["source"]["library"] == "rsl-rl export_policy_to_jit"
    torch.testing.assert_close(prior.actor.log_std.exp(), torch.tensor([0.1, 0.2, 0.3]))


def test_plain_sequential_export(tmp_path: Path) -> None:
    path = script(mlp(activation=nn.Tanh), tmp_path / "seq.pt")
    prior = load_prior(path, std=0.5)
    assert_matches_forward(path, prior, 5)
    assert prior.meta["obs_normalizer"]["kind"] == "none"


@pytest.mark.parametrize("log_std", [False, True], ids=["std", "log_std"])
def test_scripted_actor_critic_gives_its_stored_std(tmp_path: Path, log_std: bool) -> None:
    std = torch.tensor([0.08, 0.2, 0.07])
    path = script(ActorCriticMLP(mlp(), std, log_std), tmp_path / "model_4000_jit.pt")
    prior = load_prior(path)  # no std given: the archive's own
    assert_matches_forward(path, prior, 5)
    torch.testing.assert_close(prior.actor.log_std.exp(), std, rtol=1e-6, atol=0)
    assert "ActorCriticMLP" in prior.meta["distribution"]["std"]
    given = load_prior(path, std=0.5)  # a given std overrides it, and the meta says so
    torch.testing.assert_close(given.actor.log_std.exp(), torch.full((3,), 0.5))
    assert "overrides" in given.meta["distribution"]["std"]
    wrong = script(ActorCriticMLP(mlp(), torch.tensor([0.1, 0.2])), tmp_path / "wrong.pt")
    with pytest.raises(TailorError, match=r"stored std has 2 entries.*3 actions"):
        load_prior(wrong)
    extra = ActorCriticMLP(mlp(), std)
    extra.register_buffer("gain", torch.ones(3))  # a tensor the forward may use: not an MLP export
    extra_path = script(extra, tmp_path / "extra.pt")
    with pytest.raises(TailorError, match=r"holds tensors of its own \(std, gain\)"):
        load_prior(extra_path)


def test_missing_std_says_prior_std(tmp_path: Path) -> None:
    path = script(PolicyExporter(mlp()), tmp_path / "policy.pt")
    with pytest.raises(TailorError, match=r"TorchScript deploy export.*--prior-std SIGMA"):
        load_prior(path)
    with pytest.raises(TailorError, match="one positive number or 3"):
        load_prior(path, std=[0.1, 0.2])


def test_recurrent_export_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = script(PolicyExporterLSTM(mlp(obs=8), nn.LSTM(5, 8)), tmp_path / "motion.pt")
    assert detect_format(path) == "torchscript"
    expected = (
        f"{str(path)!r} is a TorchScript export of a recurrent policy (PolicyExporterLSTM: "
        "LSTM memory + actor MLP); tailor customizes feed-forward policies only"
    )
    with pytest.raises(TailorError) as err:
        load_prior(path, std=0.2)
    assert str(err.value).startswith(expected)
    assert "model_*.pt" in str(err.value)
    assert main(["inspect", str(path), "--prior-std", "0.2"]) == 2
    out = capsys.readouterr()
    assert f"error: {expected}" in out.err
    assert "weights_only" not in out.err + out.out and "Traceback" not in out.err


def test_gru_export_refused(tmp_path: Path) -> None:
    path = script(PolicyExporterLSTM(mlp(obs=8), nn.LSTM(5, 8)), tmp_path / "motion.pt")
    root, _, _ = ts.read_torchscript(path)
    assert [m.name for _, m in root.children()] == ["Sequential", "LSTM"]
    gru = nn.Sequential(nn.GRU(5, 8))
    path = script(gru, tmp_path / "gru.pt")
    with pytest.raises(TailorError, match=r"recurrent policy \(Sequential: GRU 0\)"):
        load_prior(path, std=0.2)


def test_hostile_data_pkl_refused_nothing_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "evil.pt"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("evil/data.pkl", pickle.dumps(Evil(), protocol=2))
        z.writestr("evil/code/__torch__/m.py", "class M(Module):\n  pass\n")
        z.writestr("evil/constants.pkl", pickle.dumps((), protocol=2))
        z.writestr("evil/version", "3\n")
    assert detect_format(path) == "torchscript"
    with pytest.raises(TailorError, match=rf"refusing to unpickle {os.name}\.system"):
        load_prior(path, std=0.2)
    assert main(["inspect", str(path), "--prior-std", "0.2"]) == 2
    assert f"refusing to unpickle {os.name}.system" in capsys.readouterr().err
    assert not marker.exists()


def test_oversized_members_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = script(PolicyExporter(mlp()), tmp_path / "policy.pt")
    monkeypatch.setattr(ts, "MAX_TENSOR_BYTES", 200)  # the first weight is 16 * 5 * 4 = 320 B
    with pytest.raises(TailorError, match="too large"):
        ts.read_torchscript(path)
    monkeypatch.setattr(ts, "MAX_PICKLE_BYTES", 100)
    with pytest.raises(TailorError, match=r"data\.pkl is too large"):
        ts.read_torchscript(path)


def test_structure_not_mlp_names_modules(tmp_path: Path) -> None:
    path = script(ClampedExporter(mlp()), tmp_path / "clamped.pt")
    with pytest.raises(
        TailorError,
        match=r"forward of ClampedExporter is not a chain .*actor \(Sequential\).*What works",
    ):
        load_prior(path, std=0.2)
    conv = PolicyExporter(nn.Sequential(nn.Conv1d(1, 2, 3), nn.Flatten(), nn.Linear(6, 2)))
    path = script(conv, tmp_path / "conv.pt")
    with pytest.raises(TailorError, match=r"Found: .*actor\.0: torch\.nn\.modules\.conv\.Conv1d"):
        load_prior(path, std=0.2)
    odd = nn.Sequential(nn.Linear(5, 4), nn.ELU(alpha=0.5), nn.Linear(4, 2))
    with pytest.raises(TailorError, match=re.escape("ELU with {'alpha': 0.5}")):
        load_prior(script(odd, tmp_path / "alpha.pt"), std=0.2)
    squashed = nn.Sequential(nn.Linear(5, 4), nn.ELU(), nn.Linear(4, 2), nn.Tanh())
    with pytest.raises(TailorError, match="does not end with a Linear"):
        load_prior(script(squashed, tmp_path / "tanh.pt"), std=0.2)


def test_torch_load_never_suggests_weights_only_false(tmp_path: Path) -> None:
    path = script(PolicyExporter(mlp()), tmp_path / "policy.pt")
    with pytest.raises(TailorError) as err:
        load_prior(path, format="rsl_rl")
    assert "TorchScript export" in str(err.value) and "weights_only" not in str(err.value)


def test_cli_inspect_and_customize(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The import path end to end: ``tailor inspect`` and a short customization of pointmass
    (observations 4, actions 2) from a scripted MLP."""
    (tmp_path / "prior").mkdir()
    exporter = PolicyExporter(mlp(obs=4, act=2, activation=nn.Tanh))
    path = script(exporter, tmp_path / "prior" / "ts.pt")
    assert main(["inspect", str(path), "--prior-std", "0.2", "--task", "pointmass"]) == 0
    out = capsys.readouterr().out
    assert "torchscript" in out and "hidden [16, 8], tanh" in out
    assert main(["inspect", str(path)]) == 0  # described; what it needs to be a prior said
    assert "deterministic: a prior only with --prior-std" in capsys.readouterr().out
    bare = ["customize", "--task", "pointmass", "--prior", str(path), "--steps", "512"]
    assert main([*bare, "--out", str(tmp_path / "x"), "--no-progress"]) == 2
    assert "--prior-std SIGMA" in capsys.readouterr().err  # a prior needs it
    run = tmp_path / "run"
    args = ["customize", "--task", "pointmass", "--method", "residual", "--prior", str(path)]
    args += ["--prior-std", "0.3", "--steps", "2048", "--out", str(run), "--no-progress"]
    assert main(args) == 0
    assert (run / "policy.safetensors").is_file()
    customized = load_prior(run)
    assert (customized.obs_dim, customized.act_dim) == (4, 2)
    assert bool(torch.isfinite(customized.act(torch.randn(8, 4))).all())
