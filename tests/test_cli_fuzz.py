"""Property-based fuzzing of the CLI's numeric arguments: any int, float or text given to a
numeric flag of train / customize / evaluate / verify / demo / lm either works or exits with code
2 and an ``error:`` message; never a traceback.

The commands are kept cheap: each stops before long work, by an output that is refused
(``--out`` onto a file, ``--json`` onto a directory) or a prior that does not exist, after every
number has been checked; argparse checks the flags' types and ranges (``tailor.cli.args``), the
config dataclasses the ``--set`` values (``tailor.algos.configs``).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tailor.cli import main

FUZZ = settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# Numbers of every kind and size, as the text a user would type, plus non-numbers.
VALUES = st.one_of(
    st.integers(-(2**80), 2**80).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["nan", "inf", "-inf", "1e308", "-0", "0x10", "1_000", "", " 3", "2**70"]),
    st.text(max_size=5),
)


def _outcome(capsys, argv: list[str]) -> tuple[int, str]:
    """Run the CLI in-process; argparse's usage errors count as their exit code."""
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 2
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err, (argv, err)
    return code, err


def _assert_works_or_error(capsys, argv: list[str]) -> None:
    code, err = _outcome(capsys, argv)
    assert code in (0, 2), (argv, code, err)
    if code == 2:
        assert "error: " in err or "error:" in err, (argv, err)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("fuzz")
    prior = root / "prior"
    argv = ["train", "--task", "pointmass", "--method", "no-entropy", "--steps", "64"]
    assert (
        main([*argv, "--num-envs", "4", "--num-steps", "16", "--no-progress", "--out", str(prior)])
        == 0
    )
    taken = root / "taken.txt"
    taken.write_text("not a run directory\n")
    return {"prior": prior, "taken": taken, "dir": root}


@FUZZ
@given(
    flag=st.sampled_from(["--seed", "--steps", "--num-envs", "--checkpoint-every", "--alpha"]),
    value=VALUES,
)
def test_train_numeric_flags(capsys, files, flag: str, value: str) -> None:
    argv = ["train", "--task", "pointmass", "--method", "soft", "--steps", "64", "--no-progress"]
    _assert_works_or_error(capsys, [*argv, f"{flag}={value}", "--out", str(files["taken"])])


@FUZZ
@given(
    key=st.sampled_from(["gamma", "lr", "hidden", "batch_size", "seed", "epsilon_end", "tau"]),
    value=VALUES | st.sampled_from(["[-1]", "[0]", "[2.5]", "5", "[]", "NaN", "true", "{}"]),
)
def test_train_set_values(capsys, files, key: str, value: str) -> None:
    algo = "sac" if key == "tau" else "dqn"
    task = "pointmass" if algo == "sac" else "cartpole-centered"
    argv = ["train", "--algo", algo, "--task", task, "--steps", "100", "--set", f"{key}={value}"]
    _assert_works_or_error(capsys, [*argv, "--out", str(files["taken"])])


@FUZZ
@given(
    flag=st.sampled_from(["--omega-prime", "--alpha-hat", "--warmup-fraction", "--seed"]),
    value=VALUES,
)
def test_customize_numeric_flags(capsys, files, flag: str, value: str) -> None:
    argv = ["customize", "--task", "pointmass", "--method", "residual"]
    argv += ["--prior", str(files["prior"]), "--steps", "64", "--no-progress"]
    _assert_works_or_error(capsys, [*argv, f"{flag}={value}", "--out", str(files["taken"])])


@FUZZ
@given(flag=st.sampled_from(["--episodes", "--seed"]), value=VALUES)
def test_evaluate_numeric_flags(capsys, files, flag: str, value: str) -> None:
    argv = ["evaluate", "--policy", str(files["prior"]), f"{flag}={value}"]
    _assert_works_or_error(capsys, [*argv, "--json", str(files["dir"])])  # a directory: refused


@FUZZ
@given(flag=st.sampled_from(["--seed", "--cases-scale"]), value=VALUES)
def test_verify_numeric_flags(capsys, files, flag: str, value: str) -> None:
    _assert_works_or_error(capsys, ["verify", f"{flag}={value}", "--json", str(files["dir"])])


@FUZZ
@given(
    flag=st.sampled_from(
        ["--steps", "--episodes", "--seed", "--workers", "--omega-prime", "--alpha-hat"]
    ),
    value=VALUES,
)
def test_demo_numeric_flags(capsys, files, flag: str, value: str) -> None:
    argv = ["demo", "--prior", str(files["dir"] / "no-such-prior"), f"{flag}={value}"]
    _assert_works_or_error(capsys, [*argv, "--no-verify", "--no-video", "--no-progress"])


@FUZZ
@given(
    flag=st.sampled_from(["--samples", "--seed", "--max-new-tokens", "--examples"]),
    value=VALUES,
)
def test_lm_evaluate_numeric_flags(capsys, files, flag: str, value: str) -> None:
    missing = str(files["dir"] / "no-model")
    argv = ["lm", "evaluate", "--model", missing, "--prior", missing, "--reward", "contains:a"]
    _assert_works_or_error(capsys, [*argv, f"{flag}={value}"])


