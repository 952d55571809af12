"""Run directories: checkpoints, metrics log, ownership, config changes, metadata validation and
the CLI's error boundary (tailor.rundir, tailor.meta, tailor.checkpoint, tailor.cli.main)."""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import save_file

import tailor.cli
from tailor import rundir
from tailor.checkpoint import (
    POLICY_FILE,
    TRAINER_FILE,
    TRAINER_FORMAT,
    load_tensors,
    save_tensors,
)
from tailor.errors import TailorError
from tailor.meta import (
    MAX_DEPTH,
    POLICY_SCHEMA,
    TRAINER_SCHEMA,
    json_depth,
    parse_meta,
    validate_meta,
)
from tailor.nets import Actor, EmpiricalNormalization
from tailor.policyfile import POLICY_FORMAT, load_policy, policy_tensors, resolve_policy_path
from tailor.rundir import (
    CHECKPOINTS_DIR,
    LOCK_PID_FILE,
    MANIFEST_FILE,
    RUN_MARKER,
    MetricsLog,
    Retention,
    check_output_file,
    claim_run_dir,
    collect_garbage,
    commit_checkpoint,
    config_change_error,
    config_diff,
    latest_checkpoint,
    list_checkpoints,
    lock_holder,
    stop_on_interrupt,
)

PRIORS = Path(__file__).resolve().parents[1] / "priors"
_FUZZ_SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def files_for(step: int, trainer: bool = True) -> dict:
    out = {POLICY_FILE: ({"w": torch.full((3,), float(step))}, {"format": "t-pol", "steps": step})}
    if trainer:
        out[TRAINER_FILE] = (
            {"m": torch.full((50,), float(step))},
            {"format": "t-tr", "steps": step},
        )
    return out


def step_of(path: Path, fmt: str = "t-pol") -> int:
    tensors, meta = load_tensors(path, fmt)
    assert bool((next(iter(tensors.values())) == meta["steps"]).all())
    return meta["steps"]


@pytest.fixture
def no_hook():
    yield
    rundir.faults.hook = None


# ---- checkpoints -------------------------------------------------------------------------------


def test_commit_writes_a_consistent_set_and_a_top_level_copy(tmp_path: Path) -> None:
    ckpt = commit_checkpoint(tmp_path, files_for(7), 7)
    assert ckpt.step == 7 and ckpt.directory == tmp_path / CHECKPOINTS_DIR / "step-7"
    latest = latest_checkpoint(tmp_path)
    assert latest == ckpt and not latest.legacy
    assert (
        step_of(latest.path(POLICY_FILE)) == 7 and step_of(latest.path(TRAINER_FILE), "t-tr") == 7
    )
    # The convenience copy: same bytes, with its readable JSON twin; no top-level trainer.
    assert (tmp_path / POLICY_FILE).read_bytes() == latest.path(POLICY_FILE).read_bytes()
    assert json.loads((tmp_path / "policy.json").read_text())["steps"] == 7
    assert not (tmp_path / TRAINER_FILE).exists()
    manifest = json.loads((tmp_path / MANIFEST_FILE).read_text())
    assert manifest["step"] == 7 and manifest["directory"] == "checkpoints/step-7"
    assert set(manifest["files"]) == {POLICY_FILE, "policy.json", TRAINER_FILE}


def test_default_retention_keeps_every_policy_and_only_the_latest_trainer(tmp_path: Path) -> None:
    for step in (1, 2, 3):
        commit_checkpoint(tmp_path, files_for(step), step)
    snaps = list_checkpoints(tmp_path)
    assert [c.step for c in snaps] == [1, 2, 3]
    assert [TRAINER_FILE in c.files for c in snaps] == [False, False, True]
    assert all(step_of(c.path(POLICY_FILE)) == c.step for c in snaps)
    with pytest.raises(TailorError, match=r"has no trainer\.safetensors"):
        snaps[0].path(TRAINER_FILE)


def test_retention_is_a_parameter(tmp_path: Path) -> None:
    for step in range(1, 6):
        commit_checkpoint(tmp_path, files_for(step), step, Retention(full=2, policies=3))
    snaps = list_checkpoints(tmp_path)
    assert [(c.step, TRAINER_FILE in c.files) for c in snaps] == [(3, False), (4, True), (5, True)]
    assert sorted(p.name for p in (tmp_path / CHECKPOINTS_DIR).iterdir()) == [
        "step-3",
        "step-4",
        "step-5",
    ]
    with pytest.raises(TailorError, match="policies"):
        Retention(full=3, policies=2)
    with pytest.raises(TailorError, match="full"):
        Retention(full=0)


