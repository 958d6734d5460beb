-- odoo_sync: settings. Every setting has a type, a default, a unit and a range here; the
-- settings table only holds what a user changed.

CREATE TABLE @extschema@.setting_spec (
    key         text PRIMARY KEY,
    type        text NOT NULL CHECK (type IN ('integer', 'number', 'boolean', 'strategies', 'choice')),
    default_value jsonb NOT NULL,
    min_value   numeric,
    max_value   numeric,
    allowed     text[],
    unit        text,
    description text NOT NULL
);

INSERT INTO @extschema@.setting_spec (key, type, default_value, min_value, max_value, allowed, unit, description) VALUES
    ('max_attempts', 'integer', '8', 1, 100, NULL, 'attempts',
     'Attempts of a job before it goes to the dead letters.'),
    ('backoff_base_seconds', 'number', '2', 0.1, 3600, NULL, 'seconds',
     'First retry delay; each further failure doubles it (with jitter).'),
    ('backoff_max_seconds', 'number', '900', 1, 86400, NULL, 'seconds',
     'Longest delay between two attempts of a job.'),
    ('lease_seconds', 'integer', '60', 5, 3600, NULL, 'seconds',
     'How long a claimed job belongs to a worker before another may take it.'),
    ('batch_size', 'integer', '50', 1, 1000, NULL, 'orders',
     'Orders the worker sends to Odoo in one call.'),
    ('history_retention_days', 'integer', '14', 1, 3650, NULL, 'days',
     'How long finished jobs and attempt logs are kept (dead letters included).'),
    ('event_retention_days', 'integer', '90', 1, 3650, NULL, 'days',
     'How long the event log is kept.'),
    ('realtime_enabled', 'boolean', 'false', NULL, NULL, NULL, NULL,
     'Continuous two-way sync; use start_realtime() / stop_realtime().'),
    ('poll_interval_seconds', 'integer', '10', 1, 3600, NULL, 'seconds',
     'How often the worker asks Odoo for changes in realtime mode.'),
    ('backlog_max_jobs', 'integer', '1000', 1, 100000000, NULL, 'jobs',
     'Jobs still to do (ready or waiting for a retry) above this count make health() report the queue BACKLOGGED.'),
    ('backlog_max_age_seconds', 'integer', '300', 1, 604800, NULL, 'seconds',
     'A job still to do (ready or waiting for a retry) older than this makes health() report the queue BACKLOGGED.'),
    ('worker_timeout_seconds', 'integer', '30', 5, 3600, NULL, 'seconds',
     'A worker silent for longer than this counts as gone.'),
    ('partner_strategies', 'strategies', '["ref", "name"]', NULL, NULL, ARRAY['ref', 'name'], NULL,
     'How a local supplier is found in Odoo after partner_map, in order.'),
    ('product_strategies', 'strategies', '["default_code", "name"]', NULL, NULL, ARRAY['default_code', 'name'], NULL,
     'How a local product is found in Odoo after product_map, in order.'),
    ('pull_overlap_seconds', 'integer', '120', 120, 86400, NULL, 'seconds',
     'How far before its watermark the realtime pull asks Odoo again (long Odoo transactions commit rows stamped in the past).'),
    ('reconcile_interval_seconds', 'integer', '300', 10, 86400, NULL, 'seconds',
     'How often the realtime pull checks that linked Odoo orders still exist.'),
    ('conflict_policy_state', 'choice', '"remote_wins"', NULL, NULL, ARRAY['manual', 'local_wins', 'remote_wins'], NULL,
     'Order status changed on both sides: who wins (manual records a conflict).'),
    ('conflict_policy_received', 'choice', '"remote_wins"', NULL, NULL, ARRAY['manual', 'local_wins', 'remote_wins'], NULL,
     'Odoo received goods (PARTIALLY_RECEIVED / RECEIVED) while the local status changed: who wins.'),
    ('conflict_policy_lines', 'choice', '"manual"', NULL, NULL, ARRAY['manual', 'local_wins', 'remote_wins'], NULL,
     'A line (product, quantity, price, added or removed) changed on both sides: who wins.'),
    ('conflict_policy_supplier', 'choice', '"manual"', NULL, NULL, ARRAY['manual', 'local_wins', 'remote_wins'], NULL,
     'The vendor changed on both sides: who wins.'),
    ('conflict_policy_notes', 'choice', '"manual"', NULL, NULL, ARRAY['manual', 'local_wins', 'remote_wins'], NULL,
     'The order notes (Odoo''s Terms and Conditions) changed on both sides: who wins.'),
    ('conflict_policy_dates', 'choice', '"manual"', NULL, NULL, ARRAY['manual', 'local_wins', 'remote_wins'], NULL,
     'The requested delivery date (Odoo''s Expected Arrival) changed on both sides: who wins.'),
    ('conflict_policy_amounts', 'choice', '"manual"', NULL, NULL, ARRAY['manual', 'local_wins', 'remote_wins'], NULL,
     'Odoo''s totals differ from the local ones after a sync: manual records a DATA_MISMATCH, remote_wins writes Odoo''s totals, local_wins keeps the local ones.');

