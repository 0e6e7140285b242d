"""operations: alert rules, routing matrix, alerts, notification outbox and attempts, run scores,
signal weights, table freshness

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-05 09:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import lakehouse.store.types

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('alert_rules',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('workspace_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('severity', sa.String(length=16), nullable=False),
    sa.Column('environment', sa.String(length=32), nullable=True),
    sa.Column('job', sa.String(length=64), nullable=True),
    sa.Column('pipeline', sa.String(length=200), nullable=True),
    sa.Column('team', sa.String(length=64), nullable=True),
    sa.Column('params', lakehouse.store.types.JSONDoc(), nullable=False),
    sa.Column('window_s', sa.Float(), nullable=False),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('created_by', sa.String(length=100), nullable=False),
    sa.Column('created_at', lakehouse.store.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', lakehouse.store.types.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['workspace_id'], ['workspaces.id'],
        name=op.f('fk_alert_rules_workspace_id_workspaces'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_alert_rules')),
    sa.UniqueConstraint('workspace_id', 'name', name='uq_alert_rules_workspace_name')
    )
    op.create_table('signal_weights',
    sa.Column('workspace_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('weights', lakehouse.store.types.JSONDoc(), nullable=False),
    sa.Column('updated_by', sa.String(length=100), nullable=False),
    sa.Column('updated_at', lakehouse.store.types.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['workspace_id'], ['workspaces.id'],
        name=op.f('fk_signal_weights_workspace_id_workspaces'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('workspace_id', name=op.f('pk_signal_weights'))
    )
    op.create_table('table_freshness',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('workspace_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('environment', sa.String(length=32), nullable=False),
    sa.Column('table_name', sa.String(length=300), nullable=False),
    sa.Column('newest_change_at', lakehouse.store.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('run_id', sa.String(length=36), nullable=True),
    sa.Column('published_at', lakehouse.store.types.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['workspace_id'], ['workspaces.id'],
        name=op.f('fk_table_freshness_workspace_id_workspaces'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_table_freshness')),
    sa.UniqueConstraint('workspace_id', 'environment', 'table_name', name='uq_table_freshness_key')
    )
    op.create_table('alert_routes',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('workspace_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('severity', sa.String(length=16), nullable=False),
    sa.Column('team', sa.String(length=64), nullable=False),
    sa.Column('level', sa.Integer(), nullable=False),
    sa.Column('connection_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('recipients', sa.Text(), nullable=True),
    sa.Column('escalate_after_s', sa.Float(), nullable=True),
    sa.Column('created_by', sa.String(length=100), nullable=False),
    sa.Column('created_at', lakehouse.store.types.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['connection_id'], ['connections.id'],
        name=op.f('fk_alert_routes_connection_id_connections'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['workspace_id'], ['workspaces.id'],
        name=op.f('fk_alert_routes_workspace_id_workspaces'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_alert_routes'))
    )
    op.create_index('ix_alert_routes_ws_severity', 'alert_routes', ['workspace_id', 'severity', 'level'], unique=False)
    op.create_table('alerts',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('workspace_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('rule_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('group_key', sa.String(length=300), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('severity', sa.String(length=16), nullable=False),
    sa.Column('team', sa.String(length=64), nullable=True),
    sa.Column('title', sa.Text(), nullable=False),
    sa.Column('details', lakehouse.store.types.JSONDoc(), nullable=False),
    sa.Column('run_id', sa.String(length=36), nullable=True),
    sa.Column('occurrences', sa.Integer(), nullable=False),
    sa.Column('first_at', lakehouse.store.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('last_at', lakehouse.store.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('notified_at', lakehouse.store.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('level', sa.Integer(), nullable=False),
    sa.Column('escalate_at', lakehouse.store.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('acked_by', sa.String(length=100), nullable=True),
    sa.Column('acked_at', lakehouse.store.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('resolved_by', sa.String(length=100), nullable=True),
    sa.Column('resolved_at', lakehouse.store.types.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['rule_id'], ['alert_rules.id'],
        name=op.f('fk_alerts_rule_id_alert_rules'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['workspace_id'], ['workspaces.id'],
        name=op.f('fk_alerts_workspace_id_workspaces'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_alerts'))
    )
    op.create_index('ix_alerts_escalate_at', 'alerts', ['escalate_at'], unique=False)
    op.create_index('ix_alerts_rule_group', 'alerts', ['rule_id', 'group_key', 'status'], unique=False)
    op.create_index('ix_alerts_ws_status_last', 'alerts', ['workspace_id', 'status', 'last_at'], unique=False)
    op.create_table('run_scores',
    sa.Column('run_id', sa.String(length=36), nullable=False),
    sa.Column('workspace_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('score', sa.Float(), nullable=False),
    sa.Column('signals', lakehouse.store.types.JSONDoc(), nullable=False),
    sa.Column('computed_at', lakehouse.store.types.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['run_id'], ['runs.id'], name=op.f('fk_run_scores_run_id_runs'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('run_id', name=op.f('pk_run_scores'))
    )
    op.create_index('ix_run_scores_ws_score', 'run_scores', ['workspace_id', 'score'], unique=False)
    op.create_table('notifications',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('alert_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('workspace_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('connection_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('recipients', sa.Text(), nullable=True),
    sa.Column('event', sa.String(length=16), nullable=False),
    sa.Column('level', sa.Integer(), nullable=False),
    sa.Column('payload', lakehouse.store.types.JSONDoc(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', lakehouse.store.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('created_at', lakehouse.store.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('sent_at', lakehouse.store.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['alert_id'], ['alerts.id'],
        name=op.f('fk_notifications_alert_id_alerts'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_notifications'))
    )
    op.create_index('ix_notifications_alert', 'notifications', ['alert_id'], unique=False)
    op.create_index('ix_notifications_due', 'notifications', ['status', 'next_attempt_at'], unique=False)
    op.create_table('notification_attempts',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('notification_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('attempt', sa.Integer(), nullable=False),
    sa.Column('at', lakehouse.store.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('ok', sa.Boolean(), nullable=False),
    sa.Column('status_code', sa.Integer(), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('duration_ms', sa.Float(), nullable=True),
    sa.ForeignKeyConstraint(['notification_id'], ['notifications.id'],
        name=op.f('fk_notification_attempts_notification_id_notifications'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_notification_attempts'))
    )
    op.create_index('ix_notification_attempts_notification', 'notification_attempts',
        ['notification_id', 'attempt'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_notification_attempts_notification', table_name='notification_attempts')
    op.drop_table('notification_attempts')
    op.drop_index('ix_notifications_due', table_name='notifications')
    op.drop_index('ix_notifications_alert', table_name='notifications')
    op.drop_table('notifications')
    op.drop_index('ix_run_scores_ws_score', table_name='run_scores')
    op.drop_table('run_scores')
    op.drop_index('ix_alerts_ws_status_last', table_name='alerts')
    op.drop_index('ix_alerts_rule_group', table_name='alerts')
    op.drop_index('ix_alerts_escalate_at', table_name='alerts')
    op.drop_table('alerts')
    op.drop_index('ix_alert_routes_ws_severity', table_name='alert_routes')
    op.drop_table('alert_routes')
    op.drop_table('table_freshness')
    op.drop_table('signal_weights')
    op.drop_table('alert_rules')
