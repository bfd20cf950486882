"""The selection's rules: scope, verification, already signed, limits, tick all, versions."""

from __future__ import annotations

import threading
from datetime import date

import pytest
from flask import Flask
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session
from support.platform_db import recorded_statements
from support.platform_seed import Seed, add_person
from support.signing_data import bulk_people, edit, sign

from kyso.platform.errors import DomainError
from kyso.platform.models import (
    AuditEvent,
    Dose,
    Person,
    SigningSelection,
    User,
    VerificationStatus,
)
from kyso.platform.signing.search import SearchFilters, StateFilter
from kyso.platform.signing.selection import (
    MAX_DOSES,
    MAX_PEOPLE,
    LimitExceeded,
    NotVerified,
    add_doses,
    add_search,
    clear,
    remove_doses,
    remove_person,
    summary,
    update_page,
)
from kyso.platform.signing.selection import add_person as select_person


def selected(session: Session, officer: User) -> set[int]:
    return set(
        session.scalars(
            select(SigningSelection.dose_id).where(SigningSelection.user_id == officer.id)
        )
    )


def dose_ids(person: Person) -> list[int]:
    return [d.id for d in person.doses]


def all_dose_ids(session: Session, people: list[int]) -> list[int]:
    return list(
        session.scalars(select(Dose.id).where(Dose.person_id.in_(people)).order_by(Dose.id))
    )


def test_add_and_remove_doses_and_people(session: Session, org: Seed) -> None:
    an = add_person(session, org, "Nguyễn Văn An", doses=2)
    binh = add_person(session, org, "Nguyễn Văn Bình", doses=3)
    change = add_doses(session, org.officer, [an.doses[0].id, binh.doses[1].id])
    assert change.added == 2
    assert (change.summary.people, change.summary.doses) == (2, 2)
    # Adding again changes nothing.
    assert add_doses(session, org.officer, [an.doses[0].id]).added == 0
    assert select_person(session, org.officer, binh.id).added == 2
    assert (summary(session, org.officer).people, summary(session, org.officer).doses) == (2, 4)
    assert remove_doses(session, org.officer, [an.doses[0].id]).removed == 1
    assert selected(session, org.officer) == set(dose_ids(binh))
    assert remove_person(session, org.officer, binh.id).removed == 3
    assert selected(session, org.officer) == set()
    add_doses(session, org.officer, dose_ids(an))
    assert clear(session, org.officer).removed == 2
    assert summary(session, org.officer).doses == 0


def test_selections_are_per_officer(session: Session, org: Seed) -> None:
    an = add_person(session, org, "Nguyễn Văn An", doses=1)
    second = User(
        username="kyduyet2.bennghe",
        full_name="Võ Thị Lan",
        password_hash="x",
        role=org.officer.role,
        signing_unit_id=org.unit_ben_nghe.id,
    )
    session.add(second)
    session.flush()
    add_doses(session, org.officer, dose_ids(an))
    assert selected(session, second) == set()
    add_doses(session, second, dose_ids(an))
    clear(session, org.officer)
    assert selected(session, second) == set(dose_ids(an))


def test_a_dose_outside_the_scope_is_refused_and_audited(session: Session, org: Seed) -> None:
    own = add_person(session, org, "Nguyễn Văn An", doses=1)
    other = add_person(session, org, "Lê Văn Bảo", doses=1, facility=org.station_ben_thanh)
    with pytest.raises(DomainError) as refused:
        add_doses(session, org.officer, [own.doses[0].id, other.doses[0].id])
    assert refused.value.key == "signing.refused_out_of_scope"
    assert "1 hồ sơ không thuộc phạm vi ký" in refused.value.text()
    assert selected(session, org.officer) == set()  # the valid one was not added either
    event = session.scalars(
        select(AuditEvent).where(AuditEvent.action == "signing.selection_refused")
    ).one()
    assert event.user_id == org.officer.id
    assert event.detail == {"dose_ids": [other.doses[0].id], "count": 1}


def test_a_dose_id_that_does_not_exist_is_refused(session: Session, org: Seed) -> None:
    with pytest.raises(DomainError) as refused:
        add_doses(session, org.officer, [987654])
    assert refused.value.key == "signing.refused_out_of_scope"


def test_a_person_outside_the_scope_is_refused(session: Session, org: Seed) -> None:
    other = add_person(session, org, "Lê Văn Bảo", doses=1, facility=org.station_ben_thanh)
    with pytest.raises(DomainError) as refused:
        select_person(session, org.officer, other.id)
    assert refused.value.key == "signing.refused_out_of_scope"
    with pytest.raises(DomainError):
        select_person(session, org.officer, 987654)
    assert selected(session, org.officer) == set()


