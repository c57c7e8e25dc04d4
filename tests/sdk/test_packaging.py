"""frugal_sdk stands alone: it imports with only urllib3 beside it, and never imports the service."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import urllib3

SDK = Path(__file__).resolve().parents[2] / "sdk"

PROBE = """
import sys
sys.path[:0] = [{deps!r}, {sdk!r}]
import frugal_sdk
from frugal_sdk import Client
with Client("http://127.0.0.1:9", "k", init_timeout=0, timeout=0.1) as c:
    a = c.assign("e", "u")
    c.record_outcome("r1", 1.0)
assert a.reason == "ERROR", a
third_party = sorted(m for m in sys.modules if m.split(".")[0] not in sys.stdlib_module_names)
print(" ".join(third_party))
"""


def test_the_sdk_imports_and_runs_with_only_its_own_dependency(tmp_path):
    deps = tmp_path / "site"
    shutil.copytree(Path(urllib3.__file__).parent, deps / "urllib3")
    # -I -S: no site-packages, no user site, no PYTHONPATH: only the stdlib, urllib3 and the SDK
    out = subprocess.run([sys.executable, "-I", "-S", "-c", PROBE.format(deps=str(deps), sdk=str(SDK))],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    roots = {m.split(".")[0] for m in out.stdout.split()}
    assert roots - {"__main__"} == {"frugal_sdk", "urllib3"}, roots


def test_the_sdk_declares_one_runtime_dependency():
    import tomllib

    project = tomllib.loads((SDK / "pyproject.toml").read_text())["project"]
    assert project["name"] == "frugal-sdk" and project["dependencies"] == ["urllib3>=2.0"]
    assert "openfeature-sdk" in project["optional-dependencies"]["openfeature"][0]