def test_committing_the_same_step_twice_never_touches_the_committed_files(tmp_path: Path) -> None:
    commit_checkpoint(tmp_path, files_for(4), 4)
    files = files_for(4)
    files[POLICY_FILE][0]["w"] = torch.full((3,), 4.0)  # same step, new content
    files[POLICY_FILE][1]["note"] = "second"
    ckpt = commit_checkpoint(tmp_path, files, 4)
    assert ckpt.directory.name == "step-4-r1"
    assert (
        load_tensors(latest_checkpoint(tmp_path).path(POLICY_FILE), "t-pol")[1]["note"] == "second"
    )
    assert not (tmp_path / CHECKPOINTS_DIR / "step-4").exists()  # the duplicate was retired


def test_bad_commit_arguments(tmp_path: Path) -> None:
    for files, step, match in (
        ({}, 1, "at least one"),
        (files_for(1), -1, "non-negative"),
        (files_for(1), True, "non-negative"),
        ({"../x.safetensors": files_for(1)[POLICY_FILE]}, 1, "plain"),
        ({"p.safetensors": ({"w": torch.zeros(1)}, {"steps": 1})}, 1, "lacks 'format'"),
    ):
        with pytest.raises(TailorError, match=match):
            commit_checkpoint(tmp_path, files, step)


def test_an_error_while_staging_leaves_the_previous_checkpoint(tmp_path: Path, no_hook) -> None:
    commit_checkpoint(tmp_path, files_for(1), 1)

    def fail(point: str) -> None:
        if point == f"written:{TRAINER_FILE}":
            raise OSError(28, "No space left on device")

    rundir.faults.hook = fail
    with pytest.raises(OSError):
        commit_checkpoint(tmp_path, files_for(2), 2)
    assert latest_checkpoint(tmp_path).step == 1
    assert [p.name for p in (tmp_path / CHECKPOINTS_DIR).iterdir()] == ["step-1"]  # no staging


def test_legacy_run_directories_still_load(tmp_path: Path) -> None:
    ckpt = latest_checkpoint(PRIORS / "ant")
    assert ckpt.legacy and ckpt.step == 5001216 and TRAINER_FILE in ckpt.files
    assert resolve_policy_path(PRIORS / "ant") == PRIORS / "ant" / POLICY_FILE
    _, _, meta = load_policy(PRIORS / "ant")
    assert meta["steps"] == 5001216
    # A legacy directory killed between its two writes: the trainer is not paired with it.
    for name, step in ((POLICY_FILE, 10), (TRAINER_FILE, 20)):
        save_tensors(tmp_path / name, *files_for(step)[name])
    ckpt = latest_checkpoint(tmp_path)
    assert ckpt.legacy and ckpt.step == 10 and set(ckpt.files) == {POLICY_FILE}
    with pytest.raises(TailorError, match="interrupted while saving"):
        ckpt.path(TRAINER_FILE)
    assert latest_checkpoint(tmp_path / "nothing") is None


def test_first_commit_in_a_legacy_directory_drops_its_stale_trainer(tmp_path: Path) -> None:
    for name in (POLICY_FILE, TRAINER_FILE):
        save_tensors(tmp_path / name, *files_for(3)[name])
    commit_checkpoint(tmp_path, files_for(4), 4)
    assert not (tmp_path / TRAINER_FILE).exists()
    assert step_of(tmp_path / POLICY_FILE) == 4 and latest_checkpoint(tmp_path).step == 4


def test_resolve_policy_path_prefers_the_manifest(tmp_path: Path) -> None:
    commit_checkpoint(tmp_path, files_for(5), 5)
    save_tensors(tmp_path / POLICY_FILE, *files_for(99)[POLICY_FILE])  # a stale/foreign copy
    assert step_of(resolve_policy_path(tmp_path)) == 5
    assert resolve_policy_path(tmp_path / POLICY_FILE) == tmp_path / POLICY_FILE  # a file: as is


def test_garbage_of_a_killed_writer_is_collected(tmp_path: Path) -> None:
    commit_checkpoint(tmp_path, files_for(1), 1)
    commit_checkpoint(tmp_path, files_for(2), 2)
    root = tmp_path / CHECKPOINTS_DIR
    (root / ".staging-step-3-abc").mkdir()
    (root / ".staging-step-3-abc" / POLICY_FILE).write_bytes(b"half")
    (root / "step-3").mkdir()  # renamed but never committed
    (root / ".trash-step-0-1").mkdir()
    (tmp_path / ".policy.safetensors.xyz12345.tmp").write_bytes(b"torn")
    (tmp_path / ".notes.abcd1234.tmp").write_text("a user's file")  # not ours: stays
    removed = {p.name for p in collect_garbage(tmp_path)}
    assert removed == {
        ".staging-step-3-abc",
        "step-3",
        ".trash-step-0-1",
        ".policy.safetensors.xyz12345.tmp",
    }
    assert sorted(p.name for p in root.iterdir()) == ["step-1", "step-2"]  # snapshot kept
    assert (tmp_path / ".notes.abcd1234.tmp").is_file()
    assert latest_checkpoint(tmp_path).step == 2


