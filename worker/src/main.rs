//! `odoo-sync-worker`: the network half of odoo_sync. This skeleton only parses its command line;
//! the push loop arrives with the "Worker: push" issue.

use clap::{Parser, Subcommand};

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
    /// Drain the queue to Odoo and pull Odoo changes until stopped.
    Run,
    /// Check the configuration, the database and Odoo, and say what to fix.
    Check,
    /// Print health, queue depth and the last errors.
    Status,
}

fn main() {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Run | Command::Check | Command::Status => {
            eprintln!(
                "odoo-sync-worker {}: '{:?}' is not built yet; see the README for what works today",
                env!("CARGO_PKG_VERSION"),
                cli.command
            );
            std::process::exit(2);
        }
    }
}
