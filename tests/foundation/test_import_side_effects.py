"""Importing service or analysis opens no connection, thread or file."""

import subprocess
import sys
import textwrap

from tests.harness.processes import ROOT

PROBE = textwrap.dedent(
    """
    import os, threading, sys
    def fds():
        return sorted(os.listdir('/proc/self/fd'))
    before_fds, before_threads = fds(), threading.active_count()
    import service, service.app, service.api, service.worker.tasks, service.settings, service.cli
    import analysis
    after_fds, after_threads = fds(), threading.active_count()
    assert after_threads == before_threads, ('threads', before_threads, after_threads)
    opened = set(after_fds) - set(before_fds)
    # the only new descriptor allowed is the one listdir itself is using at that moment
    links = {fd: os.readlink(f'/proc/self/fd/{fd}') for fd in opened if os.path.exists(f'/proc/self/fd/{fd}')}
    assert not links, ('files opened at import', links)
    assert not os.path.exists('.frugal-import-probe'), 'data dir created at import'
    print('clean')
    """
)


def test_importing_service_and_analysis_has_no_side_effects(tmp_path):
    env = {"PYTHONPATH": str(ROOT), "FRUGAL_DATA_DIR": str(tmp_path / ".frugal-import-probe"), "PATH": "/usr/bin:/bin"}
    result = subprocess.run([sys.executable, "-c", PROBE], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "clean"
    assert not (tmp_path / ".frugal-import-probe").exists()