def test_step_dirs_without_any_manifest_are_garbage(tmp_path: Path) -> None:
    (tmp_path / CHECKPOINTS_DIR / "step-1").mkdir(parents=True)
    collect_garbage(tmp_path)
    assert list((tmp_path / CHECKPOINTS_DIR).iterdir()) == []


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda m: m.update(directory="../../etc"), "not a checkpoint dir"),
        (lambda m: m.update(directory="checkpoints/step-9"), "missing"),
        (lambda m: m["files"][POLICY_FILE].update(size=1), "modified outside tailor"),
        (lambda m: m.update(step="7"), "'step'"),
        (lambda m: m.update(format="tailor-policy"), "not a checkpoint manifest"),
        (lambda m: m.update(format_version=None), "'format_version'"),
        (lambda m: m["files"].update({"../x": {"size": 1}}), "malformed entry"),
    ],
)
def test_tampered_manifests_are_refused(tmp_path: Path, edit, match) -> None:
    commit_checkpoint(tmp_path, files_for(7), 7)
    manifest = json.loads((tmp_path / MANIFEST_FILE).read_text())
    edit(manifest)
    (tmp_path / MANIFEST_FILE).write_text(json.dumps(manifest))
    with pytest.raises(TailorError, match=match):
        latest_checkpoint(tmp_path)


def test_unparsable_manifests_are_refused(tmp_path: Path) -> None:
    for text, match in (
        ("{", "not valid JSON"),
        ("[" * 200_000, "nested deeper"),
        ("[1]", "not an object"),
    ):
        (tmp_path / MANIFEST_FILE).write_text(text)
        with pytest.raises(TailorError, match=match):
            latest_checkpoint(tmp_path)


@_FUZZ_SETTINGS
@given(
    manifest=st.fixed_dictionaries(
        {},
        optional={
            "format": st.sampled_from(["tailor-checkpoint", "x"]) | st.none(),
            "format_version": st.integers(-2, 3) | st.text(max_size=3),
            "step": st.integers(-2, 10) | st.floats() | st.none(),
            "directory": st.sampled_from(["checkpoints/step-1", "checkpoints/../..", "/etc", ""]),
            "files": st.dictionaries(
                st.sampled_from([POLICY_FILE, "../x", ".h", ""]),
                st.fixed_dictionaries({"size": st.integers(-1, 200)}) | st.integers() | st.none(),
                max_size=3,
            ),
        },
    )
)
def test_fuzz_manifests(tmp_path: Path, manifest: dict) -> None:
    """Any manifest: a consistent Checkpoint (whose files all exist) or a TailorError."""
    run = tmp_path / "fuzz"
    if not run.exists():
        commit_checkpoint(run, files_for(1), 1)
        run.joinpath(MANIFEST_FILE).rename(run / "good.json")
    (run / MANIFEST_FILE).write_text(json.dumps(manifest))
    try:
        ckpt = latest_checkpoint(run)
    except TailorError:
        return
    assert ckpt is not None and all(p.is_file() for p in ckpt.files.values())
    assert run / CHECKPOINTS_DIR in ckpt.directory.parents


def test_stop_on_interrupt_turns_the_first_ctrl_c_into_a_request(capsys) -> None:
    # The handler in force before (Python's default, or SIG_IGN when the test process was
    # started in the background by a non-interactive shell) comes back afterwards.
    before = signal.getsignal(signal.SIGINT)
    with stop_on_interrupt("finishing") as interrupt:
        assert not interrupt.requested
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.01)
        assert interrupt.requested  # no KeyboardInterrupt yet: the loop decides
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)  # the second one stops at once
            time.sleep(0.01)
    assert capsys.readouterr().err == "finishing\n"
    assert signal.getsignal(signal.SIGINT) is before


@pytest.mark.parametrize(("name", "code"), [("SIGTERM", 143), ("SIGHUP", 129)])
def test_sigterm_and_sighup_are_handled_like_ctrl_c(capsys, name: str, code: int) -> None:
    signum = getattr(signal, name)
    before = signal.getsignal(signum)
    with pytest.raises(KeyboardInterrupt) as stopped:
        with stop_on_interrupt("finishing") as interrupt:
            os.kill(os.getpid(), signum)
            time.sleep(0.01)
            assert interrupt.requested and interrupt.signum == signum  # the loop decides
            raise KeyboardInterrupt("checkpoint at step 8")  # what a loop raises after saving
    assert stopped.value.exit_code == code and str(stopped.value) == "checkpoint at step 8"
    assert capsys.readouterr().err == f"{name}: finishing\n"
    assert signal.getsignal(signum) is before
    with pytest.raises(KeyboardInterrupt) as second:  # the second signal stops at once
        with stop_on_interrupt() as interrupt:
            os.kill(os.getpid(), signum)
            time.sleep(0.01)
            os.kill(os.getpid(), signum)
            time.sleep(0.01)
    assert second.value.exit_code == code


