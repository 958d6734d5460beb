//! [`OdooClient`]: one handle to one Odoo database. It asks the server's version, picks the
//! protocol, logs in once (the uid is cached), reuses its HTTP connections, and offers typed
//! calls that mean the same on JSON-RPC and JSON-2.
//!
//! Cloning is cheap and clones share the connection pool and the session, so one client serves
//! every task of the worker.

use super::config::{OdooConfig, ProtocolChoice, SecretKind};
use super::domain::Domain;
use super::error::{excerpt, OdooError, OdooResult};
use super::fence::WriteFence;
use super::http::{http_error, protocol_error, Http, EXCERPT_CHARS};
use super::json2::{self, check_identifier};
use super::jsonrpc;
use super::version::{FieldNames, OdooVersion};
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION};
use serde_json::{json, Map, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::OnceCell;

/// The wire protocol in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// `POST /jsonrpc` with `object.execute_kw`.
    JsonRpc,
    /// `POST /json/2/<model>/<method>`.
    Json2,
}

impl Protocol {
    /// `jsonrpc` or `json2`, as in `ODOO_PROTOCOL`.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::JsonRpc => "jsonrpc",
            Protocol::Json2 => "json2",
        }
    }
}

/// What the client learnt when it connected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// Protocol chosen.
    pub protocol: Protocol,
    /// Server version.
    pub version: OdooVersion,
    /// Id of the logged-in user.
    pub uid: i64,
}

/// One problem reported by `load`.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadMessage {
    /// `error` or `warning`.
    pub kind: String,
    /// Odoo's text.
    pub message: String,
    /// Field concerned, when Odoo says.
    pub field: Option<String>,
    /// The whole message as Odoo sent it (rows, record, more info).
    pub raw: Value,
}

/// Result of `load`: the ids of the imported records, or `None` with the reasons when Odoo
/// refused the whole call (nothing of it was written).
#[derive(Debug, Clone, PartialEq)]
pub struct LoadResult {
    /// Ids of the top-level records in row order; `None` when the import failed.
    pub ids: Option<Vec<i64>>,
    /// Errors and warnings.
    pub messages: Vec<LoadMessage>,
}

impl LoadResult {
    /// The ids; or, when Odoo refused the call, an error listing Odoo's messages: transient
    /// ([`OdooError::Contended`]) when one of them is a concurrency error of Odoo's database,
    /// else permanent ([`OdooError::Rejected`]).
    pub fn into_ids(self, model: &str) -> OdooResult<Vec<i64>> {
        match self.ids {
            Some(ids) => Ok(ids),
            None => {
                let text: Vec<String> = self
                    .messages
                    .iter()
                    .map(|m| match &m.field {
                        Some(f) => format!("{} ({f}): {}", m.kind, m.message),
                        None => format!("{}: {}", m.kind, m.message),
                    })
                    .collect();
                let call = format!("{model}.load");
                let reasons = if text.is_empty() {
                    "no reason given".to_string()
                } else {
                    text.join("; ")
                };
                Err(if self.contended() {
                    OdooError::Contended { call, reasons }
                } else {
                    OdooError::Rejected { call, reasons }
                })
            }
        }
    }

    /// True when an error message is one of PostgreSQL's concurrency errors: `load` writes
    /// each record in a savepoint and reports a failed flush with the error's text
    /// (`str(e)` in Odoo 16, `_sql_error_to_message` in 17+), which for these has no
    /// constraint of its own to name. (The texts are PostgreSQL's English ones; a server with
    /// translated `lc_messages` reports them in its language, and they then count as refusals.)
    fn contended(&self) -> bool {
        self.messages
            .iter()
            .filter(|m| m.kind == "error")
            .any(|m| CONCURRENCY_MESSAGES.iter().any(|c| m.message.contains(c)))
    }
}

/// Starts of PostgreSQL's messages for serialization failures (40001), deadlocks (40P01), locks
/// not available (55P03) and lock timeouts (57014).
const CONCURRENCY_MESSAGES: &[&str] = &[
    "could not serialize access",
    "deadlock detected",
    "could not obtain lock",
    "canceling statement due to lock timeout",
];

