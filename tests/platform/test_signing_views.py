"""The signing page through HTTP: access, CSRF, forms without script, JSON for the script."""

from __future__ import annotations

import json
import re
from datetime import date

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session
from support.platform_client import csrf_token, login
from support.platform_seed import Seed, add_person
from support.signing_data import bulk_people, edit, sign

from kyso.platform.models import AuditEvent, Person, SigningSelection, User, VerificationStatus


def selected(session: Session, officer: User) -> set[int]:
    session.expire_all()
    return set(
        session.scalars(
            select(SigningSelection.dose_id).where(SigningSelection.user_id == officer.id)
        )
    )


def page(client: FlaskClient, path: str = "/signing/") -> str:
    response = client.get(path)
    assert response.status_code == 200, response.status_code
    return response.get_data(as_text=True)


def shown(person: Person) -> list[str]:
    return [f"{d.id}:{person.id}:{d.version}" for d in person.doses]


@pytest.fixture
def officer_client(client: FlaskClient, org: Seed) -> FlaskClient:
    assert login(client, "kyduyet.bennghe").status_code == 302
    return client


def test_only_signing_officers_open_the_page(client: FlaskClient, org: Seed) -> None:
    assert client.get("/signing/").status_code == 302  # to the login page
    assert client.get("/signing/preview").status_code == 302
    login(client, "nhanvien.bennghe")
    assert client.get("/signing/").status_code == 403
    assert client.get("/signing/preview").status_code == 403
    token = csrf_token(client, "/login")
    response = client.post("/signing/selection/search", data={"csrf_token": token})
    assert response.status_code == 403


def test_search_page_lists_people_and_doses(
    officer_client: FlaskClient, session: Session, org: Seed
) -> None:
    an = add_person(session, org, "Nguyễn Văn An", doses=2, phone="0901234567")
    add_person(session, org, "Lê Văn Bảo", facility=org.station_ben_thanh)
    session.commit()
    html = page(officer_client, "/signing/?name=nguyen+van")
    assert "Nguyễn Văn An" in html
    assert "Lê Văn Bảo" not in html  # another unit's facility
    assert "Tìm thấy 1 người." in html
    assert "Đã chọn: 0 người, 0 mũi" in html
    assert "Comirnaty (Pfizer-BioNTech)" in html
    assert "FK1001" in html
    assert "01/03/2022" in html
    assert "29/03/2022" in html
    for value in shown(an):
        assert f'name="shown" value="{value}"' in html
    assert 'aria-label="Chọn mũi 1 của Nguyễn Văn An"' in html
    assert 'aria-label="Chọn tất cả các mũi của Nguyễn Văn An"' in html
    # The search form keeps what was typed.
    assert 'name="name" value="nguyen van"' in html


def test_no_inline_script_or_style(
    officer_client: FlaskClient, session: Session, org: Seed
) -> None:
    add_person(session, org, "Nguyễn Văn An")
    add_person(session, org, "Trần Thị Bích", status=VerificationStatus.MISMATCH)
    session.commit()
    officer_client.post(
        "/signing/selection/search", data={"csrf_token": csrf_token(officer_client, "/signing/")}
    )
    for path in ("/signing/", "/signing/preview"):
        html = page(officer_client, path)
        assert " style=" not in html
        assert "<style" not in html
        assert not re.search(r"\son[a-z]+=", html), "inline event handler"
        # Data for the page's script (the Sign box's configuration) is allowed: the browser
        # never runs a JSON block. It must be JSON, and every other script a file.
        data = re.findall(r'<script type="application/json"[^>]*>(.*?)</script>', html, re.S)
        for body in data:
            json.loads(body)
        code = re.sub(r'<script type="application/json"[^>]*>.*?</script>', "", html, flags=re.S)
        for script in re.findall(r"<script[^>]*>", code):
            assert 'src="' in script
        assert not re.search(r"<script[^>]*>\s*[^<\s]", code), "inline script body"


def test_unverified_person_is_shown_disabled_with_reason_and_fix(
    officer_client: FlaskClient, session: Session, org: Seed
) -> None:
    person = add_person(session, org, "Trần Thị Bích", status=VerificationStatus.MISMATCH)
    person.verification_detail = {"fields": ["birth_date"]}
    session.commit()
    html = page(officer_client)
    assert "Sai lệch với CSDL quốc gia về dân cư" in html
    assert "ngày sinh" in html
    assert "Trạm Y tế Phường Bến Nghé cần sửa hồ sơ" in html
    box = re.search(r'<input type="checkbox" class="dose-box"[^>]*>', html)
    assert box is not None
    assert "disabled" in box.group(0)
    assert f'aria-describedby="why-{person.id}"' in box.group(0)
    assert 'name="shown"' not in html  # nothing to tick on this page
    assert "Liên kết tới hồ sơ" not in html  # no person page yet: no dead link


