//! `/metrics` (Prometheus text) and `/healthz` for orchestrators, on a plain HTTP/1.1 listener.
//! Two GET routes, one request per connection: a web framework would be the bigger risk.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::metrics::{self, QueueGauges};

/// What the endpoints need to answer.
pub struct HttpState {
    /// This worker's id, shown by /healthz.
    pub worker_id: String,
    /// Where the queue gauges are read from.
    pub database_url: String,
    /// The run loop's Odoo client: it knows when Odoo refuses the credentials.
    pub odoo: crate::odoo::OdooClient,
}

/// Serves until `shutdown` resolves. Each connection is handled in its own task with a time
/// bound, so a slow client cannot hold the listener.
pub async fn serve(
    listener: TcpListener,
    state: Arc<HttpState>,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let state = state.clone();
                tokio::spawn(async move {
                    let _ = tokio::time::timeout(Duration::from_secs(10), handle(stream, &state)).await;
                });
            }
        }
    }
}

async fn handle(mut stream: TcpStream, state: &HttpState) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut chunk).await?;
        if n == 0 || buf.len() > 16 * 1024 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let head = String::from_utf8_lossy(&buf);
    let mut parts = head.lines().next().unwrap_or("").split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let (status, content_type, body) = match (method, path) {
        ("GET", "/metrics") => {
            let gauges = queue_gauges(&state.database_url).await.ok();
            (
                "200 OK",
                "text/plain; version=0.0.4",
                metrics::global().render(gauges.as_ref()),
            )
        }
        ("GET", "/healthz") => healthz(state).await,
        ("GET", _) => (
            "404 Not Found",
            "text/plain",
            "try /metrics or /healthz\n".to_string(),
        ),
        _ => (
            "405 Method Not Allowed",
            "text/plain",
            "GET only\n".to_string(),
        ),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

/// 200 when the database answers and Odoo is not known to be unreachable or to refuse the
/// worker's credentials (the loop then claims nothing: no order syncs), 503 otherwise.
async fn healthz(state: &HttpState) -> (&'static str, &'static str, String) {
    let database = match queue_gauges(&state.database_url).await {
        Ok(_) => "ok".to_string(),
        Err(e) => e,
    };
    let odoo = if state.odoo.credentials_refused() {
        "ERROR"
    } else {
        metrics::global().odoo().status()
    };
    let healthy = database == "ok" && odoo == "CONNECTED";
    let body = json!({
        "status": if healthy { "ok" } else { "unhealthy" },
        "worker_id": state.worker_id,
        "database": database,
        "odoo": odoo,
        "rpc_calls": metrics::global().rpc_count(),
    });
    let status = if healthy {
        "200 OK"
    } else {
        "503 Service Unavailable"
    };
    (status, "application/json", format!("{body}\n"))
}

/// Reads the queue gauges with a connection of its own (bounded to 3 s).
pub async fn queue_gauges(database_url: &str) -> Result<QueueGauges, String> {
    let work = async {
        let (client, connection) = crate::pg_tls::connect(database_url)
            .await
            .map_err(|e| format!("database unreachable: {e}"))?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        let row = client
            .query_one(
                "SELECT count(*) FILTER (WHERE state <> 'running' AND run_after <= now()),
                        count(*) FILTER (WHERE state <> 'running' AND run_after > now()),
                        count(*) FILTER (WHERE state = 'running'),
                        COALESCE(extract(epoch FROM now() - min(created_at)
                                 FILTER (WHERE state <> 'running' AND run_after <= now())), 0)::float8,
                        (SELECT count(*) FROM odoo_sync.dead_letters),
                        (SELECT count(*) FROM odoo_sync.pending_conflicts)
                 FROM odoo_sync.queue",
                &[],
            )
            .await
            .map_err(|e| format!("cannot read the queue: {e}"))?;
        let get = |i: usize| row.try_get::<_, i64>(i).unwrap_or(0);
        Ok(QueueGauges {
            ready: get(0),
            waiting: get(1),
            running: get(2),
            oldest_ready_seconds: row.try_get::<_, f64>(3).unwrap_or(0.0),
            dead_letters: get(4),
            conflicts_open: get(5),
        })
    };
    tokio::time::timeout(Duration::from_secs(3), work)
        .await
        .unwrap_or_else(|_| Err("database did not answer within 3 s".to_string()))
}