/// A client of one Odoo database.
#[derive(Clone, Debug)]
pub struct OdooClient {
    inner: Arc<Inner>,
    /// Set on the clones that serve one batch of jobs (see [`OdooClient::fenced`]).
    fence: Option<Arc<WriteFence>>,
}

#[derive(Debug)]
struct Inner {
    config: OdooConfig,
    http: Http,
    next_id: AtomicU64,
    session: OnceCell<Session>,
    /// What `field_names` found (asked once: every push and pull page needs it).
    field_names: OnceCell<FieldNames>,
    /// Set while Odoo refuses these credentials (see [`OdooClient::credentials_refused`]).
    credentials_refused: std::sync::atomic::AtomicBool,
}

impl OdooClient {
    /// A client for `config`. Nothing is sent before the first call.
    pub fn new(config: OdooConfig) -> OdooResult<Self> {
        if config.protocol == ProtocolChoice::Json2 && config.secret_kind != SecretKind::ApiKey {
            return Err(OdooError::Config(
                "ODOO_PROTOCOL=json2 needs an API key (ODOO_API_KEY), not a password".into(),
            ));
        }
        let http = Http::new(&config)?;
        Ok(OdooClient {
            inner: Arc::new(Inner {
                config,
                http,
                next_id: AtomicU64::new(1),
                session: OnceCell::new(),
                field_names: OnceCell::new(),
                credentials_refused: std::sync::atomic::AtomicBool::new(false),
            }),
            fence: None,
        })
    }

    /// This client, refusing every call that can write once `fence`'s deadline has passed
    /// ([`OdooError::LeaseExpiring`]). Shares the session and connections of `self`.
    pub fn fenced(&self, fence: Arc<WriteFence>) -> OdooClient {
        OdooClient {
            inner: self.inner.clone(),
            fence: Some(fence),
        }
    }

    /// Whether Odoo refused this client's credentials and has not accepted them since (the
    /// worker's loop pauses instead of failing every order).
    pub fn credentials_refused(&self) -> bool {
        self.inner.credentials_refused.load(Ordering::Relaxed)
    }

    /// Records that Odoo refused (true) or accepted again (false) the credentials; returns the
    /// previous state.
    pub fn set_credentials_refused(&self, refused: bool) -> bool {
        self.inner
            .credentials_refused
            .swap(refused, Ordering::Relaxed)
    }

    /// The configuration in use.
    pub fn config(&self) -> &OdooConfig {
        &self.inner.config
    }

    /// Connects once: asks the version, picks the protocol and logs in. Later calls return the
    /// cached session; a failed attempt is retried by the next call.
    pub async fn connect(&self) -> OdooResult<&Session> {
        self.inner
            .session
            .get_or_try_init(|| async {
                let version = self.server_version().await?;
                let protocol = self.choose_protocol(&version)?;
                let uid = match protocol {
                    Protocol::JsonRpc => self.login_jsonrpc().await,
                    Protocol::Json2 => self.login_json2().await,
                }
                .map_err(|e| self.redact(e))?;
                tracing::info!(
                    odoo_version = %version,
                    protocol = protocol.as_str(),
                    uid,
                    database = %self.inner.config.database,
                    "connected to Odoo"
                );
                Ok(Session {
                    protocol,
                    version,
                    uid,
                })
            })
            .await
    }

    /// The server version, asked now without logging in: `common.version` on JSON-RPC, or
    /// `GET /web/version` where `/jsonrpc` is gone (404).
    pub async fn server_version(&self) -> OdooResult<OdooVersion> {
        let result = match self.jsonrpc_call("common", "version", vec![]).await {
            Err(e) if e.http_status() == Some(404) => self.web_version().await,
            other => other.and_then(|v| {
                let v = v.unwrap_or(Value::Null);
                OdooVersion::from_value(&v)
                    .ok_or_else(|| shape_error("common", "version", "a server_version", &v))
            }),
        };
        result.map_err(|e| self.redact(e))
    }

