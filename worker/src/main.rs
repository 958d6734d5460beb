//! `odoo-sync-worker`: the network half of odoo_sync.
//!
//! - `run`: drains the push queue to Odoo until SIGINT/SIGTERM;
//! - `sync <order-key>`: queues one order (`odoo_sync.sync_order`), pushes it and prints the
//!   result;
//! - `status`: health, queue depth, workers and the last errors.
//!
//! Configuration from the environment: `DATABASE_URL`, and `ODOO_URL`, `ODOO_DB`, `ODOO_USER`,
//! `ODOO_API_KEY` / `ODOO_PASSWORD` (see `OdooConfig::from_lookup`); `ODOO_SYNC_METRICS_ADDR`
//! (default `127.0.0.1:9464`, `off` to disable) for `/metrics` and `/healthz`;
//! `ODOO_SYNC_FINISHERS` (default 3) extra connections that finish jobs; `ODOO_SYNC_CLAIM_SIZE`
//! (default 200) jobs claimed per batch; `RUST_LOG` for the
//! log level and `LOG_FORMAT=json` for structured JSON logs.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use odoo_sync_worker::http::{self, HttpState};
use odoo_sync_worker::odoo::{OdooClient, OdooConfig};
use odoo_sync_worker::push::resolve::Resolver;
use odoo_sync_worker::run::{run, run_batch, spawn_listener, FinishPool, RunOptions};
use odoo_sync_worker::status;
use tokio_postgres::NoTls;

/// Command line of the worker.
#[derive(Parser, Debug)]
#[command(name = "odoo-sync-worker", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// What the worker is asked to do.
#[derive(Subcommand, Debug)]
enum Command {
    /// Drain the queue to Odoo until stopped.
    Run,
    /// Push one order now and print the result.
    Sync {
        /// The order's key (its id in the application's orders table).
        order_key: String,
    },
    /// Print health, queue depth, workers and the last errors.
    Status,
}

fn worker_id() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "worker".into());
    format!("{host}:{}", std::process::id())
}

async fn connect_pg() -> Result<tokio_postgres::Client, String> {
    let url = std::env::var("DATABASE_URL").map_err(|_| "DATABASE_URL is not set".to_string())?;
    let (client, connection) = tokio_postgres::connect(&url, NoTls)
        .await
        .map_err(|e| format!("cannot connect to PostgreSQL: {e}"))?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::error!(error = %e, "PostgreSQL connection ended");
        }
    });
    Ok(client)
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Starts `/metrics` and `/healthz` unless ODOO_SYNC_METRICS_ADDR is `off`.
async fn start_http(worker: &str) -> Result<Option<tokio::task::JoinHandle<()>>, String> {
    let addr = std::env::var("ODOO_SYNC_METRICS_ADDR").unwrap_or_else(|_| "127.0.0.1:9464".into());
    if addr == "off" {
        return Ok(None);
    }
    // A busy port must not keep a second worker on the same host from working: it runs
    // without the endpoints and says so.
    let listener = match tokio::net::TcpListener::bind(&addr).await {
        Ok(listener) => listener,
        Err(e) => {
            tracing::warn!(%addr, error = %e, "no /metrics or /healthz: cannot listen on ODOO_SYNC_METRICS_ADDR (set another address, 127.0.0.1:0, or off)");
            return Ok(None);
        }
    };
    let bound = listener.local_addr().map_err(|e| e.to_string())?;
    tracing::info!(%bound, "metrics on http://{bound}/metrics, health on http://{bound}/healthz");
    let state = std::sync::Arc::new(HttpState {
        worker_id: worker.to_string(),
        database_url: std::env::var("DATABASE_URL").unwrap_or_default(),
    });
    Ok(Some(tokio::spawn(http::serve(
        listener,
        state,
        std::future::pending(),
    ))))
}

async fn main_async(cli: Cli) -> Result<(), String> {
    if let Command::Status = cli.command {
        let pg = connect_pg().await?;
        let text = status::report(&pg)
            .await
            .map_err(|e| format!("cannot read the status: {e}"))?;
        print!("{text}");
        return Ok(());
    }
    let config = OdooConfig::from_lookup(|k| std::env::var(k).ok()).map_err(|e| e.to_string())?;
    let odoo = OdooClient::new(config).map_err(|e| e.to_string())?;
    let pg = connect_pg().await?;
    let worker = worker_id();
    match cli.command {
        Command::Status => Ok(()),
        Command::Run => {
            tracing::info!(worker = %worker, "worker started");
            let http = start_http(&worker).await?;
            let url = std::env::var("DATABASE_URL").unwrap_or_default();
            let wake = std::sync::Arc::new(tokio::sync::Notify::new());
            let listener = spawn_listener(url, wake.clone());
            // Finishing jobs is PostgreSQL work one backend does serially: a few extra
            // connections share it (ODOO_SYNC_FINISHERS, default 3; measured 7x -> 12x the
            // naive baseline at 20 ms Odoo latency in the push benchmark).
            let count: usize = std::env::var("ODOO_SYNC_FINISHERS")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(3)
                .min(16);
            let mut finishers = Vec::with_capacity(count);
            for _ in 0..count {
                finishers.push(std::sync::Arc::new(connect_pg().await?));
            }
            let defaults = RunOptions::default();
            let max_jobs = std::env::var("ODOO_SYNC_CLAIM_SIZE")
                .ok()
                .and_then(|v| v.parse::<i32>().ok())
                .map_or(defaults.max_jobs, |n| n.clamp(1, 1000));
            let options = RunOptions {
                wake: Some(wake),
                finishers: FinishPool(finishers),
                max_jobs,
                ..defaults
            };
            let r = run(&pg, &odoo, &worker, &options, shutdown_signal()).await;
            listener.abort();
            if let Some(http) = http {
                http.abort();
            }
            r.map_err(|e| e.to_string())
        }
        Command::Sync { order_key } => {
            let row = pg
                .query_one("SELECT odoo_sync.sync_order($1::text)", &[&order_key])
                .await
                .map_err(|e| format!("sync_order('{order_key}'): {e}"))?;
            let job_id: i64 = row.try_get(0).map_err(|e| e.to_string())?;
            let mut resolver = Resolver::new();
            let deadline = Instant::now() + Duration::from_secs(120);
            while Instant::now() < deadline {
                let reports = run_batch(&pg, &odoo, &mut resolver, &worker, 50)
                    .await
                    .map_err(|e| e.to_string())?;
                if let Some(r) = reports
                    .iter()
                    .find(|r| r.job_id == job_id && r.state != "requeued")
                {
                    let out = serde_json::json!({
                        "job_id": r.job_id,
                        "order_key": r.order_key,
                        "state": r.state,
                        "result": r.outcome.as_ref().map(|o| o.to_result_json()),
                        "error": r.error,
                    });
                    println!(
                        "{}",
                        serde_json::to_string_pretty(&out).map_err(|e| e.to_string())?
                    );
                    return if r.state == "done" {
                        Ok(())
                    } else {
                        Err(format!("order {order_key} was not synced: {}", r.state))
                    };
                }
                if reports.is_empty() {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
            Err(format!("job {job_id} did not finish within 120 s"))
        }
    }
}

fn main() -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if std::env::var("LOG_FORMAT").as_deref() == Ok("json") {
        logs.json().init();
    } else {
        logs.init();
    }
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("odoo-sync-worker: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(main_async(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("odoo-sync-worker: {e}");
            ExitCode::FAILURE
        }
    }
}
