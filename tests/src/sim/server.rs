//! The HTTP server: Odoo routes, the `/__sim/` control API, and the connection-level faults
//! (reset, hang, drop after commit) that need control over the socket.

use super::faults::{FaultKind, FaultSpec, Verdict};
use super::jsonrpc::{self, Reply};
use super::{json2, Sim};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// A TCP stream that can be closed with a reset (RST) instead of a normal close.
struct Conn {
    stream: TcpStream,
    reset: Arc<AtomicBool>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        if self.reset.load(Ordering::Relaxed) {
            // SO_LINGER 0 makes close() send RST: the client sees "connection reset by peer".
            let _ = self.stream.set_zero_linger();
        }
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// Returned by the service to make hyper close the connection without answering.
#[derive(Debug)]
struct Dropped;

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped by fault injection")
    }
}

impl std::error::Error for Dropped {}

type Resp = Response<Full<Bytes>>;

fn respond(status: u16, content_type: &str, body: impl Into<Bytes>) -> Resp {
    let mut resp = Response::new(Full::new(body.into()));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if let Ok(v) = hyper::header::HeaderValue::from_str(content_type) {
        resp.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    resp
}

fn json_resp(status: u16, body: &Value) -> Resp {
    respond(
        status,
        "application/json",
        serde_json::to_vec(body).unwrap_or_default(),
    )
}

fn html_resp(status: u16, title: &str, text: &str) -> Resp {
    let body = format!(
        "<!doctype html>\n<html lang=en>\n<title>{status} {title}</title>\n<h1>{title}</h1>\n<p>{text}</p>\n"
    );
    respond(status, "text/html; charset=utf-8", body)
}

/// Accepts connections until `shutdown` resolves, then lets open requests finish (bounded).
pub async fn run(sim: Arc<Sim>, listener: TcpListener, shutdown: impl Future<Output = ()>) {
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let _ = stream.set_nodelay(true);
                let sim = sim.clone();
                let mut stop = stop_rx.clone();
                tasks.spawn(async move {
                    let reset = Arc::new(AtomicBool::new(false));
                    let io = TokioIo::new(Conn { stream, reset: reset.clone() });
                    let service = service_fn(move |req| {
                        let sim = sim.clone();
                        let reset = reset.clone();
                        async move { handle(sim, req, reset).await }
                    });
                    let conn = http1::Builder::new().keep_alive(true).serve_connection(io, service);
                    tokio::pin!(conn);
                    tokio::select! {
                        _ = conn.as_mut() => {}
                        _ = stop.changed() => {
                            conn.as_mut().graceful_shutdown();
                            let _ = tokio::time::timeout(Duration::from_secs(2), conn.as_mut()).await;
                        }
                    }
                });
                // Reap finished connections so the set does not grow without bound.
                while tasks.try_join_next().is_some() {}
            }
        }
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(3), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    tasks.abort_all();
}

/// When the request calls `load`: Some(the JSON-RPC request id), or Some(None) on JSON-2.
fn load_call(path: &str, body: &[u8]) -> Option<Option<Value>> {
    if call_name(path, body)?.rsplit_once('.')?.1 != "load" {
        return None;
    }
    if path.starts_with("/json/2/") {
        return Some(None);
    }
    let request: Value = serde_json::from_slice(body).ok()?;
    Some(Some(request.get("id").cloned().unwrap_or(Value::Null)))
}

/// The model/method a request calls, named `model.method` as the stats name it.
fn call_name(path: &str, body: &[u8]) -> Option<String> {
    if let Some(rest) = path.strip_prefix("/json/2/") {
        let (model, method) = rest.rsplit_once('/')?;
        return Some(format!("{model}.{method}"));
    }
    let request: Value = serde_json::from_slice(body).ok()?;
    let params = request.get("params")?;
    if params.get("service")?.as_str()? != "object"
        || !matches!(params.get("method")?.as_str()?, "execute_kw" | "execute")
    {
        return None;
    }
    let args = params.get("args")?;
    Some(format!(
        "{}.{}",
        args.get(3)?.as_str()?,
        args.get(4)?.as_str()?
    ))
}

