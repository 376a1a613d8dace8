"""Ingest: the Celery app, message schema, image loading, batching, writes and dead-lettering."""
