"""The golden corpus: raw SOAP messages as clients and backends send them, and the fault each gets.

``corpus/manifest.json`` lists each file with its HTTP method and Content-Type and the
X-Road fault code it must produce (``null``: it must be accepted).  Large attack messages
are stored gzip-compressed (``.gz``) and decompressed here.  Every message is taken from
bytes to the fault envelope the client would receive, and must get there quickly.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pytest
from lxml import etree

from adapters.soap.envelope import NS_SOAP_ENV
from adapters.soap.inbound import SoapRequest, parse_soap_request
from adapters.soap.outbound import render_soap_fault
from adapters.soap.response import check_response_consistent, parse_soap_response
from core.errors import XwegError
from tests.unit.adapters.soap.messages import quickly

CORPUS = Path(__file__).parent / "corpus"
CASES: list[dict[str, Any]] = json.loads((CORPUS / "manifest.json").read_text(encoding="utf-8"))


def load(name: str) -> bytes:
    data = (CORPUS / name).read_bytes()
    return gzip.decompress(data) if name.endswith(".gz") else data


def request_of(case: dict[str, Any]) -> SoapRequest:
    return parse_soap_request(load(case["file"]), content_type=case["content_type"], method=case["method"])


def run(case: dict[str, Any]) -> None:
    if case["kind"] == "request":
        request_of(case)
        return
    request_case = next(c for c in CASES if c["file"] == case["request"])
    request = request_of(request_case)
    response = parse_soap_response(load(case["file"]), content_type=case["content_type"])
    check_response_consistent(request.header, response)


def test_every_corpus_file_is_listed_once() -> None:
    listed = [case["file"] for case in CASES]
    assert len(listed) == len(set(listed))
    assert sorted(listed) == sorted(p.name for p in CORPUS.iterdir() if p.name != "manifest.json")


@pytest.mark.parametrize("case", [c for c in CASES if c["expect"] is None], ids=lambda c: c["file"])
def test_accepted(case: dict[str, Any]) -> None:
    with quickly():
        run(case)


@pytest.mark.parametrize("case", [c for c in CASES if c["expect"] is not None], ids=lambda c: c["file"])
def test_refused_with_its_fault(case: dict[str, Any]) -> None:
    with quickly():
        with pytest.raises(XwegError) as info:
            run(case)
        assert info.value.fault_code == case["expect"], info.value
        status, _, body = render_soap_fault(info.value)
    assert status == 200
    fault = etree.fromstring(body).find(f"{{{NS_SOAP_ENV}}}Body/{{{NS_SOAP_ENV}}}Fault")
    assert fault is not None
    assert fault.findtext("faultcode") == case["expect"]
    assert fault.findtext("detail/faultDetail") == info.value.correlation_id
