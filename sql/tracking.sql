-- odoo_sync: attaching the capture triggers to the user's own order tables.

-- The columns odoo_sync knows, per table, with the kind of type each accepts.
CREATE TABLE @extschema@.column_spec (
    table_role text NOT NULL CHECK (table_role IN ('orders', 'items')),
    canonical  text NOT NULL,
    required   boolean NOT NULL,
    type_class text NOT NULL CHECK (type_class IN ('key', 'order_ref', 'text', 'ref', 'status',
                                                   'amount', 'date', 'odoo_id', 'timestamp')),
    PRIMARY KEY (table_role, canonical)
);

INSERT INTO @extschema@.column_spec VALUES
    ('orders', 'id', true, 'key'),
    ('orders', 'order_number', false, 'text'),
    ('orders', 'supplier_id', true, 'ref'),
    ('orders', 'supplier_name', false, 'text'),
    ('orders', 'status', false, 'status'),
    ('orders', 'subtotal', false, 'amount'),
    ('orders', 'sales_tax', false, 'amount'),
    ('orders', 'grand_total', false, 'amount'),
    ('orders', 'notes', false, 'text'),
    ('orders', 'requested_delivery_date', false, 'date'),
    ('orders', 'approved_by', false, 'text'),
    ('orders', 'approved_at', false, 'date'),
    ('orders', 'created_at', false, 'date'),
    ('orders', 'updated_at', false, 'date'),
    ('orders', 'sync_status', false, 'status'),
    ('orders', 'odoo_order_id', false, 'odoo_id'),
    ('orders', 'last_synced_at', false, 'timestamp'),
    ('items', 'id', true, 'ref'),
    ('items', 'order_id', true, 'order_ref'),
    ('items', 'product_id', true, 'ref'),
    ('items', 'product_name', false, 'text'),
    ('items', 'product_code', false, 'text'),
    ('items', 'quantity', true, 'amount'),
    ('items', 'unit_price', true, 'amount'),
    ('items', 'total_price', false, 'amount'),
    ('items', 'notes', false, 'text');

-- The role the caller acts as. Inside a SECURITY DEFINER function current_user is the owner, so
-- the caller is the SET ROLE target, or the session user when no role was set.
CREATE FUNCTION @extschema@._caller() RETURNS name
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN current_setting('role') = 'none' THEN session_user
                ELSE current_setting('role')::name END
$$;

-- Base type of a column, looking through domains.
CREATE FUNCTION @extschema@._column_base_type(p_rel regclass, p_column text) RETURNS regtype
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    WITH RECURSIVE t(oid, typtype, typbasetype) AS (
        SELECT ty.oid, ty.typtype, ty.typbasetype
        FROM pg_attribute a JOIN pg_type ty ON ty.oid = a.atttypid
        WHERE a.attrelid = p_rel AND a.attname = p_column AND a.attnum > 0 AND NOT a.attisdropped
        UNION ALL
        SELECT ty.oid, ty.typtype, ty.typbasetype FROM t JOIN pg_type ty ON ty.oid = t.typbasetype
        WHERE t.typtype = 'd'
    )
    SELECT oid::regtype FROM t WHERE typtype <> 'd'
$$;

-- Does a column's type fit what odoo_sync needs from it?
CREATE FUNCTION @extschema@._type_fits(p_class text, p_type regtype) RETURNS boolean
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE p_class
        WHEN 'key' THEN p_type IN ('uuid', 'bigint', 'integer', 'smallint', 'text', 'character varying')
        WHEN 'order_ref' THEN p_type IN ('uuid', 'bigint', 'integer', 'smallint', 'text', 'character varying')
        WHEN 'ref' THEN p_type IN ('uuid', 'bigint', 'integer', 'smallint', 'text', 'character varying', 'character')
        WHEN 'text' THEN (SELECT typcategory = 'S' FROM pg_type WHERE oid = p_type)
        WHEN 'status' THEN (SELECT typcategory IN ('S', 'E') FROM pg_type WHERE oid = p_type)
        WHEN 'amount' THEN p_type IN ('numeric', 'bigint', 'integer', 'smallint')
        WHEN 'date' THEN p_type IN ('date', 'timestamp without time zone', 'timestamp with time zone')
        WHEN 'odoo_id' THEN p_type IN ('integer', 'bigint')
        WHEN 'timestamp' THEN p_type IN ('timestamp without time zone', 'timestamp with time zone')
    END
