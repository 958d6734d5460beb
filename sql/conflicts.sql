-- odoo_sync: conflicts. Recorded by apply_remote() (CONCURRENT_MODIFICATION, VERSION_CONFLICT),
-- by complete_job() (DATA_MISMATCH) and by the items trigger (BUSINESS_RULE_VIOLATION). An
-- order with an open conflict shows CONFLICT and its push job waits (run_after = infinity)
-- until resolve_conflict() decides.

-- Records a conflict (or refreshes the open one of the same type) and holds the order.
CREATE FUNCTION @extschema@._record_conflict(p_tracking_id integer, p_order_key text, p_type text,
                                             p_diff jsonb, p_local jsonb, p_remote jsonb, p_base jsonb)
RETURNS uuid
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_id uuid;
BEGIN
    SELECT c.id INTO v_id FROM @extschema@.conflicts c
    WHERE c.tracking_id = p_tracking_id AND c.order_key = p_order_key AND c.conflict_type = p_type
      AND c.resolved_at IS NULL
    ORDER BY c.detected_at DESC LIMIT 1 FOR UPDATE;
    IF FOUND THEN
        UPDATE @extschema@.conflicts c
        SET field_diff = p_diff, local_version = p_local, remote_version = p_remote,
            base_version = COALESCE(c.base_version, p_base)
        WHERE c.id = v_id;
    ELSE
        INSERT INTO @extschema@.conflicts (tracking_id, order_key, conflict_type, field_diff, local_version,
                                           remote_version, base_version)
        VALUES (p_tracking_id, p_order_key, p_type, p_diff, p_local, p_remote, p_base)
        RETURNING id INTO v_id;
    END IF;
    INSERT INTO @extschema@.order_state AS s (tracking_id, order_key, sync_status)
    VALUES (p_tracking_id, p_order_key, 'CONFLICT')
    ON CONFLICT (tracking_id, order_key) DO UPDATE SET sync_status = 'CONFLICT', changed_at = now();
    UPDATE @extschema@.jobs q SET run_after = 'infinity'
    WHERE q.kind = 'push' AND q.tracking_id = p_tracking_id AND q.order_key = p_order_key AND q.state <> 'running';
    PERFORM @extschema@._write_back(p_tracking_id, p_order_key, '{"sync_status": "CONFLICT"}');
    PERFORM @extschema@._event('CONFLICT_DETECTED', p_tracking_id, p_order_key,
        jsonb_build_object('conflict_id', v_id, 'conflict_type', p_type,
                           'fields', (SELECT jsonb_agg(d ->> 'field') FROM jsonb_array_elements(p_diff) d)));
    PERFORM @extschema@._notify('conflict');
    RETURN v_id;
END
$$;

-- Called by the items trigger when a line of an order Odoo has confirmed is deleted or its
-- quantity changes: a write Odoo will refuse is recorded as a BUSINESS_RULE_VIOLATION at once
-- (the local write still commits). Cheap when the order is not confirmed in Odoo.
CREATE FUNCTION @extschema@._check_item_rules(p_tracking_id integer, p_order_key text, p_item_key text, p_op text)
RETURNS boolean
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    st @extschema@.order_state;
    t @extschema@.tracked_tables;
    bl jsonb;
    v_entry jsonb;
    p_new_quantity text;
