"""Malformed and hostile foreign files: every one ends in a TailorError (CLI: ``error:``, exit 2),
never another exception, never a huge allocation (:mod:`tailor.priors.validate`).

The files are written by hand here (an SB3 zip is a JSON ``data`` member beside a
``torch.save``'d ``policy.pth``), so nothing needs SB3 or rsl-rl and the whole file runs in a
few seconds; hypothesis mutates valid files field by field.
"""

from __future__ import annotations

import io
import json
import time
import warnings
import zipfile
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tailor.cli import main
from tailor.errors import TailorError
from tailor.experiments import run
from tailor.priors import load_prior
from tailor.priors import validate as validate_mod
from test_cli_fuzz import FUZZ as CLI_FUZZ

FUZZ = settings(CLI_FUZZ, max_examples=150)
OBS, HID, ACT = 3, 4, 2
BOX = "<class 'gymnasium.spaces.box.Box'>"


def sb3_data() -> dict[str, Any]:
    """SB3 PPO's ``data`` with the fields tailor reads (a Box(3) -> Box(2) MlpPolicy)."""
    return {
        "policy_class": {
            ":type:": "<class 'abc.ABCMeta'>",
            "__module__": "stable_baselines3.common.policies",
            "__init__": "<function ActorCriticPolicy.__init__ at 0x7f>",
        },
        "policy_kwargs": {"net_arch": [HID], "activation_fn": "<class 'torch.nn.Tanh'>"},
        "observation_space": {":type:": BOX, "_shape": [OBS], "low": "-inf", "high": "inf"},
        "action_space": {":type:": BOX, "_shape": [ACT], "low": "-1.0", "high": "1.0"},
        "use_sde": False,
        "clip_range": {":type:": "<class 'function'>"},
    }


def mlp(hidden: str, head: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """An OBS -> HID -> ACT network's two Linear layers, named ``hidden`` and ``head``."""
    g = torch.Generator().manual_seed(seed)
    return {
        f"{hidden}.weight": torch.randn(HID, OBS, generator=g),
        f"{hidden}.bias": torch.zeros(HID),
        f"{head}.weight": torch.randn(ACT, HID, generator=g),
        f"{head}.bias": torch.zeros(ACT),
    }


def sb3_state() -> dict[str, Any]:
    return {**mlp("mlp_extractor.policy_net.0", "action_net"), "log_std": torch.zeros(ACT)}


def _saved(obj: Any) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def write_sb3(path: Path, data: Any, state: Any, raw_data: bytes | None = None) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("data", raw_data if raw_data is not None else json.dumps(data))
        z.writestr("policy.pth", _saved(state))
        z.writestr("_stable_baselines3_version", "2.3.0")
    return path


def rsl_rl_ckpt() -> dict[str, Any]:
    return {
        "model_state_dict": {
            **mlp("actor.0", "actor.2", 1),
            "std": torch.ones(ACT),
            "actor_obs_normalizer._mean": torch.zeros(OBS),
            "actor_obs_normalizer._std": torch.ones(OBS),
            "actor_obs_normalizer.count": torch.tensor(10),
        },
        "iter": 3,
    }


def cleanrl_state() -> dict[str, Any]:
    return {**mlp("actor_mean.0", "actor_mean.2", 2), "actor_logstd": torch.zeros(1, ACT)}


def skrl_ckpt() -> dict[str, Any]:
    return {
        "policy": {
            **mlp("net_container.0", "policy_layer", 3),
            "log_std_parameter": torch.zeros(ACT),
        },
        "state_preprocessor": {
            "running_mean": torch.zeros(OBS),
            "running_variance": torch.ones(OBS),
            "current_count": torch.tensor(5.0),
        },
    }


def _load(path: Path, **options: Any) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_prior(path, **options)


def _only_tailor_errors(path: Path, budget_s: float = 5.0, **options: Any) -> None:
    start = time.monotonic()
    try:
        _load(path, **options)
    except TailorError:
        pass
    assert time.monotonic() - start < budget_s


def test_the_valid_hand_written_files_load(tmp_path: Path) -> None:
    write_sb3(tmp_path / "m.zip", sb3_data(), sb3_state())
    torch.save(rsl_rl_ckpt(), tmp_path / "rsl.pt")
    torch.save(cleanrl_state(), tmp_path / "cleanrl.pt")
    torch.save(skrl_ckpt(), tmp_path / "skrl.pt")
    assert _load(tmp_path / "m.zip").act_dim == ACT
    assert _load(tmp_path / "rsl.pt", activation="elu").obs_dim == OBS
    assert _load(tmp_path / "cleanrl.pt").act_dim == ACT
    assert _load(tmp_path / "skrl.pt", activation="elu").act_dim == ACT


# --- hypothesis: malformed SB3 data and state dicts ------------------------------------------

JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=6,
)
SB3_FIELDS = [
    ("policy_class",),
    ("policy_kwargs",),
    ("policy_kwargs", "net_arch"),
    ("policy_kwargs", "activation_fn"),
    ("observation_space",),
    ("observation_space", "_shape"),
    ("observation_space", ":type:"),
    ("action_space",),
    ("action_space", "_shape"),
    ("action_space", "low"),
    ("action_space", "n"),
    ("use_sde",),
    ("ent_coef",),
]
TENSORS = st.one_of(
    st.just(torch.zeros(0)),
    st.just(torch.zeros(7, 5)),
    st.just(torch.ones(ACT, HID, dtype=torch.complex64)),
    st.just(torch.ones(ACT, HID, dtype=torch.int64)),
    st.just(torch.full((ACT,), float("nan"))),
    st.floats(allow_nan=True) | st.integers() | st.none() | st.text(max_size=3),
    st.lists(st.floats(-2, 2), max_size=4).map(torch.tensor),
)


