"""The RL command line, in-process: results, and every bad input -> exit code 2, no traceback."""

from __future__ import annotations

import json
import textwrap

import pytest

from tailor.cli import main

FAST = ["--num-envs", "8", "--no-progress"]


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


@pytest.fixture(scope="module")
def prior_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("prior")
    code = main(
        [
            "train",
            "--task",
            "pointmass",
            "--method",
            "soft",
            "--steps",
            "1024",
            "--seed",
            "1",
            "--out",
            str(out),
            *FAST,
        ]
    )
    assert code == 0
    return out


@pytest.fixture(scope="module")
def tasks_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("tasks") / "my_tasks.py"
    path.write_text(
        textwrap.dedent("""
        import math
        from tailor.envs import Task, register_task

        register_task(Task(name="pm-nan-addon", env_id="tailor/PointMass-v0",
                           addon=lambda env, action, info: math.nan,
                           statistic=lambda env, action, info: 0.0), overwrite=True)
        calls = [0]
        def exploding(env, action, info):
            calls[0] += 1
            return 1e30 if calls[0] > 1024 else 0.0
        register_task(Task(name="pm-exploding", env_id="tailor/PointMass-v0",
                           addon=exploding, statistic=lambda env, action, info: 0.0,
                           coefficients={"full": {"alpha": 0.0}}), overwrite=True)
    """)
    )
    return path


def test_tasks_lists_builtins_and_user_tasks(capsys, tasks_file) -> None:
    code, out, _ = run_cli(capsys, "tasks")
    assert code == 0
    for name in ("halfcheetah-hindleg", "hopper-jump", "ant-sideways", "pointmass"):
        assert name in out
    code, out, _ = run_cli(capsys, "tasks", "--tasks-file", str(tasks_file))
    assert code == 0 and "pm-exploding" in out


def test_train_customize_evaluate(capsys, prior_dir, tmp_path) -> None:
    assert (prior_dir / "policy.safetensors").is_file()
    assert (prior_dir / "metrics.csv").read_text().startswith("iteration,steps,")
    out_dir = tmp_path / "custom"
    code, out, _ = run_cli(
        capsys,
        "customize",
        "--task",
        "pointmass",
        "--prior",
        str(prior_dir),
        "--method",
        "residual",
        "--steps",
        "1024",
        "--seed",
        "0",
        "--out",
        str(out_dir),
        *FAST,
    )
    assert code == 0, out
    assert "residual on pointmass" in out
    meta = json.loads((out_dir / "policy.json").read_text())
    # Coefficients default to the task's (pointmass's built-in ones).
    from tailor.envs import get_task

    assert meta["coefficients"] == get_task("pointmass").coefficients["residual"]
    json_file = tmp_path / "eval.json"
    code, out, _ = run_cli(
        capsys,
        "evaluate",
        "--policy",
        str(out_dir),
        "--task",
        "pointmass",
        "--episodes",
        "3",
        "--json",
        str(json_file),
    )
    assert code == 0 and "add-on return" in out
    result = json.loads(json_file.read_text())
    for key in ("total", "basic", "addon", "statistic"):
        assert set(result[key]) == {"mean", "std"}
    assert result["episodes"] == 3


def test_resume(capsys, tmp_path) -> None:
    run = tmp_path / "run"
    args = ["--task", "pointmass", "--method", "no-entropy", "--seed", "0", *FAST]
    assert run_cli(capsys, "train", *args, "--steps", "512", "--out", str(run))[0] == 0
    code, _, err = run_cli(capsys, "train", *args, "--steps", "1024", "--out", str(run))
    assert code == 2 and "already holds a run" in err
    code, out, _ = run_cli(capsys, "train", "--resume", str(run), "--steps", "1024", *FAST)
    assert code == 0 and "1024 steps" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["train", "--task", "nope", "--method", "soft", "--steps", "10", "--out", "x"],
            "unknown task 'nope'; known tasks: halfcheetah-hindleg",
        ),
        (
            ["train", "--task", "pointmass", "--method", "sof", "--steps", "10", "--out", "x"],
            "unknown method 'sof'",
        ),
        (
            ["train", "--task", "pointmass", "--method", "residual", "--steps", "10", "--out", "x"],
            "customizes a prior policy and needs one",
        ),
        (
            ["customize", "--task", "pointmass", "--method", "kl", "--steps", "10", "--out", "x"],
            "pass --prior",
        ),
        (
            [
                "customize",
                "--task",
                "pointmass",
                "--method",
                "greedy",
                "--omega-prime",
                "0.1",
                "--prior",
                "x",
                "--steps",
                "10",
                "--out",
                "x",
            ],
            "does not take --omega-prime",
        ),
        (["evaluate", "--policy", "does-not-exist", "--task", "pointmass"], "does not exist"),
    ],
)
def test_bad_input_exits_2_with_a_message(capsys, argv, message) -> None:
    code, _, err = run_cli(capsys, *argv)
    assert code == 2
    assert err.startswith("error: ") and message in err, err