def test_only_verified_people_can_be_chosen(session: Session, org: Seed) -> None:
    ok = add_person(session, org, "Nguyễn Văn An", doses=1)
    mismatch = add_person(
        session, org, "Trần Thị Bích", doses=1, status=VerificationStatus.MISMATCH
    )
    mismatch.verification_detail = {"fields": ["birth_date"]}
    pending = add_person(session, org, "Lê Văn Cường", doses=1, status=VerificationStatus.PENDING)
    session.flush()
    with pytest.raises(NotVerified) as refused:
        add_doses(session, org.officer, [ok.doses[0].id, mismatch.doses[0].id, pending.doses[0].id])
    text = refused.value.text("vi")
    assert "Lê Văn Cường" in text  # the first by name
    assert "Chưa xác minh" in text
    assert "Còn 1 người khác" in text
    assert "Danh sách chọn không thay đổi" in text
    english = refused.value.text("en")
    assert "cannot be selected yet" in english
    assert selected(session, org.officer) == set()

    with pytest.raises(NotVerified) as person_refused:
        select_person(session, org.officer, mismatch.id)
    assert "ngày sinh" in person_refused.value.text("vi").lower()


@pytest.mark.parametrize(
    "status", [s for s in VerificationStatus if s is not VerificationStatus.VERIFIED]
)
def test_every_status_but_verified_is_refused(
    session: Session, org: Seed, status: VerificationStatus
) -> None:
    person = add_person(session, org, "Nguyễn Văn An", doses=1, status=status)
    with pytest.raises(NotVerified):
        add_doses(session, org.officer, dose_ids(person))


def test_already_signed_is_refused_older_version_signed_is_allowed(
    session: Session, org: Seed
) -> None:
    signed = add_person(session, org, "Nguyễn Văn An", doses=1)
    older = add_person(session, org, "Nguyễn Văn Bình", doses=1)
    sign(session, signed.doses[0])
    sign(session, older.doses[0])
    edit(session, older.doses[0])
    with pytest.raises(DomainError) as refused:
        add_doses(session, org.officer, dose_ids(signed))
    assert refused.value.key == "signing.refused_already_signed"
    assert "Mũi 1 của Nguyễn Văn An đã được ký" in refused.value.text()
    assert add_doses(session, org.officer, dose_ids(older)).added == 1
    # A person's "all doses" skips the signed ones; if none is left it says so.
    with pytest.raises(DomainError) as nothing:
        select_person(session, org.officer, signed.id)
    assert nothing.value.key == "signing.nothing_to_add"


def test_a_dose_edited_since_the_page_was_drawn_is_refused(session: Session, org: Seed) -> None:
    person = add_person(session, org, "Nguyễn Văn An", doses=2)
    shown = {d.id: d.version for d in person.doses}
    edit(session, person.doses[1])
    with pytest.raises(DomainError) as refused:
        add_doses(session, org.officer, shown, seen=shown)
    assert refused.value.key == "signing.refused_changed"
    assert selected(session, org.officer) == set()
    fresh = {d.id: d.version for d in person.doses}
    assert add_doses(session, org.officer, fresh, seen=fresh).added == 2


def test_ticking_again_records_the_version_seen_now(session: Session, org: Seed) -> None:
    person = add_person(session, org, "Nguyễn Văn An", doses=1)
    dose = person.doses[0]
    add_doses(session, org.officer, [dose.id])
    edit(session, dose)
    add_doses(session, org.officer, [dose.id], seen={dose.id: dose.version})
    row = session.get(SigningSelection, (org.officer.id, dose.id))
    assert row is not None
    session.refresh(row)
    assert row.dose_version == dose.version == 2


def test_exactly_the_limits_and_one_over(session: Session, org: Seed) -> None:
    assert (MAX_PEOPLE, MAX_DOSES) == (1000, 3000)
    people = bulk_people(session, org, 1000, doses=3)
    doses = all_dose_ids(session, people)
    change = add_doses(session, org.officer, doses)
    assert (change.summary.people, change.summary.doses) == (1000, 3000)

    extra = add_person(session, org, "Trần Văn Thêm", doses=1)
    with pytest.raises(LimitExceeded) as refused:
        add_doses(session, org.officer, dose_ids(extra))
    text = refused.value.text("vi")
    assert "tối đa 1.000 người và 3.000 mũi" in text
    assert "chỉ còn có thể chọn thêm 0 người và 0 mũi" in text
    assert "1.000 người, 3.000 mũi" in text
    assert "3,000" in refused.value.text("en")
    assert summary(session, org.officer).doses == 3000