@FUZZ
@given(
    field=st.sampled_from(SB3_FIELDS),
    value=JSON,
    whole=st.sampled_from([None, [], "null", "a string", 5]),
)
def test_malformed_sb3_data_is_a_tailor_error(tmp_path: Path, field, value, whole) -> None:
    data: Any = sb3_data()
    target = data
    for key in field[:-1]:
        target = target[key]
    target[field[-1]] = value
    if whole is not None and value is None:  # now and then the whole data is not an object
        data = whole
    _only_tailor_errors(write_sb3(tmp_path / "m.zip", data, sb3_state()))


@FUZZ
@given(
    key=st.sampled_from([*sb3_state(), 7, "extra"]),
    value=TENSORS,
    drop=st.booleans(),
)
def test_malformed_sb3_weights_are_a_tailor_error(tmp_path: Path, key, value, drop) -> None:
    state: dict[Any, Any] = sb3_state()
    if drop and key in state:
        del state[key]
    else:
        state[key] = value
    _only_tailor_errors(write_sb3(tmp_path / "m.zip", sb3_data(), state))


def _mutate(obj: dict[str, Any], path: tuple[Any, ...], value: Any, drop: bool) -> None:
    for key in path[:-1]:
        obj = obj[key]
    if drop:
        obj.pop(path[-1], None)
    else:
        obj[path[-1]] = value


def _paths(ckpt: dict[str, Any]) -> list[tuple[Any, ...]]:
    out: list[tuple[Any, ...]] = []
    for key, value in ckpt.items():
        out.append((key,))
        if isinstance(value, dict):
            out += [(key, k) for k in value] + [(key, 5)]
    return out


TORCH_FILES = {
    "rsl_rl": (rsl_rl_ckpt, {"activation": "elu"}),
    "cleanrl": (cleanrl_state, {}),
    "skrl": (skrl_ckpt, {"activation": "elu"}),
}


@FUZZ
@given(
    fmt=st.sampled_from(sorted(TORCH_FILES)),
    index=st.integers(0, 100),
    value=TENSORS,
    drop=st.booleans(),
)
def test_malformed_torch_state_dicts_are_a_tailor_error(
    tmp_path: Path, fmt: str, index: int, value, drop: bool
) -> None:
    make, options = TORCH_FILES[fmt]
    ckpt = make()
    paths = _paths(ckpt)
    _mutate(ckpt, paths[index % len(paths)], value, drop)
    torch.save(ckpt, tmp_path / "ckpt.pt")
    _only_tailor_errors(tmp_path / "ckpt.pt", format=fmt, **options)


