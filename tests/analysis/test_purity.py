"""`analysis` is pure statistics: it imports with only its runtime dependencies and never imports
`service` (checked in a fresh interpreter, and by reading every module's imports)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[2]
ALLOWED = {"numpy", "scipy", "statsmodels", "analysis", "__future__"}


def test_no_module_imports_anything_but_numpy_scipy_statsmodels_and_the_stdlib():
    offenders = []
    for path in sorted((ROOT / "analysis").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 else []
            for name in names:
                top = name.split(".")[0]
                if top not in ALLOWED and top not in sys.stdlib_module_names:
                    offenders.append(f"{path.name}: {name}")
    assert not offenders


def test_importing_every_module_loads_no_service_code():
    code = ("import sys, pkgutil, importlib, analysis\n"
            "for m in pkgutil.iter_modules(analysis.__path__): importlib.import_module('analysis.' + m.name)\n"
            "bad = sorted(n for n in sys.modules if n.split('.')[0] in ('service', 'flask', 'sqlalchemy', 'celery'))\n"
            "print(','.join(bad))\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
