"""a user's trades newest first straight from an index (GET /trading/trades reads only the page it returns)

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05 18:30:00

Additive only: one index.
"""

from __future__ import annotations

from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_trades_user_id_executed_at_id', 'trades', ['user_id', 'executed_at', 'id'])


def downgrade() -> None:
    op.drop_index('ix_trades_user_id_executed_at_id', table_name='trades')
