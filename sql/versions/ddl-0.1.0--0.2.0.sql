-- odoo_sync 0.1.0 -> 0.2.0, hand-written part: the table changes of the two-way sync.
-- scripts/gen-upgrade.py appends every function that is new or changed, the event trigger
-- and the grants, to make odoo_sync--0.1.0--0.2.0.sql. The test ext_upgrade checks that the
-- result equals a fresh install of 0.2.0.

ALTER TABLE @extschema@.order_state
    ADD COLUMN odoo_write_date text,
    ADD COLUMN odoo_state      text,
    ADD COLUMN odoo_locked     boolean NOT NULL DEFAULT false,
    ADD COLUMN link            text NOT NULL DEFAULT 'xmlid' CHECK (link IN ('xmlid', 'dbid')),
    ADD COLUMN attempt_snapshot jsonb,
    ADD COLUMN odoo_seen_at    timestamptz,
    ADD COLUMN odoo_deleted_id integer;
CREATE INDEX order_state_odoo_id ON @extschema@.order_state (odoo_id) WHERE odoo_id IS NOT NULL;
-- Room on each page for the row versions capture writes (see schema.sql). Pages written from
-- now on get it; existing ones keep their rows until a VACUUM FULL, which operations.md leaves to
-- the DBA (it locks the table).
ALTER TABLE @extschema@.order_state SET (fillfactor = 50);

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
CREATE TABLE @extschema@.pull_cursor (
    id            integer PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    watermark     text,
    seen          jsonb NOT NULL DEFAULT '{}',
    reconciled_at timestamptz,
    updated_at    timestamptz NOT NULL DEFAULT now()
);
SELECT pg_catalog.pg_extension_config_dump('@extschema@.line_links', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.pull_cursor', '');

ALTER TABLE @extschema@.batches DROP CONSTRAINT batches_kind_check,
    ADD CONSTRAINT batches_kind_check CHECK (kind IN ('push', 'import', 'replay'));
ALTER TABLE @extschema@.conflicts ADD COLUMN base_version jsonb, ADD COLUMN resolved_values jsonb;
ALTER TABLE @extschema@.partner_map DROP CONSTRAINT partner_map_source_check,
    ADD CONSTRAINT partner_map_source_check CHECK (source IN ('manual', 'ref', 'name', 'import'));
ALTER TABLE @extschema@.product_map DROP CONSTRAINT product_map_source_check,
    ADD CONSTRAINT product_map_source_check CHECK (source IN ('manual', 'default_code', 'name', 'import'));

ALTER TABLE @extschema@.setting_spec DROP CONSTRAINT setting_spec_type_check,
    ADD CONSTRAINT setting_spec_type_check CHECK (type IN ('integer', 'number', 'boolean', 'strategies', 'choice'));
INSERT INTO @extschema@.setting_spec (key, type, default_value, min_value, max_value, allowed, unit, description) VALUES
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
UPDATE @extschema@.setting_spec SET description =
    'Jobs still to do (ready or waiting for a retry) above this count make health() report the queue BACKLOGGED.'
WHERE key = 'backlog_max_jobs';
UPDATE @extschema@.setting_spec SET description =
    'A job still to do (ready or waiting for a retry) older than this makes health() report the queue BACKLOGGED.'
WHERE key = 'backlog_max_age_seconds';

-- TRUNCATE of a tracked table is refused (see tracking.sql): the guard on the tables tracked
-- before the upgrade. Its function is defined here, before the generated part repeats it.
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
DO $$
DECLARE
    t record;
BEGIN
    FOR t IN SELECT tt.orders_table, tt.items_table FROM @extschema@.tracked_tables tt LOOP
        EXECUTE format('CREATE TRIGGER odoo_sync_no_truncate BEFORE TRUNCATE ON %s
                        FOR EACH STATEMENT EXECUTE FUNCTION @extschema@._refuse_truncate()', t.orders_table);
        EXECUTE format('CREATE TRIGGER odoo_sync_no_truncate BEFORE TRUNCATE ON %s
                        FOR EACH STATEMENT EXECUTE FUNCTION @extschema@._refuse_truncate()', t.items_table);
    END LOOP;
END
$$;

-- Versions move from the event log's per-order index to order_state.version, which 0.1.0 wrote
-- only when an order started waiting: carry each order's latest change event over, then drop
-- the index (see event_log in the install script).
UPDATE @extschema@.order_state s SET version = e.version
FROM (SELECT tracking_id, entity_id, max(id) AS version FROM @extschema@.event_log
      WHERE event_type IN ('ORDER_CREATED', 'ORDER_UPDATED', 'ORDER_DELETED')
      GROUP BY tracking_id, entity_id) e
WHERE e.tracking_id = s.tracking_id AND e.entity_id = s.order_key AND e.version > s.version;
DROP INDEX @extschema@.event_log_entity;

-- The event log's actor becomes text: as a name it took 64 bytes of every row. A view's column
-- cannot change type under it, so the events view and the functions returning its rows go
-- first; scripts/gen-upgrade.py makes the view again right after this part and repeats every
-- function this part drops. The ALTER rewrites the event log under an exclusive lock, which
-- blocks capture while it runs (docs/operations.md, upgrading).
DROP FUNCTION @extschema@.event_history(text);
DROP VIEW @extschema@.events;
ALTER TABLE @extschema@.event_log ALTER COLUMN actor TYPE text;

-- A smaller ANALYZE sample for the event log (see event_log in the install script).
ALTER TABLE @extschema@.event_log
    ALTER COLUMN id SET STATISTICS 10,
    ALTER COLUMN occurred_at SET STATISTICS 10,
    ALTER COLUMN event_type SET STATISTICS 10,
    ALTER COLUMN tracking_id SET STATISTICS 10,
    ALTER COLUMN entity_id SET STATISTICS 10,
    ALTER COLUMN actor SET STATISTICS 0,
    ALTER COLUMN payload SET STATISTICS 0;

-- Capture leaves out the payload its event type implies (see event_log in the install script).
ALTER TABLE @extschema@.event_log ALTER COLUMN payload DROP NOT NULL;
