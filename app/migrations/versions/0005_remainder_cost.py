"""the cost the books charged for a carried remainder

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-05 17:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import app.models.base

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('dust_balances') as batch:
        batch.add_column(sa.Column('cost', app.models.base.Money(), nullable=False, server_default='0'))


def downgrade() -> None:
    with op.batch_alter_table('dust_balances') as batch:
        batch.drop_column('cost')
