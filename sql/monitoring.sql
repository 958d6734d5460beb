-- odoo_sync: health, metrics, history, and the worker heartbeat they read.

-- A worker reports that it is alive and how Odoo and its cache look from where it runs.
-- info: {"odoo_status": "CONNECTED|DISCONNECTED|ERROR", "cache_status": "HEALTHY|DEGRADED|UNAVAILABLE",
--        "hostname": ..., "pid": ..., "version": ..., anything else}. Returns the settings, so
-- workers pick up changes with their heartbeat.
CREATE FUNCTION @extschema@.heartbeat(worker_id text, info jsonb DEFAULT '{}') RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    v_info jsonb := COALESCE(info, '{}');
BEGIN
    IF worker_id IS NULL OR length(worker_id) = 0 OR length(worker_id) > 200 THEN
        RAISE EXCEPTION 'worker_id must be a non-empty name of at most 200 characters' USING ERRCODE = '22023';
    END IF;
    IF jsonb_typeof(v_info) <> 'object' OR length(v_info::text) > 16384 THEN
        RAISE EXCEPTION 'info must be a JSON object of at most 16 kB' USING ERRCODE = '22023';
    END IF;
    IF COALESCE(v_info ->> 'odoo_status', 'DISCONNECTED') NOT IN ('CONNECTED', 'DISCONNECTED', 'ERROR') THEN
        RAISE EXCEPTION 'odoo_status must be CONNECTED, DISCONNECTED or ERROR, got %', v_info -> 'odoo_status'
            USING ERRCODE = '22023';
    END IF;
    IF COALESCE(v_info ->> 'cache_status', 'HEALTHY') NOT IN ('HEALTHY', 'DEGRADED', 'UNAVAILABLE') THEN
        RAISE EXCEPTION 'cache_status must be HEALTHY, DEGRADED or UNAVAILABLE, got %', v_info -> 'cache_status'
            USING ERRCODE = '22023';
    END IF;
    INSERT INTO @extschema@.worker_heartbeats AS w (worker_id, hostname, pid, version, odoo_status, cache_status, info)
    VALUES (heartbeat.worker_id, v_info ->> 'hostname',
            CASE WHEN jsonb_typeof(v_info -> 'pid') = 'number' THEN (v_info ->> 'pid')::numeric::integer END,
            v_info ->> 'version', COALESCE(v_info ->> 'odoo_status', 'DISCONNECTED'),
            COALESCE(v_info ->> 'cache_status', 'HEALTHY'), v_info)
    ON CONFLICT (worker_id) DO UPDATE SET
        hostname = EXCLUDED.hostname, pid = EXCLUDED.pid, version = EXCLUDED.version,
        odoo_status = EXCLUDED.odoo_status, cache_status = EXCLUDED.cache_status, info = EXCLUDED.info,
        last_seen = now();
    RETURN @extschema@.get_settings();
END
$$;

-- Overall health, from the queue, the attempt log and the live workers' heartbeats.
CREATE FUNCTION @extschema@.health()
RETURNS TABLE (is_healthy boolean, last_successful_sync timestamptz, consecutive_failures integer,
               odoo_connection_status text, cache_status text, queue_status text, error_rate numeric)
LANGUAGE plpgsql STABLE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_timeout interval := make_interval(secs => @extschema@._setting('worker_timeout_seconds')::text::int);
    v_live integer;
    v_odoo text;
    v_cache text;
    v_ready bigint;
    v_waiting bigint;
    v_oldest timestamptz;
    v_queue text;
    v_last timestamptz;
    v_failures integer;
    v_rate numeric;
