"""Importing records from .xlsx and .csv: formats, every row problem, all or nothing, people."""

from __future__ import annotations

import codecs
import io
import time
import unicodedata
from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

import openpyxl
import pytest
from click.testing import CliRunner
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from support.platform_seed import Seed, add_person
from support.records_data import HEADERS, csv_bytes
from support.records_data import import_row as row

from kyso.platform.models import (
    AuditEvent,
    Dose,
    Facility,
    FacilityType,
    Gender,
    Person,
    VerificationStatus,
)
from kyso.platform.records.importer import (
    COLUMNS,
    ImportReport,
    import_records,
    template_csv,
    template_headers,
    template_xlsx,
)
from kyso.platform.records.reference_data import load_reference_data

TODAY = date(2022, 6, 1)


def xlsx_bytes(rows: Sequence[Sequence[Any]], header: Sequence[str] = HEADERS) -> bytes:
    workbook = openpyxl.Workbook(write_only=True)
    sheet = workbook.create_sheet("Dữ liệu")
    sheet.append(list(header))
    for values in rows:
        sheet.append(list(values))
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def run(
    session: Session,
    org: Seed,
    data: bytes,
    filename: str = "tiem.csv",
    facility: Facility | None = None,
    **options: Any,
) -> ImportReport:
    options.setdefault("today", TODAY)
    return import_records(
        session, io.BytesIO(data), filename, facility or org.station_ben_nghe, org.staff, **options
    )


def problems(report: ImportReport) -> list[tuple[int | None, str | None, str]]:
    return [(p.row, p.field, p.key) for p in report.problems]


def count(session: Session, model: type[Any]) -> int:
    return int(session.scalar(select(func.count()).select_from(model)) or 0)


def recorded_lan(session: Session, org: Seed, **changes: Any) -> Person:
    """Nguyễn Thị Lan of the default row, already recorded (two doses from 01/08/2021)."""
    changes.setdefault("first_dose", date(2021, 8, 1))
    return add_person(
        session,
        org,
        "Nguyễn Thị Lan",
        gender=Gender.FEMALE,
        identity_number="079190123456",
        **changes,
    )


@pytest.fixture
def reference(session: Session, org: Seed) -> Seed:
    """The seeded organisation with every vaccine product and area loaded."""
    load_reference_data(session)
    session.commit()
    return org


def test_csv_with_bom_and_diacritics(session: Session, reference: Seed) -> None:
    data = csv_bytes(
        [
            row(),
            row(dose_number="2", vaccinated_on="10/10/2021", lot="FK5619"),
            row(
                full_name="Trần Văn Đức",
                birth_date="01/02/1958",
                gender="Nam",
                identity_number="",
                phone="",
                area="",
                vaccinated_on="2021-08-01",
                product="AstraZeneca",
                lot="ABV5300",
            ),
        ]
    )
    report = run(session, reference, data)
    session.commit()
    assert report.ok, [p.text("vi") for p in report.problems]
    assert report.imported
    assert report.encoding == "utf-8-sig"
    assert (report.rows, report.people_created, report.doses_created) == (3, 2, 3)
    lan = session.scalar(select(Person).where(Person.identity_number == "079190123456"))
    assert lan is not None
    assert lan.full_name == "Nguyễn Thị Lan"
    assert lan.name_key == "nguyen thi lan"
    assert lan.gender is Gender.FEMALE
    assert lan.birth_date == date(1990, 5, 17)
    assert lan.area_id == reference.ben_nghe.id
    assert lan.verification_status is VerificationStatus.PENDING
    assert [(d.dose_number, d.vaccinated_on, d.lot) for d in lan.doses] == [
        (1, date(2021, 9, 15), "FK5618"),
        (2, date(2021, 10, 10), "FK5619"),
    ]
    assert all(d.facility_id == reference.station_ben_nghe.id for d in lan.doses)
    assert all(d.created_by_user_id == reference.staff.id for d in lan.doses)
    assert all(d.version == 1 for d in lan.doses)
    duc = session.scalar(select(Person).where(Person.name_key == "tran van duc"))
    assert duc is not None
    assert duc.identity_number is None
    assert duc.doses[0].product.code == "EU/1/21/1529"
    event = session.scalar(select(AuditEvent).where(AuditEvent.action == "records.import"))
    assert event is not None
    assert event.user_id == reference.staff.id
    assert event.detail is not None
    assert event.detail["doses_created"] == 3
    assert event.detail["filename"] == "tiem.csv"