$$;

CREATE FUNCTION @extschema@._key_type(p_type regtype) RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN p_type = 'uuid'::regtype THEN 'uuid'
                WHEN p_type IN ('bigint', 'integer', 'smallint') THEN 'bigint'
                ELSE 'text' END
$$;

-- Checks that a relation can be tracked by the caller: an ordinary or partitioned table that
-- the caller owns, outside the system schemas and our own.
CREATE FUNCTION @extschema@._check_trackable(p_rel regclass, p_role text) RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    c pg_class;
    v_schema name;
BEGIN
    SELECT * INTO c FROM pg_class WHERE oid = p_rel;
    IF NOT FOUND THEN
        RAISE EXCEPTION '% table % does not exist', p_role, p_rel USING ERRCODE = '42P01';
    END IF;
    SELECT nspname INTO v_schema FROM pg_namespace WHERE oid = c.relnamespace;
    IF c.relkind NOT IN ('r', 'p') THEN
        RAISE EXCEPTION '% is not a table', p_rel
            USING ERRCODE = '42809',
                  DETAIL = format('Only ordinary and partitioned tables can be tracked; %s has relkind %L.', p_rel, c.relkind),
                  HINT = 'Track the table behind the view instead.';
    END IF;
    IF v_schema IN ('pg_catalog', 'information_schema', '@extschema@') OR v_schema LIKE 'pg\_toast%' THEN
        RAISE EXCEPTION 'table % is in schema %, which cannot be tracked', p_rel, v_schema
            USING ERRCODE = '42501', HINT = 'Track your application''s own tables.';
    END IF;
    IF NOT pg_has_role(@extschema@._caller(), c.relowner, 'USAGE') THEN
        RAISE EXCEPTION 'permission denied: % must own table % to track it', @extschema@._caller(), p_rel
            USING ERRCODE = '42501',
                  HINT = format('Run track_orders as the owner of %s (role %s) or a member of it.',
                                p_rel, pg_get_userbyid(c.relowner));
    END IF;
END
$$;

-- Resolves the column mapping of one table: canonical name -> actual column, for columns that
-- exist. Raises on unknown mapping keys, missing required columns and unfit types.
CREATE FUNCTION @extschema@._resolve_columns(p_rel regclass, p_role text, p_overrides jsonb)
RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    spec record;
    v_key text;
    v_column text;
    v_type regtype;
    v_result jsonb := '{}';
    v_shared record;