    async fn web_version(&self) -> OdooResult<OdooVersion> {
        let reply = self
            .inner
            .http
            .get(self.inner.http.endpoint("web/version")?)
            .await?;
        if reply.status != 200 {
            return Err(http_error(&reply));
        }
        serde_json::from_slice::<Value>(&reply.body)
            .ok()
            .and_then(|v| OdooVersion::from_value(&v))
            .ok_or_else(|| protocol_error(&reply, "/web/version did not give a version"))
    }

    fn choose_protocol(&self, version: &OdooVersion) -> OdooResult<Protocol> {
        let config = &self.inner.config;
        match config.protocol {
            ProtocolChoice::JsonRpc => Ok(Protocol::JsonRpc),
            ProtocolChoice::Json2 if version.has_json2() => Ok(Protocol::Json2),
            ProtocolChoice::Json2 => Err(OdooError::Unsupported(format!(
                "ODOO_PROTOCOL=json2 but the server runs Odoo {version}; JSON-2 needs Odoo 19 or \
                 later: set ODOO_PROTOCOL=auto or jsonrpc"
            ))),
            ProtocolChoice::Auto
                if version.has_json2() && config.secret_kind == SecretKind::ApiKey =>
            {
                Ok(Protocol::Json2)
            }
            ProtocolChoice::Auto => Ok(Protocol::JsonRpc),
        }
    }

    async fn login_jsonrpc(&self) -> OdooResult<i64> {
        let c = &self.inner.config;
        let args = vec![
            Value::from(c.database.as_str()),
            Value::from(c.login.as_str()),
            Value::from(c.secret.expose()),
            json!({}),
        ];
        match self.jsonrpc_call("common", "authenticate", args).await {
            Ok(Some(Value::Number(n))) => n.as_i64().ok_or_else(|| {
                shape_error("common", "authenticate", "a user id", &Value::Number(n))
            }),
            Ok(Some(Value::Bool(false))) => Err(self.auth_failed()),
            Ok(other) => Err(shape_error(
                "common",
                "authenticate",
                "a user id or false",
                &other.unwrap_or(Value::Null),
            )),
            Err(e) if e.odoo_name() == Some("odoo.exceptions.AccessDenied") => {
                Err(self.auth_failed())
            }
            Err(e) => Err(e),
        }
    }

    /// JSON-2 has no login: the bearer key is checked on every call. One cheap call proves the
    /// key and finds the uid of the configured login.
    async fn login_json2(&self) -> OdooResult<i64> {
        let c = &self.inner.config;
        let mut named = Map::new();
        named.insert(
            "domain".into(),
            Domain::eq("login", c.login.as_str()).into(),
        );
        named.insert("limit".into(), Value::from(1));
        let found = self
            .json2_call("res.users", "search", named)
            .await
            .map_err(|e| self.json2_auth(e))?;
        let ids = ids_from("res.users", "search", found)?;
        ids.first().copied().ok_or_else(|| {
            OdooError::Config(format!(
                "the API key is valid but no user has the login {:?}: set ODOO_USER to the \
                 login of the key's owner",
                c.login
            ))
        })
    }

    fn auth_failed(&self) -> OdooError {
        OdooError::AuthenticationFailed {
            login: self.inner.config.login.clone(),
            database: self.inner.config.database.clone(),
        }
    }

    /// JSON-2's 401 is a refused key: say so in the same words as a failed JSON-RPC login.
    fn json2_auth(&self, e: OdooError) -> OdooError {
        if e.http_status() == Some(401) {
            self.auth_failed()
        } else {
            e
        }
    }

    fn redact(&self, e: OdooError) -> OdooError {
        e.redact(self.inner.config.secret.expose())
    }

    async fn jsonrpc_call(
        &self,
        service: &str,
        method: &str,
        args: Vec<Value>,
    ) -> OdooResult<Option<Value>> {
        let url = self.inner.http.endpoint("jsonrpc")?;
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let body = jsonrpc::request(id, service, method, args);
        let reply = self
            .inner
            .http
            .post_json(url, HeaderMap::new(), &body)
            .await?;
        jsonrpc::parse_reply(&reply)
    }

