"""`tailor train/customize/evaluate --algo dqn|mcts`: the Residual Q-Learning family on the CLI."""

import json

import pytest

from tailor.cli import main


@pytest.fixture(scope="module")
def dqn_prior(tmp_path_factory):
    out = tmp_path_factory.mktemp("rql") / "prior"
    argv = [
        "train",
        "--algo",
        "dqn",
        "--task",
        "cartpole-centered",
        "--steps",
        "600",
        "--seed",
        "0",
        "--out",
        str(out),
    ]
    assert main(argv) == 0
    return out


def test_dqn_prior_customize_and_evaluate(dqn_prior, tmp_path, capsys):
    custom = tmp_path / "residual"
    argv = [
        "customize",
        "--algo",
        "dqn",
        "--task",
        "cartpole-centered",
        "--prior",
        str(dqn_prior),
        "--steps",
        "600",
        "--seed",
        "0",
        "--out",
        str(custom),
    ]
    assert main(argv) == 0
    report = tmp_path / "eval.json"
    assert (
        main(["evaluate", "--policy", str(custom), "--episodes", "2", "--json", str(report)]) == 0
    )
    out = capsys.readouterr().out
    assert "success rate" in out and "add-on return" in out
    data = json.loads(report.read_text())
    assert data["algo"] == "dqn" and data["method"] == "residual" and data["episodes"] == 2
    assert 0.0 <= data["success_rate"] <= 1.0


def test_mcts_customizes_a_dqn_prior_online(dqn_prior, tmp_path):
    out = tmp_path / "mcts"
    argv = [
        "customize",
        "--algo",
        "mcts",
        "--task",
        "cartpole-centered",
        "--prior",
        str(dqn_prior),
        "--steps",
        "1",
        "--out",
        str(out),
    ]
    assert main(argv) == 0
    assert (out / "policy.safetensors").is_file()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            [
                "customize",
                "--algo",
                "sac",
                "--task",
                "mountaincar-noleft",
                "--steps",
                "10",
                "--out",
                "x",
            ],
            "customizes a prior: pass --prior",
        ),
        (
            [
                "train",
                "--algo",
                "dqn",
                "--task",
                "cartpole-centered",
                "--steps",
                "10",
                "--out",
                "x",
                "--resume",
                "y",
            ],
            "--resume is only supported with --algo ppo",
        ),
    ],
)
def test_rql_bad_input(argv, message, capsys):
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_set_passes_config_fields_and_rejects_bad_ones(tmp_path, capsys):
    out = tmp_path / "sac"
    argv = ["train", "--algo", "sac", "--task", "mountaincar-noleft", "--steps", "12",
            "--out", str(out), "--set", "learning_starts=4", "--set", "batch_size=4",
            "--set", "hidden=[8, 8]", "--set", "log_interval=0"]  # fmt: skip
    assert main(argv) == 0
    meta = json.loads((out / "policy.json").read_text())
    assert meta["config"]["hidden"] == [8, 8] and meta["config"]["batch_size"] == 4
    capsys.readouterr()
    assert main([*argv[:-2], "--set", "no_such_field=1"]) == 2
    assert "no_such_field" in capsys.readouterr().err
    assert main([*argv[:-2], "--set", "log_interval"]) == 2
    assert "KEY=VALUE" in capsys.readouterr().err
    ppo = ["train", "--task", "pointmass", "--steps", "64", "--out", str(tmp_path / "p"),
           "--set", "gamma=0.9"]  # fmt: skip
    assert main(ppo) == 2
    assert "--algo dqn|sac|mcts" in capsys.readouterr().err