def test_csrf_is_required_for_selection_changes(
    officer_client: FlaskClient, session: Session, org: Seed
) -> None:
    an = add_person(session, org, "Nguyễn Văn An", doses=1)
    session.commit()
    for path in (
        "/signing/selection",
        "/signing/selection/search",
        "/signing/selection/clear",
        "/signing/selection/person",
        "/signing/selection/remove",
    ):
        response = officer_client.post(path, data={"dose": str(an.doses[0].id)})
        assert response.status_code == 400, path
    assert selected(session, org.officer) == set()


def test_ticking_without_script(officer_client: FlaskClient, session: Session, org: Seed) -> None:
    an = add_person(session, org, "Nguyễn Văn An", doses=2)
    binh = add_person(session, org, "Nguyễn Văn Bình", doses=2)
    session.commit()
    token = csrf_token(officer_client, "/signing/")
    everything = shown(an) + shown(binh)
    response = officer_client.post(
        "/signing/selection",
        data={
            "csrf_token": token,
            "next": "/signing/?name=nguyen",
            "shown": everything,
            "dose": [str(an.doses[0].id), str(binh.doses[1].id)],
            "action": "save",
        },
    )
    assert response.status_code == 302
    assert response.headers["Location"] == "/signing/?name=nguyen"
    assert selected(session, org.officer) == {an.doses[0].id, binh.doses[1].id}
    html = page(officer_client, "/signing/?name=nguyen")
    assert "Đã chọn thêm 2 mũi." in html
    assert "Đã chọn: 2 người, 2 mũi" in html
    assert f'value="{an.doses[0].id}" data-shown' in html
    assert re.search(rf'value="{an.doses[0].id}" data-shown="[^"]+" checked', html)

    # Unticking one and ticking another on the same page.
    response = officer_client.post(
        "/signing/selection",
        data={
            "csrf_token": token,
            "shown": everything,
            "dose": [str(an.doses[1].id), str(binh.doses[1].id)],
        },
    )
    assert selected(session, org.officer) == {an.doses[1].id, binh.doses[1].id}
    assert "Đã chọn thêm 1 mũi. Đã bỏ chọn 1 mũi." in page(officer_client)


def test_person_box_wins_when_changed(
    officer_client: FlaskClient, session: Session, org: Seed
) -> None:
    an = add_person(session, org, "Nguyễn Văn An", doses=3)
    session.commit()
    token = csrf_token(officer_client, "/signing/")
    # Ticked the person's box (it was not ticked): all their shown doses.
    officer_client.post(
        "/signing/selection",
        data={"csrf_token": token, "shown": shown(an), "person": str(an.id)},
    )
    assert selected(session, org.officer) == {d.id for d in an.doses}
    html = page(officer_client)
    assert f'name="person_was" value="{an.id}"' in html
    # Unticked the person's box, dose boxes still ticked (no script): all removed.
    officer_client.post(
        "/signing/selection",
        data={
            "csrf_token": token,
            "shown": shown(an),
            "dose": [str(d.id) for d in an.doses],
            "person_was": str(an.id),
        },
    )
    assert selected(session, org.officer) == set()
    # Person box left as it was, one dose unticked: the dose boxes count.
    officer_client.post(
        "/signing/selection",
        data={"csrf_token": token, "shown": shown(an), "person": str(an.id)},
    )
    officer_client.post(
        "/signing/selection",
        data={
            "csrf_token": token,
            "shown": shown(an),
            "dose": [str(an.doses[0].id)],
            "person": str(an.id),
            "person_was": str(an.id),
        },
    )
    assert selected(session, org.officer) == {an.doses[0].id}


def test_select_all_on_the_page(officer_client: FlaskClient, session: Session, org: Seed) -> None:
    an = add_person(session, org, "Nguyễn Văn An", doses=2)
    binh = add_person(session, org, "Nguyễn Văn Bình", doses=1)
    session.commit()
    officer_client.post(
        "/signing/selection",
        data={
            "csrf_token": csrf_token(officer_client, "/signing/"),
            "shown": shown(an) + shown(binh),
            "action": "page_all",
        },
    )
    assert len(selected(session, org.officer)) == 3