def test_xlsx_with_typed_cells_and_english_headers(session: Session, reference: Seed) -> None:
    header = template_headers("en")
    data = xlsx_bytes(
        [
            row(
                birth_date=datetime(1990, 5, 17),
                vaccinated_on=date(2021, 9, 15),
                identity_number=79190123456,  # a number cell: Excel dropped the leading zero
                phone=912345678,
                dose_number=1,
                area=26740,
                lot=3002183,
                product="EU/1/20/1507",
            ),
            row(
                birth_date=datetime(1990, 5, 17),
                vaccinated_on=datetime(2021, 10, 20, 0, 0),
                identity_number="079190123456",
                dose_number=2.0,
                product="Moderna",
                lot="3002184",
            ),
        ],
        header,
    )
    report = run(session, reference, data, "tiem.xlsx")
    assert report.ok, [p.text("en") for p in report.problems]
    assert report.file_format == "xlsx"
    assert report.people_created == 1
    assert report.doses_created == 2
    person = session.scalar(select(Person))
    assert person is not None
    assert person.identity_number == "079190123456"
    assert person.phone == "0912345678"
    assert person.area_id == reference.ben_nghe.id
    assert [d.lot for d in person.doses] == ["3002183", "3002184"]
    restored = [(n.row, n.field, n.key) for n in report.notes]
    assert (2, "identity_number", "records.import_leading_zero") in restored
    assert (2, "phone", "records.import_leading_zero") in restored
    note = next(n for n in report.notes if n.field == "identity_number")
    assert "079190123456" in note.text("vi")
    assert note.column("vi") == "Identity number"  # the header as the file has it


@pytest.mark.parametrize(
    ("encoding", "delimiter"),
    [("utf-8", ","), ("cp1258", ","), ("utf-16", "\t"), ("utf-8-sig", ";")],
)
def test_csv_encodings_and_separators(
    session: Session, reference: Seed, encoding: str, delimiter: str
) -> None:
    name = "Huỳnh Thị Ánh Tuyết"
    if encoding == "cp1258":
        # Windows-1258 has the vowels with their hat, breve or horn, and the five tones as
        # combining marks: the import must compose them.
        raw = csv_bytes([row(full_name=name)], delimiter=delimiter, encoding="utf-8")
        data = _windows_1258_form(raw.decode("utf-8")).encode("cp1258")
        with pytest.raises(UnicodeDecodeError):
            data.decode("utf-8")
    else:
        data = csv_bytes([row(full_name=name)], encoding=encoding, delimiter=delimiter)
    report = run(session, reference, data)
    assert report.ok, [p.text("vi") for p in report.problems]
    assert report.encoding == {"utf-16": "utf-16"}.get(encoding, report.encoding)
    person = session.scalar(select(Person))
    assert person is not None
    assert person.full_name == name
    assert unicodedata.is_normalized("NFC", person.full_name)
    assert person.name_key == "huynh thi anh tuyet"


TONES = {"\u0300", "\u0301", "\u0303", "\u0309", "\u0323"}


def _windows_1258_form(text: str) -> str:
    out = []
    for char in text:
        parts = unicodedata.normalize("NFD", char)
        tones = "".join(c for c in parts if c in TONES)
        out.append(
            unicodedata.normalize("NFC", "".join(c for c in parts if c not in TONES)) + tones
        )
    return "".join(out)


