"""Celery workers: the app binding (``celery_app``), the tasks (``tasks``), the beat table (``schedule``)."""
