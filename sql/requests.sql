-- odoo_sync: requests. Each returns at once with a job or batch id; the worker does the
-- network work. await_job() waits for the outcome.

-- Finds the tracked tables that hold an order with this key. A key whose text does not fit a
-- table's key type simply is not in that table.
CREATE FUNCTION @extschema@._find_order(p_key text, p_key_types text[])
RETURNS SETOF integer
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t @extschema@.tracked_tables;
    v_found boolean;
BEGIN
    FOR t IN SELECT * FROM @extschema@.tracked_tables tt WHERE tt.key_type = ANY (p_key_types)
             AND EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = tt.orders_table) ORDER BY tt.id LOOP
        BEGIN
            EXECUTE format('SELECT EXISTS (SELECT 1 FROM %s WHERE %I = $1::%s)', t.orders_table,
                           t.mapping -> 'orders' ->> 'id',
                           @extschema@._coltype(t.orders_table, t.mapping -> 'orders' ->> 'id'))
            INTO v_found USING p_key;
        EXCEPTION WHEN invalid_text_representation OR numeric_value_out_of_range THEN
            v_found := false;
        END;
        -- A deleted order still has its state row: syncing it cancels it in Odoo.
        IF v_found OR EXISTS (SELECT 1 FROM @extschema@.order_state s
                              WHERE s.tracking_id = t.id AND s.order_key = p_key) THEN
            RETURN NEXT t.id;
        END IF;
    END LOOP;
END
$$;

-- Makes sure an order has an active push job, ready now; returns its id.
CREATE FUNCTION @extschema@._ensure_push_job(p_tracking_id integer, p_order_key text, p_batch_id bigint)
RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_job bigint;
    v_held boolean;
BEGIN
    PERFORM @extschema@._lock_order(p_tracking_id, p_order_key);
    INSERT INTO @extschema@.order_state (tracking_id, order_key) VALUES (p_tracking_id, p_order_key)
    ON CONFLICT DO NOTHING;
    SELECT job_id, sync_status = 'CONFLICT' INTO v_job, v_held FROM @extschema@.order_state
    WHERE tracking_id = p_tracking_id AND order_key = p_order_key FOR UPDATE;
    -- An order in conflict is not pushed until the conflict is resolved: its job waits.
    IF v_job IS NULL THEN
        INSERT INTO @extschema@.jobs (kind, tracking_id, order_key, batch_id, run_after)
        VALUES ('push', p_tracking_id, p_order_key, p_batch_id, CASE WHEN v_held THEN 'infinity' ELSE now() END)
        RETURNING id INTO v_job;
    ELSE
        -- An explicit request runs now, even when the job waits for a retry.
        UPDATE @extschema@.jobs SET run_after = CASE WHEN v_held THEN 'infinity' ELSE now() END
        WHERE id = v_job AND state <> 'running';
    END IF;
    UPDATE @extschema@.order_state
    SET job_id = v_job, sync_status = CASE WHEN sync_status = 'CONFLICT' THEN 'CONFLICT' ELSE 'PENDING_SYNC' END
    WHERE tracking_id = p_tracking_id AND order_key = p_order_key;
    PERFORM @extschema@._write_back(p_tracking_id, p_order_key, jsonb_build_object('sync_status',
        (SELECT sync_status FROM @extschema@.order_state WHERE tracking_id = p_tracking_id AND order_key = p_order_key)));
    PERFORM @extschema@._notify('queue');
    RETURN v_job;
END
$$;

-- The order's key as odoo_sync records it (the key column's text) for a key given in any
-- spelling its type accepts (' 42' or '042' for a bigint, an uppercase uuid); as given when no
-- row has it (a deleted order, known by its state row).
CREATE FUNCTION @extschema@._stored_key(p_tracking_id integer, p_key text) RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t @extschema@.tracked_tables;
    v_key text;
