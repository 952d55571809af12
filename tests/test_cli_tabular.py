"""`tailor verify`, `tailor mdvi`: output, files, exit codes."""

import json

import pytest

import tailor.tabular.verify as verify
from tailor.cli import main


def test_verify_prints_table_and_writes_json(tmp_path, capsys):
    out = tmp_path / "v.json"
    code = main(["verify", "--seed", "3", "--cases-scale", "0.05", "--json", str(out)])
    text = capsys.readouterr().out
    assert code == 0
    assert "| identity | cases | worst error | tolerance | result |" in text
    assert f"{len(verify.CHECKS)}/{len(verify.CHECKS)} identities hold" in text
    data = json.loads(out.read_text())
    assert data["seed"] == 3 and len(data["results"]) == len(verify.CHECKS)
    assert all(r["passed"] for r in data["results"])


def test_verify_exits_nonzero_when_an_identity_fails(monkeypatch, capsys):
    broken = verify.Check("deliberately broken", lambda case: 1.0, 1e-8, 1)
    monkeypatch.setattr(verify, "CHECKS", (broken,))
    assert main(["verify", "--seed", "0"]) == 1
    assert "| deliberately broken | 1 | 1.00e+00 | <= 1e-08 | FAIL |" in capsys.readouterr().out


def test_mdvi_writes_png_and_json(tmp_path, capsys):
    png = tmp_path / "fig" / "mdvi.png"
    code = main(
        [
            "mdvi",
            "--out",
            str(png),
            "--iterations",
            "30",
            "--seeds",
            "2",
            "--states",
            "6",
            "--lams",
            "0.5,5",
        ]
    )
    assert code == 0
    assert png.stat().st_size > 10_000 and png.read_bytes()[:4] == b"\x89PNG"
    data = json.loads(png.with_suffix(".json").read_text())
    assert set(data["mdvi"]) == {"0.5", "5.0"} and len(data["vi"]) == 2
    assert len(data["vi"][0]) == 31
    assert "approximate VI: final error" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["mdvi", "--out", "figure.txt"], "--out must be a .png file"),
        (["mdvi", "--out", "f.png", "--lams", "1,x"], "--lams must be comma-separated"),
        (["mdvi", "--out", "f.png", "--lams", "0,1"], "lams must be positive"),
    ],
)
def test_bad_input_is_exit_code_2_with_a_message(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err


@pytest.mark.parametrize(
    "argv",
    [
        ["verify", "--cases-scale", "-1"],
        ["verify", "--cases-scale", "inf"],
        ["verify", "--seed", "-1"],
        ["verify", "--seed", str(2**70)],
    ],
)
def test_bad_numbers_are_usage_errors(argv, capsys):
    """Checked while parsing (tailor.cli.args): argparse's usage error, exit code 2."""
    with pytest.raises(SystemExit) as exc:
        main(argv)
    err = capsys.readouterr().err
    assert exc.value.code == 2 and f"error: argument {argv[1]}: " in err, err


def test_unknown_subcommand_and_version(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["frobnicate"])
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0 and "tailor 0.1.0" in capsys.readouterr().out