def test_decomposed_unicode_is_composed(session: Session, reference: Seed) -> None:
    data = unicodedata.normalize("NFD", csv_bytes([row()]).decode("utf-8-sig")).encode()
    report = run(session, reference, data)
    assert report.ok
    person = session.scalar(select(Person))
    assert person is not None
    assert person.full_name == "Nguyễn Thị Lan"


@pytest.mark.parametrize(
    ("changes", "field", "key"),
    [
        ({"full_name": ""}, "full_name", "records.name_required"),
        ({"full_name": "Nguyễn Văn 3"}, "full_name", "records.name_has_digits"),
        ({"birth_date": ""}, "birth_date", "records.birth_date_required"),
        ({"birth_date": "31/02/1990"}, "birth_date", "records.date_unreadable"),
        ({"birth_date": "17/05/90"}, "birth_date", "records.date_unreadable"),
        ({"birth_date": "1990"}, "birth_date", "records.date_unreadable"),
        ({"birth_date": "02/06/2022"}, "birth_date", "records.birth_date_future"),
        ({"birth_date": "01/01/1899"}, "birth_date", "records.birth_date_too_early"),
        ({"gender": ""}, "gender", "records.gender_required"),
        ({"gender": "Khác"}, "gender", "records.gender_unknown"),
        ({"identity_number": "07919O123456"}, "identity_number", "records.identity_not_digits"),
        ({"identity_number": "0791901234567"}, "identity_number", "records.identity_too_long"),
        ({"phone": "091234"}, "phone", "records.phone_invalid"),
        ({"area": "99999"}, "area", "records.area_unknown"),
        ({"dose_number": ""}, "dose_number", "records.dose_number_required"),
        ({"dose_number": "một"}, "dose_number", "records.dose_number_invalid"),
        ({"dose_number": "0"}, "dose_number", "records.dose_number_invalid"),
        ({"dose_number": "4"}, "dose_number", "records.dose_number_too_high"),
        ({"vaccinated_on": ""}, "vaccinated_on", "records.vaccinated_on_required"),
        ({"vaccinated_on": "28/02/2021"}, "vaccinated_on", "records.vaccinated_on_too_early"),
        ({"vaccinated_on": "02/06/2022"}, "vaccinated_on", "records.vaccinated_on_future"),
        (
            {"birth_date": "01/10/2021", "vaccinated_on": "15/09/2021"},
            "vaccinated_on",
            "records.vaccinated_before_birth",
        ),
        ({"product": ""}, "product", "records.product_required"),
        ({"product": "Covaxin"}, "product", "records.product_unknown"),
        ({"lot": ""}, "lot", "records.lot_required"),
        ({"lot": "L" * 65}, "lot", "records.lot_too_long"),
        ({"facility": "KHONG-CO"}, "facility", "records.facility_unknown"),
        ({"facility": "79760-BT"}, "facility", "records.facility_not_allowed"),
    ],
)
def test_every_row_problem_is_reported_with_row_and_column(
    session: Session, reference: Seed, changes: dict[str, Any], field: str, key: str
) -> None:
    data = csv_bytes(
        [
            row(
                identity_number="001085000001",
                full_name="Lê Văn Nam",
                gender="Nam",
                birth_date="01/01/1985",
            ),
            row(**changes),
        ]
    )
    report = run(session, reference, data)
    assert (3, field, key) in problems(report)
    assert len(report.problems) == 1, problems(report)
    entry = report.problems[0]
    header = HEADERS[[c.field for c in COLUMNS].index(field)]
    assert entry.column("vi") == header
    assert entry.text("vi") != entry.text("en")
    assert not report.imported
    assert count(session, Person) == 0, "nothing of a file with a problem is written"
    assert count(session, Dose) == 0