def test_json_for_the_script(officer_client: FlaskClient, session: Session, org: Seed) -> None:
    an = add_person(session, org, "Nguyễn Văn An", doses=1)
    bich = add_person(session, org, "Trần Thị Bích", status=VerificationStatus.NO_IDENTITY)
    session.commit()
    token = csrf_token(officer_client, "/signing/")
    headers = {"Accept": "application/json"}
    ok = officer_client.post(
        "/signing/selection",
        data={"csrf_token": token, "shown": shown(an), "dose": str(an.doses[0].id)},
        headers=headers,
    )
    assert ok.status_code == 200
    assert ok.get_json() == {
        "ok": True,
        "message": "Đã chọn thêm 1 mũi.",
        "people": 1,
        "doses": 1,
        "text": "Đã chọn: 1 người, 1 mũi",
    }
    refused = officer_client.post(
        "/signing/selection",
        data={"csrf_token": token, "shown": shown(bich), "dose": str(bich.doses[0].id)},
        headers=headers,
    )
    assert refused.status_code == 409
    payload = refused.get_json()
    assert payload["ok"] is False
    assert "Chưa thể chọn Trần Thị Bích: Chưa có số định danh" in payload["message"]
    assert payload["doses"] == 1


def test_a_crafted_dose_of_another_unit_is_refused_and_audited(
    officer_client: FlaskClient, session: Session, org: Seed
) -> None:
    other = add_person(session, org, "Lê Văn Bảo", facility=org.station_ben_thanh, doses=1)
    session.commit()
    token = csrf_token(officer_client, "/signing/")
    response = officer_client.post(
        "/signing/selection",
        data={"csrf_token": token, "dose": str(other.doses[0].id)},
        headers={"Accept": "application/json"},
    )
    assert response.status_code == 409
    assert "không thuộc phạm vi ký" in response.get_json()["message"]
    assert selected(session, org.officer) == set()
    session.expire_all()
    actions = session.scalars(select(AuditEvent.action)).all()
    assert "signing.selection_refused" in actions  # kept although the request failed
    response = officer_client.post(
        "/signing/selection/person",
        data={"csrf_token": token, "person_id": str(other.id)},
    )
    assert response.status_code == 302
    assert "không thuộc phạm vi ký" in page(officer_client)


def test_a_stale_page_cannot_tick_an_edited_dose(
    officer_client: FlaskClient, session: Session, org: Seed
) -> None:
    an = add_person(session, org, "Nguyễn Văn An", doses=1)
    session.commit()
    seen = shown(an)
    edit(session, an.doses[0])
    session.commit()
    officer_client.post(
        "/signing/selection",
        data={
            "csrf_token": csrf_token(officer_client, "/signing/"),
            "shown": seen,
            "dose": str(an.doses[0].id),
        },
    )
    assert selected(session, org.officer) == set()
    assert "vừa được sửa trong lúc bạn đang xem" in page(officer_client)


def test_edited_after_ticking_is_shown_unticked_with_a_note(
    officer_client: FlaskClient, session: Session, org: Seed
) -> None:
    an = add_person(session, org, "Nguyễn Văn An", doses=1)
    session.commit()
    officer_client.post(
        "/signing/selection",
        data={
            "csrf_token": csrf_token(officer_client, "/signing/"),
            "shown": shown(an),
            "dose": str(an.doses[0].id),
        },
    )
    edit(session, an.doses[0])
    session.commit()
    html = page(officer_client)
    assert "Hồ sơ đã được sửa sau khi bạn chọn" in html
    assert not re.search(rf'value="{an.doses[0].id}" data-shown="[^"]+" checked', html)


def test_tick_all_and_its_limit_message(
    officer_client: FlaskClient, session: Session, org: Seed
) -> None:
    bulk_people(session, org, 1001, doses=1)
    session.commit()
    token = csrf_token(officer_client, "/signing/")
    response = officer_client.post(
        "/signing/selection/search", data={"csrf_token": token, "next": "/signing/"}
    )
    assert response.status_code == 302
    html = page(officer_client)
    assert "Không thể chọn thêm 1.001 mũi của 1.001 người" in html
    assert "Đã chọn: 0 người, 0 mũi" in html
    # The form carries the search: narrowed, it fits.
    officer_client.post(
        "/signing/selection/search",
        data={"csrf_token": token, "name": "nguyen van binh 0"},
    )
    html = page(officer_client)
    assert "Đã chọn thêm 1.000 mũi." in html
    assert "Đã chọn: 1.000 người, 1.000 mũi" in html