# ---- metrics.csv -------------------------------------------------------------------------------

FIELDS = ("iteration", "loss")


def rows_of(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_metrics_rows_are_flushed_as_they_are_written(tmp_path: Path) -> None:
    path = tmp_path / "metrics.csv"
    with MetricsLog(path, FIELDS) as log:
        log.write({"iteration": 1, "loss": 0.5})
        assert rows_of(path) == [{"iteration": "1", "loss": "0.5"}]  # readable while open
        log.write({"iteration": 2})
    assert rows_of(path)[1] == {"iteration": "2", "loss": ""}
    with pytest.raises(TailorError, match="key"):
        MetricsLog(path, FIELDS, key="steps")


def test_resume_trims_through_a_new_file_not_in_place(tmp_path: Path) -> None:
    path = tmp_path / "metrics.csv"
    with MetricsLog(path, FIELDS) as log:
        for i in range(1, 6):
            log.write({"iteration": i, "loss": i})
    os.link(path, tmp_path / "old.csv")  # a second name of the original inode
    with MetricsLog(path, FIELDS, resume_at=3) as log:
        log.write({"iteration": 4, "loss": 40})
    assert [r["iteration"] for r in rows_of(path)] == ["1", "2", "3", "4"]
    assert rows_of(path)[-1]["loss"] == "40"
    # Truncating in place would have changed the original inode too.
    assert [r["iteration"] for r in rows_of(tmp_path / "old.csv")] == ["1", "2", "3", "4", "5"]


def test_resume_drops_a_torn_last_row(tmp_path: Path) -> None:
    path = tmp_path / "metrics.csv"
    path.write_text("iteration,loss\n1,0.1\n2,0.2\n12")  # "125,..." cut short looks like 12
    MetricsLog(path, FIELDS, resume_at=100).close()
    assert [r["iteration"] for r in rows_of(path)] == ["1", "2"]


def test_resume_maps_rows_to_the_new_columns(tmp_path: Path) -> None:
    path = tmp_path / "metrics.csv"
    path.write_text("iteration,old\n1,x\n2,y\n")
    MetricsLog(path, ("iteration", "new"), resume_at=1).close()
    assert rows_of(path) == [{"iteration": "1", "new": ""}]


def test_a_kill_before_the_replace_keeps_the_old_metrics(tmp_path: Path, no_hook) -> None:
    path = tmp_path / "metrics.csv"
    path.write_text("iteration,loss\n1,0.1\n2,0.2\n")

    def die(point: str) -> None:
        if point == "metrics-staged":
            raise KeyboardInterrupt

    rundir.faults.hook = die
    with pytest.raises(KeyboardInterrupt):
        MetricsLog(path, FIELDS, resume_at=1)
    assert path.read_text() == "iteration,loss\n1,0.1\n2,0.2\n"
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.csv"]  # no temp file left


# ---- ownership ---------------------------------------------------------------------------------


def test_claim_marks_the_run_and_release_frees_it(tmp_path: Path) -> None:
    out = tmp_path / "a" / "b"
    with claim_run_dir(out, "sac") as claimed:
        marker = json.loads((out / RUN_MARKER).read_text())
        assert marker["kind"] == "sac" and marker["format"] == "tailor-run"
        assert json.loads((out / LOCK_PID_FILE).read_text())["pid"] == os.getpid()
        with pytest.raises(
            TailorError, match=f"in use by another tailor process \\(pid {os.getpid()}"
        ):
            claim_run_dir(out, "sac", resume=True)
    assert claimed._fd is None and not (out / LOCK_PID_FILE).exists()
    claim_run_dir(out, "sac", resume=True).release()
    assert not list(out.glob(".tailor-probe-*"))


def test_lock_holder_names_the_holder_without_taking_the_lock(tmp_path: Path) -> None:
    assert lock_holder(tmp_path / "never") is None
    claimed = claim_run_dir(tmp_path / "run", "ppo")
    assert lock_holder(tmp_path / "run").startswith(f"pid {os.getpid()} on ")
    assert lock_holder(tmp_path / "run") is not None  # probing did not steal it
    claimed.release()
    assert lock_holder(tmp_path / "run") is None


def test_a_second_process_gets_the_holders_pid_and_a_killed_holder_frees_the_lock(
    tmp_path: Path,
) -> None:
    out = tmp_path / "run"
    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: hold the run until killed
        try:
            os.close(ready_r)
            claimed = claim_run_dir(out, "ppo")
            os.write(ready_w, b"x")
            time.sleep(60)
            claimed.release()
        finally:
            os._exit(0)
    os.close(ready_w)
    try:
        assert os.read(ready_r, 1) == b"x"
        with pytest.raises(TailorError, match=f"pid {pid} "):
            claim_run_dir(out, "ppo", resume=True)
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        os.close(ready_r)
    # SIGKILL releases an flock: no stale lock, although the holder never cleaned up.
    claim_run_dir(out, "ppo", resume=True).release()


def _make(tmp_path: Path, what: str) -> Path:
    d = tmp_path / what.replace("/", "_")
    d.mkdir()
    if what == "checkpoint":
        commit_checkpoint(d, files_for(1), 1)
    else:
        (d / what).write_bytes(b"{}")
    return d


@pytest.mark.parametrize(
    "what",
    [
        "checkpoint",
        POLICY_FILE,
        TRAINER_FILE,
        "config.json",
        "model.safetensors",
        "metrics.csv",
    ],
)
def test_out_onto_an_existing_run_or_model_is_refused(tmp_path: Path, what: str) -> None:
    d = _make(tmp_path, what)
    before = sorted(p.name for p in d.iterdir())
    with pytest.raises(TailorError, match=r"already holds .*--overwrite"):
        claim_run_dir(d, "lm-model")
    assert sorted(p.name for p in d.iterdir() if p.name != ".lock") == [
        n for n in before if n != ".lock"
    ]


def test_a_run_that_never_checkpointed_may_be_started_over(tmp_path: Path) -> None:
    d = tmp_path / "run"
    claim_run_dir(d, "ppo").release()
    (d / "metrics.csv").write_text("iteration\n1\n")
    with claim_run_dir(d, "ppo"):  # no --overwrite needed: nothing worth keeping
        assert not (d / "metrics.csv").exists()
    commit_checkpoint(d, files_for(1), 1)
    with pytest.raises(TailorError, match=r"already holds a run or model \(a 'ppo' run\)"):
        claim_run_dir(d, "ppo")
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "metrics.csv").write_text("x")  # no marker: someone else's file
    with pytest.raises(TailorError, match="training metrics"):
        claim_run_dir(tmp_path / "foreign", "ppo")