def test_all_problems_of_a_file_are_listed_and_nothing_is_written(
    session: Session, reference: Seed
) -> None:
    good = [
        row(
            identity_number=f"0010850000{i:02d}",
            full_name=f"Người Số {chr(65 + i)}",
            gender="Nam",
            birth_date="01/01/1985",
        )
        for i in range(5)
    ]
    data = csv_bytes(
        [
            *good,
            row(birth_date="abc", lot=""),
            row(identity_number="079190654321", product="?", dose_number="9"),
        ]
    )
    report = run(session, reference, data)
    session.commit()
    assert problems(report) == [
        (7, "birth_date", "records.date_unreadable"),
        (7, "lot", "records.lot_required"),
        (8, "dose_number", "records.dose_number_too_high"),
        (8, "product", "records.product_unknown"),
    ]
    assert not report.imported
    assert count(session, Person) == 0
    event = session.scalar(select(AuditEvent).where(AuditEvent.action == "records.import_rejected"))
    assert event is not None
    assert event.detail == {"filename": "tiem.csv", "rows": 7, "problems": 4}


def test_rows_of_one_person_become_one_person(session: Session, reference: Seed) -> None:
    data = csv_bytes(
        [
            row(dose_number="1", vaccinated_on="01/08/2021"),
            row(dose_number="2", vaccinated_on="01/09/2021", phone=""),
            # no number: the same name and birth date as the numbered person above
            row(dose_number="3", vaccinated_on="01/03/2022", identity_number="", lot="FK1"),
            # two doses of someone without any number
            row(
                full_name="Lò Văn Páo",
                gender="Nam",
                birth_date="03/03/1970",
                identity_number="",
                phone="",
                dose_number="1",
                vaccinated_on="05/09/2021",
            ),
            row(
                full_name="Lò Văn Páo",
                gender="Nam",
                birth_date="03/03/1970",
                identity_number="",
                phone="",
                dose_number="2",
                vaccinated_on="05/10/2021",
            ),
        ]
    )
    report = run(session, reference, data)
    assert report.ok, [p.text("vi") for p in report.problems]
    assert report.people_created == 2
    assert report.doses_created == 5
    people = {p.full_name: p for p in session.scalars(select(Person))}
    assert [d.dose_number for d in people["Nguyễn Thị Lan"].doses] == [1, 2, 3]
    assert people["Nguyễn Thị Lan"].phone == "0912345678"
    assert [d.dose_number for d in people["Lò Văn Páo"].doses] == [1, 2]


def test_rows_of_one_person_must_agree(session: Session, reference: Seed) -> None:
    data = csv_bytes(
        [
            row(),
            row(dose_number="2", vaccinated_on="10/10/2021", birth_date="18/05/1990"),
            row(dose_number="3", vaccinated_on="10/03/2022", phone="0987654321"),
        ]
    )
    report = run(session, reference, data)
    assert problems(report) == [
        (3, "birth_date", "records.import_person_conflict"),
        (4, "phone", "records.import_person_conflict"),
    ]
    assert "dòng 2" in report.problems[0].text("vi")


def test_a_dose_twice_in_the_file_and_doses_out_of_order(session: Session, reference: Seed) -> None:
    data = csv_bytes(
        [
            row(dose_number="1", vaccinated_on="01/10/2021"),
            row(dose_number="1", vaccinated_on="01/11/2021"),
            row(dose_number="2", vaccinated_on="01/09/2021"),
        ]
    )
    report = run(session, reference, data)
    assert problems(report) == [
        (3, "dose_number", "records.import_dose_repeated"),
        (4, "vaccinated_on", "records.dose_order"),
    ]


