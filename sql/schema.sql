-- odoo_sync: tables that hold the sync state. Loaded first by CREATE EXTENSION.
-- Every table the extension owns lives in schema @extschema@; user tables are only touched
-- through the tracking registry below.

-- Roles are cluster-wide: create them once, never drop them with the extension.
-- Two databases creating the extension at once may both find a role missing: the loser of
-- that race simply uses the winner's role.
DO $roles$
DECLARE
    r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['odoo_sync_reader', 'odoo_sync_worker', 'odoo_sync_admin'] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = r) THEN
            BEGIN
                EXECUTE format('CREATE ROLE %I NOLOGIN', r);
            EXCEPTION WHEN duplicate_object OR unique_violation THEN
                NULL;
            END;
        END IF;
    END LOOP;
END
$roles$;

-- One row per pair of user tables attached with track_orders(). `mapping` is the resolved
-- column mapping: canonical name -> actual column, only for columns that exist.
CREATE TABLE @extschema@.tracked_tables (
    id           integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    orders_table regclass NOT NULL UNIQUE,
    items_table  regclass NOT NULL UNIQUE,
    key_type     text NOT NULL CHECK (key_type IN ('uuid', 'bigint', 'text')),
    mapping      jsonb NOT NULL,
    tracked_at   timestamptz NOT NULL DEFAULT now(),
    CHECK (orders_table <> items_table)
);

-- Sync state of one local order. Written when an order starts waiting for a push, when a worker
-- claims or finishes its job, and on deletes. `version` is the order's version: the id of its
-- latest change event, written by every change (a change that joins a waiting job writes only
-- this column, in place: it is in no index, so the new row version stays on its page). Each such
-- write leaves the page to be pruned by the next change that reads it, and pruning walks every
-- row of the page: a fillfactor of 50 keeps half of each page for the new row versions and
-- halves the rows a prune walks (about 35 instead of 65 for an order not yet synced), which
-- took 4,000 instructions off each change; rows of synced orders carry their snapshots and are
-- few per page anyway.
CREATE TABLE @extschema@.order_state (
    tracking_id     integer NOT NULL,
    order_key       text NOT NULL,
    order_number    text,
    version         bigint NOT NULL DEFAULT 0,
    sync_status     text NOT NULL DEFAULT 'NOT_SYNCED'
                    CHECK (sync_status IN ('NOT_SYNCED', 'PENDING_SYNC', 'SYNCED', 'SYNC_FAILED', 'CONFLICT')),
    job_id          bigint,
    odoo_id         integer,
    odoo_name       text,
    synced_version  bigint,
    last_synced_at  timestamptz,
    last_error      jsonb,
    error_permanent boolean NOT NULL DEFAULT false,
    deleted         boolean NOT NULL DEFAULT false,
    tombstone       jsonb,
    base_snapshot   jsonb,
    changed_at      timestamptz NOT NULL DEFAULT now(),
    -- What the two-way sync knows of the Odoo side: the last write_date applied or written,
    -- the Odoo state, whether Odoo forbids removing lines (confirmed), and how the order is
    -- linked: by our external id (pushed from here) or by database id (imported from Odoo).
    odoo_write_date text,
    odoo_state      text,
    odoo_locked     boolean NOT NULL DEFAULT false,
    link            text NOT NULL DEFAULT 'xmlid' CHECK (link IN ('xmlid', 'dbid')),
    -- What pushes not yet acknowledged wrote or tried to write to Odoo (canonical forms, one
    -- per distinct content, newest last, see _with_attempt), noted before each write: if a
    -- reply is lost, finding one of these in Odoo means our own write, not an Odoo edit.
    attempt_snapshot jsonb,
    -- When the Odoo version in odoo_write_date was seen (database clock): written by a push's
    -- completion or a pull's read. A read of Odoo that began earlier, with the same one-second
    -- write_date, may predate that version: apply_remote takes it as stale.
    odoo_seen_at    timestamptz,
    -- The Odoo order this order was linked to until an Odoo user deleted it (remote_deleted
    -- cancelled it here and unlinked it): while the order stays CANCELLED (in a table without
    -- a status column: until sync_order asks for it), its pushes write nothing to Odoo rather
    -- than create it there again; a push that links an Odoo order again clears it.
    odoo_deleted_id integer,
    PRIMARY KEY (tracking_id, order_key)
) WITH (fillfactor = 50);
CREATE INDEX order_state_odoo_id ON @extschema@.order_state (odoo_id) WHERE odoo_id IS NOT NULL;

