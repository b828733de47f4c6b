"""The Python client's tour (docs/how-to/queuectl.md), run against a real API and worker by
tests/docs/test_docs_examples.py with QUEUE_URL and QUEUE_API_KEY set."""

import os

url = os.environ["QUEUE_URL"]
api_key = os.environ["QUEUE_API_KEY"]

# --8<-- [start:example]
from queue_client import Client  # noqa: E402 - the page shows the example from its import

with Client(url, api_key) as queue:
    email = {"recipient": "a@example.com", "subject": "Hi", "body": "Hello"}
    enqueued = queue.enqueue("send_email", email, queue="emails")
    job = queue.wait(enqueued.job.id, timeout_s=60)  # long polls ?wait=; WaitTimeoutError
    for failed in queue.iter_jobs(status="failed", type="send_email"):  # follows the cursor
        queue.retry_job(failed.id)
    queue.pause_queue("emails")
    queue.cancel_jobs(limit=500, queue="emails", status="pending")  # how many
# --8<-- [end:example]
print(job.status)