def test_one_dose_over_the_dose_limit_says_how_many_are_left(session: Session, org: Seed) -> None:
    people = bulk_people(session, org, 600, doses=5)  # 3,000 doses of 600 people
    more = bulk_people(session, org, 1, doses=2, start=600)
    doses = all_dose_ids(session, people)
    assert add_doses(session, org.officer, doses[:2999]).summary.doses == 2999
    with pytest.raises(LimitExceeded) as refused:
        add_doses(session, org.officer, all_dose_ids(session, more))
    text = refused.value.text("vi")
    assert "Không thể chọn thêm 2 mũi của 1 người" in text
    assert "chỉ còn có thể chọn thêm 400 người và 1 mũi" in text
    assert summary(session, org.officer).doses == 2999  # nothing of the refused addition
    assert add_doses(session, org.officer, doses[2999:]).summary.doses == 3000


def test_one_person_over_the_people_limit(session: Session, org: Seed) -> None:
    people = bulk_people(session, org, 1001, doses=1)
    doses = all_dose_ids(session, people)
    with pytest.raises(LimitExceeded) as at_once:
        add_doses(session, org.officer, doses)
    assert "1.001 người" in at_once.value.text()
    assert summary(session, org.officer).people == 0
    assert add_doses(session, org.officer, doses[:1000]).summary.people == 1000
    with pytest.raises(LimitExceeded) as refused:
        add_doses(session, org.officer, doses[1000:])
    assert "chỉ còn có thể chọn thêm 0 người và 2.000 mũi" in refused.value.text()


def test_more_doses_of_chosen_people_do_not_count_as_new_people(
    session: Session, org: Seed
) -> None:
    people = bulk_people(session, org, 1000, doses=2)
    first_doses = list(
        session.scalars(select(Dose.id).where(Dose.person_id.in_(people), Dose.dose_number == 1))
    )
    add_doses(session, org.officer, first_doses)
    second_doses = list(
        session.scalars(select(Dose.id).where(Dose.person_id.in_(people), Dose.dose_number == 2))
    )
    change = add_doses(session, org.officer, second_doses)
    assert (change.summary.people, change.summary.doses) == (1000, 2000)


def test_a_crafted_request_for_too_many_ids_is_refused_early(session: Session, org: Seed) -> None:
    with pytest.raises(DomainError) as refused:
        add_doses(session, org.officer, range(1, MAX_DOSES + 2))
    assert refused.value.key == "signing.too_many_requested"
    assert "3.000" in refused.value.text()


def test_update_page_removes_then_adds(session: Session, org: Seed) -> None:
    an = add_person(session, org, "Nguyễn Văn An", doses=2)
    binh = add_person(session, org, "Nguyễn Văn Bình", doses=2)
    add_doses(session, org.officer, dose_ids(an))
    change = update_page(session, org.officer, add=dose_ids(binh), remove=[an.doses[0].id])
    assert (change.added, change.removed) == (2, 1)
    assert selected(session, org.officer) == {an.doses[1].id, *dose_ids(binh)}


def test_update_page_keeps_removals_when_additions_are_refused(session: Session, org: Seed) -> None:
    an = add_person(session, org, "Nguyễn Văn An", doses=2)
    unverified = add_person(session, org, "Trần Thị Bích", status=VerificationStatus.MISMATCH)
    add_doses(session, org.officer, dose_ids(an))
    with pytest.raises(NotVerified):
        update_page(session, org.officer, add=dose_ids(unverified), remove=[an.doses[0].id])
    assert selected(session, org.officer) == {an.doses[1].id}


def test_removals_make_room_before_additions(session: Session, org: Seed) -> None:
    people = bulk_people(session, org, 1000, doses=1)
    doses = all_dose_ids(session, people)
    add_doses(session, org.officer, doses)
    newcomer = add_person(session, org, "Trần Văn Mới", doses=1)
    change = update_page(session, org.officer, add=dose_ids(newcomer), remove=[doses[0]])
    assert (change.summary.people, change.summary.doses) == (1000, 1000)


def test_add_person_respects_the_search_filters(session: Session, org: Seed) -> None:
    person = add_person(session, org, "Nguyễn Văn An", doses=3, first_dose=date(2022, 3, 1))
    change = select_person(
        session,
        org.officer,
        person.id,
        SearchFilters(date_from=date(2022, 3, 20), date_to=date(2022, 4, 30)),
    )
    assert change.added == 2  # 29 March and 26 April, not 1 March
    assert selected(session, org.officer) == set(dose_ids(person)[1:])


