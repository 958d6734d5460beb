-- odoo_sync: the Odoo → PostgreSQL half. The worker hands Odoo's version of an order to
-- apply_remote(); the database decides, in the same transaction, what merges into the local
-- rows and what is a conflict (DESIGN.md section 4: three-way comparison against the base
-- stored at the last successful sync).
--
-- All three sides are compared in one canonical form:
--   {"state": "purchase", "partner_id": "7",
--    "lines": {"<item key>": {"product_id": "3", "quantity": 5, "unit_price": 12.5,
--                             "qty_received": 0, "odoo_line_id": 41, "discount": 10}}}
-- state is a status class (draft, to approve, sent, purchase, partial, received, cancel) so
-- that local statuses Odoo does not distinguish (DRAFT and APPROVED are both Odoo drafts)
-- compare equal; partners and products are Odoo ids (a local reference never resolved is
-- "local:<id>"); quantities and prices are JSON numbers, which jsonb compares as numerics.
-- Only product, quantity and price of a line are merged; the rest is what the base keeps of
-- Odoo's line (a discount, 17+, is Odoo's to set: pushes write back the base's).
--
-- The helpers are PL/pgSQL, even those that are one SELECT: PL/pgSQL keeps its plans for the
-- session, while a SQL function with a SET clause is parsed and planned again on every call
-- (an order_document call took 38 % longer with them in SQL, a completion 15 %).

-- Class of a local status (DESIGN.md section 2); NULL for a status odoo_sync does not know.
CREATE FUNCTION @extschema@._status_class(p_status text) RETURNS text
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN CASE upper(p_status)
        WHEN 'DRAFT' THEN 'draft' WHEN 'APPROVED' THEN 'draft'
        WHEN 'PENDING_APPROVAL' THEN 'to approve' WHEN 'SENT_TO_SUPPLIER' THEN 'sent'
        WHEN 'CONFIRMED' THEN 'purchase' WHEN 'PARTIALLY_RECEIVED' THEN 'partial'
        WHEN 'RECEIVED' THEN 'received' WHEN 'CANCELLED' THEN 'cancel' END;
END
$$;

-- The local status for a class: the current one when it already belongs to the class (an
-- APPROVED order stays APPROVED while Odoo keeps it a draft).
CREATE FUNCTION @extschema@._status_for_class(p_class text, p_current text) RETURNS text
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN CASE WHEN @extschema@._status_class(p_current) = p_class THEN p_current
        ELSE CASE p_class
            WHEN 'draft' THEN 'DRAFT' WHEN 'to approve' THEN 'PENDING_APPROVAL'
            WHEN 'sent' THEN 'SENT_TO_SUPPLIER' WHEN 'purchase' THEN 'CONFIRMED'
            WHEN 'partial' THEN 'PARTIALLY_RECEIVED' WHEN 'received' THEN 'RECEIVED'
            WHEN 'cancel' THEN 'CANCELLED' END END;
END
$$;

-- Class of an Odoo order: its state, refined by received quantities when Odoo reports them
-- (qty_received; a locked or `done` order counts as received, as in DESIGN.md).
CREATE FUNCTION @extschema@._remote_class(r jsonb) RETURNS text
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_state text := r ->> 'state';
    v_lines integer;
    v_full integer;
    v_some integer;
BEGIN
    IF v_state = 'done' OR (v_state = 'purchase' AND COALESCE((r ->> 'locked')::boolean, false)) THEN
        RETURN 'received';
    ELSIF v_state <> 'purchase' THEN
        RETURN v_state;
    END IF;
    SELECT count(*) FILTER (WHERE (l ->> 'quantity')::numeric > 0),
           count(*) FILTER (WHERE (l ->> 'quantity')::numeric > 0
                              AND COALESCE((l ->> 'qty_received')::numeric, 0) >= (l ->> 'quantity')::numeric),
           count(*) FILTER (WHERE COALESCE((l ->> 'qty_received')::numeric, 0) > 0)
    INTO v_lines, v_full, v_some
    FROM jsonb_array_elements(COALESCE(r -> 'lines', '[]')) l;
    RETURN CASE WHEN v_lines > 0 AND v_full = v_lines THEN 'received'
                WHEN v_some > 0 THEN 'partial' ELSE 'purchase' END;
END
$$;

-- Order notes. Odoo keeps them as HTML (purchase.order `notes`, `note` from 19 on, sanitized on
-- every write); applications mostly keep plain text. The three-way merge compares text: HTML is
-- reduced to its text (paragraph ends and line breaks become newlines, entities are decoded),
-- and line-end style and surrounding blanks do not count. A local value that is itself HTML is
-- read, and sent, as HTML.
CREATE FUNCTION @extschema@._looks_like_html(p text) RETURNS boolean
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN p ~ '^\s*<[A-Za-z][^>]*>' AND p ~ '>\s*$';
END
$$;

-- Plain text in canonical form: \n line ends, no surrounding blanks; NULL when empty.
CREATE FUNCTION @extschema@._plain_note(p text) RETURNS text
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN NULLIF(btrim(regexp_replace(p, '\r\n?', E'\n', 'g'), E' \t\n' || chr(160)), '');
END
$$;