-- Effective value of one setting, for the extension's own functions.
CREATE FUNCTION @extschema@._setting(p_key text) RETURNS jsonb
LANGUAGE plpgsql STABLE STRICT
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN (SELECT COALESCE(s.value, spec.default_value)
            FROM @extschema@.setting_spec spec
            LEFT JOIN @extschema@.settings s ON s.key = spec.key
            WHERE spec.key = p_key);
END
$$;

-- Describes every setting: what DBAs read before changing one.
CREATE FUNCTION @extschema@.describe_settings()
RETURNS TABLE (key text, value jsonb, default_value jsonb, type text, unit text,
               min_value numeric, max_value numeric, description text)
LANGUAGE sql STABLE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    SELECT spec.key, COALESCE(s.value, spec.default_value), spec.default_value, spec.type, spec.unit,
           spec.min_value, spec.max_value, spec.description
    FROM @extschema@.setting_spec spec
    LEFT JOIN @extschema@.settings s ON s.key = spec.key
    ORDER BY spec.key
$$;

-- All settings as one object (the values describe_settings() shows).
CREATE FUNCTION @extschema@.get_settings() RETURNS jsonb
LANGUAGE sql STABLE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    SELECT jsonb_object_agg(d.key, d.value ORDER BY d.key) FROM @extschema@.describe_settings() d
$$;

-- Checks one value against its spec; raises 22023 naming the key, the value and what is allowed.
CREATE FUNCTION @extschema@._check_setting(p_key text, p_value jsonb) RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    spec @extschema@.setting_spec;
    v_num numeric;
    v_item jsonb;
