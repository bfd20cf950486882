"""The signed documents: canonical JSON (RFC 8785), the fast writer identical to rfc8785."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from collections.abc import Callable
from datetime import date, datetime

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from kyso.platform.signing.documents import (
    CertificateRecord,
    batch_document,
    batch_fields,
    certificate_document,
    certificate_fields,
    record_id,
)

RECORD = CertificateRecord(
    batch_id="KB0000001",
    dose_id=123,
    dose_version=2,
    full_name="Nguyễn Thị Hồng Nhung",
    birth_date=date(1990, 1, 2),
    gender="female",
    identity_number="079190001234",
    dose_number=2,
    vaccinated_on=date(2021, 8, 1),
    disease="840539006",
    vaccine="1119349007",
    product="EU/1/20/1528",
    manufacturer="ORG-100030215",
    lot="FF1234",
    facility_code="79-760-001",
    facility_name="Trạm Y tế Phường Bến Nghé",
)

SIGNER = {"unit": "Trung tâm Y tế Quận 1", "certificate": "ab" * 32}

# Names and codes as they come: Vietnamese letters (precomposed and combining), quotes,
# backslashes, control characters, U+2028, astral characters (UTF-16 surrogate pairs in JSON).
_TEXT = st.text(
    alphabet=st.one_of(
        st.sampled_from('ạăâđêôơưẠĂÂĐÊÔƠƯỳỹ"\\/\b\f\n\r\t\x00\x1f\x7f\u2028\u2029\ufeff😷𝔸'),
        st.characters(codec="utf-8"),
    ),
    max_size=40,
)
_IDS = st.integers(min_value=1, max_value=2**53 - 1)
_DATES = st.dates(min_value=date(1900, 1, 1), max_value=date(2100, 12, 31))
RECORDS = st.builds(
    CertificateRecord,
    batch_id=_TEXT,
    dose_id=_IDS,
    dose_version=_IDS,
    full_name=_TEXT,
    birth_date=_DATES,
    gender=st.sampled_from(["male", "female"]),
    identity_number=st.none() | _TEXT,
    dose_number=st.integers(min_value=1, max_value=20),
    vaccinated_on=_DATES,
    disease=_TEXT,
    vaccine=_TEXT,
    product=_TEXT,
    manufacturer=_TEXT,
    lot=_TEXT,
    facility_code=_TEXT,
    facility_name=_TEXT,
)


def test_certificate_document_says_what_the_design_says() -> None:
    document = certificate_document(RECORD)
    expected = (
        '{"batch":"KB0000001","dose":{"date":"2021-08-01","disease":"840539006",'
        '"facility":{"code":"79-760-001","name":"Trạm Y tế Phường Bến Nghé"},"id":123,'
        '"lot":"FF1234","manufacturer":"ORG-100030215","number":2,"product":"EU/1/20/1528",'
        '"vaccine":"1119349007","version":2},"person":{"birth_date":"1990-01-02",'
        '"gender":"female","identity_number":"079190001234","name":"Nguyễn Thị Hồng Nhung"},'
        '"record":"dose-123-v2","type":"kyso-vaccination-certificate","version":1}'
    )
    assert document == expected.encode()
    assert json.loads(document) == certificate_fields(RECORD)


def test_no_identity_number_is_null() -> None:
    document = certificate_document(dataclasses.replace(RECORD, identity_number=None))
    assert b'"identity_number":null' in document
    assert json.loads(document)["person"]["identity_number"] is None


@settings(max_examples=500, deadline=None)
@given(RECORDS)
def test_fast_writer_is_rfc8785(record: CertificateRecord) -> None:
    document = certificate_document(record)
    assert document == rfc8785.dumps(certificate_fields(record))
    assert json.loads(document) == certificate_fields(record)


def test_escapes_as_rfc8785_does() -> None:
    record = dataclasses.replace(RECORD, full_name='Lê "Tí" \\ \n\t\x01\x7f\u2028😷', lot="")
    document = certificate_document(record)
    assert '"name":"Lê \\"Tí\\" \\\\ \\n\\t\\u0001\x7f\u2028😷"'.encode() in document
    assert document == rfc8785.dumps(certificate_fields(record))


def test_lone_surrogate_is_refused() -> None:
    record = dataclasses.replace(RECORD, full_name="An\ud800")
    with pytest.raises(ValueError, match="not valid Unicode"):
        certificate_document(record)
    with pytest.raises(ValueError, match="non-UTF-8"):
        rfc8785.dumps(certificate_fields(record))


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"gender": "other"}, ValueError),
        ({"gender": "Male"}, ValueError),
        ({"dose_number": 0}, ValueError),
        ({"dose_id": 0}, ValueError),
        ({"dose_version": -1}, ValueError),
        ({"dose_id": 2**53}, ValueError),
        ({"dose_id": True}, TypeError),
        ({"dose_version": "2"}, TypeError),
        ({"birth_date": "1990-01-02"}, TypeError),
        ({"vaccinated_on": datetime(2021, 8, 1, 10, 30)}, TypeError),
    ],
)
def test_malformed_record_is_refused(change: dict[str, object], error: type[Exception]) -> None:
    record = dataclasses.replace(RECORD, **change)  # type: ignore[arg-type]
    with pytest.raises(error):
        certificate_document(record)
    with pytest.raises(error):
        certificate_fields(record)


def test_record_id() -> None:
    assert record_id(123, 2) == "dose-123-v2"
    assert record_id(1, 1) == "dose-1-v1"
    with pytest.raises(ValueError, match="dose_version"):
        record_id(1, 0)


def test_versions_and_batches_make_different_documents() -> None:
    documents = {
        certificate_document(RECORD),
        certificate_document(dataclasses.replace(RECORD, dose_version=3)),
        certificate_document(dataclasses.replace(RECORD, batch_id="KB0000002")),
        certificate_document(dataclasses.replace(RECORD, identity_number=None)),
    }
    assert len(documents) == 4


def test_certificate_documents_are_fast() -> None:
    records = [
        dataclasses.replace(RECORD, dose_id=1000 + i, identity_number=None if i % 3 else "0")
        for i in range(3000)
    ]
    best = min(_timed(lambda: [certificate_document(r) for r in records]) for _ in range(3))
    assert best < 0.1, f"3,000 certificate documents took {best * 1000:.1f} ms"


def _timed(work: Callable[[], object]) -> float:
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


def test_batch_document() -> None:
    first = certificate_document(RECORD)
    second = certificate_document(dataclasses.replace(RECORD, dose_id=124))
    sha_first, sha_second = hashlib.sha256(first).hexdigest(), hashlib.sha256(second).hexdigest()
    document = batch_document(
        "KB0000001",
        SIGNER,
        [("dose-123-v2", bytes.fromhex(sha_first)), ("dose-124-v2", bytes.fromhex(sha_second))],
    )
    expected = (
        '{"batch":"KB0000001","records":['
        f'{{"id":"dose-123-v2","sha256":"{sha_first}"}},'
        f'{{"id":"dose-124-v2","sha256":"{sha_second}"}}],'
        f'"signer":{{"certificate":"{"ab" * 32}","unit":"Trung tâm Y tế Quận 1"}},'
        '"type":"kyso-batch","version":1}'
    )
    assert document == expected.encode()


@settings(max_examples=200, deadline=None)
@given(
    batch_id=_TEXT,
    signer=st.dictionaries(_TEXT, _TEXT, max_size=4),
    entries=st.lists(
        st.tuples(_TEXT, st.binary(min_size=32, max_size=32)), unique_by=lambda e: e[0]
    ),
)
def test_batch_writer_is_rfc8785(
    batch_id: str, signer: dict[str, str], entries: list[tuple[str, bytes]]
) -> None:
    if not entries:
        with pytest.raises(ValueError, match="at least one record"):
            batch_document(batch_id, signer, entries)
        return
    document = batch_document(batch_id, signer, entries)
    assert document == rfc8785.dumps(batch_fields(batch_id, signer, entries))
    assert [r["id"] for r in json.loads(document)["records"]] == [e[0] for e in entries]


def test_batch_lists_a_record_once() -> None:
    with pytest.raises(ValueError, match="listed twice"):
        batch_document("KB1", SIGNER, [("dose-1-v1", b"a" * 32), ("dose-1-v1", b"b" * 32)])


def test_batch_takes_digests_not_documents() -> None:
    document = certificate_document(RECORD)
    with pytest.raises(ValueError, match="SHA-256 digest of its document"):
        batch_document("KB1", SIGNER, [("dose-123-v2", document)])


def test_batch_document_of_3000_records_is_fast() -> None:
    entries = [(record_id(i, 1), hashlib.sha256(i.to_bytes(4)).digest()) for i in range(1, 3001)]
    best = min(_timed(lambda: batch_document("KB1", SIGNER, entries)) for _ in range(3))
    assert best < 0.05, f"a 3,000-record batch document took {best * 1000:.1f} ms"