BEGIN
    SELECT * INTO t FROM @extschema@.tracked_tables tt WHERE tt.id = p_tracking_id;
    BEGIN
        EXECUTE format('SELECT %I::text FROM %s WHERE %I = $1::%s LIMIT 1',
                       t.mapping -> 'orders' ->> 'id', t.orders_table, t.mapping -> 'orders' ->> 'id',
                       @extschema@._coltype(t.orders_table, t.mapping -> 'orders' ->> 'id'))
            INTO v_key USING p_key;
    EXCEPTION WHEN invalid_text_representation OR numeric_value_out_of_range THEN
        v_key := NULL;
    END;
    RETURN COALESCE(v_key, p_key);
END
$$;

CREATE FUNCTION @extschema@._sync_order(p_key text, p_key_types text[]) RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_tables integer[];
    v_key text;
BEGIN
    IF p_key IS NULL THEN
        RAISE EXCEPTION 'sync_order needs an order id, got NULL' USING ERRCODE = '22004';
    END IF;
    v_tables := ARRAY(SELECT @extschema@._find_order(p_key, p_key_types));
    IF cardinality(v_tables) = 0 THEN
        RAISE EXCEPTION 'order % not found in any tracked orders table', p_key
            USING ERRCODE = 'P0002',
                  HINT = 'Check the id; SELECT orders_table FROM odoo_sync.tracked_tables lists the tracked tables.';
    ELSIF cardinality(v_tables) > 1 THEN
        RAISE EXCEPTION 'order % exists in several tracked tables: %', p_key,
            (SELECT string_agg(orders_table::text, ', ') FROM @extschema@.tracked_tables WHERE id = ANY (v_tables))
            USING ERRCODE = '21000';
    END IF;
    -- The recorded spelling: another one would be a second order, and a second Odoo order.
    v_key := @extschema@._stored_key(v_tables[1], p_key);
    -- An order whose Odoo order an Odoo user deleted, in a table without a status column to
    -- cancel it in, stays deleted in Odoo whatever changes here: asked for by name, it is
    -- created there again. The order's lock first, as every writer of its state row takes it
    -- (an application change holds both until it commits).
    PERFORM @extschema@._lock_order(v_tables[1], v_key);
    UPDATE @extschema@.order_state s SET odoo_deleted_id = NULL
    FROM @extschema@.tracked_tables t
    WHERE t.id = v_tables[1] AND NOT t.mapping -> 'orders' ? 'status'
      AND s.tracking_id = t.id AND s.order_key = v_key
      AND s.odoo_id IS NULL AND s.odoo_deleted_id IS NOT NULL;
    RETURN @extschema@._ensure_push_job(v_tables[1], v_key, NULL);
END
$$;

