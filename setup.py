"""Package layout (everything else is in pyproject.toml).

The top-level ``migrations/`` folder is shipped inside the wheel as ``service.migrations``, so an
installed package carries its own migrations (found with importlib.resources, service/migrate.py)
without putting a generic top-level ``migrations`` package into site-packages.  pyproject.toml cannot
combine a package search with a renamed folder, hence this file.
"""

from setuptools import find_packages, setup

setup(
    packages=find_packages(include=["service", "service.*", "analysis", "analysis.*"]) + ["service.migrations"],
    package_dir={"service.migrations": "migrations"},
    package_data={
        "service": ["templates/**/*", "static/**/*"],
        "service.migrations": ["script.py.mako", "env.py", "versions/*.py"],
    },
)