async fn handle(
    sim: Arc<Sim>,
    req: Request<Incoming>,
    reset: Arc<AtomicBool>,
) -> Result<Resp, Dropped> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let authorization = header("authorization");
    let database = header("x-odoo-database");
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return Err(Dropped),
    };
    if let Some(control) = path.strip_prefix("/__sim/") {
        return Ok(control_api(&sim, &method, control, &body));
    }
    let is_json2 = path.starts_with("/json/2/");
    let odoo_route =
        path == "/jsonrpc" || path == "/web/version" || (is_json2 && sim.schema.version >= 19);
    if !odoo_route {
        return Ok(html_resp(
            404,
            "Not Found",
            "The requested URL was not found on the server.",
        ));
    }
    // Faults come before any work, as a proxy or a crashed worker would show them.
    let (latency, verdict, hang) = {
        let mut faults = sim.faults.lock().unwrap_or_else(|p| p.into_inner());
        (
            faults.latency,
            faults.verdict(|| call_name(&path, &body)),
            faults.timeout,
        )
    };
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    match verdict {
        Verdict::Proceed => {}
        Verdict::Outage => {
            return Ok(html_resp(
                503,
                "Service Unavailable",
                "The server is temporarily unable to service your request.",
            ))
        }
        Verdict::Fail(FaultKind::BadGateway) => {
            return Ok(html_resp(
                502,
                "Bad Gateway",
                "The proxy received an invalid response from the upstream server.",
            ))
        }
        Verdict::Fail(FaultKind::Unavailable) => {
            return Ok(html_resp(
                503,
                "Service Unavailable",
                "The server is temporarily unable to service your request.",
            ))
        }
        Verdict::Fail(FaultKind::Reset) => {
            reset.store(true, Ordering::Relaxed);
            return Err(Dropped);
        }
        Verdict::Fail(FaultKind::Timeout) => {
            tokio::time::sleep(hang).await;
            return Err(Dropped);
        }
        Verdict::Fail(FaultKind::Serialization) => {
            let err = super::errors::OdooError::new(
                super::errors::ErrorKind::Serialization,
                "could not serialize access due to concurrent update",
            );
            if let Some(id) = load_call(&path, &body) {
                // `load` flushes each record in a savepoint and reports a failed flush among
                // its messages (the text of the database error): the call itself succeeds,
                // with nothing written, and Odoo's retry of concurrency errors never sees it.
                let result = json!({"ids": false, "nextrow": 0, "messages": [{
                    "type": "error", "record": 0, "rows": {"from": 0, "to": 0}, "message": err.message}]});
                return Ok(json_resp(
                    200,
                    &match id {
                        Some(id) => json!({"jsonrpc": "2.0", "id": id, "result": result}),
                        None => result,
                    },
                ));
            }
            return Ok(if is_json2 {
                json_resp(err.json2_status(), &err.to_data())
            } else {
                json_resp(200, &jsonrpc::error_envelope(&sim, &Value::Null, &err))
            });
        }
    }
    let reply: Reply = match (&method, path.as_str()) {
        (&Method::GET | &Method::POST, "/web/version") => {
            let v = sim.schema.version;
            Reply {
                status: 200,
                body: json!({"version_info": [v, 0, 0, "final", 0, ""], "version": format!("{v}.0")}),
                wrote: false,
            }
        }
        (&Method::POST, "/jsonrpc") => jsonrpc::handle(&sim, &body),
        (&Method::POST, p) if is_json2 => {
            let rest = &p["/json/2/".len()..];
            let Some((model, m)) = rest.rsplit_once('/') else {
                return Ok(html_resp(
                    404,
                    "Not Found",
                    "The requested URL was not found on the server.",
                ));
            };
            json2::handle(
                &sim,
                model,
                m,
                authorization.as_deref(),
                database.as_deref(),
                &body,
            )
        }
        _ => {
            return Ok(html_resp(
                405,
                "Method Not Allowed",
                "The method is not allowed for the requested URL.",
            ))
        }
    };
    if reply.wrote {
        let drop_now = sim
            .faults
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take_drop();
        if drop_now {
            // The write is committed; the client never hears about it.
            return Err(Dropped);
        }
    }
    Ok(json_resp(reply.status, &reply.body))
}

fn control_api(sim: &Sim, method: &Method, path: &str, body: &[u8]) -> Resp {
    let bad = |msg: String| json_resp(400, &json!({"error": msg}));
    match (method, path.trim_end_matches('/')) {
        (&Method::POST, "reset") => {
            sim.reset();
            json_resp(200, &json!({"reset": true}))
        }
        (&Method::GET, "state") => json_resp(200, &sim.dump()),
        (&Method::GET, "stats") => json_resp(200, &sim.stats_json()),
        (&Method::DELETE, "stats") => {
            sim.reset_stats();
            json_resp(200, &sim.stats_json())
        }
        (&Method::GET, "faults") => json_resp(
            200,
            &sim.faults
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .to_json(),
        ),
        (&Method::POST, "faults") => {
            let spec: FaultSpec = if body.iter().all(u8::is_ascii_whitespace) {
                FaultSpec::default()
            } else {
                match serde_json::from_slice(body) {
                    Ok(s) => s,
                    Err(e) => return bad(format!("invalid faults body: {e}")),
                }
            };
            let mut faults = sim.faults.lock().unwrap_or_else(|p| p.into_inner());
            match faults.apply(&spec) {
                Ok(()) => json_resp(200, &faults.to_json()),
                Err(e) => bad(e),
            }
        }
        (&Method::DELETE, "faults") => {
            let mut faults = sim.faults.lock().unwrap_or_else(|p| p.into_inner());
            *faults = Default::default();
            json_resp(200, &faults.to_json())
        }
        _ => json_resp(
            404,
            &json!({"error": format!("no control endpoint {method} /__sim/{path}")}),
        ),
    }
}