BEGIN
    SELECT * INTO st FROM @extschema@.order_state s WHERE s.tracking_id = p_tracking_id AND s.order_key = p_order_key;
    IF NOT FOUND OR NOT st.odoo_locked THEN
        RETURN false;
    END IF;
    bl := st.base_snapshot -> 'lines' -> p_item_key;
    IF bl IS NULL OR jsonb_typeof(bl) <> 'object' THEN
        RETURN false;
    END IF;
    IF p_op = 'UPDATE' THEN
        SELECT * INTO t FROM @extschema@.tracked_tables WHERE id = p_tracking_id;
        EXECUTE format('SELECT %I::text FROM %s WHERE %I = $1::%s', t.mapping -> 'items' ->> 'quantity', t.items_table,
                       t.mapping -> 'items' ->> 'id', @extschema@._coltype(t.items_table, t.mapping -> 'items' ->> 'id'))
            INTO p_new_quantity USING p_item_key;
    END IF;
    IF p_op = 'DELETE' THEN
        v_entry := jsonb_build_object('field', 'lines.' || p_item_key, 'line', p_item_key, 'attr', NULL,
            'base', @extschema@._line_core(bl), 'local', NULL, 'remote', @extschema@._line_core(bl),
            'rule', format('Odoo refuses to delete a line of a confirmed purchase order (%s is %s)',
                           COALESCE(st.odoo_name, st.odoo_id::text), st.odoo_state));
    ELSIF p_op = 'UPDATE' AND p_new_quantity IS NOT NULL
          AND p_new_quantity::numeric < COALESCE((bl ->> 'qty_received')::numeric, 0) THEN
        v_entry := jsonb_build_object('field', format('lines.%s.quantity', p_item_key), 'line', p_item_key,
            'attr', 'quantity', 'base', bl -> 'quantity', 'local', p_new_quantity::numeric, 'remote', bl -> 'quantity',
            'rule', format('the quantity %s is below the %s already received in Odoo', p_new_quantity, bl ->> 'qty_received'));
    ELSE
        RETURN false;
    END IF;
    PERFORM @extschema@._record_conflict(p_tracking_id, p_order_key, 'BUSINESS_RULE_VIOLATION',
        jsonb_build_array(v_entry), NULL, st.base_snapshot, st.base_snapshot);
    RETURN true;
END
$$;