    async fn json2_call(
        &self,
        model: &str,
        method: &str,
        named: Map<String, Value>,
    ) -> OdooResult<Option<Value>> {
        let c = &self.inner.config;
        let url = self.inner.http.endpoint(&json2::path(model, method)?)?;
        let mut headers = HeaderMap::new();
        let mut auth =
            HeaderValue::from_str(&format!("bearer {}", c.secret.expose())).map_err(|_| {
                OdooError::Config("the API key contains characters invalid in a header".into())
            })?;
        // Keeps the key out of reqwest's and hyper's Debug output.
        auth.set_sensitive(true);
        headers.insert(AUTHORIZATION, auth);
        let db = HeaderValue::from_str(&c.database).map_err(|_| {
            OdooError::Config("ODOO_DB contains characters invalid in a header".into())
        })?;
        headers.insert("X-Odoo-Database", db);
        let reply = self
            .inner
            .http
            .post_json(url, headers, &Value::Object(named))
            .await?;
        json2::parse_reply(&reply)
    }

    /// One model method call. `args`/`kwargs` are the JSON-RPC form, `named` the JSON-2 form
    /// (all arguments by name, record ids as `ids`).
    async fn call(
        &self,
        model: &str,
        method: &str,
        args: Vec<Value>,
        kwargs: Map<String, Value>,
        named: Map<String, Value>,
    ) -> OdooResult<Option<Value>> {
        check_identifier("model", model, true)?;
        check_identifier("method", method, false)?;
        if let Some(fence) = &self.fence {
            fence.check(model, method)?;
        }
        let session = self.connect().await?;
        let started = Instant::now();
        let result = match session.protocol {
            Protocol::JsonRpc => {
                let c = &self.inner.config;
                let args = jsonrpc::execute_kw_args(
                    &c.database,
                    session.uid,
                    c.secret.expose(),
                    model,
                    method,
                    args,
                    kwargs,
                );
                match self.jsonrpc_call("object", "execute_kw", args).await {
                    // The key was revoked or expired since login: same words as a failed login.
                    Err(e) if e.odoo_name() == Some("odoo.exceptions.AccessDenied") => {
                        Err(self.auth_failed())
                    }
                    other => other,
                }
            }
            Protocol::Json2 => self
                .json2_call(model, method, named)
                .await
                .map_err(|e| self.json2_auth(e)),
        };
        let result = result.map_err(|e| self.redact(e.in_call(model, method)));
        crate::metrics::global().rpc(
            model,
            method,
            started.elapsed(),
            result.as_ref().map(|_| ()).map_err(|e| e.is_transient()),
        );
        match &result {
            Ok(_) => tracing::debug!(
                model,
                method,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "odoo call"
            ),
            Err(e) => {
                tracing::debug!(model, method, elapsed_ms = started.elapsed().as_millis() as u64, error = %e, transient = e.is_transient(), "odoo call failed")
            }
        }
        result
    }

    /// The protocol in use (connects first if needed).
    pub async fn protocol(&self) -> OdooResult<Protocol> {
        Ok(self.connect().await?.protocol)
    }

    /// The server version seen at connection time.
    pub async fn version(&self) -> OdooResult<OdooVersion> {
        Ok(self.connect().await?.version.clone())
    }

    /// The logged-in user's id.
    pub async fn uid(&self) -> OdooResult<i64> {
        Ok(self.connect().await?.uid)
    }

    /// Any method, in JSON-RPC's terms (`args`, `kwargs`). On JSON-2, where every argument is
    /// named, `args` must be empty (then `kwargs` is the body) or one list of record ids (sent
    /// as `ids`); other positional arguments cannot be named without the method's signature
    /// and are refused with [`OdooError::Unsupported`].
    pub async fn execute(
        &self,
        model: &str,
        method: &str,
        args: Vec<Value>,
        kwargs: Map<String, Value>,
    ) -> OdooResult<Option<Value>> {
        let mut named = kwargs.clone();
        match args.as_slice() {
            [] => {}
            // Non-empty only: `[]` could as well be an empty domain.
            [Value::Array(ids)] if !ids.is_empty() && ids.iter().all(|v| v.as_i64().is_some()) => {
                named.insert("ids".into(), Value::Array(ids.clone()));
            }
            _ if self.protocol().await? == Protocol::Json2 => {
                return Err(OdooError::Unsupported(format!(
                    "{model}.{method}: JSON-2 takes named arguments only; pass them in kwargs"
                )))
            }
            _ => {}
        }
        self.call(model, method, args, kwargs, named).await
    }

