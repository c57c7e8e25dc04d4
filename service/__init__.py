"""Frugal: prove a cheaper ML model is good enough, then ship it.  Build the app with service.app.create_app."""

__version__ = "0.1.0"
