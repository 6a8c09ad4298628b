"""positions being closed, the exchange's execution time of orders, and orders looked up by trade

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-05 14:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import app.models.base

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('open_positions') as batch:
        batch.add_column(sa.Column('closing_reason', sa.String(length=16), nullable=True))
    with op.batch_alter_table('orders') as batch:
        batch.add_column(sa.Column('transact_time', app.models.base.UTCDateTime(), nullable=True))
    op.create_index(op.f('ix_orders_trade_id'), 'orders', ['trade_id'])


def downgrade() -> None:
    op.drop_index(op.f('ix_orders_trade_id'), table_name='orders')
    with op.batch_alter_table('orders') as batch:
        batch.drop_column('transact_time')
    with op.batch_alter_table('open_positions') as batch:
        batch.drop_column('closing_reason')
