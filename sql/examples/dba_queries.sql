-- odoo_sync: queries DBAs run. Each works for a role with odoo_sync_reader.

-- Is the sync healthy? One row: Odoo connection, queue, error rate over 24 h.
SELECT * FROM odoo_sync.health();

-- Orders not in sync, oldest change first.
SELECT orders_table, order_number, local_order_id, sync_status, attempts, next_attempt_at,
       last_error ->> 'message' AS last_error
FROM odoo_sync.order_status
WHERE sync_status <> 'SYNCED'
ORDER BY changed_at
LIMIT 50;

-- The queue by kind and state, with the oldest job's age.
SELECT kind, state, count(*) AS jobs, max(age) AS oldest
FROM odoo_sync.queue
GROUP BY kind, state
ORDER BY kind, state;

-- Jobs held by a worker whose lease has run out (the worker died; another will take them).
SELECT job_id, kind, local_order_id, lease_owner, lease_until
FROM odoo_sync.queue
WHERE state = 'running' AND lease_until < now();

-- Dead letters with their error; retry one with SELECT odoo_sync.retry_job(job_id).
SELECT job_id, kind, local_order_id, attempts, odoo_error, error_message, died_at
FROM odoo_sync.dead_letters
ORDER BY died_at DESC;

-- Workers and whether they are alive.
SELECT worker_id, hostname, alive, last_seen, odoo_status, running_jobs FROM odoo_sync.workers;

-- Throughput and latency of the last hour.
SELECT * FROM odoo_sync.sync_metrics('1 hour');

-- Everything that happened to one order.
SELECT id, occurred_at, event_type, actor, payload
FROM odoo_sync.event_history('00000000-0000-0000-0000-000000000000');

-- Current settings with units and ranges.
SELECT key, value, default_value, unit, min_value, max_value, description FROM odoo_sync.describe_settings();
