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
    /// SCRAM channel binding (`tls-server-end-point`, RFC 5929): the server's certificate,
    /// hashed as PostgreSQL hashes it. Binding the password exchange to the certificate this
    /// session actually saw defeats a man in the middle even when no CA is configured, and is
    /// what `channel_binding=require` in the connection string asks for.
    fn channel_binding(&self) -> ChannelBinding {
        let (_, session) = self.0.get_ref();
        session
            .peer_certificates()
            .and_then(|chain| chain.first())
            .and_then(|cert| server_end_point(cert.as_ref()))
            .map_or_else(ChannelBinding::none, ChannelBinding::tls_server_end_point)
    }
}

/// The `tls-server-end-point` hash of a DER certificate: the digest of its signature
/// algorithm, SHA-256 for MD5 and SHA-1 (RFC 5929 section 4.1). None for an algorithm whose
/// digest PostgreSQL cannot name either (Ed25519, RSA-PSS, SHA-224): the server then could not
/// compute the binding, and plain SCRAM is the only exchange that works.
fn server_end_point(cert: &[u8]) -> Option<Vec<u8>> {
    let digest = signature_digest(signature_algorithm(cert)?)?;
    Some(ring::digest::digest(digest, cert).as_ref().to_vec())
}

/// The contents of the OID naming a certificate's signature algorithm:
/// `Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm AlgorithmIdentifier, ... }`.
fn signature_algorithm(cert: &[u8]) -> Option<&[u8]> {
    const SEQUENCE: u8 = 0x30;
    const OID: u8 = 0x06;
    let (SEQUENCE, certificate, _) = der_element(cert)? else {
        return None;
    };
    let (SEQUENCE, _, after_tbs) = der_element(certificate)? else {
        return None;
    };
    let (SEQUENCE, algorithm, _) = der_element(after_tbs)? else {
        return None;
    };
    match der_element(algorithm)? {
        (OID, oid, _) => Some(oid),
        _ => None,
    }
}

/// Splits the first DER element off `der`: its tag, its contents and what follows it.
fn der_element(der: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = der.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (length, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let octets = usize::from(first & 0x7f);
        if octets == 0 || octets > 4 || rest.len() < octets {
            return None;
        }
        let (length, rest) = rest.split_at(octets);
        let length = length
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (length, rest)
    };
    (rest.len() >= length).then(|| (tag, &rest[..length], &rest[length..]))
}

/// The digest PostgreSQL uses for the channel binding of a certificate signed with `oid`.
fn signature_digest(oid: &[u8]) -> Option<&'static ring::digest::Algorithm> {
    const RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01]; // 1.2.840.113549.1.1
    const ECDSA_SHA1: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x01]; // 1.2.840.10045.4.1
    const ECDSA_SHA2: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03]; // 1.2.840.10045.4.3
    use ring::digest::{SHA256, SHA384, SHA512};
    if oid == ECDSA_SHA1 {
        return Some(&SHA256);
    }
    let (family, last) = oid.split_at_checked(oid.len().checked_sub(1)?)?;
    match (family, last) {
        // md5WithRSA (4), sha1WithRSA (5), sha256WithRSA (11)
        (RSA, [4 | 5 | 11]) | (ECDSA_SHA2, [2]) => Some(&SHA256),
        (RSA, [12]) | (ECDSA_SHA2, [3]) => Some(&SHA384),
        (RSA, [13]) | (ECDSA_SHA2, [4]) => Some(&SHA512),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn der_lengths_in_short_and_long_form() {
        assert_eq!(
            der_element(&[0x06, 0x01, 0x2a, 0xff]),
            Some((0x06, &[0x2a][..], &[0xff][..]))
        );
        let long = [&[0x04, 0x81, 0x80][..], &[7u8; 0x80]].concat();
        assert_eq!(
            der_element(&long).map(|(_, c, r)| (c.len(), r.len())),
            Some((0x80, 0))
        );
        // Truncated, or a length that claims more than there is.
        assert_eq!(der_element(&[0x30]), None);
        assert_eq!(der_element(&[0x30, 0x05, 0x00]), None);
        assert_eq!(der_element(&[0x30, 0x85, 1, 1, 1, 1, 1]), None);
    }

    #[test]
    fn digests_follow_the_signature_algorithm() {
        let rsa = |n: u8| [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, n];
        let ecdsa = |n: u8| [0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, n];
        let name = |oid: &[u8]| signature_digest(oid).map(|d| d.output_len());
        assert_eq!(name(&rsa(4)), Some(32), "MD5 becomes SHA-256");
        assert_eq!(name(&rsa(5)), Some(32), "SHA-1 becomes SHA-256");
        assert_eq!(name(&rsa(11)), Some(32));
        assert_eq!(name(&rsa(12)), Some(48));
        assert_eq!(name(&rsa(13)), Some(64));
        assert_eq!(name(&rsa(10)), None, "RSA-PSS");
        assert_eq!(name(&rsa(14)), None, "SHA-224");
        assert_eq!(name(&ecdsa(2)), Some(32));
        assert_eq!(name(&ecdsa(3)), Some(48));
        assert_eq!(name(&ecdsa(4)), Some(64));
        assert_eq!(name(&[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x01]), Some(32));
        assert_eq!(name(&[0x2b, 0x65, 0x70]), None, "Ed25519");
        assert_eq!(name(&[]), None);
        assert_eq!(signature_algorithm(b"not DER"), None);
    }
}
