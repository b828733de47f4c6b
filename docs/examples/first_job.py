"""A first job: enqueue, wait for it, print its result. Run with QUEUE_URL and QUEUE_API_KEY set
(tests/docs/test_docs_examples.py runs it against a real API and worker)."""

# --8<-- [start:example]
import os

from queue_client import Client

with Client(os.environ["QUEUE_URL"], os.environ["QUEUE_API_KEY"]) as queue:
    enqueued = queue.enqueue("greet", {"name": "Ada"})
    job = queue.wait(enqueued.job.id, timeout_s=30)
    print(job.status, job.result)  # completed {'greeting': 'Hello, Ada!'}
# --8<-- [end:example]