    /// Ids of records matching `domain`.
    pub async fn search(
        &self,
        model: &str,
        domain: &Domain,
        limit: Option<usize>,
        order: Option<&str>,
    ) -> OdooResult<Vec<i64>> {
        let mut kwargs = Map::new();
        if let Some(limit) = limit {
            kwargs.insert("limit".into(), Value::from(limit));
        }
        if let Some(order) = order {
            kwargs.insert("order".into(), Value::from(order));
        }
        let mut named = kwargs.clone();
        named.insert("domain".into(), domain.to_value());
        let r = self
            .call(model, "search", vec![domain.to_value()], kwargs, named)
            .await?;
        ids_from(model, "search", r)
    }

    /// Records matching `domain`, with `fields` (all fields when empty), in `order`, paged by
    /// `offset` and `limit`. Empty values arrive as `false`, many2one as `[id, "name"]`.
    pub async fn search_read(
        &self,
        model: &str,
        domain: &Domain,
        fields: &[&str],
        offset: usize,
        limit: Option<usize>,
        order: Option<&str>,
    ) -> OdooResult<Vec<Map<String, Value>>> {
        let mut kwargs = Map::new();
        kwargs.insert("fields".into(), json!(fields));
        if offset > 0 {
            kwargs.insert("offset".into(), Value::from(offset));
        }
        if let Some(limit) = limit {
            kwargs.insert("limit".into(), Value::from(limit));
        }
        if let Some(order) = order {
            kwargs.insert("order".into(), Value::from(order));
        }
        let mut named = kwargs.clone();
        named.insert("domain".into(), domain.to_value());
        let r = self
            .call(model, "search_read", vec![domain.to_value()], kwargs, named)
            .await?;
        records_from(model, "search_read", r)
    }

