"""evidence: the validation data (OCSP responses, CRLs) each batch's signatures were accepted on

Revision ID: 0011_evidence
Revises: 0010_pki

- signing_evidence: per batch, each DER OCSP response or CRL used when its signatures were
  accepted (once per batch, by SHA-256), so that the CAdES-T signatures can be validated
  offline after the certificate expires (kyso-platform export-signed / verify-signed).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011_evidence"
down_revision = "0010_pki"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "signing_evidence",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("batch_id", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("der", sa.LargeBinary(), nullable=False),
        sa.Column("stored_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["batch_id"], ["signing_batches.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_signing_evidence_batch_digest",
        "signing_evidence",
        ["batch_id", "sha256"],
        unique=True,
    )


def downgrade() -> None:
    op.drop_index("ix_signing_evidence_batch_digest", table_name="signing_evidence")
    op.drop_table("signing_evidence")
