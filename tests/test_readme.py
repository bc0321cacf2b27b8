"""The README's Python code blocks run, in order, as a reader would paste them into a notebook."""

import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def python_blocks() -> list[str]:
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as handle:
        return re.findall(r"^```python\n(.*?)^```$", handle.read(), flags=re.S | re.M)


def test_the_readme_has_python_examples():
    assert len(python_blocks()) >= 3


def test_every_python_block_of_the_readme_runs(monkeypatch, capsys):
    monkeypatch.chdir(ROOT)  # the README's paths are relative to the repository
    namespace: dict = {"__name__": "__readme__"}
    for number, block in enumerate(python_blocks()):
        try:
            exec(compile(block, f"README.md python block {number + 1}", "exec"), namespace)
        except Exception as exc:  # say which block failed
            raise AssertionError(f"README python block {number + 1} failed: {exc!r}\n{block}") from exc
    out = capsys.readouterr().out
    assert "Results('collection'" in out and "did you mean 'pHash'" in out
