"""``tailor lm ...`` end to end on the tiny model, and every bad input -> exit code 2."""

from __future__ import annotations

import json

import pytest
import torch

pytest.importorskip("transformers")

from tailor.cli import main
from test_lm_model import TINY_NAMES, tiny_model_dir


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield  # the CLI also sets one thread; restore what the session had
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def prior(tmp_path_factory):
    return str(tiny_model_dir(tmp_path_factory))


def test_pretrain_sample_customize_evaluate(tmp_path, capsys, prior):
    corpus = tmp_path / "names.txt"
    corpus.write_text("\n".join(TINY_NAMES) + "\n")
    out = tmp_path / "pre"
    args = ["lm", "pretrain", "--corpus", str(corpus), "--steps", "5", "--layers", "1"]
    args += ["--width", "16", "--heads", "2", "--out", str(out), "--quiet"]
    assert main(args) == 0
    meta = json.loads((out / "tailor.json").read_text())
    assert meta["config"]["steps"] == 5 and meta["lines"] == len(TINY_NAMES)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    AutoModelForCausalLM.from_pretrained(out, local_files_only=True)
    AutoTokenizer.from_pretrained(out, local_files_only=True)

    capsys.readouterr()
    assert main(["lm", "sample", "--model", prior, "-n", "4", "--seed", "1"]) == 0
    first = capsys.readouterr().out.splitlines()
    assert len(first) == 4
    assert main(["lm", "sample", "--model", prior, "-n", "4", "--seed", "1"]) == 0
    assert capsys.readouterr().out.splitlines() == first  # same seed, same samples
    assert main(["lm", "sample", "--model", prior, "-n", "3", "--prompt", "ja"]) == 0
    assert all(line.startswith("ja") for line in capsys.readouterr().out.splitlines())

    # Config fields are flags too (tyro): --epochs / --clip of LMPPOConfig, --lr of LMDPOConfig.
    runs = (
        ("residual", ["--steps", "2", "--epochs", "1", "--clip", "0.1"]),
        ("decoupled-dpo", ["--steps", "3"]),
    )
    for method, extra in runs:
        cdir = tmp_path / method
        args = ["lm", "customize", "--prior", prior, "--reward", "ends-with-vowel"]
        args += ["--method", method, "--seed", "0", "--out", str(cdir), "--quiet", *extra]
        args += ["--batch-size", "16"]
        assert main(args) == 0, method
        meta = json.loads((cdir / "tailor.json").read_text())
        assert meta["method"] == method and meta["config"]["steps"] == int(extra[1])
        assert len(meta["history"]) == int(extra[1])
        assert AutoModelForCausalLM.from_pretrained(cdir, local_files_only=True) is not None
        assert (cdir / "tokenizer.json").is_file()
    res = json.loads((tmp_path / "residual" / "tailor.json").read_text())
    assert res["data"]["coefficients"] == {"omega_prime": 0.15, "alpha_hat": 0.1}
    assert res["config"]["epochs"] == 1 and res["config"]["clip"] == 0.1

    jpath = tmp_path / "eval.json"
    args = ["lm", "evaluate", "--model", str(tmp_path / "residual"), "--prior", prior]
    args += ["--reward", "ends-with-vowel", "--samples", "32", "--json", str(jpath)]
    assert main(args) == 0
    result = json.loads(jpath.read_text())
    for key in ("addon", "success", "prior_logp_per_token", "kl_to_prior", "distinct", "samples"):
        assert key in result
    assert "success rate" in capsys.readouterr().out


def test_customize_with_rewards_file_and_preferences(tmp_path, prior):
    rf = tmp_path / "my_rewards.py"
    rf.write_text(
        "from tailor.lm import register_reward\n"
        "register_reward('cli-has-a', lambda p, c: float('a' in c), overwrite=True)\n"
    )
    args = ["lm", "customize", "--prior", prior, "--rewards-file", str(rf), "--reward"]
    args += ["cli-has-a", "--method", "kl", "--steps", "1", "--batch-size", "8"]
    args += ["--out", str(tmp_path / "kl"), "--quiet"]
    assert main(args) == 0
    prefs = tmp_path / "p.jsonl"
    prefs.write_text('{"prompt": "", "chosen": "mia", "rejected": "bob"}\n')
    args = ["lm", "customize", "--prior", prior, "--method", "ce-dpo", "--preferences"]
    args += [str(prefs), "--steps", "2", "--out", str(tmp_path / "ce"), "--quiet"]
    assert main(args) == 0
    meta = json.loads((tmp_path / "ce" / "tailor.json").read_text())
    assert meta["data"]["source"] == "preference file" and meta["data"]["responses"] == 2


