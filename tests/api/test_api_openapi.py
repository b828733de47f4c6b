"""The OpenAPI document describes the seed's contract: its paths, the required id parameter and
the required fields of a new job."""

from typing import Any

import pytest

from api.support import ApiClient
from queue_core.limits import MAX_TIMEOUT_S


@pytest.fixture(name="openapi")
async def fx_openapi(shared_client: ApiClient) -> dict[str, Any]:
    response = await shared_client.get("/schema/openapi.json")
    assert response.status_code == 200
    document: dict[str, Any] = response.json()
    return document


def resolve(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """Follow one local ``$ref`` (``#/components/schemas/Name``), if there is one."""
    ref = schema.get("$ref")
    if ref is None:
        return schema
    node: Any = document
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    assert isinstance(node, dict)
    return node


@pytest.mark.parametrize(
    ("path", "method"),
    [("/health", "get"), ("/ready", "get"), ("/jobs", "post"), ("/jobs/status", "get")],
)
def test_openapi_lists_the_contract_operations(
    openapi: dict[str, Any], path: str, method: str
) -> None:
    assert method in openapi["paths"].get(path, {}), sorted(openapi["paths"])


def test_openapi_requires_the_id_query_parameter_of_job_status(openapi: dict[str, Any]) -> None:
    parameters = openapi["paths"]["/jobs/status"]["get"]["parameters"]

    (id_param,) = [p for p in parameters if p["name"] == "id"]
    assert id_param["in"] == "query"
    assert id_param["required"] is True
    assert id_param["schema"]["type"] == "string"
    assert id_param["schema"]["format"] == "uuid"


def test_openapi_job_create_schema_requires_type_and_payload(openapi: dict[str, Any]) -> None:
    operation = openapi["paths"]["/jobs"]["post"]
    body_schema = operation["requestBody"]["content"]["application/json"]["schema"]
    job_create = resolve(openapi, body_schema)

    assert job_create is openapi["components"]["schemas"]["JobCreate"]
    assert sorted(job_create["required"]) == ["payload", "type"]
    assert job_create["properties"]["type"]["type"] == "string"
    assert job_create["properties"]["payload"]["type"] == "object"
    assert operation["requestBody"]["required"] is True


def test_openapi_job_status_schema_has_exactly_the_seed_keys(openapi: dict[str, Any]) -> None:
    operation = openapi["paths"]["/jobs/status"]["get"]
    schema = resolve(
        openapi, operation["responses"]["200"]["content"]["application/json"]["schema"]
    )

    assert set(schema["properties"]) == {
        "ID",
        "Type",
        "Payload",
        "Status",
        "Attempts",
        "MaxAttempts",
        "ErrorMessage",
        "ScheduledAt",
        "CreatedAt",
        "UpdatedAt",
    }


def test_openapi_documents_the_created_status_and_location_of_post_jobs(
    openapi: dict[str, Any],
) -> None:
    responses = openapi["paths"]["/jobs"]["post"]["responses"]

    assert "201" in responses
    assert "Location" in responses["201"]["headers"]


def component(openapi: dict[str, Any], name: str) -> dict[str, Any]:
    schema: dict[str, Any] = openapi["components"]["schemas"][name]
    return schema


def test_openapi_job_status_payload_may_be_null(openapi: dict[str, Any]) -> None:
    """A stored payload too deep to decode is shown as null (test_api_undecodable_payload.py)."""
    payload = component(openapi, "JobStatusResponse")["properties"]["Payload"]

    assert {"type": "null"} in payload["oneOf"]


def test_openapi_job_create_states_the_bounds_the_api_checks(openapi: dict[str, Any]) -> None:
    properties = component(openapi, "JobCreate")["properties"]

    assert properties["payload"]["minProperties"] == 1
    assert properties["timeout_s"]["exclusiveMinimum"] == 0
    assert properties["timeout_s"]["maximum"] == MAX_TIMEOUT_S
    assert "1970-01-01T00:00:00Z" in properties["scheduled_at"]["description"]
    assert "2200-01-01T00:00:00Z" in properties["scheduled_at"]["description"]


@pytest.mark.parametrize("name", ["JobCreate", "JobBatchCreate"])
def test_openapi_request_bodies_refuse_unknown_fields(openapi: dict[str, Any], name: str) -> None:
    assert component(openapi, name)["additionalProperties"] is False


@pytest.mark.parametrize("path", ["/jobs", "/v1/jobs/batch"])
def test_openapi_documents_the_408_of_a_slow_body(openapi: dict[str, Any], path: str) -> None:
    assert "408" in openapi["paths"][path]["post"]["responses"]


@pytest.mark.parametrize("path", ["/jobs", "/v1/jobs/batch"])
def test_openapi_links_a_new_job_to_its_status_cancel_and_retry(
    openapi: dict[str, Any], path: str
) -> None:
    links = openapi["paths"][path]["post"]["responses"]["201"]["links"]

    assert {link["operationId"] for link in links.values()} == {
        "getJobStatus",
        "cancelJob",
        "retryJob",
    }
