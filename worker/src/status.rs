//! `odoo-sync-worker status`: health, queue depth and the last errors, as a DBA would ask for
//! them, in one screen of text.

use std::fmt::Write as _;

use tokio_postgres::Client;

/// Renders the status report.
pub async fn report(pg: &Client) -> Result<String, tokio_postgres::Error> {
    let mut out = String::new();
    let h = pg
        .query_one("SELECT * FROM odoo_sync.health()", &[])
        .await?;
    let last: Option<std::time::SystemTime> = h.try_get("last_successful_sync")?;
    let _ = writeln!(
        out,
        "health: {}  odoo: {}  queue: {}  cache: {}  error rate 24h: {}%  consecutive failures: {}  last success: {}",
        if h.try_get::<_, bool>("is_healthy")? { "HEALTHY" } else { "UNHEALTHY" },
        h.try_get::<_, String>("odoo_connection_status")?,
        h.try_get::<_, String>("queue_status")?,
        h.try_get::<_, String>("cache_status")?,
        h.try_get::<_, rust_decimal::Decimal>("error_rate")?,
        h.try_get::<_, i32>("consecutive_failures")?,
        last.map(|t| chrono::DateTime::<chrono::Utc>::from(t).format("%Y-%m-%d %H:%M:%S UTC").to_string())
            .unwrap_or_else(|| "never".into()),
    );

    let _ = writeln!(out, "\nqueue:");
    let rows = pg
        .query(
            "SELECT kind, state, count(*), COALESCE(extract(epoch FROM max(age))::bigint, 0)
             FROM odoo_sync.queue GROUP BY kind, state ORDER BY kind, state",
            &[],
        )
        .await?;
    if rows.is_empty() {
        let _ = writeln!(out, "  empty");
    }
    for r in rows {
        let _ = writeln!(
            out,
            "  {:<7} {:<8} {:>7} jobs, oldest {} s",
            r.try_get::<_, String>(0)?,
            r.try_get::<_, String>(1)?,
            r.try_get::<_, i64>(2)?,
            r.try_get::<_, i64>(3)?
        );
    }
    let dead: i64 = pg
        .query_one("SELECT count(*) FROM odoo_sync.dead_letters", &[])
        .await?
        .try_get(0)?;
    let _ = writeln!(out, "  dead letters: {dead}");

    let _ = writeln!(out, "\nworkers:");
    let rows = pg
        .query(
            "SELECT worker_id, alive, odoo_status, running_jobs, extract(epoch FROM now() - last_seen)::bigint
             FROM odoo_sync.workers ORDER BY last_seen DESC LIMIT 10",
            &[],
        )
        .await?;
    if rows.is_empty() {
        let _ = writeln!(out, "  none has reported yet");
    }
    for r in rows {
        let _ = writeln!(
            out,
            "  {:<30} {:<5} odoo {:<12} {} running, seen {} s ago",
            r.try_get::<_, String>(0)?,
            if r.try_get::<_, bool>(1)? {
                "alive"
            } else {
                "gone"
            },
            r.try_get::<_, String>(2)?,
            r.try_get::<_, i64>(3)?,
            r.try_get::<_, i64>(4)?
        );
    }

    let _ = writeln!(out, "\nlast errors:");
    let rows = pg
        .query(
            "SELECT to_char(finished_at, 'YYYY-MM-DD HH24:MI:SS'), kind, COALESCE(local_order_id, odoo_id::text, ''),
                    COALESCE(odoo_error, error->>'type', ''), COALESCE(error_message, '')
             FROM odoo_sync.recent_errors LIMIT 5",
            &[],
        )
        .await;
    match rows {
        Ok(rows) if rows.is_empty() => {
            let _ = writeln!(out, "  none");
        }
        Ok(rows) => {
            for r in rows {
                let _ = writeln!(
                    out,
                    "  {} {} {} {}: {}",
                    r.try_get::<_, String>(0)?,
                    r.try_get::<_, String>(1)?,
                    r.try_get::<_, String>(2)?,
                    r.try_get::<_, String>(3)?,
                    r.try_get::<_, String>(4)?
                );
            }
        }
        Err(e) => {
            let _ = writeln!(out, "  (cannot read: {e})");
        }
    }
    Ok(out)
}
