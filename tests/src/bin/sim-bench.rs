//! `sim-bench`: measures the requests per second the simulator sustains, so we know it is never
//! the bottleneck of the sync benchmarks. Starts an in-process simulator (or uses `--url`).

use clap::Parser;
use odoo_sync_tests::sim::client::Client;
use odoo_sync_tests::sim::{self, SimConfig};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// Benchmark of odoo-sim.
#[derive(Debug, Parser)]
struct Args {
    /// Concurrent clients.
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// Seconds per scenario.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Benchmark a running simulator instead of an in-process one (admin/admin, db odoo).
    #[arg(long)]
    url: Option<String>,
}

async fn call(
    c: &Client,
    model: &str,
    method: &str,
    args: Value,
    kwargs: Value,
) -> anyhow::Result<Value> {
    let env = c
        .execute_kw("odoo", 2, "admin", model, method, args, kwargs)
        .await?;
    anyhow::ensure!(env.get("error").is_none(), "error: {env}");
    Ok(env["result"].clone())
}

/// Runs `op` from `clients` tasks for `secs`; returns (requests, elapsed).
async fn run<F, Fut>(
    url: &str,
    clients: usize,
    secs: f64,
    requests_per_op: u64,
    op: F,
) -> anyhow::Result<(u64, Duration)>
where
    F: Fn(Client) -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(secs);
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let op = op.clone();
        let c = Client::new(url);
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while Instant::now() < deadline {
                op(c.clone()).await?;
                n += requests_per_op;
            }
            anyhow::Ok(n)
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await??;
    }
    Ok((total, start.elapsed()))
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let _handle;
        let url = match &args.url {
            Some(u) => u.clone(),
            None => {
                let h = sim::spawn(SimConfig::default()).await?;
                let u = h.url();
                _handle = h;
                u
            }
        };
        let c = Client::new(&url);
        let vendor = call(&c, "res.partner", "search", json!([[["ref", "=", "V-GEMINI"]]]), json!({})).await?[0].clone();
        let product = call(&c, "product.product", "search", json!([[["default_code", "=", "FURN_7777"]]]), json!({})).await?[0].clone();
        // 60 orders so that search_read of 50 returns full pages.
        for i in 0..60 {
            call(&c, "purchase.order", "create", json!([{"partner_id": vendor, "origin": format!("SEED-{i}"),
                "order_line": [[0, 0, {"product_id": product, "product_qty": 1, "price_unit": 1}]]}]), json!({})).await?;
        }
        println!("odoo-sim benchmark: {} concurrent clients, {:.1} s per scenario, {url}", args.clients, args.seconds);

        let (n, el) = run(&url, args.clients, args.seconds, 1, |c: Client| async move {
            call(&c, "res.partner", "search_count", json!([[["ref", "=", "V-WOOD"]]]), json!({})).await.map(|_| ())
        })
        .await?;
        println!("simple call (res.partner search_count):      {:>8.0} req/s", n as f64 / el.as_secs_f64());

        let (n, el) = run(&url, args.clients, args.seconds, 1, |c: Client| async move {
            let rows = call(&c, "purchase.order", "search_read", json!([[]]),
                json!({"fields": ["name", "state", "partner_id", "amount_total", "write_date"], "limit": 50, "order": "write_date asc, id asc"})).await?;
            anyhow::ensure!(rows.as_array().map(Vec::len) == Some(50), "50 rows");
            Ok(())
        })
        .await?;
        println!("search_read of 50 orders:                    {:>8.0} req/s", n as f64 / el.as_secs_f64());

        let (n, el) = run(&url, args.clients, args.seconds, 1, move |c: Client| {
            let (vendor, product) = (vendor.clone(), product.clone());
            async move {
                let orders: Vec<Value> = (0..10)
                    .map(|_| {
                        let lines: Vec<Value> = (0..5)
                            .map(|_| json!([0, 0, {"product_id": product, "product_qty": 2, "price_unit": 3.5}]))
                            .collect();
                        json!({"partner_id": vendor, "order_line": lines})
                    })
                    .collect();
                let ids = call(&c, "purchase.order", "create", json!([orders]), json!({})).await?;
                anyhow::ensure!(ids.as_array().map(Vec::len) == Some(10), "10 ids");
                Ok(())
            }
        })
        .await?;
        let rate = n as f64 / el.as_secs_f64();
        println!("create of 10 orders x 5 lines (one call):    {:>8.0} req/s ({:.0} orders/s)", rate, rate * 10.0);
        anyhow::Ok(())
    })
}