BEGIN
    IF p_overrides IS NOT NULL AND jsonb_typeof(p_overrides) <> 'object' THEN
        RAISE EXCEPTION 'mapping for "%" must be an object of column renames, got %', p_role, jsonb_typeof(p_overrides)
            USING ERRCODE = '22023', HINT = format('Example: {"%s": {"id": "my_id_column"}}', p_role);
    END IF;
    FOR v_key IN SELECT jsonb_object_keys(COALESCE(p_overrides, '{}')) LOOP
        IF NOT EXISTS (SELECT 1 FROM @extschema@.column_spec WHERE table_role = p_role AND canonical = v_key) THEN
            RAISE EXCEPTION 'unknown mapping key "%" for % table', v_key, p_role
                USING ERRCODE = '22023',
                      HINT = format('Known %s columns: %s', p_role,
                          (SELECT string_agg(canonical, ', ' ORDER BY canonical) FROM @extschema@.column_spec WHERE table_role = p_role));
        END IF;
        IF jsonb_typeof(p_overrides -> v_key) <> 'string' OR length(p_overrides ->> v_key) = 0 THEN
            RAISE EXCEPTION 'mapping of "%.%" must be a non-empty column name, got %', p_role, v_key,
                    left((p_overrides -> v_key)::text, 100)
                USING ERRCODE = '22023';
        END IF;
        -- PostgreSQL cuts longer names at 63 bytes when a column is created, so a longer name
        -- can never match a column: say why instead of "not found" with the whole text.
        IF octet_length(p_overrides ->> v_key) > 63 THEN
            RAISE EXCEPTION 'mapping of "%.%" is not a column name: % bytes, PostgreSQL names have at most 63',
                    p_role, v_key, octet_length(p_overrides ->> v_key)
                USING ERRCODE = '22023', DETAIL = format('The mapping starts with %s.', left(p_overrides ->> v_key, 40));
        END IF;
    END LOOP;

    FOR spec IN SELECT * FROM @extschema@.column_spec WHERE table_role = p_role ORDER BY canonical LOOP
        v_column := COALESCE(p_overrides ->> spec.canonical, spec.canonical);
        v_type := @extschema@._column_base_type(p_rel, v_column);
        IF v_type IS NULL THEN
            IF spec.required OR p_overrides ? spec.canonical THEN
                RAISE EXCEPTION 'column "%" not found in % table %', v_column, p_role, p_rel
                    USING ERRCODE = '42703',
                          DETAIL = CASE WHEN spec.required THEN format('odoo_sync needs the %s column "%s".', p_role, spec.canonical)
                                        ELSE format('The mapping names "%s" for "%s".', v_column, spec.canonical) END,
                          HINT = format('Rename it with the mapping argument, e.g. {"%s": {"%s": "your_column"}}.', p_role, spec.canonical);
            END IF;
            CONTINUE;
        END IF;
        IF NOT @extschema@._type_fits(spec.type_class, v_type) THEN
            RAISE EXCEPTION 'column "%" of % has type %, which does not fit "%.%"', v_column, p_rel, v_type, p_role, spec.canonical
                USING ERRCODE = '42804',
                      HINT = CASE spec.type_class
                          WHEN 'amount' THEN 'Quantities and money must be numeric (or an integer type), never floating point.'
                          WHEN 'key' THEN 'The order key must be uuid, an integer type or text.'
                          WHEN 'date' THEN 'Use date, timestamp or timestamptz.'
                          WHEN 'odoo_id' THEN 'Odoo ids are integers: use integer or bigint.'
                          WHEN 'timestamp' THEN 'Use timestamptz.'
                          ELSE 'Use a text type.' END;
        END IF;
        v_result := v_result || jsonb_build_object(spec.canonical, v_column);
    END LOOP;
    -- One column for two things would have odoo_sync overwrite it: sync_status mapped onto the
    -- business status, or odoo_order_id onto the key (linking orders to unrelated Odoo orders).
    SELECT a.value AS col, b.key AS first, a.key AS second INTO v_shared
    FROM jsonb_each_text(v_result) a JOIN jsonb_each_text(v_result) b ON b.value = a.value AND b.key < a.key
    ORDER BY b.key, a.key LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'mapping uses column "%" of % for both "%.%" and "%.%"', v_shared.col, p_rel,
                p_role, v_shared.first, p_role, v_shared.second
            USING ERRCODE = '22023',
                  HINT = 'Each of them needs a column of its own: map one of them to another column.';
    END IF;
    RETURN v_result;
END
$$;

-- What works but should be fixed, per tracking, each with the fix: today an items table
-- without an index that starts with its order column. Every push and pull of an order reads
-- its items by that column; without such an index each of them reads the whole table (a
-- foreign key creates none). Creating it is the owner's call: it locks the table, or must run
-- CONCURRENTLY outside a transaction. track_orders reports these, and so does the worker's check.
CREATE FUNCTION @extschema@.tracking_warnings()
RETURNS TABLE (tracking_id integer, message text, fix text)
LANGUAGE sql STABLE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    SELECT t.id,
           format('%s has no index on %I: every push and pull of an order reads the whole table',
                  t.items_table, t.mapping -> 'items' ->> 'order_id'),
           format('CREATE INDEX CONCURRENTLY ON %s (%I);', t.items_table, t.mapping -> 'items' ->> 'order_id')
    FROM @extschema@.tracked_tables t
    WHERE EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = t.items_table)
      AND NOT EXISTS (SELECT 1 FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
                      WHERE i.indrelid = t.items_table AND i.indisvalid AND i.indpred IS NULL
                        AND a.attname = t.mapping -> 'items' ->> 'order_id')
    ORDER BY t.id
$$;

-- BEFORE TRUNCATE trigger of tracked tables. Capture is row by row, and TRUNCATE fires no row
-- triggers: its orders (or lines) would vanish here and stay in Odoo, and their sync state
-- would go on describing rows that no longer exist. So it is refused (also when it reaches a
-- tracked table through CASCADE), with what to do instead.
CREATE FUNCTION @extschema@._refuse_truncate() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_table text := format('%I.%I', TG_TABLE_SCHEMA, TG_TABLE_NAME);
    v_orders regclass;
