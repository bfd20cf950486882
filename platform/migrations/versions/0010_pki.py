"""pki: signing units' tax codes; certificates compromised from a date

Revision ID: 0010_pki
Revises: 0009_correction_requests

- signing_units.tax_code: the unit's tax code (mã số thuế); an officer's certificate signs for
  the unit only when its subject carries UID=MST:<tax code> and the unit's name as O;
- signing_certificates.compromised_from / compromised_source: the token is compromised from
  that time (set by an administrator, or the CA's revocation date): batches signed from then on
  are flagged and their doses are to be signed again.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010_pki"
down_revision = "0009_correction_requests"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("signing_units", schema=None) as batch_op:
        batch_op.add_column(sa.Column("tax_code", sa.String(length=20), nullable=True))
    with op.batch_alter_table("signing_certificates", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("compromised_from", sa.DateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(sa.Column("compromised_source", sa.String(length=16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("signing_certificates", schema=None) as batch_op:
        batch_op.drop_column("compromised_source")
        batch_op.drop_column("compromised_from")
    with op.batch_alter_table("signing_units", schema=None) as batch_op:
        batch_op.drop_column("tax_code")