def test_a_run_failing_before_its_first_checkpoint_leaves_nothing(tmp_path: Path) -> None:
    new, kept = tmp_path / "new" / "run", tmp_path / "kept"
    with pytest.raises(RuntimeError), claim_run_dir(new, "ppo"):
        (new / "metrics.csv").write_text("iteration\n")
        raise RuntimeError("NaN reward")
    assert not new.exists() and (tmp_path / "new").is_dir()
    with pytest.raises(RuntimeError), claim_run_dir(kept, "ppo"):
        commit_checkpoint(kept, files_for(1), 1)
        raise RuntimeError("NaN loss later")
    assert latest_checkpoint(kept).step == 1  # a checkpoint is worth keeping
    (tmp_path / "mine").mkdir()
    with pytest.raises(RuntimeError), claim_run_dir(tmp_path / "mine", "ppo"):
        raise RuntimeError("boom")
    assert (tmp_path / "mine").is_dir()  # not created by the claim: never removed


def test_overwrite_clears_only_tailor_files(tmp_path: Path) -> None:
    d = tmp_path / "run"
    claim_run_dir(d, "ppo").release()
    commit_checkpoint(d, files_for(3), 3)
    for name in ("metrics.csv", "config.json", "model.safetensors", "notes.txt"):
        (d / name).write_text("x")
    (d / "tb").mkdir()
    with claim_run_dir(d, "lm-dpo", overwrite=True):
        left = sorted(p.name for p in d.iterdir())
        assert left == [".lock", ".lock.pid", "notes.txt", RUN_MARKER]
        assert json.loads((d / RUN_MARKER).read_text())["kind"] == "lm-dpo"
    # A config.json without model weights is not a model's: someone else's file, kept.
    other = tmp_path / "project"
    other.mkdir()
    (other / "config.json").write_text("{}")
    (other / POLICY_FILE).write_text("x")
    claim_run_dir(other, "ppo", overwrite=True).release()
    assert sorted(p.name for p in other.iterdir()) == [".lock", "config.json", RUN_MARKER]


def test_resume_rules(tmp_path: Path) -> None:
    d = tmp_path / "run"
    claim_run_dir(d, "dqn").release()
    with pytest.raises(TailorError, match="as a 'ppo' run: it is a 'dqn' run"):
        claim_run_dir(d, "ppo", resume=True)
    with claim_run_dir(d, "dqn", resume=True) as claimed:
        assert claimed.resumed
    with pytest.raises(TailorError, match="does not exist"):
        claim_run_dir(tmp_path / "nope", "ppo", resume=True)
    (tmp_path / "empty").mkdir()
    with pytest.raises(TailorError, match="holds no tailor run"):
        claim_run_dir(tmp_path / "empty", "ppo", resume=True)
    with pytest.raises(TailorError, match="pass only one"):
        claim_run_dir(d, "dqn", resume=True, overwrite=True)
    with pytest.raises(TailorError, match="unknown run kind"):
        claim_run_dir(d, "bogus")


