"""engine_cycles: a cycle the leader publishes for `trdbot worker` processes (ENGINE_DECIDE_ON=workers)

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-12 10:00:00

Additive only: one table. The task queue's own schema (procrastinate's) is applied by the processes that use it, on
PostgreSQL only (app/workers.py), not here: the embedded SQLite default never needs it.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import app.models.base

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'engine_cycles',
        sa.Column('cycle_at', app.models.base.UTCDateTime(), nullable=False),
        sa.Column('payload', sa.LargeBinary(), nullable=False),
        sa.Column('created_at', app.models.base.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint('cycle_at'),
    )


def downgrade() -> None:
    op.drop_table('engine_cycles')
