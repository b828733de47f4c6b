"""queue_api: the HTTP front door of the task queue (Litestar)."""
