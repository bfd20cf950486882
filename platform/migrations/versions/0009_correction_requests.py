"""correction_requests: a change that would supersede another signing unit's signature

Revision ID: 0009_correction_requests
Revises: 0008_sessions
Create Date: 2026-12-04 15:26:11.439922

A facility that recorded a dose for a person another signing unit signed does not correct the
person's data itself: the change is stored here, addressed to that unit, which accepts or
rejects it.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009_correction_requests"
down_revision = "0008_sessions"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "correction_requests",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("person_id", sa.Integer(), nullable=False),
        sa.Column("signing_unit_id", sa.Integer(), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "pending",
                "accepted",
                "rejected",
                name="correction_request_status",
                native_enum=False,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("changes", sa.JSON(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("person_version", sa.Integer(), nullable=False),
        sa.Column("consented_units", sa.JSON(), nullable=False),
        sa.Column("requested_by_id", sa.Integer(), nullable=True),
        sa.Column("requested_by_facility_id", sa.Integer(), nullable=True),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decided_by_id", sa.Integer(), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("decision_reason", sa.Text(), nullable=True),
        sa.Column("record_version_id", sa.Integer(), nullable=True),
        sa.Column("forwarded_to_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["decided_by_id"], ["users.id"], name=op.f("fk_correction_requests_decided_by_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["forwarded_to_id"],
            ["correction_requests.id"],
            name=op.f("fk_correction_requests_forwarded_to_id_correction_requests"),
        ),
        sa.ForeignKeyConstraint(
            ["person_id"], ["people.id"], name=op.f("fk_correction_requests_person_id_people")
        ),
        sa.ForeignKeyConstraint(
            ["record_version_id"],
            ["record_versions.id"],
            name=op.f("fk_correction_requests_record_version_id_record_versions"),
        ),
        sa.ForeignKeyConstraint(
            ["requested_by_facility_id"],
            ["facilities.id"],
            name=op.f("fk_correction_requests_requested_by_facility_id_facilities"),
        ),
        sa.ForeignKeyConstraint(
            ["requested_by_id"],
            ["users.id"],
            name=op.f("fk_correction_requests_requested_by_id_users"),
        ),
        sa.ForeignKeyConstraint(
            ["signing_unit_id"],
            ["signing_units.id"],
            name=op.f("fk_correction_requests_signing_unit_id_signing_units"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_correction_requests")),
    )
    with op.batch_alter_table("correction_requests", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_correction_requests_person_id"), ["person_id"], unique=False
        )
        batch_op.create_index(
            "ix_correction_requests_unit_status", ["signing_unit_id", "status", "id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("correction_requests", schema=None) as batch_op:
        batch_op.drop_index("ix_correction_requests_unit_status")
        batch_op.drop_index(batch_op.f("ix_correction_requests_person_id"))

    op.drop_table("correction_requests")
