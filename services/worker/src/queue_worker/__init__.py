"""queue_worker: claims due jobs from PostgreSQL and runs their handlers."""
