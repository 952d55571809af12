"""The one writer (tailor.output): outputs never overwrite an input of the same command, never an
existing file without --overwrite, and a full disk is `error: no space left ...` (exit 2) with
the old file intact and no temporary file left; a run whose first checkpoint hit a full disk is
no dead end."""

from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path

import pytest

from tailor import output
from tailor.errors import TailorError
from test_cli_rl import FAST, run_cli

PRIOR = Path(__file__).resolve().parents[1] / "priors" / "hopper"


def no_space(monkeypatch) -> None:
    """Every os.write fails as on a full disk (the writer's only way to write bytes)."""

    def full(fd: int, data: object) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "write", full)


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if ".tmp" in p.name)


@pytest.fixture
def run_copy(tmp_path: Path) -> Path:
    """A copy of the shipped hopper prior: a legacy run directory (policy, trainer, metrics)."""
    run = tmp_path / "run"
    shutil.copytree(PRIOR, run)
    return run


# ---- the writer ---------------------------------------------------------------------------------


def test_write_json_is_atomic_and_replaces(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "x.json"
    output.write_json(path, {"a": 1})
    output.write_json(path, {"a": 2})
    assert json.loads(path.read_text()) == {"a": 2}
    assert leftovers(path.parent) == []


def test_no_space_keeps_the_old_file_and_leaves_no_temp(monkeypatch, tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    path.write_text("old")
    no_space(monkeypatch)
    with pytest.raises(TailorError, match=r"no space left on .* writing .*x\.json.*left as it was"):
        output.write_json(path, {"a": 1})
    assert path.read_text() == "old"
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize(
    "exc",
    [
        OSError(errno.EDQUOT, "Disk quota exceeded"),
        RuntimeError('IoError(Os { code: 28, kind: StorageFull, message: "No space left" })'),
    ],
)
def test_producers_reporting_a_full_disk(tmp_path: Path, exc: BaseException) -> None:
    path = tmp_path / "v.mp4"
    with pytest.raises(TailorError, match="no space left"):
        with output.publishing(path, keep_suffix=True) as tmp:
            assert tmp.suffix == ".mp4" and tmp.parent == tmp_path
            tmp.write_bytes(b"half")
            raise exc
    assert not path.exists() and leftovers(tmp_path) == []


def test_other_errors_pass_through(tmp_path: Path) -> None:
    with pytest.raises(KeyError):
        with output.publishing(tmp_path / "a.bin"):
            raise KeyError("x")
    assert list(tmp_path.iterdir()) == []


def test_inputs_are_refused_as_outputs(tmp_path: Path, run_copy: Path) -> None:
    victim = tmp_path / "victim.zip"
    victim.write_bytes(b"prior")
    (tmp_path / "hard").hardlink_to(victim)
    (tmp_path / "soft").symlink_to(victim)
    for out in (victim, tmp_path / "hard", tmp_path / "soft", tmp_path / "." / "victim.zip"):
        with pytest.raises(TailorError, match="is an input of this command"):
            output.check_output(out, inputs=[victim], overwrite=True)
    # What tailor reads in an input run directory, existing or not; other names are free.
    for name in ("checkpoint.json", "policy.safetensors", "metrics.csv", "checkpoints/x"):
        with pytest.raises(TailorError, match="inside the input directory"):
            output.check_output(run_copy / name, inputs=[run_copy], overwrite=True)
    assert output.check_output(run_copy / "plot.png", inputs=[run_copy]) == run_copy / "plot.png"
    with pytest.raises(TailorError, match="is an input"):
        output.check_output(run_copy, inputs=[run_copy / "policy.safetensors", run_copy])
    # A directory tailor does not know is read as a whole.
    foreign = tmp_path / "rsl"
    foreign.mkdir()
    (foreign / "model_100.pt").write_bytes(b"")
    with pytest.raises(TailorError, match="inside the input directory"):
        output.check_output(foreign / "model_100.pt", inputs=[foreign], overwrite=True)
    assert output.check_output(foreign / "new.json", inputs=[foreign])
    with pytest.raises(TailorError, match="exists; pass --overwrite"):
        output.check_output(victim, inputs=[])
    # An output directory may not hold an input where a run writes.
    with pytest.raises(TailorError, match="holds the input"):
        output.check_output_tree(tmp_path, [run_copy.parent / "policy.safetensors"])
    output.check_output_tree(tmp_path / "new", [victim])


def test_read_names_cover_the_run_model_and_sweep_layouts() -> None:
    from tailor.experiments import sweep
    from tailor.rundir import layout

    names = [*layout._RUN_NAMES, *layout._MODEL_NAMES, layout.MANIFEST_FILE, layout.RUN_MARKER]
    names += [sweep.RESULT_FILE, sweep.FAILED_FILE, sweep.LOG_FILE]
    assert all(output._is_read_name(n.replace("*", "1")) for n in names)


# ---- every command -----------------------------------------------------------------------------


def test_inspect_refuses_its_input_and_an_existing_file(capsys, tmp_path: Path) -> None:
    victim = tmp_path / "victim.safetensors"
    shutil.copy(PRIOR / "policy.safetensors", victim)
    before = victim.read_bytes()
    code, _, err = run_cli(capsys, "inspect", str(victim), "--json", str(victim), "--overwrite")
    assert code == 2 and "is an input of this command" in err
    assert victim.read_bytes() == before
    out = tmp_path / "d.json"
    assert run_cli(capsys, "inspect", str(victim), "--json", str(out))[0] == 0
    code, _, err = run_cli(capsys, "inspect", str(victim), "--json", str(out))
    assert code == 2 and "exists; pass --overwrite" in err
    assert run_cli(capsys, "inspect", str(victim), "--json", str(out), "--overwrite")[0] == 0
    assert json.loads(out.read_text())["obs_dim"] == 11


@pytest.mark.parametrize("name", ["checkpoint.json", "policy.json", "metrics.csv"])
def test_evaluate_refuses_a_file_of_the_run(capsys, run_copy: Path, name: str) -> None:
    before = {p.name: p.read_bytes() for p in run_copy.iterdir()}
    code, _, err = run_cli(
        capsys, "evaluate", "--policy", str(run_copy), "--json", str(run_copy / name),
        "--overwrite", "--episodes", "1",
    )  # fmt: skip
    assert code == 2 and "inside the input directory" in err
    assert {p.name: p.read_bytes() for p in run_copy.iterdir()} == before


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_export_refuses_its_input_and_survives_a_full_disk(
    capsys, monkeypatch, run_copy: Path, fmt: str
) -> None:
    src = run_copy / "policy.safetensors"
    before = src.read_bytes()
    code, _, err = run_cli(capsys, "export", str(src), "--format", fmt, "--out", str(src))
    assert code == 2 and "is an input of this command" in err and src.read_bytes() == before
    out = run_copy.parent / f"pol.{fmt}"
    assert run_cli(capsys, "export", str(run_copy), "--format", fmt, "--out", str(out))[0] == 0
    good = out.read_bytes()
    code, _, err = run_cli(capsys, "export", str(run_copy), "--format", fmt, "--out", str(out))
    assert code == 2 and "exists; pass --overwrite" in err
    no_space(monkeypatch)
    code, _, err = run_cli(
        capsys, "export", str(run_copy), "--format", fmt, "--out", str(out), "--overwrite"
    )
    assert code == 2 and "error: no space left on " in err and f"writing {str(out)!r}" in err
    assert out.read_bytes() == good and leftovers(out.parent) == []


def test_table_and_plot_refuse_their_inputs(
    capsys, monkeypatch, run_copy: Path, tmp_path: Path
) -> None:
    result = tmp_path / "sweep" / "job" / "result.json"
    result.parent.mkdir(parents=True)
    result.write_text("{}")
    code, _, err = run_cli(capsys, "table", "table1", str(tmp_path / "sweep"), "--out", str(result))
    assert code == 2 and "inside the input directory" in err and result.read_text() == "{}"
    metrics = (run_copy / "metrics.csv").read_bytes()
    for out in (run_copy / "metrics.csv", run_copy / "policy.safetensors"):
        code, _, err = run_cli(capsys, "plot", str(run_copy), "--out", str(out), "--overwrite")
        assert code == 2 and "inside the input directory" in err
    assert (run_copy / "metrics.csv").read_bytes() == metrics
    assert run_cli(capsys, "plot", str(run_copy))[0] == 0  # RUN/plot.png: not an input
    code, _, err = run_cli(capsys, "plot", str(run_copy))
    assert code == 2 and "exists; pass --overwrite" in err
    png = (run_copy / "plot.png").read_bytes()
    no_space(monkeypatch)
    code, _, err = run_cli(capsys, "plot", str(run_copy), "--overwrite")
    assert code == 2 and "no space left on" in err
    assert (run_copy / "plot.png").read_bytes() == png and leftovers(run_copy) == []


def test_mdvi_refuses_existing_outputs(capsys, tmp_path: Path) -> None:
    (tmp_path / "f.json").write_text("mine")
    code, _, err = run_cli(capsys, "mdvi", "--out", str(tmp_path / "f.png"))
    assert code == 2 and "f.json' exists; pass --overwrite" in err
    assert (tmp_path / "f.json").read_text() == "mine"


# ---- a full disk while training -----------------------------------------------------------------


def test_full_disk_at_the_first_checkpoint_is_no_dead_end(
    capsys, monkeypatch, tmp_path: Path
) -> None:
    from safetensors import SafetensorError

    import tailor.checkpoint

    run = tmp_path / "run"
    run.mkdir()  # made by the user: a failed run leaves its run.json and metrics behind
    args = ["train", "--task", "pointmass", "--method", "soft", "--steps", "512", *FAST]

    def full(*a, **k):
        raise SafetensorError(
            'Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: "No '
            'space left on device" })'
        )

    with monkeypatch.context() as m:
        m.setattr(tailor.checkpoint, "save_file", full)
        code, _, err = run_cli(capsys, *args, "--out", str(run))
    assert code == 2 and "error: no space left on " in err and "policy.safetensors" in err
    assert "SafetensorError" not in err
    code, _, err = run_cli(capsys, "train", "--resume", str(run), *FAST)
    assert code == 2 and "nothing to resume" in err and "same --out" in err
    code, _, _ = run_cli(capsys, *args, "--out", str(run))  # no --overwrite needed
    assert code == 0 and (run / "checkpoint.json").is_file()
