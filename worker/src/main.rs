//! `odoo-sync-worker`: the network half of odoo_sync.
//!
//! - `run`: drains the push queue to Odoo until SIGINT/SIGTERM;
//! - `check`: tells whether PostgreSQL, the extension and Odoo are ready, and how to fix what
//!   is not (exit status 1 when something is not);
//! - `sync <order-key>`: queues one order (`odoo_sync.sync_order`), pushes it and prints the
//!   result;
//! - `import --since DATE ...` (or `--all`): imports Odoo orders (`odoo_sync.import_orders`) and shows the
//!   batch's progress;
//! - `status`: health, queue depth, workers and the last errors;
//! - `verify [--json]`: compares every tracked local order with its Odoo order and prints
//!   where they differ (exit status 1 on any divergence).
//!
//! Configuration: a TOML file (`--config PATH` or `ODOO_SYNC_CONFIG`, see
//! `packaging/worker.toml.example`) and the environment, which wins key by key: `DATABASE_URL`,
//! `ODOO_URL`, `ODOO_DB`, `ODOO_USER`, `ODOO_API_KEY(_FILE)` / `ODOO_PASSWORD(_FILE)`,
//! `ODOO_PROTOCOL`, `ODOO_CA_FILE`, `ODOO_CONNECT_TIMEOUT_SECS`, `ODOO_REQUEST_TIMEOUT_SECS`,
//! `ODOO_SYNC_METRICS_ADDR`, `ODOO_SYNC_FINISHERS`, `ODOO_SYNC_CLAIM_SIZE`, `RUST_LOG`,
//! `LOG_FORMAT`. An invalid configuration stops every command at start (exit status 2) with a
//! message naming the key.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand};
use odoo_sync_worker::check::{self, CheckOptions};
use odoo_sync_worker::http::{self, HttpState};
use odoo_sync_worker::import::{self, ImportError, ImportFilter, Progress};
use odoo_sync_worker::odoo::{OdooClient, OdooError};
use odoo_sync_worker::pg_tls::{self, ConnectError, PgTlsError};
use odoo_sync_worker::push::resolve::Resolver;
use odoo_sync_worker::run::{run, run_batch, spawn_listener, FinishPool, RunOptions};
use odoo_sync_worker::settings_file::{ConfigError, LogFormat, Settings, Source};
use odoo_sync_worker::status;
use odoo_sync_worker::verify;

