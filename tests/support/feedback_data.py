"""Helpers for the statistics, feedback and corrections tests: people in each verification
group, a reference population registry, and a passport row to supersede."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from sqlalchemy.orm import Session

from kyso.platform.models import (
    Dose,
    DoseSignature,
    Gender,
    Passport,
    PassportSigner,
    Person,
    VerificationStatus,
)
from kyso.platform.registry.reference_server import (
    Citizen,
    ReferenceServer,
    make_app,
    write_dataset,
)
from support.platform_seed import Seed, add_person

# 079 (Hồ Chí Minh City), 0 = male born in the 1900s, 90 = 1990.
GOOD_NUMBER = "079090123456"


def invalid_people(session: Session, org: Seed) -> dict[str, Person]:
    """One person per verification status that matters here, all at Bến Nghé."""
    people = {
        "verified": add_person(session, org, "Nguyễn Văn Đúng", identity_number=GOOD_NUMBER),
        "none": add_person(
            session,
            org,
            "Trần Thị Không",
            status=VerificationStatus.NO_IDENTITY,
            identity_number=None,
            phone="0901000001",
        ),
        "cmnd": add_person(
            session,
            org,
            "Lê Văn Cũ",
            status=VerificationStatus.OLD_ID_ONLY,
            identity_number="023456789",
            phone="0901000002",
        ),
        "format": add_person(
            session,
            org,
            "Phạm Thị Sai",
            status=VerificationStatus.WRONG_FORMAT,
            identity_number="099190123456",
            gender=Gender.FEMALE,
            phone="0901000003",
        ),
        "mismatch": add_person(
            session,
            org,
            "Hoàng Văn Lệch",
            status=VerificationStatus.MISMATCH,
            identity_number="079090654321",
            phone="0901000004",
        ),
        "pending": add_person(
            session,
            org,
            "Vũ Thị Chờ",
            status=VerificationStatus.PENDING,
            identity_number="079190111111",
            gender=Gender.FEMALE,
            phone="0901000005",
        ),
    }
    people["format"].verification_detail = {"rule": "province", "found": "099"}
    people["mismatch"].verification_detail = {
        "fields": ["birth_date"],
        "registry": {"full_name": "Hoàng Văn Lệch", "birth_date": "1990-06-17", "gender": "male"},
    }
    session.flush()
    return people


def kept_elsewhere_with_a_dose_here(session: Session, org: Seed) -> Person:
    """Bùi Thị Khác: an unverified person whose record Bến Thành keeps (first dose there) and who
    had a second dose at Bến Nghé; what another unit keeps stays hidden from Bến Nghé's staff."""
    other = add_person(
        session,
        org,
        "Bùi Thị Khác",
        facility=org.station_ben_thanh,
        doses=1,
        status=VerificationStatus.NO_IDENTITY,
        identity_number=None,
        phone="0903000001",
    )
    session.add(
        Dose(
            person_id=other.id,
            product_id=org.pfizer.id,
            lot="FK2001",
            vaccinated_on=date(2022, 5, 10),
            dose_number=2,
            facility_id=org.station_ben_nghe.id,
            created_by_facility_id=org.station_ben_nghe.id,
        )
    )
    return other


@contextmanager
def registry(
    tmp_path: Path, citizens: list[Citizen], api_key: str | None = None
) -> Iterator[ReferenceServer]:
    """The reference population registry serving ``citizens`` on an ephemeral port."""
    dataset = tmp_path / "registry.db"
    write_dataset(dataset, citizens)
    with ReferenceServer(make_app(dataset, api_key=api_key)) as server:
        yield server


def signer(session: Session) -> PassportSigner:
    now = datetime.now(UTC)
    row = PassportSigner(
        kid="dGVzdGtpZA==",
        der=b"not a certificate: only the row matters here",
        subject="CN=Test DSC",
        algorithm="ES256",
        not_before=now - timedelta(days=1),
        not_after=now + timedelta(days=365),
    )
    session.add(row)
    session.flush()
    return row


def passport(session: Session, person: Person, dose: Dose, signature: DoseSignature) -> Passport:
    """A current passport row (the issuance itself is the passport tests' business)."""
    kid = session.get(PassportSigner, "dGVzdGtpZA==") or signer(session)
    now = datetime.now(UTC)
    row = Passport(
        person_id=person.id,
        dose_id=dose.id,
        dose_version=dose.version,
        signature_id=signature.id,
        uvci=f"URN:UVCI:01:VN:TEST{person.id:06d}#X",
        payload="HC1:TEST",
        dcc={"ver": "1.3.0"},
        signer_kid=kid.kid,
        algorithm="ES256",
        issued_at=now,
        expires_at=now + timedelta(days=365),
    )
    session.add(row)
    session.flush()
    return row


def citizen(person: Person, **changes: object) -> Citizen:
    values: dict[str, object] = {
        "identity_number": person.identity_number,
        "full_name": person.full_name,
        "birth_date": person.birth_date,
        "gender": person.gender,
    }
    values.update(changes)
    return Citizen(
        str(values["identity_number"]),
        str(values["full_name"]),
        values["birth_date"] if isinstance(values["birth_date"], date) else date(1990, 1, 1),
        Gender(values["gender"]),
    )
