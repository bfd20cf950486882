"""The platform's authorization table: every route × actor × scope → what must happen.

One row (:class:`Rule`) per endpoint of the Flask URL map. ``tests/platform/test_authorization.py``
fails when an endpoint has no row, and requests every row as every actor against objects in every
scope of a seeded two-province dataset, asserting the outcome written here. The application
enforces the role part of the table itself (:func:`install`): before a view runs, an actor whose
cell is a plain ``LOGIN`` or ``FORBIDDEN`` is turned away, and an endpoint without a row is
refused (a new route is closed until someone writes its rule). Scope-dependent cells are enforced
by the services (``auth.access`` scopes, ``corrections.may_correct``, ``users.may_manage``, the
batch and feedback services); the test proves they agree with the table.

Format of a row::

    Rule(endpoint, methods, {actor: cell, ...}, target=..., scopes=(...), note=...)

- ``endpoint``: the Flask endpoint name (``blueprint.view``), ``methods`` the HTTP methods the
  row covers (POST rows are requested with a valid CSRF token and a deliberately incomplete
  form, so that an allowed request is refused by validation after the authorization checks and
  changes nothing).
- ``actor`` (:class:`Actor`): anonymous, facility staff, signing officer, central issuer,
  provincial administrator (``User.province_id`` set), national administrator. Every actor has a
  cell in every row.
- ``cell``: an :class:`Outcome`, the same whatever object the URL names; or a mapping
  scope → outcome for routes that name an object (``target``).
- ``target``: what the URL's id is (a person, a dose, a user, a certificate, a feedback report,
  a signing batch), or ``None`` for routes that name nothing.
- ``scopes`` (:class:`Scope`), where the named object lies *relative to the actor*:
  ``own_facility`` (the actor's facility; for an administrator a facility of their province),
  ``same_unit`` (another facility signed by the same signing unit), ``other_unit`` (a facility of
  another signing unit in the same province), ``other_province``, and ``self`` (the actor's own
  account, for user routes). For a signing batch the scope is its officer's: ``own_facility``
  is the actor's own batch. For a correction request the scope is the addressed signing
  unit's (``corrections.service.may_decide``).

Outcomes: ``ALLOWED`` (the view runs: 2xx, or the view's own redirect or validation answer),
``FORBIDDEN`` (403 with a page saying why), ``LOGIN`` (a redirect to the login page; on the
JSON API a JSON 401 saying to log in),
``HIDDEN`` (404: the object is not visible, its existence is not confirmed).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from flask import Flask, abort, request


class Outcome(enum.StrEnum):
    ALLOWED = "allowed"
    FORBIDDEN = "403"
    LOGIN = "login"
    HIDDEN = "404"


class Actor(enum.StrEnum):
    ANONYMOUS = "anonymous"
    FACILITY_STAFF = "facility_staff"
    SIGNING_OFFICER = "signing_officer"
    CENTRAL_ISSUER = "central_issuer"
    PROVINCIAL_ADMIN = "provincial_admin"
    NATIONAL_ADMIN = "national_admin"


class Scope(enum.StrEnum):
    OWN_FACILITY = "own_facility"
    SAME_UNIT = "same_unit"
    OTHER_UNIT = "other_unit"
    OTHER_PROVINCE = "other_province"
    SELF = "self"


class Target(enum.StrEnum):
    PERSON = "person"
    DOSE = "dose"
    USER = "user"
    CERTIFICATE = "certificate"  # a user's certificate: /users/<user_id>/certificates/<id>
    FEEDBACK = "feedback"
    BATCH = "batch"
    # A correction request, addressed to a signing unit (``CorrectionRequest.signing_unit_id``);
    # its scope is the addressed unit's relative to the actor (``own_facility``: the unit of the
    # actor's facility; ``same_unit``: the same unit, for a person of its other facility).
    REQUEST = "request"


Cell = Outcome | Mapping[Scope, Outcome]

A: Final = Outcome.ALLOWED
F: Final = Outcome.FORBIDDEN
L: Final = Outcome.LOGIN
H: Final = Outcome.HIDDEN

ORGANISATION: Final = (Scope.OWN_FACILITY, Scope.SAME_UNIT, Scope.OTHER_UNIT, Scope.OTHER_PROVINCE)
WITH_SELF: Final = (*ORGANISATION, Scope.SELF)


def _cells(**outcomes: Outcome) -> dict[Scope, Outcome]:
    return {Scope(name): outcome for name, outcome in outcomes.items()}


# The recurring scope patterns.
PROVINCE_ELSE_403: Final = _cells(own_facility=A, same_unit=A, other_unit=A, other_province=F)
PROVINCE_ELSE_404: Final = _cells(own_facility=A, same_unit=A, other_unit=A, other_province=H)
UNIT_ELSE_403: Final = _cells(own_facility=A, same_unit=A, other_unit=F, other_province=F)
FACILITY_ELSE_404: Final = _cells(own_facility=A, same_unit=H, other_unit=H, other_province=H)
OWN_ELSE_404: Final = FACILITY_ELSE_404


@dataclass(frozen=True)
class Rule:
    endpoint: str
    methods: tuple[str, ...]
    access: Mapping[Actor, Cell]
    target: Target | None = None
    scopes: tuple[Scope, ...] = ()
    note: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)  # fixed URL values (e.g. ``kind``)
    # The view answers 404 of its own for what it is asked (an unknown tracking code, an
    # installer not built): for such a public row ALLOWED also covers a 404.
    own_404: bool = False

    def outcome(self, actor: Actor, scope: Scope | None = None) -> Outcome:
        cell = self.access[actor]
        if isinstance(cell, Outcome):
            return cell
        if scope is None:
            raise KeyError(f"{self.endpoint}: {actor} needs a scope")
        return cell[scope]

    def gate(self, actor: Actor) -> Outcome | None:
        """The outcome for ``actor`` whatever the object (None: it depends on the scope)."""
        cell = self.access[actor]
        return cell if isinstance(cell, Outcome) else None


def public(
    endpoint: str, methods: tuple[str, ...], note: str, *, own_404: bool = False, **extra: Any
) -> Rule:
    """Anyone, logged in or not (citizen pages, login, static files)."""
    return Rule(endpoint, methods, dict.fromkeys(Actor, A), note=note, extra=extra, own_404=own_404)


def only(
    endpoint: str,
    methods: tuple[str, ...],
    allowed: Mapping[Actor, Cell],
    *,
    target: Target | None = None,
    scopes: tuple[Scope, ...] = (),
    note: str = "",
    **extra: Any,
) -> Rule:
    """The listed actors as given; anonymous to the login page, everyone else 403."""
    access: dict[Actor, Cell] = {a: F for a in Actor}
    access[Actor.ANONYMOUS] = L
    access.update(allowed)
    if target is not None and not scopes:
        scopes = ORGANISATION
    return Rule(endpoint, methods, access, target, scopes, note, extra)


LOGGED_IN: Final[Mapping[Actor, Cell]] = {a: A for a in Actor if a is not Actor.ANONYMOUS}
ADMINS: Final = (Actor.PROVINCIAL_ADMIN, Actor.NATIONAL_ADMIN)
RECORDERS: Final = (Actor.FACILITY_STAFF, *ADMINS)  # staff and administrators
OFFICER: Final = Actor.SIGNING_OFFICER
ISSUER: Final = Actor.CENTRAL_ISSUER
GET, POST, BOTH = ("GET",), ("POST",), ("GET", "POST")

# Users' pages: a user belongs to a province through their facility or signing unit; a
# provincial administrator does not see users of another province (404), others may only see
# themselves (their own id redirects to the profile).
_NOT_ADMIN_USERS: Final = {**dict.fromkeys(ORGANISATION, F), Scope.SELF: A}
_ADMIN_USERS: Final = {**PROVINCE_ELSE_404, Scope.SELF: A}
_NATIONAL_USERS: Final = dict.fromkeys(WITH_SELF, A)

RULES: Final[tuple[Rule, ...]] = (
    # --- public ---------------------------------------------------------------------------
    public("static", GET, "CSS, scripts, pictures", filename="style.css"),
    public("_switch_language", GET, "language choice, kept in the session", code="en"),
    public("ops.healthz", GET, "liveness for the load balancer; no data"),
    public("ops.readyz", GET, "readiness per check (503 when one fails); no personal data"),
    public("ops.metrics_page", GET, "Prometheus metrics (404 outside METRICS_ALLOW)"),
    Rule("auth.home", GET, {**LOGGED_IN, Actor.ANONYMOUS: L}, note="the actor's home page"),
    public("auth.login", BOTH, "the login form"),
    public("auth.logout", POST, "ends the session (CSRF-protected), then the login page"),
    public("batches.manifest_key", GET, "the manifest public key, for pairing the agent"),
    public(
        "downloads.agent_installer", GET, "the agent's installer (404: not built)", own_404=True
    ),
    public("feedback.form_page", BOTH, "citizen feedback form"),
    public("feedback.status_page", BOTH, "citizen: a report by code and phone", own_404=True),
    public("passport.lookup_page", BOTH, "citizen passport lookup"),
    public("passport.lookup_result", GET, "only the passport this session looked up"),
    public("passport.lookup_qr", GET, "only the passport this session looked up"),
    public("passport.lookup_pdf", GET, "only the passport this session looked up"),
    public("passport.verify_page", BOTH, "QR verifier"),
    public(
        "dcc_lists.revocation_index",
        GET,
        "signed revocation list for verifiers (404: no passport key configured)",
        own_404=True,
    ),
    public(
        "dcc_lists.revocation_batch",
        GET,
        "one signed revocation batch (404: unknown id)",
        own_404=True,
        batch_id="0" * 32,
    ),
    public(
        "dcc_lists.trust_list",
        GET,
        "signed signer trust list for verifiers (404: no passport key configured)",
        own_404=True,
    ),
    # --- users ------------------------------------------------------------------------------
    only("users.index", GET, LOGGED_IN, note="non-administrators are sent to their profile"),
    only("users.profile", GET, LOGGED_IN),
    only("users.change_password", POST, LOGGED_IN, note="the actor's own password only"),
    only(
        "users.detail",
        GET,
        {
            Actor.FACILITY_STAFF: _NOT_ADMIN_USERS,
            OFFICER: _NOT_ADMIN_USERS,
            ISSUER: _NOT_ADMIN_USERS,
            Actor.PROVINCIAL_ADMIN: _ADMIN_USERS,
            Actor.NATIONAL_ADMIN: _NATIONAL_USERS,
        },
        target=Target.USER,
        scopes=WITH_SELF,
    ),
    only("users.create", BOTH, dict.fromkeys(ADMINS, A), note="fields within the admin's scope"),
    only(
        "users.edit",
        GET,
        {Actor.PROVINCIAL_ADMIN: _ADMIN_USERS, Actor.NATIONAL_ADMIN: _NATIONAL_USERS},
        target=Target.USER,
        scopes=WITH_SELF,
    ),
    only(
        "users.edit",
        POST,
        {Actor.PROVINCIAL_ADMIN: PROVINCE_ELSE_404, Actor.NATIONAL_ADMIN: A},
        target=Target.USER,
    ),
    only(
        "users.reset_password",
        POST,
        {Actor.PROVINCIAL_ADMIN: PROVINCE_ELSE_404, Actor.NATIONAL_ADMIN: A},
        target=Target.USER,
    ),
    only(
        "users.certificate",
        BOTH,
        {Actor.PROVINCIAL_ADMIN: PROVINCE_ELSE_404, Actor.NATIONAL_ADMIN: A},
        target=Target.USER,
        note="Đăng ký chứng thư số, for officers the administrator manages",
    ),
    only(
        "users.compromise_certificate",
        POST,
        {Actor.PROVINCIAL_ADMIN: PROVINCE_ELSE_404, Actor.NATIONAL_ADMIN: A},
        target=Target.CERTIFICATE,
        note="Báo chứng thư số bị lộ, for officers the administrator manages",
    ),
    only(
        "users.deactivate_certificate",
        POST,
        {
            Actor.FACILITY_STAFF: _NOT_ADMIN_USERS,
            OFFICER: _NOT_ADMIN_USERS,
            ISSUER: _NOT_ADMIN_USERS,
            Actor.PROVINCIAL_ADMIN: _ADMIN_USERS,
            Actor.NATIONAL_ADMIN: _NATIONAL_USERS,
        },
        target=Target.CERTIFICATE,
        scopes=WITH_SELF,
        note="an officer their own certificate; administrators those they manage",
    ),
    only("users.audit", GET, dict.fromkeys(ADMINS, A), note="provincial: their province's"),
    only(
        "users.units",
        BOTH,
        dict.fromkeys(ADMINS, A),
        note="signing units and their tax code (MST); provincial: their province's units",
    ),
    # --- signing (officers only; batches are their officer's own) ---------------------------
    only("signing.search", GET, {OFFICER: A}, note="signable facilities only"),
    only("signing.preview", GET, {OFFICER: A}),
    only("signing.update_selection", POST, {OFFICER: A}),
    only("signing.person_selection", POST, {OFFICER: A}),
    only("signing.remove_from_selection", POST, {OFFICER: A}),
    only("signing.select_search", POST, {OFFICER: A}),
    only("signing.clear_selection", POST, {OFFICER: A}),
    only("batches.check_certificate", POST, {OFFICER: A}),
    only("batches.prepare_batch", POST, {OFFICER: A}),
    only("batches.batch_list", GET, {OFFICER: A}, note="the officer's own batches"),
    only("batches.batch_result", GET, {OFFICER: OWN_ELSE_404}, target=Target.BATCH),
    only("batches.new_attempt", POST, {OFFICER: OWN_ELSE_404}, target=Target.BATCH),
    only("batches.post_signatures", POST, {OFFICER: OWN_ELSE_404}, target=Target.BATCH),
    only("batches.complete_batch", POST, {OFFICER: OWN_ELSE_404}, target=Target.BATCH),
    # --- records: import, statistics, corrections ------------------------------------------
    only("records.import_page", BOTH, dict.fromkeys(RECORDERS, A), note="own facility/scope"),
    only("records.import_template", GET, dict.fromkeys(RECORDERS, A), kind="csv"),
    only("stats.invalid_list", GET, dict.fromkeys(RECORDERS, A), note="visible facilities"),
    only("stats.invalid_export", GET, dict.fromkeys(RECORDERS, A), note="visible facilities"),
    *(
        only(
            endpoint,
            methods,
            {
                # Staff correct records of their facility and of facilities sharing its unit.
                Actor.FACILITY_STAFF: UNIT_ELSE_403,
                Actor.PROVINCIAL_ADMIN: PROVINCE_ELSE_403,
                Actor.NATIONAL_ADMIN: A,
            },
            target=target,
        )
        for endpoint, methods, target in (
            ("corrections.person_page", GET, Target.PERSON),
            ("corrections.save_person", POST, Target.PERSON),
            ("corrections.verify", POST, Target.PERSON),
            ("corrections.save_dose", POST, Target.DOSE),
        )
    ),
    # --- correction requests: decided by the addressed signing unit (``may_decide``) ------
    only(
        "records.requests_page",
        GET,
        dict.fromkeys(RECORDERS, A),
        note="the pending requests the actor may decide",
    ),
    *(
        only(
            endpoint,
            POST,
            {
                # Staff of a facility of the addressed unit; administrators whose scope holds
                # one of its facilities. A refusal is a 403 from the view.
                Actor.FACILITY_STAFF: UNIT_ELSE_403,
                Actor.PROVINCIAL_ADMIN: PROVINCE_ELSE_403,
                Actor.NATIONAL_ADMIN: A,
            },
            target=Target.REQUEST,
        )
        for endpoint in ("records.accept_request", "records.reject_request")
    ),
    # --- citizen feedback: the inbox of the facility the report is routed to ---------------
    only("feedback.inbox", GET, dict.fromkeys(RECORDERS, A), note="visible facilities"),
    *(
        only(
            endpoint,
            methods,
            {
                Actor.FACILITY_STAFF: FACILITY_ELSE_404,
                Actor.PROVINCIAL_ADMIN: PROVINCE_ELSE_404,
                Actor.NATIONAL_ADMIN: A,
            },
            target=Target.FEEDBACK,
        )
        for endpoint, methods in (("feedback.detail", GET), ("feedback.answer", POST))
    ),
    # --- passports: the central issuer -----------------------------------------------------
    only("passport.issuer_page", GET, {ISSUER: A}),
    only("passport.issuer_run", POST, {ISSUER: A}),
    only("passport.issuer_retry", POST, {ISSUER: A}),
)


def rules_for(endpoint: str) -> list[Rule]:
    return [rule for rule in RULES if rule.endpoint == endpoint]


def rule_for(endpoint: str, method: str) -> Rule | None:
    method = "GET" if method == "HEAD" else method
    return next((r for r in RULES if r.endpoint == endpoint and method in r.methods), None)


def actor_of(user: Any) -> Actor:
    """The table's actor for a user (``None``: anonymous)."""
    if user is None:
        return Actor.ANONYMOUS
    from kyso.platform.models import Role

    if user.role is Role.ADMINISTRATOR:
        return Actor.NATIONAL_ADMIN if user.province_id is None else Actor.PROVINCIAL_ADMIN
    return Actor(user.role.value)


def install(app: Flask) -> None:
    """Enforce the table's role cells before every view; refuse endpoints without a row."""

    @app.before_request
    def _authorize() -> Any:
        endpoint = request.endpoint
        if endpoint is None or request.method == "OPTIONS":
            return None  # no route matched: the 404 / 405 handlers answer
        rule = rule_for(endpoint, request.method)
        if rule is None:
            app.logger.error("no authorization rule for %s %s", request.method, endpoint)
            abort(403)
        from kyso.platform.web import current_user

        gate = rule.gate(actor_of(current_user()))
        if gate is Outcome.LOGIN:
            from kyso.platform.web import to_login

            return to_login()
        if gate is Outcome.FORBIDDEN:
            abort(403)
        if gate is Outcome.HIDDEN:
            abort(404)
        return None