-- Local items created from Odoo lines (imported orders, lines added in Odoo): their Odoo line
-- ids. Lines pushed from here are found through their external ids instead.
CREATE TABLE @extschema@.line_links (
    tracking_id  integer NOT NULL,
    item_key     text NOT NULL,
    order_key    text NOT NULL,
    odoo_line_id integer NOT NULL,
    PRIMARY KEY (tracking_id, item_key),
    UNIQUE (tracking_id, odoo_line_id)
);
-- An order's links: every push and pull of an order linked by id asks for them.
CREATE INDEX line_links_order ON @extschema@.line_links (tracking_id, order_key);

-- Where the realtime pull stands: the highest write_date Odoo returned; in `seen`, the orders
-- already applied inside the overlap window (Odoo id -> their write_date and a fingerprint of
-- the row, see worker/src/pull/poll.rs), and under "resume" where a poll that ran out of pages
-- stopped.
CREATE TABLE @extschema@.pull_cursor (
    id            integer PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    watermark     text,
    seen          jsonb NOT NULL DEFAULT '{}',
    reconciled_at timestamptz,
    updated_at    timestamptz NOT NULL DEFAULT now()
);

CREATE SEQUENCE @extschema@.attempt_token_seq;

-- The hot queue: only jobs that still have work to do (queued, running, or failed and waiting
-- for a retry). Finished jobs move to job_history so this table stays small.
-- `run_after` is when the job may be claimed next: for a running job it is the end of its
-- lease, so one index serves both "ready" and "lease expired".
CREATE TABLE @extschema@.jobs (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind          text NOT NULL CHECK (kind IN ('push', 'pull', 'import')),
    state         text NOT NULL DEFAULT 'queued' CHECK (state IN ('queued', 'running', 'failed')),
    tracking_id   integer,
    order_key     text,
    odoo_id       integer,
    batch_id      bigint,
    payload       jsonb NOT NULL DEFAULT '{}',
    attempts      integer NOT NULL DEFAULT 0,
    run_after     timestamptz NOT NULL DEFAULT now(),
    lease_owner   text,
    lease_until   timestamptz,
    attempt_token bigint,
    claimed_version bigint,
    claimed_at    timestamptz,
    last_error    jsonb,
    created_at    timestamptz NOT NULL DEFAULT now(),
    started_at    timestamptz,
    CHECK (kind <> 'push' OR (tracking_id IS NOT NULL AND order_key IS NOT NULL))
);
CREATE UNIQUE INDEX jobs_one_push_per_order ON @extschema@.jobs (tracking_id, order_key) WHERE kind = 'push';
CREATE UNIQUE INDEX jobs_one_pull_per_odoo_order ON @extschema@.jobs (odoo_id) WHERE kind = 'pull';
CREATE INDEX jobs_ready ON @extschema@.jobs (run_after, id);
CREATE INDEX jobs_batch ON @extschema@.jobs (batch_id) WHERE batch_id IS NOT NULL;