def test_importing_the_same_file_twice_duplicates_nothing(
    session: Session, reference: Seed
) -> None:
    data = csv_bytes([row(), row(dose_number="2", vaccinated_on="10/10/2021")])
    assert run(session, reference, data).imported
    session.commit()
    again = run(session, reference, data)
    session.commit()
    assert again.ok
    assert (again.people_created, again.people_existing, again.doses_created) == (0, 0, 0)
    assert again.doses_skipped == 2
    assert [n.key for n in again.notes] == ["records.import_dose_already_recorded"] * 2
    assert count(session, Person) == 1
    assert count(session, Dose) == 2


def test_a_new_dose_for_a_recorded_person(session: Session, reference: Seed) -> None:
    person = recorded_lan(session, reference)
    session.commit()
    data = csv_bytes([row(dose_number="3", vaccinated_on="01/03/2022", phone="0900000000")])
    report = run(session, reference, data)
    session.commit()
    assert report.ok, [p.text("vi") for p in report.problems]
    assert (report.people_created, report.people_existing, report.doses_created) == (0, 1, 1)
    session.refresh(person)
    assert [d.dose_number for d in person.doses] == [1, 2, 3]
    assert person.version == 1, "an import never edits the person"
    assert person.phone == "0901234567"
    # The file has a phone and an address the record does not: noted, not applied.
    assert [(n.field, n.key) for n in report.notes] == [
        ("phone", "records.import_person_kept"),
        ("address", "records.import_person_kept"),
    ]
    assert person.address is None
    assert person.verification_status is VerificationStatus.VERIFIED


def test_a_recorded_dose_with_other_data_is_a_conflict(session: Session, reference: Seed) -> None:
    recorded_lan(session, reference)
    session.commit()
    report = run(session, reference, csv_bytes([row(dose_number="1", vaccinated_on="02/08/2021")]))
    assert problems(report) == [(2, "dose_number", "records.import_dose_conflicts")]
    # Before dose 2 that is already recorded (29/08/2021) is out of order too, but the
    # conflict is what to fix first; a new dose 3 dated before it is reported as out of order.
    late = run(session, reference, csv_bytes([row(dose_number="3", vaccinated_on="20/08/2021")]))
    assert problems(late) == [(2, "vaccinated_on", "records.dose_order")]


def test_a_recorded_number_with_another_birth_date(session: Session, reference: Seed) -> None:
    recorded_lan(session, reference, birth_date=date(1990, 5, 18))
    session.commit()
    report = run(session, reference, csv_bytes([row(dose_number="3", vaccinated_on="01/03/2022")]))
    assert problems(report) == [(2, "birth_date", "records.import_person_differs")]
    assert "Ngày sinh" in report.problems[0].text("vi")
    assert "Date of birth" in report.problems[0].text("en")


def test_two_recorded_people_with_one_number_are_ambiguous(
    session: Session, reference: Seed
) -> None:
    for _ in range(2):
        recorded_lan(session, reference)
    session.commit()
    report = run(session, reference, csv_bytes([row(dose_number="3", vaccinated_on="01/06/2022")]))
    assert problems(report) == [(2, "identity_number", "records.import_person_ambiguous")]


def test_without_a_number_only_this_units_people_are_matched(
    session: Session, reference: Seed
) -> None:
    ours = add_person(
        session,
        reference,
        "Lò Văn Páo",
        identity_number=None,
        birth_date=date(1970, 3, 3),
        first_dose=date(2021, 8, 1),
    )
    theirs = add_person(
        session,
        reference,
        "Lò Văn Páo",
        identity_number=None,
        birth_date=date(1970, 3, 3),
        facility=reference.station_ben_thanh,
    )
    session.commit()
    data = csv_bytes(
        [
            row(
                full_name="Lò Văn Páo",
                gender="Nam",
                birth_date="03/03/1970",
                identity_number="",
                dose_number="3",
                vaccinated_on="01/03/2022",
            )
        ]
    )
    report = run(session, reference, data)
    session.commit()
    assert report.ok, [p.text("vi") for p in report.problems]
    assert report.people_existing == 1
    session.refresh(ours)
    session.refresh(theirs)
    assert [d.dose_number for d in ours.doses] == [1, 2, 3]
    assert [d.dose_number for d in theirs.doses] == [1, 2]


