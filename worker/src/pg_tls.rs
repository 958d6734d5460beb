//! TLS for the worker's PostgreSQL connections.
//!
//! Managed PostgreSQL (Supabase, RDS, Cloud SQL, ...) hands out connection strings with
//! `sslmode=require`, which a plain connection cannot satisfy, and reaches the database over
//! networks where the traffic should be encrypted anyway. The worker speaks TLS with rustls, the
//! stack of its Odoo client, and gives the `sslmode` values tokio-postgres knows libpq's meaning:
//! `disable` never encrypts, `prefer` (the default) encrypts when the server offers TLS,
//! `require` refuses a server without it. Also like libpq, the server's certificate is verified
//! only when a root certificate is configured — `database.ca_file` / `DATABASE_CA_FILE`, a PEM
//! bundle (Supabase offers its CA for download) — and then both the chain and the host name
//! must match (libpq's `verify-full`); without one the connection is encrypted but the server
//! is not authenticated. (tokio-postgres does not parse `verify-ca`/`verify-full` in
//! connection strings; the CA file is how to ask for verification.)

use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::config::{Host, SslMode};
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect};
use tokio_postgres::{Client, Config, Connection, Socket};

/// The environment variable naming the PEM file of the CA(s) that sign PostgreSQL's certificate.
pub const CA_FILE_ENV: &str = "DATABASE_CA_FILE";

/// Why the TLS settings cannot be used.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PgTlsError {
    /// The CA file cannot be read.
    #[error("database.ca_file / {CA_FILE_ENV} {path}: {reason}")]
    CaFile {
        /// The configured path.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The TLS library offers no protocol version PostgreSQL could use (a build problem).
    #[error("TLS to PostgreSQL is unavailable in this build of the worker: {0}")]
    Provider(String),
}

static CONFIGURED: OnceLock<Result<PgTls, PgTlsError>> = OnceLock::new();

/// Sets the process's TLS settings from the worker's configuration, before any connection.
/// Returns the error of an unusable CA file; a second call changes nothing.
pub fn configure(ca_file: Option<&Path>) -> Result<(), PgTlsError> {
    CONFIGURED
        .get_or_init(|| PgTls::new(ca_file))
        .clone()
        .map(|_| ())
}

/// Opens a PostgreSQL connection with the process's TLS settings (see the module
/// documentation), giving `sslmode` libpq's meaning where tokio-postgres differs:
/// - a Unix socket never uses TLS, whatever `sslmode` says;
/// - with a CA configured, `prefer` (the default) becomes `require`: a server, or someone in
///   between, answering "no TLS" is refused rather than talked to in plain text (an explicit
///   `sslmode=disable` is respected);
/// - with only `hostaddr` (no host name), the address itself is the name TLS sends and a
///   configured CA must vouch for (tokio-postgres would otherwise refuse TLS without a name).
pub async fn connect(
    url: &str,
) -> Result<(Client, Connection<Socket, PgTlsStream<Socket>>), ConnectError> {
    let tls = PgTls::configured()?;
    let mut config: Config = url.parse().map_err(ConnectError::Postgres)?;
    if config.get_hosts().is_empty() {
        for addr in config.get_hostaddrs().to_vec() {
            config.host(addr.to_string());
        }
    }
    let over_tcp = config.get_hosts().iter().any(|h| matches!(h, Host::Tcp(_)));
    if !over_tcp {
        config.ssl_mode(SslMode::Disable);
    } else if tls.verifies_server() && config.get_ssl_mode() == SslMode::Prefer {
        config.ssl_mode(SslMode::Require);
    }
    config.connect(tls).await.map_err(ConnectError::Postgres)
}

/// Why a connection could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The TLS settings are unusable (a configuration error).
    #[error(transparent)]
    Tls(#[from] PgTlsError),
    /// PostgreSQL (or the network) refused, or the connection string is invalid.
    #[error("{}", crate::queue::describe_pg(.0))]
    Postgres(tokio_postgres::Error),
}

/// The TLS side of a PostgreSQL connection.
#[derive(Clone)]
pub struct PgTls {
    config: Arc<ClientConfig>,
    verified: bool,
}

