//! A small HTTP client for the simulator's tests and benchmark: keep-alive connections, JSON in
//! and out, helpers for JSON-RPC and JSON-2 calls.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::client::legacy::{connect::HttpConnector, Client as HyperClient};
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};

/// A reply as received.
#[derive(Debug, Clone)]
pub struct HttpReply {
    /// HTTP status.
    pub status: u16,
    /// `Content-Type` header.
    pub content_type: String,
    /// Body text.
    pub text: String,
    /// Body parsed as JSON, when it is JSON.
    pub json: Option<Value>,
}

impl HttpReply {
    /// The JSON body, or `null`.
    pub fn body(&self) -> Value {
        self.json.clone().unwrap_or(Value::Null)
    }
}

/// Client bound to one simulator base URL.
#[derive(Clone)]
pub struct Client {
    base: String,
    http: HyperClient<HttpConnector, Full<Bytes>>,
}

impl Client {
    /// A client for `base` (`http://127.0.0.1:PORT`).
    pub fn new(base: &str) -> Self {
        let http = HyperClient::builder(TokioExecutor::new())
            // A retried request could be applied twice: fault tests must see each failure.
            .retry_canceled_requests(false)
            .pool_max_idle_per_host(64)
            .build_http();
        Client {
            base: base.trim_end_matches('/').to_string(),
            http,
        }
    }

    /// Sends `method path` with optional headers and JSON body.
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&Value>,
    ) -> anyhow::Result<HttpReply> {
        let bytes = body
            .map(serde_json::to_vec)
            .transpose()?
            .unwrap_or_default();
        self.request_raw(method, path, headers, bytes).await
    }

    /// Sends raw body bytes (for malformed-JSON tests).
    pub async fn request_raw(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> anyhow::Result<HttpReply> {
        let mut req = Request::builder()
            .method(method)
            .uri(format!("{}{}", self.base, path))
            .header("content-type", "application/json");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(Full::new(Bytes::from(body)))?;
        let resp = self.http.request(req).await?;
        let status = resp.status().as_u16();
        let content_type = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let bytes = resp.into_body().collect().await?.to_bytes();
        let text = String::from_utf8_lossy(&bytes).to_string();
        let json = serde_json::from_slice(&bytes).ok();
        Ok(HttpReply {
            status,
            content_type,
            text,
            json,
        })
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> anyhow::Result<HttpReply> {
        self.request("GET", path, &[], None).await
    }

    /// `POST path` with a JSON body.
    pub async fn post(&self, path: &str, body: &Value) -> anyhow::Result<HttpReply> {
        self.request("POST", path, &[], Some(body)).await
    }

    /// `DELETE path`.
    pub async fn delete(&self, path: &str) -> anyhow::Result<HttpReply> {
        self.request("DELETE", path, &[], None).await
    }

    /// A JSON-RPC call; returns the whole envelope.
    pub async fn jsonrpc(&self, service: &str, method: &str, args: Value) -> anyhow::Result<Value> {
        let body = json!({"jsonrpc": "2.0", "method": "call", "id": 1,
                          "params": {"service": service, "method": method, "args": args}});
        let reply = self.post("/jsonrpc", &body).await?;
        anyhow::ensure!(
            reply.status == 200,
            "JSON-RPC answered HTTP {}",
            reply.status
        );
        reply
            .json
            .ok_or_else(|| anyhow::anyhow!("JSON-RPC answer is not JSON: {}", reply.text))
    }

    /// `object.execute_kw`; returns the whole envelope.
    #[allow(clippy::too_many_arguments)]
    pub async fn execute_kw(
        &self,
        db: &str,
        uid: i64,
        secret: &str,
        model: &str,
        method: &str,
        args: Value,
        kwargs: Value,
    ) -> anyhow::Result<Value> {
        self.jsonrpc(
            "object",
            "execute_kw",
            json!([db, uid, secret, model, method, args, kwargs]),
        )
        .await
    }

    /// A JSON-2 call with bearer `key` and database `db`.
    pub async fn json2(
        &self,
        key: &str,
        db: &str,
        model: &str,
        method: &str,
        body: &Value,
    ) -> anyhow::Result<HttpReply> {
        let auth = format!("bearer {key}");
        self.request(
            "POST",
            &format!("/json/2/{model}/{method}"),
            &[("authorization", &auth), ("x-odoo-database", db)],
            Some(body),
        )
        .await
    }
}
