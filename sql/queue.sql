-- odoo_sync: the job queue. Workers claim jobs with a lease and finish them with the attempt
-- token they got; a token from an earlier claim is refused, so a worker that lost its lease
-- cannot overwrite the work of the one that took over.

-- Delay before the next attempt: exponential in the attempt count, capped, with "equal jitter"
-- (half fixed, half random) so retries of many jobs do not arrive at Odoo in step.
CREATE FUNCTION @extschema@._backoff(p_attempts integer) RETURNS interval
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT make_interval(secs => d / 2 + random() * d / 2)
    FROM (SELECT least(@extschema@._setting('backoff_max_seconds')::text::float8,
                       @extschema@._setting('backoff_base_seconds')::text::float8
                       * power(2, greatest(p_attempts - 1, 0)::float8)) AS d) x
$$;

-- Writes odoo_sync's columns of one order row in the user's table (only the columns the
-- tracking maps, only when a value differs), as the table's owner and without capture.
-- p_values uses canonical names: sync_status, odoo_order_id, last_synced_at, subtotal, ...
CREATE FUNCTION @extschema@._write_back(p_tracking_id integer, p_order_key text, p_values jsonb)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t @extschema@.tracked_tables;
    v_sets text;
    v_olds text;
    v_news text;
    v_params text[];
BEGIN
    SELECT * INTO t FROM @extschema@.tracked_tables WHERE id = p_tracking_id;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    -- Every mapped column in one catalog read: $1[1] is the key, $1[2], ... the values.
    SELECT string_agg(format('%I = $1[%s]::%s', c.col, c.n + 1, c.typ), ', ' ORDER BY c.n),
           string_agg(format('%I', c.col), ', ' ORDER BY c.n),
           string_agg(format('$1[%s]::%s', c.n + 1, c.typ), ', ' ORDER BY c.n),
           array_agg(c.val ORDER BY c.n)
    INTO v_sets, v_olds, v_news, v_params
    FROM (SELECT a.attname AS col, format_type(a.atttypid, a.atttypmod) AS typ, p_values ->> x.k AS val,
                 row_number() OVER (ORDER BY x.n) AS n
          FROM jsonb_object_keys(p_values) WITH ORDINALITY AS x(k, n)
          JOIN pg_attribute a ON a.attrelid = t.orders_table AND a.attname = t.mapping -> 'orders' ->> x.k
                             AND a.attnum > 0 AND NOT a.attisdropped
          WHERE x.k <> 'id') c;
    IF v_sets IS NULL THEN
        RETURN;
    END IF;
    PERFORM @extschema@._exec_as_owner(t.orders_table,
        format('UPDATE %s SET %s WHERE %I = $1[1]::%s AND (%s, NULL) IS DISTINCT FROM (%s, NULL)',
               t.orders_table, v_sets, t.mapping -> 'orders' ->> 'id',
               @extschema@._coltype(t.orders_table, t.mapping -> 'orders' ->> 'id'), v_olds, v_news),
        ARRAY[p_order_key] || v_params);
END
$$;

-- The helpers below are PL/pgSQL rather than SQL functions: PL/pgSQL keeps its plans for the
-- session, a SQL function called from PL/pgSQL is planned again on every call.