BEGIN
    SELECT t.orders_table INTO v_orders FROM @extschema@.tracked_tables t
    WHERE TG_RELID IN (t.orders_table, t.items_table);
    RAISE EXCEPTION 'odoo_sync tracks %, and TRUNCATE would remove its rows without syncing the change to Odoo', v_table
        USING ERRCODE = '0A000',
              DETAIL = 'odoo_sync captures changes row by row; TRUNCATE fires no row triggers.',
              HINT = format('Use DELETE FROM %s (deleted orders are cancelled in Odoo, deleted items removed from their orders), '
                            'or stop syncing first: SELECT odoo_sync.untrack_orders(%L);', v_table, COALESCE(v_orders::text, v_table));
END
$$;

-- The BEFORE TRUNCATE trigger of a tracked table (see _refuse_truncate).
CREATE FUNCTION @extschema@._attach_truncate_guard(p_table regclass) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    EXECUTE format('CREATE TRIGGER odoo_sync_no_truncate BEFORE TRUNCATE ON %s
                    FOR EACH STATEMENT EXECUTE FUNCTION @extschema@._refuse_truncate()', p_table);
END
$$;

-- Attaches odoo_sync to an application's order tables. Everything is checked before anything
-- is attached; on any error nothing changes. Existing orders are registered as NOT_SYNCED
-- (or linked, when the odoo_order_id column already holds an id).
CREATE FUNCTION @extschema@.track_orders(orders regclass, items regclass, mapping jsonb DEFAULT '{}')
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_orders jsonb;
    v_items jsonb;
    v_key_type regtype;
    v_ref_type regtype;
    v_id integer;
    v_count bigint;
    v_key text;
    v_warnings jsonb := '[]';
    w record;
BEGIN
    IF orders IS NULL OR items IS NULL THEN
        RAISE EXCEPTION 'track_orders needs both the orders table and the items table'
            USING ERRCODE = '22004', HINT = 'Example: SELECT odoo_sync.track_orders(''orders'', ''order_items'')';
    END IF;
    mapping := COALESCE(mapping, '{}');
    IF jsonb_typeof(mapping) <> 'object' THEN
        RAISE EXCEPTION 'mapping must be a JSON object, got %', jsonb_typeof(mapping)
            USING ERRCODE = '22023', HINT = 'Example: {"orders": {"grand_total": "total"}}';
    END IF;
    -- A full mapping of both tables is under 2 kB; refuse megabytes before they reach an error
    -- message whole.
    IF length(mapping::text) > 65536 THEN
        RAISE EXCEPTION 'mapping is too large (% bytes, at most 65536)', length(mapping::text)
            USING ERRCODE = '22023', HINT = 'The mapping has two keys, "orders" and "items", each renaming columns.';
    END IF;
    FOR v_key IN SELECT jsonb_object_keys(mapping) LOOP
        IF v_key NOT IN ('orders', 'items') THEN
            RAISE EXCEPTION 'unknown mapping key "%"', v_key
                USING ERRCODE = '22023', HINT = 'The mapping has two keys: "orders" and "items".';
        END IF;
    END LOOP;
    IF orders = items THEN
        RAISE EXCEPTION 'orders and items must be two different tables, got % twice', orders USING ERRCODE = '22023';
    END IF;
    PERFORM @extschema@._check_trackable(orders, 'orders');
    PERFORM @extschema@._check_trackable(items, 'items');
    -- A temporary table lives in one session: the worker cannot read it, and it vanishes at
    -- the end of the session, leaving tracked_tables pointing at nothing.
    IF EXISTS (SELECT 1 FROM pg_class c WHERE c.oid IN (orders, items) AND c.relpersistence = 't') THEN
        RAISE EXCEPTION 'cannot track temporary table %',
                (SELECT c.oid::regclass FROM pg_class c WHERE c.oid IN (orders, items) AND c.relpersistence = 't' LIMIT 1)
            USING ERRCODE = '42809', DETAIL = 'A temporary table is visible to one session only; the worker cannot read it.',
                  HINT = 'Track ordinary (or unlogged) tables.';
    END IF;
    IF EXISTS (SELECT 1 FROM @extschema@.tracked_tables t
               WHERE orders IN (t.orders_table, t.items_table) OR items IN (t.orders_table, t.items_table)) THEN
        RAISE EXCEPTION 'table % or % is already tracked', orders, items
            USING ERRCODE = '42710',
                  HINT = 'See SELECT * FROM odoo_sync.tracked_tables; untrack_orders() detaches a pair.';
    END IF;

    v_orders := @extschema@._resolve_columns(orders, 'orders', mapping -> 'orders');
    v_items := @extschema@._resolve_columns(items, 'items', mapping -> 'items');
    v_key_type := @extschema@._column_base_type(orders, v_orders ->> 'id');
    v_ref_type := @extschema@._column_base_type(items, v_items ->> 'order_id');
    IF @extschema@._key_type(v_key_type) <> @extschema@._key_type(v_ref_type) THEN
        RAISE EXCEPTION 'items.% (%) cannot reference orders.% (%)', v_items ->> 'order_id', v_ref_type,
                v_orders ->> 'id', v_key_type
            USING ERRCODE = '42804', HINT = 'The order reference of the items must have the type of the order key.';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
                   WHERE i.indrelid = orders AND i.indisunique AND i.indnkeyatts = 1 AND a.attname = v_orders ->> 'id') THEN
        RAISE EXCEPTION 'column "%" of % is not unique', v_orders ->> 'id', orders
            USING ERRCODE = '42P10', HINT = 'The order key must be the primary key or have a unique index of its own.';
    END IF;

    INSERT INTO @extschema@.tracked_tables (orders_table, items_table, key_type, mapping)
    VALUES (orders, items, @extschema@._key_type(v_key_type),
            jsonb_build_object('orders', v_orders, 'items', v_items))
    RETURNING id INTO v_id;
    FOR w IN SELECT x.message, x.fix FROM @extschema@.tracking_warnings() x WHERE x.tracking_id = v_id LOOP
        RAISE WARNING '%', w.message USING HINT = w.fix;
        v_warnings := v_warnings || jsonb_build_object('message', w.message, 'fix', w.fix);
    END LOOP;

    -- Existing orders: register them so batch_sync_pending() finds them. An order that
    -- already carries an Odoo id (tracked before, or linked by hand) is linked by that id, so
    -- its next push updates that Odoo order instead of creating another one.
    EXECUTE format(
        'INSERT INTO @extschema@.order_state (tracking_id, order_key, order_number, sync_status, odoo_id, link)
         SELECT $1, x.k, x.n, ''NOT_SYNCED'', x.odoo_id, CASE WHEN x.odoo_id IS NULL THEN ''xmlid'' ELSE ''dbid'' END
         FROM (SELECT o.%I::text AS k, %s AS n, %s AS odoo_id FROM %s o) x',
        v_orders ->> 'id',
        CASE WHEN v_orders ? 'order_number' THEN format('o.%I::text', v_orders ->> 'order_number') ELSE 'NULL::text' END,
        CASE WHEN v_orders ? 'odoo_order_id' THEN format('o.%I::integer', v_orders ->> 'odoo_order_id') ELSE 'NULL::integer' END,
        orders)
    USING v_id;
    GET DIAGNOSTICS v_count = ROW_COUNT;
    IF v_orders ? 'sync_status' THEN
        PERFORM @extschema@._exec_as_owner(orders,
            format('UPDATE %s SET %I = $1[1]::%s WHERE %I IS NULL', orders, v_orders ->> 'sync_status',
                   (SELECT format_type(a.atttypid, a.atttypmod) FROM pg_attribute a
                    WHERE a.attrelid = orders AND a.attname = v_orders ->> 'sync_status'),
                   v_orders ->> 'sync_status'),
            ARRAY['NOT_SYNCED']);
    END IF;

    EXECUTE format(
        'CREATE TRIGGER odoo_sync_capture BEFORE INSERT OR UPDATE OR DELETE ON %s
         FOR EACH ROW EXECUTE FUNCTION @extschema@.capture_order_change(%L, %L, %L, %L, %L, %L)',
        orders, v_id, v_orders ->> 'id', COALESCE(v_orders ->> 'order_number', ''),
        COALESCE(v_orders ->> 'sync_status', ''), COALESCE(v_orders ->> 'odoo_order_id', ''),
        COALESCE(v_orders ->> 'last_synced_at', ''));
    EXECUTE format(
        'CREATE TRIGGER odoo_sync_capture AFTER INSERT OR UPDATE OR DELETE ON %s
         FOR EACH ROW EXECUTE FUNCTION @extschema@.capture_item_change(%L, %L, %L)',
        items, v_id, v_items ->> 'id', v_items ->> 'order_id');
    PERFORM @extschema@._attach_truncate_guard(orders);
    PERFORM @extschema@._attach_truncate_guard(items);

    RETURN jsonb_build_object('tracking_id', v_id, 'orders_table', orders::text, 'items_table', items::text,
                              'key_type', @extschema@._key_type(v_key_type), 'existing_orders', v_count,
                              'orders', v_orders, 'items', v_items, 'warnings', v_warnings);