BEGIN
    SELECT count(*),
           CASE WHEN bool_or(w.odoo_status = 'CONNECTED') THEN 'CONNECTED'
                WHEN bool_or(w.odoo_status = 'ERROR') THEN 'ERROR' ELSE 'DISCONNECTED' END,
           CASE WHEN count(*) = 0 THEN 'UNAVAILABLE'
                WHEN bool_or(w.cache_status = 'HEALTHY') THEN 'HEALTHY'
                WHEN bool_or(w.cache_status = 'DEGRADED') THEN 'DEGRADED' ELSE 'UNAVAILABLE' END
    INTO v_live, v_odoo, v_cache
    FROM @extschema@.worker_heartbeats w WHERE w.last_seen > now() - v_timeout;

    -- Backlog counts every job still to do, also those waiting for their next retry (during an
    -- Odoo outage all of them are): only jobs held by an open conflict (run_after infinity)
    -- wait for a person, not for the worker.
    SELECT count(*) FILTER (WHERE j.state <> 'running' AND j.run_after <= now()),
           count(*) FILTER (WHERE j.run_after < 'infinity'),
           min(j.created_at) FILTER (WHERE j.run_after < 'infinity')
    INTO v_ready, v_waiting, v_oldest
    FROM @extschema@.jobs j;
    v_queue := CASE
        WHEN v_ready > 0 AND v_live = 0 THEN 'FAILED'
        WHEN v_waiting > @extschema@._setting('backlog_max_jobs')::text::bigint
          OR v_oldest < now() - make_interval(secs => @extschema@._setting('backlog_max_age_seconds')::text::int)
            THEN 'BACKLOGGED'
        ELSE 'HEALTHY' END;

    SELECT max(l.finished_at) INTO v_last FROM @extschema@.sync_log l WHERE l.success;
    SELECT count(*) INTO v_failures FROM @extschema@.sync_log l
    WHERE NOT l.success AND l.finished_at > COALESCE(v_last, '-infinity');
    SELECT COALESCE(round(100.0 * count(*) FILTER (WHERE NOT l.success) / NULLIF(count(*), 0), 2), 0)
    INTO v_rate FROM @extschema@.sync_log l WHERE l.finished_at > now() - interval '24 hours';

    RETURN QUERY SELECT v_odoo = 'CONNECTED' AND v_queue = 'HEALTHY' AND v_cache <> 'UNAVAILABLE',
                        v_last, v_failures, v_odoo, v_cache, v_queue, v_rate;
END
$$;

-- The most recent finished attempt.
CREATE FUNCTION @extschema@.last_sync_status() RETURNS @extschema@.sync_result
LANGUAGE sql STABLE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    SELECT ROW(l.success, l.order_key, l.odoo_id, l.operation, l.finished_at, l.duration_ms, l.error, l.warnings)::@extschema@.sync_result
    FROM @extschema@.sync_log l ORDER BY l.id DESC LIMIT 1
$$;

-- Counts, failures, duration percentiles and throughput of the attempts in a time window,
-- plus the queue as it is now.
CREATE FUNCTION @extschema@.sync_metrics("window" interval DEFAULT '1 hour')
RETURNS TABLE (attempts bigint, succeeded bigint, failed bigint, error_rate numeric,
               p50_duration_ms numeric, p95_duration_ms numeric, throughput_per_minute numeric,
               queued bigint, running bigint, dead_letters bigint)
LANGUAGE plpgsql STABLE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF "window" IS NULL OR "window" <= interval '0' OR "window" > interval '366 days' THEN
        RAISE EXCEPTION 'window must be a positive interval of at most 366 days, got %', COALESCE("window"::text, 'NULL')
            USING ERRCODE = '22023';
    END IF;
    RETURN QUERY
    SELECT count(*), count(*) FILTER (WHERE l.success), count(*) FILTER (WHERE NOT l.success),
           COALESCE(round(100.0 * count(*) FILTER (WHERE NOT l.success) / NULLIF(count(*), 0), 2), 0),
           round((percentile_cont(0.5) WITHIN GROUP (ORDER BY l.duration_ms))::numeric, 1),
           round((percentile_cont(0.95) WITHIN GROUP (ORDER BY l.duration_ms))::numeric, 1),
           round(count(*) FILTER (WHERE l.success) / (extract(epoch FROM "window") / 60.0), 2),
           (SELECT count(*) FROM @extschema@.jobs j WHERE j.state <> 'running'),
           (SELECT count(*) FROM @extschema@.jobs j WHERE j.state = 'running'),
           (SELECT count(*) FROM @extschema@.job_history h WHERE h.state = 'dead')
    FROM @extschema@.sync_log l WHERE l.finished_at > now() - "window";
END
$$;

-- Every conflict of one order, newest first.
CREATE FUNCTION @extschema@.conflict_history(order_id text)
RETURNS SETOF @extschema@.conflicts
LANGUAGE sql STABLE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    SELECT * FROM @extschema@.conflicts c WHERE c.order_key = conflict_history.order_id ORDER BY c.detected_at DESC
$$;

-- The same for the order key as the tracked table types it (like sync_order).
CREATE FUNCTION @extschema@.conflict_history(order_id uuid)
RETURNS SETOF @extschema@.conflicts
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$ SELECT * FROM @extschema@.conflict_history(order_id::text) $$;

CREATE FUNCTION @extschema@.conflict_history(order_id bigint)
RETURNS SETOF @extschema@.conflicts
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$ SELECT * FROM @extschema@.conflict_history(order_id::text) $$;