def test_dry_run_checks_without_writing(session: Session, reference: Seed) -> None:
    report = run(session, reference, csv_bytes([row()]), dry_run=True)
    session.commit()
    assert report.ok
    assert not report.imported
    assert (report.people_created, report.doses_created) == (1, 1)
    assert count(session, Person) == 0
    assert count(session, AuditEvent) == 0


def test_doses_given_elsewhere_in_the_signing_unit(session: Session, reference: Seed) -> None:
    """Bến Thành's staff may enter the district mobile team's doses, Bến Nghé's may not."""
    reference.staff.facility_id = reference.station_ben_thanh.id
    session.commit()
    data = csv_bytes([row(facility="79760-LD1")])
    report = run(session, reference, data, facility=reference.station_ben_thanh)
    assert report.ok, [p.text("vi") for p in report.problems]
    dose = session.scalar(select(Dose))
    assert dose is not None
    assert dose.facility_id == reference.mobile_team.id
    assert dose.created_by_facility_id == reference.station_ben_thanh.id
    refused = run(session, reference, data, facility=reference.station_ben_nghe)
    assert [p.key for p in refused.problems] == ["records.import_not_allowed"]


def test_an_officer_cannot_import(session: Session, reference: Seed) -> None:
    report = import_records(
        session,
        io.BytesIO(csv_bytes([row()])),
        "a.csv",
        reference.station_ben_nghe,
        reference.officer,
        today=TODAY,
    )
    assert [p.key for p in report.problems] == ["records.import_not_allowed"]
    assert count(session, Person) == 0


@pytest.mark.parametrize(
    ("data", "filename", "key"),
    [
        (b"", "a.csv", "records.import_no_header"),
        (csv_bytes([]), "a.csv", "records.import_empty"),
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 100, "a.xls", "records.import_old_xls"),
        (b"PK\x03\x04not really a zip", "a.xlsx", "records.import_unreadable_xlsx"),
        (b"%PDF-1.4\x00\x00\x01", "a.pdf", "records.import_unknown_format"),
        (b"ten,tuoi\r\nAn,3\r\n", "a.csv", "records.import_no_header"),
        (csv_bytes([row()]).replace(b"\xc3\xa0", b"\x81"), "a.csv", "records.import_encoding"),
    ],
)
def test_files_that_cannot_be_read(
    session: Session, reference: Seed, data: bytes, filename: str, key: str
) -> None:
    report = run(session, reference, data, filename)
    assert [(p.row, p.key) for p in report.problems] == [(None, key)]
    assert report.problems[0].text("vi")
    assert not report.imported


def test_missing_duplicate_and_unknown_columns(session: Session, reference: Seed) -> None:
    header = [h for h in HEADERS if h != "Số lô"] + ["Ghi chú", "Họ tên"]
    values = [v for h, v in zip(HEADERS, row(), strict=True) if h != "Số lô"]
    report = run(session, reference, csv_bytes([[*values, "x", "y"]], header))
    assert [(p.row, p.field, p.header, p.key) for p in report.problems] == [
        (1, "full_name", "Họ tên", "records.import_duplicate_column"),
        (1, "lot", None, "records.import_missing_column"),
    ]
    assert report.problems[1].column("vi") == "Số lô"
    assert report.problems[1].column("en") == "Lot number"
    assert [(n.header, n.key) for n in report.notes] == [
        ("Ghi chú", "records.import_unknown_column")
    ]