END
$$;

-- Detaches odoo_sync from a pair of tables: drops the triggers and forgets the sync state.
-- Odoo is not touched; history and events stay until retention removes them.
CREATE FUNCTION @extschema@.untrack_orders(orders regclass)
RETURNS void
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t @extschema@.tracked_tables;
BEGIN
    IF orders IS NULL THEN
        RAISE EXCEPTION 'untrack_orders needs the orders table' USING ERRCODE = '22004';
    END IF;
    SELECT * INTO t FROM @extschema@.tracked_tables tt WHERE tt.orders_table = orders;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'table % is not tracked', orders
            USING ERRCODE = '42704', HINT = 'See SELECT orders_table FROM odoo_sync.tracked_tables;';
    END IF;
    PERFORM @extschema@._check_trackable(t.orders_table, 'orders');
    EXECUTE format('DROP TRIGGER IF EXISTS odoo_sync_capture ON %s', t.orders_table);
    EXECUTE format('DROP TRIGGER IF EXISTS odoo_sync_capture ON %s', t.items_table);
    EXECUTE format('DROP TRIGGER IF EXISTS odoo_sync_no_truncate ON %s', t.orders_table);
    EXECUTE format('DROP TRIGGER IF EXISTS odoo_sync_no_truncate ON %s', t.items_table);
    DELETE FROM @extschema@.jobs WHERE tracking_id = t.id;
    DELETE FROM @extschema@.order_state WHERE tracking_id = t.id;
    DELETE FROM @extschema@.line_links WHERE tracking_id = t.id;
    DELETE FROM @extschema@.tracked_tables WHERE id = t.id;
