//! `odoo-sim`: an Odoo stand-in that speaks Odoo's JSON-RPC and JSON-2 wire formats for the
//! purchase models, with Odoo's behaviour and errors (see `../shared/odoo-api.md`), seed data,
//! call counters and fault injection. Start it in-process with [`spawn`] or [`serve`], or run
//! the `odoo-sim` binary. `tests/SIMULATOR.md` documents the CLI and the `/__sim/` control API.

pub mod client;
pub mod dispatch;
pub mod domain;
pub mod errors;
pub mod faults;
pub mod json2;
pub mod jsonrpc;
pub mod load;
pub mod orm;
pub mod purchase;
pub mod schema;
pub mod seed;
pub mod server;
pub mod store;
pub mod value;
pub mod world;

use anyhow::Context as _;
use faults::Faults;
use orm::Env;
use schema::Schema;
use seed::Seed;
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use store::Txn;
use tokio::net::TcpListener;
use world::{UserAuth, World};

/// API key of the admin when none is given (`--api-key`).
pub const DEFAULT_API_KEY: &str = "odoo-sim-admin-api-key";

/// How the simulator is set up.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Database name clients must send.
    pub db: String,
    /// Admin login (uid 2).
    pub user: String,
    /// Admin password.
    pub password: String,
    /// Admin API key (accepted as password and as JSON-2 bearer token).
    pub api_key: String,
    /// Odoo major version to imitate: 16, 17, 18 or 19.
    pub version: u8,
    /// Data loaded at start and by `/__sim/reset`.
    pub seed: Seed,
    /// Snapshot file: loaded at start when it exists, written by [`Sim::save_state`].
    pub state_file: Option<PathBuf>,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            db: "odoo".into(),
            user: "admin".into(),
            password: "admin".into(),
            api_key: DEFAULT_API_KEY.into(),
            version: 19,
            seed: Seed::default_data(),
            state_file: None,
        }
    }
}

/// Call counters: `{"total": n, "calls": {"purchase.order.create": n, ...}}`.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    /// All model method calls.
    pub total: u64,
    /// Calls by `model.method`.
    pub calls: BTreeMap<String, u64>,
}

/// The running simulator's state, shared by all connections.
pub struct Sim {
    /// Configuration.
    pub config: SimConfig,
    /// Models of the simulated version.
    pub schema: Schema,
    pristine: World,
    /// The database.
    pub world: Mutex<World>,
    /// Call counters.
    pub stats: Mutex<Stats>,
    /// Faults in force.
    pub faults: Mutex<Faults>,
    /// What other Odoo users do just before a client's next call (see [`Sim::before_next_call`]).
    hooks: Mutex<Vec<CallHook>>,
}

/// What another Odoo user does (see [`Sim::before_next_call`]).
type HookAction = Box<dyn FnOnce(&Sim) + Send>;

/// An action of another Odoo user, run once just before the next call of `model.method`.
struct CallHook {
    model: String,
    method: String,
    action: HookAction,
}

