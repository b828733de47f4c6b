"""What the OpenAPI document needs beyond what Litestar derives from the routes, so that it
tells the truth about the API: clients generated from it, and Schemathesis's tests
(tests/api/test_api_schemathesis.py), rely on it.

- Links from a new job to what a client can do with it next, which Schemathesis's stateful
  tests follow to chain real requests. Litestar has no parameter for links, but it lets a route
  choose the class of its ``Operation`` object: :func:`linked_operation` makes one that adds
  them once Litestar has built the responses.
- ``additionalProperties: false`` for bodies that refuse unknown fields: Litestar does not
  read msgspec's ``forbid_unknown_fields``, so the document said any extra field was valid.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

# Litestar's own schema plugin for msgspec structs, extended below: its module is private, but
# re-implementing what it does would be far more code to keep in step with Litestar.
from litestar._openapi.schema_generation.plugins.struct import StructSchemaPlugin
from litestar.openapi.spec import Link, OpenAPIResponse, Operation

if TYPE_CHECKING:
    from litestar._openapi.schema_generation import SchemaCreator
    from litestar.openapi.spec import Schema
    from litestar.typing import FieldDefinition

# The new job's id, from the Location header (/jobs/status?id=<uuid>) of POST /jobs. The seed's
# body carries the id only inside a sentence ("Message of id: <uuid>"), which no JSON pointer
# can cut out; "#regex:" is Schemathesis's extension of OpenAPI's runtime expressions for that.
_ID_IN_LOCATION = "$response.header.Location#regex:[?&]id=([^&]+)"
_FIRST_ID_OF_BATCH = "$response.body#/ids/0"


def _job_links(job_id: str) -> dict[str, Link]:
    return {
        "GetJobStatus": Link(operation_id="getJobStatus", parameters={"id": job_id}),
        "CancelJob": Link(operation_id="cancelJob", parameters={"job_id": job_id}),
        "RetryJob": Link(operation_id="retryJob", parameters={"job_id": job_id}),
    }


NEW_JOB_LINKS = _job_links(_ID_IN_LOCATION)
NEW_BATCH_LINKS = _job_links(_FIRST_ID_OF_BATCH)


def linked_operation(status_code: int, links: Mapping[str, Link]) -> type[Operation]:
    """An ``Operation`` class for a route's ``operation_class``, adding ``links`` to the
    response for ``status_code``."""

    @dataclass
    class LinkedOperation(Operation):
        def __post_init__(self) -> None:
            response = (self.responses or {}).get(str(status_code))
            if isinstance(response, OpenAPIResponse):
                response.links = dict(links)

    return LinkedOperation


class StrictStructSchemaPlugin(StructSchemaPlugin):
    """Litestar's schema of a msgspec struct, closed to other properties when the struct
    refuses unknown fields. Give it in ``Litestar(plugins=[...])``: Litestar asks the plugins it
    is given before its own."""

    def to_openapi_schema(
        self, field_definition: "FieldDefinition", schema_creator: "SchemaCreator"
    ) -> "Schema":
        schema = super().to_openapi_schema(field_definition, schema_creator)
        if field_definition.type_.__struct_config__.forbid_unknown_fields:
            schema.additional_properties = False
        return schema