def test_bridge_prints_the_table(capsys, monkeypatch):
    import tailor.lm.toy as toy

    small = toy.BridgeConfig(
        pg=toy.PGConfig(steps=3),
        pg_sampled=toy.PGConfig(steps=2, samples=16),
        dpo=toy.DPOConfig(steps=3),
        dpo_pairs=100,
    )
    monkeypatch.setattr(toy, "BridgeConfig", lambda: small)
    assert main(["lm", "bridge"]) == 0
    out = capsys.readouterr().out
    assert "residual_pg_exact_tv" in out and "dpo_vs_decoupled_max_abs_diff" in out


# --- bad input: exit code 2 and a clear message, never a traceback ------------------------------


def _fails(capsys, args, *needles):
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: "), err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in err, err


def _customize(prior, out, *extra):
    return ["lm", "customize", "--prior", str(prior), "--out", str(out), "--quiet", *extra]


def test_bad_prior_directories(tmp_path, capsys):
    out = tmp_path / "o"
    args = ["--reward", "ends-with-vowel", "--method", "kl"]
    _fails(capsys, _customize(tmp_path / "missing", out, *args), "not a directory")
    _fails(capsys, _customize(tmp_path, out, *args), "no config.json")
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "vit"}))
    _fails(capsys, _customize(tmp_path, out, *args), "not a causal language model")
    _fails(capsys, ["lm", "sample", "--model", str(tmp_path)], "not a causal language model")


def test_bad_rewards(tmp_path, capsys, prior):
    out = tmp_path / "o"
    broken = tmp_path / "broken.py"
    broken.write_text("import no_such_module_here\n")
    _fails(
        capsys,
        _customize(prior, out, "--rewards-file", str(broken), "--reward", "x", "--method", "kl"),
        "failed to import",
        "no_such_module_here",
    )
    nan = tmp_path / "nan_reward.py"
    nan.write_text(
        "from tailor.lm import register_reward\n"
        "register_reward('cli-nan', lambda p, c: float('nan'), overwrite=True)\n"
    )
    _fails(
        capsys,
        [
            *_customize(
                prior, out, "--rewards-file", str(nan), "--reward", "cli-nan", "--method", "kl"
            ),
            "--steps",
            "1",
            "--batch-size",
            "4",
        ],
        "non-finite",
    )
    _fails(
        capsys,
        [
            "lm",
            "evaluate",
            "--model",
            prior,
            "--prior",
            prior,
            "--rewards-file",
            str(nan),
            "--reward",
            "cli-nan",
            "--samples",
            "4",
        ],
        "non-finite",
    )
    _fails(
        capsys,
        _customize(prior, out, "--reward", "no-such-reward", "--method", "kl"),
        "unknown reward",
    )
    assert not out.exists()  # nothing written on failure


def test_bad_preferences_methods_and_options(tmp_path, capsys, prior):
    out = tmp_path / "o"
    prefs = tmp_path / "bad.jsonl"
    prefs.write_text('{"prompt": "", "chosen": "mia", "rejected": "bob"}\n{"prompt": ""}\n')
    _fails(
        capsys,
        _customize(prior, out, "--method", "dpo", "--preferences", str(prefs)),
        "bad.jsonl:2",
        "missing key 'chosen'",
    )
    prefs.write_text("not json\n")
    _fails(
        capsys,
        _customize(prior, out, "--method", "dpo", "--preferences", str(prefs)),
        "bad.jsonl:1",
        "invalid JSON",
    )
    _fails(
        capsys,
        _customize(prior, out, "--method", "sft", "--reward", "ends-with-vowel"),
        "unknown method 'sft'",
    )
    _fails(
        capsys,
        _customize(
            prior, out, "--method", "kl", "--reward", "ends-with-vowel", "--preferences", str(prefs)
        ),
        "offline methods",
    )
    _fails(
        capsys,
        _customize(
            prior, out, "--method", "greedy", "--reward", "ends-with-vowel", "--omega-prime", "0.1"
        ),
        "does not take --omega-prime",
    )
    _fails(
        capsys,
        _customize(
            prior,
            out,
            "--method",
            "kl",
            "--reward",
            "ends-with-vowel",
            "--omega-prime",
            "0.1",
            "--alpha-hat",
            "0.2",
        ),
        "residual",
    )
    _fails(capsys, _customize(prior, out, "--method", "dpo"), "needs --reward")
    with pytest.raises(SystemExit) as exc:  # checked while parsing: argparse's usage error
        main(_customize(prior, out, "--method", "residual", "--reward", "x", "--steps", "0"))
    assert exc.value.code == 2
    assert "error: argument --steps: must be an integer >= 1" in capsys.readouterr().err
    _fails(
        capsys,
        ["lm", "pretrain", "--corpus", str(tmp_path / "none.txt"), "--out", str(out)],
        "neither a built-in corpus",
    )


