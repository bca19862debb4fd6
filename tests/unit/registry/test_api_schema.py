"""A property-based run of the management API against its own OpenAPI document (schemathesis).

Schemathesis generates requests for every documented operation from the document's
schemas — valid ones (positive) and ones that break the schema (negative) — as a registry
administrator; every answer must be no 5xx, with a documented status code, content type
and a body that matches the documented schema.  Requests go over loopback to the app
the ``api`` fixture runs, from a worker thread so the event loop keeps serving.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from registry.openapi import openapi_document
from tests.unit.registry.apihelpers import Api, api
from tests.unit.registry.dbfixtures import database_url

__all__ = ["api", "database_url"]

EXAMPLES_PER_OPERATION = 25
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


def run_schema(base_url: str, headers: dict[str, str]) -> int:
    schema = schemathesis.openapi.from_dict(openapi_document())
    calls = 0
    operations = [result.ok() for result in schema.get_all_operations()]  # type: ignore[union-attr]
    for operation, mode in itertools.product(operations, schemathesis.GenerationMode):

        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy(generation_mode=mode))
        def check(case: Any) -> None:
            nonlocal calls
            calls += 1
            case.call_and_validate(base_url=base_url, headers=headers, checks=CHECKS)

        check()
    return calls


async def test_no_operation_answers_5xx_or_off_the_document(api: Api) -> None:
    base_url = str(api.client.make_url("/api/v1"))
    calls = await asyncio.to_thread(run_schema, base_url, api.auth("registry-admin"))
    assert calls >= len(openapi_document()["paths"]) * 2 * 2