LM_CUSTOMIZE_FLAGS = (
    *("--steps", "--seed", "--lr", "--batch-size", "--omega-prime", "--beta", "--threads"),
    *("--grad-accum", "--lora-r", "--lora-alpha", "--lora-dropout"),
)


@FUZZ
@given(
    flag=st.sampled_from(LM_CUSTOMIZE_FLAGS),
    value=VALUES,
)
def test_lm_customize_numeric_flags(capsys, files, flag: str, value: str) -> None:
    missing = str(files["dir"] / "no-model")
    argv = ["lm", "customize", "--prior", missing, "--method", "residual", "--reward", "contains:a"]
    _assert_works_or_error(capsys, [*argv, f"{flag}={value}", "--out", str(files["taken"])])


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (
            [
                "train",
                "--task",
                "pointmass",
                "--method",
                "soft",
                "--steps",
                "64",
                f"--seed={2**70}",
            ],
            "--seed: a seed must be an integer in [0, 4294967295]",
        ),
        (["verify", "--seed=-1"], "--seed: a seed must be"),
        (["verify", "--cases-scale=inf"], "--cases-scale: expected a finite number"),
        (
            ["lm", "evaluate", "--model", "m", "--prior", "p", "--examples=-1"],
            "--examples: must be an integer >= 0",
        ),
    ],
)
def test_named_bad_numbers(capsys, argv: list[str], needle: str) -> None:
    code, err = _outcome(capsys, argv)
    assert code == 2 and needle in err, err


@pytest.mark.parametrize(
    ("setting", "needle"),
    [
        ("hidden=[-1]", "SoftDQNConfig.hidden must be a list of positive integers"),
        ("lr=x", "SoftDQNConfig.lr must be a finite number, got 'x'"),
        ("gamma=NaN", "SoftDQNConfig.gamma must be a finite number, got nan"),
        ("gamma=1.5", "SoftDQNConfig.gamma must be >= 0 and <= 1, got 1.5"),
        ("batch_size=true", "SoftDQNConfig.batch_size must be an integer, got True"),
        ("hidden=5", "SoftDQNConfig.hidden must be a list of positive integers"),
        ("seed=-3", "set seed with --seed"),
    ],
)
def test_set_values_are_checked_up_front(capsys, files, setting: str, needle: str) -> None:
    out = files["dir"] / "never"
    argv = ["train", "--algo", "dqn", "--task", "cartpole-centered", "--steps", "5000"]
    code, err = _outcome(capsys, [*argv, "--set", setting, "--out", str(out)])
    assert code == 2 and needle in err, err
    assert not out.exists()


def test_config_dataclasses_check_their_fields() -> None:
    from tailor.algos.mcts import MCTSConfig
    from tailor.algos.sac import SACConfig
    from tailor.algos.soft_dqn import SoftDQNConfig
    from tailor.errors import TailorError

    cases = [
        (SoftDQNConfig, {"seed": 2**70}, "SoftDQNConfig.seed must be >= 0 and <= 4.29497e+09"),
        (SACConfig, {"tau": math.nan}, "SACConfig.tau must be a finite number"),
        (SACConfig, {"init_actor_from_prior": 1}, "must be true or false"),
        (MCTSConfig, {"simulations": 0}, "MCTSConfig.simulations must be >= 1"),
        (MCTSConfig, {"tau": 0.0}, "MCTSConfig.tau must be > 0"),
    ]
    for cls, kwargs, needle in cases:
        with pytest.raises(TailorError) as info:
            cls(**kwargs)
        assert needle in str(info.value), str(info.value)
    json.dumps(SoftDQNConfig().__dict__)  # the defaults pass


def test_unreachable_ray_address_fails_fast(capsys, files) -> None:
    """A closed port on the loopback interface (never a real remote address in a test)."""
    import socket
    import time

    pytest.importorskip("ray")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t0 = time.perf_counter()
    argv = ["sweep", "table1", "--budget", "smoke", "--out", str(files["dir"] / "sweep")]
    code, err = _outcome(capsys, [*argv, "--backend", "ray", "--address", f"127.0.0.1:{port}"])
    assert code == 2 and f"cannot reach the Ray cluster at '127.0.0.1:{port}'" in err, err
    assert time.perf_counter() - t0 < 30


def test_special_files_as_inputs_are_named(capsys, tmp_path: Path) -> None:
    import os

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    loop = tmp_path / "loop"
    loop.symlink_to(tmp_path / "loop2")
    (tmp_path / "loop2").symlink_to(loop)
    cases = [
        (["evaluate", "--policy", str(fifo)], "is a named pipe (FIFO), not a file or directory"),
        (["evaluate", "--policy", str(loop)], "is a symbolic link loop"),
        (
            [
                "customize",
                "--task",
                "pointmass",
                "--method",
                "residual",
                "--prior",
                str(fifo),
                "--steps",
                "64",
                "--out",
                str(tmp_path / "o"),
            ],
            "is a named pipe (FIFO)",
        ),
        (["lm", "sample", "--model", str(loop)], "is a symbolic link loop"),
    ]
    for argv, needle in cases:
        code, err = _outcome(capsys, argv)
        assert code == 2 and needle in err, (argv, err)