class _RequestedAfter:
    """An InterruptRequest whose ``requested`` turns true after ``n`` polls (SIGTERM mid-run)."""

    def __init__(self, n: int, signum: int) -> None:
        self.n, self.signum = n, signum

    @property
    def requested(self) -> bool:
        self.n -= 1
        return self.n < 0


@pytest.mark.parametrize(("method", "signum", "code"), [("residual", 15, 143), ("dpo", 1, 129)])
def test_a_stop_signal_saves_the_lm_learnt_so_far(
    tmp_path, capsys, monkeypatch, prior, method, signum, code
):
    """SIGTERM / SIGHUP in `tailor lm customize` (PPO or DPO): the loop stops before its next
    step, the model of the steps done is saved (loadable, `interrupted_at_step` in its
    metadata) and the command exits 128 + signal."""
    import contextlib

    from tailor.experiments import lm_runs

    @contextlib.contextmanager
    def stopping(notice=None):
        yield _RequestedAfter(2, signum)

    monkeypatch.setattr(lm_runs, "stop_on_interrupt", stopping)
    out = tmp_path / method
    args = ["lm", "customize", "--prior", prior, "--reward", "ends-with-vowel", "--method",
            method, "--steps", "5", "--out", str(out), "--quiet"]  # fmt: skip
    assert main(args) == code
    assert "interrupted: saved the model after 2 steps" in capsys.readouterr().err
    meta = json.loads((out / "tailor.json").read_text())
    assert meta["interrupted_at_step"] == 2 and len(meta["history"]) == 2
    assert main(["lm", "sample", "--model", str(out), "-n", "2"]) == 0


def test_prompts_file_and_group_estimator_flags(tmp_path, capsys, prior):
    pf = tmp_path / "prompts.jsonl"
    pf.write_text('{"prompt": "ja"}\n{"prompt": "mi"}\n{"prompt": "lu"}\n')
    out = tmp_path / "g"
    args = _customize(prior, out, "--method", "residual", "--reward", "ends-with-vowel")
    args += ["--prompts-file", str(pf), "--prompt", "", "--steps", "2", "--batch-size", "8"]
    assert main([*args, "--advantage", "grpo", "--group-size", "4"]) == 0
    meta = json.loads((out / "tailor.json").read_text())
    assert meta["prompts"] == ["", "ja", "mi", "lu"] and meta["prompts_file"] == str(pf)
    assert meta["config"]["advantage"] == "grpo" and meta["config"]["group_size"] == 4
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:  # a config error: tyro's usage error, exit 2
        main([*args, "--overwrite", "--advantage", "grpo", "--group-size", "3"])
    assert exc.value.code == 2  # tyro boxes and wraps the message:
    assert "multipleofgroup_size" in "".join(capsys.readouterr().err.replace("│", "").split())
    chat = tmp_path / "chat.jsonl"
    chat.write_text('{"prompt": [{"role": "user", "content": "hi"}]}\n')
    args = _customize(prior, tmp_path / "c", "--method", "kl", "--reward", "ends-with-vowel")
    _fails(capsys, [*args, "--prompts-file", str(chat)], "chat template")
    assert not (tmp_path / "c").exists()  # refused before the run directory is made
    for text, needle in (("", "holds no prompts"), ("{\n", "chat.jsonl:1: invalid JSON"),
                         ('{"p": 1}\n', "missing key 'prompt'")):  # fmt: skip
        chat.write_text(text)
        _fails(capsys, [*args, "--prompts-file", str(chat)], needle)
    chat.write_bytes(b"\xff\n")
    _fails(capsys, [*args, "--prompts-file", str(chat)], "not UTF-8")