-- Resolves an open conflict:
--   KEEP_LOCAL   the local order wins: it is pushed to Odoo as it is;
--   KEEP_REMOTE  Odoo wins: its values of the conflicting fields are written to the local rows
--                (a deleted line comes back, a quantity goes back, Odoo's totals are taken);
--   MERGE        `values` gives the value of each conflicting field by its name in field_diff
--                ({"lines.<key>.quantity": 7, "state": "CONFIRMED"}); fields not named keep
--                the local value. The result is pushed.
-- Returns {"conflict_id", "resolution", "sync_status", "push_job"}; logs CONFLICT_RESOLVED.
CREATE FUNCTION @extschema@.resolve_conflict(conflict_id uuid, resolution text, "values" jsonb DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
    c @extschema@.conflicts;
    t @extschema@.tracked_tables;
    st @extschema@.order_state;
    v_doc jsonb;
    v_now jsonb;
    v_entries jsonb := '[]';
    e jsonb;
    v_value jsonb;
    v_field text;
    v_raw jsonb;
    v_push bigint;
    v_status text;
    v_remote jsonb;
    j @extschema@.jobs;
BEGIN
    IF conflict_id IS NULL THEN
        RAISE EXCEPTION 'resolve_conflict needs a conflict id, got NULL' USING ERRCODE = '22004';
    END IF;
    IF resolution IS NULL OR resolution NOT IN ('KEEP_LOCAL', 'KEEP_REMOTE', 'MERGE') THEN
        RAISE EXCEPTION 'resolution must be KEEP_LOCAL, KEEP_REMOTE or MERGE, got %', COALESCE(resolution, 'NULL')
            USING ERRCODE = '22023';
    END IF;
    SELECT * INTO c FROM @extschema@.conflicts x WHERE x.id = conflict_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'conflict % does not exist', conflict_id USING ERRCODE = 'P0002',
            HINT = 'SELECT * FROM odoo_sync.pending_conflicts lists the open ones.';
    END IF;
    IF resolution = 'MERGE' THEN
        IF "values" IS NULL OR jsonb_typeof("values") <> 'object' OR "values" = '{}' THEN
            RAISE EXCEPTION 'MERGE needs values: a JSON object with a value for conflicting fields'
                USING ERRCODE = '22023',
                      HINT = format('Fields of this conflict: %s',
                                    (SELECT string_agg(d ->> 'field', ', ') FROM jsonb_array_elements(c.field_diff) d));
        END IF;
        FOR v_field IN SELECT jsonb_object_keys("values") LOOP
            IF NOT EXISTS (SELECT 1 FROM jsonb_array_elements(c.field_diff) d WHERE d ->> 'field' = v_field) THEN
                RAISE EXCEPTION 'field "%" is not part of conflict %', v_field, conflict_id
                    USING ERRCODE = '22023',
                          HINT = format('Fields of this conflict: %s',
                                        (SELECT string_agg(d ->> 'field', ', ') FROM jsonb_array_elements(c.field_diff) d));
            END IF;
        END LOOP;
    ELSIF "values" IS NOT NULL AND jsonb_typeof("values") <> 'null' THEN
        RAISE EXCEPTION '% takes no values (only MERGE does)', resolution USING ERRCODE = '22023';
    END IF;

    PERFORM @extschema@._require_read_committed('resolve_conflict');
    PERFORM @extschema@._lock_order(c.tracking_id, c.order_key);
    SELECT * INTO c FROM @extschema@.conflicts x WHERE x.id = conflict_id FOR UPDATE;
    IF c.resolved_at IS NOT NULL THEN
        RAISE EXCEPTION 'conflict % was already resolved (%) at %', conflict_id, c.resolution, c.resolved_at
            USING ERRCODE = '55000';
    END IF;
    SELECT * INTO t FROM @extschema@.tracked_tables tt WHERE tt.id = c.tracking_id;
    SELECT * INTO st FROM @extschema@.order_state s WHERE s.tracking_id = c.tracking_id AND s.order_key = c.order_key FOR UPDATE;
    v_doc := @extschema@.order_document(c.tracking_id, c.order_key);

    IF c.conflict_type = 'DATA_MISMATCH' THEN
        IF resolution = 'KEEP_REMOTE' THEN
            PERFORM @extschema@._write_amounts(c.tracking_id, c.order_key, c.remote_version -> 'amounts');
        ELSIF resolution = 'MERGE' THEN
            PERFORM @extschema@._write_amounts(c.tracking_id, c.order_key,
                (SELECT jsonb_object_agg(substr(k, length('amounts.') + 1), v) FROM jsonb_each("values") x(k, v)));
        END IF;
        -- The base keeps Odoo's totals: local totals that differ now count as the user's choice.
        UPDATE @extschema@.order_state s SET base_snapshot = jsonb_set(COALESCE(s.base_snapshot, '{}'), '{amounts}',
            COALESCE(@extschema@._local_amounts(c.tracking_id, c.order_key), '{}'))
        WHERE s.tracking_id = c.tracking_id AND s.order_key = c.order_key;
    ELSIF resolution <> 'KEEP_LOCAL' AND (v_doc ->> 'deleted')::boolean IS NOT TRUE THEN
        -- The entries to apply locally: Odoo's values (KEEP_REMOTE) or the given ones (MERGE).
        FOR e IN SELECT value FROM jsonb_array_elements(c.field_diff) LOOP
            IF resolution = 'MERGE' THEN
                CONTINUE WHEN NOT "values" ? (e ->> 'field');
                v_value := "values" -> (e ->> 'field');
                IF e ->> 'field' = 'state' AND @extschema@._status_class(v_value #>> '{}') IS NOT NULL THEN
                    v_value := to_jsonb(@extschema@._status_class(v_value #>> '{}'));
                END IF;
                e := jsonb_set(e, '{remote}', v_value);
            END IF;
            v_entries := v_entries || e;
        END LOOP;
        -- Raw lines for _apply_to_local: the Odoo side at detection, with the chosen values.
        v_remote := COALESCE(c.remote_version, st.base_snapshot, '{}');
        v_raw := jsonb_build_object('partner_ref', NULL, 'lines', COALESCE((
            SELECT jsonb_agg(jsonb_build_object(
                'xmlid', CASE WHEN starts_with(k, 'odoo:') THEN NULL ELSE @extschema@._xmlid_name('pol', c.tracking_id, k) END,
                'odoo_line_id', v -> 'odoo_line_id',
                'product_id', COALESCE(o -> 'product_id', v -> 'product_id') #>> '{}',
                'quantity', COALESCE(o -> 'quantity', v -> 'quantity') #>> '{}',
                'unit_price', COALESCE(o -> 'unit_price', v -> 'unit_price') #>> '{}'))
            FROM jsonb_each(COALESCE(v_remote -> 'lines', '{}')) x(k, v)
            LEFT JOIN LATERAL (
                SELECT jsonb_object_agg(d ->> 'attr', d -> 'remote') AS o FROM jsonb_array_elements(v_entries) d
                WHERE d ->> 'line' = k AND d ->> 'attr' IS NOT NULL) ov ON true), '[]'));
        PERFORM @extschema@._apply_to_local(t, c.order_key, v_entries, v_raw, v_doc -> 'order' ->> 'status');
    END IF;

    IF c.conflict_type IN ('CONCURRENT_MODIFICATION', 'VERSION_CONFLICT') AND c.remote_version IS NOT NULL THEN
        UPDATE @extschema@.order_state s SET base_snapshot = c.remote_version || jsonb_build_object('amounts', s.base_snapshot -> 'amounts')
        WHERE s.tracking_id = c.tracking_id AND s.order_key = c.order_key;
    END IF;
    UPDATE @extschema@.conflicts x
    SET resolved_at = now(), resolution = resolve_conflict.resolution, resolved_by = @extschema@._caller(),
        resolved_values = "values"
    WHERE x.id = c.id;

    IF EXISTS (SELECT 1 FROM @extschema@.conflicts x WHERE x.tracking_id = c.tracking_id AND x.order_key = c.order_key
               AND x.resolved_at IS NULL) THEN
        v_status := 'CONFLICT';
    ELSE
        UPDATE @extschema@.order_state s SET sync_status = 'PENDING_SYNC'
        WHERE s.tracking_id = c.tracking_id AND s.order_key = c.order_key;
        SELECT * INTO st FROM @extschema@.order_state s WHERE s.tracking_id = c.tracking_id AND s.order_key = c.order_key;
        IF st.job_id IS NOT NULL THEN
            SELECT * INTO j FROM @extschema@.jobs q WHERE q.id = st.job_id AND q.state <> 'running' FOR UPDATE;
        END IF;
        -- The order as it is now, after the resolution wrote to it.
        IF c.conflict_type <> 'DATA_MISMATCH' AND st.base_snapshot IS NOT NULL AND NOT st.deleted THEN
            v_now := @extschema@.order_document(c.tracking_id, c.order_key);
        END IF;
        -- A DATA_MISMATCH is about totals only: Odoo holds what the push that found it wrote,
        -- unless the order changed (or was deleted) while the conflict was open.
        IF ((c.conflict_type = 'DATA_MISMATCH' AND NOT st.deleted
             AND COALESCE(@extschema@._current_version(c.tracking_id, c.order_key) <= st.synced_version, false))
            OR (v_now IS NOT NULL
                AND @extschema@._same_content(@extschema@._canonical_local(v_now), st.base_snapshot)
                -- An order created here carries its number as Odoo's origin, which the merge
                -- does not compare: a renumber made while the conflict was open needs its push.
                AND NOT (st.link = 'xmlid' AND st.base_snapshot ? 'origin'
                         AND st.base_snapshot ->> 'origin' IS DISTINCT FROM
                             COALESCE(v_now -> 'order' ->> 'order_number', c.order_key))))
           AND (st.job_id IS NULL OR j.id IS NOT NULL) THEN
            -- Both sides already agree: a push job waiting for the resolution has nothing to do.
            IF j.id IS NOT NULL THEN
                PERFORM @extschema@._finish_job(j, 'done', NULL);
                UPDATE @extschema@.order_state s SET job_id = NULL
                WHERE s.tracking_id = c.tracking_id AND s.order_key = c.order_key;
            END IF;
            v_status := 'SYNCED';
        ELSE
            v_push := @extschema@._ensure_push_job(c.tracking_id, c.order_key, NULL);
            v_status := 'PENDING_SYNC';
        END IF;
        UPDATE @extschema@.order_state s SET sync_status = v_status
        WHERE s.tracking_id = c.tracking_id AND s.order_key = c.order_key;
    END IF;
    PERFORM @extschema@._write_back(c.tracking_id, c.order_key, jsonb_build_object('sync_status', v_status));
    PERFORM @extschema@._event('CONFLICT_RESOLVED', c.tracking_id, c.order_key,
        jsonb_build_object('conflict_id', c.id, 'conflict_type', c.conflict_type, 'resolution', resolution,
                           'values', "values", 'push_job', v_push));
    RETURN jsonb_build_object('conflict_id', c.id, 'resolution', resolution, 'sync_status', v_status, 'push_job', v_push);
END
$$;
