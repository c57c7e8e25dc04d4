"""Test harness: real Postgres, Redis and Celery worker processes for the test suite."""
