"""Alembic migrations.  The wheel ships this folder as the package ``service.migrations`` (see
setup.py) so ``frugal db upgrade`` finds it in an installed package; in a checkout it is read here."""
