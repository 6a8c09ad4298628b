"""the decision log at scale: tallies per analysis, users' decision spans, paper account versions, the indexes
retention reads by

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05 18:00:00

Additive only: two new tables, a column with a default, and indexes.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import app.models.base

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'decision_tallies',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('analysis_id', sa.Integer(), nullable=False),
        sa.Column('decision', sa.String(length=10), nullable=False),
        sa.Column('reason', sa.String(length=64), nullable=False),
        sa.Column('count', sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(['analysis_id'], ['analyses.id'],
                                name=op.f('fk_decision_tallies_analysis_id_analyses'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_decision_tallies')),
    )
    with op.batch_alter_table('decision_tallies') as batch:
        batch.create_index(batch.f('ix_decision_tallies_analysis_id'), ['analysis_id'], unique=False)
    op.create_table(
        'decision_spans',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('user_id', sa.Integer(), nullable=False),
        sa.Column('analyzer', sa.String(length=16), nullable=False),
        sa.Column('symbols', sa.Text(), nullable=False),
        sa.Column('hours_start', sa.String(length=5), nullable=True),
        sa.Column('hours_end', sa.String(length=5), nullable=True),
        sa.Column('first_at', app.models.base.UTCDateTime(), nullable=False),
        sa.Column('last_at', app.models.base.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_decision_spans_user_id_users'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_decision_spans')),
    )
    with op.batch_alter_table('decision_spans') as batch:
        batch.create_index('ix_decision_spans_user_id_last_at', ['user_id', 'last_at'], unique=False)
        batch.create_index(batch.f('ix_decision_spans_last_at'), ['last_at'], unique=False)
    with op.batch_alter_table('sim_accounts') as batch:
        batch.add_column(sa.Column('version', sa.Integer(), nullable=False, server_default='0'))
    with op.batch_alter_table('analysis_decisions') as batch:
        batch.create_index(batch.f('ix_analysis_decisions_created_at'), ['created_at'], unique=False)
    with op.batch_alter_table('orders') as batch:
        batch.create_index(batch.f('ix_orders_analysis_id'), ['analysis_id'], unique=False)
    with op.batch_alter_table('trades') as batch:
        batch.create_index(batch.f('ix_trades_analysis_id'), ['analysis_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('trades') as batch:
        batch.drop_index(batch.f('ix_trades_analysis_id'))
    with op.batch_alter_table('orders') as batch:
        batch.drop_index(batch.f('ix_orders_analysis_id'))
    with op.batch_alter_table('analysis_decisions') as batch:
        batch.drop_index(batch.f('ix_analysis_decisions_created_at'))
    with op.batch_alter_table('sim_accounts') as batch:
        batch.drop_column('version')
    with op.batch_alter_table('decision_spans') as batch:
        batch.drop_index(batch.f('ix_decision_spans_last_at'))
        batch.drop_index('ix_decision_spans_user_id_last_at')
    op.drop_table('decision_spans')
    with op.batch_alter_table('decision_tallies') as batch:
        batch.drop_index(batch.f('ix_decision_tallies_analysis_id'))
    op.drop_table('decision_tallies')
