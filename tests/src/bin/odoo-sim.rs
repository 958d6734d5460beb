//! `odoo-sim`: run the Odoo simulator as a process (see tests/SIMULATOR.md).

use clap::Parser;
use odoo_sync_tests::sim::{self, seed::Seed, SimConfig};
use std::io::Write;
use std::path::PathBuf;

/// An Odoo stand-in speaking JSON-RPC and JSON-2 for the purchase models, with fault injection.
#[derive(Debug, Parser)]
#[command(name = "odoo-sim", version)]
struct Args {
    /// Address to listen on; port 0 picks a free port (printed on the first stdout line).
    #[arg(long, default_value = "127.0.0.1:8069")]
    listen: String,
    /// Database name.
    #[arg(long, default_value = "odoo")]
    db: String,
    /// Admin login (uid 2).
    #[arg(long, default_value = "admin")]
    user: String,
    /// Admin password.
    #[arg(long, default_value = "admin")]
    password: String,
    /// Admin API key (password substitute for JSON-RPC, bearer token for JSON-2).
    #[arg(long, default_value = sim::DEFAULT_API_KEY)]
    api_key: String,
    /// Odoo version to imitate: 16, 17, 18 or 19.
    #[arg(long, default_value_t = 19, value_parser = clap::value_parser!(u8).range(16..=19))]
    odoo_version: u8,
    /// JSON seed file replacing the default vendors, products and price lists.
    #[arg(long)]
    seed: Option<PathBuf>,
    /// Snapshot file: loaded at start if it exists, written on SIGTERM/SIGINT.
    #[arg(long)]
    state: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let seed = match &args.seed {
        Some(path) => {
            let text = std::fs::read_to_string(path)?;
            serde_json::from_str::<Seed>(&text)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?
        }
        None => Seed::default_data(),
    };
    let config = SimConfig {
        db: args.db,
        user: args.user,
        password: args.password,
        api_key: args.api_key,
        version: args.odoo_version,
        seed,
        state_file: args.state,
    };
    // Build the database before announcing the address, so a bad seed fails before anyone
    // connects.
    let simulator = sim::Sim::new(config)?;
    let listener = tokio::net::TcpListener::bind(&args.listen).await?;
    let addr = listener.local_addr()?;
    // The handlers are installed before the address is announced: a SIGTERM sent right after
    // reading it must stop the server cleanly, not kill it.
    let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    // Tests and scripts read the address from this first line: print and flush it at once.
    let mut out = std::io::stdout();
    writeln!(out, "listening on http://{addr}")?;
    out.flush()?;
    sim::server::run(simulator.clone(), listener, shutdown_signal(term)).await;
    simulator.save_state()?;
    eprintln!("odoo-sim stopped");
    Ok(())
}

async fn shutdown_signal(mut term: tokio::signal::unix::Signal) {
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
