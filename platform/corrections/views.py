"""Correcting one record: the person's page, saving a person or a dose, re-verifying now.

Thin: parse, call ``corrections.service``, render. The pages keep their ``/stats/...``
addresses (the invalid-people list links to them, and bookmarks and feedback links exist).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from sqlalchemy import select

from kyso.platform.corrections import service as corrections
from kyso.platform.errors import DomainError
from kyso.platform.i18n import translate
from kyso.platform.inputs import DateInvalid, is_number, parse_date, parse_number
from kyso.platform.models import (
    Area,
    CorrectionRequest,
    Dose,
    Feedback,
    Gender,
    Person,
    Role,
    SigningUnit,
    User,
    VaccineProduct,
)
from kyso.platform.records.rules import InvalidRecord
from kyso.platform.records.service import (
    DoseData,
    PersonData,
    foreign_signing_units,
    importable_facilities,
    keeps_person,
    may_record_at,
    own_doses,
)
from kyso.platform.registry.client import PopulationRegistry, load_registry
from kyso.platform.registry.status import status_hint, status_text
from kyso.platform.web import current_user, db, forbidden, language, roles_required

blueprint = Blueprint("corrections", __name__, url_prefix="/stats")

ROLES = (Role.FACILITY_STAFF, Role.ADMINISTRATOR)
INTERACTIVE_TIMEOUT = 5.0  # seconds a person waits for one registry lookup on the page


def _user() -> User:
    user = current_user()
    assert user is not None
    return user


# --- one record: correct, re-verify ------------------------------------------------------------


def _person_or_404(person_id: int) -> Person:
    person = db().get(Person, person_id)
    if person is None:
        abort(404)
    try:
        corrections.require_access(db(), _user(), person)
    except DomainError as exc:
        abort(forbidden(exc))
    return person


def _feedback(person: Person) -> Feedback | None:
    raw = request.values.get("feedback", "")
    if not is_number(raw):
        return None
    feedback = db().get(Feedback, int(raw))
    if feedback is None or feedback.person_id != person.id:
        return None
    return feedback


def _area_choices(person: Person) -> list[Area]:
    area = db().get(Area, person.area_id) if person.area_id else None
    parent = area.parent_id if area is not None else None
    if parent is None:
        return [area] if area is not None else []
    return list(db().scalars(select(Area).where(Area.parent_id == parent).order_by(Area.name)))


@blueprint.get("/people/<int:person_id>")
@roles_required(*ROLES)
def person_page(person_id: int) -> Any:
    return _render_person(person_id)


def _render_person(person_id: int, kept: dict[str, Any] | None = None, status: int = 200) -> Any:
    """The record page; ``kept`` refills the form the officer just sent when it was refused
    (``{"person": form}`` or ``{"dose_id": id, "dose": form}``), so nothing typed is lost."""
    lang = language()
    person = _person_or_404(person_id)
    user = _user()
    feedback = _feedback(person)
    facilities = {f.id: f for f in importable_facilities(db(), user)}
    # Only this user's doses: another signing unit's doses are neither shown nor editable.
    doses = own_doses(db(), user, person)
    for dose in doses:
        facilities.setdefault(dose.facility_id, dose.facility)
    editable = {dose.id: may_record_at(db(), user, dose.facility) for dose in doses}
    history = corrections.visible_history(db(), user, person)
    authors = {
        u.id: u.full_name
        for u in db().scalars(
            select(User).where(User.id.in_({v.user_id for v in history if v.user_id}))
        )
    }
    feedback_codes = {
        f.id: f.tracking_code
        for f in db().scalars(
            select(Feedback).where(
                Feedback.id.in_({v.feedback_id for v in history if v.feedback_id})
            )
        )
    }
    return render_template(
        "corrections/person.html",
        person=person,
        doses=doses,
        shared=not keeps_person(db(), user, person),
        signed_elsewhere=bool(foreign_signing_units(db(), user, person)),
        feedback=feedback,
        status=status_text(person.verification_status, person.verification_detail, lang),
        hint=status_hint(person.verification_status, lang),
        products=list(db().scalars(select(VaccineProduct).order_by(VaccineProduct.name))),
        facilities=sorted(facilities.values(), key=lambda f: f.code),
        editable=editable,
        areas=_area_choices(person),
        history=history,
        authors=authors,
        feedback_codes=feedback_codes,
        field_names=lambda names: ", ".join(_field_name(n, lang) for n in names),
        kept=kept or {},
    ), status


def _field_name(name: str, lang: str) -> str:
    key = {
        "area_id": "records.column_area",
        "product_id": "records.column_product",
        "facility_id": "records.column_facility",
    }.get(name, f"records.column_{name}")
    try:
        return translate(key, lang)
    except KeyError:
        return name


def _int(text: str | None) -> int | None:
    text = (text or "").strip()
    return parse_number(text)


def _flash_error(exc: DomainError) -> None:
    lang = language()
    if isinstance(exc, InvalidRecord):
        for problem in exc.problems:
            flash(translate(problem.key, lang, **problem.values), "error")
    else:
        flash(exc.text(lang), "error")


def _refused_person(person: Person, form: Any) -> Any:
    return _render_person(person.id, {"person": form.to_dict()})


def _refused_dose(person: Person, dose: Dose, form: Any) -> Any:
    return _render_person(person.id, {"dose_id": dose.id, "dose": form.to_dict()})


def _back(person: Person, feedback: Feedback | None) -> Any:
    args: dict[str, Any] = {"feedback": feedback.id} if feedback else {}
    return redirect(url_for("corrections.person_page", person_id=person.id, **args))


def registry_for_app() -> PopulationRegistry:
    """The configured population registry, with a short timeout for a person waiting."""
    config: dict[str, Any] = dict(current_app.config)
    config["REGISTRY_TIMEOUT"] = min(
        float(config.get("REGISTRY_TIMEOUT") or INTERACTIVE_TIMEOUT), INTERACTIVE_TIMEOUT
    )
    api_key = config.get("REGISTRY_API_KEY")
    return load_registry(config, str(api_key) if api_key else None)


def _verify(person: Person) -> None:
    """Check the person now and flash the outcome; commits."""
    lang = language()
    registry = registry_for_app()
    try:
        outcome = corrections.verify_person_now(
            db(), person, registry, _user(), ip=request.remote_addr
        )
    finally:
        close: Callable[[], None] | None = getattr(registry, "close", None)
        if close is not None:
            close()
    db().commit()
    text = translate(
        outcome.message_key,
        lang,
        status=status_text(outcome.status, outcome.detail, lang),
        reason=outcome.reason or "",
    )
    flash(text, "success" if outcome.result is corrections.VerifyResult.VERIFIED else "error")


def _save(
    person: Person,
    feedback: Feedback | None,
    apply: Callable[[], corrections.Correction | CorrectionRequest | None],
    *,
    refused: Callable[[], Any],
    saved: Callable[[], str],
) -> Any:
    """Apply one correction from a form: refused, the page again with what was typed; else
    committed, the outcome flashed (unchanged, a request to another unit, or saved), the
    person re-verified at once when an identity field changed."""
    lang = language()
    try:
        correction = apply()
    except DomainError as exc:
        db().rollback()
        _flash_error(exc)
        return refused()
    db().commit()
    if correction is None:
        flash(translate("corrections.unchanged", lang), "success")
    elif isinstance(correction, CorrectionRequest):
        unit = db().get(SigningUnit, correction.signing_unit_id)
        flash(
            translate("corrections.request_sent", lang, unit=unit.name if unit else ""), "success"
        )
    else:
        flash(saved(), "success")
        if correction.reverify:
            _verify(person)
    return _back(person, feedback)


@blueprint.post("/people/<int:person_id>/person")
@roles_required(*ROLES)
def save_person(person_id: int) -> Any:
    lang = language()
    person = _person_or_404(person_id)
    feedback = _feedback(person)
    form = request.form
    try:
        born = parse_date(form.get("birth_date", ""), "records.column_birth_date")
    except DateInvalid as invalid:
        flash(invalid.text(lang), "error")
        return _refused_person(person, form)
    try:
        gender = Gender(form.get("gender", ""))
    except ValueError:
        gender = None
    area_id = _int(form.get("area_id"))
    area_code = form.get("area_code", "").strip()[:16]
    if area_code:
        area_id = db().scalar(select(Area.id).where(Area.code == area_code))
        if area_id is None:
            flash(translate("stats.area_unknown", lang, code=area_code), "error")
            return _refused_person(person, form)
    if born is None or gender is None:
        missing = "records.column_birth_date" if born is None else "records.column_gender"
        flash(translate("stats.bad_form", lang, field=translate(missing, lang)), "error")
        return _refused_person(person, form)
    data = PersonData(
        full_name=form.get("full_name", ""),
        birth_date=born,
        gender=gender,
        identity_number=form.get("identity_number") or None,
        phone=form.get("phone") or None,
        address=form.get("address") or None,
        area_id=area_id,
    )
    return _save(
        person,
        feedback,
        lambda: corrections.submit_person_correction(
            db(),
            person,
            data,
            _user(),
            reason=form.get("reason", ""),
            feedback=feedback,
            expected_version=_int(form.get("version")),
            ip=request.remote_addr,
        ),
        refused=lambda: _refused_person(person, form),
        saved=lambda: translate("corrections.saved_person", language(), version=person.version),
    )


@blueprint.post("/doses/<int:dose_id>")
@roles_required(*ROLES)
def save_dose(dose_id: int) -> Any:
    lang = language()
    dose = db().get(Dose, dose_id)
    if dose is None:
        abort(404)
    person = _person_or_404(dose.person_id)
    feedback = _feedback(person)
    form = request.form
    number = _int(form.get("dose_number"))
    try:
        when = parse_date(form.get("vaccinated_on", ""), "records.column_vaccinated_on")
    except DateInvalid as invalid:
        flash(invalid.text(lang), "error")
        return _refused_dose(person, dose, form)
    product_id = _int(form.get("product_id"))
    facility_id = _int(form.get("facility_id"))
    if number is None or when is None or product_id is None or facility_id is None:
        missing = (
            "records.column_dose_number"
            if number is None
            else "records.column_vaccinated_on"
            if when is None
            else "records.column_product"
            if product_id is None
            else "records.column_facility"
        )
        flash(translate("stats.bad_form", lang, field=translate(missing, lang)), "error")
        return _refused_dose(person, dose, form)
    data = DoseData(
        dose_number=number,
        vaccinated_on=when,
        product_id=product_id,
        lot=form.get("lot", ""),
        facility_id=facility_id,
    )
    return _save(
        person,
        feedback,
        lambda: corrections.correct(
            db(),
            dose,
            data,
            _user(),
            reason=form.get("reason", ""),
            feedback=feedback,
            expected_version=_int(form.get("version")),
            ip=request.remote_addr,
        ),
        refused=lambda: _refused_dose(person, dose, form),
        saved=lambda: translate(
            "corrections.saved_dose", language(), number=dose.dose_number, version=dose.version
        ),
    )


@blueprint.post("/people/<int:person_id>/verify")
@roles_required(*ROLES)
def verify(person_id: int) -> Any:
    person = _person_or_404(person_id)
    _verify(person)
    return _back(person, _feedback(person))
