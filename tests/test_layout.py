"""The layout of docs/ARCHITECTURE.md holds where a contract cannot say it statically."""

from __future__ import annotations

import subprocess
import sys


def _modules_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print(' '.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_the_numpy_lab_does_not_import_torch() -> None:
    loaded = _modules_after(
        "import tailor.tabular, tailor.tabular.verify, tailor.tabular.figures, tailor.tabular.pg"
    )
    assert "tailor.tabular.verify" in loaded
    assert "torch" not in loaded


def test_importing_tailor_is_cheap() -> None:
    loaded = _modules_after("import tailor")
    assert "torch" not in loaded and "tailor.methods" in loaded
