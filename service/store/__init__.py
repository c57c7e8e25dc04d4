"""Persistence: the schema (``tables``), the database handle (``database``) and one store module
per concept.  Stores take a Session, hold all SQL, never commit, and return plain objects."""
