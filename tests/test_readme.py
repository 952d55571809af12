"""The README's Python quickstart (its ```python blocks) runs as written; ```py blocks are
illustrations that train for minutes and are not run here."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_quickstart_runs(capsys):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "README has no python block"
    for block in blocks:
        exec(compile(block, "README.md", "exec"), {})
    out = capsys.readouterr().out.split("\n")
    assert out[0].startswith("residual") and out[0].endswith("1.09944")
    assert float(out[1]) < 1e-10