-- Appends an event (for the extension's own functions; the trigger writes events directly)
-- and tells listeners with NOTIFY odoo_sync_events 'event'. Workers ignore that payload: these
-- events (a sync result, an import, a resolved conflict) never mean new work for them, so a
-- worker's own results do not wake the others.
CREATE FUNCTION @extschema@._event(p_type text, p_tracking_id integer, p_entity text, p_payload jsonb)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    INSERT INTO @extschema@.event_log (event_type, tracking_id, entity_id, payload)
    VALUES (p_type, p_tracking_id, p_entity, COALESCE(p_payload, '{}'));
    PERFORM @extschema@._notify('event');
END
$$;

-- Locks the application's order row (FOR NO KEY UPDATE, as the table owner). Every writer of
-- an order holds this lock while it records a change (an UPDATE holds it anyway; the items
-- trigger takes it), so whoever holds it sees every committed change of the order and no other
-- change can be under way. Everything that decides "this order is in sync" takes it first.
-- A deleted order has no row: nothing is locked and nothing can change it any more.
CREATE FUNCTION @extschema@._lock_order(p_tracking_id integer, p_order_key text) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t @extschema@.tracked_tables;
BEGIN
    SELECT * INTO t FROM @extschema@.tracked_tables WHERE id = p_tracking_id;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    PERFORM @extschema@._exec_as_owner(t.orders_table,
        format('SELECT 1 FROM %s WHERE %I = $1[1]::%s FOR NO KEY UPDATE', t.orders_table, t.mapping -> 'orders' ->> 'id',
               @extschema@._coltype(t.orders_table, t.mapping -> 'orders' ->> 'id')),
        ARRAY[p_order_key]);
END
$$;

-- The order's version: the id of its latest change event, which every change writes to its
-- state row (see order_state). Events about syncing are not changes.
CREATE FUNCTION @extschema@._current_version(p_tracking_id integer, p_order_key text) RETURNS bigint
LANGUAGE plpgsql STABLE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN (SELECT s.version FROM @extschema@.order_state s
            WHERE s.tracking_id = p_tracking_id AND s.order_key = p_order_key);
END
$$;

-- Moves a job out of the hot table into the history.
CREATE FUNCTION @extschema@._finish_job(p_job @extschema@.jobs, p_state text, p_error jsonb)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    DELETE FROM @extschema@.jobs WHERE id = p_job.id;
    INSERT INTO @extschema@.job_history (id, kind, state, tracking_id, order_key, odoo_id, batch_id, payload,
                                         attempts, last_error, created_at, started_at)
    VALUES (p_job.id, p_job.kind, p_state, p_job.tracking_id, p_job.order_key, p_job.odoo_id, p_job.batch_id,
            p_job.payload, p_job.attempts, p_error, p_job.created_at, p_job.started_at);
END
$$;

-- Refuses to run p_function in a REPEATABLE READ or SERIALIZABLE transaction. The functions
-- that decide "this order is in sync" wait for the order's row lock and must then see every
-- change committed meanwhile; a snapshot taken before the wait would not, and an application
-- change that only locked the row (an item write) raises no serialization error, so the change
-- would be left without a push.
CREATE FUNCTION @extschema@._require_read_committed(p_function text) RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'odoo_sync.% must run at READ COMMITTED, not %', p_function,
            upper(current_setting('transaction_isolation'))
            USING ERRCODE = '25000',
                  DETAIL = 'It waits for the order''s row lock and must then see every change committed meanwhile, which an earlier snapshot does not.',
                  HINT = 'Call it outside a REPEATABLE READ or SERIALIZABLE transaction; if the role or database sets default_transaction_isolation, SET default_transaction_isolation = ''read committed'' in the session (odoo-sync-worker does).';
    END IF;
END
$$;

-- Puts a job back in the queue, ready now, with a fresh count of attempts: its order changed
-- during the attempt, and new data deserves its own tries. last_error keeps what the attempt
-- ended with (NULL after a success).
CREATE FUNCTION @extschema@._requeue_fresh(p_job_id bigint, p_error jsonb) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    UPDATE @extschema@.jobs q
    SET state = 'queued', run_after = now(), lease_owner = NULL, lease_until = NULL, attempt_token = NULL,
        attempts = 0, last_error = p_error
    WHERE q.id = p_job_id;
    PERFORM @extschema@._notify('queue');
END
$$;

-- Locks a running job and checks the caller's attempt token; raises 55000 otherwise. For a
-- push, the order's row is locked first (see _lock_order): lock order is always order row,
-- then state row, then job row, for every party, so they cannot deadlock.
CREATE FUNCTION @extschema@._lock_running_job(p_job_id bigint, p_attempt_token bigint)
RETURNS @extschema@.jobs
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    j @extschema@.jobs;
BEGIN
    PERFORM @extschema@._require_read_committed('complete_job, fail_job, report_progress and requeue_job');
    IF p_job_id IS NULL OR p_attempt_token IS NULL THEN
        RAISE EXCEPTION 'job id and attempt token are required' USING ERRCODE = '22004';
    END IF;
    SELECT * INTO j FROM @extschema@.jobs WHERE id = p_job_id;
    IF FOUND AND j.kind = 'push' THEN
        PERFORM @extschema@._lock_order(j.tracking_id, j.order_key);
    END IF;
    SELECT * INTO j FROM @extschema@.jobs WHERE id = p_job_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'job % is not in the queue (finished, or never existed)', p_job_id
            USING ERRCODE = '55000', HINT = 'A job is finished once; see odoo_sync.job_history.';
    END IF;
    IF j.state <> 'running' OR j.attempt_token IS DISTINCT FROM p_attempt_token THEN
        RAISE EXCEPTION 'stale attempt token % for job %', p_attempt_token, p_job_id
            USING ERRCODE = '55000',
                  DETAIL = format('The job is %s with attempt token %s: its lease expired and it was handed out again.',
                                  j.state, COALESCE(j.attempt_token::text, 'none')),
                  HINT = 'Drop the result of this attempt; the current holder of the job will report it.';
    END IF;
    RETURN j;
END
$$;

-- Records the outcome of one attempt.
CREATE FUNCTION @extschema@._log_attempt(p_job @extschema@.jobs, p_operation text, p_success boolean,
                                         p_error jsonb, p_result jsonb)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    INSERT INTO @extschema@.sync_log (job_id, kind, tracking_id, order_key, odoo_id, operation, success, attempt,
                                      worker_id, started_at, duration_ms, error, warnings)
    VALUES (p_job.id, p_job.kind, p_job.tracking_id, p_job.order_key,
            COALESCE((p_result ->> 'odoo_order_id')::integer, p_job.odoo_id),
            p_operation, p_success, p_job.attempts, p_job.lease_owner,
            p_job.claimed_at,
            COALESCE((p_result ->> 'duration_ms')::numeric,
                     round(extract(epoch FROM now() - p_job.claimed_at)::numeric * 1000, 1)),
            p_error,
            COALESCE((SELECT array_agg(w) FROM jsonb_array_elements_text(
                          CASE WHEN jsonb_typeof(p_result -> 'warnings') = 'array' THEN p_result -> 'warnings' END) w), '{}'));
END
$$;

-- Claims up to max_jobs ready jobs for worker_id, each leased for `lease`. A job whose lease
-- ran out is handed out again with a new attempt token. Jobs are taken oldest first; locked
-- ones are skipped, so any number of workers can claim at once without waiting on each other.
CREATE FUNCTION @extschema@.claim_jobs(worker_id text, max_jobs integer DEFAULT 10, lease interval DEFAULT NULL)
RETURNS TABLE (job_id bigint, kind text, order_key text, payload jsonb, attempt_token bigint,
               tracking_id integer, odoo_id integer, attempt integer, version bigint)
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    v_lease interval := COALESCE(lease, make_interval(secs => @extschema@._setting('lease_seconds')::text::int));
    v_max_attempts integer := @extschema@._setting('max_attempts')::text::int;
    j @extschema@.jobs;
    v_error jsonb;
BEGIN
    IF worker_id IS NULL OR length(worker_id) = 0 OR length(worker_id) > 200 THEN
        RAISE EXCEPTION 'worker_id must be a non-empty name of at most 200 characters' USING ERRCODE = '22023';
    END IF;
    IF max_jobs IS NULL OR max_jobs < 1 OR max_jobs > 1000 THEN
        RAISE EXCEPTION 'max_jobs must be between 1 and 1000, got %', COALESCE(max_jobs::text, 'NULL')
            USING ERRCODE = '22023';
    END IF;
    IF v_lease < interval '1 second' OR v_lease > interval '1 hour' THEN
        RAISE EXCEPTION 'lease must be between 1 second and 1 hour, got %', v_lease USING ERRCODE = '22023';
    END IF;
    PERFORM @extschema@._require_read_committed('claim_jobs');

    -- A job whose worker died on every one of its attempts is poison: dead-letter it instead
    -- of handing it to the next worker. An order that changed during that last attempt gets a
    -- fresh try instead, as in fail_job: its new data may not kill the worker, and a dead
    -- letter would leave the change without a push.
    FOR j IN
        SELECT * FROM @extschema@.jobs q
        WHERE q.state = 'running' AND q.run_after <= now() AND q.attempts >= v_max_attempts
    LOOP
        IF j.kind = 'push' THEN
            PERFORM @extschema@._lock_order(j.tracking_id, j.order_key);
        END IF;
        SELECT * INTO j FROM @extschema@.jobs q
        WHERE q.id = j.id AND q.state = 'running' AND q.run_after <= now() AND q.attempts >= v_max_attempts
        FOR UPDATE SKIP LOCKED;
        CONTINUE WHEN NOT FOUND;
        v_error := jsonb_build_object('type', 'LeaseExpired', 'permanent', false,
            'message', format('worker %s did not finish attempt %s within its lease', j.lease_owner, j.attempts));
        IF j.kind = 'push'
           AND COALESCE(@extschema@._current_version(j.tracking_id, j.order_key) > j.claimed_version, false) THEN
            PERFORM @extschema@._requeue_fresh(j.id, v_error || jsonb_build_object('attempt', j.attempts, 'at', now()));
            CONTINUE;
        END IF;
        PERFORM @extschema@._dead_letter(j, v_error);
    END LOOP;

    RETURN QUERY
    WITH ready AS (
        SELECT q.id FROM @extschema@.jobs q
        WHERE q.run_after <= now()
        ORDER BY q.run_after, q.id
        LIMIT max_jobs
        FOR UPDATE SKIP LOCKED
    ), claimed AS (
        UPDATE @extschema@.jobs q
        SET state = 'running',
            attempts = q.attempts + 1,
            lease_owner = claim_jobs.worker_id,
            lease_until = now() + v_lease,
            run_after = now() + v_lease,
            attempt_token = nextval('@extschema@.attempt_token_seq'),
            claimed_version = CASE WHEN q.kind = 'push' THEN @extschema@._current_version(q.tracking_id, q.order_key) END,
            claimed_at = now(),
            started_at = COALESCE(q.started_at, now())
        FROM ready WHERE q.id = ready.id
        RETURNING q.*
    )
    SELECT c.id, c.kind, c.order_key, c.payload, c.attempt_token, c.tracking_id, c.odoo_id, c.attempts,
           c.claimed_version
    FROM claimed c ORDER BY c.id;
END
$$;

-- Extends the leases of jobs a worker still works on; returns the ids it still holds.
CREATE FUNCTION @extschema@.extend_leases(worker_id text, job_ids bigint[], lease interval DEFAULT NULL)
RETURNS SETOF bigint
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    v_lease interval := COALESCE(lease, make_interval(secs => @extschema@._setting('lease_seconds')::text::int));
BEGIN
    IF v_lease < interval '1 second' OR v_lease > interval '1 hour' THEN
        RAISE EXCEPTION 'lease must be between 1 second and 1 hour, got %', v_lease USING ERRCODE = '22023';
    END IF;
    RETURN QUERY
    UPDATE @extschema@.jobs q SET lease_until = now() + v_lease, run_after = now() + v_lease
    WHERE q.id = ANY (job_ids) AND q.state = 'running' AND q.lease_owner = extend_leases.worker_id
    RETURNING q.id;
END
$$;

-- Gives back every job a worker holds (graceful shutdown): they are ready again at once and
-- the interrupted attempt does not count.
CREATE FUNCTION @extschema@.release_jobs(worker_id text) RETURNS integer
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    n integer;
BEGIN
    UPDATE @extschema@.jobs q
    SET state = 'queued', run_after = now(), lease_owner = NULL, lease_until = NULL, attempt_token = NULL,
        attempts = greatest(q.attempts - 1, 0)
    WHERE q.state = 'running' AND q.lease_owner = release_jobs.worker_id;
    GET DIAGNOSTICS n = ROW_COUNT;
    IF n > 0 THEN
        PERFORM @extschema@._notify('queue');
    END IF;
    RETURN n;
END
$$;

-- Dead-letters a job: out of the queue, into the history with its error; its order is marked
-- SYNC_FAILED and is pushed again only on its next change or retry_job().
CREATE FUNCTION @extschema@._dead_letter(p_job @extschema@.jobs, p_error jsonb) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM @extschema@._finish_job(p_job, 'dead', p_error);
    IF p_job.kind = 'push' THEN
        UPDATE @extschema@.order_state
        SET job_id = NULL,
            sync_status = CASE WHEN sync_status = 'CONFLICT' THEN 'CONFLICT' ELSE 'SYNC_FAILED' END,
            -- The attempt count stays with the order (order_status.attempts) once the job is gone.
            last_error = p_error || jsonb_build_object('attempts', p_job.attempts),
            error_permanent = COALESCE((p_error ->> 'permanent')::boolean, false)
        WHERE tracking_id = p_job.tracking_id AND order_key = p_job.order_key;
        PERFORM @extschema@._write_back(p_job.tracking_id, p_job.order_key,
                                        jsonb_build_object('sync_status', 'SYNC_FAILED'));
        PERFORM @extschema@._event('ORDER_SYNC_FAILED', p_job.tracking_id, p_job.order_key,
                                   jsonb_build_object('job_id', p_job.id, 'attempt', p_job.attempts, 'version', p_job.claimed_version,
                                                      'dead_letter', true, 'error', p_error));
    END IF;
END
$$;

-- Reports a successful attempt. For a push, `result` carries what Odoo answered:
--   odoo_order_id (required unless the order was deleted before it ever reached Odoo),
--   odoo_name, operation (CREATE|UPDATE|DELETE), version (the local version pushed; defaults
--   to the version at claim time), snapshot (the base for later conflict checks), amounts
--   ({subtotal, sales_tax, grand_total} as Odoo computed them), duration_ms, warnings.
-- Returns 'done', or 'requeued' when the order changed again while it was being pushed.
CREATE FUNCTION @extschema@.complete_job(job_id bigint, attempt_token bigint, result jsonb DEFAULT '{}')
RETURNS text
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    j @extschema@.jobs;
    st @extschema@.order_state;
    v_result jsonb := COALESCE(result, '{}');
    v_version bigint;
    v_odoo_id integer;
    v_operation text;
    v_requeue boolean := false;
    v_base jsonb;
    v_amounts jsonb;
    v_local jsonb;
    v_local_amounts jsonb;
    v_mismatch jsonb := '[]';
    v_amount_policy text;
    v_write_amounts boolean;
    v_digits integer;
    k text;
    v_local_status text;
    v_local_class text;
    v_odoo_class text;
    v_adopted text;
    v_state_rule jsonb;
    v_left_deleted boolean := false;
BEGIN
    j := @extschema@._lock_running_job(job_id, attempt_token);
    IF jsonb_typeof(v_result) <> 'object' THEN
        RAISE EXCEPTION 'result must be a JSON object, got %', jsonb_typeof(v_result) USING ERRCODE = '22023';
    END IF;
    BEGIN
        v_version := COALESCE((v_result ->> 'version')::bigint, j.claimed_version);
        v_odoo_id := (v_result ->> 'odoo_order_id')::integer;
    EXCEPTION WHEN invalid_text_representation OR numeric_value_out_of_range THEN
        RAISE EXCEPTION 'result.version and result.odoo_order_id must be integers, got % and %',
            v_result -> 'version', v_result -> 'odoo_order_id' USING ERRCODE = '22023';
    END;

    IF j.kind = 'push' THEN
        SELECT * INTO st FROM @extschema@.order_state s
        WHERE s.tracking_id = j.tracking_id AND s.order_key = j.order_key FOR UPDATE;
        -- Without an Odoo id: the tombstone of an order that never reached Odoo, or an order
        -- whose Odoo order an Odoo user deleted, which stays so while it is cancelled here, or
        -- for good in a table without a status column (operation DELETE, see
        -- order_state.odoo_deleted_id; sync_order creates it again).
        -- (Only then is the local status read: not on every completion.)
        IF v_odoo_id IS NULL AND NOT st.deleted THEN
            v_left_deleted := st.odoo_id IS NULL AND st.odoo_deleted_id IS NOT NULL
                AND v_result ->> 'operation' = 'DELETE'
                AND (NOT EXISTS (SELECT 1 FROM @extschema@.tracked_tables t
                                 WHERE t.id = j.tracking_id AND t.mapping -> 'orders' ? 'status')
                     OR @extschema@._status_class(@extschema@._local_values(j.tracking_id, j.order_key, ARRAY['status']) ->> 'status')
                        IS NOT DISTINCT FROM 'cancel');
            IF NOT v_left_deleted THEN
                RAISE EXCEPTION 'result.odoo_order_id is required for a push'
                    USING ERRCODE = '22023', HINT = 'Pass the id of the Odoo purchase.order the order was written to.';
            END IF;
        END IF;
        v_operation := COALESCE(v_result ->> 'operation',
                                CASE WHEN st.deleted THEN 'DELETE' WHEN st.odoo_id IS NULL THEN 'CREATE' ELSE 'UPDATE' END);
        IF v_operation NOT IN ('CREATE', 'UPDATE', 'DELETE') THEN
            RAISE EXCEPTION 'result.operation must be CREATE, UPDATE or DELETE, got %', v_operation USING ERRCODE = '22023';
        END IF;
        v_requeue := COALESCE(@extschema@._current_version(j.tracking_id, j.order_key) > v_version, false);
        -- Odoo's totals, as numbers rounded to the currency.
        v_digits := COALESCE(-round(log(NULLIF((v_result ->> 'currency_rounding')::numeric, 0)))::integer, 2);
        IF jsonb_typeof(v_result -> 'amounts') = 'object' THEN
            SELECT jsonb_object_agg(key, round((value #>> '{}')::numeric, v_digits)) INTO v_amounts
            FROM jsonb_each(v_result -> 'amounts') WHERE key IN ('subtotal', 'sales_tax', 'grand_total');
        END IF;
        -- DATA_MISMATCH: totals the application computed itself (they differ from what the
        -- last sync wrote back) that disagree with Odoo's beyond the currency's rounding.
        -- The local status and totals, read once for the checks below.
        IF NOT v_requeue AND NOT st.deleted THEN
            v_local := @extschema@._local_values(j.tracking_id, j.order_key,
                                                 ARRAY['status', 'subtotal', 'sales_tax', 'grand_total']);
        END IF;
        IF NOT v_requeue AND NOT st.deleted AND v_amounts IS NOT NULL THEN
            v_local_amounts := v_local - 'status';
            FOR k IN SELECT jsonb_object_keys(COALESCE(v_local_amounts, '{}')) LOOP
                CONTINUE WHEN NOT v_amounts ? k;
                CONTINUE WHEN st.base_snapshot -> 'amounts' -> k IS NOT NULL
                              AND (st.base_snapshot -> 'amounts' ->> k)::numeric = (v_local_amounts ->> k)::numeric;
                IF round((v_local_amounts ->> k)::numeric, v_digits) <> (v_amounts ->> k)::numeric THEN
                    v_mismatch := v_mismatch || jsonb_build_object('field', 'amounts.' || k,
                        'base', st.base_snapshot -> 'amounts' -> k, 'local', v_local_amounts -> k, 'remote', v_amounts -> k);
                END IF;
            END LOOP;
            IF jsonb_array_length(v_mismatch) > 0 THEN
                v_amount_policy := @extschema@._setting('conflict_policy_amounts') #>> '{}';
            END IF;
        END IF;
        v_write_amounts := NOT v_requeue AND v_amounts IS NOT NULL
                           AND COALESCE(v_amount_policy, 'remote_wins') = 'remote_wins';
        -- The base of the three-way merge: what this push wrote, in canonical form (twoway.sql).
        IF jsonb_typeof(v_result -> 'snapshot' -> 'lines') = 'object' THEN
            v_base := jsonb_build_object(
                'state', CASE WHEN v_result ->> 'odoo_state' = 'purchase'
                                   AND st.base_snapshot ->> 'state' IN ('partial', 'received')
                              THEN st.base_snapshot -> 'state'
                              ELSE to_jsonb(@extschema@._remote_class(jsonb_build_object(
                                  'state', COALESCE(v_result ->> 'odoo_state', 'draft'), 'locked', v_result -> 'locked',
                                  'lines', '[]'::jsonb))) END,
                'partner_id', v_result -> 'snapshot' -> 'partner_id',
                'lines', COALESCE((SELECT jsonb_object_agg(x.k, x.v || jsonb_build_object('qty_received',
                                      COALESCE(st.base_snapshot -> 'lines' -> x.k -> 'qty_received', '0'::jsonb)))
                                   FROM jsonb_each(v_result -> 'snapshot' -> 'lines') x(k, v)), '{}'),
                -- The totals the local row holds after this completion: Odoo's when they are
                -- written back below, the earlier ones otherwise (requeued, or the user's own).
                'amounts', CASE WHEN v_write_amounts THEN v_amounts ELSE st.base_snapshot -> 'amounts' END)
                -- Odoo's notes after the push, as the worker read them back.
                || CASE WHEN v_result -> 'snapshot' ? 'notes_html'
                        THEN @extschema@._odoo_notes(v_result -> 'snapshot' -> 'notes_html') ELSE '{}' END
                -- Odoo's expected arrival after the push, as the worker read it back.
                || @extschema@._odoo_delivery(v_result -> 'snapshot' -> 'date_planned')
                -- Odoo's origin (the order number of an order created here), as read back.
                || CASE WHEN v_result -> 'snapshot' ? 'origin'
                        THEN jsonb_build_object('origin', v_result -> 'snapshot' -> 'origin') ELSE '{}' END;
        ELSIF v_left_deleted THEN
            v_base := st.base_snapshot;
        ELSE
            v_base := COALESCE(v_result -> 'snapshot', st.base_snapshot);
        END IF;
        -- The state Odoo ended in against the local status. The push made the call Odoo has
        -- for it (worker/src/push/status_action.rs); a difference left is either Odoo's own
        -- decision on confirm (approval, locking), which the local status follows, or a status
        -- no call reaches, which is a BUSINESS_RULE_VIOLATION: pushing it again at every poll
        -- would change nothing in Odoo.
        IF NOT v_requeue AND NOT st.deleted AND jsonb_typeof(v_base -> 'state') = 'string' THEN
            v_local_status := v_local ->> 'status';
            v_local_class := @extschema@._status_class(v_local_status);
            v_odoo_class := v_base ->> 'state';
            IF v_local_class IN ('purchase', 'to approve')
               AND v_odoo_class IN ('purchase', 'to approve', 'partial', 'received') THEN
                v_adopted := NULLIF(@extschema@._status_for_class(v_odoo_class, v_local_status), v_local_status);
            ELSIF v_local_class <> v_odoo_class THEN
                v_state_rule := jsonb_build_object('field', 'state', 'group', 'state',
                    'base', st.base_snapshot -> 'state', 'local', v_local_class, 'remote', v_odoo_class,
                    'rule', format('Odoo cannot take %s from "%s" to %s: %s',
                        COALESCE(v_result ->> 'odoo_name', st.odoo_name, 'the order'), v_odoo_class, v_local_status,
                        CASE WHEN v_local_class IN ('partial', 'received') THEN 'receipts are validated in Odoo'
                             WHEN v_odoo_class = 'cancel' THEN 'only a DRAFT order reopens a cancelled one'
                             ELSE 'Odoo has no action for this change of state' END));
            END IF;
        END IF;
        UPDATE @extschema@.order_state s
        SET version = GREATEST(s.version, v_version),
            odoo_id = COALESCE(v_odoo_id, s.odoo_id),
            odoo_deleted_id = CASE WHEN v_odoo_id IS NULL THEN s.odoo_deleted_id END,
            odoo_name = COALESCE(v_result ->> 'odoo_name', s.odoo_name),
            synced_version = v_version,
            last_synced_at = now(),
            last_error = NULL,
            error_permanent = false,
            base_snapshot = v_base,
            attempt_snapshot = NULL,
            odoo_write_date = COALESCE(v_result ->> 'odoo_write_date', s.odoo_write_date),
            odoo_seen_at = CASE WHEN v_left_deleted THEN s.odoo_seen_at ELSE now() END,
            odoo_state = COALESCE(v_result ->> 'odoo_state', s.odoo_state),
            odoo_locked = COALESCE(COALESCE(v_result ->> 'odoo_state', s.odoo_state) IN ('purchase', 'done'), false),
            job_id = CASE WHEN v_requeue THEN s.job_id ELSE NULL END,
            sync_status = CASE WHEN s.sync_status = 'CONFLICT' THEN 'CONFLICT'
                               WHEN v_requeue THEN 'PENDING_SYNC' ELSE 'SYNCED' END
        WHERE s.tracking_id = j.tracking_id AND s.order_key = j.order_key
        RETURNING * INTO st;
        PERFORM @extschema@._write_back(j.tracking_id, j.order_key,
            jsonb_build_object('sync_status', st.sync_status, 'odoo_order_id', st.odoo_id,
                               'last_synced_at', st.last_synced_at)
            || CASE WHEN v_write_amounts THEN v_amounts ELSE '{}'::jsonb END
            || CASE WHEN v_adopted IS NOT NULL THEN jsonb_build_object('status', v_adopted) ELSE '{}'::jsonb END);
        IF v_adopted IS NOT NULL THEN
            PERFORM @extschema@._event('ORDER_UPDATED_FROM_ODOO', j.tracking_id, j.order_key,
                jsonb_build_object('odoo_order_id', st.odoo_id, 'write_date', st.odoo_write_date,
                                   'fields', jsonb_build_array('state'), 'status', v_adopted));
        END IF;
        IF v_state_rule IS NOT NULL THEN
            PERFORM @extschema@._record_conflict(j.tracking_id, j.order_key, 'BUSINESS_RULE_VIOLATION',
                jsonb_build_array(v_state_rule), jsonb_build_object('state', v_local_class), v_base, st.base_snapshot);
        END IF;
        IF v_amount_policy = 'manual' THEN
            PERFORM @extschema@._record_conflict(j.tracking_id, j.order_key, 'DATA_MISMATCH', v_mismatch,
                jsonb_build_object('amounts', v_local_amounts), jsonb_build_object('amounts', v_amounts), st.base_snapshot);
        END IF;
        PERFORM @extschema@._event('ORDER_SYNCED_TO_ODOO', j.tracking_id, j.order_key,
            jsonb_build_object('job_id', j.id, 'version', v_version, 'odoo_order_id', st.odoo_id, 'operation', v_operation,
                               'duration_ms', v_result -> 'duration_ms')
            -- Not a deletion of the local order: its Odoo order stays deleted.
            || CASE WHEN v_left_deleted THEN jsonb_build_object('deleted_in_odoo', st.odoo_deleted_id) ELSE '{}' END);
    ELSE
        v_operation := CASE j.kind WHEN 'pull' THEN 'PULL' ELSE 'IMPORT' END;
        IF j.kind = 'import' AND jsonb_typeof(v_result -> 'progress') = 'object' THEN
            UPDATE @extschema@.batches SET progress = v_result -> 'progress' WHERE id = j.batch_id;
        END IF;
    END IF;

    PERFORM @extschema@._log_attempt(j, v_operation, true, NULL, v_result);
    IF v_requeue THEN
        PERFORM @extschema@._requeue_fresh(j.id, NULL);
        RETURN 'requeued';
    END IF;
    PERFORM @extschema@._finish_job(j, 'done', NULL);
    RETURN 'done';
END
$$;

-- Reports a failed attempt. `error` is an object with at least a "message" (also: "type",
-- "odoo_error" for Odoo's exception name, "code"). A permanent error (Odoo refused the data)
-- goes straight to the dead letters; a transient one is retried after a backoff (or after
-- retry_after, e.g. from HTTP 429) until max_attempts. Returns 'retry', 'requeued' (the order
-- changed meanwhile: new data gets a fresh try) or 'dead'.
CREATE FUNCTION @extschema@.fail_job(job_id bigint, attempt_token bigint, error jsonb,
                                     permanent boolean DEFAULT false, retry_after interval DEFAULT NULL)
RETURNS text
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    j @extschema@.jobs;
    v_error jsonb;
    v_version bigint;
    v_next timestamptz;
    v_operation text;
BEGIN
    j := @extschema@._lock_running_job(job_id, attempt_token);
    IF error IS NULL OR jsonb_typeof(error) <> 'object' OR jsonb_typeof(error -> 'message') IS DISTINCT FROM 'string' THEN
        RAISE EXCEPTION 'error must be a JSON object with a "message" string'
            USING ERRCODE = '22023', HINT = 'Example: {"type": "OdooError", "odoo_error": "odoo.exceptions.UserError", "message": "..."}';
    END IF;
    IF retry_after IS NOT NULL AND (retry_after < interval '0' OR retry_after > interval '1 day') THEN
        RAISE EXCEPTION 'retry_after must be between 0 and 1 day, got %', retry_after USING ERRCODE = '22023';
    END IF;
    v_error := error || jsonb_build_object('permanent', COALESCE(permanent, false), 'attempt', j.attempts,
                                           'at', now());
    v_operation := CASE j.kind WHEN 'pull' THEN 'PULL' WHEN 'import' THEN 'IMPORT' ELSE
                   (SELECT CASE WHEN s.deleted THEN 'DELETE' WHEN s.odoo_id IS NULL THEN 'CREATE' ELSE 'UPDATE' END
                    FROM @extschema@.order_state s WHERE s.tracking_id = j.tracking_id AND s.order_key = j.order_key) END;
    PERFORM @extschema@._log_attempt(j, COALESCE(v_operation, 'CREATE'), false, v_error, '{}');

    IF j.kind = 'push' THEN
        v_version := @extschema@._current_version(j.tracking_id, j.order_key);
        IF v_version > j.claimed_version THEN
            PERFORM @extschema@._requeue_fresh(j.id, v_error);
            RETURN 'requeued';
        END IF;
    END IF;

    IF COALESCE(permanent, false) OR j.attempts >= @extschema@._setting('max_attempts')::text::int THEN
        PERFORM @extschema@._dead_letter(j, v_error);
        RETURN 'dead';
    END IF;

    v_next := now() + COALESCE(retry_after, @extschema@._backoff(j.attempts));
    UPDATE @extschema@.jobs q
    SET state = 'failed', run_after = v_next, lease_owner = NULL, lease_until = NULL, attempt_token = NULL,
        last_error = v_error
    WHERE q.id = j.id;
    IF j.kind = 'push' THEN
        UPDATE @extschema@.order_state s
        SET sync_status = CASE WHEN s.sync_status = 'CONFLICT' THEN 'CONFLICT' ELSE 'SYNC_FAILED' END,
            last_error = v_error, error_permanent = false
        WHERE s.tracking_id = j.tracking_id AND s.order_key = j.order_key;
        PERFORM @extschema@._write_back(j.tracking_id, j.order_key, jsonb_build_object('sync_status', 'SYNC_FAILED'));
        PERFORM @extschema@._event('ORDER_SYNC_FAILED', j.tracking_id, j.order_key,
            jsonb_build_object('job_id', j.id, 'attempt', j.attempts, 'version', j.claimed_version, 'dead_letter', false,
                               'next_attempt_at', v_next, 'error', v_error));
    END IF;
    RETURN 'retry';
END
$$;

-- Brings a dead job back into the queue with a fresh attempt count. When its order already
-- has a new job (it changed since), that job is returned instead.
CREATE FUNCTION @extschema@.retry_job(job_id bigint) RETURNS bigint
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    h @extschema@.job_history;
    v_active bigint;
BEGIN
    IF job_id IS NULL THEN
        RAISE EXCEPTION 'retry_job needs a job id, got NULL' USING ERRCODE = '22004',
            HINT = 'See SELECT job_id FROM odoo_sync.dead_letters;';
    END IF;
    SELECT * INTO h FROM @extschema@.job_history jh WHERE jh.id = retry_job.job_id FOR UPDATE;
    IF NOT FOUND OR h.state <> 'dead' THEN
        RAISE EXCEPTION 'job % is not a dead letter', job_id
            USING ERRCODE = '55000', HINT = 'See SELECT job_id FROM odoo_sync.dead_letters;';
    END IF;
    IF h.kind = 'push' THEN
        PERFORM @extschema@._lock_order(h.tracking_id, h.order_key);
        SELECT s.job_id INTO v_active FROM @extschema@.order_state s
        WHERE s.tracking_id = h.tracking_id AND s.order_key = h.order_key FOR UPDATE;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'the order of job % is no longer tracked', job_id USING ERRCODE = '55000';
        END IF;
        IF v_active IS NOT NULL THEN
            DELETE FROM @extschema@.job_history WHERE id = h.id;
            RETURN v_active;
        END IF;
    END IF;
    DELETE FROM @extschema@.job_history WHERE id = h.id;
    INSERT INTO @extschema@.jobs (id, kind, tracking_id, order_key, odoo_id, batch_id, payload, created_at)
    OVERRIDING SYSTEM VALUE
    VALUES (h.id, h.kind, h.tracking_id, h.order_key, h.odoo_id, h.batch_id, h.payload, h.created_at);
    IF h.kind = 'push' THEN
        UPDATE @extschema@.order_state s
        SET job_id = h.id, last_error = NULL, error_permanent = false,
            sync_status = CASE WHEN s.sync_status = 'CONFLICT' THEN 'CONFLICT' ELSE 'PENDING_SYNC' END
        WHERE s.tracking_id = h.tracking_id AND s.order_key = h.order_key;
        PERFORM @extschema@._write_back(h.tracking_id, h.order_key, jsonb_build_object('sync_status', 'PENDING_SYNC'));
    END IF;
    PERFORM @extschema@._notify('queue');
    RETURN h.id;
END
$$;

-- Removes what retention says is old: finished jobs, attempt logs, events, silent workers.
-- The worker calls it periodically; DBAs may call it too. Returns the counts removed.
CREATE FUNCTION @extschema@.maintenance() RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_history interval := make_interval(days => @extschema@._setting('history_retention_days')::text::int);
    v_events interval := make_interval(days => @extschema@._setting('event_retention_days')::text::int);
    n_jobs bigint; n_log bigint; n_events bigint; n_workers bigint;
BEGIN
    DELETE FROM @extschema@.job_history WHERE finished_at < now() - v_history;
    GET DIAGNOSTICS n_jobs = ROW_COUNT;
    DELETE FROM @extschema@.sync_log WHERE finished_at < now() - v_history;
    GET DIAGNOSTICS n_log = ROW_COUNT;
    DELETE FROM @extschema@.event_log WHERE occurred_at < now() - v_events;
    GET DIAGNOSTICS n_events = ROW_COUNT;
    DELETE FROM @extschema@.worker_heartbeats WHERE last_seen < now() - interval '1 day';
    GET DIAGNOSTICS n_workers = ROW_COUNT;
    RETURN jsonb_build_object('job_history', n_jobs, 'sync_log', n_log, 'events', n_events, 'workers', n_workers);
END
$$;

-- The document order_document() and order_documents() return, from what they read: the
-- order's sync state, version, order row and items (NULL row: the order is gone).
CREATE FUNCTION @extschema@._document(st @extschema@.order_state, p_tracking_id integer, p_order_key text,
                                      p_version bigint, p_order jsonb, p_items jsonb, p_item_scales jsonb)
RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN jsonb_build_object(
        'link', COALESCE(st.link, 'xmlid'), 'odoo_write_date', st.odoo_write_date, 'odoo_state', st.odoo_state,
        'tracking_id', p_tracking_id, 'order_key', p_order_key,
        'version', p_version,
        'deleted', p_order IS NULL,
        'order', p_order, 'items', COALESCE(p_items, '[]'),
        'odoo_id', st.odoo_id, 'odoo_name', st.odoo_name, 'sync_status', st.sync_status,
        'base_snapshot', st.base_snapshot, 'tombstone', st.tombstone,
        -- An earlier push was noted and not acknowledged: it may have written to Odoo, even an
        -- order this one creates.
        'attempted', st.attempt_snapshot IS NOT NULL,
        -- The Odoo order an Odoo user deleted (see order_state.odoo_deleted_id).
        'deleted_in_odoo', st.odoo_deleted_id,
        -- {"html": ...} to write into Odoo's notes; absent (NULL) to leave them alone.
        'odoo_notes', CASE WHEN p_order ? 'notes' THEN @extschema@._notes_to_write(p_order ->> 'notes', st.base_snapshot) END,
        -- Odoo's datetime for every line's date_planned; absent (NULL) to leave Odoo's dates alone.
        'odoo_date_planned', @extschema@._odoo_datetime(p_order ->> 'requested_delivery_date'),
        -- Decimals the item columns keep (NULL: as given): a push by id leaves an Odoo value
        -- alone that only differs from the local one by this rounding.
        'item_scales', p_item_scales);
END
$$;

-- The items of an order (order_document's form), those created from Odoo lines with their
-- Odoo line id: the push updates those lines by id.
CREATE FUNCTION @extschema@._with_line_ids(p_tracking_id integer, p_order_key text, p_items jsonb)
RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_items jsonb[] := ARRAY[]::jsonb[];
    v_item jsonb;
    v_line integer;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM @extschema@.line_links l
                   WHERE l.tracking_id = p_tracking_id AND l.order_key = p_order_key) THEN
        RETURN p_items;
    END IF;
    -- Item by item, each link found by its primary key. Joined to the items (or through
    -- = ANY), the links were read in full: the planner cannot count a JSON array's elements,
    -- and right after an import it has no statistics of line_links either.
    FOR v_item IN SELECT i.value FROM jsonb_array_elements(p_items) i LOOP
        SELECT l.odoo_line_id INTO v_line FROM @extschema@.line_links l
        WHERE l.tracking_id = p_tracking_id AND l.item_key = v_item ->> 'id';
        v_items := v_items || CASE WHEN v_line IS NULL THEN v_item
                                   ELSE v_item || jsonb_build_object('odoo_line_id', v_line) END;
    END LOOP;
    RETURN to_jsonb(v_items);
END
$$;

-- The tracking's column lists for reading an order's row and items in canonical names, as
-- jsonb_build_object arguments over the aliases o and i, and the type of the order key.
-- Quantities and money travel as strings ("1.500"), so no JSON float ever rounds them.
CREATE FUNCTION @extschema@._document_columns(t @extschema@.tracked_tables,
                                              OUT order_cols text, OUT item_cols text, OUT key_type text)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    key_type := @extschema@._coltype(t.orders_table, t.mapping -> 'orders' ->> 'id');
    SELECT string_agg(format(CASE WHEN c.type_class = 'amount' THEN '%L, o.%I::text' ELSE '%L, o.%I' END, m.key, m.value), ', ')
    INTO order_cols
    FROM jsonb_each_text(t.mapping -> 'orders') m
    JOIN @extschema@.column_spec c ON c.table_role = 'orders' AND c.canonical = m.key;
    SELECT string_agg(format(CASE WHEN c.type_class = 'amount' THEN '%L, i.%I::text' ELSE '%L, i.%I' END, m.key, m.value), ', ')
    INTO item_cols
    FROM jsonb_each_text(t.mapping -> 'items') m
    JOIN @extschema@.column_spec c ON c.table_role = 'items' AND c.canonical = m.key;
END
$$;

-- The item scales of a tracking, as order_document() reports them.
CREATE FUNCTION @extschema@._item_scales(p_tracking_id integer) RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN jsonb_build_object('quantity', @extschema@._item_scale(p_tracking_id, 'quantity'),
                              'unit_price', @extschema@._item_scale(p_tracking_id, 'unit_price'));
END
$$;

-- What a worker needs to push one order, in canonical names (the tracking's column mapping
-- applied): the order row, its items, and the sync state (Odoo id, base snapshot of the last
-- sync, tombstone of a deleted order). `version` is what complete_job is told was pushed.
-- Read it after claiming: changes committed later are pushed by the requeue complete_job does.
CREATE FUNCTION @extschema@.order_document(tracking_id integer, order_key text) RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
    t @extschema@.tracked_tables;
    st @extschema@.order_state;
    c record;
    v_order jsonb;
    v_items jsonb;
    v_version bigint;
BEGIN
    SELECT * INTO t FROM @extschema@.tracked_tables tt WHERE tt.id = order_document.tracking_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'tracking % does not exist', COALESCE(tracking_id::text, 'NULL') USING ERRCODE = 'P0002';
    END IF;
    SELECT * INTO st FROM @extschema@.order_state s WHERE s.tracking_id = t.id AND s.order_key = order_document.order_key;
    -- The version before the rows: each statement here sees what committed before it began,
    -- so a change committed in between may make the rows newer than the version (complete_job
    -- then requeues: one push too many), never older (that change would never be pushed).
    v_version := @extschema@._current_version(t.id, order_key);
    c := @extschema@._document_columns(t);
    EXECUTE format('SELECT jsonb_build_object(%s) FROM %s o WHERE o.%I = $1::%s',
                   c.order_cols, t.orders_table, t.mapping -> 'orders' ->> 'id', c.key_type)
        INTO v_order USING order_key;
    EXECUTE format('SELECT COALESCE(jsonb_agg(jsonb_build_object(%s) ORDER BY i.%I), ''[]'') FROM %s i WHERE i.%I = $1::%s',
                   c.item_cols, t.mapping -> 'items' ->> 'id', t.items_table, t.mapping -> 'items' ->> 'order_id', c.key_type)
        INTO v_items USING order_key;
    RETURN @extschema@._document(st, t.id, order_key, v_version, v_order,
                                 @extschema@._with_line_ids(t.id, order_key, v_items), @extschema@._item_scales(t.id));
END
$$;

-- order_document() of many orders, with n, the position of each in the arrays given (a worker
-- reads a batch's documents in one call). The rows of one tracking's orders and items are read
-- by one query: a query built for the tracking's tables is parsed and planned on every run,
-- which, run once per order, cost more than reading the rows (200 documents: 21 to 30 ms
-- against 214 ms). Each document is read in one statement, so its sync state, version, order
-- row and items are of the same moment.
CREATE FUNCTION @extschema@.order_documents(tracking_ids integer[], order_keys text[])
RETURNS TABLE (n bigint, document jsonb)
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
    t @extschema@.tracked_tables;
    v_tracking integer;
    c record;
BEGIN
    IF cardinality(tracking_ids) IS DISTINCT FROM cardinality(order_keys) THEN
        RAISE EXCEPTION 'order_documents needs as many order keys (%) as tracking ids (%)',
            COALESCE(cardinality(order_keys)::text, 'NULL'), COALESCE(cardinality(tracking_ids)::text, 'NULL')
            USING ERRCODE = '22023';
    END IF;
    FOR v_tracking IN SELECT DISTINCT u.t FROM unnest(tracking_ids) AS u(t) LOOP
        SELECT * INTO t FROM @extschema@.tracked_tables tt WHERE tt.id = v_tracking;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'tracking % does not exist', COALESCE(v_tracking::text, 'NULL') USING ERRCODE = 'P0002';
        END IF;
        c := @extschema@._document_columns(t);
        -- $1 the keys, $2 their positions, $3 the tracking id, $4 its item scales.
        RETURN QUERY EXECUTE format($q$
            SELECT u.n, @extschema@._document(s, $3, u.k, @extschema@._current_version($3, u.k), d.o,
                                              @extschema@._with_line_ids($3, u.k, COALESCE(it.items, '[]')), $4)
            FROM unnest($1::text[], $2::bigint[]) AS u(k, n)
            LEFT JOIN @extschema@.order_state s ON s.tracking_id = $3 AND s.order_key = u.k
            LEFT JOIN LATERAL (SELECT pg_catalog.jsonb_build_object(%1$s) AS o
                               FROM %2$s o WHERE o.%3$I = u.k::%4$s) d ON true
            LEFT JOIN LATERAL (SELECT pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(%5$s) ORDER BY i.%6$I) AS items
                               FROM %7$s i WHERE i.%8$I = u.k::%4$s) it ON true
            $q$,
            c.order_cols, t.orders_table, t.mapping -> 'orders' ->> 'id', c.key_type,
            c.item_cols, t.mapping -> 'items' ->> 'id', t.items_table, t.mapping -> 'items' ->> 'order_id')
        USING ARRAY(SELECT u.k FROM unnest(tracking_ids, order_keys) WITH ORDINALITY AS u(t, k, n)
                    WHERE u.t = v_tracking ORDER BY u.n),
              ARRAY(SELECT u.n FROM unnest(tracking_ids, order_keys) WITH ORDINALITY AS u(t, k, n)
                    WHERE u.t = v_tracking ORDER BY u.n),
              t.id, @extschema@._item_scales(t.id);
    END LOOP;
END
$$;
