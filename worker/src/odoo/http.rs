//! The HTTP layer shared by both protocols: one pooled reqwest client (keep-alive connection
//! reuse, rustls with certificate verification), bounded bodies, bounded total time, and
//! reqwest's errors turned into classified [`OdooError`]s.

use super::config::OdooConfig;
use super::error::{excerpt, OdooError, OdooResult};
use reqwest::header::{HeaderMap, HeaderValue, CONTENT_TYPE, LOCATION, RETRY_AFTER};
use reqwest::Url;
use serde_json::Value;
use std::error::Error as _;
use std::time::Duration;

/// Characters of a body kept in error messages.
pub(crate) const EXCERPT_CHARS: usize = 300;

/// A reply read completely (within the size bound).
#[derive(Debug)]
pub struct RawReply {
    /// Endpoint that answered (no credentials in it).
    pub url: String,
    /// HTTP status.
    pub status: u16,
    /// `Content-Type`, empty when absent.
    pub content_type: String,
    /// `Retry-After`, when present and understood.
    pub retry_after: Option<Duration>,
    /// `Location` of a redirect, for the error message.
    pub location: Option<String>,
    /// The body.
    pub body: Vec<u8>,
}

/// Pooled HTTP client bound to one Odoo base URL.
#[derive(Debug, Clone)]
pub(crate) struct Http {
    client: reqwest::Client,
    base: Url,
    max_body: usize,
    timeout: Duration,
}

impl Http {
    pub(crate) fn new(config: &OdooConfig) -> OdooResult<Self> {
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .connect_timeout(config.connect_timeout)
            .timeout(config.request_timeout)
            .pool_idle_timeout(Duration::from_secs(50))
            .tcp_nodelay(true)
            // A redirect of a POST turns into a GET on 301/302 and loses the call: report it
            // as an error that names the right URL instead of following it.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("odoo-sync-worker/", env!("CARGO_PKG_VERSION")));
        if let Some(path) = &config.ca_file {
            let pem = std::fs::read(path)
                .map_err(|e| OdooError::Config(format!("ODOO_CA_FILE {}: {e}", path.display())))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                OdooError::Config(format!(
                    "ODOO_CA_FILE {} is not a PEM certificate bundle: {e}",
                    path.display()
                ))
            })?;
            if certs.is_empty() {
                return Err(OdooError::Config(format!(
                    "ODOO_CA_FILE {} holds no certificate",
                    path.display()
                )));
            }
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        let client = builder
            .build()
            .map_err(|e| OdooError::Config(format!("cannot build the HTTP client: {e}")))?;
        // Url::join replaces the last path segment unless the base ends with '/', and a base
        // like https://host/odoo must keep its prefix.
        let mut base = config.url.clone();
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        base.set_query(None);
        base.set_fragment(None);
        Ok(Http {
            client,
            base,
            max_body: config.max_body_bytes,
            timeout: config.request_timeout,
        })
    }

    /// `path` (relative, e.g. `jsonrpc`) under the base URL.
    pub(crate) fn endpoint(&self, path: &str) -> OdooResult<Url> {
        self.base
            .join(path.trim_start_matches('/'))
            .map_err(|e| OdooError::Config(format!("cannot build the URL for {path:?}: {e}")))
    }

    /// POSTs `body` as JSON and reads the whole reply.
    pub(crate) async fn post_json(
        &self,
        url: Url,
        headers: HeaderMap,
        body: &Value,
    ) -> OdooResult<RawReply> {
        let bytes = serde_json::to_vec(body)
            .map_err(|e| OdooError::Config(format!("cannot serialize the request: {e}")))?;
        let request = self
            .client
            .post(url.clone())
            .headers(headers)
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .body(bytes);
        self.send(url, request).await
    }

    /// GETs `url` and reads the whole reply.
    pub(crate) async fn get(&self, url: Url) -> OdooResult<RawReply> {
        let request = self.client.get(url.clone());
        self.send(url, request).await
    }

    async fn send(&self, url: Url, request: reqwest::RequestBuilder) -> OdooResult<RawReply> {
        let shown = url.to_string();
        // reqwest's own timeout covers connect, send and body; this outer bound also covers
        // our body loop, so a server dripping bytes can never hold a call longer than that.
        match tokio::time::timeout(self.timeout, self.exchange(&shown, request)).await {
            Ok(result) => result,
            Err(_) => Err(OdooError::Timeout {
                url: shown,
                after: self.timeout,
            }),
        }
    }

    async fn exchange(&self, url: &str, request: reqwest::RequestBuilder) -> OdooResult<RawReply> {
        let mut response = request.send().await.map_err(|e| self.net_error(url, e))?;
        let status = response.status().as_u16();
        let headers = response.headers();
        let header = |name| {
            headers
                .get(name)
                .and_then(|v: &HeaderValue| v.to_str().ok())
                .map(str::to_string)
        };
        let content_type = header(CONTENT_TYPE).unwrap_or_default();
        let retry_after = header(RETRY_AFTER).and_then(|v| parse_retry_after(&v));
        let location = header(LOCATION);
        if response
            .content_length()
            .is_some_and(|n| n > self.max_body as u64)
        {
            return Err(OdooError::ResponseTooLarge {
                url: url.to_string(),
                limit: self.max_body,
            });
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| self.net_error(url, e))? {
            if body.len() + chunk.len() > self.max_body {
                return Err(OdooError::ResponseTooLarge {
                    url: url.to_string(),
                    limit: self.max_body,
                });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(RawReply {
            url: url.to_string(),
            status,
            content_type,
            retry_after,
            location,
            body,
        })
    }

    fn net_error(&self, url: &str, e: reqwest::Error) -> OdooError {
        let (timeout, connect, builder) = (e.is_timeout(), e.is_connect(), e.is_builder());
        let detail = error_chain(&e.without_url());
        if timeout {
            OdooError::Timeout {
                url: url.to_string(),
                after: self.timeout,
            }
        } else if connect {
            OdooError::Connect {
                url: url.to_string(),
                detail,
            }
        } else if builder {
            OdooError::Config(format!("invalid request to {url}: {detail}"))
        } else {
            OdooError::Transport {
                url: url.to_string(),
                detail,
            }
        }
    }
}

/// An error and its causes on one line, because reqwest's top-level message ("error sending
/// request") hides the useful part (connection refused, certificate unknown, reset).
fn error_chain(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}

/// `Retry-After` as seconds or as an HTTP date.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let wait = when.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(wait.to_std().unwrap_or(Duration::ZERO))
}

/// The error for a non-success status whose body is not an Odoo exception.
pub(crate) fn http_error(reply: &RawReply) -> OdooError {
    let mut text = excerpt(&reply.body, EXCERPT_CHARS);
    if let Some(location) = &reply.location {
        text = format!("redirected to {location}; set ODOO_URL to the final address. {text}");
    }
    OdooError::Http {
        url: reply.url.clone(),
        status: reply.status,
        retry_after: reply.retry_after,
        excerpt: text,
    }
}

/// The error for a reply that breaks the protocol.
pub(crate) fn protocol_error(reply: &RawReply, detail: impl Into<String>) -> OdooError {
    OdooError::Protocol {
        url: reply.url.clone(),
        status: reply.status,
        detail: detail.into(),
        excerpt: excerpt(&reply.body, EXCERPT_CHARS),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_forms() {
        assert_eq!(parse_retry_after("7"), Some(Duration::from_secs(7)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
    }
}