    /// Records by id (missing ids are simply absent from the result, as in Odoo).
    pub async fn read(
        &self,
        model: &str,
        ids: &[i64],
        fields: &[&str],
    ) -> OdooResult<Vec<Map<String, Value>>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut kwargs = Map::new();
        kwargs.insert("fields".into(), json!(fields));
        let mut named = kwargs.clone();
        named.insert("ids".into(), json!(ids));
        let r = self
            .call(model, "read", vec![json!(ids)], kwargs, named)
            .await?;
        records_from(model, "read", r)
    }

    /// Creates one record per element of `vals_list` in one call (one transaction) and returns
    /// their ids in the same order.
    pub async fn create(&self, model: &str, vals_list: &[Value]) -> OdooResult<Vec<i64>> {
        if vals_list.is_empty() {
            return Ok(Vec::new());
        }
        let list = Value::Array(vals_list.to_vec());
        let mut named = Map::new();
        named.insert("vals_list".into(), list.clone());
        let r = self
            .call(model, "create", vec![list], Map::new(), named)
            .await?;
        let ids = ids_from(model, "create", r)?;
        if ids.len() != vals_list.len() {
            return Err(OdooError::Protocol {
                url: format!("{model}.create"),
                status: 200,
                detail: format!(
                    "{} ids returned for {} records created",
                    ids.len(),
                    vals_list.len()
                ),
                excerpt: String::new(),
            });
        }
        Ok(ids)
    }

    /// Writes the same `vals` to every record of `ids`.
    pub async fn write(&self, model: &str, ids: &[i64], vals: &Value) -> OdooResult<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut named = Map::new();
        named.insert("ids".into(), json!(ids));
        named.insert("vals".into(), vals.clone());
        self.call(
            model,
            "write",
            vec![json!(ids), vals.clone()],
            Map::new(),
            named,
        )
        .await?;
        Ok(())
    }

    /// Deletes records.
    pub async fn unlink(&self, model: &str, ids: &[i64]) -> OdooResult<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut named = Map::new();
        named.insert("ids".into(), json!(ids));
        self.call(model, "unlink", vec![json!(ids)], Map::new(), named)
            .await?;
        Ok(())
    }

    /// Calls a record method that takes only the records, such as `button_confirm`,
    /// `button_cancel` or `button_draft`. `None` when the method returns nothing.
    pub async fn call_button(
        &self,
        model: &str,
        method: &str,
        ids: &[i64],
    ) -> OdooResult<Option<Value>> {
        let mut named = Map::new();
        named.insert("ids".into(), json!(ids));
        self.call(model, method, vec![json!(ids)], Map::new(), named)
            .await
    }

    /// Field definitions of `model`, keyed by field name, with the given `attributes` (all
    /// when empty).
    pub async fn fields_get(
        &self,
        model: &str,
        attributes: &[&str],
    ) -> OdooResult<Map<String, Value>> {
        let mut kwargs = Map::new();
        if !attributes.is_empty() {
            kwargs.insert("attributes".into(), json!(attributes));
        }
        let named = kwargs.clone();
        match self
            .call(model, "fields_get", vec![], kwargs, named)
            .await?
        {
            Some(Value::Object(m)) => Ok(m),
            other => Err(shape_error(
                model,
                "fields_get",
                "an object of fields",
                &other.unwrap_or(Value::Null),
            )),
        }
    }

    /// Imports `rows` (one value per name of `fields`, external ids in `id` columns) in one
    /// transaction: records with known external ids are updated, the others created.
    /// Datetimes in `rows` are UTC: `load` reads them in the context's time zone, else in the
    /// user's, so the call names UTC.
    pub async fn load(
        &self,
        model: &str,
        fields: &[&str],
        rows: &[Vec<Value>],
    ) -> OdooResult<LoadResult> {
        let fields_v = json!(fields);
        let rows_v = json!(rows);
        let mut kwargs = Map::new();
        kwargs.insert("context".into(), json!({"tz": "UTC"}));
        let mut named = kwargs.clone();
        named.insert("fields".into(), fields_v.clone());
        named.insert("data".into(), rows_v.clone());
        let r = self
            .call(model, "load", vec![fields_v, rows_v], kwargs, named)
            .await?
            .unwrap_or(Value::Null);
        parse_load(model, &r)
    }

    /// The version-dependent purchase field names, from what the server really has
    /// (`fields_get` of `purchase.order` and `purchase.order.line`).
    /// Asked once per client, like the server version.
    pub async fn field_names(&self) -> OdooResult<FieldNames> {
        self.inner
            .field_names
            .get_or_try_init(|| async {
                let version = self.version().await?;
                let order = self.fields_get("purchase.order", &["type"]).await?;
                let line = self.fields_get("purchase.order.line", &["type"]).await?;
                Ok(FieldNames::from_fields(&version, &order, &line))
            })
            .await
            .cloned()
    }
}

fn shape_error(model: &str, method: &str, expected: &str, got: &Value) -> OdooError {
    OdooError::Protocol {
        url: format!("{model}.{method}"),
        status: 200,
        detail: format!("expected {expected}"),
        excerpt: excerpt(got.to_string().as_bytes(), EXCERPT_CHARS),
    }
}

/// A list of ids (or the single id `create` returns for one dict).
fn ids_from(model: &str, method: &str, value: Option<Value>) -> OdooResult<Vec<i64>> {
    let value = value.unwrap_or(Value::Null);
    match &value {
        Value::Number(n) => n
            .as_i64()
            .map(|id| vec![id])
            .ok_or_else(|| shape_error(model, method, "a list of ids", &value)),
        Value::Array(items) => items
            .iter()
            .map(Value::as_i64)
            .collect::<Option<Vec<i64>>>()
            .ok_or_else(|| shape_error(model, method, "a list of ids", &value)),
        _ => Err(shape_error(model, method, "a list of ids", &value)),
    }
}

