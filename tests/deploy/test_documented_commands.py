"""Every ``frugal`` command written in README.md and docs/ is one the CLI accepts as written, and the
README's embedded walk-through runs: ``frugal demo``, then ``frugal report --experiment demo-shadow
--pdf`` and the other commands on the demo's database.  (The Postgres and Redis commands run from
the installed wheel in test_installed_wheel.py.)"""

from __future__ import annotations

import itertools
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import click
import pytest

from tests.harness.processes import ROOT

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# Placeholders the docs use, and a value of the right shape for each.
PLACEHOLDERS = {"NAME": "demo-shadow", "N": "2", "MODEL": "m:1", "KEY": "1"}


def _snippets() -> list[tuple[str, str]]:
    """(file, command text) of each ``frugal ...`` command in inline code or a code block."""
    found = []
    for path in DOCS:
        text = path.read_text()
        blocks = re.findall(r"```[a-z]*\n(.*?)```", text, re.S)
        lines = [line for block in blocks for line in block.replace("\\\n", " ").splitlines()]
        inline = re.findall(r"`([^`\n]+)`", re.sub(r"```.*?```", "", text, flags=re.S))
        for candidate in lines + inline:
            for match in re.finditer(r"(?:^|[\s(])(frugal (?:[a-z]+)(?: [^#`]*)?)", candidate):
                command = match.group(1).split("  #")[0].split(" # ")[0].strip().rstrip(".,;:)")
                found.append((path.name, command))
    return found


def _variants(command: str) -> list[list[str]]:
    """Expand ``a|b`` alternatives and ``[--opt x]`` optional parts into argument lists."""
    command = re.sub(r"\[([^\]]+)\]", r"\1", command)      # include every optional part
    words = shlex.split(command)[1:]
    choices = [w.split("|") if "|" in w and not w.startswith(("'", '"')) else [w] for w in words]
    out = []
    for combo in itertools.product(*choices):
        out.append([PLACEHOLDERS.get(w, w) for w in combo])
    return out


def _parses(args: list[str], files: dict[str, str]) -> None:
    """Resolve the subcommand and parse its options exactly as click would before running it."""
    from service.cli import main

    command, rest = main, [files.get(a, a) for a in args]
    while isinstance(command, click.Group) and rest:
        sub = command.get_command(click.Context(command), rest[0])
        if sub is None:
            raise click.UsageError(f"no command {rest[0]!r}")
        command, rest = sub, rest[1:]
    if not isinstance(command, click.Group):
        command.make_context(command.name, rest)


SNIPPETS = _snippets()


def test_the_docs_name_frugal_commands():
    commands = {c.split()[1] for _, c in SNIPPETS}
    assert {"serve", "worker", "beat", "db", "keys", "models", "report", "demo"} <= commands, commands


@pytest.mark.parametrize("where,command", SNIPPETS, ids=[f"{w}:{c}" for w, c in SNIPPETS])
def test_every_documented_frugal_command_is_accepted_as_written(where, command, tmp_path):
    # files the docs name exist on the reader's machine: make them here
    files = {}
    for name in ("model.onnx", "holdout.csv"):
        (tmp_path / name).write_bytes(b"x")
        files[name] = str(tmp_path / name)
    for args in _variants(command):
        try:
            _parses(args, files)
        except click.UsageError as exc:
            pytest.fail(f"{where}: `{command}` -> frugal {' '.join(args)}: {exc.format_message()}")


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_the_readme_walkthrough_runs_on_the_embedded_default(tmp_path):
    """``make demo`` as written (it runs ``frugal demo``), then the commands the README and docs/reports.md suggest."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FRUGAL_")}
    env.update({"PYTHONPATH": str(ROOT), "FRUGAL_DATA_DIR": str(tmp_path / ".frugal"), "FRUGAL_DEMO_REQUESTS": "800"})

    def frugal(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
        done = subprocess.run([sys.executable, "-m", "service.cli", *args], env=env, cwd=tmp_path, capture_output=True,
                              text=True, timeout=timeout)
        assert done.returncode == 0, (args, done.stdout[-3000:], done.stderr[-3000:])
        return done

    # the README's quick start as written: `make demo` in the checkout, its data directory and port from the environment
    make_env = {k: v for k, v in env.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    make_env["FRUGAL_DEMO_PORT"] = "0"
    demo = subprocess.run(shlex.split("make demo"), env=make_env, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert demo.returncode == 0, (demo.stdout[-3000:], demo.stderr[-3000:])
    assert "demo-shadow" in demo.stdout and "demo-ab" in demo.stdout
    assert (tmp_path / ".frugal" / "frugal.db").is_file()      # it ran on the embedded default, in FRUGAL_DATA_DIR
    report = frugal("report", "--experiment", "demo-shadow", "--pdf")
    pdf = Path(re.search(r"^pdf: (.+)$", report.stdout, re.M).group(1))
    assert pdf.is_file() and pdf.read_bytes().startswith(b"%PDF") and pdf.stat().st_size > 10_000
    assert pdf.is_relative_to(tmp_path / ".frugal" / "reports")
    keys = frugal("keys", "list")
    assert "demo-admin" in keys.stdout and "demo-sdk" in keys.stdout
    assert "report" in frugal("report", "--portfolio").stdout
    assert frugal("db", "current").stdout.startswith("current ")
    again = frugal("demo", "--port", "0")       # a second run replaces the demo's own database
    assert "demo-shadow" in again.stdout
