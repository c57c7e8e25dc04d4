"""The demo: models trained on a bundled dataset (``models``) and the whole loop end to end (``run``)."""
