"""Signing a batch: the JSON API the signing page's script uses, and the result pages.

Thin: parse the request, call ``batches``, answer. The API is documented in
``platform/signing/README.md``; every error is ``{"error": KEY, "message": TEXT}`` in the
officer's language with a 4xx status, so the page can show it as it is.
"""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, datetime
from typing import Any

from flask import (
    Blueprint,
    abort,
    current_app,
    jsonify,
    render_template,
    request,
    url_for,
)

from kyso.platform.errors import DomainError
from kyso.platform.models import BatchStatus, Role, User
from kyso.platform.signing import batches, revocation
from kyso.platform.signing.texts import count_text, sign_page_texts
from kyso.platform.signing.wiring import manifest_signer, signing_context
from kyso.platform.users.service import active_certificate
from kyso.platform.web import current_user, db, language, roles_required

blueprint = Blueprint("batches", __name__)

MIN_AGENT_VERSION = 1
MAX_SIGNATURES_PER_POST = 500


def _officer() -> User:
    user = current_user()
    assert user is not None  # roles_required ran first
    return user


def _error(exc: DomainError, status: int = 400) -> tuple[Any, int]:
    return jsonify(error=exc.key, message=exc.text(language())), status


def _body() -> dict[str, Any]:
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        raise DomainError("batches.bad_request")
    return data


def _b64(value: Any, *, limit: int = 16384) -> bytes:
    if not isinstance(value, str) or len(value) > limit:
        raise DomainError("batches.bad_request")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise DomainError("batches.bad_request") from None


def _undo_unless_kept(session: Any, exc: DomainError) -> None:
    """Rolls back a refused request, unless the refusal recorded something (a revocation)."""
    if getattr(exc, "persist", False):
        session.commit()
    else:
        session.rollback()


def sign_config(officer: User, mode: str, batch_id: str | None = None) -> dict[str, Any]:
    """What the signing page's script needs (rendered as JSON by signing/_sign_box.html)."""
    registration = active_certificate(db(), officer)
    lang = language()
    return {
        "mode": mode,
        "api_base": url_for("batches.prepare_batch").rsplit("/", 1)[0],
        "batch": batch_id,
        "registered_serial": registration.serial_hex if registration else None,
        "agent_port": int(current_app.config["AGENT_PORT"]),
        "min_version": MIN_AGENT_VERSION,
        "installer_url": current_app.config["AGENT_INSTALLER_URL"]
        or url_for("downloads.agent_installer"),
        "language": lang,
        "texts": sign_page_texts(lang),
    }


# --- JSON API ----------------------------------------------------------------------------------


@blueprint.post("/signing/api/certificate")
@roles_required(Role.SIGNING_OFFICER)
def check_certificate() -> Any:
    """Is this certificate (read from the token by the page) the one to sign with?"""
    session = db()
    try:
        der = _b64(_body().get("der"))
        checked = batches.inspect_certificate(session, _officer(), der, signing_context())
    except DomainError as exc:
        _undo_unless_kept(session, exc)
        return _error(exc)
    return jsonify(
        ok=True,
        fingerprint=checked.fingerprint,
        algorithm=checked.algorithm,
        subject=checked.subject,
        serial=checked.serial_hex,
        not_after=checked.not_after.isoformat(),
    )


@blueprint.post("/signing/api/batches")
@roles_required(Role.SIGNING_OFFICER)
def prepare_batch() -> Any:
    session = db()
    officer = _officer()
    lang = language()
    try:
        der = _b64(_body().get("der"))
        prepared = batches.prepare(session, officer, der, signing_context())
    except DomainError as exc:
        _undo_unless_kept(session, exc)
        return _error(exc)
    session.commit()
    return jsonify(
        batch=prepared.batch_id,
        total=prepared.total,
        people=prepared.people,
        attempt=prepared.attempt.as_json(),
        dropped=[d.text(lang) for d in prepared.dropped],
        result_url=url_for("batches.batch_result", batch_id=prepared.batch_id),
    )


@blueprint.post("/signing/api/batches/<batch_id>/attempts")
@roles_required(Role.SIGNING_OFFICER)
def new_attempt(batch_id: str) -> Any:
    session = db()
    try:
        der = _b64(_body().get("der"))
        attempt = batches.new_attempt(session, _officer(), batch_id, der, signing_context())
    except DomainError as exc:
        session.commit()  # records found stale on the way are rejected for good
        return _error(exc, 404 if exc.key == "batches.not_found" else 400)
    session.commit()
    return jsonify(attempt=attempt.as_json())