def test_tick_all_with_an_unreadable_filter_is_refused_not_widened(
    officer_client: FlaskClient, session: Session, org: Seed
) -> None:
    add_person(session, org, "Nguyễn Văn An", doses=1)
    session.commit()
    response = officer_client.post(
        "/signing/selection/search",
        data={"csrf_token": csrf_token(officer_client, "/signing/"), "from": "hôm qua"},
        headers={"Accept": "application/json"},
    )
    assert response.status_code == 409
    assert "Không đọc được điều kiện tìm kiếm" in response.get_json()["message"]
    assert selected(session, org.officer) == set()


def test_select_search_form_carries_the_filters(
    officer_client: FlaskClient, session: Session, org: Seed
) -> None:
    add_person(session, org, "Nguyễn Văn An", doses=1)
    session.commit()
    html = page(officer_client, "/signing/?name=nguyen&from=2022-03-01&state=to_sign&mine=1")
    form = re.search(r'<form[^>]*action="/signing/selection/search".*?</form>', html, re.S)
    assert form is not None
    for name, value in (
        ("name", "nguyen"),
        ("from", "2022-03-01"),
        ("state", "to_sign"),
        ("mine", "1"),
    ):
        assert f'name="{name}" value="{value}"' in form.group(0)


def test_pages_link_to_each_other(
    officer_client: FlaskClient, app: Flask, session: Session, org: Seed
) -> None:
    app.config["PAGE_SIZE"] = 2
    bulk_people(session, org, 5)
    session.commit()
    first = page(officer_client, "/signing/?name=nguyen")
    assert "Tìm thấy 5 người." in first
    link = re.search(r'<a rel="next" href="([^"]+)"', first)
    assert link is not None
    second = page(officer_client, link.group(1).replace("&amp;", "&"))
    assert "Trang 2" in second
    assert "Tìm thấy 5 người." in second
    assert "Nguyễn Văn Bình 0002" in second
    assert "Nguyễn Văn Bình 0001" not in second
    back = re.search(r'<a rel="prev" href="([^"]+)"', second)
    assert back is not None
    again = page(officer_client, back.group(1).replace("&amp;", "&"))
    assert "Nguyễn Văn Bình 0000" in again
    assert "Nguyễn Văn Bình 0002" not in again
    assert 'rel="prev"' not in again


def test_bad_input_is_reported_not_crashed(
    officer_client: FlaskClient, session: Session, org: Seed
) -> None:
    html = page(officer_client, "/signing/?from=32/13/2022&status=zzz&after=garbage")
    assert "Tiêm từ ngày: ngày “32/13/2022” không hợp lệ" in html  # the one date message
    assert "không hợp lệ" in html
    html = page(officer_client, "/signing/?from=2022-04-01&to=2022-03-01")
    assert "Ngày bắt đầu (01/04/2022) sau ngày kết thúc (01/03/2022)" in html
    response = officer_client.post(
        "/signing/selection",
        data={
            "csrf_token": csrf_token(officer_client, "/signing/"),
            "shown": ["x:y:z", "1:2"],
            "dose": ["abc", "-1"],
        },
    )
    assert response.status_code == 302


def test_redirects_stay_on_the_signing_page(
    officer_client: FlaskClient, session: Session, org: Seed
) -> None:
    token = csrf_token(officer_client, "/signing/")
    for target in ("https://evil.example/", "//evil.example/x", "/users/", "javascript:x"):
        response = officer_client.post(
            "/signing/selection/clear", data={"csrf_token": token, "next": target}
        )
        assert response.headers["Location"] == "/signing/", target


def test_preview_page(officer_client: FlaskClient, session: Session, org: Seed) -> None:
    an = add_person(session, org, "Nguyễn Văn An", doses=2, first_dose=date(2022, 3, 1))
    binh = add_person(session, org, "Nguyễn Văn Bình", doses=1, first_dose=date(2022, 4, 2))
    session.commit()
    token = csrf_token(officer_client, "/signing/")
    officer_client.post("/signing/selection/search", data={"csrf_token": token})
    edit(session, binh.doses[0])
    session.commit()

    html = page(officer_client, "/signing/preview")
    assert "Xem danh sách trước khi ký" in html
    assert re.search(r'id="preview-people">1<', html)
    assert re.search(r'id="preview-doses">2<', html)
    assert "từ 01/03/2022 đến 29/03/2022" in html
    assert "Trạm Y tế Phường Bến Nghé" in html
    assert "Mũi 1 của Nguyễn Văn Bình đã được sửa sau khi bạn chọn" in html
    button = re.search(r'<button[^>]*id="sign-button"[^>]*>', html)
    assert button is not None
    assert "disabled" in button.group(0)
    assert "Kyso Agent" in html
    # Remove one dose from the preview.
    response = officer_client.post(
        "/signing/selection/remove",
        data={"csrf_token": token, "dose": str(an.doses[1].id), "next": "/signing/preview"},
    )
    assert response.headers["Location"] == "/signing/preview"
    assert selected(session, org.officer) == {an.doses[0].id}
    officer_client.post(
        "/signing/selection/remove", data={"csrf_token": token, "person": str(an.id)}
    )
    assert "Chưa chọn mũi tiêm nào" in page(officer_client, "/signing/preview")


