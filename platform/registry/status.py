"""Verification statuses in words, for the signing page, record pages and exports.

``status_text(status, detail, lang)`` turns a person's ``verification_status`` and
``verification_detail`` into one sentence ("Số định danh sai định dạng: mã tỉnh 099 …");
``status_hint`` says what the facility should do about it.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Any

from kyso.platform import formatting
from kyso.platform.i18n import translate
from kyso.platform.models.records import VerificationStatus
from kyso.platform.registry.identity import FormatRule

_MISMATCH_FIELDS = ("full_name", "birth_date", "gender")


def status_label(status: VerificationStatus | str, lang: str) -> str:
    """The status' name alone, e.g. "Đã xác minh"."""
    return translate(f"registry.status_{VerificationStatus(status).value}", lang)


def status_hint(status: VerificationStatus | str, lang: str) -> str | None:
    """What the facility should do about the status; None for VERIFIED."""
    value = VerificationStatus(status)
    if value is VerificationStatus.VERIFIED:
        return None
    return translate(f"registry.hint_{value.value}", lang)


def status_text(
    status: VerificationStatus | str, detail: Mapping[str, Any] | None, lang: str
) -> str:
    """The status and, when the detail says more, what exactly failed."""
    value = VerificationStatus(status)
    label = status_label(value, lang)
    explained = detail_text(value, detail, lang)
    if not explained:
        return label
    return translate("registry.with_detail", lang, status=label, detail=explained)


def detail_text(
    status: VerificationStatus | str, detail: Mapping[str, Any] | None, lang: str
) -> str | None:
    """What failed, without the status' name; None when there is nothing to add."""
    if not detail:
        return None
    value = VerificationStatus(status)
    if value is VerificationStatus.WRONG_FORMAT:
        return _rule_text(detail, lang)
    if value is VerificationStatus.MISMATCH:
        return _mismatch_text(detail, lang)
    return None


def _rule_text(detail: Mapping[str, Any], lang: str) -> str | None:
    try:
        rule = FormatRule(str(detail.get("rule")))
    except ValueError:
        return None
    values = {k: v for k, v in detail.items() if k != "rule" and v is not None}
    if rule is FormatRule.CENTURY_GENDER and detail.get("expected") is None:
        return translate("registry.rule_century_gender_out_of_range", lang)
    return translate(f"registry.rule_{rule.value}", lang, **values)


def _mismatch_text(detail: Mapping[str, Any], lang: str) -> str | None:
    fields = [f for f in detail.get("fields") or () if isinstance(f, str)]
    if "not_found" in fields:
        return translate("registry.not_found", lang)
    known = [f for f in _MISMATCH_FIELDS if f in fields]
    if not known:
        return None
    names = ", ".join(translate(f"registry.field_{f}", lang) for f in known)
    text = translate("registry.mismatch_fields", lang, fields=names)
    registry = detail.get("registry")
    if isinstance(registry, Mapping):
        shown = [_registry_value(f, registry.get(f), lang) for f in known]
        values = "; ".join(v for v in shown if v)
        if values:
            text += " — " + translate("registry.registry_has", lang, values=values)
    return text


def _registry_value(field: str, value: Any, lang: str) -> str | None:
    if not isinstance(value, str) or not value:
        return None
    shown = value
    if field == "birth_date":
        try:
            shown = formatting.day(date.fromisoformat(value))
        except ValueError:
            shown = value
    elif field == "gender" and value in ("male", "female"):
        shown = translate(f"registry.gender_{value}", lang)
    return f"{translate(f'registry.field_{field}', lang)} {shown}"