@blueprint.post("/signing/api/batches/<batch_id>/signatures")
@roles_required(Role.SIGNING_OFFICER)
def post_signatures(batch_id: str) -> Any:
    session = db()
    lang = language()
    try:
        body = _body()
        attempt = body.get("attempt")
        offset = body.get("offset")
        raw = body.get("signatures")
        if (
            not isinstance(attempt, str)
            or not isinstance(offset, int)
            or isinstance(offset, bool)
            or not isinstance(raw, list)
            or not 0 < len(raw) <= MAX_SIGNATURES_PER_POST
        ):
            raise DomainError("batches.bad_request")
        signatures = [_b64(s, limit=1024) for s in raw]
        progress = batches.accept_signatures(
            session, _officer(), batch_id, attempt, offset, signatures, context=signing_context()
        )
    except DomainError as exc:
        session.rollback()
        return _error(exc, 404 if exc.key == "batches.not_found" else 400)
    session.commit()
    return jsonify(_progress_json(progress, lang))


@blueprint.post("/signing/api/batches/<batch_id>/complete")
@roles_required(Role.SIGNING_OFFICER)
def complete_batch(batch_id: str) -> Any:
    session = db()
    try:
        progress = batches.complete(session, _officer(), batch_id)
    except DomainError as exc:
        session.rollback()
        return _error(exc, 404)
    session.commit()
    return jsonify(_progress_json(progress, language()))


def _progress_json(progress: batches.Progress, lang: str) -> dict[str, Any]:
    return {
        "batch": progress.batch_id,
        "status": progress.status.value,
        "signed": progress.signed,
        "rejected": progress.rejected,
        "pending": progress.pending,
        "total": progress.total,
        "rejections": [
            {
                "position": r.position,
                "reason": r.reason.value,
                "message": batches.reason_text(r.reason, lang),
            }
            for r in progress.rejections
        ],
        "result_url": url_for("batches.batch_result", batch_id=progress.batch_id),
    }


# --- pages -------------------------------------------------------------------------------------


@blueprint.get("/signing/batches")
@roles_required(Role.SIGNING_OFFICER)
def batch_list() -> Any:
    session = db()
    listed = batches.recent_batches(session, _officer())
    session.commit()  # batches found finished are completed
    return render_template(
        "signing/batches.html",
        batches=listed,
        flagged=revocation.flagged(session, [b.id for b in listed]),
        count_text=count_text,
        lang=language(),
    )


@blueprint.get("/signing/batches/<batch_id>")
@roles_required(Role.SIGNING_OFFICER)
def batch_result(batch_id: str) -> Any:
    officer = _officer()
    session = db()
    try:
        outcome = batches.result(session, officer, batch_id)
    except DomainError:
        abort(404)
    session.commit()  # a batch found finished is completed
    batch = outcome.batch
    resumable = batch.status is BatchStatus.OPEN and batch.pending > 0
    return render_template(
        "signing/batch.html",
        result=outcome,
        batch=batch,
        resumable=resumable,
        sign_config=sign_config(officer, "resume", batch.id) if resumable else None,
        count_text=count_text,
        lang=language(),
    )


@blueprint.get("/.well-known/kyso/manifest-key.pem")
def manifest_key() -> Any:
    """The platform's manifest public key, for administrators and for the agent's pairing."""
    return current_app.response_class(
        manifest_signer(current_app).public_pem, mimetype="application/x-pem-file"
    )


def signing_page_config() -> dict[str, Any]:
    """Template globals (a context processor, registered by ``create_app``)."""
    values: dict[str, Any] = {}
    if request.endpoint not in ("signing.search", "signing.preview"):
        return values
    user = current_user()
    if user is None or user.role is not Role.SIGNING_OFFICER:
        return values
    # The preview page ("Xem danh sách") carries the Sign button.
    if request.endpoint == "signing.preview":
        values["sign_config"] = sign_config(user, "prepare")
    # The signing pages warn of the registered certificate's coming expiry.
    values["certificate_expiry"] = revocation.expiry_warning(
        active_certificate(db(), user),
        datetime.now(UTC),
        int(current_app.config.get("CERTIFICATE_EXPIRY_WARNING_DAYS", 30)),
    )
    return values
