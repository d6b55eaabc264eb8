"""The README's command lines cannot go stale: every ``sarheight`` line of its shell
examples parses with today's options (argparse commands), or is accepted by LightningCLI
with today's configuration keys (``fit``, ``lcz fit|test``: ``--print_config``, which
reads and checks every key without training)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def readme_commands() -> list[list[str]]:
    """The ``sarheight`` command lines of the ``bash`` blocks of the README and of its command
    reference (docs/command_line.md), continuation lines
    joined and comments dropped, as argument lists (without ``sarheight``)."""
    text = "\n".join((ROOT / name).read_text() for name in ("README.md", "docs/command_line.md"))
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if words and words[0] == "sarheight":
                commands.append(words[1:])
    return commands


COMMANDS = readme_commands()


def test_the_readme_shows_every_workflow():
    shown = {" ".join(words[:2]) if words[0] in ("terrain", "buildings", "lcz") else words[0] for words in COMMANDS}
    assert {"fit", "terrain refine", "terrain scenes", "terrain study", "buildings predict", "lcz sample", "lcz fit",
            "lcz test", "lcz sweep", "reconstruct", "demo"} <= shown


@pytest.mark.parametrize("words", COMMANDS, ids=[" ".join(words[:2]) for words in COMMANDS])
def test_a_readme_command_parses(words, monkeypatch, capsys):
    from sarheight.cli import build_parser, main

    monkeypatch.chdir(ROOT)
    args, rest = build_parser().parse_known_args(words)
    if not getattr(args, "passthrough", False):
        assert rest == [], f"unknown options {rest}"
        return
    pytest.importorskip("lightning")
    with pytest.raises(SystemExit) as info:
        main([*words, "--print_config"])
    assert info.value.code == 0, capsys.readouterr().err


def test_the_readme_is_short_and_opens_with_the_two_commands():
    """Three hundred lines at most; the first screen (40 lines) says what sarheight is and
    gives `make demo` and `make test`; the long command reference is linked."""
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 300, len(lines)
    first_screen = "\n".join(lines[:40])
    assert "make demo" in first_screen and "make test" in first_screen and "SAR" in first_screen
    assert "docs/command_line.md" in "\n".join(lines) and (ROOT / "docs" / "command_line.md").is_file()
