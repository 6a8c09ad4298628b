"""schemathesis over the whole OpenAPI document: for every operation, seeded and bounded valid and invalid
requests (100 or more per operation), with a real user's token; no answer may be a 5xx, and every answer must be
documented (status, content type, headers, body schema). Runs on SQLite and, in the PostgreSQL pass, there."""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from app.config import Settings
from app.container import Container
from app.main import create_app

CASES_PER_OPERATION = int(os.environ.get("FUZZ_CASES_PER_OPERATION", "100"))
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_headers_conformance,
          response_schema_conformance]
SUMMARY = Path(__file__).resolve().parents[2] / "artifacts" / "schemathesis.json"


def _operations() -> list[str]:
    """Operation labels from the document itself (built without a database: routes only)."""
    settings = Settings(database_url="sqlite+aiosqlite:///:memory:", jwt_secret="x" * 40, _env_file=None)
    paths = create_app(Container(settings)).openapi()["paths"]
    return [f"{method.upper()} {path}" for path, methods in paths.items() for method in methods]


OPERATIONS = _operations()
counted: Counter[str] = Counter()
statuses: Counter[str] = Counter()


@pytest.fixture(scope="module")
def fuzz_target(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[object, dict]]:
    """One app for the whole run (its users and rows pile up as they would), and a user's bearer token."""
    settings = Settings(database_url=database_url, jwt_secret="fuzz-secret-0123456789-0123456789-abc",
                        argon2_time_cost=1, argon2_memory_cost=8192, log_dir=tmp_path_factory.mktemp("fuzz-logs"),
                        credentials_key="8sFkz0q5vM4o3S6g2rGkqvRt9z1ZlQ9vK7n0w3pX1aE=", _env_file=None)
    container = Container(settings)
    app = create_app(container)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    # the token below authenticates every case, so the handlers behind the 401 are what is fuzzed
    schema.config.generation.update(modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
                                    with_security_parameters=False)
    # registered through schemathesis's own client: its one event loop holds every pooled connection
    registration = schema["/auth/register"]["POST"].Case(
        body={"username": "fuzzer", "email": "fuzzer@example.com", "password": "correct horse"},
        media_type="application/json",
    )
    token = registration.call().json()["access_token"]
    yield schema, {"Authorization": f"Bearer {token}"}
    SUMMARY.parent.mkdir(parents=True, exist_ok=True)
    SUMMARY.write_text(json.dumps({"total": sum(counted.values()), "cases_per_operation": dict(sorted(counted.items())),
                                   "answers": dict(sorted(statuses.items()))}, indent=2) + "\n")


@pytest.mark.parametrize("label", OPERATIONS)
def test_operation_never_fails_and_matches_its_documentation(fuzz_target: tuple, label: str) -> None:
    schema, auth = fuzz_target
    method, path = label.split(" ", 1)
    operation = schema[path][method]
    cases = st.one_of(operation.as_strategy(generation_mode=GenerationMode.POSITIVE),
                      operation.as_strategy(generation_mode=GenerationMode.NEGATIVE))

    # the extra integer keeps Hypothesis from stopping early on operations that take (almost) no input
    @settings(max_examples=CASES_PER_OPERATION, derandomize=True, database=None, deadline=None,
              phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    @given(case=cases, _=st.integers(0, 2**32))
    def run(case: schemathesis.Case, _: int) -> None:
        headers = auth if not {h.lower() for h in case.headers or {}} & {"authorization"} else None
        response = case.call(headers=headers)
        counted[label] += 1
        statuses[f"{label} {response.status_code}"] += 1
        case.validate_response(response, checks=CHECKS, headers=headers)

    run()
    assert counted[label] >= CASES_PER_OPERATION
