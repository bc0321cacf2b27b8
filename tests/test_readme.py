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


def yaml_blocks() -> list[str]:
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as handle:
        return re.findall(r"^```yaml\n(.*?)^```$", handle.read(), flags=re.S | re.M)


def test_every_yaml_block_of_the_readme_is_a_valid_config(monkeypatch, tmp_path):
    """A run config (a fragment completed by a minimal one), or a leak audit config, which runs
    once its splits point at images that exist here."""
    import yaml

    import harness
    from harness.config import load_config

    monkeypatch.chdir(ROOT)
    blocks = yaml_blocks()
    assert len(blocks) >= 3
    minimal = {"images": ["builtin:astronaut"], "hashers": ["aHash", "pHash"], "sweeps": [{"family": "g", "b": "grayscale"}]}
    for number, block in enumerate(blocks, 1):
        raw = yaml.safe_load(block)
        if "splits" in raw:
            raw.update(splits={name: ["builtin:camera"] if name == "train" else ["builtin:coffee"]
                               for name in raw["splits"]}, output=str(tmp_path / "audit"))
            harness.find_leaks(raw)
            continue
        path = tmp_path / f"block{number}.yaml"
        path.write_text(yaml.safe_dump({**minimal, **raw}))
        assert load_config(str(path)).pairs, number