/// Command line of the worker.
#[derive(Parser, Debug)]
#[command(name = "odoo-sync-worker", version, about)]
struct Cli {
    /// Configuration file (TOML; see packaging/worker.toml.example). Environment variables
    /// override its keys.
    #[arg(long, global = true, env = "ODOO_SYNC_CONFIG", value_name = "PATH")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

/// What the worker is asked to do.
#[derive(Subcommand, Debug)]
enum Command {
    /// Drain the queue to Odoo until stopped.
    Run,
    /// Check PostgreSQL, the extension, Odoo and the pending orders; say how to fix what fails.
    Check,
    /// Push one order now and print the result.
    Sync {
        /// The order's key (its id in the application's orders table).
        order_key: String,
    },
    /// Import Odoo purchase orders into the tracked tables, with progress.
    Import(ImportArgs),
    /// Print health, queue depth, workers and the last errors.
    Status,
    /// Compare every tracked local order with its Odoo order: missing, duplicated, lines,
    /// partner and state. Exit status 1 on any divergence.
    Verify {
        /// Print the report as JSON (summary and differing orders) instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// Which Odoo orders `import` brings in (the filter of `odoo_sync.import_orders`).
#[derive(Args, Debug)]
struct ImportArgs {
    /// Orders from this date on (ISO date or timestamp, e.g. 2026-01-31): the filter's date_from.
    /// Required unless --all says that orders of any date are meant.
    #[arg(long, value_name = "DATE", required_unless_present = "all")]
    since: Option<String>,
    /// Orders of any date (every Odoo order the other options let through): a deliberate
    /// choice, since a whole Odoo history can be large.
    #[arg(long, conflicts_with = "since")]
    all: bool,
    /// Orders up to this date (date_to).
    #[arg(long, value_name = "DATE")]
    until: Option<String>,
    /// Only orders in this Odoo state (draft, sent, "to approve", purchase, done, cancel);
    /// repeat the option for several.
    #[arg(long = "state", value_name = "STATE")]
    states: Vec<String>,
    /// Only orders of this Odoo partner id; repeat the option for several.
    #[arg(long = "partner", value_name = "ID")]
    partners: Vec<i64>,
    /// At most this many orders (1..100000).
    #[arg(long, value_name = "N")]
    limit: Option<i64>,
}

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
enum CliError {
    /// The configuration is invalid (exit status 2).
    #[error("config error: {0}")]
    Config(#[from] ConfigError),
    /// The PostgreSQL TLS settings are invalid (exit status 2).
    #[error("config error: {0}")]
    PgTls(#[from] PgTlsError),
    /// PostgreSQL is unreachable or refused a statement.
    #[error("{what}: {}", pg_message(source))]
    Pg {
        what: String,
        source: tokio_postgres::Error,
    },
    /// The Odoo client cannot be built.
    #[error("{0}")]
    Odoo(#[from] OdooError),
    /// The import could not be run.
    #[error("import: {0}")]
    Import(#[from] ImportError),
    /// The import ran, and some orders failed.
    #[error("{failed} order(s) of import batch {batch_id} failed (see above)")]
    ImportFailed { batch_id: i64, failed: i32 },
    /// `sync` did not get the order to Odoo.
    #[error("{0}")]
    Sync(String),
    /// Writing the output failed (e.g. a closed pipe).
    #[error("cannot write the output: {0}")]
    Output(#[from] std::io::Error),
    /// `check` found problems; they are printed already.
    #[error("check found problems (see above)")]
    CheckFailed,
    /// The comparison could not be made.
    #[error("verify: {0}")]
    Verify(#[from] verify::VerifyError),
    /// `verify` found divergences; they are printed already.
    #[error("verify found {0} order(s) that differ from Odoo (see above)")]
    Diverged(usize),
}

impl CliError {
    fn exit_code(&self) -> u8 {
        match self {
            CliError::Config(_) | CliError::PgTls(_) => 2,
            _ => 1,
        }
    }
}

/// The server's own words for a database error (tokio_postgres displays only "db error"):
/// message, then detail and hint when PostgreSQL gave them.
fn pg_message(e: &tokio_postgres::Error) -> String {
    odoo_sync_worker::queue::describe_pg(e)
}

fn pg_err(what: impl Into<String>) -> impl FnOnce(tokio_postgres::Error) -> CliError {
    let what = what.into();
    move |source| CliError::Pg { what, source }
}

fn worker_id() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "worker".into());
    format!("{host}:{}", std::process::id())
}

async fn connect_pg(url: &str) -> Result<tokio_postgres::Client, CliError> {
    let (client, connection) = pg_tls::connect(url).await.map_err(|e| match e {
        ConnectError::Tls(e) => CliError::PgTls(e),
        ConnectError::Postgres(source) => CliError::Pg {
            what: "cannot connect to PostgreSQL (database.url / DATABASE_URL)".into(),
            source,
        },
    })?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::error!(error = %odoo_sync_worker::queue::describe_pg(&e), "PostgreSQL connection ended");
        }
    });
    // complete_job and the other functions that decide "this order is in sync" refuse to run
    // at REPEATABLE READ or SERIALIZABLE, which a role or database default could impose.
    client
        .batch_execute("SET default_transaction_isolation = 'read committed'")
        .await
        .map_err(|source| CliError::Pg {
            what: "cannot set the session's isolation level to READ COMMITTED".into(),
            source,
        })?;
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

/// Starts `/metrics` and `/healthz` unless `worker.metrics_addr` is `off`.
async fn start_http(
    worker: &str,
    settings: &Settings,
    odoo: &OdooClient,
) -> Result<Option<tokio::task::JoinHandle<()>>, CliError> {
    let Some(addr) = settings.metrics_addr() else {
        return Ok(None);
    };
    // A busy port must not keep a second worker on the same host from working: it runs
    // without the endpoints and says so.
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(listener) => listener,
        Err(e) => {
            tracing::warn!(%addr, error = %e, "no /metrics or /healthz: cannot listen on worker.metrics_addr / ODOO_SYNC_METRICS_ADDR (set another address, 127.0.0.1:0, or off)");
            return Ok(None);
        }
    };
    let bound = listener.local_addr()?;
    tracing::info!(%bound, "metrics on http://{bound}/metrics, health on http://{bound}/healthz");
    let state = std::sync::Arc::new(HttpState {
        worker_id: worker.to_string(),
        database_url: settings.database_url()?.to_string(),
        odoo: odoo.clone(),
    });
    Ok(Some(tokio::spawn(http::serve(
        listener,
        state,
        std::future::pending(),
    ))))
}

/// Where the configuration came from, for `check`'s first line.
fn describe_source(settings: &Settings) -> String {
    let env = settings.from_env();
    let env = if env.is_empty() {
        String::new()
    } else {
        format!("; from the environment: {}", env.join(", "))
    };
    match settings.file() {
        Some(path) => format!("config file {}{env}", path.display()),
        None => format!("no config file (--config / ODOO_SYNC_CONFIG){env}"),
    }
}

async fn check_command(settings: &Settings) -> Result<(), CliError> {
    let options = CheckOptions::new(
        describe_source(settings),
        settings
            .database_url()
            .map(str::to_string)
            .map_err(|e| e.to_string()),
        settings.odoo_config().map_err(|e| e.to_string()),
    );
    let report = check::run(&options).await;
    let mut out = std::io::stdout().lock();
    out.write_all(report.render().as_bytes())?;
    out.flush()?;
    if report.passed() {
        Ok(())
    } else {
        Err(CliError::CheckFailed)
    }
}

/// Whether a PostgreSQL error means the connection is gone (a server restart, a terminated
/// backend, a cut network), so that a new connection may work where this one failed.
fn connection_lost(e: &tokio_postgres::Error, pg: &tokio_postgres::Client) -> bool {
    if pg.is_closed() || e.is_closed() {
        return true;
    }
    match e.code() {
        // connection_exception (08...), operator_intervention (57P01 admin_shutdown, 57P02
        // crash_shutdown, 57P03 cannot_connect_now).
        Some(code) => code.code().starts_with("08") || code.code().starts_with("57P"),
        // Not a server error: I/O on the socket counts, a value that cannot be read does not
        // (a new connection would read it no better).
        None => std::error::Error::source(e)
            .is_some_and(|cause| cause.downcast_ref::<std::io::Error>().is_some()),
    }
}

/// Resolves once `stop` turns true.
async fn stopped(mut stop: tokio::sync::watch::Receiver<bool>) {
    while !*stop.borrow_and_update() {
        if stop.changed().await.is_err() {
            // The sender is gone: nobody can ask for a stop any more.
            std::future::pending::<()>().await;
        }
    }
}

/// The finisher connections (see [`RunOptions::finishers`]).
async fn connect_finishers(url: &str, n: usize) -> Result<FinishPool, CliError> {
    // Finishing jobs is PostgreSQL work one backend does serially: a few extra connections
    // share it (measured 7x -> 12x the naive baseline at 20 ms Odoo latency in the push
    // benchmark).
    let mut finishers = Vec::with_capacity(n);
    for _ in 0..n {
        finishers.push(std::sync::Arc::new(connect_pg(url).await?));
    }
    Ok(FinishPool(finishers))
}

/// Resolves when one of the finisher connections has closed (run() is then restarted with new
/// ones: jobs routed to a dead finisher would otherwise wait for their lease every time).
async fn finisher_lost(pool: FinishPool) {
    loop {
        if pool.0.iter().any(|c| c.is_closed()) {
            return;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn run_command(settings: &Settings, pg: &tokio_postgres::Client) -> Result<(), CliError> {
    let odoo = OdooClient::new(settings.odoo_config()?)?;
    let worker = worker_id();
    tracing::info!(worker = %worker, "worker started");
    let http = start_http(&worker, settings, &odoo).await?;
    let url = settings.database_url()?.to_string();
    let wake = std::sync::Arc::new(tokio::sync::Notify::new());
    let listener = spawn_listener(url.clone(), wake.clone());
    // One signal handler for the whole life of the process: a stop asked while the loop below
    // reconnects is not lost.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let signals = tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop_tx.send(true);
    });
    let result = supervise(settings, pg, &odoo, &worker, &url, wake, stop_rx).await;
    signals.abort();
    listener.abort();
    if let Some(http) = http {
        http.abort();
    }
    result
}

/// Runs the push loop, and runs it again on new connections when PostgreSQL goes away
/// (restart, failover, terminated backend) instead of ending the process: the LISTEN
/// connection already comes back by itself, and the main and finisher connections come back
/// here, retried with a growing pause (0.5 s up to 10 s) until the server answers or a stop is
/// asked. Errors that a new connection cannot cure (SQL errors on a live connection) end the
/// process as before.
async fn supervise(
    settings: &Settings,
    first: &tokio_postgres::Client,
    odoo: &OdooClient,
    worker: &str,
    url: &str,
    wake: std::sync::Arc<tokio::sync::Notify>,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Result<(), CliError> {
    const FIRST_PAUSE: Duration = Duration::from_millis(500);
    const MAX_PAUSE: Duration = Duration::from_secs(10);
    let mut replaced: Option<tokio_postgres::Client> = None;
    let mut finishers = Some(connect_finishers(url, settings.finishers()).await?);
    loop {
        let pg = replaced.as_ref().unwrap_or(first);
        let pool = match finishers.take() {
            Some(pool) => pool,
            None => match connect_finishers(url, settings.finishers()).await {
                Ok(pool) => pool,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot open the finisher connections; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(FIRST_PAUSE) => continue,
                        _ = stopped(stop.clone()) => return Ok(()),
                    }
                }
            },
        };
        let options = RunOptions {
            wake: Some(wake.clone()),
            finishers: pool.clone(),
            max_jobs: settings.claim_size(),
            ..RunOptions::default()
        };
        let restart_asked = std::sync::atomic::AtomicBool::new(false);
        let shutdown = async {
            tokio::select! {
                _ = stopped(stop.clone()) => {}
                _ = finisher_lost(pool) => restart_asked.store(true, std::sync::atomic::Ordering::SeqCst),
            }
        };
        match run(pg, odoo, worker, &options, shutdown).await {
            Ok(()) if !restart_asked.load(std::sync::atomic::Ordering::SeqCst) => return Ok(()),
            Ok(()) => {
                tracing::warn!("a finisher connection to PostgreSQL closed; reconnecting");
                if !pg.is_closed() {
                    continue;
                }
            }
            Err(e) if connection_lost(&e, pg) => {
                tracing::warn!(error = %e, "lost the PostgreSQL connection; reconnecting");
            }
            Err(e) => return Err(pg_err("the run loop stopped")(e)),
        }
        // The main connection is gone: open a new one, then hand back the jobs this worker
        // still holds (no batch of ours is in flight once run() has returned; their pushes are
        // idempotent), so they do not wait for their leases to run out.
        let mut pause = FIRST_PAUSE;
        let fresh = loop {
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = stopped(stop.clone()) => return Ok(()),
            }
            match connect_pg(url).await {
                Ok(c) => break c,
                Err(e) => {
                    tracing::warn!(error = %e, retry_in = ?pause, "PostgreSQL is not back yet");
                    pause = (pause * 2).min(MAX_PAUSE);
                }
            }
        };
        match fresh
            .query_one("SELECT odoo_sync.release_jobs($1)", &[&worker])
            .await
            .and_then(|r| r.try_get::<_, i32>(0))
        {
            Ok(n) => tracing::info!(released = n, "reconnected to PostgreSQL"),
            Err(e) => {
                tracing::warn!(error = %e, "reconnected to PostgreSQL; could not release the jobs held before (they return when their lease ends)")
            }
        }
        replaced = Some(fresh);
    }
}

async fn sync_command(
    settings: &Settings,
    pg: &tokio_postgres::Client,
    order_key: &str,
) -> Result<(), CliError> {
    let odoo = OdooClient::new(settings.odoo_config()?)?;
    let worker = worker_id();
    let row = pg
        .query_one("SELECT odoo_sync.sync_order($1::text)", &[&order_key])
        .await
        .map_err(pg_err(format!("sync_order('{order_key}')")))?;
    let job_id: i64 = row.try_get(0).map_err(pg_err("reading the job id"))?;
    let mut resolver = Resolver::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        let reports = run_batch(pg, &odoo, &mut resolver, &worker, 50)
            .await
            .map_err(pg_err("working the queue"))?;
        if let Some(r) = reports
            .iter()
            .find(|r| r.job_id == job_id && !r.state.starts_with("requeued"))
        {
            let out = serde_json::json!({
                "job_id": r.job_id,
                "order_key": r.order_key,
                "state": r.state,
                "result": r.outcome.as_ref().map(|o| o.to_result_json()),
                "error": r.error,
            });
            let text = serde_json::to_string_pretty(&out)
                .map_err(|e| CliError::Sync(format!("cannot print the result: {e}")))?;
            println!("{text}");
            return if r.state == "done" {
                Ok(())
            } else {
                Err(CliError::Sync(format!(
                    "order {order_key} was not synced: {}",
                    r.state
                )))
            };
        }
        if reports.is_empty() {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    Err(CliError::Sync(format!(
        "job {job_id} did not finish within 120 s"
    )))
}

async fn import_command(
    settings: &Settings,
    pg: &tokio_postgres::Client,
    args: ImportArgs,
) -> Result<(), CliError> {
    let odoo = OdooClient::new(settings.odoo_config()?)?;
    let filter = ImportFilter {
        since: args.since,
        until: args.until,
        states: args.states,
        partner_ids: args.partners,
        limit: args.limit,
    };
    let batch_id = import::start(pg, &filter).await?;
    let tty = std::io::stdout().is_terminal();
    println!("import batch {batch_id} started: {}", filter.to_json());
    // A second connection reads the progress while the import job runs on the first.
    let monitor = connect_pg(settings.database_url()?).await?;
    let mut progress = Progress::new(tty);
    let mut out = std::io::stdout();
    let outcome = import::drive(
        pg,
        Some(&monitor),
        &odoo,
        &worker_id(),
        batch_id,
        settings.claim_size(),
        async {
            let _ = tokio::signal::ctrl_c().await;
        },
        |status| {
            if let Some(text) = progress.update(status) {
                // A closed stdout only loses the progress display, not the import.
                let _ = out.write_all(text.as_bytes());
                let _ = out.flush();
            }
        },
    )
    .await;
    print!("{}", progress.finish());
    let outcome = outcome?;
    print!("{}", outcome.summary());
    std::io::stdout().flush()?;
    if outcome.succeeded() {
        Ok(())
    } else {
        Err(CliError::ImportFailed {
            batch_id,
            failed: outcome.status.failed,
        })
    }
}

async fn verify_command(
    settings: &Settings,
    pg: &tokio_postgres::Client,
    json: bool,
) -> Result<(), CliError> {
    let odoo = OdooClient::new(settings.odoo_config()?)?;
    let report = verify::verify(pg, &odoo).await?;
    let text = if json {
        let mut text = serde_json::to_string_pretty(&report.to_json())
            .map_err(|e| CliError::Output(std::io::Error::other(e)))?;
        text.push('\n');
        text
    } else {
        report.render_text()
    };
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    if report.is_clean() {
        Ok(())
    } else {
        Err(CliError::Diverged(
            report.summary.differing + report.summary.orphans,
        ))
    }
}

async fn main_async(cli: Cli, settings: Settings) -> Result<(), CliError> {
    // Every PostgreSQL connection of this process uses these TLS settings; `check` reports an
    // unusable CA file on its PostgreSQL line, other commands stop here.
    let tls = pg_tls::configure(settings.database_ca_file());
    if let Command::Check = cli.command {
        return check_command(&settings).await;
    }
    tls?;
    let pg = connect_pg(settings.database_url()?).await?;
    match cli.command {
        Command::Check => Ok(()),
        Command::Status => {
            let text = status::report(&pg)
                .await
                .map_err(pg_err("cannot read the status"))?;
            print!("{text}");
            Ok(())
        }
        Command::Run => run_command(&settings, &pg).await,
        Command::Sync { order_key } => sync_command(&settings, &pg, &order_key).await,
        Command::Import(args) => import_command(&settings, &pg, args).await,
        Command::Verify { json } => verify_command(&settings, &pg, json).await,
    }
}

fn init_logging(settings: &Settings, command: &Command) {
    // check and import talk to a person on stdout: unless asked, only warnings go to stderr.
    let filter = match (settings.source("log.level"), command) {
        (
            Some(Source::Default) | None,
            Command::Check | Command::Import(_) | Command::Verify { .. },
        ) => "warn",
        _ => settings.log_filter(),
    };
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match settings.log_format() {
        LogFormat::Json => logs.json().init(),
        LogFormat::Text => logs.init(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings = match Settings::load(cli.config.as_deref(), |k| std::env::var(k).ok()) {
        Ok(s) => s,
        Err(e) => {
            if let Command::Check = cli.command {
                // The doctor reports a broken configuration in its own format.
                println!(
                    "FAIL  {:<15} {e} -- fix: correct the configuration (see packaging/worker.toml.example)",
                    "config"
                );
            }
            eprintln!("odoo-sync-worker: {}", CliError::Config(e));
            return ExitCode::from(2);
        }
    };
    init_logging(&settings, &cli.command);
    for warning in &settings.warnings {
        tracing::warn!("{warning}");
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("odoo-sync-worker: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(main_async(cli, settings)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("odoo-sync-worker: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