impl PgTls {
    /// The process's TLS settings: those given to [`configure`] (the worker's settings,
    /// `database.ca_file` from the file or `DATABASE_CA_FILE`), else from `DATABASE_CA_FILE`.
    pub fn configured() -> Result<PgTls, PgTlsError> {
        CONFIGURED
            .get_or_init(|| {
                let ca_file = std::env::var_os(CA_FILE_ENV).filter(|v| !v.is_empty());
                PgTls::new(ca_file.as_deref().map(Path::new))
            })
            .clone()
    }

    /// TLS settings that verify the server against the CAs of `ca_file`, or that only encrypt
    /// when there is none.
    pub fn new(ca_file: Option<&Path>) -> Result<PgTls, PgTlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| PgTlsError::Provider(e.to_string()))?;
        let (config, verified) = match ca_file {
            Some(path) => (
                builder
                    .with_root_certificates(read_roots(path)?)
                    .with_no_client_auth(),
                true,
            ),
            None => (
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(EncryptOnly(provider)))
                    .with_no_client_auth(),
                false,
            ),
        };
        let mut config = config;
        // PostgreSQL 17 accepts TLS negotiated directly only with this ALPN name; earlier
        // servers ignore it.
        config.alpn_protocols = vec![b"postgresql".to_vec()];
        Ok(PgTls {
            config: Arc::new(config),
            verified,
        })
    }

    /// True when the server's certificate is verified (a CA file is configured).
    pub fn verifies_server(&self) -> bool {
        self.verified
    }
}

fn read_roots(path: &Path) -> Result<RootCertStore, PgTlsError> {
    let fail = |reason: String| PgTlsError::CaFile {
        path: path.to_path_buf(),
        reason,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| fail(format!("cannot read it as PEM: {e}")))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| fail(format!("not a PEM certificate bundle: {e}")))?;
    let mut roots = RootCertStore::empty();
    for cert in certs {
        roots
            .add(cert)
            .map_err(|e| fail(format!("holds an unusable certificate: {e}")))?;
    }
    if roots.is_empty() {
        return Err(fail("holds no certificate".into()));
    }
    Ok(roots)
}

/// libpq's `sslmode=require` without a root certificate: the session is encrypted and the
/// handshake signatures are checked, but the certificate chain is not.
#[derive(Debug)]
struct EncryptOnly(Arc<CryptoProvider>);

impl ServerCertVerifier for EncryptOnly {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

impl<S> MakeTlsConnect<S> for PgTls
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = PgTlsStream<S>;
    type TlsConnect = PgTlsConnect;
    type Error = io::Error;

    fn make_tls_connect(&mut self, host: &str) -> io::Result<PgTlsConnect> {
        // tokio-postgres passes "" for a Unix socket, where TLS is never used.
        let name = if host.is_empty() { "localhost" } else { host };
        let name = ServerName::try_from(name.to_string()).map_err(|e| {
            io::Error::new(io::ErrorKind::InvalidInput, format!("host {host}: {e}"))
        })?;
        Ok(PgTlsConnect {
            config: self.config.clone(),
            name,
        })
    }
}

/// One connection's TLS handshake.
pub struct PgTlsConnect {
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
}

impl<S> TlsConnect<S> for PgTlsConnect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = PgTlsStream<S>;
    type Error = io::Error;
    type Future = Pin<Box<dyn std::future::Future<Output = io::Result<PgTlsStream<S>>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        Box::pin(async move {
            let tls = tokio_rustls::TlsConnector::from(self.config)
                .connect(self.name, stream)
                .await?;
            Ok(PgTlsStream(tls))
        })
    }
}

/// An encrypted PostgreSQL connection.
pub struct PgTlsStream<S>(tokio_rustls::client::TlsStream<S>);

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for PgTlsStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for PgTlsStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> tokio_postgres::tls::TlsStream for PgTlsStream<S> {
    fn channel_binding(&self) -> ChannelBinding {
        // SCRAM channel binding would need the server certificate's hash algorithm; without it
        // the server falls back to plain SCRAM-SHA-256, as with libpq's channel_binding=prefer.
        ChannelBinding::none()
    }
}
