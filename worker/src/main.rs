//! `odoo-sync-worker`: the network half of odoo_sync.
//!
//! - `run`: drains the push queue to Odoo until SIGINT/SIGTERM;
//! - `sync <order-key>`: queues one order (`odoo_sync.sync_order`), pushes it and prints the
//!   result.
//!
//! Configuration from the environment: `DATABASE_URL`, and `ODOO_URL`, `ODOO_DB`, `ODOO_USER`,
//! `ODOO_API_KEY` / `ODOO_PASSWORD` (see `OdooConfig::from_lookup`).

use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use odoo_sync_worker::odoo::{OdooClient, OdooConfig};
use odoo_sync_worker::push::resolve::Resolver;
use odoo_sync_worker::run::{run, run_batch, spawn_listener, RunOptions};
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

async fn main_async(cli: Cli) -> Result<(), String> {
    let config = OdooConfig::from_lookup(|k| std::env::var(k).ok()).map_err(|e| e.to_string())?;
    let odoo = OdooClient::new(config).map_err(|e| e.to_string())?;
    let pg = connect_pg().await?;
    let worker = worker_id();
    match cli.command {
        Command::Run => {
            tracing::info!(worker = %worker, "worker started");
            let url = std::env::var("DATABASE_URL").unwrap_or_default();
            let wake = std::sync::Arc::new(tokio::sync::Notify::new());
            let listener = spawn_listener(url, wake.clone());
            let options = RunOptions {
                wake: Some(wake),
                ..RunOptions::default()
            };
            let r = run(&pg, &odoo, &worker, &options, shutdown_signal()).await;
            listener.abort();
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
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .init();
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
