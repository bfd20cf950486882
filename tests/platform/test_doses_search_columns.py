"""The signing search's columns on doses (migration 0016), kept by database triggers.

Every writer of people, doses and dose_signatures is driven here, and after each the three
columns of every dose are compared with a recompute from people and dose_signatures (``stale``).
Each test also states the value the writer must have produced, so that a missing trigger fails
it even where the recompute would agree by accident.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import Connection, Engine, case, func, select, text, update
from sqlalchemy.orm import Session
from support.pg_faults import race
from support.platform_db import postgresql_only, recorded_statements
from support.platform_seed import Seed, add_person
from support.records_data import csv_bytes, import_row, person_data
from support.signing_data import bulk_people, edit, sign
from support.signing_keys import Pki, Signer, make_pki

from kyso.platform.corrections.service import correct
from kyso.platform.models import Dose, DoseSignature, Person
from kyso.platform.records.importer import import_records
from kyso.platform.records.reference_data import load_reference_data
from kyso.platform.records.service import DoseData, add_dose
from kyso.platform.signing import batches, revocation
from kyso.platform.signing.certificates import load_trust_store
from kyso.platform.signing.manifest import ManifestSigner
from kyso.platform.signing.search import SearchFilters, StateFilter, search
from kyso.platform.signing.selection import add_doses
from kyso.platform.stats import summary
from kyso.platform.users.service import active_certificate, register_certificate

Columns = tuple[int | None, str | None, str | None]


def stale(session: Session) -> list[tuple[int, Columns, Columns]]:
    """Every dose whose (signed_version, person_name, person_name_key) differs from a recompute
    from dose_signatures and people: (dose id, stored, expected)."""
    signatures = (
        select(
            DoseSignature.dose_id,
            func.max(
                case((DoseSignature.superseded_at.is_(None), DoseSignature.dose_version))
            ).label("live"),
        )
        .group_by(DoseSignature.dose_id)
        .subquery()
    )
    expected_signed = case(
        (signatures.c.dose_id.is_(None), None), else_=func.coalesce(signatures.c.live, 0)
    )
    rows = session.execute(
        select(
            Dose.id,
            Dose.signed_version,
            Dose.person_name,
            Dose.person_name_key,
            expected_signed,
            Person.full_name,
            Person.name_key,
        )
        .join(Person, Person.id == Dose.person_id)
        .outerjoin(signatures, signatures.c.dose_id == Dose.id)
        .order_by(Dose.id)
    ).tuples()
    return [
        (dose_id, (signed, name, key), (want_signed, want_name, want_key))
        for dose_id, signed, name, key, want_signed, want_name, want_key in rows
        if (signed, name, key) != (want_signed, want_name, want_key)
    ]


def columns(session: Session, dose_ids: Sequence[int]) -> list[Columns]:
    """The stored columns of these doses, read from the database (not the session's objects)."""
    rows = session.execute(
        select(Dose.id, Dose.signed_version, Dose.person_name, Dose.person_name_key).where(
            Dose.id.in_(dose_ids)
        )
    ).tuples()
    found = {dose_id: (signed, name, key) for dose_id, signed, name, key in rows}
    return [found[dose_id] for dose_id in dose_ids]


def signed_versions(session: Session, dose_ids: Sequence[int]) -> list[int | None]:
    return [signed for signed, _, _ in columns(session, dose_ids)]


def dose_ids(session: Session, people: Sequence[int]) -> list[int]:
    return list(
        session.scalars(select(Dose.id).where(Dose.person_id.in_(people)).order_by(Dose.id))
    )


def test_orm_inserts_of_the_seed_and_the_records_service(session: Session, org: Seed) -> None:
    person = add_person(session, org, "Trần Thị Mỹ")  # seed: ORM Person and Dose objects
    dose = add_dose(
        session,
        person,
        DoseData(3, date(2022, 9, 1), org.pfizer.id, "LOT-3", org.station_ben_nghe.id),
        org.staff,
        today=date(2022, 10, 1),
    )
    session.commit()
    ids = [d.id for d in person.doses]
    assert dose.id in ids
    assert len(ids) == 3
    assert columns(session, ids) == [(None, "Trần Thị Mỹ", "tran thi my")] * 3
    assert stale(session) == []


def test_bulk_inserts_of_the_seed_and_the_importer(session: Session, org: Seed) -> None:
    people = bulk_people(session, org, 3, doses=2, name="Lê Văn Tám")  # COPY on PostgreSQL
    load_reference_data(session)
    session.commit()
    report = import_records(
        session,
        io.BytesIO(csv_bytes([import_row()])),
        "tiem.csv",
        org.station_ben_nghe,
        org.staff,
        today=date(2022, 6, 1),
    )
    session.commit()
    assert report.ok
    assert report.doses_created == 1
    imported = session.scalars(
        select(Dose.id).join(Person).where(Person.full_name == "Nguyễn Thị Lan")
    )
    assert columns(session, list(imported)) == [(None, "Nguyễn Thị Lan", "nguyen thi lan")]
    assert [name for _, name, _ in columns(session, dose_ids(session, people))] == [
        "Lê Văn Tám 0000",
        "Lê Văn Tám 0000",
        "Lê Văn Tám 0001",
        "Lê Văn Tám 0001",
        "Lê Văn Tám 0002",
        "Lê Văn Tám 0002",
    ]
    assert stale(session) == []


def test_a_person_correction_renames_the_doses_and_supersedes_their_signatures(
    session: Session, org: Seed
) -> None:
    person = add_person(session, org, "Nguyễn Văn Sửa")
    other = add_person(session, org, "Nguyễn Văn Khác", identity_number="079090999999")
    first, second = person.doses
    sign(session, first)
    sign(session, second)
    sign(session, other.doses[0])
    session.commit()
    ids = [first.id, second.id]
    assert columns(session, ids) == [(1, "Nguyễn Văn Sửa", "nguyen van sua")] * 2
    assert stale(session) == []

    correct(
        session,
        person,
        person_data(person, full_name="Nguyễn Văn Sửa Đúng"),
        org.staff,
        reason="Theo thẻ CCCD",
        expected_version=1,
    )
    session.commit()
    assert [d.version for d in person.doses] == [2, 2]
    # Renamed (people trigger), and every signature superseded: 0, to be signed again.
    assert columns(session, ids) == [(0, "Nguyễn Văn Sửa Đúng", "nguyen van sua dung")] * 2
    assert columns(session, [d.id for d in other.doses]) == [
        (1, "Nguyễn Văn Khác", "nguyen van khac"),
        (None, "Nguyễn Văn Khác", "nguyen van khac"),
    ]
    assert stale(session) == []


def test_a_dose_correction_supersedes_its_signature(session: Session, org: Seed) -> None:
    person = add_person(session, org, "Phạm Thị Liều")
    first, second = person.doses
    sign(session, first)
    sign(session, second)
    session.commit()
    data = DoseData(
        first.dose_number, first.vaccinated_on, first.product_id, "LOT-NEW", first.facility_id
    )
    correct(session, first, data, org.staff, reason="Sai số lô", expected_version=1)
    session.commit()
    assert (first.version, second.version) == (2, 1)
    assert signed_versions(session, [first.id, second.id]) == [0, 1]
    # Signed again in its new version: the greatest live version.
    sign(session, first)
    session.commit()
    assert signed_versions(session, [first.id, second.id]) == [2, 1]
    assert stale(session) == []


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def context(pki: Pki) -> batches.SigningContext:
    return batches.SigningContext(
        trust=load_trust_store(pki.anchors),
        manifest_signer=ManifestSigner(ec.generate_private_key(ec.SECP256R1())),
        origin="https://tiemchung.example.vn",
    )


def _prepare(
    session: Session, org: Seed, context: batches.SigningContext, signer: Signer
) -> tuple[batches.Prepared, list[int]]:
    register_certificate(session, org.admin, org.officer, signer.serial)
    ids = dose_ids(session, bulk_people(session, org, 3, doses=2))
    add_doses(session, org.officer, ids)
    session.commit()
    prepared = batches.prepare(session, org.officer, signer.der, context)
    session.commit()
    return prepared, ids


def test_per_record_signatures(
    session: Session, org: Seed, context: batches.SigningContext, pki: Pki
) -> None:
    prepared, ids = _prepare(session, org, context, pki.rsa)
    signatures = [pki.rsa.sign(digest) for digest in prepared.attempt.digests]
    progress = batches.accept_signatures(
        session, org.officer, prepared.batch_id, prepared.attempt.id, 0, signatures[:4]
    )
    session.commit()
    assert progress.signed == 4
    # PostgreSQL: the raw INSERT … unnest (one statement, one trigger run); SQLite: the ORM's.
    assert sorted(signed_versions(session, ids), key=str) == [1, 1, 1, 1, None, None]
    batches.accept_signatures(
        session, org.officer, prepared.batch_id, prepared.attempt.id, 4, signatures[4:]
    )
    session.commit()
    assert signed_versions(session, ids) == [1] * 6
    assert stale(session) == []


def test_batch_mode_signatures(
    session: Session, org: Seed, context: batches.SigningContext, pki: Pki
) -> None:
    org.unit_ben_nghe.batch_mode = True
    session.commit()
    prepared, ids = _prepare(session, org, context, pki.p256)
    assert len(prepared.attempt.digests) == 1
    progress = batches.accept_signatures(
        session,
        org.officer,
        prepared.batch_id,
        prepared.attempt.id,
        0,
        [pki.p256.sign(prepared.attempt.digests[0])],
    )
    session.commit()
    assert progress.signed == 6
    assert signed_versions(session, ids) == [1] * 6
    assert stale(session) == []


def test_a_compromised_certificate_unsigns_its_doses(session: Session, org: Seed, pki: Pki) -> None:
    register_certificate(session, org.admin, org.officer, pki.p256.serial)
    ids = dose_ids(session, bulk_people(session, org, 2, doses=1))
    registration = active_certificate(session, org.officer)
    assert registration is not None
    now = datetime.now(UTC)
    session.add_all(
        [
            DoseSignature(
                dose_id=ids[0], dose_version=1, certificate_id=registration.id, signed_at=now
            ),
            DoseSignature(
                dose_id=ids[1],
                dose_version=1,
                certificate_id=registration.id,
                signed_at=now - timedelta(days=2),
            ),
        ]
    )
    session.commit()
    assert signed_versions(session, ids) == [1, 1]
    revocation.mark_compromised(
        session, registration, now - timedelta(hours=1), source=revocation.SOURCE_ADMINISTRATOR
    )
    session.commit()
    assert signed_versions(session, ids) == [0, 1]  # only the one signed since then
    assert stale(session) == []


def test_direct_writes_move_a_dose_and_delete_signatures(session: Session, org: Seed) -> None:
    """What no service does today but the triggers cover: a dose moved to another person, a
    signature moved to another dose or deleted."""
    first = add_person(session, org, "Võ Văn Một", doses=1)
    second = add_person(session, org, "Đỗ Thị Hai", doses=1, identity_number="079190222222")
    dose, other = first.doses[0], second.doses[0]
    signature = sign(session, dose)
    session.commit()
    session.execute(
        update(Dose).where(Dose.id == dose.id).values(person_id=second.id, dose_number=2)
    )
    session.commit()
    assert columns(session, [dose.id]) == [(1, "Đỗ Thị Hai", "do thi hai")]
    session.execute(
        update(DoseSignature).where(DoseSignature.id == signature.id).values(dose_id=other.id)
    )
    session.commit()
    assert signed_versions(session, [dose.id, other.id]) == [None, 1]
    session.execute(text("DELETE FROM dose_signatures"))
    session.commit()
    assert signed_versions(session, [dose.id, other.id]) == [None, None]
    assert stale(session) == []


def test_the_search_to_sign_reads_no_signatures(session: Session, org: Seed) -> None:
    people = bulk_people(session, org, 3, doses=2)
    ids = dose_ids(session, people)
    sign(session, session.get_one(Dose, ids[0]))
    session.commit()
    with recorded_statements(session.get_bind()) as seen:
        page = search(session, org.officer, SearchFilters(state=StateFilter.TO_SIGN), page_size=10)
    assert sum(len(p.doses) for p in page.people) == 5
    assert seen
    assert not [s for s, _, _ in seen if "dose_signatures" in s]


@postgresql_only
def test_the_to_sign_plan_is_an_index_only_scan_of_the_doses(session: Session, org: Seed) -> None:
    """The statement the search runs for a page of people to sign (grouped by person, in
    Vietnamese order), not a query written for the test."""
    bulk_people(session, org, 20, doses=2)
    session.commit()
    filters = SearchFilters(date_from=date(2022, 1, 1), state=StateFilter.TO_SIGN)
    with recorded_statements(session.get_bind()) as seen:
        page = search(session, org.officer, filters, page_size=10)
    assert page.count == 20
    [(keys, parameters)] = [(s, p) for s, p, _ in seen if "GROUP BY doses.person_id" in s]
    session.rollback()
    # As on a server: statistics, and the pages marked all-visible (by VACUUM), which is what
    # lets the scan skip the rows; the indexes rebuilt, as after earlier tests' rows (deleted
    # between tests, their index pages kept) the planner walked all of
    # uq_doses_person_dose_number for its order instead. A handful of rows: the planner would
    # rather read the table or a bitmap of it; tell it not to, to see what the index can serve.
    with session.get_bind().connect().execution_options(isolation_level="AUTOCOMMIT") as c:
        c.exec_driver_sql("VACUUM ANALYZE doses")
        c.exec_driver_sql("REINDEX TABLE doses")
    connection = session.connection()
    connection.exec_driver_sql("SET LOCAL enable_seqscan = off")
    connection.exec_driver_sql("SET LOCAL enable_bitmapscan = off")
    plan = "\n".join(
        str(row[0]) for row in connection.exec_driver_sql(f"EXPLAIN {keys}", parameters)
    )
    assert "Index Only Scan using ix_doses_signing_search" in plan, plan
    assert "dose_signatures" not in plan, plan
    assert "people" not in plan, plan


# ---- concurrent writers (PostgreSQL, READ COMMITTED) -------------------------------------------


def _another_dose(session: Session, dose_id: int, dose_number: int) -> dict[str, Any]:
    """The data columns of dose ``dose_id`` as a new dose of the same person."""
    doses = Dose.__table__
    row = session.execute(select(doses).where(doses.c.id == dose_id)).mappings().one()
    written_by_triggers = {"id", "signed_version", "person_name", "person_name_key"}
    return {k: v for k, v in row.items() if k not in written_by_triggers} | {
        "dose_number": dose_number
    }


@postgresql_only
def test_a_dose_added_while_its_person_is_being_renamed_gets_the_new_name(
    session: Session, org: Seed
) -> None:
    """The rename's own UPDATE of the person's doses cannot see a dose inserted by a transaction
    not committed yet; the dose's insert must then wait for the rename and read its name."""
    person = add_person(session, org, "Nguyễn Văn Cũ", doses=1)
    session.commit()
    second = _another_dose(session, person.doses[0].id, 2)
    engine = session.get_bind()
    assert isinstance(engine, Engine)
    race(
        engine,
        lambda renamer: renamer.execute(
            update(Person)
            .where(Person.id == person.id)
            .values(full_name="Nguyễn Văn Mới", name_key="nguyen van moi")
        ),
        lambda inserter: inserter.execute(Dose.__table__.insert().values(second)),
    )
    session.expire_all()
    ids = dose_ids(session, [person.id])
    assert len(ids) == 2
    assert columns(session, ids) == [(None, "Nguyễn Văn Mới", "nguyen van moi")] * 2
    assert stale(session) == []


@postgresql_only
def test_two_transactions_adding_doses_to_one_person_take_turns(
    session: Session, org: Seed
) -> None:
    """Each adds a dose, then refreshes the person's statistics (which locks the person FOR NO
    KEY UPDATE). The insert's own lock on the person must be that one: were it a share lock,
    both would hold one and each refresh would wait for the other's (a deadlock)."""
    person = add_person(session, org, "Lê Văn Hai Mũi", doses=1)
    session.commit()
    first = person.doses[0].id
    engine = session.get_bind()
    assert isinstance(engine, Engine)
    doses = Dose.__table__
    second, third = (_another_dose(session, first, number) for number in (2, 3))

    def refresh(connection: Connection) -> None:
        summary.refresh(Session(bind=connection), [person.id])

    def add_and_refresh(connection: Connection) -> None:
        connection.execute(doses.insert().values(third))
        refresh(connection)

    race(
        engine,
        lambda one: one.execute(doses.insert().values(second)),
        add_and_refresh,
        then=refresh,
    )
    session.expire_all()
    ids = dose_ids(session, [person.id])
    assert len(ids) == 3
    assert columns(session, ids) == [(None, "Lê Văn Hai Mũi", "le van hai mui")] * 3
    assert stale(session) == []


@postgresql_only
def test_two_transactions_changing_a_doses_signatures_leave_the_last_committed_state(
    session: Session, org: Seed
) -> None:
    """A signs the dose's current version while B supersedes its older, still live signature
    (a compromised certificate): B's trigger must not store what it computed without A's
    signature."""
    person = add_person(session, org, "Trần Thị Ký", doses=1)
    dose = person.doses[0]
    older = sign(session, dose)
    edit(session, dose)  # version 2; the version-1 signature stays live
    session.commit()
    assert signed_versions(session, [dose.id]) == [1]
    engine = session.get_bind()
    assert isinstance(engine, Engine)
    race(
        engine,
        lambda signer: signer.execute(
            DoseSignature.__table__.insert().values(dose_id=dose.id, dose_version=2)
        ),
        lambda revoker: revoker.execute(
            update(DoseSignature)
            .where(DoseSignature.id == older.id)
            .values(superseded_at=datetime.now(UTC))
        ),
    )
    session.expire_all()
    assert signed_versions(session, [dose.id]) == [2]
    assert stale(session) == []


@postgresql_only
def test_truncating_the_signatures_unsigns_every_dose(session: Session, org: Seed) -> None:
    people = bulk_people(session, org, 2, doses=2)
    ids = dose_ids(session, people)
    for dose_id in ids[:3]:
        sign(session, session.get_one(Dose, dose_id))
    session.commit()
    assert signed_versions(session, ids) == [1, 1, 1, None]
    session.execute(text("TRUNCATE dose_signatures CASCADE"))
    session.commit()
    assert signed_versions(session, ids) == [None] * 4
    assert stale(session) == []