def test_a_title_above_the_header_and_data_without_a_header(
    session: Session, reference: Seed
) -> None:
    body = csv_bytes([[*row(), "", "ghi chú lạc"]], [*HEADERS, ""], encoding="utf-8")
    data = "DANH SÁCH TIÊM CHỦNG TRẠM Y TẾ PHƯỜNG BẾN NGHÉ\r\n\r\n".encode() + body
    report = run(session, reference, data)
    assert report.ok, [p.text("vi") for p in report.problems]
    assert [(n.row, n.header, n.key) for n in report.notes] == [
        (4, "N", "records.import_unnamed_column")
    ]


def test_identity_numbers_that_verification_will_flag_are_noted(
    session: Session, reference: Seed
) -> None:
    data = csv_bytes(
        [
            row(identity_number="025123456"),  # 9-digit CMND
            row(identity_number="079191123456", full_name="Phạm Thị Hoa"),  # year 91, born 1990
            row(identity_number="0791901234", full_name="Đỗ Thị Mai"),  # 10 digits
        ]
    )
    report = run(session, reference, data)
    assert report.ok, "imported all the same: verification decides"
    assert [(n.row, n.key) for n in report.notes] == [
        (2, "records.import_identity_old"),
        (3, "records.import_identity_format"),
        (4, "records.import_identity_format"),
    ]
    assert "năm sinh" in report.notes[1].text("vi")
    assert "12 digits" in report.notes[2].text("en")


def test_too_many_rows(session: Session, reference: Seed) -> None:
    data = csv_bytes([row(dose_number=str(1 + i % 3)) for i in range(6)])
    report = run(session, reference, data, max_rows=5)
    assert [p.key for p in report.problems] == ["records.import_too_many_rows"]
    assert count(session, Person) == 0


def test_a_stream_that_cannot_seek(session: Session, reference: Seed) -> None:
    class Pipe(io.RawIOBase):
        def __init__(self, data: bytes) -> None:
            self._data = io.BytesIO(data)

        def readable(self) -> bool:
            return True

        def readinto(self, buffer: Any) -> int:
            chunk = self._data.read(len(buffer))
            buffer[: len(chunk)] = chunk
            return len(chunk)

    report = import_records(
        session,
        Pipe(csv_bytes([row()])),
        "a.csv",
        reference.station_ben_nghe,
        reference.staff,
        today=TODAY,
    )
    assert report.ok
    assert report.imported


def test_the_templates_are_accepted_as_they_are(session: Session, reference: Seed) -> None:
    for language in ("vi", "en"):
        csv_template = template_csv(language)
        assert csv_template.startswith(codecs.BOM_UTF8)
        empty = run(session, reference, csv_template)
        assert [p.key for p in empty.problems] == ["records.import_empty"]

        workbook = openpyxl.load_workbook(io.BytesIO(template_xlsx(language)))
        sheet = workbook.worksheets[0]
        assert [c.value for c in sheet[1]] == template_headers(language)
        letter = {c.field: chr(65 + i) for i, c in enumerate(COLUMNS)}
        assert sheet.column_dimensions[letter["identity_number"]].number_format == "@"
        sheet.append(row(identity_number=f"07919012345{language == 'en':d}"))
        filled = io.BytesIO()
        workbook.save(filled)
        report = run(session, reference, filled.getvalue(), "mau.xlsx")
        assert report.ok, [p.text(language) for p in report.problems]
        help_text = " ".join(
            str(c.value) for r in workbook.worksheets[1].iter_rows() for c in r if c.value
        )
        assert "EU/1/20/1528" in help_text
    assert count(session, Person) == 2


def test_csv_with_quoted_cells_and_semicolons(session: Session, reference: Seed) -> None:
    header = ";".join(f'"{h}"' for h in HEADERS)
    line = ";".join(f'"{v}"' for v in row(address="12 Lê Lợi; tầng 3, phòng 301"))
    report = run(session, reference, f"{header}\r\n{line}\r\n".encode())
    assert report.ok, [p.text("vi") for p in report.problems]
    person = session.scalar(select(Person))
    assert person is not None
    assert person.address == "12 Lê Lợi; tầng 3, phòng 301"