def test_prior_with_other_spaces(capsys, prior_dir, tmp_path) -> None:
    code, _, err = run_cli(
        capsys,
        "customize",
        "--task",
        "halfcheetah-hindleg",
        "--prior",
        str(prior_dir),
        "--method",
        "residual",
        "--steps",
        "10",
        "--out",
        str(tmp_path / "c"),
        *FAST,
    )
    assert code == 2 and "observation size 4 and action size 2" in err, err
    assert "'halfcheetah-hindleg' has observation size 17 and action size 6" in err


def test_truncated_and_foreign_checkpoints(capsys, prior_dir, tmp_path) -> None:
    data = (prior_dir / "policy.safetensors").read_bytes()
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(data[:100])
    code, _, err = run_cli(capsys, "evaluate", "--policy", str(cut), "--task", "pointmass")
    assert code == 2 and "truncated or corrupted" in err
    import torch
    from safetensors.torch import save_file

    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, str(foreign))
    code, _, err = run_cli(
        capsys,
        "customize",
        "--task",
        "pointmass",
        "--prior",
        str(foreign),
        "--method",
        "kl",
        "--steps",
        "10",
        "--out",
        str(tmp_path / "k"),
    )
    assert code == 2 and "not a tailor checkpoint" in err


def test_non_finite_addon_names_the_step(capsys, tasks_file, tmp_path) -> None:
    code, _, err = run_cli(
        capsys,
        "train",
        "--tasks-file",
        str(tasks_file),
        "--task",
        "pm-nan-addon",
        "--method",
        "full",
        "--alpha",
        "0",
        "--steps",
        "512",
        "--out",
        str(tmp_path / "n"),
        *FAST,
    )
    assert code == 2 and "add-on reward is nan" in err and "step 1" in err, err


def test_nan_loss_stops_with_a_message(capsys, tasks_file, tmp_path) -> None:
    code, _, err = run_cli(
        capsys,
        "train",
        "--tasks-file",
        str(tasks_file),
        "--task",
        "pm-exploding",
        "--method",
        "full",
        "--steps",
        "8192",
        "--checkpoint-every",
        "1",
        "--out",
        str(tmp_path / "e"),
        *FAST,
    )
    # The loss, or the return statistics before it, turn non-finite: either stops the run.
    bad = "loss became" in err or "var became NaN or infinite" in err
    assert code == 2 and bad and "last good checkpoint" in err, err
    assert (tmp_path / "e" / "policy.safetensors").is_file()


def test_config_fields_are_flags(tmp_path, capsys):
    """Every PPOConfig / SoftDQNConfig field is a flag (tyro), next to today's flags."""
    out = tmp_path / "run"
    argv = ["train", "--task", "pointmass", "--method", "soft", "--steps", "512",
            "--num-envs", "8", "--out", str(out), "--no-progress",
            "--hidden", "16", "8", "--num-epochs", "1", "--no-tensorboard"]  # fmt: skip
    assert main(argv) == 0
    meta = json.loads((out / "policy.json").read_text())
    assert meta["architecture"]["hidden"] == [16, 8]
    assert not (out / "tb").exists()
    capsys.readouterr()
    ev = ["evaluate", "--policy", str(out), "--episodes", "2", "--best"]
    assert main([*ev, "--json", str(tmp_path / "e.json")]) == 0
    assert "best snapshot: step" in capsys.readouterr().out
    best = json.loads((tmp_path / "e.json").read_text())["best"]
    assert best["selection_seed"] == 100_000 and best["eval"]["episodes"] == 2
    capsys.readouterr()
    bad = ["train", "--task", "pointmass", "--method", "soft", "--steps", "512",
           "--out", str(tmp_path / "x")]  # fmt: skip
    assert main([*bad, "--total-steps", "5"]) == 2
    assert "--steps" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main([*bad, "--no-such-field", "1"])
    assert exc.value.code == 2 and not (tmp_path / "x").exists()
    with pytest.raises(SystemExit) as exc:
        main(["train", "--algo", "dqn", "--help-config"])
    assert exc.value.code == 0
    assert "--learning-starts" in capsys.readouterr().out