def test_resuming_a_legacy_directory_infers_its_kind_and_marks_it(tmp_path: Path) -> None:
    for name in (POLICY_FILE, TRAINER_FILE):
        save_tensors(tmp_path / name, *files_for(3)[name])
    with pytest.raises(TailorError, match="it is a 'ppo' run"):
        claim_run_dir(tmp_path, "sac", resume=True)
    claim_run_dir(tmp_path, "ppo", resume=True).release()
    assert json.loads((tmp_path / RUN_MARKER).read_text())["kind"] == "ppo"


def test_out_overlapping_the_prior_is_always_refused(tmp_path: Path) -> None:
    prior = tmp_path / "prior"
    prior.mkdir()
    save_tensors(prior / POLICY_FILE, *files_for(1)[POLICY_FILE])
    for out, prior_arg, relation in (
        (prior, prior, "is the prior"),
        (prior, prior / POLICY_FILE, "is the prior"),
        (prior / "sub", prior, "is inside the prior"),
        (tmp_path, prior, "contains the prior"),
    ):
        for flags in ({}, {"overwrite": True}):
            with pytest.raises(TailorError, match=relation):
                claim_run_dir(out, "ppo", prior_path=prior_arg, **flags)
    assert not (prior / "sub").exists() and sorted(p.name for p in prior.iterdir()) == [POLICY_FILE]


