"""officer session epoch: logging out ends every dashboard session of the officer

Revision ID: 0003_session_epoch
Revises: 0002
Create Date: 2026-11-25 13:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0003_session_epoch'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('officers') as batch:
        batch.add_column(sa.Column('session_epoch', sa.Integer(), nullable=False,
                                   server_default='0'))


def downgrade() -> None:
    with op.batch_alter_table('officers') as batch:
        batch.drop_column('session_epoch')
