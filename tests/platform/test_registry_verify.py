"""The verification job against the reference registry, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from support.platform_seed import Seed, add_person

from kyso.platform.errors import DomainError
from kyso.platform.models import AuditEvent, Gender, Person, VerificationStatus
from kyso.platform.records.names import name_key
from kyso.platform.registry.client import (
    HttpPopulationRegistry,
    RegistryCitizen,
    RegistryUnavailable,
)
from kyso.platform.registry.reference_server import (
    Citizen,
    ReferenceServer,
    make_app,
    write_dataset,
)
from kyso.platform.registry.service import (
    AUDIT_ACTION,
    VerificationReport,
    mark_for_reverification,
    reverify_if_identity_changed,
    verify_population,
)

KEY = "verify-test-key"
NOW = datetime(2022, 6, 1, 8, 0, tzinfo=UTC)
S = VerificationStatus

AN = Citizen("079090000001", "Nguyễn Văn An", date(1990, 5, 17), Gender.MALE)
BINH = Citizen("001185000002", "Trần Thị Bình", date(1985, 2, 3), Gender.FEMALE)
CUONG = Citizen("048070000003", "Lê Văn Cường", date(1970, 12, 1), Gender.MALE)
DUNG = Citizen("092301000004", "Phạm Thị Dung", date(2001, 7, 9), Gender.FEMALE)
GIANG = Citizen("031195000005", "Võ Thị Giang", date(1995, 4, 4), Gender.FEMALE)
NOT_IN_REGISTRY = "079090000009"


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    path = tmp_path / "registry.db"
    # The registry has Cường born 2 Dec, Dung as male, Giang under another name.
    write_dataset(
        path,
        [
            AN,
            BINH,
            Citizen(CUONG.identity_number, CUONG.full_name, date(1970, 12, 2), Gender.MALE),
            Citizen(DUNG.identity_number, DUNG.full_name, DUNG.birth_date, Gender.MALE),
            Citizen(GIANG.identity_number, "Võ Thị Hương Giang", date(1995, 4, 5), Gender.FEMALE),
        ],
    )
    return path


@pytest.fixture
def server(dataset: Path) -> Iterator[ReferenceServer]:
    with ReferenceServer(make_app(dataset, api_key=KEY)) as running:
        yield running


@pytest.fixture
def registry(server: ReferenceServer) -> Iterator[HttpPopulationRegistry]:
    with HttpPopulationRegistry(server.url, timeout=5, api_key=KEY) as client:
        yield client


def person(
    session: Session,
    org: Seed,
    citizen: Citizen | None = None,
    *,
    name: str | None = None,
    number: str | None = None,
    born: date | None = None,
    gender: Gender | None = None,
    status: VerificationStatus = S.PENDING,
) -> Person:
    return add_person(
        session,
        org,
        name or (citizen.full_name if citizen else "Đỗ Văn Khang"),
        doses=1,
        status=status,
        identity_number=number
        if number is not None or citizen is None
        else citizen.identity_number,
        birth_date=born or (citizen.birth_date if citizen else date(1990, 1, 1)),
        gender=gender or (citizen.gender if citizen else Gender.MALE),
    )


def reloaded(session: Session, *people: Person) -> list[Person]:
    """The people as stored (the job commits through its own transactions)."""
    session.expire_all()
    return [session.get(Person, p.id) for p in people]  # type: ignore[misc]


def test_every_outcome_is_recorded_once(
    session: Session, org: Seed, registry: HttpPopulationRegistry, server: ReferenceServer
) -> None:
    # The registry's spelling differs only in case and Unicode normalisation: still the same.
    verified = person(session, org, AN, name="NGUYỄN  VĂN AN")
    verified_too = person(session, org, BINH)
    no_identity = person(session, org, number="   ")
    old_id = person(session, org, number="025123456")
    bad_province = person(session, org, number="099090000006")
    bad_year = person(session, org, number="079091000007", born=date(1990, 1, 1))
    bad_gender = person(session, org, number="079190000008", gender=Gender.MALE)
    birth_date_differs = person(session, org, CUONG)
    gender_differs = person(session, org, DUNG)
    two_fields_differ = person(session, org, GIANG)
    not_found = person(session, org, number=NOT_IN_REGISTRY, born=date(1990, 3, 3))
    already = person(session, org, AN, status=S.VERIFIED)
    flagged = person(session, org, BINH, status=S.MISMATCH)
    session.commit()

    report = verify_population(session, registry, batch_size=4, now=NOW)

    assert report.counts == {
        S.VERIFIED: 2,
        S.NO_IDENTITY: 1,
        S.OLD_ID_ONLY: 1,
        S.WRONG_FORMAT: 3,
        S.MISMATCH: 4,
    }
    assert report.processed == 11
    assert report.batches == 3
    assert report.stopped is None
    everyone = reloaded(
        session,
        verified,
        verified_too,
        no_identity,
        old_id,
        bad_province,
        bad_year,
        bad_gender,
        birth_date_differs,
        gender_differs,
        two_fields_differ,
        not_found,
        already,
        flagged,
    )
    assert [(p.verification_status, p.verification_detail) for p in everyone] == [
        (S.VERIFIED, None),
        (S.VERIFIED, None),
        (S.NO_IDENTITY, None),
        (S.OLD_ID_ONLY, None),
        (S.WRONG_FORMAT, {"rule": "province", "found": "099"}),
        (S.WRONG_FORMAT, {"rule": "birth_year", "found": "91", "expected": "90"}),
        (S.WRONG_FORMAT, {"rule": "century_gender", "found": "1", "expected": "0"}),
        (
            S.MISMATCH,
            {
                "fields": ["birth_date"],
                "registry": {
                    "full_name": "Lê Văn Cường",
                    "birth_date": "1970-12-02",
                    "gender": "male",
                },
            },
        ),
        (
            S.MISMATCH,
            {
                "fields": ["gender"],
                "registry": {
                    "full_name": "Phạm Thị Dung",
                    "birth_date": "2001-07-09",
                    "gender": "male",
                },
            },
        ),
        (
            S.MISMATCH,
            {
                "fields": ["full_name", "birth_date"],
                "registry": {
                    "full_name": "Võ Thị Hương Giang",
                    "birth_date": "1995-04-05",
                    "gender": "female",
                },
            },
        ),
        (S.MISMATCH, {"fields": ["not_found"], "registry": {}}),
        (S.VERIFIED, None),  # not picked up again
        (S.MISMATCH, None),  # not picked up again
    ]
    for checked in everyone[:11]:
        assert checked.verified_at is not None
        assert checked.verified_at.replace(tzinfo=UTC) == NOW.replace(tzinfo=None).replace(
            tzinfo=UTC
        )
        assert checked.verification_attempts == 0
    assert everyone[11].verified_at is None
    # Only well-formed, consistent numbers went to the registry, each exactly once.
    assert server.lookups.counts() == {
        AN.identity_number: 1,
        BINH.identity_number: 1,
        CUONG.identity_number: 1,
        DUNG.identity_number: 1,
        GIANG.identity_number: 1,
        NOT_IN_REGISTRY: 1,
    }
    assert report.looked_up == 6
    events = session.scalars(select(AuditEvent).where(AuditEvent.action == AUDIT_ACTION)).all()
    assert len(events) == 1
    assert events[0].user_id is None
    assert events[0].detail is not None
    assert events[0].detail["outcome"] == "done"
    assert events[0].detail["counts"] == {
        "mismatch": 4,
        "no_identity": 1,
        "old_id_only": 1,
        "verified": 2,
        "wrong_format": 3,
    }

    # A second run has nothing to do.
    again = verify_population(session, registry, now=NOW + timedelta(hours=1))
    assert again.processed == 0
    assert again.batches == 0
    assert sum(server.lookups.counts().values()) == 6


def test_people_sharing_a_number_are_looked_up_once_and_judged_apart(
    session: Session, org: Seed, registry: HttpPopulationRegistry, server: ReferenceServer
) -> None:
    same = person(session, org, AN)
    typo = person(session, org, AN, name="Nguyễn Văn Ân")  # another person, or a typo
    session.commit()
    verify_population(session, registry, now=NOW)
    first, second = reloaded(session, same, typo)
    assert first.verification_status == S.VERIFIED
    # name_key ignores diacritics: "Ân" and "An" compare equal, as the brief asks.
    assert second.verification_status == S.VERIFIED
    assert server.lookups.counts() == {AN.identity_number: 1}
    other_name = person(session, org, AN, name="Nguyễn Văn Anh")
    session.commit()
    verify_population(session, registry, now=NOW)
    (third,) = reloaded(session, other_name)
    assert third.verification_status == S.MISMATCH
    assert third.verification_detail == {
        "fields": ["full_name"],
        "registry": {"full_name": "Nguyễn Văn An", "birth_date": "1990-05-17", "gender": "male"},
    }


def test_registry_down_marks_unavailable_and_the_next_run_retries(
    session: Session, org: Seed, server: ReferenceServer
) -> None:
    people = [person(session, org, citizen) for citizen in (AN, BINH, CUONG)]
    malformed = person(session, org, number="12")
    session.commit()

    with HttpPopulationRegistry("http://127.0.0.1:9", timeout=2, api_key=KEY) as down:
        report = verify_population(session, down, batch_size=2, now=NOW, max_unavailable_batches=10)
    assert report.counts == {S.UNAVAILABLE: 3, S.WRONG_FORMAT: 1}
    assert report.unavailable_reason == "connection"
    assert report.looked_up == 0
    stored = reloaded(session, *people, malformed)
    for unavailable in stored[:3]:
        assert unavailable.verification_status == S.UNAVAILABLE
        assert unavailable.verification_detail == {"reason": "connection"}
        assert unavailable.verification_attempts == 1  # tried once in the run, not in a loop
    assert stored[3].verification_status == S.WRONG_FORMAT  # no registry needed for that
    event = session.scalars(select(AuditEvent).where(AuditEvent.action == AUDIT_ACTION)).one()
    assert event.detail is not None
    assert event.detail["counts"] == {"unavailable": 3, "wrong_format": 1}

    # Down again on the next run: tried again, counted again, still never verified.
    with HttpPopulationRegistry("http://127.0.0.1:9", timeout=2, api_key=KEY) as down:
        verify_population(session, down, now=NOW + timedelta(hours=1))
    assert [p.verification_attempts for p in reloaded(session, *people)] == [2, 2, 2]

    with HttpPopulationRegistry(server.url, timeout=5, api_key=KEY) as up:
        retried = verify_population(session, up, now=NOW + timedelta(hours=2))
    assert retried.counts == {S.VERIFIED: 2, S.MISMATCH: 1}
    stored = reloaded(session, *people, malformed)
    assert [p.verification_status for p in stored] == [
        S.VERIFIED,
        S.VERIFIED,
        S.MISMATCH,
        S.WRONG_FORMAT,
    ]
    assert stored[0].verification_detail is None
    assert server.lookups.counts() == {p.identity_number: 1 for p in (AN, BINH, CUONG)}


def test_a_run_stops_after_consecutive_unavailable_batches(session: Session, org: Seed) -> None:
    people = [person(session, org, citizen) for citizen in (AN, BINH, CUONG, DUNG, GIANG)]
    session.commit()
    with HttpPopulationRegistry("http://127.0.0.1:9", timeout=2) as down:
        report = verify_population(session, down, batch_size=1, now=NOW, max_unavailable_batches=3)
    assert report.stopped == "registry_unavailable"
    assert report.batches == 3
    statuses = [p.verification_status for p in reloaded(session, *people)]
    assert statuses == [S.UNAVAILABLE] * 3 + [S.PENDING] * 2
    event = session.scalars(select(AuditEvent).where(AuditEvent.action == AUDIT_ACTION)).one()
    assert event.detail is not None
    assert event.detail["outcome"] == "registry_unavailable"


class Flaky:
    """A registry that fails the way it is told to, batch by batch."""

    def __init__(self, inner: HttpPopulationRegistry, failures: Sequence[Exception | None]):
        self.inner = inner
        self.failures = list(failures)
        self.calls = 0

    def lookup(self, identity_numbers: Sequence[str]) -> dict[str, RegistryCitizen | None]:
        failure = self.failures[self.calls] if self.calls < len(self.failures) else None
        self.calls += 1
        if failure is not None:
            raise failure
        return self.inner.lookup(identity_numbers)


def test_one_unavailable_batch_does_not_stop_the_run(
    session: Session, org: Seed, registry: HttpPopulationRegistry
) -> None:
    people = [person(session, org, citizen) for citizen in (AN, BINH, CUONG)]
    session.commit()
    flaky = Flaky(registry, [None, RegistryUnavailable("http_503", "busy"), None])
    report = verify_population(session, flaky, batch_size=1, now=NOW, max_unavailable_batches=2)
    assert report.stopped is None
    assert [p.verification_status for p in reloaded(session, *people)] == [
        S.VERIFIED,
        S.UNAVAILABLE,
        S.MISMATCH,
    ]
    assert reloaded(session, people[1])[0].verification_detail == {"reason": "http_503"}


def test_each_batch_is_committed_on_its_own(
    session: Session, org: Seed, registry: HttpPopulationRegistry
) -> None:
    people = [person(session, org, citizen) for citizen in (AN, BINH, CUONG)]
    session.commit()
    crashing = Flaky(registry, [None, RuntimeError("worker killed")])
    with pytest.raises(RuntimeError, match="worker killed"):
        verify_population(session, crashing, batch_size=2, now=NOW)
    assert [p.verification_status for p in reloaded(session, *people)] == [
        S.VERIFIED,
        S.VERIFIED,
        S.PENDING,
    ]


def test_a_wrong_api_key_stops_the_run_and_changes_nobody(
    session: Session, org: Seed, server: ReferenceServer
) -> None:
    people = [person(session, org, AN), person(session, org, number="")]
    session.commit()
    with (
        HttpPopulationRegistry(server.url, timeout=5, api_key="stolen-or-stale") as wrong,
        pytest.raises(DomainError) as caught,
    ):
        verify_population(session, wrong, now=NOW)
    assert caught.value.key == "registry.api_key_refused"
    assert "KYSO_REGISTRY_API_KEY" in caught.value.text("vi")
    assert "refused the API key (HTTP 401)" in caught.value.text("en")
    stored = reloaded(session, *people)
    assert [p.verification_status for p in stored] == [S.PENDING, S.PENDING]
    assert [p.verification_attempts for p in stored] == [0, 0]
    event = session.scalars(select(AuditEvent).where(AuditEvent.action == AUDIT_ACTION)).one()
    assert event.detail is not None
    assert event.detail["outcome"] == "refused"


def test_an_adapter_that_leaves_numbers_unanswered_is_a_protocol_error(
    session: Session, org: Seed
) -> None:
    class Forgetful:
        def lookup(self, identity_numbers: Sequence[str]) -> dict[str, RegistryCitizen | None]:
            return {}

    (someone,) = [person(session, org, AN)]
    session.commit()
    with pytest.raises(DomainError) as caught:
        verify_population(session, Forgetful(), now=NOW)
    assert caught.value.key == "registry.protocol_error"
    assert reloaded(session, someone)[0].verification_status == S.PENDING


def test_batch_size_and_limit(
    session: Session, org: Seed, registry: HttpPopulationRegistry, server: ReferenceServer
) -> None:
    people = [person(session, org, citizen) for citizen in (AN, BINH, CUONG, DUNG, GIANG)]
    session.commit()
    seen: list[int] = []
    report = verify_population(
        session,
        registry,
        batch_size=2,
        limit=3,
        now=NOW,
        progress=lambda r: seen.append(r.processed),
    )
    assert report.processed == 3
    assert report.batches == 2
    assert seen == [2, 3]
    assert server.lookups.requests == 2
    statuses = [p.verification_status for p in reloaded(session, *people)]
    assert statuses[3:] == [S.PENDING, S.PENDING]
    assert S.PENDING not in statuses[:3]
    assert verify_population(session, registry, limit=0, now=NOW).processed == 0
    with pytest.raises(ValueError, match="batch_size"):
        verify_population(session, registry, batch_size=0)


def test_reverification_after_an_identity_change(
    session: Session, org: Seed, registry: HttpPopulationRegistry
) -> None:
    someone = person(session, org, AN)
    session.commit()
    verify_population(session, registry, now=NOW)
    (someone,) = reloaded(session, someone)
    assert someone.verification_status == S.VERIFIED

    someone.phone = "0912345678"
    someone.full_name = "Nguyễn Văn An"  # the same value: no change of identity
    assert reverify_if_identity_changed(someone) is False
    assert someone.verification_status == S.VERIFIED
    session.commit()

    someone.birth_date = date(1990, 5, 18)
    assert reverify_if_identity_changed(someone) is True
    assert someone.verification_status == S.PENDING
    assert someone.verified_at is None
    assert someone.verification_detail is None
    session.commit()
    verify_population(session, registry, now=NOW + timedelta(days=1))
    (someone,) = reloaded(session, someone)
    assert someone.verification_status == S.MISMATCH
    assert someone.verification_detail is not None
    assert someone.verification_detail["fields"] == ["birth_date"]

    # The correction puts the registry's date back: checked again and verified.
    someone.birth_date = date(1990, 5, 17)
    mark_for_reverification(someone)
    session.commit()
    verify_population(session, registry, now=NOW + timedelta(days=2))
    assert reloaded(session, someone)[0].verification_status == S.VERIFIED

    for field, value in (
        ("identity_number", NOT_IN_REGISTRY),
        ("full_name", "Nguyễn Văn Bảo"),
        ("gender", Gender.FEMALE),
    ):
        (someone,) = reloaded(session, someone)
        original = getattr(someone, field)
        setattr(someone, field, value)
        assert reverify_if_identity_changed(someone) is True, field
        assert someone.verification_status == S.PENDING
        setattr(someone, field, original)
        someone.verification_status = S.VERIFIED
        session.commit()


def test_a_new_person_needs_no_reverification(session: Session, org: Seed) -> None:
    newcomer = Person(
        full_name="Hà Văn Mới",
        name_key=name_key("Hà Văn Mới"),
        birth_date=date(2000, 1, 1),
        gender=Gender.MALE,
    )
    session.add(newcomer)
    assert reverify_if_identity_changed(newcomer) is False


def _slow(app: Flask, seconds: float) -> None:
    inner = app.wsgi_app

    def wsgi(environ: dict[str, Any], start: Callable[..., Any]) -> Iterable[bytes]:
        time.sleep(seconds)
        return inner(environ, start)  # type: ignore[no-any-return]

    app.wsgi_app = wsgi  # type: ignore[method-assign]


def test_concurrent_workers_look_everyone_up_exactly_once(
    app: Flask, session: Session, org: Seed, tmp_path: Path, database_url: str
) -> None:
    citizens = [
        Citizen(
            f"0790{90 + n % 10}{n:06d}", f"Người Thứ {n}", date(1990 + n % 10, 1, 2), Gender.MALE
        )
        for n in range(240)
    ]
    for citizen in citizens:
        person(session, org, citizen)
    for n in range(12):  # answered from the format check alone
        person(session, org, number=f"0251234{n:02d}")
    session.commit()
    path = tmp_path / "crowd.db"
    write_dataset(path, citizens[:-20])  # the last 20 are not in the registry
    registry_app = make_app(path, api_key=KEY)
    _slow(registry_app, 0.02)  # long enough for the workers' batches to overlap

    factory = app.extensions["kyso.sessions"]
    reports: list[VerificationReport] = []
    errors: list[BaseException] = []
    start = threading.Barrier(3)

    def worker(url: str) -> None:
        try:
            with factory() as own, HttpPopulationRegistry(url, timeout=30, api_key=KEY) as client:
                start.wait()
                reports.append(verify_population(own, client, batch_size=8, now=NOW))
        except BaseException as exc:
            errors.append(exc)

    with ReferenceServer(registry_app) as server:
        threads = [threading.Thread(target=worker, args=(server.url,)) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        counts = server.lookups.counts()

    assert errors == []
    assert len(reports) == 3
    assert counts == {c.identity_number: 1 for c in citizens}
    assert sum(r.processed for r in reports) == 252
    assert sum(r.looked_up for r in reports) == 240
    session.expire_all()
    statuses = dict(
        session.execute(
            select(Person.verification_status, func.count()).group_by(Person.verification_status)
        ).all()
    )
    assert statuses == {S.VERIFIED: 220, S.MISMATCH: 20, S.OLD_ID_ONLY: 12}
    events = session.scalars(select(AuditEvent).where(AuditEvent.action == AUDIT_ACTION)).all()
    assert len(events) == 3
    if database_url.startswith("postgresql"):
        # Row locks let the workers verify side by side (SQLite takes turns).
        assert sum(1 for r in reports if r.processed) >= 2