-- Push one order to Odoo now. Returns the job id (the order's existing job, if it has one).
CREATE FUNCTION @extschema@.sync_order(order_id uuid) RETURNS bigint
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$ SELECT @extschema@._sync_order(order_id::text, ARRAY['uuid']) $$;

CREATE FUNCTION @extschema@.sync_order(order_id bigint) RETURNS bigint
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$ SELECT @extschema@._sync_order(order_id::text, ARRAY['bigint']) $$;

CREATE FUNCTION @extschema@.sync_order(order_id text) RETURNS bigint
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$ SELECT @extschema@._sync_order(order_id, ARRAY['text', 'uuid', 'bigint']) $$;

-- Pull one Odoo purchase order into the local tables. Returns the job id.
CREATE FUNCTION @extschema@.sync_order_from_odoo(odoo_order_id integer) RETURNS bigint
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_job bigint;
BEGIN
    IF odoo_order_id IS NULL OR odoo_order_id < 1 THEN
        RAISE EXCEPTION 'odoo_order_id must be a positive Odoo record id, got %', COALESCE(odoo_order_id::text, 'NULL')
            USING ERRCODE = '22023';
    END IF;
    INSERT INTO @extschema@.jobs AS j (kind, odoo_id, payload)
    VALUES ('pull', odoo_order_id, jsonb_build_object('odoo_order_id', odoo_order_id))
    ON CONFLICT (odoo_id) WHERE kind = 'pull' DO UPDATE SET run_after = LEAST(j.run_after, now())
    RETURNING id INTO v_job;
    PERFORM @extschema@._notify('queue');
    RETURN v_job;
END
$$;

-- Enqueue orders that are not in sync: NOT_SYNCED, or SYNC_FAILED with a retryable error
-- (orders whose last error was permanent are counted as skipped: fix the data, then
-- sync_order() them). Returns the batch id; batch_status() follows it.
CREATE FUNCTION @extschema@.batch_sync_pending(batch_size integer DEFAULT 100) RETURNS bigint
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_batch bigint;
    v_total integer := 0;
    v_skipped integer;
    v_remaining bigint;
    r record;
BEGIN
    IF batch_size IS NULL OR batch_size < 1 OR batch_size > 10000 THEN
        RAISE EXCEPTION 'batch_size must be between 1 and 10000, got %', COALESCE(batch_size::text, 'NULL')
            USING ERRCODE = '22023';
    END IF;
    INSERT INTO @extschema@.batches (kind) VALUES ('push') RETURNING id INTO v_batch;
    FOR r IN
        SELECT s.tracking_id, s.order_key FROM @extschema@.order_state s
        WHERE s.job_id IS NULL AND NOT s.deleted
          AND (s.sync_status = 'NOT_SYNCED' OR (s.sync_status = 'SYNC_FAILED' AND NOT s.error_permanent))
        ORDER BY s.changed_at, s.tracking_id, s.order_key
        LIMIT batch_size
    LOOP
        -- _ensure_push_job locks the order first; an order that got a job meanwhile joins it.
        PERFORM @extschema@._ensure_push_job(r.tracking_id, r.order_key, v_batch);
        v_total := v_total + 1;
    END LOOP;
    SELECT count(*) INTO v_skipped FROM @extschema@.order_state s
    WHERE s.job_id IS NULL AND s.sync_status = 'SYNC_FAILED' AND s.error_permanent;
    SELECT count(*) INTO v_remaining FROM @extschema@.order_state s
    WHERE s.job_id IS NULL AND NOT s.deleted
      AND (s.sync_status = 'NOT_SYNCED' OR (s.sync_status = 'SYNC_FAILED' AND NOT s.error_permanent));
    UPDATE @extschema@.batches
    SET total = v_total, skipped = v_skipped,
        next_token = CASE WHEN v_remaining > 0 THEN format('%s more waiting', v_remaining) END
    WHERE id = v_batch;
    RETURN v_batch;
END
$$;

-- Progress of a batch. duration runs until the last job finished (or until now).
-- VOLATILE so that batch_status(batch_sync_pending()) in one statement sees the new batch.
CREATE FUNCTION @extschema@.batch_status(batch_id bigint)
RETURNS TABLE (total_processed integer, successful integer, failed integer, skipped integer,
               duration interval, next_batch_token text, total integer, pending integer)
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    b @extschema@.batches;
    v_done integer; v_dead integer; v_pending integer; v_last timestamptz;
BEGIN
    SELECT * INTO b FROM @extschema@.batches WHERE id = batch_status.batch_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'batch % does not exist', COALESCE(batch_status.batch_id::text, 'NULL') USING ERRCODE = 'P0002';
    END IF;
    SELECT count(*) FILTER (WHERE h.state = 'done'), count(*) FILTER (WHERE h.state = 'dead'), max(h.finished_at)
    INTO v_done, v_dead, v_last
    FROM @extschema@.job_history h WHERE h.batch_id = b.id;
    SELECT count(*) INTO v_pending FROM @extschema@.jobs j WHERE j.batch_id = b.id;
    IF b.kind = 'import' AND b.progress <> '{}' THEN
        v_done := COALESCE((b.progress ->> 'imported')::int, 0);
        b.skipped := COALESCE((b.progress ->> 'skipped')::int, 0);
        b.total := COALESCE((b.progress ->> 'found')::int, b.total);
        -- An import job that ended dead stopped part way: the orders it did not get to failed
        -- too, or the batch would read as a success with nothing pending.
        v_dead := CASE WHEN v_pending = 0 AND v_dead > 0
                       THEN GREATEST(b.total - v_done - b.skipped, COALESCE((b.progress ->> 'failed')::int, 0))
                       ELSE COALESCE((b.progress ->> 'failed')::int, 0) END;
    END IF;
    RETURN QUERY SELECT v_done + v_dead, v_done, v_dead, b.skipped,
        CASE WHEN v_pending = 0 AND v_last IS NOT NULL THEN v_last - b.created_at ELSE now() - b.created_at END,
        b.next_token, b.total, v_pending;
END
$$;

-- Import Odoo purchase orders matching a filter. The filter is checked key by key and stored
-- typed; it never reaches SQL or an Odoo domain as text. Keys: date_from, date_to (ISO dates or
-- timestamps), states (Odoo states), partner_ids (Odoo partner ids), limit (1..100000).
CREATE FUNCTION @extschema@.import_orders(filter jsonb) RETURNS bigint
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_key text;
    v_clean jsonb := '{}';
    v_from timestamptz;
    v_to timestamptz;
    v_item jsonb;
    v_states text[] := '{}';
    v_partners integer[] := '{}';
    v_batch bigint;
BEGIN
    IF filter IS NULL OR jsonb_typeof(filter) <> 'object' THEN
        RAISE EXCEPTION 'import_orders expects a JSON object filter, got %', COALESCE(jsonb_typeof(filter), 'NULL')
            USING ERRCODE = '22023',
                  HINT = 'Example: SELECT odoo_sync.import_orders(''{"date_from": "2026-01-01", "states": ["purchase"]}'')';
    END IF;
    IF length(filter::text) > 65536 THEN
        RAISE EXCEPTION 'import filter is too large (% bytes, at most 65536)', length(filter::text) USING ERRCODE = '22023';
    END IF;
    FOR v_key IN SELECT jsonb_object_keys(filter) LOOP
        IF v_key NOT IN ('date_from', 'date_to', 'states', 'partner_ids', 'limit') THEN
            RAISE EXCEPTION 'unknown import filter key "%"', v_key
                USING ERRCODE = '22023', HINT = 'Known keys: date_from, date_to, states, partner_ids, limit.';
        END IF;
    END LOOP;
    FOREACH v_key IN ARRAY ARRAY['date_from', 'date_to'] LOOP
        CONTINUE WHEN NOT filter ? v_key;
        IF jsonb_typeof(filter -> v_key) <> 'string'
           OR (filter ->> v_key) !~ '^\d{4}-\d{2}-\d{2}([ T]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}(:?\d{2})?)?)?$' THEN
            RAISE EXCEPTION 'import filter "%" must be an ISO date like "2026-01-31", got %', v_key, filter -> v_key
                USING ERRCODE = '22007';
        END IF;
        BEGIN
            IF v_key = 'date_from' THEN
                v_from := (filter ->> v_key)::timestamptz;
            ELSE
                v_to := (filter ->> v_key)::timestamptz;
            END IF;
        EXCEPTION WHEN datetime_field_overflow OR invalid_datetime_format OR invalid_time_zone_displacement_value THEN
            RAISE EXCEPTION 'import filter "%" is not a valid date: %', v_key, filter ->> v_key USING ERRCODE = '22008';
        END;
    END LOOP;
    IF v_from > v_to THEN
        RAISE EXCEPTION 'import filter date_from (%) is after date_to (%)', filter ->> 'date_from', filter ->> 'date_to'
            USING ERRCODE = '22023';
    END IF;
    IF filter ? 'states' THEN
        IF jsonb_typeof(filter -> 'states') <> 'array' OR jsonb_array_length(filter -> 'states') = 0 THEN
            RAISE EXCEPTION 'import filter "states" must be a non-empty array of Odoo states' USING ERRCODE = '22023';
        END IF;
        FOR v_item IN SELECT value FROM jsonb_array_elements(filter -> 'states') LOOP
            IF jsonb_typeof(v_item) <> 'string'
               OR (v_item #>> '{}') NOT IN ('draft', 'sent', 'to approve', 'purchase', 'done', 'cancel') THEN
                RAISE EXCEPTION 'unknown Odoo purchase order state %', left(v_item::text, 100)
                    USING ERRCODE = '22023', HINT = 'States: draft, sent, to approve, purchase, done, cancel.';
            END IF;
            v_states := v_states || (v_item #>> '{}');
        END LOOP;
        v_clean := v_clean || jsonb_build_object('states', (SELECT jsonb_agg(DISTINCT s) FROM unnest(v_states) s));
    END IF;
    IF filter ? 'partner_ids' THEN
        IF jsonb_typeof(filter -> 'partner_ids') <> 'array' OR jsonb_array_length(filter -> 'partner_ids') = 0
           OR jsonb_array_length(filter -> 'partner_ids') > 1000 THEN
            RAISE EXCEPTION 'import filter "partner_ids" must be an array of 1 to 1000 Odoo partner ids' USING ERRCODE = '22023';
        END IF;
        FOR v_item IN SELECT value FROM jsonb_array_elements(filter -> 'partner_ids') LOOP
            IF jsonb_typeof(v_item) <> 'number' OR (v_item::text)::numeric <> trunc((v_item::text)::numeric)
               OR (v_item::text)::numeric < 1 OR (v_item::text)::numeric > 2147483647 THEN
                RAISE EXCEPTION 'partner id % is not a positive integer', v_item USING ERRCODE = '22023';
            END IF;
            v_partners := v_partners || (v_item::text)::integer;
        END LOOP;
        v_clean := v_clean || jsonb_build_object('partner_ids', (SELECT jsonb_agg(DISTINCT p ORDER BY p) FROM unnest(v_partners) p));
    END IF;
    IF filter ? 'limit' THEN
        IF jsonb_typeof(filter -> 'limit') <> 'number' OR (filter ->> 'limit')::numeric <> trunc((filter ->> 'limit')::numeric)
           OR (filter ->> 'limit')::numeric < 1 OR (filter ->> 'limit')::numeric > 100000 THEN
            RAISE EXCEPTION 'import filter "limit" must be a whole number from 1 to 100000, got %', filter -> 'limit'
                USING ERRCODE = '22023';
        END IF;
        v_clean := v_clean || jsonb_build_object('limit', (filter ->> 'limit')::integer);
    END IF;
    IF v_from IS NOT NULL THEN
        v_clean := v_clean || jsonb_build_object('date_from', to_char(v_from AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS'));
    END IF;
    IF v_to IS NOT NULL THEN
        v_clean := v_clean || jsonb_build_object('date_to', to_char(v_to AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS'));
    END IF;

    INSERT INTO @extschema@.batches (kind, filter) VALUES ('import', v_clean) RETURNING id INTO v_batch;
    INSERT INTO @extschema@.jobs (kind, batch_id, payload) VALUES ('import', v_batch, jsonb_build_object('filter', v_clean));
    PERFORM @extschema@._notify('queue');
    RETURN v_batch;
END
$$;

-- Waits for a job to finish and returns the result of its last attempt. Raises 57014 when the
-- job is still pending after `timeout`. Call it outside the transaction that created the job:
-- until that commits, no worker can see the job.
CREATE FUNCTION @extschema@.await_job(job_id bigint, timeout interval DEFAULT '30 seconds')
RETURNS @extschema@.sync_result
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    v_deadline timestamptz;
    v_state text;
    h @extschema@.job_history;
    r @extschema@.sync_result;
BEGIN
    IF job_id IS NULL THEN
        RAISE EXCEPTION 'await_job needs a job id, got NULL' USING ERRCODE = '22004';
    END IF;
    IF timeout IS NULL OR timeout < interval '0' OR timeout > interval '1 hour' THEN
        RAISE EXCEPTION 'timeout must be between 0 and 1 hour, got %', COALESCE(timeout::text, 'NULL')
            USING ERRCODE = '22023';
    END IF;
    v_deadline := clock_timestamp() + timeout;
    LOOP
        SELECT * INTO h FROM @extschema@.job_history jh WHERE jh.id = await_job.job_id;
        IF FOUND THEN
            SELECT l.success, l.order_key, l.odoo_id, l.operation, l.finished_at, l.duration_ms, l.error, l.warnings
            INTO r FROM @extschema@.sync_log l WHERE l.job_id = h.id ORDER BY l.id DESC LIMIT 1;
            IF NOT FOUND THEN
                r := ROW(h.state = 'done', h.order_key, h.odoo_id,
                         CASE h.kind WHEN 'pull' THEN 'PULL' WHEN 'import' THEN 'IMPORT' ELSE 'UPDATE' END,
                         h.finished_at, NULL, h.last_error, '{}');
            END IF;
            RETURN r;
        END IF;
        SELECT j.state INTO v_state FROM @extschema@.jobs j WHERE j.id = await_job.job_id;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'job % does not exist', job_id
                USING ERRCODE = 'P0002', HINT = 'Finished jobs are kept for history_retention_days.';
        END IF;
        IF clock_timestamp() >= v_deadline THEN
            RAISE EXCEPTION 'job % did not finish within % (it is %)', job_id, timeout, v_state
                USING ERRCODE = '57014',
                      HINT = 'Is a worker running? SELECT * FROM odoo_sync.workers; SELECT * FROM odoo_sync.queue;';
        END IF;
        PERFORM pg_sleep(0.05);
    END LOOP;
END
$$;

-- Turn continuous two-way sync on or off. Workers are told at once (NOTIFY) and react within a
-- second.
CREATE FUNCTION @extschema@.start_realtime() RETURNS void
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$ SELECT @extschema@.update_settings('{"realtime_enabled": true}'); SELECT @extschema@._notify('realtime') $$;

CREATE FUNCTION @extschema@.stop_realtime() RETURNS void
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$ SELECT @extschema@.update_settings('{"realtime_enabled": false}'); SELECT @extschema@._notify('realtime') $$;

-- Replays the event log: every order with a change event matching the filter gets a push job
-- (its current state is pushed again; a push is idempotent). Filter keys: since, until (ISO
-- timestamps), event_types (change event types), entity_ids (order keys), limit (1..100000).
-- Returns a batch id for batch_status().
CREATE FUNCTION @extschema@.replay_events(filter jsonb DEFAULT '{}') RETURNS bigint
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_key text;
    v_since timestamptz := '-infinity';
    v_until timestamptz := 'infinity';
    v_types text[] := ARRAY['ORDER_CREATED', 'ORDER_UPDATED', 'ORDER_DELETED'];
    v_entities text[];
    v_limit integer := 10000;
    v_batch bigint;
    v_total integer := 0;
    r record;
BEGIN
    IF filter IS NULL OR jsonb_typeof(filter) <> 'object' THEN
        RAISE EXCEPTION 'replay_events expects a JSON object filter, got %', COALESCE(jsonb_typeof(filter), 'NULL')
            USING ERRCODE = '22023', HINT = 'Example: SELECT odoo_sync.replay_events(''{"since": "2026-01-01"}'')';
    END IF;
    FOR v_key IN SELECT jsonb_object_keys(filter) LOOP
        IF v_key NOT IN ('since', 'until', 'event_types', 'entity_ids', 'limit') THEN
            RAISE EXCEPTION 'unknown replay filter key "%"', v_key
                USING ERRCODE = '22023', HINT = 'Known keys: since, until, event_types, entity_ids, limit.';
        END IF;
    END LOOP;
    BEGIN
        IF filter ? 'since' THEN v_since := (filter ->> 'since')::timestamptz; END IF;
        IF filter ? 'until' THEN v_until := (filter ->> 'until')::timestamptz; END IF;
    EXCEPTION WHEN OTHERS THEN
        RAISE EXCEPTION 'replay filter "since"/"until" must be ISO timestamps, got % / %', filter -> 'since', filter -> 'until'
            USING ERRCODE = '22007';
    END;
    IF filter ? 'event_types' THEN
        IF jsonb_typeof(filter -> 'event_types') <> 'array' OR jsonb_array_length(filter -> 'event_types') = 0
           OR EXISTS (SELECT 1 FROM jsonb_array_elements(filter -> 'event_types') x
                      WHERE jsonb_typeof(x) <> 'string' OR x #>> '{}' NOT IN ('ORDER_CREATED', 'ORDER_UPDATED', 'ORDER_DELETED')) THEN
            RAISE EXCEPTION 'replay filter "event_types" must be a non-empty array of ORDER_CREATED, ORDER_UPDATED, ORDER_DELETED'
                USING ERRCODE = '22023';
        END IF;
        v_types := ARRAY(SELECT x FROM jsonb_array_elements_text(filter -> 'event_types') x);
    END IF;
    IF filter ? 'entity_ids' THEN
        IF jsonb_typeof(filter -> 'entity_ids') <> 'array' OR jsonb_array_length(filter -> 'entity_ids') NOT BETWEEN 1 AND 10000
           OR EXISTS (SELECT 1 FROM jsonb_array_elements(filter -> 'entity_ids') x WHERE jsonb_typeof(x) <> 'string') THEN
            RAISE EXCEPTION 'replay filter "entity_ids" must be an array of 1 to 10000 order ids as strings' USING ERRCODE = '22023';
        END IF;
        v_entities := ARRAY(SELECT x FROM jsonb_array_elements_text(filter -> 'entity_ids') x);
    END IF;
    IF filter ? 'limit' THEN
        IF jsonb_typeof(filter -> 'limit') <> 'number' OR (filter ->> 'limit')::numeric <> trunc((filter ->> 'limit')::numeric)
           OR (filter ->> 'limit')::numeric NOT BETWEEN 1 AND 100000 THEN
            RAISE EXCEPTION 'replay filter "limit" must be a whole number from 1 to 100000, got %', filter -> 'limit'
                USING ERRCODE = '22023';
        END IF;
        v_limit := (filter ->> 'limit')::integer;
    END IF;
    IF v_since > v_until THEN
        RAISE EXCEPTION 'replay filter since (%) is after until (%)', v_since, v_until USING ERRCODE = '22023';
    END IF;

    INSERT INTO @extschema@.batches (kind, filter) VALUES ('replay', filter) RETURNING id INTO v_batch;
    FOR r IN
        SELECT e.tracking_id, e.entity_id FROM @extschema@.event_log e
        JOIN @extschema@.order_state s ON s.tracking_id = e.tracking_id AND s.order_key = e.entity_id
        WHERE e.event_type = ANY (v_types) AND e.occurred_at BETWEEN v_since AND v_until
          AND (v_entities IS NULL OR e.entity_id = ANY (v_entities))
        GROUP BY e.tracking_id, e.entity_id
        ORDER BY min(e.id)
        LIMIT v_limit
    LOOP
        PERFORM @extschema@._ensure_push_job(r.tracking_id, r.entity_id, v_batch);
        v_total := v_total + 1;
    END LOOP;
    UPDATE @extschema@.batches SET total = v_total WHERE id = v_batch;
    RETURN v_batch;
END
$$;
