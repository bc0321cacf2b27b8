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


def usage_lines() -> dict[str, str]:
    """The usage block of the README's "Command line": command -> its (joined) usage line."""
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as handle:
        section = handle.read().split("\n## Command line\n", 1)[1]
    block = re.search(r"^```\n(.*?)^```$", section, flags=re.S | re.M).group(1)
    return {match.group(1): " ".join(match.group(2).split())
            for match in re.finditer(r"^python -m harness (\w+)(.*(?:\n +.*)*)", block, flags=re.M)}


def test_the_readme_usage_lines_match_the_commands_options():
    """Every option of each command, with its metavar, and optional ([...]) exactly where --help
    has it optional: the leaks line showed --train and --test as required, and no NAME=N,... form."""
    import argparse

    from harness.__main__ import build_parser

    lines = usage_lines()
    commands = build_parser().commands.choices
    assert set(lines) == set(commands)
    for name, command in commands.items():
        line, shown = lines[name], set()
        for action in command._actions:
            if not action.option_strings or action.help == argparse.SUPPRESS or isinstance(
                    action, argparse._HelpAction):
                continue
            option = action.option_strings[-1]
            text = f"{option} {action.metavar}" if action.metavar else option
            assert text in line, (name, text)
            start = line.index(text)
            optional = line[:start].count("[") > line[:start].count("]")
            assert optional == (not action.required), (name, option)
            shown.add(option)
        assert set(re.findall(r"--[a-z-]+", line)) == shown, name


def test_the_committed_reports_and_the_readme_link_only_committed_files():
    """reports/article/summary.md showed `![previews](previews.png)`, a file git ignores (it shows the
    licensed image), so a reader of the committed report (on GitHub, in a clone) saw a broken image.
    Every relative link or image of the committed summaries and of the README must be a file git
    tracks, or a folder holding some."""
    import subprocess

    import pytest

    listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True)
    if listed.returncode != 0:
        pytest.skip("not a git checkout: which files are committed is unknown")
    tracked = set(listed.stdout.decode("utf-8", "surrogateescape").split("\0")) - {""}
    folders = {os.path.dirname(path) for path in tracked}
    while "" not in folders and folders:  # every folder above a tracked file
        folders |= {os.path.dirname(folder) for folder in folders}
    documents = ["README.md"] + sorted(path for path in tracked
                                       if path.startswith("reports/") and path.endswith("summary.md"))
    broken = []
    for document in documents:
        with open(os.path.join(ROOT, document), encoding="utf-8") as handle:
            text = re.sub(r"`[^`\n]*`", "", handle.read())  # code spans hold no links
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:|#", target):  # a URL or an anchor
                continue
            path = os.path.normpath(os.path.join(os.path.dirname(document), target.split("#")[0]))
            if path not in tracked and path not in folders:
                broken.append(f"{document}: {target}")
    assert broken == []
