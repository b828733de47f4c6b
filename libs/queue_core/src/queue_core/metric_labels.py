"""Label values shared by the API's and the workers' metrics.

A job's type and queue are chosen by whoever enqueues it, so each service names in its metric
labels only the types and queues it was configured with, and counts every other one under
:data:`OTHER_LABEL`: one series however many names clients make up. Both services use this
one spelling, so that a dashboard can put the API's and the workers' ``other`` side by side.
"""

from typing import Final

OTHER_LABEL: Final = "other"
