"""Every ``frugal`` command written in README.md and docs/ is one the CLI accepts as written, and the
README's embedded walk-through runs: ``make demo``, then ``frugal report --experiment demo-shadow
--pdf``, then every documented ``frugal`` command as written (placeholders bound) on the demo's
database, servers included (started, checked, stopped with SIGTERM).  (The Postgres and Redis commands run from
the installed wheel in test_installed_wheel.py.)"""

from __future__ import annotations

import itertools
import os
import re
import shlex
import subprocess
import sys
import time
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


def _variants(command: str, placeholders: dict[str, str] = PLACEHOLDERS) -> list[list[str]]:
    """Expand ``a|b`` alternatives and ``[--opt x]`` optional parts into argument lists."""
    command = re.sub(r"\[([^\]]+)\]", r"\1", command)      # include every optional part
    words = shlex.split(command)[1:]
    choices = [w.split("|") if "|" in w and not w.startswith(("'", '"')) else [w] for w in words]
    out = []
    for combo in itertools.product(*choices):
        out.append([placeholders.get(w, w) for w in combo])
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
@pytest.mark.timeout(1500)
def test_the_readme_walkthrough_runs_on_the_embedded_default(tmp_path):
    """``make demo`` as written (it runs ``frugal demo``), then the commands the README and docs/reports.md suggest,
    then every documented ``frugal`` command on the demo's database."""
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
    _run_every_documented_command(frugal, env, tmp_path)
    again = frugal("demo", "--port", "0")       # a second run replaces the demo's own database
    assert "demo-shadow" in again.stdout


# Names the docs use in prose for a command group or a command that needs options ("`frugal report` writes ..."):
# not commands to run as they stand.
PROSE = {"frugal models", "frugal plan", "frugal report"}
SERVERS = {"serve", "worker", "beat", "scorer"}      # run until stopped


def _run_every_documented_command(frugal, env: dict[str, str], tmp_path: Path) -> None:
    """Every documented ``frugal`` command, as written with its placeholders bound, on the demo's
    database: one-shot commands exit 0; servers start, serve (``frugal serve``: /readyz; a worker's
    ``--metrics-port``: its metrics; the others: the line saying they are up), and stop with exit 0
    on SIGTERM."""
    from tests.harness.processes import Process
    from tests.harness.servers import free_port

    commands = sorted({c for _, c in SNIPPETS} - PROSE - {"frugal demo"}, key=lambda c: ("revoke" in c, c))
    created = frugal("keys", "create", "--scope", "admin", "--name", "me")
    key_id = re.search(r"# key id (\d+)", created.stdout + created.stderr).group(1)
    bound = {"NAME": "demo-shadow", "churn-cheap": "demo-shadow", "MODEL": "cancer-logistic:1", "KEY": key_id, "N": "1"}
    for command in commands:
        for args in _variants(command, bound):
            if args[0] not in SERVERS:
                frugal(*args, timeout=300)
                continue
            port, metrics_port = free_port(), free_port()
            args = [str(metrics_port) if a == "9108" else a for a in args]
            probe = f"http://127.0.0.1:{metrics_port}/metrics" if "--metrics-port" in args else \
                {"serve": f"http://127.0.0.1:{port}/readyz"}.get(args[0])
            # and its own line saying it is up (a worker serves its metrics before it is ready)
            marker = {"worker": "ready.", "beat": "beat: Starting", "scorer": "shadow scorer"}.get(args[0], "")
            server = Process([sys.executable, "-m", "service.cli", *args], dict(env, FRUGAL_BIND=f"127.0.0.1:{port}"),
                             tmp_path / f"{'-'.join(args)}.log")
            try:
                _wait_until_up(server, probe, marker, command)
            finally:
                code = server.stop(timeout=60, group=False)   # as an operator's `kill PID` does
            assert code == 0, (command, code, server.log())


def _wait_until_up(server, probe: str | None, marker: str, command: str, timeout: float = 90) -> None:
    """Until ``probe`` (a URL; None: none) answers 200 and ``marker`` is in the server's log; an exit fails at once."""
    import httpx

    def answers() -> bool:
        try:
            return httpx.get(probe, timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    deadline = time.monotonic() + timeout
    while True:
        assert server.proc.poll() is None, (command, server.log())
        if marker in server.log_path.read_text(errors="replace") and (probe is None or answers()):
            return
        assert time.monotonic() < deadline, f"{command}: not up after {timeout} s ({probe or marker!r})\n{server.log()}"
        time.sleep(0.5)
