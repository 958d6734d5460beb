-- odoo_sync: privileges. Runs last. Nothing is executable by PUBLIC; three roles get what
-- their job needs:
--   odoo_sync_reader  views, health, metrics, history
--   odoo_sync_worker  reader + claiming and finishing jobs, heartbeats, learned mappings
--   odoo_sync_admin   reader + requests, settings, tracking, dead-letter retries, mappings
-- Application roles that only write orders need none of them: the capture triggers switch to
-- the extension owner for their bookkeeping.

REVOKE ALL ON ALL FUNCTIONS IN SCHEMA @extschema@ FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA @extschema@ FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA @extschema@ FROM PUBLIC;

GRANT USAGE ON SCHEMA @extschema@ TO odoo_sync_reader, odoo_sync_worker, odoo_sync_admin;
GRANT odoo_sync_reader TO odoo_sync_worker, odoo_sync_admin;

GRANT SELECT ON @extschema@.order_status, @extschema@.queue, @extschema@.dead_letters,
                @extschema@.pending_conflicts, @extschema@.events, @extschema@.workers, @extschema@.recent_errors,
                @extschema@.tracked_tables, @extschema@.setting_spec
    TO odoo_sync_reader;
GRANT EXECUTE ON FUNCTION
    @extschema@.health(), @extschema@.last_sync_status(), @extschema@.sync_metrics(interval),
    @extschema@.event_history(text), @extschema@.event_history(uuid), @extschema@.event_history(bigint),
    @extschema@.conflict_history(text), @extschema@.conflict_history(uuid), @extschema@.conflict_history(bigint),
    @extschema@.batch_status(bigint), @extschema@.await_job(bigint, interval),
    @extschema@.get_settings(), @extschema@.describe_settings(), @extschema@.tracking_warnings(),
    -- called by the views, and a view's functions run with the reader's privileges
    @extschema@._setting(text), @extschema@._current_version(integer, text)
    TO odoo_sync_reader;

GRANT EXECUTE ON FUNCTION
    @extschema@.claim_jobs(text, integer, interval), @extschema@.extend_leases(text, bigint[], interval),
    @extschema@.release_jobs(text), @extschema@.complete_job(bigint, bigint, jsonb),
    @extschema@.fail_job(bigint, bigint, jsonb, boolean, interval), @extschema@.heartbeat(text, jsonb),
    @extschema@.maintenance(), @extschema@.order_document(integer, text),
    @extschema@.order_documents(integer[], text[]),
    @extschema@.apply_remote(jsonb, boolean, bigint, bigint), @extschema@.remote_deleted(integer),
    @extschema@.linked_odoo_ids(integer, integer), @extschema@.pull_position(),
    @extschema@.save_pull_position(text, jsonb, boolean), @extschema@.report_progress(bigint, bigint, jsonb),
    @extschema@.requeue_job(bigint, bigint, interval), @extschema@.queue_pull(integer),
    @extschema@.note_attempts(jsonb), @extschema@.notes_text(text, boolean)
    TO odoo_sync_worker;
GRANT SELECT, INSERT, UPDATE ON @extschema@.partner_map, @extschema@.product_map TO odoo_sync_worker;

GRANT EXECUTE ON FUNCTION
    @extschema@.sync_order(uuid), @extschema@.sync_order(bigint), @extschema@.sync_order(text),
    @extschema@.sync_order_from_odoo(integer), @extschema@.batch_sync_pending(integer),
    @extschema@.import_orders(jsonb), @extschema@.start_realtime(), @extschema@.stop_realtime(),
    @extschema@.update_settings(jsonb), @extschema@.retry_job(bigint), @extschema@.maintenance(),
    @extschema@.track_orders(regclass, regclass, jsonb), @extschema@.untrack_orders(regclass),
    @extschema@.resolve_conflict(uuid, text, jsonb), @extschema@.replay_events(jsonb)
    TO odoo_sync_admin;
GRANT SELECT, INSERT, UPDATE, DELETE ON @extschema@.partner_map, @extschema@.product_map TO odoo_sync_admin;
