"""Schemathesis against a real ``queue-api`` process on a fresh migrated database: requests
generated from the OpenAPI document, valid and invalid, one at a time and chained through its
links (POST /jobs → status, cancel, retry), sending an API key that holds every scope. No answer
may be a 5xx, and every answer must be one the document promises: its status, content type and
body schema.

The document is built in-process when the module is collected, because ``@parametrize`` needs
it then, before any fixture has started a server (Schemathesis's fixture-based loader, which
would read it from the process, fails on pytest 9.2: it sets ``Function._nodeid``, which pytest
removed). The first test checks that the process serves exactly that document.

Bounded (few examples, derandomized) so that the file runs in seconds on two cores in
``make test``; Hypothesis shrinks a failure to the smallest request that shows it.
"""

import asyncio
from typing import Any

import asyncpg
import httpx
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from e2e.stack import Api, closed_port_url
from queue_api.app import create_app
from queue_api.settings import ApiSettings

Case = schemathesis.Case[schemathesis.APIOperation[Any, Any, Any, Any]]

# Building the app connects to nothing; its document does not depend on the database.
DOCUMENT = create_app(ApiSettings(DATABASE_URL=closed_port_url())).openapi_schema.to_schema()
schema = schemathesis.openapi.from_dict(DOCUMENT)
# The chains leave out GET /v1/queues: Schemathesis infers links from its list to pause and
# resume, and the list grows with every queue name a generated request invents, so a replayed
# chain draws from a different list and Hypothesis fails it as flaky. The stateless test above
# still sends it every kind of request. GET /v1/schedules likewise (its links to pause and resume
# drew from an empty list in one run and not in its replay: flaky too).
CHAIN_LEFT_OUT = {("/v1/queues", "get"), ("/v1/schedules", "get")}
CHAIN_SCHEMA = schemathesis.openapi.from_dict(
    {
        **DOCUMENT,
        "paths": {
            path: {m: op for m, op in item.items() if (path, m) not in CHAIN_LEFT_OUT}
            for path, item in DOCUMENT["paths"].items()
        },
    }
)

# The longest ?wait= a chain sends (see before_call).
MAX_WAIT_S = 0.2

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]

BOUNDED = settings(
    max_examples=50,
    deadline=None,  # a real server on a shared machine: latency is not what is tested
    derandomize=True,  # the same requests on every run, so a failure reproduces
    database=None,  # and nothing remembered between runs either
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


def test_the_process_serves_the_document_the_requests_are_generated_from(
    api_process: Api,
) -> None:
    response = httpx.get(f"{api_process.base_url}/schema/openapi.json", timeout=10)

    assert response.status_code == 200
    assert response.json() == DOCUMENT


@schema.parametrize()
@BOUNDED
def test_no_generated_request_gets_a_server_error_or_an_undocumented_answer(
    case: Case, api_process: Api
) -> None:
    response = case.call_and_validate(
        base_url=api_process.base_url, headers=api_process.auth_headers, checks=CHECKS
    )
    # Negative cases may drop the Authorization header on purpose (401 is then right); a valid
    # request must get through, or every other check would only ever see 401s.
    if case.meta is not None and not case.meta.generation.mode.is_negative:
        assert response.status_code != 401, response.text


def _forget_jobs_and_pauses(database_url: str) -> None:
    async def clear() -> None:
        conn = await asyncpg.connect(database_url)
        try:
            await conn.execute(
                "DELETE FROM job_dependencies; DELETE FROM concurrency_keys;"
                " DELETE FROM jobs; DELETE FROM queues"
            )
        finally:
            await conn.close()

    asyncio.run(clear())


def test_no_chain_of_linked_requests_gets_a_server_error_or_an_undocumented_answer(
    api_process: Api, shared_db_url: str
) -> None:
    class Workflow(CHAIN_SCHEMA.as_state_machine()):  # type: ignore[misc]
        def setup(self) -> None:
            # Every chain starts from the same state. Left to accumulate, an earlier chain's
            # jobs change a later one's answers (its Idempotency-Key or unique_key replayed:
            # 200 instead of 201), so the same steps fill different bundles, and Hypothesis
            # stops with FlakyStrategyDefinition instead of running the chain.
            _forget_jobs_and_pauses(shared_db_url)

        def before_call(self, case: Case) -> None:
            # GET /v1/jobs/{id}?wait=S waits up to 60 s for a job that no worker here will
            # ever run; Schemathesis gives up on a response after 10 s. A chain with a long
            # wait then ended with the client's timeout, or not, by a few milliseconds either
            # way, and Hypothesis failed the replay as flaky. The waiting itself has tests of
            # its own (test_api_jobs_v1.py); here a wait only needs to be a valid one.
            wait = (case.query or {}).get("wait")
            if isinstance(wait, int | float) and not isinstance(wait, bool) and wait > MAX_WAIT_S:
                case.query["wait"] = MAX_WAIT_S

        def get_call_kwargs(self, case: Case) -> dict[str, Any]:  # noqa: ARG002 - same for all
            return {"base_url": api_process.base_url, "headers": api_process.auth_headers}

        def validate_response(
            self,
            response: schemathesis.Response,
            case: Case,
            **_: Any,
        ) -> None:
            case.validate_response(response, checks=CHECKS)

    Workflow.run(settings=settings(BOUNDED, max_examples=25, stateful_step_count=6))