-- The text of an HTML fragment (what Odoo's notes field holds).
CREATE FUNCTION @extschema@._html_text(p_html text) RETURNS text
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v text := p_html;
    m text[];
BEGIN
    IF v IS NULL THEN
        RETURN NULL;
    END IF;
    -- Line ends in HTML source are blanks; breaks and the ends of blocks are the text's lines.
    v := regexp_replace(v, '\s*\r?\n\s*', ' ', 'g');
    v := regexp_replace(v, '<br\s*/?>', E'\n', 'gi');
    v := regexp_replace(v, '</(p|div|li|h[1-6]|tr|blockquote|pre)\s*>', E'\n', 'gi');
    v := regexp_replace(v, '<[^>]*>', '', 'g');
    v := replace(replace(replace(replace(replace(v, '&lt;', '<'), '&gt;', '>'), '&quot;', '"'), '&#39;', ''''), '&apos;', '''');
    v := replace(v, '&nbsp;', chr(160));
    FOR m IN SELECT DISTINCT regexp_matches(v, '&#([xX]?)([0-9A-Fa-f]{1,6});', 'g') LOOP
        CONTINUE WHEN m[1] = '' AND m[2] !~ '^[0-9]+$';
        v := replace(v, format('&#%s%s;', m[1], m[2]),
                     chr(CASE WHEN m[1] = '' THEN m[2]::integer
                              ELSE ('x' || lpad(m[2], 8, '0'))::bit(32)::integer END));
    END LOOP;
    v := replace(v, '&amp;', '&');
    RETURN @extschema@._plain_note(v);
END
$$;

-- Canonical text of a local notes value (plain text, or HTML).
CREATE FUNCTION @extschema@._note_text(p text) RETURNS text
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN CASE WHEN @extschema@._looks_like_html(p) THEN @extschema@._html_text(p) ELSE @extschema@._plain_note(p) END;
END
$$;

-- What a local notes value is written to Odoo as: its HTML as it is, or its text as one
-- paragraph with line breaks (which Odoo's sanitizer keeps unchanged); NULL when empty.
CREATE FUNCTION @extschema@._text_html(p text) RETURNS text
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN CASE WHEN @extschema@._note_text(p) IS NULL THEN NULL
                WHEN @extschema@._looks_like_html(p) THEN p
                ELSE '<p>' || replace(replace(replace(replace(@extschema@._plain_note(p), '&', '&amp;'), '<', '&lt;'),
                                              '>', '&gt;'), E'\n', '<br>') || '</p>' END;
END
$$;

-- Odoo's notes as the base and the canonical remote keep them: their text, and their HTML
-- (written back as it is while the local notes do not change).
CREATE FUNCTION @extschema@._odoo_notes(p_html jsonb) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN jsonb_build_object('notes', @extschema@._html_text(p_html #>> '{}'), 'notes_html', p_html);
END
$$;

-- The text the merge compares for notes: of a local value, or of Odoo's HTML (from_odoo).
-- `odoo-sync-worker verify` asks it, so that it agrees with the merge on what is equal.
CREATE FUNCTION @extschema@.notes_text(notes text, from_odoo boolean DEFAULT false) RETURNS text
LANGUAGE sql IMMUTABLE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN from_odoo THEN @extschema@._html_text(notes) ELSE @extschema@._note_text(notes) END
$$;

-- What a push writes into Odoo's notes: {"html": <HTML or null>}, or NULL to leave them alone.
-- Local notes equal to those of the last sync keep Odoo's HTML as it is (formatting included):
-- a push only runs once Odoo's changes since that sync are merged. With a base from before
-- notes were synced, empty local notes leave Odoo's alone.
CREATE FUNCTION @extschema@._notes_to_write(p_local text, p_base jsonb) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN (
        SELECT CASE
            WHEN p_base ? 'notes' AND @extschema@._note_text(p_local) IS NOT DISTINCT FROM p_base ->> 'notes'
                THEN jsonb_build_object('html', p_base -> 'notes_html')
            WHEN p_base IS NOT NULL AND NOT p_base ? 'notes' AND @extschema@._note_text(p_local) IS NULL THEN NULL
            ELSE jsonb_build_object('html', @extschema@._text_html(p_local)) END
    );
END
$$;

-- Delivery dates. The local requested_delivery_date is Odoo's "Expected Arrival": the
-- `date_planned` of every line, which Odoo keeps as a UTC datetime and shows as the minimum of
-- the lines on the order. A local `date` is sent as noon UTC, so it shows as the same day in
-- Odoo in every time zone from UTC-11 to UTC+12; a `timestamptz` as its instant; a `timestamp`
-- as UTC. The merge compares days (the UTC date), so a time of day changed in Odoo alone is
-- not a change.

-- Odoo's UTC datetime text ("YYYY-MM-DD HH:MM:SS") for a local delivery date as
-- order_document() reads it (JSON text of a date, timestamp or timestamptz); NULL for NULL or
-- a value Odoo cannot hold (infinity, years outside 1..9999).
CREATE FUNCTION @extschema@._odoo_datetime(p_value text) RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_ts timestamp;
BEGIN
    IF p_value IS NULL THEN
        RETURN NULL;
    ELSIF p_value ~ '^\d{4}-\d{2}-\d{2}$' THEN
        v_ts := p_value::date + time '12:00';
    ELSIF p_value ~ '(Z|[+-]\d{2}(:?\d{2})?)$' THEN
        v_ts := p_value::timestamptz AT TIME ZONE 'UTC';
    ELSE
        v_ts := p_value::timestamp;
    END IF;
    IF NOT isfinite(v_ts) OR extract(year FROM v_ts) NOT BETWEEN 1 AND 9999 THEN
        RETURN NULL;
    END IF;
    RETURN to_char(v_ts, 'YYYY-MM-DD HH24:MI:SS');
EXCEPTION WHEN invalid_datetime_format OR datetime_field_overflow THEN
    RETURN NULL;
END
$$;

-- The delivery day the merge compares, of Odoo's date_planned as read (a UTC datetime text,
-- or false): its UTC date, NULL when Odoo has none.
CREATE FUNCTION @extschema@._odoo_day(p_date_planned jsonb) RETURNS text
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN CASE WHEN jsonb_typeof(p_date_planned) = 'string' AND p_date_planned #>> '{}' ~ '^\d{4}-\d{2}-\d{2}'
                THEN left(p_date_planned #>> '{}', 10) END;
END
$$;

-- The canonical delivery day of Odoo's date_planned: {"delivery_date": day}, or {} when Odoo
-- has none (an order without lines), which the merge then leaves out.
CREATE FUNCTION @extschema@._odoo_delivery(p_date_planned jsonb) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN CASE WHEN @extschema@._odoo_day(p_date_planned) IS NULL THEN '{}'::jsonb
                ELSE jsonb_build_object('delivery_date', @extschema@._odoo_day(p_date_planned)) END;
END
$$;

-- Canonical form of a local order document (order_document()); NULL for a deleted order.
CREATE FUNCTION @extschema@._canonical_local(p_doc jsonb) RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN CASE WHEN jsonb_typeof(p_doc -> 'order') = 'object' THEN jsonb_build_object(
        'state', @extschema@._status_class(p_doc -> 'order' ->> 'status'),
        'partner_id', COALESCE((SELECT m.odoo_partner_id::text FROM @extschema@.partner_map m
                                WHERE m.local_supplier_id = p_doc -> 'order' ->> 'supplier_id'),
                               'local:' || (p_doc -> 'order' ->> 'supplier_id')),
        'lines', COALESCE((
            SELECT jsonb_object_agg(i ->> 'id', jsonb_build_object(
                       'product_id', COALESCE(m.odoo_product_id::text, 'local:' || (i ->> 'product_id')),
                       'quantity', (i ->> 'quantity')::numeric,
                       'unit_price', (i ->> 'unit_price')::numeric))
            FROM jsonb_array_elements(p_doc -> 'items') i
            LEFT JOIN @extschema@.product_map m ON m.local_product_id = i ->> 'product_id'), '{}'))
        || CASE WHEN p_doc -> 'order' ? 'notes'
                THEN jsonb_build_object('notes', @extschema@._note_text(p_doc -> 'order' ->> 'notes'))
                ELSE '{}' END
        -- null when the mapped column is empty: the local side then has no opinion (_diff3).
        || CASE WHEN p_doc -> 'order' ? 'requested_delivery_date'
                THEN jsonb_build_object('delivery_date',
                         left(@extschema@._odoo_datetime(p_doc -> 'order' ->> 'requested_delivery_date'), 10))
                ELSE '{}' END
    END;
END
$$;

-- Name of our external id (module odoo_sync) of a local key: <kind>_<tracking>_<key>, kind 'po'
-- for orders and 'pol' for lines. A key with a space goes under <kind>x_ with '%' and the space
-- percent-encoded (Odoo refuses external ids with spaces); other keys keep the plain form.
-- The worker's order_push::xmlid_name is the same rule.
CREATE FUNCTION @extschema@._xmlid_name(p_kind text, p_tracking_id integer, p_key text) RETURNS text
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN CASE WHEN strpos(p_key, ' ') = 0 THEN p_kind || '_' || p_tracking_id || '_' || p_key
                ELSE p_kind || 'x_' || p_tracking_id || '_' || replace(replace(p_key, '%', '%25'), ' ', '%20') END;
END
$$;

-- The local key of one of our external id names of tracking p_tracking_id (NULL if it is not one).
CREATE FUNCTION @extschema@._xmlid_key(p_kind text, p_tracking_id integer, p_name text) RETURNS text
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN CASE
        WHEN starts_with(p_name, p_kind || '_' || p_tracking_id || '_')
            THEN substr(p_name, length(p_kind || '_' || p_tracking_id || '_') + 1)
        WHEN starts_with(p_name, p_kind || 'x_' || p_tracking_id || '_')
            THEN replace(replace(substr(p_name, length(p_kind || 'x_' || p_tracking_id || '_') + 1), '%20', ' '), '%25', '%')
    END;
END
$$;

-- Key of an Odoo line among the local items: our external id (pushed from here), a learned
-- link (created from Odoo), or "odoo:<line id>" for a line the local side has never seen.
CREATE FUNCTION @extschema@._line_key(p_tracking_id integer, l jsonb) RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN COALESCE(
        @extschema@._xmlid_key('pol', p_tracking_id, l ->> 'xmlid'),
        (SELECT k.item_key FROM @extschema@.line_links k
         WHERE k.tracking_id = p_tracking_id AND k.odoo_line_id = (l ->> 'odoo_line_id')::integer),
        'odoo:' || (l ->> 'odoo_line_id'));
END
$$;

-- Digits after the point that the items column mapped to p_column keeps (numeric(p, s): s; an
-- integer type: 0); NULL when it keeps them all.
CREATE FUNCTION @extschema@._item_scale(p_tracking_id integer, p_column text) RETURNS integer
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN (
        SELECT CASE WHEN a.atttypid IN ('int2'::regtype, 'int4'::regtype, 'int8'::regtype) THEN 0
                    WHEN a.atttypid = 'numeric'::regtype AND a.atttypmod >= 4 THEN (a.atttypmod - 4) & 65535 END
        FROM @extschema@.tracked_tables t
        JOIN pg_attribute a ON a.attrelid = t.items_table AND a.attname = t.mapping -> 'items' ->> p_column
        WHERE t.id = p_tracking_id
    );
END
$$;

-- Canonical form of Odoo's version of an order (as the worker sends it to apply_remote).
-- Quantities and prices are rounded as the local columns store them: a price of 12.345 in Odoo
-- is 12.35 in a numeric(12,2) column, and the merge must not take that rounding for a local
-- change and push 12.35 back to Odoo.
CREATE FUNCTION @extschema@._canonical_remote(p_tracking_id integer, r jsonb) RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    -- Read once: in the query below the planner would call them again for every line.
    v_qty_scale integer := @extschema@._item_scale(p_tracking_id, 'quantity');
    v_price_scale integer := @extschema@._item_scale(p_tracking_id, 'unit_price');
BEGIN
    RETURN jsonb_build_object(
        'state', @extschema@._remote_class(r),
        'partner_id', r ->> 'partner_id',
        'lines', COALESCE((
            SELECT jsonb_object_agg(@extschema@._line_key(p_tracking_id, l), jsonb_build_object(
                       'product_id', l ->> 'product_id',
                       'quantity', CASE WHEN v_qty_scale IS NULL THEN (l ->> 'quantity')::numeric
                                        ELSE round((l ->> 'quantity')::numeric, v_qty_scale) END,
                       'unit_price', CASE WHEN v_price_scale IS NULL THEN (l ->> 'unit_price')::numeric
                                          ELSE round((l ->> 'unit_price')::numeric, v_price_scale) END,
                       'qty_received', COALESCE((l ->> 'qty_received')::numeric, 0),
                       'odoo_line_id', (l ->> 'odoo_line_id')::integer)
                   -- Odoo's discount (17+): not merged, but the base keeps it for the pushes,
                   -- which write it back (the worker's base_discount).
                   || CASE WHEN l ? 'discount' THEN jsonb_build_object('discount', (l ->> 'discount')::numeric)
                           ELSE '{}' END)
            FROM jsonb_array_elements(COALESCE(r -> 'lines', '[]')) l), '{}'))
        -- The worker reads Odoo's notes HTML as notes_html; the base keeps it for the next push.
        || CASE WHEN r ? 'notes_html' THEN @extschema@._odoo_notes(r -> 'notes_html') ELSE '{}' END
        || @extschema@._odoo_delivery(r -> 'date_planned')
        -- Odoo's origin: not merged, but resolve_conflict compares it with the order number.
        || CASE WHEN r ? 'origin' THEN jsonb_build_object('origin', r -> 'origin') ELSE '{}' END;
END
$$;

-- What of a base (or a canonical Odoo order) the merge reads or keeps: all but the totals,
-- which are the local row's, and the Odoo line ids, which a base written by a push by
-- external id does not know (the line keys identify the lines). A discount of 0 is no
-- discount (Odoo 16 has none, the pushes' bases say 0); Odoo's notes count only for a
-- tracking that maps a notes column (p_notes).
CREATE FUNCTION @extschema@._merged_part(snapshot jsonb, p_notes boolean) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN (CASE WHEN p_notes THEN snapshot - 'amounts' ELSE snapshot - 'amounts' - 'notes' - 'notes_html' END)
        || jsonb_build_object('lines', COALESCE(
               (SELECT jsonb_object_agg(x.k, CASE WHEN (x.v ->> 'discount')::numeric = 0
                                                  THEN x.v - 'odoo_line_id' - 'discount'
                                                  ELSE x.v - 'odoo_line_id' END)
                FROM jsonb_each(snapshot -> 'lines') x(k, v)), '{}'));
END
$$;

-- The pushes noted in order_state.attempt_snapshot and not acknowledged, one per row (an
-- array; a single object in the form 0.1.0 wrote).
CREATE FUNCTION @extschema@._noted_attempts(snapshot jsonb) RETURNS SETOF jsonb
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN QUERY
        SELECT jsonb_array_elements(CASE jsonb_typeof(snapshot)
                                        WHEN 'array' THEN snapshot
                                        WHEN 'object' THEN jsonb_build_array(snapshot)
                                        ELSE '[]' END);
END
$$;

-- The attributes of a line that both sides can change.
CREATE FUNCTION @extschema@._line_core(l jsonb) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN CASE WHEN l IS NULL OR jsonb_typeof(l) = 'null' THEN NULL
                ELSE jsonb_build_object('product_id', l -> 'product_id', 'quantity', l -> 'quantity',
                                        'unit_price', l -> 'unit_price') END;
END
$$;

-- Three-way comparison. One entry per field that changed since the base:
--   {"field": "state" | "partner_id" | "lines.<key>" | "lines.<key>.<attr>", "group": policy
--    group, "line": key, "attr": attr, "base", "local", "remote", "side": local|remote|both}
-- A field changed on both sides to the same value is no change. A line present on one side
-- only is an entry for the whole line ("lines.<key>", attr NULL).
CREATE FUNCTION @extschema@._diff3(b jsonb, l jsonb, r jsonb) RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_out jsonb := '[]';
    v_field text;
    v_key text;
    v_attr text;
    bv jsonb; lv jsonb; rv jsonb;
    bl jsonb; ll jsonb; rl jsonb;
    v_side text;
BEGIN
    FOREACH v_field IN ARRAY ARRAY['state', 'partner_id', 'notes', 'delivery_date'] LOOP
        bv := b -> v_field; lv := l -> v_field; rv := r -> v_field;
        -- The delivery date only when the tracking maps the column and Odoo has one; an empty
        -- local date takes Odoo's (it is the base's value: no local change).
        CONTINUE WHEN v_field = 'delivery_date' AND NOT COALESCE(l ? v_field AND r ? v_field, false);
        IF v_field = 'delivery_date' AND jsonb_typeof(lv) = 'null' THEN
            lv := COALESCE(bv, rv);
        END IF;
        -- Without a status column (or with statuses odoo_sync does not know) the local side
        -- has no state: Odoo's is taken as it is.
        CONTINUE WHEN v_field = 'state' AND (lv IS NULL OR jsonb_typeof(lv) = 'null');
        -- Notes only when both sides carry them (a mapped notes column; Odoo's read). A base
        -- from before notes were synced knows none: differing notes on both sides are then a
        -- conflict, never overwritten silently.
        CONTINUE WHEN v_field = 'notes' AND NOT COALESCE(l ? 'notes' AND r ? 'notes', false);
        v_side := CASE WHEN lv IS DISTINCT FROM bv AND rv IS DISTINCT FROM bv THEN
                           CASE WHEN lv = rv THEN NULL ELSE 'both' END
                       WHEN rv IS DISTINCT FROM bv THEN 'remote'
                       WHEN lv IS DISTINCT FROM bv THEN 'local' END;
        CONTINUE WHEN v_side IS NULL;
        v_out := v_out || jsonb_build_object('field', v_field,
            'group', CASE WHEN v_field = 'partner_id' THEN 'supplier' WHEN v_field = 'notes' THEN 'notes'
                          WHEN v_field = 'delivery_date' THEN 'dates'
                          WHEN rv #>> '{}' IN ('partial', 'received') THEN 'received' ELSE 'state' END,
            'base', bv, 'local', lv, 'remote', rv, 'side', v_side);
    END LOOP;

    FOR v_key IN
        SELECT k FROM jsonb_object_keys(COALESCE(b -> 'lines', '{}')) k
        UNION SELECT k FROM jsonb_object_keys(COALESCE(l -> 'lines', '{}')) k
        UNION SELECT k FROM jsonb_object_keys(COALESCE(r -> 'lines', '{}')) k
        ORDER BY 1
    LOOP
        bl := @extschema@._line_core(b -> 'lines' -> v_key);
        ll := @extschema@._line_core(l -> 'lines' -> v_key);
        rl := @extschema@._line_core(r -> 'lines' -> v_key);
        IF ll IS NULL OR rl IS NULL THEN
            -- Added or removed on one side (or both).
            v_side := CASE
                WHEN ll IS NULL AND rl IS NULL THEN NULL
                WHEN bl IS NULL THEN CASE WHEN ll IS NULL THEN 'remote' ELSE 'local' END
                WHEN ll IS NULL THEN CASE WHEN rl = bl THEN 'local' ELSE 'both' END
                ELSE CASE WHEN ll = bl THEN 'remote' ELSE 'both' END END;
            CONTINUE WHEN v_side IS NULL;
            v_out := v_out || jsonb_build_object('field', 'lines.' || v_key, 'group', 'lines', 'line', v_key,
                'attr', NULL, 'base', bl, 'local', ll, 'remote', rl, 'side', v_side);
            CONTINUE;
        END IF;
        FOREACH v_attr IN ARRAY ARRAY['product_id', 'quantity', 'unit_price'] LOOP
            bv := bl -> v_attr; lv := ll -> v_attr; rv := rl -> v_attr;
            v_side := CASE WHEN lv IS DISTINCT FROM bv AND rv IS DISTINCT FROM bv THEN
                               CASE WHEN lv = rv THEN NULL ELSE 'both' END
                           WHEN rv IS DISTINCT FROM bv THEN 'remote'
                           WHEN lv IS DISTINCT FROM bv THEN 'local' END;
            CONTINUE WHEN v_side IS NULL;
            v_out := v_out || jsonb_build_object('field', format('lines.%s.%s', v_key, v_attr), 'group', 'lines',
                'line', v_key, 'attr', v_attr, 'base', bv, 'local', lv, 'remote', rv, 'side', v_side);
        END LOOP;
    END LOOP;
    RETURN v_out;
END
$$;

-- True when the local order says the same as Odoo (nothing left to push).
CREATE FUNCTION @extschema@._same_content(l jsonb, r jsonb) RETURNS boolean
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN jsonb_array_length(@extschema@._diff3(r, l, r)) = 0;
END
$$;

-- Type of a column as written in a cast.
CREATE FUNCTION @extschema@._coltype(p_rel regclass, p_column text) RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN (
        SELECT format_type(a.atttypid, a.atttypmod) FROM pg_attribute a
        WHERE a.attrelid = p_rel AND a.attname = p_column AND a.attnum > 0 AND NOT a.attisdropped
    );
END
$$;

-- A key for a new local row created from Odoo data, when the key column has no default of
-- its own: a uuid, or a readable text key. Bigint keys without a default cannot be invented.
CREATE FUNCTION @extschema@._new_key_expr(p_rel regclass, p_column text, p_text_key text) RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_has_default boolean;
    v_type regtype;
BEGIN
    SELECT a.atthasdef OR a.attidentity <> '' INTO v_has_default FROM pg_attribute a
    WHERE a.attrelid = p_rel AND a.attname = p_column;
    IF v_has_default THEN
        RETURN NULL;
    END IF;
    v_type := @extschema@._column_base_type(p_rel, p_column);
    IF v_type = 'uuid'::regtype THEN
        RETURN 'pg_catalog.gen_random_uuid()';
    ELSIF v_type IN ('text'::regtype, 'varchar'::regtype, 'bpchar'::regtype) THEN
        RETURN quote_literal(p_text_key);
    END IF;
    RAISE EXCEPTION 'cannot create a row in % from Odoo data: column % has no default', p_rel, p_column
        USING ERRCODE = '23502',
              HINT = format('Give %s.%s a default (an identity or a sequence), then import again.', p_rel, p_column);
END
$$;

-- The local id of an Odoo partner/product: one already mapped to it (any of them: they all
-- push to the same record), else a new one learned now — the Odoo reference (partner ref,
-- product default_code) when it is set, else the Odoo id — and stored so pushes find the same
-- record. A new id already mapped to another Odoo record is refused: the local rows would point
-- at the wrong vendor or product.
CREATE FUNCTION @extschema@._learn_local_ref(p_kind text, p_odoo_id integer, p_code text) RETURNS text
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_table text := CASE p_kind WHEN 'partner' THEN 'partner_map' ELSE 'product_map' END;
    v_key text := CASE p_kind WHEN 'partner' THEN 'local_supplier_id' ELSE 'local_product_id' END;
    v_id text := CASE p_kind WHEN 'partner' THEN 'odoo_partner_id' ELSE 'odoo_product_id' END;
    v_local text;
    v_mapped integer;
BEGIN
    EXECUTE format('SELECT min(%I) FROM @extschema@.%I WHERE %I = $1', v_key, v_table, v_id)
        INTO v_local USING p_odoo_id;
    IF v_local IS NOT NULL THEN
        RETURN v_local;
    END IF;
    v_local := COALESCE(NULLIF(p_code, ''), p_odoo_id::text);
    EXECUTE format('INSERT INTO @extschema@.%I (%I, %I, source) VALUES ($1, $2, ''import'')
                    ON CONFLICT (%I) DO NOTHING', v_table, v_key, v_id, v_key)
        USING v_local, p_odoo_id;
    EXECUTE format('SELECT %I FROM @extschema@.%I WHERE %I = $1', v_id, v_table, v_key)
        INTO v_mapped USING v_local;
    IF v_mapped IS DISTINCT FROM p_odoo_id THEN
        RAISE EXCEPTION 'Odoo % % has no local id: "%" already stands for Odoo % %', p_kind, p_odoo_id, v_local,
                p_kind, v_mapped
            USING ERRCODE = '23505',
                  HINT = format('Map it yourself: INSERT INTO odoo_sync.%s (%s, %s) VALUES (''<local id>'', %s);',
                                v_table, v_key, v_id, p_odoo_id);
    END IF;
    RETURN v_local;
END
$$;

-- Writes one local item from an Odoo line: updates p_attrs of item p_item_key, or inserts
-- (p_insert) an item under p_item_key, or under a new key when p_item_key is NULL. Returns the
-- item's key. Runs as the items table's owner, without capture.
CREATE FUNCTION @extschema@._write_item(t @extschema@.tracked_tables, p_order_key text, p_item_key text,
                                        rl jsonb, p_attrs text[], p_insert boolean DEFAULT false)
RETURNS text
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    m jsonb := t.mapping -> 'items';
    v_cols text[] := '{}';
    v_vals text[] := '{}';
    v_params text[] := '{}';
    v_canon text;
    v_value text;
    v_key_expr text;
    v_keys text[];
    -- The types of the items table's columns, read in one catalog query rather than one per
    -- column written.
    v_types jsonb := (SELECT jsonb_object_agg(a.attname, format_type(a.atttypid, a.atttypmod))
                      FROM pg_attribute a
                      WHERE a.attrelid = t.items_table AND a.attnum > 0 AND NOT a.attisdropped);
BEGIN
    FOREACH v_canon IN ARRAY ARRAY['product_id', 'product_name', 'product_code', 'quantity', 'unit_price', 'total_price'] LOOP
        CONTINUE WHEN m ->> v_canon IS NULL;
        CONTINUE WHEN NOT p_insert AND p_item_key IS NOT NULL AND NOT v_canon = ANY (p_attrs)
                      AND NOT (v_canon = 'total_price' AND p_attrs && ARRAY['quantity', 'unit_price']);
        v_value := CASE v_canon
            WHEN 'product_id' THEN @extschema@._learn_local_ref('product', (rl ->> 'product_id')::integer, rl ->> 'product_code')
            WHEN 'product_name' THEN rl ->> 'name'
            WHEN 'product_code' THEN rl ->> 'product_code'
            WHEN 'quantity' THEN rl ->> 'quantity'
            WHEN 'unit_price' THEN rl ->> 'unit_price'
            WHEN 'total_price' THEN rl ->> 'subtotal' END;
        CONTINUE WHEN v_value IS NULL;
        v_params := v_params || v_value;
        v_cols := v_cols || quote_ident(m ->> v_canon);
        v_vals := v_vals || format('$1[%s]::%s', cardinality(v_params), v_types ->> (m ->> v_canon));
    END LOOP;
    IF p_item_key IS NOT NULL AND NOT p_insert THEN
        IF cardinality(v_cols) = 0 THEN
            RETURN p_item_key;
        END IF;
        v_params := v_params || p_item_key;
        PERFORM @extschema@._exec_as_owner(t.items_table, format('UPDATE %s SET (%s) = ROW(%s) WHERE %I = $1[%s]::%s',
            t.items_table, array_to_string(v_cols, ', '), array_to_string(v_vals, ', '), m ->> 'id',
            cardinality(v_params), v_types ->> (m ->> 'id')), v_params);
        RETURN p_item_key;
    END IF;
    v_params := v_params || p_order_key;
    v_cols := v_cols || quote_ident(m ->> 'order_id');
    v_vals := v_vals || format('$1[%s]::%s', cardinality(v_params), v_types ->> (m ->> 'order_id'));
    IF p_item_key IS NOT NULL THEN
        v_params := v_params || p_item_key;
        v_key_expr := format('$1[%s]::%s', cardinality(v_params), v_types ->> (m ->> 'id'));
    ELSE
        v_key_expr := @extschema@._new_key_expr(t.items_table, m ->> 'id', 'odoo-line-' || (rl ->> 'odoo_line_id'));
    END IF;
    IF v_key_expr IS NOT NULL THEN
        v_cols := v_cols || quote_ident(m ->> 'id');
        v_vals := v_vals || v_key_expr;
    END IF;
    v_keys := @extschema@._query_as_owner(t.items_table, format('INSERT INTO %s (%s) VALUES (%s) RETURNING %I::text',
        t.items_table, array_to_string(v_cols, ', '), array_to_string(v_vals, ', '), m ->> 'id'), v_params);
    IF p_item_key IS NULL AND rl ->> 'odoo_line_id' IS NOT NULL THEN
        INSERT INTO @extschema@.line_links (tracking_id, item_key, order_key, odoo_line_id)
        VALUES (t.id, v_keys[1], p_order_key, (rl ->> 'odoo_line_id')::integer)
        ON CONFLICT (tracking_id, odoo_line_id) DO UPDATE SET item_key = EXCLUDED.item_key, order_key = EXCLUDED.order_key;
    END IF;
    RETURN v_keys[1];
END
$$;

-- The local value of a delivery day from Odoo: the day itself for a `date` column; for a
-- timestamp column Odoo's datetime (UTC) when it falls on that day, else noon UTC of the day
-- (a day chosen when resolving a conflict).
CREATE FUNCTION @extschema@._local_delivery(t @extschema@.tracked_tables, p_day text, p_date_planned jsonb)
RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN CASE
        WHEN p_day IS NULL THEN NULL
        WHEN @extschema@._coltype(t.orders_table, t.mapping -> 'orders' ->> 'requested_delivery_date') = 'date' THEN p_day
        WHEN @extschema@._odoo_day(p_date_planned) = p_day THEN (p_date_planned #>> '{}') || '+00'
        ELSE p_day || ' 12:00:00+00' END;
END
$$;

-- Applies the entries Odoo wins to the local rows (as the tables' owners, without capture).
-- Returns the keys given to lines created from Odoo: {"odoo:<line id>": "<new item key>"}.
CREATE FUNCTION @extschema@._apply_to_local(t @extschema@.tracked_tables, p_order_key text, p_entries jsonb,
                                            r jsonb, p_local_status text)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    e jsonb;
    v_order jsonb := '{}';
    v_new_keys jsonb := '{}';
    v_line jsonb;
    v_key text;
    v_attrs text[];
    v_supplier text;
    v_notes text;
    v_items_key_type text := @extschema@._coltype(t.items_table, t.mapping -> 'items' ->> 'id');
BEGIN
    FOR e IN SELECT value FROM jsonb_array_elements(p_entries) LOOP
        IF e ->> 'field' = 'state' THEN
            v_order := v_order || jsonb_build_object('status',
                @extschema@._status_for_class(e ->> 'remote', p_local_status));
        ELSIF e ->> 'field' = 'partner_id' THEN
            v_supplier := @extschema@._learn_local_ref('partner', (e ->> 'remote')::integer, r ->> 'partner_ref');
            v_order := v_order || jsonb_build_object('supplier_id', v_supplier);
            IF t.mapping -> 'orders' ? 'supplier_name' AND r ? 'partner_name' THEN
                v_order := v_order || jsonb_build_object('supplier_name', r ->> 'partner_name');
            END IF;
        ELSIF e ->> 'field' = 'notes' THEN
            -- An application that keeps HTML notes gets Odoo's HTML; others get its text.
            v_notes := @extschema@._local_values(t.id, p_order_key, ARRAY['notes']) ->> 'notes';
            v_order := v_order || jsonb_build_object('notes', CASE
                WHEN NOT COALESCE(@extschema@._looks_like_html(v_notes), false) THEN e ->> 'remote'
                WHEN @extschema@._html_text(r ->> 'notes_html') IS NOT DISTINCT FROM e ->> 'remote' THEN r ->> 'notes_html'
                ELSE @extschema@._text_html(e ->> 'remote') END);
        ELSIF e ->> 'field' = 'delivery_date' AND t.mapping -> 'orders' ? 'requested_delivery_date' THEN
            v_order := v_order || jsonb_build_object('requested_delivery_date',
                @extschema@._local_delivery(t, e ->> 'remote', r -> 'date_planned'));
        END IF;
    END LOOP;
    IF v_order <> '{}' THEN
        PERFORM @extschema@._write_back(t.id, p_order_key, v_order);
    END IF;

    -- Lines: whole-line entries first (added or removed in Odoo), then attributes.
    FOR e IN SELECT value FROM jsonb_array_elements(p_entries) WHERE value ->> 'attr' IS NULL AND value ? 'line' LOOP
        v_key := e ->> 'line';
        SELECT value INTO v_line FROM jsonb_array_elements(r -> 'lines') l(value)
        WHERE @extschema@._line_key(t.id, l.value) = v_key;
        IF e -> 'remote' IS NULL OR jsonb_typeof(e -> 'remote') = 'null' THEN
            IF NOT starts_with(v_key, 'odoo:') THEN
                PERFORM @extschema@._exec_as_owner(t.items_table, format('DELETE FROM %s WHERE %I = $1[1]::%s',
                    t.items_table, t.mapping -> 'items' ->> 'id', v_items_key_type), ARRAY[v_key]);
                DELETE FROM @extschema@.line_links WHERE tracking_id = t.id AND item_key = v_key;
            END IF;
        ELSIF starts_with(v_key, 'odoo:') THEN
            v_new_keys := v_new_keys || jsonb_build_object(v_key,
                @extschema@._write_item(t, p_order_key, NULL, v_line, NULL));
        ELSE
            -- Odoo has a line of ours the local side no longer has: it comes back under its key.
            PERFORM @extschema@._write_item(t, p_order_key, v_key, v_line, NULL, true);
        END IF;
    END LOOP;
    FOR v_key, v_attrs IN
        SELECT value ->> 'line', array_agg(value ->> 'attr')
        FROM jsonb_array_elements(p_entries) WHERE value ->> 'attr' IS NOT NULL
        GROUP BY 1
    LOOP
        SELECT value INTO v_line FROM jsonb_array_elements(r -> 'lines') l(value)
        WHERE @extschema@._line_key(t.id, l.value) = v_key;
        PERFORM @extschema@._write_item(t, p_order_key, v_key, v_line, v_attrs);
    END LOOP;
    RETURN v_new_keys;
END
$$;

-- Canonical remote with the keys of lines just created locally.
CREATE FUNCTION @extschema@._rekey(c jsonb, p_new_keys jsonb) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN jsonb_set(c, '{lines}', COALESCE((
        SELECT jsonb_object_agg(COALESCE(p_new_keys ->> k, k), v) FROM jsonb_each(c -> 'lines') x(k, v)), '{}'));
END
$$;

-- Columns of the local order row by their logical names (those of `p_names` the tracking
-- maps), as JSON; NULL when it maps none of them.
CREATE FUNCTION @extschema@._local_values(p_tracking_id integer, p_order_key text, p_names text[]) RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t @extschema@.tracked_tables;
    v_cols text;
    v_out jsonb;
BEGIN
    SELECT * INTO t FROM @extschema@.tracked_tables WHERE id = p_tracking_id;
    SELECT string_agg(format('%L, o.%I', k, t.mapping -> 'orders' ->> k), ', ') INTO v_cols
    FROM unnest(p_names) k WHERE t.mapping -> 'orders' ? k;
    IF v_cols IS NULL THEN
        RETURN NULL;
    END IF;
    EXECUTE format('SELECT jsonb_strip_nulls(jsonb_build_object(%s)) FROM %s o WHERE o.%I = $1::%s', v_cols, t.orders_table,
                   t.mapping -> 'orders' ->> 'id', @extschema@._coltype(t.orders_table, t.mapping -> 'orders' ->> 'id'))
        INTO v_out USING p_order_key;
    RETURN v_out;
END
$$;

-- The local order's totals (the amount columns the tracking maps), as numbers.
CREATE FUNCTION @extschema@._local_amounts(p_tracking_id integer, p_order_key text) RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN @extschema@._local_values(p_tracking_id, p_order_key, ARRAY['subtotal', 'sales_tax', 'grand_total']);
END
$$;

-- Totals as JSON numbers (they travel as strings).
CREATE FUNCTION @extschema@._numeric_amounts(p_amounts jsonb) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN (
        SELECT jsonb_object_agg(key, (value #>> '{}')::numeric) FROM jsonb_each(COALESCE(p_amounts, '{}'))
        WHERE key IN ('subtotal', 'sales_tax', 'grand_total') AND jsonb_typeof(value) IN ('string', 'number')
    );
END
$$;

-- Writes Odoo's totals into the local order (only the amount columns the tracking maps).
CREATE FUNCTION @extschema@._write_amounts(p_tracking_id integer, p_order_key text, p_amounts jsonb)
RETURNS void
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT @extschema@._write_back(p_tracking_id, p_order_key,
        (SELECT COALESCE(jsonb_object_agg(key, value), '{}') FROM jsonb_each(COALESCE(p_amounts, '{}'))
         WHERE key IN ('subtotal', 'sales_tax', 'grand_total')))
$$;

-- Creates the local rows of an Odoo order (import). Returns the new order key.
CREATE FUNCTION @extschema@._import_remote(t @extschema@.tracked_tables, r jsonb) RETURNS text
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    m jsonb := t.mapping -> 'orders';
    v_cols text[] := '{}';
    v_vals text[] := '{}';
    v_params text[] := '{}';
    v_canon text;
    v_value text;
    v_key_expr text;
    v_keys text[];
    v_key text;
    v_line jsonb;
BEGIN
    FOREACH v_canon IN ARRAY ARRAY['order_number', 'supplier_id', 'supplier_name', 'status', 'subtotal', 'sales_tax',
                                   'grand_total', 'notes', 'requested_delivery_date', 'odoo_order_id',
                                   'last_synced_at', 'sync_status'] LOOP
        CONTINUE WHEN m ->> v_canon IS NULL;
        v_value := CASE v_canon
            WHEN 'order_number' THEN r ->> 'name'
            WHEN 'supplier_id' THEN @extschema@._learn_local_ref('partner', (r ->> 'partner_id')::integer, r ->> 'partner_ref')
            WHEN 'supplier_name' THEN r ->> 'partner_name'
            WHEN 'status' THEN @extschema@._status_for_class(@extschema@._remote_class(r), NULL)
            WHEN 'subtotal' THEN r -> 'amounts' ->> 'subtotal'
            WHEN 'sales_tax' THEN r -> 'amounts' ->> 'sales_tax'
            WHEN 'grand_total' THEN r -> 'amounts' ->> 'grand_total'
            WHEN 'notes' THEN @extschema@._html_text(r ->> 'notes_html')
            WHEN 'requested_delivery_date' THEN @extschema@._local_delivery(t, @extschema@._odoo_day(r -> 'date_planned'),
                                                                             r -> 'date_planned')
            WHEN 'odoo_order_id' THEN r ->> 'odoo_id'
            WHEN 'last_synced_at' THEN now()::text
            WHEN 'sync_status' THEN 'SYNCED' END;
        CONTINUE WHEN v_value IS NULL;
        v_params := v_params || v_value;
        v_cols := v_cols || quote_ident(m ->> v_canon);
        v_vals := v_vals || format('$1[%s]::%s', cardinality(v_params), @extschema@._coltype(t.orders_table, m ->> v_canon));
    END LOOP;
    v_key_expr := @extschema@._new_key_expr(t.orders_table, m ->> 'id', 'odoo-' || (r ->> 'odoo_id'));
    IF v_key_expr IS NOT NULL THEN
        v_cols := v_cols || quote_ident(m ->> 'id');
        v_vals := v_vals || v_key_expr;
    END IF;
    v_keys := @extschema@._query_as_owner(t.orders_table, format('INSERT INTO %s (%s) VALUES (%s) RETURNING %I::text',
        t.orders_table, array_to_string(v_cols, ', '), array_to_string(v_vals, ', '), m ->> 'id'), v_params);
    v_key := v_keys[1];
    FOR v_line IN SELECT value FROM jsonb_array_elements(COALESCE(r -> 'lines', '[]')) LOOP
        PERFORM @extschema@._write_item(t, v_key, NULL, v_line, NULL);
    END LOOP;
    RETURN v_key;
END
$$;

-- Hands Odoo's version of one purchase order to the database. Decides in one transaction:
--   - the order is not linked here: imported when p_import (import_orders, sync_order_from_odoo),
--     otherwise ignored ('unlinked');
--   - its push is running (another worker is writing it to Odoo): 'busy', try again later;
--   - Odoo's version is older than the one already applied: 'stale', nothing changes;
--   - otherwise a three-way merge against the base: fields Odoo changed are applied to the
--     local rows (never enqueuing a push: no echo); fields changed on both sides follow the
--     conflict policies, and those left to a person become one conflict; local changes Odoo
--     has not seen get a push job.
-- p_job_id / p_attempt_token: the running push job of this order when its worker found
-- Odoo changed before writing (conflicts are then VERSION_CONFLICT).
-- Returns {"outcome", "tracking_id", "order_key", "applied", "conflict_id", "push_job"}.
CREATE FUNCTION @extschema@.apply_remote(remote jsonb, import boolean DEFAULT false,
                                         job_id bigint DEFAULT NULL, attempt_token bigint DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
    r jsonb := remote;
    v_odoo_id integer;
    v_tracking integer;
    v_key text;
    t @extschema@.tracked_tables;
    st @extschema@.order_state;
    j @extschema@.jobs;
    v_doc jsonb;
    v_base jsonb;
    v_local jsonb;
    v_remote jsonb;
    v_entries jsonb;
    v_apply jsonb := '[]';
    v_conflicts jsonb := '[]';
    e jsonb;
    v_policy text;
    v_new_keys jsonb;
    v_conflict uuid;
    v_push bigint;
    v_status text;
    v_same boolean;
    v_matched bigint;
    v_vendor_ours boolean;
    v_read_at timestamptz;
BEGIN
    PERFORM @extschema@._require_read_committed('apply_remote');
    IF r IS NULL OR jsonb_typeof(r) <> 'object' OR jsonb_typeof(r -> 'odoo_id') <> 'number'
       OR jsonb_typeof(r -> 'lines') <> 'array' OR jsonb_typeof(r -> 'state') <> 'string' THEN
        RAISE EXCEPTION 'apply_remote expects an Odoo order with odoo_id, state and lines'
            USING ERRCODE = '22023', DETAIL = left(COALESCE(r::text, 'NULL'), 200);
    END IF;
    v_odoo_id := (r ->> 'odoo_id')::integer;
    -- When the worker began to read Odoo (database clock; absent: now).
    BEGIN
        v_read_at := COALESCE((r ->> 'read_at')::timestamptz, now());
    EXCEPTION WHEN invalid_datetime_format OR datetime_field_overflow THEN
        RAISE EXCEPTION 'apply_remote: read_at must be a timestamp, got %', r -> 'read_at'
            USING ERRCODE = '22007', HINT = 'The worker stamps it with clock_timestamp() before it reads Odoo.';
    END;

    -- Which local order: our external id, else the Odoo id a previous sync stored.
    IF r ->> 'xmlid' ~ '^pox?_[0-9]+_' THEN
        v_tracking := substring(r ->> 'xmlid' FROM '^pox?_([0-9]+)_')::integer;
        v_key := @extschema@._xmlid_key('po', v_tracking, r ->> 'xmlid');
        IF NOT EXISTS (SELECT 1 FROM @extschema@.tracked_tables tt WHERE tt.id = v_tracking) THEN
            v_tracking := NULL; v_key := NULL;
        END IF;
    END IF;
    IF v_key IS NULL THEN
        SELECT s.tracking_id, s.order_key INTO v_tracking, v_key FROM @extschema@.order_state s
        WHERE s.odoo_id = v_odoo_id ORDER BY s.tracking_id LIMIT 1;
    END IF;
    IF v_key IS NULL AND import THEN
        -- Two imports of one Odoo order (two workers' import batches, an import and a
        -- sync_order_from_odoo) must not both create it: the second waits here until the first
        -- commits, then finds its order. (Lock class 1329876815 is 'ODOO' in ASCII.)
        PERFORM pg_advisory_xact_lock(1329876815, v_odoo_id);
        SELECT s.tracking_id, s.order_key INTO v_tracking, v_key FROM @extschema@.order_state s
        WHERE s.odoo_id = v_odoo_id ORDER BY s.tracking_id LIMIT 1;
    END IF;

    IF v_key IS NULL THEN
        IF NOT import THEN
            RETURN jsonb_build_object('outcome', 'unlinked', 'odoo_id', v_odoo_id);
        END IF;
        v_tracking := COALESCE((r ->> 'tracking_id')::integer, (SELECT min(tt.id) FROM @extschema@.tracked_tables tt));
        SELECT * INTO t FROM @extschema@.tracked_tables tt WHERE tt.id = v_tracking;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'no tracked orders table to import Odoo order % into', v_odoo_id
                USING ERRCODE = 'P0002', HINT = 'Attach your tables first: SELECT odoo_sync.track_orders(''orders'', ''order_items'');';
        END IF;
        v_key := @extschema@._import_remote(t, r);
        v_remote := @extschema@._canonical_remote(t.id, r);
        INSERT INTO @extschema@.order_state AS s (tracking_id, order_key, order_number, version, sync_status, odoo_id,
            odoo_name, last_synced_at, base_snapshot, odoo_write_date, odoo_seen_at, odoo_state, odoo_locked, link)
        VALUES (t.id, v_key, r ->> 'name', 0, 'SYNCED', v_odoo_id, r ->> 'name', now(),
                v_remote || jsonb_build_object('amounts', @extschema@._numeric_amounts(r -> 'amounts')),
                r ->> 'write_date', v_read_at, r ->> 'state', r ->> 'state' IN ('purchase', 'done'), 'dbid')
        ON CONFLICT (tracking_id, order_key) DO UPDATE SET odoo_id = EXCLUDED.odoo_id, link = 'dbid', odoo_deleted_id = NULL,
            base_snapshot = EXCLUDED.base_snapshot, sync_status = 'SYNCED', odoo_write_date = EXCLUDED.odoo_write_date,
            odoo_seen_at = EXCLUDED.odoo_seen_at, odoo_state = EXCLUDED.odoo_state, odoo_locked = EXCLUDED.odoo_locked;
        PERFORM @extschema@._event('ORDER_IMPORTED_FROM_ODOO', t.id, v_key,
            jsonb_build_object('odoo_order_id', v_odoo_id, 'odoo_name', r ->> 'name', 'lines', jsonb_array_length(r -> 'lines')));
        RETURN jsonb_build_object('outcome', 'imported', 'tracking_id', t.id, 'order_key', v_key, 'odoo_id', v_odoo_id);
    END IF;

    SELECT * INTO t FROM @extschema@.tracked_tables tt WHERE tt.id = v_tracking;
    PERFORM @extschema@._lock_order(v_tracking, v_key);
    SELECT * INTO st FROM @extschema@.order_state s WHERE s.tracking_id = v_tracking AND s.order_key = v_key FOR UPDATE;
    IF NOT FOUND THEN
        RETURN jsonb_build_object('outcome', 'unlinked', 'odoo_id', v_odoo_id);
    END IF;
    IF st.job_id IS NOT NULL THEN
        SELECT * INTO j FROM @extschema@.jobs q WHERE q.id = st.job_id;
        IF FOUND AND j.state = 'running' AND (job_id IS NULL OR j.id <> job_id OR j.attempt_token IS DISTINCT FROM attempt_token) THEN
            RETURN jsonb_build_object('outcome', 'busy', 'tracking_id', v_tracking, 'order_key', v_key, 'odoo_id', v_odoo_id);
        END IF;
    END IF;
    -- Older than what the last sync saw; or of the same second (write_date cannot tell them
    -- apart) but read before that sync, so possibly from before a push it acknowledged. The
    -- realtime pull then reads the order again (a pull job).
    IF st.odoo_write_date IS NOT NULL
       AND (r ->> 'write_date' < st.odoo_write_date
            OR (r ->> 'write_date' = st.odoo_write_date AND v_read_at < st.odoo_seen_at)) THEN
        RETURN jsonb_build_object('outcome', 'stale', 'tracking_id', v_tracking, 'order_key', v_key, 'odoo_id', v_odoo_id);
    END IF;
    -- A push of an order Odoo already has asks first, because a write_date equal to the
    -- stored one may hide an Odoo edit of the same second. When Odoo holds exactly the base
    -- (every value the merge would read or keep, with no push of ours in doubt), Odoo has not
    -- changed it: the merge below could only find local changes, which this push carries.
    -- Deciding that here spares the push the local document and the three-way comparison.
    -- 'local_written' false tells the worker its document of the order is still current.
    v_remote := @extschema@._canonical_remote(v_tracking, r);
    IF job_id IS NOT NULL AND st.odoo_write_date = r ->> 'write_date'
       AND st.odoo_state IS NOT DISTINCT FROM r ->> 'state'
       AND (r ->> 'name' IS NULL OR r ->> 'name' IS NOT DISTINCT FROM st.odoo_name)
       AND jsonb_typeof(st.base_snapshot -> 'lines') = 'object'
       AND NOT EXISTS (SELECT 1 FROM @extschema@._noted_attempts(st.attempt_snapshot))
       AND @extschema@._merged_part(st.base_snapshot, t.mapping -> 'orders' ? 'notes')
           = @extschema@._merged_part(v_remote, t.mapping -> 'orders' ? 'notes') THEN
        UPDATE @extschema@.order_state s SET odoo_seen_at = GREATEST(s.odoo_seen_at, v_read_at)
        WHERE s.tracking_id = v_tracking AND s.order_key = v_key;
        RETURN jsonb_build_object('outcome', 'unchanged', 'tracking_id', v_tracking, 'order_key', v_key,
                                  'odoo_id', v_odoo_id, 'local_written', false);
    END IF;

    v_doc := @extschema@.order_document(v_tracking, v_key);
    IF (v_doc ->> 'deleted')::boolean THEN
        -- Deleted here: its push cancels the Odoo order; nothing to apply.
        UPDATE @extschema@.order_state s SET odoo_write_date = r ->> 'write_date', odoo_seen_at = GREATEST(s.odoo_seen_at, v_read_at),
            odoo_state = r ->> 'state'
        WHERE s.tracking_id = v_tracking AND s.order_key = v_key;
        RETURN jsonb_build_object('outcome', 'unchanged', 'tracking_id', v_tracking, 'order_key', v_key, 'odoo_id', v_odoo_id);
    END IF;
    v_local := @extschema@._canonical_local(v_doc);
    -- Without a base (never synced in this form) Odoo's version is taken as the base: local
    -- edits still count as local changes, Odoo's values fill what the local side lacks.
    v_base := CASE WHEN jsonb_typeof(st.base_snapshot -> 'lines') = 'object' THEN st.base_snapshot ELSE v_remote END;
    -- Odoo holds exactly what a push whose reply was lost wrote: that is our own write (the
    -- base), not an edit made in Odoo, and local changes made since are not undone by it.
    -- That attempt and the ones noted before it are settled; the ones noted after it stay: this
    -- read of Odoo may predate their writes (a pull reads Odoo before it takes the order's lock),
    -- which then still have to be recognised when they show.
    SELECT max(a.n) INTO v_matched
    FROM @extschema@._noted_attempts(st.attempt_snapshot) WITH ORDINALITY AS a(attempt, n)
    WHERE @extschema@._same_content(a.attempt, v_remote);
    IF v_matched IS NOT NULL THEN
        v_base := v_remote || jsonb_build_object('amounts', st.base_snapshot -> 'amounts');
        UPDATE @extschema@.order_state s
        SET attempt_snapshot = (SELECT jsonb_agg(a.attempt ORDER BY a.n)
                                FROM @extschema@._noted_attempts(st.attempt_snapshot) WITH ORDINALITY AS a(attempt, n)
                                WHERE a.n > v_matched)
        WHERE s.tracking_id = v_tracking AND s.order_key = v_key;
    END IF;
    v_entries := @extschema@._diff3(v_base, v_local, v_remote);
    -- Odoo's vendor is not the base's but a noted attempt's: a vendor change of ours, whose
    -- push may not have finished (see the lines rule below, and the base written at the end).
    v_vendor_ours := v_remote -> 'partner_id' IS DISTINCT FROM v_base -> 'partner_id'
        AND EXISTS (SELECT 1 FROM @extschema@._noted_attempts(st.attempt_snapshot) a(attempt)
                    WHERE a.attempt -> 'partner_id' = v_remote -> 'partner_id');
    -- Odoo can hold part of an unacknowledged push (a lost reply, or a worker stopped between
    -- its calls), so that it matches no noted attempt as a whole. Line by line:
    --  * a line whose values in Odoo are those of a noted attempt is our own write, whether the
    --    base had the line or not: local edits and deletions made since win, rather than
    --    meeting it as a conflict or being undone by it;
    --  * a line under our own external id (pol_<tracking>_<item>; nobody else creates those)
    --    that the base does not have, and whose local item is gone, was deleted here since: a
    --    local deletion, which the next push carries to Odoo, not a line added in Odoo;
    --  * the same for the vendor, the notes and the delivery date: Odoo holding a noted
    --    attempt's value is our own write, and the local value stands. (Not the state: Odoo
    --    moves it by itself, on confirmation.)
    --  * Odoo 18+ prices every line again from the price list when the vendor is written (and
    --    dates them from its lead time); a push that changes the vendor then writes the prices
    --    again, in a call of its own. Between the two calls, under a vendor change of ours
    --    (Odoo's vendor is a noted attempt's, not the base's), the delivery date and every line
    --    whose product and quantity in Odoo are the base's or a noted attempt's are that
    --    repricing (whatever changed here since, a line deleted here included): the local
    --    values stand.
    SELECT COALESCE(jsonb_agg(CASE
               WHEN x.entry ->> 'field' IN ('partner_id', 'notes', 'delivery_date')
                    AND x.entry ->> 'side' IN ('remote', 'both')
                    AND EXISTS (
                        SELECT 1 FROM @extschema@._noted_attempts(st.attempt_snapshot) a(attempt)
                        WHERE a.attempt ? (x.entry ->> 'field')
                          AND a.attempt -> (x.entry ->> 'field') = v_remote -> (x.entry ->> 'field'))
               THEN x.entry || jsonb_build_object('side', 'local')
               WHEN (x.entry ->> 'field' = 'delivery_date' OR x.entry ->> 'group' = 'lines')
                    AND x.entry ->> 'side' IN ('remote', 'both')
                    AND v_vendor_ours
                    -- The line's product and quantity in Odoo are the base's or a noted
                    -- attempt's: only its price is Odoo's doing.
                    AND (x.entry ->> 'field' = 'delivery_date'
                         OR EXISTS (
                             SELECT 1 FROM (SELECT v_base AS side
                                            UNION ALL
                                            SELECT a.attempt FROM @extschema@._noted_attempts(st.attempt_snapshot) a(attempt)) known
                             WHERE known.side #> ARRAY['lines', x.entry ->> 'line', 'product_id']
                                   = v_remote #> ARRAY['lines', x.entry ->> 'line', 'product_id']
                               AND known.side #> ARRAY['lines', x.entry ->> 'line', 'quantity']
                                   = v_remote #> ARRAY['lines', x.entry ->> 'line', 'quantity']))
               THEN x.entry || jsonb_build_object('side', 'local')
               WHEN x.entry ->> 'group' = 'lines' AND x.entry ->> 'side' IN ('remote', 'both')
                    AND (EXISTS (
                             SELECT 1 FROM @extschema@._noted_attempts(st.attempt_snapshot) a(attempt)
                             WHERE @extschema@._line_core(a.attempt -> 'lines' -> (x.entry ->> 'line'))
                                   = @extschema@._line_core(v_remote -> 'lines' -> (x.entry ->> 'line')))
                         OR ((v_base -> 'lines' -> (x.entry ->> 'line')) IS NULL
                             AND x.entry ->> 'attr' IS NULL AND jsonb_typeof(x.entry -> 'local') = 'null'
                             AND EXISTS (SELECT 1 FROM jsonb_array_elements(COALESCE(r -> 'lines', '[]')) ol
                                         WHERE ol ->> 'xmlid' = @extschema@._xmlid_name('pol', v_tracking, x.entry ->> 'line'))))
               THEN x.entry || jsonb_build_object('side', 'local')
               ELSE x.entry END ORDER BY x.ord), '[]')
    INTO v_entries
    FROM jsonb_array_elements(v_entries) WITH ORDINALITY AS x(entry, ord);
    -- Seen already (the overlap window reads orders again): nothing to write at all, unless
    --  * the base does not know Odoo's notes yet: it learns them now;
    --  * a noted push was recognised above: its write becomes the base now, since its note is
    --    gone;
    --  * a line's discount differs from the base's: the base keeps Odoo's discounts, which the
    --    pushes write back.
    -- Odoo's write_date has whole seconds: a change in the second of the last sync leaves it
    -- as it was.
    IF jsonb_array_length(v_entries) = 0 AND st.odoo_write_date IS NOT DISTINCT FROM r ->> 'write_date'
       AND st.base_snapshot IS NOT NULL AND (st.base_snapshot ? 'notes' OR NOT v_remote ? 'notes')
       AND v_matched IS NULL
       AND NOT EXISTS (SELECT 1 FROM jsonb_each(v_remote -> 'lines') x(k, v)
                       WHERE x.v ? 'discount'
                         AND x.v -> 'discount' IS DISTINCT FROM st.base_snapshot -> 'lines' -> x.k -> 'discount') THEN
        RETURN jsonb_build_object('outcome', 'unchanged', 'tracking_id', v_tracking, 'order_key', v_key, 'odoo_id', v_odoo_id);
    END IF;

    FOR e IN SELECT value FROM jsonb_array_elements(v_entries) LOOP
        IF e ->> 'side' = 'remote' THEN
            v_apply := v_apply || e;
        ELSIF e ->> 'side' = 'both' THEN
            v_policy := @extschema@._setting('conflict_policy_' || (e ->> 'group')) #>> '{}';
            IF v_policy = 'remote_wins' THEN
                v_apply := v_apply || e;
            ELSIF v_policy = 'manual' THEN
                v_conflicts := v_conflicts || (e - 'side' - 'group');
            END IF;
        END IF;
    END LOOP;

    IF jsonb_array_length(v_apply) > 0 THEN
        v_new_keys := @extschema@._apply_to_local(t, v_key, v_apply, r, v_doc -> 'order' ->> 'status');
        v_remote := @extschema@._rekey(v_remote, v_new_keys);
        v_local := @extschema@._canonical_local(@extschema@.order_document(v_tracking, v_key));
    END IF;

    v_same := jsonb_array_length(v_conflicts) = 0 AND @extschema@._same_content(v_local, v_remote);
    -- Odoo shows a vendor change of ours not yet acknowledged (no attempt landed whole: then
    -- the base is Odoo's already) and nothing of Odoo's was taken: the base stays. Taken as the
    -- base, that in-between state (prices and dates Odoo computed for the new vendor, line by
    -- line) would end the rule above that recognises it, and the next push, seeing no vendor
    -- change left to write, would not write every line's price and date again: a line it
    -- removes keeps Odoo's date until then, which the next merge met as an Odoo edit.
    -- The base remembers the totals last written to the local row (Odoo's, when the local
    -- order now equals Odoo's): local totals that differ from them are the application's own.
    UPDATE @extschema@.order_state s
    SET base_snapshot = CASE WHEN v_vendor_ours AND jsonb_array_length(v_apply) = 0
                                  AND jsonb_array_length(v_conflicts) = 0 THEN s.base_snapshot
                             ELSE v_remote || jsonb_build_object('amounts',
            CASE WHEN v_same THEN @extschema@._numeric_amounts(r -> 'amounts') ELSE s.base_snapshot -> 'amounts' END) END,
        odoo_write_date = r ->> 'write_date', odoo_seen_at = GREATEST(s.odoo_seen_at, v_read_at),
        odoo_state = r ->> 'state', odoo_locked = r ->> 'state' IN ('purchase', 'done'), odoo_id = v_odoo_id,
        odoo_deleted_id = NULL, odoo_name = COALESCE(r ->> 'name', s.odoo_name)
    WHERE s.tracking_id = v_tracking AND s.order_key = v_key;

    IF jsonb_array_length(v_conflicts) > 0 THEN
        v_conflict := @extschema@._record_conflict(v_tracking, v_key,
            CASE WHEN job_id IS NULL THEN 'CONCURRENT_MODIFICATION' ELSE 'VERSION_CONFLICT' END,
            v_conflicts, v_local, v_remote, v_base);
    ELSIF v_same THEN
        PERFORM @extschema@._write_amounts(v_tracking, v_key, r -> 'amounts');
        UPDATE @extschema@.order_state s
        SET sync_status = CASE WHEN s.sync_status = 'CONFLICT' OR s.job_id IS NOT NULL THEN s.sync_status ELSE 'SYNCED' END,
            last_synced_at = CASE WHEN jsonb_array_length(v_apply) > 0 THEN now() ELSE s.last_synced_at END
        WHERE s.tracking_id = v_tracking AND s.order_key = v_key
        RETURNING s.sync_status INTO v_status;
        PERFORM @extschema@._write_back(v_tracking, v_key, jsonb_build_object('sync_status', v_status));
    ELSIF job_id IS NULL THEN
        v_push := @extschema@._ensure_push_job(v_tracking, v_key, NULL);
    END IF;
    IF jsonb_array_length(v_apply) > 0 THEN
        PERFORM @extschema@._event('ORDER_UPDATED_FROM_ODOO', v_tracking, v_key,
            jsonb_build_object('odoo_order_id', v_odoo_id, 'write_date', r ->> 'write_date',
                               'fields', (SELECT jsonb_agg(x ->> 'field') FROM jsonb_array_elements(v_apply) x)));
    END IF;
    RETURN jsonb_build_object('outcome', CASE WHEN v_conflict IS NOT NULL THEN 'conflict'
                                              WHEN jsonb_array_length(v_apply) > 0 THEN 'applied' ELSE 'unchanged' END,
        'tracking_id', v_tracking, 'order_key', v_key, 'odoo_id', v_odoo_id,
        'applied', jsonb_array_length(v_apply), 'conflict_id', v_conflict, 'push_job', v_push);
END
$$;

-- An Odoo order linked here no longer exists in Odoo (found by the reconciliation, or by a
-- push about to write it). The local order is cancelled (Odoo only deletes cancelled orders)
-- and unlinked, and the deleted id kept in odoo_deleted_id: while the order stays cancelled,
-- its pushes write nothing to Odoo; reopened, it is created there again. A table without a
-- status column cannot cancel it: its pushes write nothing until sync_order asks for it.
CREATE FUNCTION @extschema@.remote_deleted(odoo_order_id integer) RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    st @extschema@.order_state;
    t @extschema@.tracked_tables;
    v_orders jsonb := '[]';
BEGIN
    PERFORM @extschema@._require_read_committed('remote_deleted');
    -- Every local order linked to it: orders linked by hand (track_orders over an
    -- odoo_order_id column) may share one Odoo id.
    FOR st IN SELECT * FROM @extschema@.order_state s WHERE s.odoo_id = odoo_order_id
              ORDER BY s.tracking_id, s.order_key LOOP
        SELECT * INTO t FROM @extschema@.tracked_tables tt WHERE tt.id = st.tracking_id;
        PERFORM @extschema@._lock_order(st.tracking_id, st.order_key);
        IF t.mapping -> 'orders' ? 'status' AND NOT st.deleted THEN
            PERFORM @extschema@._write_back(st.tracking_id, st.order_key, '{"status": "CANCELLED"}');
        END IF;
        UPDATE @extschema@.order_state s
        SET odoo_id = NULL, odoo_name = NULL, odoo_state = NULL, odoo_write_date = NULL, odoo_seen_at = NULL, odoo_locked = false,
            base_snapshot = NULL, link = 'xmlid', odoo_deleted_id = odoo_order_id,
            -- Pushes noted and not acknowledged wrote (or tried to write) to the deleted order:
            -- nothing of them is left in Odoo to recognise.
            attempt_snapshot = NULL
        WHERE s.tracking_id = st.tracking_id AND s.order_key = st.order_key;
        DELETE FROM @extschema@.line_links WHERE tracking_id = st.tracking_id AND order_key = st.order_key;
        PERFORM @extschema@._write_back(st.tracking_id, st.order_key, jsonb_build_object('odoo_order_id', NULL));
        PERFORM @extschema@._event('ORDER_UPDATED_FROM_ODOO', st.tracking_id, st.order_key,
            jsonb_build_object('odoo_order_id', odoo_order_id, 'deleted_in_odoo', true));
        v_orders := v_orders || jsonb_build_object('tracking_id', st.tracking_id, 'order_key', st.order_key);
    END LOOP;
    RETURN jsonb_build_object('outcome', CASE WHEN jsonb_array_length(v_orders) = 0 THEN 'unlinked' ELSE 'cancelled' END,
                              'orders', v_orders);
END
$$;

-- Linked Odoo ids, in pages (the reconciliation walks them).
CREATE FUNCTION @extschema@.linked_odoo_ids(after_id integer DEFAULT 0, max_ids integer DEFAULT 1000)
RETURNS SETOF integer
LANGUAGE sql STABLE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    SELECT DISTINCT s.odoo_id FROM @extschema@.order_state s
    WHERE s.odoo_id > COALESCE(after_id, 0) AND NOT s.deleted
    ORDER BY 1 LIMIT LEAST(GREATEST(COALESCE(max_ids, 1000), 1), 10000)
$$;

-- The realtime pull's position.
CREATE FUNCTION @extschema@.pull_position()
RETURNS TABLE (watermark text, seen jsonb, reconciled_at timestamptz)
LANGUAGE sql STABLE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    SELECT c.watermark, c.seen, c.reconciled_at FROM @extschema@.pull_cursor c
$$;

-- Stores the realtime pull's position. The watermark only moves forward.
CREATE FUNCTION @extschema@.save_pull_position(watermark text, seen jsonb, reconciled boolean DEFAULT false)
RETURNS void
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
BEGIN
    IF watermark IS NOT NULL AND watermark !~ '^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$' THEN
        RAISE EXCEPTION 'watermark must be an Odoo datetime "YYYY-MM-DD HH:MM:SS", got %', watermark USING ERRCODE = '22007';
    END IF;
    IF seen IS NULL OR jsonb_typeof(seen) <> 'object' THEN
        RAISE EXCEPTION 'seen must be a JSON object of Odoo id -> write_date' USING ERRCODE = '22023';
    END IF;
    INSERT INTO @extschema@.pull_cursor AS c (id, watermark, seen, reconciled_at)
    VALUES (1, watermark, seen, CASE WHEN reconciled THEN now() END)
    ON CONFLICT (id) DO UPDATE SET
        watermark = GREATEST(c.watermark, EXCLUDED.watermark),
        seen = CASE WHEN EXCLUDED.watermark >= c.watermark OR c.watermark IS NULL THEN EXCLUDED.seen ELSE c.seen END,
        reconciled_at = CASE WHEN reconciled THEN now() ELSE c.reconciled_at END,
        updated_at = now();
END
$$;

-- Progress of a running import, for batch_status() while it runs.
CREATE FUNCTION @extschema@.report_progress(job_id bigint, attempt_token bigint, progress jsonb) RETURNS void
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    j @extschema@.jobs;
BEGIN
    j := @extschema@._lock_running_job(job_id, attempt_token);
    IF progress IS NULL OR jsonb_typeof(progress) <> 'object' THEN
        RAISE EXCEPTION 'progress must be a JSON object' USING ERRCODE = '22023';
    END IF;
    IF j.batch_id IS NOT NULL THEN
        UPDATE @extschema@.batches SET progress = report_progress.progress WHERE id = j.batch_id;
    END IF;
END
$$;

-- Hands a running job back to the queue without counting an attempt: its worker found the
-- order changed in Odoo and merged it first (the next attempt pushes the merged order), or the
-- order is in conflict (the job then waits until the conflict is resolved), or a pull found the
-- order busy (its push running, or a push finished while Odoo was read): it runs again after
-- retry_in. Being busy is no failure, so it never leads to the dead letters.
CREATE FUNCTION @extschema@.requeue_job(job_id bigint, attempt_token bigint, retry_in interval DEFAULT NULL)
RETURNS text
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    j @extschema@.jobs;
    v_held boolean;
BEGIN
    IF retry_in IS NOT NULL AND (retry_in < interval '0' OR retry_in > interval '1 hour') THEN
        RAISE EXCEPTION 'retry_in must be between 0 and 1 hour, got %', retry_in USING ERRCODE = '22023';
    END IF;
    j := @extschema@._lock_running_job(job_id, attempt_token);
    v_held := j.kind = 'push' AND EXISTS (SELECT 1 FROM @extschema@.order_state s
        WHERE s.tracking_id = j.tracking_id AND s.order_key = j.order_key AND s.sync_status = 'CONFLICT');
    UPDATE @extschema@.jobs q
    SET state = 'queued', attempts = GREATEST(q.attempts - 1, 0), lease_owner = NULL, lease_until = NULL,
        attempt_token = NULL, run_after = CASE WHEN v_held THEN 'infinity' ELSE now() + COALESCE(retry_in, interval '0') END
    WHERE q.id = j.id;
    IF NOT v_held THEN
        PERFORM @extschema@._notify('queue');
    END IF;
    RETURN CASE WHEN v_held THEN 'held' ELSE 'queued' END;
END
$$;

-- Queues a pull of one Odoo order (the realtime pull found it while its push was running).
CREATE FUNCTION @extschema@.queue_pull(odoo_order_id integer) RETURNS bigint
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_job bigint;
BEGIN
    IF odoo_order_id IS NULL OR odoo_order_id < 1 THEN
        RAISE EXCEPTION 'odoo_order_id must be a positive Odoo record id' USING ERRCODE = '22023';
    END IF;
    INSERT INTO @extschema@.jobs AS j (kind, odoo_id, payload, run_after)
    VALUES ('pull', odoo_order_id, jsonb_build_object('odoo_order_id', odoo_order_id), now() + interval '1 second')
    -- A running pull job keeps its run_after (its lease): moving it up would hand the job to a
    -- second worker while the first still runs it.
    ON CONFLICT (odoo_id) WHERE kind = 'pull' DO UPDATE
        SET run_after = CASE WHEN j.state = 'running' THEN j.run_after ELSE LEAST(j.run_after, EXCLUDED.run_after) END
    RETURNING id INTO v_job;
    RETURN v_job;
END
$$;

-- The noted attempts with `attempt` added as the newest. Every attempt since the last
-- acknowledged one must stay: a push whose reply was lost may be followed by any number of
-- attempts that failed before writing anything, and forgetting the one that wrote turns our own
-- write into a false conflict (seen in the chaos run when only the last five were kept, with up
-- to seven attempts per job). A retry of the same content is noted once, so the list grows only
-- with local edits between unacknowledged pushes; past 64 of those the oldest goes, which by
-- then later writes have overwritten unless 63 attempts in a row failed before writing.
CREATE FUNCTION @extschema@._with_attempt(noted jsonb, attempt jsonb) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN COALESCE((SELECT jsonb_agg(k.a ORDER BY k.n)
                     FROM (SELECT p.a, p.n
                           FROM @extschema@._noted_attempts(noted) WITH ORDINALITY AS p(a, n)
                           WHERE p.a <> attempt
                           ORDER BY p.n DESC LIMIT 63) k), '[]'::jsonb)
           || jsonb_build_array(attempt);
END
$$;

-- Notes what the pushes under way are about to write (see order_state.attempt_snapshot):
-- [{"tracking_id", "order_key", "status", "snapshot"}, ...]. The worker notes one order per
-- call, each committed on its own: an application change holds its order's state row until it
-- commits, and a call that waits for one must hold no other (see worker push::note_attempts).
CREATE FUNCTION @extschema@.note_attempts(attempts jsonb) RETURNS integer
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_count integer;
BEGIN
    IF attempts IS NULL OR jsonb_typeof(attempts) <> 'array' THEN
        RAISE EXCEPTION 'note_attempts expects a JSON array' USING ERRCODE = '22023';
    END IF;
    UPDATE @extschema@.order_state s
    SET attempt_snapshot = @extschema@._with_attempt(s.attempt_snapshot,
                               a.snapshot || jsonb_build_object('state', @extschema@._status_class(a.status)))
    FROM jsonb_to_recordset(attempts) AS a(tracking_id integer, order_key text, status text, snapshot jsonb)
    WHERE s.tracking_id = a.tracking_id AND s.order_key = a.order_key AND jsonb_typeof(a.snapshot) = 'object';
    GET DIAGNOSTICS v_count = ROW_COUNT;
    RETURN v_count;
END
$$;
