"""backtests started through the API (POST /backtests): the table the runner queues them in

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05 20:30:00

Additive only: one new table.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import app.models.base

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'backtests',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('user_id', sa.Integer(), nullable=False),
        sa.Column('status', sa.String(length=10), nullable=False),
        sa.Column('symbols', sa.String(length=255), nullable=False),
        sa.Column('start', app.models.base.UTCDateTime(), nullable=False),
        sa.Column('end', app.models.base.UTCDateTime(), nullable=False),
        sa.Column('balance', app.models.base.Money(), nullable=False),
        sa.Column('config', sa.Text(), nullable=False),
        sa.Column('progress', sa.Float(), nullable=False),
        sa.Column('created_at', app.models.base.UTCDateTime(), nullable=False),
        sa.Column('started_at', app.models.base.UTCDateTime(), nullable=True),
        sa.Column('finished_at', app.models.base.UTCDateTime(), nullable=True),
        sa.Column('summary', sa.Text(), nullable=True),
        sa.Column('error', sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_backtests_user_id_users'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_backtests')),
    )
    op.create_index(op.f('ix_backtests_user_id'), 'backtests', ['user_id'], unique=False)
    op.create_index('ix_backtests_status_id', 'backtests', ['status', 'id'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_backtests_status_id', table_name='backtests')
    op.drop_index(op.f('ix_backtests_user_id'), table_name='backtests')
    op.drop_table('backtests')