def test_tick_all_takes_the_whole_search_not_just_a_page(session: Session, org: Seed) -> None:
    bulk_people(session, org, 120, doses=2)
    add_person(session, org, "Trần Thị Bích", status=VerificationStatus.MISMATCH)
    add_person(session, org, "Trần Văn Cảnh", status=VerificationStatus.NO_IDENTITY)
    signed = add_person(session, org, "Trần Văn Đã Ký", doses=1)
    sign(session, signed.doses[0])
    other = add_person(session, org, "Lê Văn Bảo", facility=org.station_ben_thanh)

    change = add_search(session, org.officer, SearchFilters())
    assert change.added == 240
    assert (change.summary.people, change.summary.doses) == (120, 240)
    assert change.skipped_unverified == 2
    assert signed.doses[0].id not in selected(session, org.officer)
    assert not set(dose_ids(other)) & selected(session, org.officer)
    # Again: nothing new.
    again = add_search(session, org.officer, SearchFilters())
    assert again.added == 0
    assert again.summary.doses == 240


def test_tick_all_respects_filters(session: Session, org: Seed) -> None:
    bulk_people(session, org, 5, doses=2, name="Nguyễn Văn An")
    bulk_people(session, org, 5, doses=2, name="Trần Văn Bình", start=5)
    change = add_search(session, org.officer, SearchFilters(name="nguyen van"))
    assert change.added == 10
    names = session.scalars(
        select(Person.full_name)
        .join(SigningSelection, SigningSelection.person_id == Person.id)
        .distinct()
    ).all()
    assert all(n.startswith("Nguyễn Văn An") for n in names)
    change = add_search(
        session, org.officer, SearchFilters(name="tran", date_from=date(2022, 3, 29))
    )
    assert change.added == 5  # only the second doses
    assert add_search(session, org.officer, SearchFilters(state=StateFilter.SIGNED)).added == 0


def test_tick_all_over_the_limits_is_refused_as_a_whole(session: Session, org: Seed) -> None:
    bulk_people(session, org, 1001, doses=1)
    with pytest.raises(LimitExceeded) as people_over:
        add_search(session, org.officer, SearchFilters())
    assert "1.001 người" in people_over.value.text()
    assert summary(session, org.officer).doses == 0

    bulk_people(session, org, 1000, doses=3, start=2000, name="Trần Văn Hai")  # 3,000 doses
    with pytest.raises(LimitExceeded) as doses_over:
        add_search(session, org.officer, SearchFilters())
    text = doses_over.value.text()
    # Beyond the limit the search is not counted to the end: "at least" figures.
    assert "Không thể chọn thêm 3.001+ mũi của 1.668+ người" in text
    assert summary(session, org.officer).doses == 0
    # Narrowed to exactly 1,000 people and 3,000 doses, it fits.
    change = add_search(session, org.officer, SearchFilters(name="tran van hai"))
    assert (change.summary.people, change.summary.doses) == (1000, 3000)


def test_tick_all_refreshes_what_was_ticked_before_an_edit(session: Session, org: Seed) -> None:
    person = add_person(session, org, "Nguyễn Văn An", doses=1)
    add_doses(session, org.officer, dose_ids(person))
    edit(session, person.doses[0])
    change = add_search(session, org.officer, SearchFilters())
    assert change.added == 0
    row = session.get(SigningSelection, (org.officer.id, person.doses[0].id))
    assert row is not None
    session.refresh(row)
    assert row.dose_version == 2


def test_deleting_a_dose_takes_it_out_of_selections(session: Session, org: Seed) -> None:
    person = add_person(session, org, "Nguyễn Văn An", doses=2)
    add_doses(session, org.officer, dose_ids(person))
    session.commit()
    session.delete(person.doses[1])
    session.commit()
    assert session.scalar(select(func.count()).select_from(SigningSelection)) == 1


def test_two_tabs_cannot_pass_the_limit_together(app: Flask, session: Session, org: Seed) -> None:
    """Each change locks the officer first: the second tab sees the first tab's ticks."""
    people = bulk_people(session, org, 1000, doses=3)
    extra = bulk_people(session, org, 1, doses=1, start=1000)
    session.commit()
    doses = all_dose_ids(session, people)
    factory = app.extensions["kyso.sessions"]
    outcome: list[object] = []

    def second_tab() -> None:
        with factory() as other:
            officer = other.get(User, org.officer.id)
            assert officer is not None
            try:
                add_doses(other, officer, doses[2000:] + all_dose_ids(other, extra))
                other.commit()
                outcome.append("added")
            except (LimitExceeded, OperationalError) as exc:
                other.rollback()
                outcome.append(exc)

    with factory() as first:
        officer = first.get(User, org.officer.id)
        assert officer is not None
        add_doses(first, officer, doses[:2000])
        tab = threading.Thread(target=second_tab)
        tab.start()
        tab.join(timeout=1)
        assert tab.is_alive()  # waiting for the first tab's transaction
        first.commit()
    tab.join(timeout=20)
    assert not tab.is_alive()
    session.expire_all()
    assert summary(session, org.officer).doses == 2000
    [result] = outcome
    assert isinstance(result, LimitExceeded), result
    assert "danh sách đã có 667 người, 2.000 mũi" in result.text()
    assert "chỉ còn có thể chọn thêm 333 người và 1.000 mũi" in result.text()