# --- explicit cases ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("edit", "needle"),
    [
        (lambda d: d.update(policy_kwargs=[1, 2]), "policy_kwargs"),
        (
            lambda d: d["action_space"].update(
                {":type:": "<class 'gym.spaces.discrete.Discrete'>"}
            ),
            "action_space.n",
        ),
        (
            lambda d: d["action_space"].update(
                {":type:": "<class 'gym.spaces.discrete.Discrete'>", "n": "many"}
            ),
            "action_space.n is 'many'",
        ),
        (lambda d: d.update(use_sde="yes"), "use_sde"),
        (lambda d: d["observation_space"].update(_shape=[1e300]), "shape"),
        (lambda d: d.pop("policy_class"), "policy_class"),
    ],
)
def test_named_sb3_data_faults(tmp_path: Path, edit, needle: str) -> None:
    data = sb3_data()
    edit(data)
    with pytest.raises(TailorError, match=needle):
        _load(write_sb3(tmp_path / "m.zip", data, sb3_state()))


@pytest.mark.parametrize("raw", [b"[]", b"null", b'"a string"', b"[" * 100_000, b"\xff"])
def test_sb3_data_that_is_not_an_object(tmp_path: Path, raw: bytes) -> None:
    with pytest.raises(TailorError, match="'data'"):
        _load(write_sb3(tmp_path / "m.zip", None, sb3_state(), raw_data=raw))


@pytest.mark.parametrize(
    ("key", "value", "needle"),
    [
        ("action_net.weight", torch.zeros(ACT, HID, dtype=torch.complex64), "complex"),
        ("action_net.bias", torch.zeros(ACT + 1), "action_net.bias"),
        ("action_net.weight", torch.zeros(ACT, HID + 1), "inputs"),
        ("log_std", 0.5, "not a tensor"),
        (3, torch.zeros(1), "not a string"),
    ],
)
def test_named_sb3_weight_faults(tmp_path: Path, key, value, needle: str) -> None:
    state = sb3_state()
    state[key] = value
    with pytest.raises(TailorError, match=needle):
        _load(write_sb3(tmp_path / "m.zip", sb3_data(), state))


def test_empty_log_ent_coef_is_an_error(tmp_path: Path) -> None:
    data = sb3_data()
    data["policy_class"] = {
        "__module__": "stable_baselines3.sac.policies",
        "__init__": "<function SACPolicy.__init__ at 0x1>",
    }
    data["ent_coef"] = "auto"
    state = {**mlp("actor.latent_pi.0", "actor.mu"), **mlp("actor.latent_pi.0", "actor.log_std")}
    path = write_sb3(tmp_path / "sac.zip", data, state)
    assert _load(path).act_dim == ACT  # no pytorch_variables.pth: no temperature, still a prior
    with zipfile.ZipFile(path, "a") as z:
        z.writestr("pytorch_variables.pth", _saved({"log_ent_coef": torch.zeros(0)}))
    with pytest.raises(TailorError, match="log_ent_coef"):
        _load(path)


def _bomb(path: Path, size: int, name: str = "policy.pth") -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("data", json.dumps(sb3_data()))
        with z.open(name, "w", force_zip64=True) as f:
            chunk = bytes(1 << 20)
            for _ in range(size >> 20):
                f.write(chunk)
    return path