END
$$;

-- A tracked table dropped with DROP TABLE: its tracking goes too (the other table of the pair
-- loses its capture trigger), so no function meets a tracking whose table is gone. Dropped
-- columns (objsubid <> 0) are not dropped tables.
CREATE FUNCTION @extschema@._untrack_dropped() RETURNS event_trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t @extschema@.tracked_tables;
    v_rel regclass;
BEGIN
    FOR t IN
        SELECT tt.* FROM @extschema@.tracked_tables tt
        WHERE EXISTS (SELECT 1 FROM pg_event_trigger_dropped_objects() d
                      WHERE d.classid = 'pg_class'::regclass AND d.objsubid = 0 AND d.objid IN (tt.orders_table, tt.items_table))
    LOOP
        FOREACH v_rel IN ARRAY ARRAY[t.orders_table, t.items_table] LOOP
            IF EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = v_rel)
               AND NOT EXISTS (SELECT 1 FROM pg_event_trigger_dropped_objects() d
                               WHERE d.classid = 'pg_class'::regclass AND d.objsubid = 0 AND d.objid = v_rel) THEN
                EXECUTE format('DROP TRIGGER IF EXISTS odoo_sync_capture ON %s', v_rel);
                EXECUTE format('DROP TRIGGER IF EXISTS odoo_sync_no_truncate ON %s', v_rel);
            END IF;
        END LOOP;
        DELETE FROM @extschema@.jobs WHERE tracking_id = t.id;
        DELETE FROM @extschema@.order_state WHERE tracking_id = t.id;
        DELETE FROM @extschema@.line_links WHERE tracking_id = t.id;
        DELETE FROM @extschema@.tracked_tables WHERE id = t.id;
        RAISE NOTICE 'odoo_sync: tracking % is removed (dropped: %)', t.id,
            (SELECT string_agg(d.object_identity, ', ') FROM pg_event_trigger_dropped_objects() d
             WHERE d.classid = 'pg_class'::regclass AND d.objsubid = 0 AND d.objid IN (t.orders_table, t.items_table));
    END LOOP;
END
$$;
CREATE EVENT TRIGGER odoo_sync_untrack_dropped ON sql_drop EXECUTE FUNCTION @extschema@._untrack_dropped();
