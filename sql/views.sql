-- odoo_sync: views for DBAs. Owned by the extension owner, so readers need no access to the
-- tables behind them.

-- One row per tracked order.
CREATE VIEW @extschema@.order_status AS
SELECT t.orders_table,
       s.order_key AS local_order_id,
       s.order_number,
       s.sync_status,
       s.odoo_id AS odoo_order_id,
       s.odoo_name,
       s.last_synced_at,
       @extschema@._current_version(s.tracking_id, s.order_key) AS version,
       s.synced_version,
       s.deleted,
       j.id AS job_id,
       j.state AS job_state,
       -- A dead-lettered order has no job left: its last error keeps the count.
       COALESCE(j.attempts, CASE WHEN jsonb_typeof(s.last_error -> 'attempts') = 'number'
                                 THEN (s.last_error ->> 'attempts')::numeric::integer END, 0) AS attempts,
       j.run_after AS next_attempt_at,
       s.last_error,
       (SELECT c.id FROM @extschema@.conflicts c
        WHERE c.tracking_id = s.tracking_id AND c.order_key = s.order_key AND c.resolved_at IS NULL
        ORDER BY c.detected_at LIMIT 1) AS open_conflict_id,
       s.changed_at,
       -- The Odoo order an Odoo user deleted (the order was cancelled here and unlinked; it
       -- is not created in Odoo again while it stays cancelled, see order_state).
       s.odoo_deleted_id AS deleted_in_odoo
FROM @extschema@.order_state s
JOIN @extschema@.tracked_tables t ON t.id = s.tracking_id
LEFT JOIN @extschema@.jobs j ON j.id = s.job_id;

-- Jobs still to do, with their age.
CREATE VIEW @extschema@.queue AS
SELECT j.id AS job_id, j.kind, j.state, t.orders_table, j.order_key AS local_order_id, j.odoo_id,
       j.batch_id, j.attempts, j.run_after, j.lease_owner, j.lease_until,
       j.created_at, now() - j.created_at AS age, j.last_error
FROM @extschema@.jobs j
LEFT JOIN @extschema@.tracked_tables t ON t.id = j.tracking_id;

-- Jobs that gave up: after max_attempts, or at once on a permanent error. retry_job(job_id)
-- brings one back.
CREATE VIEW @extschema@.dead_letters AS
SELECT h.id AS job_id, h.kind, t.orders_table, h.order_key AS local_order_id, h.odoo_id, h.attempts,
       h.last_error ->> 'message' AS error_message, h.last_error ->> 'odoo_error' AS odoo_error,
       h.last_error, h.created_at, h.finished_at AS died_at
FROM @extschema@.job_history h
LEFT JOIN @extschema@.tracked_tables t ON t.id = h.tracking_id
WHERE h.state = 'dead';

-- Failed attempts, newest first: what went wrong lately, including attempts that will be retried.
CREATE VIEW @extschema@.recent_errors AS
SELECT l.finished_at, l.job_id, l.kind, t.orders_table, l.order_key AS local_order_id, l.odoo_id, l.operation,
       l.attempt, l.worker_id, l.error ->> 'odoo_error' AS odoo_error, l.error ->> 'message' AS error_message, l.error
FROM @extschema@.sync_log l
LEFT JOIN @extschema@.tracked_tables t ON t.id = l.tracking_id
WHERE NOT l.success
ORDER BY l.id DESC;

-- Conflicts waiting for a decision.
CREATE VIEW @extschema@.pending_conflicts AS
SELECT c.id AS conflict_id, t.orders_table, c.order_key AS local_order_id, c.conflict_type, c.field_diff,
       c.detected_at
FROM @extschema@.conflicts c
JOIN @extschema@.tracked_tables t ON t.id = c.tracking_id
WHERE c.resolved_at IS NULL;

-- The event log. Capture leaves out the payload that an order's insert and update events always
-- carry (see event_log); it is put back here, as capture's order trigger writes it.
CREATE VIEW @extschema@.events AS
SELECT e.id, e.occurred_at, e.event_type, t.orders_table, e.entity_id, e.actor,
       COALESCE(e.payload, CASE e.event_type
           WHEN 'ORDER_CREATED' THEN '{"op": "INSERT", "table": "orders"}'::jsonb
           WHEN 'ORDER_UPDATED' THEN '{"op": "UPDATE", "table": "orders"}'::jsonb
       END) AS payload
FROM @extschema@.event_log e
LEFT JOIN @extschema@.tracked_tables t ON t.id = e.tracking_id;

-- Workers and whether they are alive.
CREATE VIEW @extschema@.workers AS
SELECT w.worker_id, w.hostname, w.pid, w.version, w.started_at, w.last_seen,
       w.last_seen > now() - make_interval(secs => @extschema@._setting('worker_timeout_seconds')::text::int) AS alive,
       w.odoo_status, w.cache_status,
       (SELECT count(*) FROM @extschema@.jobs j WHERE j.lease_owner = w.worker_id AND j.state = 'running') AS running_jobs,
       w.info
FROM @extschema@.worker_heartbeats w;

-- Every event of one order (or other entity), oldest first.
CREATE FUNCTION @extschema@.event_history(entity_id text)
RETURNS SETOF @extschema@.events
LANGUAGE sql STABLE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    SELECT * FROM @extschema@.events e WHERE e.entity_id = event_history.entity_id ORDER BY e.id
$$;

-- The same for the order key as the tracked table types it (like sync_order).
CREATE FUNCTION @extschema@.event_history(entity_id uuid)
RETURNS SETOF @extschema@.events
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$ SELECT * FROM @extschema@.event_history(entity_id::text) $$;

CREATE FUNCTION @extschema@.event_history(entity_id bigint)
RETURNS SETOF @extschema@.events
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$ SELECT * FROM @extschema@.event_history(entity_id::text) $$;