-- Finished jobs: done, or dead (dead letters, kept until retried or expired by retention).
CREATE TABLE @extschema@.job_history (
    id            bigint PRIMARY KEY,
    kind          text NOT NULL,
    state         text NOT NULL CHECK (state IN ('done', 'dead')),
    tracking_id   integer,
    order_key     text,
    odoo_id       integer,
    batch_id      bigint,
    payload       jsonb NOT NULL,
    attempts      integer NOT NULL,
    last_error    jsonb,
    created_at    timestamptz NOT NULL,
    started_at    timestamptz,
    finished_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX job_history_finished ON @extschema@.job_history (finished_at);
CREATE INDEX job_history_dead ON @extschema@.job_history (finished_at) WHERE state = 'dead';
CREATE INDEX job_history_batch ON @extschema@.job_history (batch_id) WHERE batch_id IS NOT NULL;

-- One row per finished attempt (success or failure): what await_job, health() and
-- sync_metrics() read.
CREATE TABLE @extschema@.sync_log (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id       bigint NOT NULL,
    kind         text NOT NULL,
    tracking_id  integer,
    order_key    text,
    odoo_id      integer,
    operation    text NOT NULL CHECK (operation IN ('CREATE', 'UPDATE', 'DELETE', 'PULL', 'IMPORT')),
    success      boolean NOT NULL,
    attempt      integer NOT NULL,
    worker_id    text,
    started_at   timestamptz,
    finished_at  timestamptz NOT NULL DEFAULT now(),
    duration_ms  numeric,
    error        jsonb,
    warnings     text[] NOT NULL DEFAULT '{}'
);
CREATE INDEX sync_log_job ON @extschema@.sync_log (job_id);
CREATE INDEX sync_log_finished ON @extschema@.sync_log (finished_at);

-- Batches started by batch_sync_pending() and import_orders().
CREATE TABLE @extschema@.batches (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind        text NOT NULL CHECK (kind IN ('push', 'import', 'replay')),
    filter      jsonb NOT NULL DEFAULT '{}',
    total       integer NOT NULL DEFAULT 0,
    skipped     integer NOT NULL DEFAULT 0,
    progress    jsonb NOT NULL DEFAULT '{}',
    next_token  text,
    created_by  name NOT NULL DEFAULT session_user,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- Append-only domain event log, and the change log of tracked orders: the capture trigger
-- appends one row per change, and an order's version is the id of its latest event (ids come
-- from one sequence; changes of one order are serialized by the lock on its row, so its event
-- ids grow in commit order), kept in order_state.version. This insert is on the hot path, so
-- the table has no CHECK constraints (parsed anew by every statement) and no btree: an index
-- by order would take each change's entry at a random page of a large index, which cost
-- capture more than everything else it does (event_history reads the table instead; a DBA who
-- asks for one order's history often can add that index, and the trigger maintains it).
-- Retention finds old rows through a BRIN index.
CREATE TABLE @extschema@.event_log (
    id          bigint GENERATED ALWAYS AS IDENTITY,
    occurred_at timestamptz NOT NULL DEFAULT now(),
    event_type  text NOT NULL,
    tracking_id integer,
    entity_id   text NOT NULL,
    -- text, not the type session_user returns: a name takes 64 bytes in every row.
    actor       text NOT NULL DEFAULT session_user,
    -- NULL for the payloads that every change of an order repeats, which its event_type implies
    -- (the events view shows them): about 40 of the row's 113 bytes, on every write of a
    -- tracked order.
    payload     jsonb DEFAULT '{}'
);
CREATE INDEX event_log_time ON @extschema@.event_log USING brin (occurred_at);
-- ANALYZE holds back what every table of the database may clean up while it reads its sample:
-- the pages of the order tables that busy applications update in place fill with row versions
-- that cannot be pruned, spill to new pages and stay that size. With the default statistics
-- target, autoanalyze samples 30,000 rows of this log, and a busy log is analyzed often (each
-- time it grew by a tenth); this sample is a tenth of that, and the payload, which no query
-- filters on, gets no statistics. See tests/bench/capture.sh.
ALTER TABLE @extschema@.event_log
    ALTER COLUMN id SET STATISTICS 10,
    ALTER COLUMN occurred_at SET STATISTICS 10,
    ALTER COLUMN event_type SET STATISTICS 10,
    ALTER COLUMN tracking_id SET STATISTICS 10,
    ALTER COLUMN entity_id SET STATISTICS 10,
    ALTER COLUMN actor SET STATISTICS 0,
    ALTER COLUMN payload SET STATISTICS 0;

-- Conflicts between local and Odoo edits (filled by the two-way sync).
CREATE TABLE @extschema@.conflicts (
    id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tracking_id    integer NOT NULL,
    order_key      text NOT NULL,
    conflict_type  text NOT NULL CHECK (conflict_type IN (
                       'DATA_MISMATCH', 'VERSION_CONFLICT', 'CONCURRENT_MODIFICATION',
                       'BUSINESS_RULE_VIOLATION')),
    field_diff     jsonb NOT NULL DEFAULT '[]',
    local_version  jsonb,
    remote_version jsonb,
    detected_at    timestamptz NOT NULL DEFAULT now(),
    resolved_at    timestamptz,
    resolution     text CHECK (resolution IN ('KEEP_LOCAL', 'KEEP_REMOTE', 'MERGE')),
    resolved_by    name,
    -- The three sides at detection, in the canonical form of twoway.sql.
    base_version   jsonb,
    resolved_values jsonb
);
CREATE INDEX conflicts_open ON @extschema@.conflicts (tracking_id, order_key) WHERE resolved_at IS NULL;

-- Worker heartbeats: what health() reads to tell whether Odoo is reachable.
CREATE TABLE @extschema@.worker_heartbeats (
    worker_id     text PRIMARY KEY,
    hostname      text,
    pid           integer,
    version       text,
    started_at    timestamptz NOT NULL DEFAULT now(),
    last_seen     timestamptz NOT NULL DEFAULT now(),
    odoo_status   text NOT NULL DEFAULT 'DISCONNECTED'
                  CHECK (odoo_status IN ('CONNECTED', 'DISCONNECTED', 'ERROR')),
    cache_status  text NOT NULL DEFAULT 'HEALTHY'
                  CHECK (cache_status IN ('HEALTHY', 'DEGRADED', 'UNAVAILABLE')),
    info          jsonb NOT NULL DEFAULT '{}'
);

-- Explicit and learned mappings of local suppliers/products to Odoo records.
CREATE TABLE @extschema@.partner_map (
    local_supplier_id text PRIMARY KEY,
    odoo_partner_id   integer NOT NULL CHECK (odoo_partner_id > 0),
    source            text NOT NULL DEFAULT 'manual' CHECK (source IN ('manual', 'ref', 'name', 'import')),
    learned_at        timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE @extschema@.product_map (
    local_product_id text PRIMARY KEY,
    odoo_product_id  integer NOT NULL CHECK (odoo_product_id > 0),
    source           text NOT NULL DEFAULT 'manual' CHECK (source IN ('manual', 'default_code', 'name', 'import')),
    learned_at       timestamptz NOT NULL DEFAULT now()
);

-- Settings the user changed; defaults live in setting_spec (see settings.sql).
CREATE TABLE @extschema@.settings (
    key        text PRIMARY KEY,
    value      jsonb NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    updated_by name NOT NULL DEFAULT session_user
);

-- pg_dump must keep the user's configuration and pending work: without this, a dump/restore
-- of a database with the extension loses them (the extension's own tables are not dumped).
SELECT pg_catalog.pg_extension_config_dump('@extschema@.tracked_tables', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.order_state', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.jobs', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.job_history', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.batches', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.event_log', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.sync_log', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.conflicts', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.partner_map', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.product_map', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.settings', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.line_links', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.pull_cursor', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.attempt_token_seq', '');
-- Identity sequences too, or restored rows would collide with the next ids.
SELECT pg_catalog.pg_extension_config_dump(pg_catalog.pg_get_serial_sequence('@extschema@.tracked_tables', 'id')::regclass, '');
SELECT pg_catalog.pg_extension_config_dump(pg_catalog.pg_get_serial_sequence('@extschema@.jobs', 'id')::regclass, '');
SELECT pg_catalog.pg_extension_config_dump(pg_catalog.pg_get_serial_sequence('@extschema@.sync_log', 'id')::regclass, '');
SELECT pg_catalog.pg_extension_config_dump(pg_catalog.pg_get_serial_sequence('@extschema@.batches', 'id')::regclass, '');
SELECT pg_catalog.pg_extension_config_dump(pg_catalog.pg_get_serial_sequence('@extschema@.event_log', 'id')::regclass, '');

-- Result of one sync attempt, as await_job() and last_sync_status() return it.
CREATE TYPE @extschema@.sync_result AS (
    success        boolean,
    local_order_id text,
    odoo_order_id  integer,
    operation      text,
    finished_at    timestamptz,
    duration_ms    numeric,
    error          jsonb,
    warnings       text[]
);
