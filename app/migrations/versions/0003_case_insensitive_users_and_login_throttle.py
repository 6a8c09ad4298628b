"""usernames and emails unique whatever their case; login throttle counters per username and per client address

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-05 15:00:00

Stops, naming the accounts, when existing usernames or emails differ only in case: an administrator must rename
one of each pair (UPDATE users SET username = ... WHERE id = ...) before upgrading. The old throttle table held
only short-lived lockouts; it is replaced, not converted.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def _clashes(column: str) -> list[str]:
    rows = op.get_bind().execute(sa.text(
        f"SELECT lower({column}) AS folded, id, {column} AS value FROM users WHERE lower({column}) IN "
        f"(SELECT lower({column}) FROM users GROUP BY lower({column}) HAVING count(*) > 1) ORDER BY folded, id"
    )).all()
    groups: dict[str, list[str]] = {}
    for row in rows:
        groups.setdefault(row.folded, []).append(f"id {row.id} {row.value!r}")
    return [f"{column} {folded!r}: {', '.join(members)}" for folded, members in groups.items()]


def upgrade() -> None:
    clashes = _clashes('username') + _clashes('email')
    if clashes:
        raise RuntimeError(
            "migration 0003 makes usernames and emails unique whatever their case, but these accounts differ only "
            "in case; rename one of each group, then upgrade again:\n  " + "\n  ".join(clashes)
        )
    op.create_index('uq_users_username_lower', 'users', [sa.text('lower(username)')], unique=True)
    op.create_index('uq_users_email_lower', 'users', [sa.text('lower(email)')], unique=True)
    op.drop_table('login_throttle')
    op.create_table(
        'login_throttle',
        sa.Column('key', sa.String(length=128), nullable=False),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('window_start_ms', sa.BigInteger(), nullable=False),
        sa.Column('last_attempt_ms', sa.BigInteger(), nullable=False),
        sa.Column('blocked_until_ms', sa.BigInteger(), nullable=False),
        sa.Column('backoff_ms', sa.BigInteger(), nullable=False),
        sa.Column('allowed', sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint('key', name=op.f('pk_login_throttle')),
    )
    op.create_index(op.f('ix_login_throttle_last_attempt_ms'), 'login_throttle', ['last_attempt_ms'])


def downgrade() -> None:
    op.drop_index(op.f('ix_login_throttle_last_attempt_ms'), table_name='login_throttle')
    op.drop_table('login_throttle')
    op.create_table(
        'login_throttle',
        sa.Column('username', sa.String(length=64), nullable=False),
        sa.Column('failures', sa.Integer(), nullable=False),
        sa.Column('window_start', sa.DateTime(), nullable=False),
        sa.Column('locked_until', sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint('username', name=op.f('pk_login_throttle')),
    )
    op.drop_index('uq_users_email_lower', table_name='users')
    op.drop_index('uq_users_username_lower', table_name='users')