def test_over_the_limits_take_the_first_people_then_the_next(session: Session, org: Seed) -> None:
    # Issue 17: over the cap the officer no longer guesses date ranges; "Chọn 1.000 người đầu
    # tiên" takes the first people of the list, and once they are signed, the next ones.
    from kyso.platform.models import DoseSignature

    bulk_people(session, org, 1200, doses=2)  # 1,200 people, 2,400 doses: over the people cap
    first = add_search(session, org.officer, SearchFilters(), first=True)
    assert (first.summary.people, first.summary.doses) == (MAX_PEOPLE, 2 * MAX_PEOPLE)
    assert first.more_left
    chosen = selected(session, org.officer)
    # the first people in the list's order, all their doses
    ordered = list(
        session.scalars(
            select(Person.id)
            .where(Person.verification_status == VerificationStatus.VERIFIED)
            .order_by(Person.name_key, Person.id)
        )
    )
    assert chosen == set(all_dose_ids(session, ordered[:MAX_PEOPLE]))
    # the batch is signed: the next press takes the 200 people left
    for dose in session.scalars(select(Dose).where(Dose.id.in_(chosen))):
        session.add(DoseSignature(dose_id=dose.id, dose_version=dose.version))
    session.flush()
    clear(session, org.officer)
    following = add_search(session, org.officer, SearchFilters(), first=True)
    assert (following.summary.people, following.summary.doses) == (200, 400)
    assert not following.more_left
    assert selected(session, org.officer) == set(all_dose_ids(session, ordered[MAX_PEOPLE:]))


def test_first_people_stop_at_the_dose_limit_and_a_full_batch_is_refused(
    session: Session, org: Seed
) -> None:
    bulk_people(session, org, 1100, doses=3)  # 3,300 doses: the dose cap binds first
    first = add_search(session, org.officer, SearchFilters(), first=True)
    assert (first.summary.people, first.summary.doses) == (1000, MAX_DOSES)
    with pytest.raises(LimitExceeded):  # nothing fits any more: sign this batch first
        add_search(session, org.officer, SearchFilters(), first=True)
    assert summary(session, org.officer).doses == MAX_DOSES


def test_tick_all_writes_the_selection_in_one_statement_whatever_its_size(
    session: Session, org: Seed
) -> None:
    """Ticking a search of 3,000 doses was 3,000 INSERTs sent to the database (an executemany
    is one statement a row for the server); now one, and one for the refreshed versions too.
    SQLite runs in-process, where an executemany costs little: PostgreSQL is counted."""

    from kyso.platform.db import is_postgresql

    bulk_people(session, org, 300, doses=2)
    edited = add_person(session, org, "Nguyễn Văn An", doses=2)
    add_doses(session, org.officer, dose_ids(edited))
    for dose in edited.doses:
        edit(session, dose)
    sent: list[str] = []

    with recorded_statements(session.get_bind()) as seen:
        change = add_search(session, org.officer, SearchFilters())
    for sql, params, many in seen:
        writes = sql.lstrip().upper().startswith(("INSERT", "UPDATE"))
        if writes and "SIGNING_SELECTIONS" in sql.upper():
            sent.extend([sql] * (len(params) if many and isinstance(params, list) else 1))
    assert change.added == 600
    assert (change.summary.people, change.summary.doses) == (301, 602)
    rows = session.execute(
        select(
            SigningSelection.dose_id, SigningSelection.person_id, SigningSelection.dose_version
        ).where(SigningSelection.user_id == org.officer.id)
    ).all()
    expected = session.execute(select(Dose.id, Dose.person_id, Dose.version)).all()
    assert sorted(map(tuple, rows)) == sorted(map(tuple, expected))
    assert all(version == 2 for dose_id, _, version in rows if dose_id in dose_ids(edited))
    if is_postgresql(session):
        assert len(sent) == 2, sent[:3]  # one INSERT of 600 rows, one UPDATE of 2
