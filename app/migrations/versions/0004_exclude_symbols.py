"""symbols a user's top:N rule never picks

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-05 17:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('trading_configs') as batch:
        batch.add_column(sa.Column('exclude_symbols', sa.String(length=255), nullable=False, server_default=''))


def downgrade() -> None:
    with op.batch_alter_table('trading_configs') as batch:
        batch.drop_column('exclude_symbols')