def test_unusable_out_paths(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    for out, match in (
        (tmp_path / "file", "is an existing file"),
        (tmp_path / "file" / "run", "is a file, so no directory"),
        (Path("/proc/self/run"), "pseudo filesystem"),
        (Path("/proc"), "pseudo filesystem"),
    ):
        with pytest.raises(TailorError, match=match):
            claim_run_dir(out, "ppo")


def _as_nobody(calls) -> list[str]:
    """Run each call in a forked child that dropped root (permission bits do not apply to
    root); returns "accepted" or "refused: <message>" per call."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            os.setgid(65534)
            os.setuid(65534)
            out = []
            for call in calls:
                try:
                    call()
                    out.append("accepted")
                except TailorError as exc:
                    out.append(f"refused: {exc}")
                except Exception as exc:
                    out.append(f"crashed: {exc!r}")
            os.write(w, "\n".join(out).encode())
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        data = f.read().decode()
    os.waitpid(pid, 0)
    return data.splitlines()


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() != 0,
    reason="drops privileges to test permissions; needs root",
)
def test_unwritable_out_and_output_file(tmp_path_factory) -> None:
    # Not tmp_path: pytest's base temp directory is private to root (0700).
    base = Path(tempfile.mkdtemp(prefix="tailor-perm-"))
    base.chmod(0o755)
    locked = base / "ro"
    locked.mkdir()
    locked.chmod(0o555)
    lines = _as_nobody(
        [
            lambda: claim_run_dir(locked, "ppo"),
            lambda: claim_run_dir(locked / "new", "ppo"),
            lambda: check_output_file(locked / "x.json"),
        ]
    )
    assert len(lines) == 3, lines
    assert "not writable" in lines[0] and "Permission denied" in lines[0]
    assert "cannot create --out" in lines[1] and "Permission denied" in lines[1]
    assert "not writable" in lines[2]
    shutil.rmtree(base)


def test_check_output_file(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    assert check_output_file(tmp_path / "out.json") == tmp_path / "out.json"
    assert check_output_file(tmp_path / "new" / "deep" / "out.json")  # parents made later
    assert not (tmp_path / "out.json").exists() and not (tmp_path / "new").exists()
    assert not list(tmp_path.glob(".tailor-probe-*"))
    for path, match in (
        (tmp_path, "is a directory"),
        (tmp_path / "file" / "out.json", "is a file, not a directory"),
        (Path("/proc/self/out.json"), "pseudo filesystem"),
    ):
        with pytest.raises(TailorError, match=match):
            check_output_file(path)


# ---- config changes on resume ------------------------------------------------------------------


def test_config_diff_names_changed_fields_only() -> None:
    saved = {"lr": 3e-4, "hidden": [64, 64], "total_steps": 100, "gone": 1}
    given = {"lr": 1e-3, "hidden": (64, 64), "total_steps": 500, "new": True}
    assert config_diff(saved, given, mutable={"total_steps"}) == ["lr", "new", "gone"]
    assert config_diff(saved, saved, mutable=set()) == []
    err = config_change_error("runs/a", saved, given, ["lr", "new", "gone"])
    assert isinstance(err, TailorError)
    msg = str(err)
    assert "lr=0.001 (saved 0.0003)" in msg and "new=True (saved not set)" in msg
    assert "gone=not set (saved 1)" in msg and "'runs/a'" in msg


# ---- metadata validation -----------------------------------------------------------------------


def test_json_depth_ignores_brackets_in_strings() -> None:
    assert json_depth('{"a": [1, {"b": "[[[[{{"}]}') == 3
    assert json_depth('"x"') == 0 and json_depth('{"a": "\\"[["}') == 1


def test_a_200k_deep_header_is_a_tailor_error_not_recursion() -> None:
    for raw in ("[" * 200_000 + "]" * 200_000, '{"a":' * 200_000 + "1" + "}" * 200_000):
        with pytest.raises(TailorError, match="nested deeper"):
            parse_meta(raw, "x")
    deep: list = []
    for _ in range(MAX_DEPTH + 5):
        deep = [deep]
    with pytest.raises(TailorError, match="nested deeper"):
        validate_meta({"format": "x", "extra": deep}, POLICY_SCHEMA)


def good_policy_meta() -> dict:
    actor, norm = Actor(4, 2, [8]), EmpiricalNormalization(4)
    return policy_tensors(actor, norm, {"task": "pointmass", "steps": 10, "seed": 0})[1]


@pytest.mark.parametrize(
    "field, value, match",
    [
        ("format_version", "abc", "'format_version' is a JSON string"),
        ("format_version", None, "'format_version' is null"),
        ("format_version", True, "'format_version' is a JSON boolean"),
        ("task", ["pointmass"], "'task' is a JSON array"),
        ("obs_dim", 0, "outside"),
        ("obs_dim", 10**30, "outside"),
        ("steps", -1, "outside"),
        ("steps", 1.5, "expected an integer"),
        ("action_low", [0.0, float("nan")], r"action_low\[1\]"),
        ("architecture", {"hidden": [8], "activation": "elu"}, "'architecture.std_type'"),
        ("normalizer", {"eps": float("nan")}, "'normalizer.eps'"),
    ],
)
def test_validate_meta_rejects_bad_fields(field: str, value, match: str) -> None:
    meta = good_policy_meta()
    validate_meta(meta, POLICY_SCHEMA)
    meta[field] = value
    with pytest.raises(TailorError, match=match):
        validate_meta(meta, POLICY_SCHEMA, "f")
    with pytest.raises(TailorError, match="lacks the field 'obs_dim'"):
        validate_meta({"format": "tailor-policy"}, POLICY_SCHEMA)
    with pytest.raises(TailorError, match="lacks the field 'optimizer'"):
        validate_meta(
            {
                "format": "tailor-trainer",
                "iteration": 1,
                "steps": 1,
                "learning_rate": 0.1,
                "config": {},
                "task": "t",
                "method": "m",
                "coefficients": {},
            },
            TRAINER_SCHEMA,
        )


def write_policy(path: Path, header_text: str, tensors: dict | None = None) -> Path:
    if tensors is None:
        actor, norm = Actor(4, 2, [8]), EmpiricalNormalization(4)
        tensors = policy_tensors(actor, norm, {})[0]
    save_file(
        {k: v.contiguous() for k, v in tensors.items()}, str(path), metadata={"tailor": header_text}
    )
    return path


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda m: m.update(format_version="abc"), "format_version"),
        (lambda m: m.update(format_version=None), "format_version"),
        (lambda m: m.update(format_version=99), "newer"),
        (lambda m: m.update(task=["a", "b"]), "'task'"),
        (lambda m: m["architecture"].update(hidden=[10**6, 10**6]), "parameters but the file"),
        (lambda m: m["architecture"].update(hidden=[4]), "do not match"),
        (lambda m: m["architecture"].update(activation="nope"), "do not match"),
    ],
)
def test_crafted_policy_metadata_is_refused(tmp_path: Path, edit, match: str) -> None:
    meta = good_policy_meta()
    edit(meta)
    path = write_policy(tmp_path / POLICY_FILE, json.dumps(meta))
    with pytest.raises(TailorError, match=match):
        load_policy(path)


def test_a_deeply_nested_checkpoint_header_is_refused(tmp_path: Path) -> None:
    path = write_policy(tmp_path / POLICY_FILE, "[" * 200_000 + "]" * 200_000)
    with pytest.raises(TailorError, match="nested deeper"):
        load_tensors(path, POLICY_FORMAT)
    write_policy(path, '{"format": "tailor-trainer"}')
    with pytest.raises(TailorError, match="expected a 'tailor-policy'"):
        load_policy(path)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)


def _loads_or_tailor_error(path: Path) -> None:
    for call in (lambda: load_policy(path), lambda: load_tensors(path, TRAINER_FORMAT)):
        try:
            call()
        except TailorError:
            pass


@_FUZZ_SETTINGS
@given(header=JSON)
def test_fuzz_any_json_header(tmp_path: Path, header) -> None:
    _loads_or_tailor_error(write_policy(tmp_path / POLICY_FILE, json.dumps(header)))


@_FUZZ_SETTINGS
@given(
    overrides=st.dictionaries(
        st.sampled_from(
            [
                "format_version",
                "task",
                "obs_dim",
                "act_dim",
                "architecture",
                "normalizer",
                "steps",
                "seed",
                "action_low",
                "hidden",
                "activation",
            ]
        ),
        JSON,
        max_size=4,
    )
)
def test_fuzz_policy_header_fields(tmp_path: Path, overrides) -> None:
    """Mostly-valid policy headers with some fields replaced by arbitrary JSON (also inside the
    architecture): only a load or a TailorError is allowed."""
    meta = good_policy_meta()
    for key, value in overrides.items():
        if key in ("hidden", "activation") and isinstance(meta["architecture"], dict):
            meta["architecture"][key] = value
        else:
            meta[key] = value
    _loads_or_tailor_error(write_policy(tmp_path / POLICY_FILE, json.dumps(meta)))


@_FUZZ_SETTINGS
@given(header=JSON, blob=st.binary(max_size=64))
def test_fuzz_the_safetensors_header_itself(tmp_path: Path, header, blob: bytes) -> None:
    """The file's own JSON header (tensor names, dtypes, shapes, offsets), not just tailor's."""
    raw = json.dumps(header).encode()
    path = tmp_path / POLICY_FILE
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + blob)
    _loads_or_tailor_error(path)


@_FUZZ_SETTINGS
@given(text=st.text(max_size=40))
def test_fuzz_raw_header_text(tmp_path: Path, text: str) -> None:
    _loads_or_tailor_error(write_policy(tmp_path / POLICY_FILE, text))


# ---- the CLI's error boundary ------------------------------------------------------------------


def _parser_raising(exc: BaseException):
    def build() -> argparse.ArgumentParser:
        parser = argparse.ArgumentParser(prog="tailor")
        sub = parser.add_subparsers()
        p = sub.add_parser("boom")

        def func(args):
            raise exc

        p.set_defaults(func=func)
        return parser

    return build


@pytest.mark.parametrize(
    "exc, code, message",
    [
        (TailorError("bad coefficient"), 2, "error: bad coefficient"),
        (
            OSError(28, "No space left on device", "/runs/a/metrics.csv"),
            2,
            "error: No space left on device: '/runs/a/metrics.csv' (free some disk space",
        ),
        (PermissionError(13, "Permission denied", "/x"), 2, "error: Permission denied: '/x'"),
        (IsADirectoryError(21, "Is a directory", "out.json"), 2, "error: Is a directory"),
        (RecursionError("maximum recursion depth exceeded"), 2, "error: input nested too deeply"),
        (OverflowError("int too large to convert"), 2, "error: a number is out of range"),
        (ValueError("could not convert string to float: 'abc'"), 2, "error: invalid value"),
        (KeyboardInterrupt(), 130, "interrupted"),
    ],
)
def test_main_turns_errors_into_messages(monkeypatch, capsys, exc, code: int, message: str) -> None:
    monkeypatch.setattr(tailor.cli, "build_parser", _parser_raising(exc))
    monkeypatch.delenv("TAILOR_TRACEBACK", raising=False)
    assert tailor.cli.main(["boom"]) == code
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_main_shows_a_traceback_on_request(monkeypatch, capsys) -> None:
    monkeypatch.setattr(tailor.cli, "build_parser", _parser_raising(OSError(5, "I/O error")))
    monkeypatch.setenv("TAILOR_TRACEBACK", "1")
    assert tailor.cli.main(["boom"]) == 2
    assert "Traceback" in capsys.readouterr().err


def test_a_closed_stdout_pipe_exits_quietly() -> None:
    """``tailor tasks | head -1``: the reader is gone before tailor's output is flushed."""
    code = (
        "import os, sys\n"
        "r, w = os.pipe(); os.close(r); os.dup2(w, 1)\n"
        "from tailor.cli import main\n"
        "sys.exit(main(['tasks']))\n"
    )
    src = str(Path(__file__).resolve().parents[1] / "src")
    result = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "PYTHONPATH": src},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert result.stderr == ""


def test_evaluate_on_crafted_metadata_is_an_error_message(tmp_path: Path, capsys) -> None:
    meta = good_policy_meta()
    meta["obs_dim"] = "four"
    write_policy(tmp_path / POLICY_FILE, json.dumps(meta))
    assert tailor.cli.main(["evaluate", "--policy", str(tmp_path), "--episodes", "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "'obs_dim'" in err and "Traceback" not in err