def test_preview_pages(officer_client: FlaskClient, session: Session, org: Seed) -> None:
    ids = bulk_people(session, org, 230, doses=2)
    session.commit()
    token = csrf_token(officer_client, "/signing/")
    officer_client.post("/signing/selection/search", data={"csrf_token": token})

    html = page(officer_client, "/signing/preview")
    assert re.search(r'id="preview-people">230<', html)
    assert re.search(r'id="preview-doses">460<', html)
    assert html.count('<tbody class="person">') == 100
    assert "Nguyễn Văn Bình 0000" in html
    assert "Nguyễn Văn Bình 0100" not in html
    assert "Người thứ 1–100 trong 230 người" in html
    assert 'href="/signing/preview?page=2"' in html
    assert 'href="/signing/preview?page=3"' in html
    assert '<span aria-current="page">Trang 1</span>' in html

    last = page(officer_client, "/signing/preview?page=3")
    assert last.count('<tbody class="person">') == 30
    assert "Nguyễn Văn Bình 0200" in last
    assert "Người thứ 201–230 trong 230 người" in last
    assert 'rel="prev" href="/signing/preview?page=2"' in last
    assert 'rel="next"' not in last
    # Removing a person from a page comes back to that page.
    response = officer_client.post(
        "/signing/selection/remove",
        data={"csrf_token": token, "person": str(ids[229]), "next": "/signing/preview?page=3"},
    )
    assert response.headers["Location"] == "/signing/preview?page=3"
    assert "Người thứ 201–229 trong 229 người" in page(officer_client, "/signing/preview?page=3")
    # Unreadable or too large page numbers: the first page, the last page.
    assert "Người thứ 1–100 trong 229 người" in page(officer_client, "/signing/preview?page=x")
    assert "Người thứ 201–229" in page(officer_client, "/signing/preview?page=99")


def test_a_preview_of_one_page_has_no_pager(
    officer_client: FlaskClient, session: Session, org: Seed
) -> None:
    bulk_people(session, org, 100, doses=1)
    session.commit()
    token = csrf_token(officer_client, "/signing/")
    officer_client.post("/signing/selection/search", data={"csrf_token": token})
    html = page(officer_client, "/signing/preview")
    assert html.count('<tbody class="person">') == 100
    assert 'id="preview-pages"' not in html


def test_already_signed_dose_shows_as_signed(
    officer_client: FlaskClient, session: Session, org: Seed
) -> None:
    an = add_person(session, org, "Nguyễn Văn An", doses=2)
    sign(session, an.doses[0])
    sign(session, an.doses[1])
    edit(session, an.doses[1])
    session.commit()
    html = page(officer_client)
    assert "Đã ký" in html
    assert "Đã sửa sau khi ký — cần ký lại" in html
    assert html.count('name="shown"') == 1
    assert "Chưa ký hoặc cần ký lại" in html  # the filter's option


def test_english(officer_client: FlaskClient, session: Session, org: Seed) -> None:
    add_person(session, org, "Nguyễn Văn An", status=VerificationStatus.PENDING)
    session.commit()
    officer_client.get("/lang/en")
    html = page(officer_client)
    assert "Sign vaccination certificates" in html
    assert "Selected: 0 people, 0 doses" in html
    assert "Review list" in html
    assert "Not verified yet" in html
    assert "Đã chọn" not in html


def test_over_the_cap_the_page_offers_the_first_1000_people(
    officer_client: FlaskClient, session: Session, org: Seed
) -> None:
    # Issue 17: no more guessing date ranges over the 1,000-people cap.
    bulk_people(session, org, 1001, doses=1)
    session.commit()
    html = page(officer_client)
    assert "Chọn 1.000 người đầu tiên" in html
    response = officer_client.post(
        "/signing/selection/search",
        data={"csrf_token": csrf_token(officer_client, "/signing/"), "first": "1"},
    )
    assert response.status_code == 302
    assert len(selected(session, org.officer)) == 1000
    html = page(officer_client)
    assert "ký danh sách này rồi bấm lại" in html  # the flash says how to get the next ones
    assert "Chọn 1.000 người đầu tiên" not in html  # the batch is full: sign it first
