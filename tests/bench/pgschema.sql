-- The row store the query benchmark compares against: execution logs as the reference platform
-- keeps them in PostgreSQL (one wide row per execution, trace spans and cost in jsonb), plus the
-- project column and the indexes a careful engineer would add for the logs listing.
-- Sections are separated by `-- section:` lines; indexes are built after the bulk load.

-- section: tables
CREATE UNLOGGED TABLE workflow (
    id text NOT NULL,
    workspace_id text NOT NULL,
    name text NOT NULL,
    description text
);

CREATE UNLOGGED TABLE workflow_execution_logs (
    id text NOT NULL,
    workspace_id text NOT NULL,
    workflow_id text NOT NULL,
    execution_id text NOT NULL,
    state_snapshot_id text NOT NULL,
    level text NOT NULL,
    trigger text NOT NULL,
    started_at timestamptz NOT NULL,
    ended_at timestamptz,
    total_duration_ms integer,
    execution_data jsonb NOT NULL DEFAULT '{}',
    cost jsonb,
    files jsonb,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- section: indexes
ALTER TABLE workflow ADD PRIMARY KEY (id);
ALTER TABLE workflow_execution_logs ADD PRIMARY KEY (id);
CREATE UNIQUE INDEX wel_execution_id_idx ON workflow_execution_logs (execution_id);
CREATE INDEX wel_workspace_created_id_idx ON workflow_execution_logs (workspace_id, created_at, id);
CREATE INDEX wel_workspace_started_idx ON workflow_execution_logs (workspace_id, started_at);
CREATE INDEX wel_workflow_started_idx ON workflow_execution_logs (workflow_id, started_at);
CREATE INDEX wel_level_idx ON workflow_execution_logs (level);
CREATE INDEX wel_trigger_idx ON workflow_execution_logs (trigger);
CREATE INDEX wel_models_idx ON workflow_execution_logs USING gin ((cost -> 'models'));