impl Sim {
    /// Builds the simulator: the seed database, replaced by the `--state` snapshot if present.
    pub fn new(config: SimConfig) -> anyhow::Result<Arc<Sim>> {
        anyhow::ensure!(
            (16..=19).contains(&config.version),
            "--odoo-version must be 16, 17, 18 or 19"
        );
        let schema = Schema::new(config.version);
        let admin = UserAuth {
            id: 2,
            login: config.user.clone(),
            password: config.password.clone(),
            api_key: Some(config.api_key.clone()),
            purchase_manager: true,
            denied_models: vec![],
            hidden: Default::default(),
        };
        let pristine = config
            .seed
            .build(&schema, &admin)
            .map_err(|e| anyhow::anyhow!("seed: {e}"))?;
        let world = match &config.state_file {
            Some(path) if path.exists() => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))?;
                serde_json::from_str(&text)
                    .with_context(|| format!("parsing state file {}", path.display()))?
            }
            _ => pristine.clone(),
        };
        Ok(Arc::new(Sim {
            config,
            schema,
            pristine,
            world: Mutex::new(world),
            stats: Mutex::new(Stats::default()),
            faults: Mutex::new(Faults::default()),
            hooks: Mutex::new(Vec::new()),
        }))
    }

    /// Runs `action` once, in a transaction of its own committed just before the next call of
    /// `model.method` starts: another Odoo user acting between a client's read and its write,
    /// made deterministic for tests of that race.
    pub fn before_next_call(
        &self,
        model: &str,
        method: &str,
        action: impl FnOnce(&Sim) + Send + 'static,
    ) {
        self.hooks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(CallHook {
                model: model.to_string(),
                method: method.to_string(),
                action: Box::new(action),
            });
    }

    /// Takes the hook waiting for `model.method`, if any.
    fn take_hook(&self, model: &str, method: &str) -> Option<HookAction> {
        let mut hooks = self.hooks.lock().unwrap_or_else(|p| p.into_inner());
        let at = hooks
            .iter()
            .position(|h| h.model == model && h.method == method)?;
        Some(hooks.remove(at).action)
    }

    /// Runs `model.method` on `ids` as the admin user (uid 2), without HTTP: what a user of
    /// Odoo's own interface does (hooks and tests).
    pub fn call_as_admin(
        &self,
        model: &str,
        method: &str,
        ids: &[i64],
        args: Vec<Value>,
    ) -> Result<dispatch::CallResult, errors::OdooError> {
        let admin = {
            let world = self.world.lock().unwrap_or_else(|p| p.into_inner());
            world
                .users
                .iter()
                .find(|u| u.id == 2)
                .cloned()
                .ok_or_else(errors::OdooError::access_denied)?
        };
        self.execute(
            &admin,
            &dispatch::Call {
                model: model.to_string(),
                method: method.to_string(),
                ids: Some(json!(ids)),
                args,
                kwargs: Map::new(),
            },
        )
    }

    /// Back to the seed data; counters are zeroed too (faults stay: clear them separately).
    pub fn reset(&self) {
        *self.world.lock().unwrap_or_else(|p| p.into_inner()) = self.pristine.clone();
        self.reset_stats();
    }

    /// Zeroes the call counters.
    pub fn reset_stats(&self) {
        *self.stats.lock().unwrap_or_else(|p| p.into_inner()) = Stats::default();
    }

    /// The counters as JSON.
    pub fn stats_json(&self) -> Value {
        let stats = self.stats.lock().unwrap_or_else(|p| p.into_inner());
        json!({"total": stats.total, "calls": stats.calls})
    }

    /// Every record of every model, read as Odoo would send it.
    pub fn dump(&self) -> Value {
        let mut world = self.world.lock().unwrap_or_else(|p| p.into_inner());
        let world = &mut *world;
        let env = Env {
            txn: Txn::new(&mut world.store),
            schema: &self.schema,
            settings: &world.settings,
            uid: 1,
            purchase_manager: true,
            now: String::new(),
            touched_orders: BTreeSet::new(),
            planned_kept: BTreeSet::new(),
            vendor_written: BTreeSet::new(),
            input_tz: None,
            // Every record, archived ones included.
            active_test: false,
        };
        let mut models = Map::new();
        for name in self.schema.model_names() {
            let Some(def) = self.schema.model(name) else {
                continue;
            };
            let fields: Vec<_> = def.fields.iter().collect();
            let ids = env.txn.store().ids(name);
            models.insert(
                name.to_string(),
                Value::Array(env.read(name, &ids, &fields)),
            );
        }
        json!({"version": self.schema.version, "db": self.config.db, "models": models,
               "sequences": env.txn.store().sequences})
    }

    /// Writes the database to the `--state` file, if one is configured.
    pub fn save_state(&self) -> anyhow::Result<()> {
        let Some(path) = &self.config.state_file else {
            return Ok(());
        };
        let text = {
            let world = self.world.lock().unwrap_or_else(|p| p.into_inner());
            serde_json::to_string(&*world)?
        };
        // Write then rename, so a crash mid-write never leaves a truncated snapshot.
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))?;
        Ok(())
    }
}

/// Serves `config` on `listener` until `shutdown` resolves, then saves the `--state` snapshot.
pub async fn serve(
    config: SimConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let sim = Sim::new(config)?;
    server::run(sim.clone(), listener, shutdown).await;
    sim.save_state()
}

/// A simulator running in the background of this process.
pub struct SimHandle {
    /// The bound address.
    pub addr: SocketAddr,
    /// Shared state, for direct inspection in tests.
    pub sim: Arc<Sim>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl SimHandle {
    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
    /// Stops the server, waits for it, and saves the `--state` snapshot.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        self.sim.save_state()
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Starts a simulator on `127.0.0.1:0` in the current tokio runtime.
pub async fn spawn(config: SimConfig) -> anyhow::Result<SimHandle> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    spawn_on(config, listener).await
}

/// Starts a simulator on an already bound listener.
pub async fn spawn_on(config: SimConfig, listener: TcpListener) -> anyhow::Result<SimHandle> {
    let addr = listener.local_addr()?;
    let sim = Sim::new(config)?;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server::run(sim.clone(), listener, async move {
        let _ = rx.await;
    }));
    Ok(SimHandle {
        addr,
        sim,
        stop: Some(tx),
        task: Some(task),
    })
}
