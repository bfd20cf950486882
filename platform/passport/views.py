"""Passport pages: the central issuer's page, the citizen lookup, the verifier.

Thin: parse, call a service, render. ``/passports/issuer`` is for central issuers only;
``/passports/lookup`` and ``/passports/verify`` need no login (CSRF still applies to their
forms). After a successful lookup the session remembers the passport for ten minutes, for the
QR and PDF downloads.
"""

from __future__ import annotations

import time
from typing import Any

from flask import (
    Blueprint,
    Response,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from sqlalchemy.orm import joinedload

from kyso.platform.errors import DomainError
from kyso.platform.i18n import translate
from kyso.platform.models import Passport, Role
from kyso.platform.passport import (
    config,
    issuance,
    lookup,
    pictures,
    render,
    revocation,
    trustlist,
    verifier,
)
from kyso.platform.passport.render import FIELDS, field_values
from kyso.platform.web import current_user, db, language, roles_required

blueprint = Blueprint("passport", __name__, url_prefix="/passports")

PAGE_RUN_LIMIT = 1000  # the issuer page's button; the end-of-day run is the CLI
LOOKUP_SECONDS = 600


def _fields(dcc: dict[str, Any]) -> list[tuple[str, str, str]]:
    return [(vi, en, value) for (vi, en), value in zip(FIELDS, field_values(dcc), strict=True)]


# --- central issuer ---------------------------------------------------------------------------


@blueprint.get("/issuer")
@roles_required(Role.CENTRAL_ISSUER)
def issuer_page() -> Any:
    session_ = db()
    return render_template(
        "passport/issuer.html",
        counts=issuance.queue_counts(session_),
        runs=issuance.recent_runs(session_),
        errors=issuance.recent_errors(session_),
        limit=PAGE_RUN_LIMIT,
    )


@blueprint.post("/issuer/run")
@roles_required(Role.CENTRAL_ISSUER)
def issuer_run() -> Any:
    app = current_app
    user = current_user()
    try:
        signer = config.open_signer(app.config, app.extensions)
        context = config.issuance_context(app.config, app.instance_path, signer)
        summary = issuance.issue_passports(
            app.extensions["kyso.sessions"],
            context,
            worker=f"web:{user.username if user else '?'}",
            started_by=user,
            limit=PAGE_RUN_LIMIT,
        )
    except DomainError as exc:
        flash(exc.text(language()), "error")
    else:
        flash(
            translate(
                "passport.issuer_run_done",
                language(),
                run=summary.run_id,
                issued=summary.issued,
                covered=summary.covered,
                failed=summary.failed,
            ),
            "ok",
        )
    return redirect(url_for("passport.issuer_page"))


@blueprint.post("/issuer/retry")
@roles_required(Role.CENTRAL_ISSUER)
def issuer_retry() -> Any:
    session_ = db()
    count = issuance.retry_failed(session_, current_user())
    session_.commit()
    flash(translate("passport.issuer_retried", language(), count=count), "ok")
    return redirect(url_for("passport.issuer_page"))


# --- citizen lookup ---------------------------------------------------------------------------


@blueprint.route("/lookup", methods=["GET", "POST"])
def lookup_page() -> Any:
    if request.method == "GET":
        return render_template("passport/lookup.html", error=None, form={})
    form = request.form
    session_ = db()
    try:
        passport = lookup.find_passport(
            session_,
            identity_number=form.get("identity_number", ""),
            birth_date=form.get("birth_date", ""),
            phone_last4=form.get("phone_last4", ""),
            ip=request.remote_addr or "?",
        )
    except DomainError as exc:
        session_.commit()  # the attempt counts
        return (
            render_template(
                "passport/lookup.html",
                error=exc.text(language()),
                form={"identity_number": form.get("identity_number", "")},
            ),
            400 if exc.key == "passport.lookup_bad_input" else 200,
        )
    session_.commit()
    session["passport_lookup"] = {"id": passport.id, "until": time.time() + LOOKUP_SECONDS}
    return redirect(url_for("passport.lookup_result"))


def _looked_up(*, with_person: bool = False) -> Passport | None:
    remembered = session.get("passport_lookup")
    if not isinstance(remembered, dict) or remembered.get("until", 0) < time.time():
        return None
    # The result page names the person: loaded in the same query, not in a second one.
    options = [joinedload(Passport.person)] if with_person else []
    passport = db().get(Passport, remembered.get("id"), options=options)
    if passport is None or passport.superseded_at is not None:
        return None
    return passport


def _expired() -> Any:
    flash(translate("passport.lookup_expired_session", language()), "error")
    return redirect(url_for("passport.lookup_page"))


@blueprint.get("/lookup/result")
def lookup_result() -> Any:
    passport = _looked_up(with_person=True)
    if passport is None:
        return _expired()
    # The QR code is the download's PNG, fetched by the page's <img>: one encoding per visit,
    # in whichever worker serves it, instead of a second one inlined here.
    return render_template(
        "passport/lookup_result.html",
        passport=passport,
        fields=_fields(passport.dcc),
        name=passport.person.full_name,
    )


@blueprint.get("/lookup/qr.png")
def lookup_qr() -> Any:
    passport = _looked_up()
    if passport is None:
        return _expired()
    response = Response(render.qr_png(passport.payload, scale=8), mimetype="image/png")
    response.headers["Content-Disposition"] = 'attachment; filename="ho-chieu-vac-xin-qr.png"'
    response.headers["Cache-Control"] = "no-store"
    return response


@blueprint.get("/lookup/passport.pdf")
def lookup_pdf() -> Any:
    passport = _looked_up()
    if passport is None:
        return _expired()
    app = current_app
    try:
        signing = config.pdf_signing(app.config, app.extensions)
    except DomainError as exc:
        flash(exc.text(language()), "error")
        return redirect(url_for("passport.lookup_result"))
    document = render.PassportDocument(
        passport.dcc, passport.payload, passport.issued_at, passport.expires_at
    )
    font_dir = current_app.config.get("PASSPORT_FONT_DIR")
    try:
        signed = render.signed_passport_pdf(document, signing, font_dir=font_dir)
    except DomainError as exc:  # the TSA failed and KYSO_TSA_POLICY is hard
        flash(exc.text(language()), "error")
        return redirect(url_for("passport.lookup_result"))
    response = Response(signed, mimetype="application/pdf")
    response.headers["Content-Disposition"] = 'attachment; filename="ho-chieu-vac-xin.pdf"'
    response.headers["Cache-Control"] = "no-store"
    return response


# --- verifier ---------------------------------------------------------------------------------


@blueprint.route("/verify", methods=["GET", "POST"])
def verify_page() -> Any:
    if request.method == "GET":
        return render_template("passport/verify.html", result=None, fields=None, error=None)
    text = request.form.get("text", "").strip()
    picture = request.files.get("image")
    # One byte more than allowed: the size check refuses a larger file instead of cutting it.
    data = picture.read(pictures.MAX_PICTURE_BYTES + 1) if picture and picture.filename else b""
    if not text and not data:
        return render_template(
            "passport/verify.html",
            result=None,
            fields=None,
            error=translate("passport.verify_nothing", language()),
        ), 400
    signers = config.dsc_list(db(), current_app.config)
    revoked = revocation.platform_list(db())
    result = (
        verifier.verify(text, signers, revocations=revoked)
        if text
        else verifier.verify_image(data, signers, revocations=revoked)
    )
    fields = None
    if result.dcc is not None and result.dcc.get("v") and result.dcc.get("nam"):
        try:
            fields = _fields(result.dcc)
        except (KeyError, IndexError, TypeError):
            fields = None
    return render_template(
        "passport/verify.html",
        result=result,
        fields=fields,
        error=None,
    )


# --- signed lists for verifiers (well-known URLs) -------------------------------------------------

lists = Blueprint("dcc_lists", __name__, url_prefix="/.well-known/kyso/dcc")
LIST_MAX_AGE = 300  # verifiers may cache a list five minutes


def _signed(produce: Any) -> Any:
    """The list ``produce(session, signer)`` makes, as a JWS; 404 with the reason when this
    platform has no list signer (its passport key is not configured) or no such document."""
    app = current_app
    try:
        signer = config.list_signer(app.config, app.extensions)
    except DomainError as exc:
        return Response(exc.text(language()) + "\n", 404, mimetype="text/plain")
    body = produce(db(), signer)
    if body is None:
        return Response(translate("passport.list_no_batch", language()) + "\n", 404)
    response = Response(body, mimetype="application/jose")
    response.headers["Cache-Control"] = f"public, max-age={LIST_MAX_AGE}"
    return response


def _publication() -> revocation.Publication:
    found = current_app.extensions.get("kyso.revocation_publication")
    if found is None:
        found = current_app.extensions.setdefault(
            "kyso.revocation_publication", revocation.Publication(LIST_MAX_AGE)
        )
    assert isinstance(found, revocation.Publication)
    return found


@lists.get("/revocation-list")
def revocation_index() -> Any:
    return _signed(_publication().index)


@lists.get("/revocation-list/<batch_id>")
def revocation_batch(batch_id: str) -> Any:
    return _signed(lambda session_, signer: _publication().batch(session_, signer, batch_id))


@lists.get("/trust-list")
def trust_list() -> Any:
    return _signed(trustlist.signed_trust_list)