def test_the_command(database_url: str, tmp_path: Any, session: Session, reference: Seed) -> None:
    from kyso.platform.cli import main

    env = {"DATABASE_URL": database_url, "KYSO_INSTANCE_PATH": str(tmp_path / "instance")}
    bad = tmp_path / "bad.csv"
    bad.write_bytes(csv_bytes([row(), row(identity_number="079190654321", lot="")]))
    result = CliRunner().invoke(
        main,
        ["import-records", str(bad), "--facility", "79760-BN", "--user", "nhanvien.bennghe"],
        env=env,
    )
    assert result.exit_code == 1
    assert "3\tSố lô\t\tChưa có số lô vắc xin" in result.output
    assert "Không nhập dòng nào: tệp có 1 lỗi" in result.output
    assert count(session, Person) == 0

    good = tmp_path / "good.xlsx"
    good.write_bytes(xlsx_bytes([row(), row(dose_number=2, vaccinated_on="10/10/2021")]))
    result = CliRunner().invoke(
        main, ["import-records", str(good), "--facility", "79760-BN", "--lang", "en"], env=env
    )
    assert result.exit_code == 0, result.output
    assert "Imported 2 doses: 1 new people" in result.output
    session.expire_all()
    assert count(session, Dose) == 2
    event = session.scalar(select(AuditEvent).where(AuditEvent.action == "records.import"))
    assert event is not None
    assert event.user_id is None  # IT at the command line

    unknown = CliRunner().invoke(main, ["import-records", str(good), "--facility", "X"], env=env)
    assert unknown.exit_code == 2
    assert "no facility with code 'X'" in unknown.output


@pytest.mark.slow
def test_ten_thousand_rows(session: Session, reference: Seed) -> None:
    """A big facility's file: 10,000 doses of 4,000 people, streamed and bulk-inserted."""
    stations = [
        Facility(
            code="79760-LD2",
            name="Đội tiêm lưu động 2",
            type=FacilityType.MOBILE_TEAM,
            area_id=reference.ben_nghe.id,
            signing_unit_id=reference.unit_ben_nghe.id,
        )
    ]
    session.add_all(stations)
    session.commit()
    rows: list[list[Any]] = []
    dates = ["15/08/2021", "20/09/2021", "10/03/2022"]
    for i in range(4000):
        doses = 2 if i < 2000 else 3  # 2000 * 2 + 2000 * 3 = 10,000 doses
        for number in range(1, doses + 1):
            rows.append(
                row(
                    full_name=f"Nguyễn Văn {_letters(i)}",
                    gender="Nam",
                    birth_date=f"{1 + i % 28:02d}/{1 + i % 12:02d}/1980",
                    identity_number=f"0790{80}{i:06d}",
                    phone=f"09{i:08d}",
                    dose_number=number,
                    vaccinated_on=dates[number - 1],
                    facility="79760-LD2" if i % 2 else "",
                )
            )
    assert len(rows) == 10_000
    started = time.perf_counter()
    report = run(session, reference, xlsx_bytes(rows), "lon.xlsx")
    session.commit()
    elapsed = time.perf_counter() - started
    assert report.ok, [p.text("vi") for p in report.problems[:5]]
    assert (report.rows, report.people_created, report.doses_created) == (10_000, 4000, 10_000)
    assert count(session, Dose) == 10_000
    assert elapsed < 60, elapsed
    csv_report = run(session, reference, csv_bytes(rows))
    assert csv_report.ok
    assert csv_report.doses_skipped == 10_000


def _letters(i: int) -> str:
    """A distinct Vietnamese-looking given name per index (no digits in names)."""
    syllables = ["An", "Bình", "Cường", "Dũng", "Giang", "Hải", "Khoa", "Long", "Minh", "Nam"]
    out = []
    while True:
        out.append(syllables[i % 10])
        i //= 10
        if i == 0:
            return " ".join(out)