def test_zip_bomb_is_refused_before_inflating(tmp_path: Path, monkeypatch) -> None:
    """A member that declares more than the limit (lowered here, to keep the file small) is
    refused from the zip's directory; so is one compressed ~1000 times (zeros)."""
    monkeypatch.setattr(validate_mod, "MAX_MEMBER_BYTES", 8 << 20)
    path = _bomb(tmp_path / "bomb.zip", 16 << 20)
    start = time.monotonic()
    with pytest.raises(TailorError, match="declares 16777216 bytes"):
        _load(path)
    assert main(["inspect", str(path)]) == 2
    assert time.monotonic() - start < 2.0
    monkeypatch.setattr(validate_mod, "MAX_MEMBER_BYTES", 1 << 30)
    with pytest.raises(TailorError, match="zip bomb"):
        _load(path)
    torch_bomb = _bomb(tmp_path / "bomb.pt", 4 << 20, name="archive/data.pkl")
    with pytest.raises(TailorError, match="zip bomb"):
        _load(torch_bomb)


def test_too_many_members_and_a_member_that_lies(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(validate_mod, "MAX_MEMBERS", 3)
    path = write_sb3(tmp_path / "m.zip", sb3_data(), sb3_state())
    with zipfile.ZipFile(path, "a") as z:
        z.writestr("extra", b"x")
    with pytest.raises(TailorError, match="4 members"):
        _load(path)
    monkeypatch.setattr(validate_mod, "MAX_MEMBERS", 10_000)
    with zipfile.ZipFile(path) as z:
        info = z.getinfo("data")
        info.file_size = 10  # the directory says 10 bytes; the member inflates to more
        with pytest.raises((TailorError, zipfile.BadZipFile)):
            validate_mod.read_member(z, "data", "test")


@pytest.mark.parametrize(
    ("fmt", "path", "value", "needle"),
    [
        ("rsl_rl", ("model_state_dict", 3), torch.zeros(1), "not a string"),
        ("rsl_rl", ("model_state_dict", "std"), 0.5, "not a tensor"),
        ("rsl_rl", ("model_state_dict", "actor_obs_normalizer._std"), None, "no 'actor_obs"),
        ("rsl_rl", ("model_state_dict", "actor.2.weight"), torch.zeros(ACT, HID + 1), "inputs"),
        ("cleanrl", ("actor_logstd",), 1.0, "not a tensor"),
        ("cleanrl", ("actor_mean.2.bias",), torch.zeros(5), "actor_mean.2.bias"),
        ("skrl", ("state_preprocessor", "running_variance"), None, "running_variance"),
        ("skrl", ("policy", "policy_layer.weight"), torch.zeros(ACT, HID + 2), "inputs"),
    ],
)
def test_named_state_dict_faults(tmp_path: Path, fmt: str, path, value, needle: str) -> None:
    make, options = TORCH_FILES[fmt]
    ckpt = make()
    _mutate(ckpt, path, value, drop=value is None)
    torch.save(ckpt, tmp_path / "c.pt")
    with pytest.raises(TailorError, match=needle):
        _load(tmp_path / "c.pt", **options)


def test_agent_yaml_with_wrong_types(tmp_path: Path) -> None:
    (tmp_path / "params").mkdir()
    (tmp_path / "params" / "agent.yaml").write_text(
        "policy:\n  activation: elu\n  actor_hidden_dims: [abc]\n"
    )
    torch.save(rsl_rl_ckpt(), tmp_path / "model_1.pt")
    with pytest.raises(TailorError, match="actor_hidden_dims"):
        _load(tmp_path / "model_1.pt")


@pytest.mark.parametrize("fmt", ["sb3", "rsl_rl", "cleanrl", "skrl"])
def test_non_finite_weights_are_refused_by_load_inspect_and_export(
    tmp_path: Path, fmt: str, capsys
) -> None:
    if fmt == "sb3":
        state = sb3_state()
        state["action_net.weight"][0, 0] = float("nan")
        path = write_sb3(tmp_path / "m.zip", sb3_data(), state)
    else:
        make, _ = TORCH_FILES[fmt]
        ckpt = make()
        sd = {"rsl_rl": ckpt.get("model_state_dict"), "skrl": ckpt.get("policy")}.get(fmt, ckpt)
        next(v for k, v in sd.items() if k.endswith("weight"))[0, 0] = float("inf")
        path = tmp_path / "c.pt"
        torch.save(ckpt, path)
    flags = [] if fmt in ("sb3", "cleanrl") else ["--prior-activation", "elu"]
    with pytest.raises(TailorError, match="NaN or infinite"):
        _load(path, **({"activation": "elu"} if flags else {}))
    capsys.readouterr()
    assert main(["inspect", str(path), *flags]) == 2
    assert "error:" in capsys.readouterr().err
    out = tmp_path / "out.onnx"
    assert main(["export", str(path), "--format", "onnx", "--out", str(out), *flags]) == 2
    assert "NaN or infinite" in capsys.readouterr().err


def test_cli_inspect_bad_file_exits_2(tmp_path: Path, capsys) -> None:
    data = sb3_data()
    data["policy_kwargs"] = [1]
    path = write_sb3(tmp_path / "bad.zip", data, sb3_state())
    assert main(["inspect", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "Traceback" not in err


def test_python_api_names_the_bad_argument(tmp_path: Path) -> None:
    out = str(tmp_path / "run")
    cases = [
        (lambda: load_prior(12), "path must be"),
        (lambda: load_prior(tmp_path / "x.zip", obs_dim="4", act_dim=1), "obs_dim"),
        (lambda: load_prior(tmp_path / "x.zip", temperature="hot"), "temperature"),
        (lambda: load_prior(tmp_path / "x.zip", std=[1.0, -1.0]), "std"),
        (lambda: run.train_prior("pointmass", "ppo", 100, "zero", out, log=None), "seed"),
        (lambda: run.train_prior("pointmass", "ppo", -1, 0, out, log=None), "steps"),
        (lambda: run.customize("pointmass", "ppo", None, 100, 0, out, log=None), "prior"),
        (lambda: run.customize("pointmass", "ppo", "p", 100, "zero", out, log=None), "seed"),
        (
            lambda: run.customize(
                "pointmass", "ppo", "p", 100, 0, out, log=None, prior_options=[1]
            ),
            "prior_options",
        ),
        (
            lambda: run.customize(
                "pointmass", "ppo", "p", 100, 0, out, log=None, prior_options={"bogus": 1}
            ),
            "bogus",
        ),
        (lambda: run.evaluate("p", seed="zero"), "seed"),
        (lambda: run.evaluate(None), "policy"),
        (lambda: run.evaluate("p", prior_options="x"), "prior_options"),
    ]
    for call, needle in cases:
        with pytest.raises(TailorError, match=needle):
            call()


def test_lm_tokenizer_pad_id_outside_the_embedding(tmp_path: Path, capsys) -> None:
    """A tokenizer whose pad token is not a row of the model's embedding (a Qwen2 tokenizer
    under transformers 5 beside a smaller model) is refused, naming the token and the size."""
    pytest.importorskip("transformers")
    from tailor.lm.model import (
        PretrainConfig,
        build_char_tokenizer,
        load_model,
        load_tokenizer,
        new_char_model,
        save_model,
    )

    tok = build_char_tokenizer("ab")
    config = PretrainConfig(n_layer=1, n_embd=8, n_head=2, n_positions=8, dropout=0.0)
    model = new_char_model(len(tok), config, tok)
    tok.add_special_tokens({"pad_token": "<outside>"})  # id len(vocab): no embedding row
    save_model(model, tok, tmp_path / "lm")
    with pytest.raises(TailorError, match=r"pad token '<outside>' has id 6, outside .* 6 "):
        load_tokenizer(tmp_path / "lm")
    with pytest.raises(TailorError, match="pad token"):
        load_tokenizer(tmp_path / "lm", model=load_model(tmp_path / "lm"))
    capsys.readouterr()
    assert main(["lm", "sample", "--model", str(tmp_path / "lm"), "--prompt", "a"]) == 2
    assert "pad token" in capsys.readouterr().err


def test_a_parameter_scalar_reads_without_a_warning() -> None:
    """SB3 saves ``log_ent_coef`` as a parameter (requires_grad): read as a number, silently."""
    value = torch.nn.Parameter(torch.tensor([-1.5]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert validate_mod.scalar({"log_ent_coef": value}, "log_ent_coef", "x") == -1.5
