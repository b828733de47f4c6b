"""``queuectl``: the queue from a terminal, built on ``queue_client.Client``."""
