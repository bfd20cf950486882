"""Column helpers every model module uses: timestamps in UTC, enums stored as their values."""

from __future__ import annotations

import enum
from datetime import UTC, datetime

from sqlalchemy import Enum


def utcnow() -> datetime:
    return datetime.now(UTC)


def db_enum(kind: type[enum.Enum], name: str) -> Enum:
    # Stored as the values (stable, readable in SQL), checked by a CHECK constraint.
    return Enum(
        kind,
        name=name,
        native_enum=False,
        values_callable=lambda members: [m.value for m in members],
        validate_strings=True,
        length=32,
    )