fn records_from(
    model: &str,
    method: &str,
    value: Option<Value>,
) -> OdooResult<Vec<Map<String, Value>>> {
    match value {
        Some(Value::Array(items)) => items
            .into_iter()
            .map(|item| match item {
                Value::Object(m) => Ok(m),
                other => Err(shape_error(model, method, "a list of records", &other)),
            })
            .collect(),
        other => Err(shape_error(
            model,
            method,
            "a list of records",
            &other.unwrap_or(Value::Null),
        )),
    }
}

fn parse_load(model: &str, value: &Value) -> OdooResult<LoadResult> {
    let bad = || shape_error(model, "load", "{ids, messages}", value);
    let obj = value.as_object().ok_or_else(bad)?;
    let ids = match obj.get("ids") {
        Some(Value::Bool(false)) | Some(Value::Null) => None,
        Some(v @ Value::Array(_)) => Some(ids_from(model, "load", Some(v.clone()))?),
        _ => return Err(bad()),
    };
    let messages = match obj.get("messages") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|m| LoadMessage {
                kind: m
                    .get("type")
                    .and_then(Value::as_str)
                    .unwrap_or("error")
                    .to_string(),
                message: m
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
                field: m.get("field").and_then(Value::as_str).map(str::to_string),
                raw: m.clone(),
            })
            .collect(),
        Some(_) => return Err(bad()),
    };
    Ok(LoadResult { ids, messages })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_results() {
        let ok = parse_load("m", &json!({"ids": [18], "messages": [], "nextrow": 0})).unwrap();
        assert_eq!(ok.ids, Some(vec![18]));
        let failed = parse_load(
            "m",
            &json!({"ids": false, "messages": [{"type": "error", "message": "bad", "field": "partner_id"}]}),
        )
        .unwrap();
        assert_eq!(failed.ids, None);
        let e = failed.into_ids("m").unwrap_err();
        assert!(e.to_string().contains("error (partner_id): bad"), "{e}");
        assert_eq!(e.kind(), "rejected");
        assert!(e.is_permanent());
        assert!(parse_load("m", &json!([1])).is_err());
        assert!(parse_load("m", &json!({"ids": "x"})).is_err());
    }

    /// `load` reports a record's failed flush as a message, concurrency errors included:
    /// those are worth another attempt, unlike a refusal of the data.
    #[test]
    fn load_refused_for_a_concurrent_transaction_is_transient() {
        for text in [
            "could not serialize access due to concurrent update\n",
            "deadlock detected\nDETAIL:  Process 1 waits for ShareLock on transaction 2",
            "could not obtain lock on row in relation \"purchase_order\"",
            "canceling statement due to lock timeout",
        ] {
            let failed = parse_load(
                "purchase.order",
                &json!({"ids": false, "messages": [
                    {"type": "warning", "message": "a warning first", "record": 0},
                    {"type": "error", "message": text, "record": 0, "rows": {"from": 0, "to": 1}}]}),
            )
            .unwrap();
            let e = failed.into_ids("purchase.order").unwrap_err();
            assert_eq!(e.kind(), "contended", "{text}");
            assert!(e.is_transient(), "{text}");
            assert!(e.to_string().contains("purchase.order.load"), "{e}");
        }
        // The same words in a warning, or a constraint's own message, refuse the data.
        let refused = parse_load(
            "purchase.order",
            &json!({"ids": false, "messages": [
                {"type": "warning", "message": "could not serialize access", "record": 0},
                {"type": "error", "message": "External IDs cannot contain spaces", "record": 0}]}),
        )
        .unwrap();
        assert_eq!(
            refused.into_ids("purchase.order").unwrap_err().kind(),
            "rejected"
        );
    }

    #[test]
    fn id_shapes() {
        assert_eq!(ids_from("m", "create", Some(json!(5))).unwrap(), vec![5]);
        assert_eq!(
            ids_from("m", "create", Some(json!([5, 6]))).unwrap(),
            vec![5, 6]
        );
        assert!(ids_from("m", "create", Some(json!(["5"]))).is_err());
        assert!(ids_from("m", "create", None).is_err());
    }
}