BEGIN
    SELECT * INTO spec FROM @extschema@.setting_spec WHERE key = p_key;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown setting "%"', p_key
            USING ERRCODE = '22023',
                  HINT = format('Known settings: %s. See odoo_sync.describe_settings().',
                                (SELECT string_agg(key, ', ' ORDER BY key) FROM @extschema@.setting_spec));
    END IF;
    IF spec.type IN ('integer', 'number') THEN
        IF jsonb_typeof(p_value) <> 'number' THEN
            RAISE EXCEPTION 'setting "%" must be a number, got %', p_key, p_value
                USING ERRCODE = '22023', HINT = format('Example: {"%s": %s}', p_key, spec.default_value);
        END IF;
        v_num := p_value::text::numeric;
        IF spec.type = 'integer' AND v_num <> trunc(v_num) THEN
            RAISE EXCEPTION 'setting "%" must be a whole number, got %', p_key, p_value
                USING ERRCODE = '22023';
        END IF;
        IF v_num < spec.min_value OR v_num > spec.max_value THEN
            RAISE EXCEPTION 'setting "%" is out of range: % (allowed % to %)', p_key, p_value,
                    spec.min_value, spec.max_value || COALESCE(' ' || spec.unit, '')
                USING ERRCODE = '22023', DETAIL = spec.description;
        END IF;
    ELSIF spec.type = 'boolean' THEN
        IF jsonb_typeof(p_value) <> 'boolean' THEN
            RAISE EXCEPTION 'setting "%" must be true or false, got %', p_key, p_value
                USING ERRCODE = '22023';
        END IF;
    ELSIF spec.type = 'choice' THEN
        IF jsonb_typeof(p_value) <> 'string' OR NOT (p_value #>> '{}') = ANY (spec.allowed) THEN
            RAISE EXCEPTION 'setting "%" must be one of %, got %', p_key, array_to_string(spec.allowed, ', '), p_value
                USING ERRCODE = '22023', HINT = format('Example: {"%s": %s}', p_key, spec.default_value);
        END IF;
    ELSIF spec.type = 'strategies' THEN
        IF jsonb_typeof(p_value) <> 'array' THEN
            RAISE EXCEPTION 'setting "%" must be an array of strategy names, got %', p_key, p_value
                USING ERRCODE = '22023', HINT = format('Allowed: %s', array_to_string(spec.allowed, ', '));
        END IF;
        FOR v_item IN SELECT value FROM jsonb_array_elements(p_value) LOOP
            IF jsonb_typeof(v_item) <> 'string' OR NOT (v_item #>> '{}') = ANY (spec.allowed) THEN
                RAISE EXCEPTION 'setting "%" has an unknown strategy %', p_key, v_item
                    USING ERRCODE = '22023', HINT = format('Allowed: %s', array_to_string(spec.allowed, ', '));
            END IF;
        END LOOP;
        IF (SELECT count(*) FROM jsonb_array_elements(p_value)) <>
           (SELECT count(DISTINCT value) FROM jsonb_array_elements(p_value)) THEN
            RAISE EXCEPTION 'setting "%" names a strategy twice: %', p_key, p_value USING ERRCODE = '22023';
        END IF;
    END IF;
END
$$;

-- Changes settings atomically: every key is checked before anything is written, so one bad key
-- changes nothing. A JSON null resets a setting to its default. Returns the new settings.
CREATE FUNCTION @extschema@.update_settings(p_changes jsonb) RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r record;
BEGIN
    IF p_changes IS NULL OR jsonb_typeof(p_changes) <> 'object' THEN
        RAISE EXCEPTION 'update_settings expects a JSON object, got %', COALESCE(jsonb_typeof(p_changes), 'NULL')
            USING ERRCODE = '22023', HINT = 'Example: SELECT odoo_sync.update_settings(''{"max_attempts": 5}'')';
    END IF;
    -- Every setting fits in a few hundred bytes; a bigger object is a mistake or an attack, and
    -- would otherwise come back whole in the error message about its first bad key.
    IF length(p_changes::text) > 8192 THEN
        RAISE EXCEPTION 'update_settings: the changes are too large (% bytes, at most 8192)', length(p_changes::text)
            USING ERRCODE = '22023', HINT = 'See odoo_sync.describe_settings() for the settings and their ranges.';
    END IF;
    FOR r IN SELECT key, value FROM jsonb_each(p_changes) LOOP
        IF jsonb_typeof(r.value) = 'null' THEN
            PERFORM @extschema@._check_setting(r.key, (SELECT default_value FROM @extschema@.setting_spec WHERE key = r.key));
        ELSE
            PERFORM @extschema@._check_setting(r.key, r.value);
        END IF;
    END LOOP;
    FOR r IN SELECT key, value FROM jsonb_each(p_changes) LOOP
        IF jsonb_typeof(r.value) = 'null' THEN
            DELETE FROM @extschema@.settings WHERE key = r.key;
        ELSE
            -- An integer setting is stored as a plain integer: 5.0 or 5.00 pass the check, and
            -- readers cast the value with ::text::int, which refuses "5.0".
            IF (SELECT spec.type FROM @extschema@.setting_spec spec WHERE spec.key = r.key) = 'integer' THEN
                r.value := to_jsonb((r.value::text)::numeric::bigint);
            END IF;
            INSERT INTO @extschema@.settings AS s (key, value) VALUES (r.key, r.value)
            ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, updated_at = now(), updated_by = session_user;
        END IF;
    END LOOP;
    -- Workers re-read settings when told; without this they would notice only at the next heartbeat.
    PERFORM @extschema@._notify('settings');
    RETURN @extschema@.get_settings();
END
$$;
