"""Celery rerank workers: stages 2 and 3 of ImageScope as asynchronous jobs."""
