"""The HTTP API: ``create_app(engine, jobs, settings)`` and ``serve(settings)``."""

from imagescope.api.app import create_app, serve

__all__ = ["create_app", "serve"]
