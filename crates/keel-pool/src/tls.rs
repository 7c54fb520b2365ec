//! TLS for PostgreSQL and MySQL/MariaDB: [`SslMode`], [`TlsConfig`] and [`RootCerts`], read
//! from the URL (`sslmode`, `sslrootcert`, `sslcert`, `sslkey` on PostgreSQL; `ssl-mode`,
//! `ssl-ca`, `ssl-cert`, `ssl-key` on MySQL) or set on [`Config`](crate::Config).
//!
//! The modes are libpq's, and MySQL's under their MySQL names:
//!
//! | mode | PostgreSQL | MySQL | encrypted | certificate checked |
//! |---|---|---|---|---|
//! | [`Disable`](SslMode::Disable) | `disable` | `DISABLED` | never | — |
//! | [`Prefer`](SslMode::Prefer) (default) | `prefer` | `PREFERRED` | when the server offers TLS | no |
//! | [`Require`](SslMode::Require) | `require` | `REQUIRED` | always, or the connection fails | only against a root certificate given explicitly (as libpq does) |
//! | [`VerifyCa`](SslMode::VerifyCa) | `verify-ca` | `VERIFY_CA` | always | signed by a trusted root |
//! | [`VerifyFull`](SslMode::VerifyFull) | `verify-full` | `VERIFY_IDENTITY` | always | trusted root and the host name |
//!
//! Trusted roots are the file given as `sslrootcert`/`ssl-ca` (PEM, one or more certificates),
//! or the system's certificate store (`sslrootcert=system`, and the default when no file is
//! given). `require` and stronger never fall back to plain text. Unix-socket connections are
//! local and do not use TLS, as in libpq and the MySQL client.
//!
//! TLS is rustls on the `ring` provider. Every PostgreSQL connection keel opens (the pool's, the
//! shared read sessions, the cancel side connection, the COPY client) is made through
//! [`tokio_postgres_connector`]; MySQL connections get the same settings as mysql_async
//! [`SslOpts`](mysql_async::SslOpts).

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::error::Error;
use crate::url::Backend;

/// Whether and how a connection uses TLS. Parsed from libpq's names (`disable`, `prefer`,
/// `require`, `verify-ca`, `verify-full`) and MySQL's (`DISABLED`, `PREFERRED`, `REQUIRED`,
/// `VERIFY_CA`, `VERIFY_IDENTITY`), in any case. See the [module docs](self) for what each checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum SslMode {
    /// Plain text only.
    Disable,
    /// TLS when the server offers it, plain text otherwise; the certificate is not checked.
    /// The default, as in libpq and the MySQL client.
    #[default]
    Prefer,
    /// TLS or no connection; the certificate is checked only against a root certificate file
    /// given explicitly.
    Require,
    /// TLS, with a certificate signed by a trusted root (any host name).
    VerifyCa,
    /// TLS, with a certificate signed by a trusted root and valid for the host connected to.
    VerifyFull,
}

const MODES: &str = "disable, prefer, require, verify-ca, verify-full (MySQL: DISABLED, PREFERRED, REQUIRED, VERIFY_CA, VERIFY_IDENTITY)";

impl SslMode {
    /// The libpq name: `disable`, `prefer`, `require`, `verify-ca`, `verify-full`.
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }

    /// The MySQL name: `DISABLED`, `PREFERRED`, `REQUIRED`, `VERIFY_CA`, `VERIFY_IDENTITY`.
    pub fn mysql_name(self) -> &'static str {
        match self {
            SslMode::Disable => "DISABLED",
            SslMode::Prefer => "PREFERRED",
            SslMode::Require => "REQUIRED",
            SslMode::VerifyCa => "VERIFY_CA",
            SslMode::VerifyFull => "VERIFY_IDENTITY",
        }
    }

    /// True when the connection fails rather than run in plain text (`require` and stronger).
    pub fn requires_tls(self) -> bool {
        matches!(self, SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull)
    }

    /// How this mode is written in `backend`'s URLs, e.g. `sslmode=require` or `ssl-mode=REQUIRED`.
    pub(crate) fn url_form(self, backend: Backend) -> String {
        match backend {
            Backend::Mysql => format!("ssl-mode={}", self.mysql_name()),
            _ => format!("sslmode={}", self.as_str()),
        }
    }
}

impl fmt::Display for SslMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl FromStr for SslMode {
    type Err = Error;

    /// Parses a libpq or MySQL mode name (case and `-`/`_` do not matter). Fails with a
    /// configuration error listing the valid names.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().replace('_', "-").as_str() {
            "disable" | "disabled" => Ok(SslMode::Disable),
            "prefer" | "preferred" => Ok(SslMode::Prefer),
            "require" | "required" => Ok(SslMode::Require),
            "verify-ca" => Ok(SslMode::VerifyCa),
            "verify-full" | "verify-identity" => Ok(SslMode::VerifyFull),
            _ => {
                let shown: String = s.chars().take(40).collect();
                Err(Error::config(format!("unknown TLS mode {shown:?}; expected one of: {MODES}")))
            }
        }
    }
}

/// The certificates a server's certificate must chain to (`verify-ca`, `verify-full`, and
/// `require` when given explicitly).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RootCerts {
    /// The system's certificate store (`sslrootcert=system`; the default).
    System,
    /// A PEM file with one or more CA certificates.
    File(PathBuf),
}

impl RootCerts {
    /// `system` is the system store; anything else is a file path.
    pub fn parse(value: &str) -> Self {
        if value == "system" { RootCerts::System } else { RootCerts::File(PathBuf::from(value)) }
    }
}

/// A client certificate chain and its private key, both PEM files, for servers that ask for
/// one. `Debug` shows the paths only, never the key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct ClientCert {
    /// The certificate chain (PEM), the client's certificate first.
    pub cert: PathBuf,
    /// The private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// TLS settings for one database: the [`SslMode`], the trusted roots and an optional client
/// certificate. Build it with [`TlsConfig::new`] and the `with_*` methods, or let the URL's
/// parameters fill it in.
///
/// ```
/// use keel_pool::tls::{SslMode, TlsConfig};
/// let tls = TlsConfig::new(SslMode::VerifyFull).with_root_cert("/etc/ssl/db-ca.pem");
/// assert_eq!(tls.mode(), SslMode::VerifyFull);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub struct TlsConfig {
    mode: SslMode,
    root_cert: Option<RootCerts>,
    client_cert: Option<ClientCert>,
}

impl TlsConfig {
    /// Settings with this mode, the system roots and no client certificate.
    pub fn new(mode: SslMode) -> Self {
        TlsConfig { mode, root_cert: None, client_cert: None }
    }

    /// The mode.
    pub fn mode(&self) -> SslMode {
        self.mode
    }

    /// The roots given explicitly, if any (`None`: the system store).
    pub fn root_cert(&self) -> Option<&RootCerts> {
        self.root_cert.as_ref()
    }

    /// The client certificate, if any.
    pub fn client_cert(&self) -> Option<&ClientCert> {
        self.client_cert.as_ref()
    }

    /// The same settings with another mode.
    pub fn with_mode(mut self, mode: SslMode) -> Self {
        self.mode = mode;
        self
    }

    /// Trusts the CA certificates in this PEM file (`system`: the system store).
    pub fn with_root_cert(mut self, path: impl AsRef<Path>) -> Self {
        self.root_cert = Some(RootCerts::parse(&path.as_ref().to_string_lossy()));
        self
    }

    /// Trusts these roots (`None`: the system store, not given explicitly).
    pub fn with_root_certs(mut self, roots: Option<RootCerts>) -> Self {
        self.root_cert = roots;
        self
    }

    /// Presents this client certificate chain and key (PEM files) when the server asks.
    pub fn with_client_cert(mut self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        self.client_cert = Some(ClientCert { cert: cert.into(), key: key.into() });
        self
    }

    /// What the server's certificate is checked against.
    pub(crate) fn verification(&self) -> Verification {
        match self.mode {
            SslMode::Disable | SslMode::Prefer => Verification::None,
            SslMode::Require if self.root_cert.is_some() => Verification::Ca,
            SslMode::Require => Verification::None,
            SslMode::VerifyCa => Verification::Ca,
            SslMode::VerifyFull => Verification::Full,
        }
    }
}

/// How much of the server's certificate is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verification {
    /// Nothing: encryption against passive listeners only.
    None,
    /// The chain to a trusted root, not the host name.
    Ca,
    /// The chain and the host name.
    Full,
}

/// What keel built from a [`TlsConfig`], kept for the life of a [`Config`](crate::Config) (its
/// clones share it) so certificate files and the system store are read once, not per connection.
#[derive(Default)]
pub(crate) struct TlsCache {
    pg: OnceLock<Result<tokio_postgres_rustls::MakeRustlsConnect, String>>,
    /// MySQL `PREFERRED`: the server said it has no TLS, so later connections skip asking.
    pub(crate) mysql_plain: AtomicBool,
    /// MySQL `VERIFY_CA`: a name the server's certificate lists, to check its chain against.
    mysql_host_name: Mutex<Option<String>>,
}

impl TlsCache {
    pub(crate) fn mysql_is_plain(&self) -> bool {
        self.mysql_plain.load(Ordering::Relaxed)
    }

    pub(crate) fn mysql_host_name(&self) -> Option<String> {
        self.mysql_host_name.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub(crate) fn set_mysql_host_name(&self, name: String) {
        *self.mysql_host_name.lock().unwrap_or_else(|p| p.into_inner()) = Some(name);
    }
}

impl fmt::Debug for TlsCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TlsCache")
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read_certs(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("cannot read {what} {}: {e}", path.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("cannot read {what} {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{what} {} holds no PEM certificate", path.display()));
    }
    Ok(certs)
}

/// The trusted roots for `tls`: its file, or the system store.
pub(crate) fn root_store(tls: &TlsConfig) -> Result<RootCertStore, String> {
    let mut store = RootCertStore::empty();
    match &tls.root_cert {
        Some(RootCerts::File(path)) => {
            for cert in read_certs(path, "sslrootcert")? {
                store.add(cert).map_err(|e| format!("sslrootcert {}: {e}", path.display()))?;
            }
        }
        Some(RootCerts::System) | None => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = store.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(
                    "no system root certificates found; set sslrootcert (ssl-ca on MySQL) to a CA file"
                        .to_owned(),
                );
            }
        }
    }
    Ok(store)
}

/// The system roots as DER, for mysql_async (which takes roots as buffers).
pub(crate) fn system_roots_der() -> Vec<Vec<u8>> {
    rustls_native_certs::load_native_certs().certs.into_iter().map(|c| c.as_ref().to_vec()).collect()
}

/// mysql_async's TLS options for `tls`. `host_name` replaces the name checked against the
/// certificate (see `VERIFY_CA` in `connect`).
pub(crate) fn mysql_ssl_opts(
    tls: &TlsConfig,
    host_name: Option<String>,
) -> Result<mysql_async::SslOpts, String> {
    let mut opts = mysql_async::SslOpts::default();
    let verification = tls.verification();
    if verification == Verification::None {
        opts = opts.with_danger_accept_invalid_certs(true);
    } else {
        let roots = match &tls.root_cert {
            Some(RootCerts::File(path)) => vec![path.clone().into()],
            Some(RootCerts::System) | None => system_roots_der().into_iter().map(Into::into).collect(),
        };
        opts = opts.with_root_certs(roots).with_disable_built_in_roots(true);
        if let Some(name) = host_name.filter(|_| verification == Verification::Ca) {
            opts = opts.with_danger_tls_hostname_override(Some(name));
        }
    }
    if let Some(client) = &tls.client_cert {
        // mysql_async reads only RSA keys in PKCS#1 form; say so rather than "no key found".
        match PrivateKeyDer::from_pem_file(&client.key) {
            Ok(PrivateKeyDer::Pkcs1(_)) => {}
            Ok(_) => {
                return Err(format!(
                    "ssl-key {}: MySQL client keys must be RSA in PKCS#1 PEM (BEGIN RSA PRIVATE KEY), \
                     a limit of the MySQL driver; convert it with `openssl rsa -in KEY -traditional`",
                    client.key.display()
                ));
            }
            Err(e) => return Err(format!("cannot read ssl-key {}: {e}", client.key.display())),
        }
        opts = opts.with_client_identity(Some(mysql_async::ClientIdentity::new(
            client.cert.clone().into(),
            client.key.clone().into(),
        )));
    }
    Ok(opts)
}

/// The rustls client configuration for `tls`. Fails with a message naming the file that
/// could not be read.
pub(crate) fn client_config(tls: &TlsConfig) -> Result<rustls::ClientConfig, String> {
    let provider = provider();
    let builder = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup failed: {e}"))?;
    let verifier: Arc<dyn ServerCertVerifier> = match (tls.mode, tls.verification()) {
        // Never used to verify anything: tokio-postgres does not negotiate TLS under `disable`.
        (SslMode::Disable, _) | (_, Verification::None) => Arc::new(NoVerification(provider)),
        (_, verification) => {
            let webpki = rustls::client::WebPkiServerVerifier::builder_with_provider(
                Arc::new(root_store(tls)?),
                provider,
            )
            .build()
            .map_err(|e| format!("TLS setup failed: {e}"))?;
            Arc::new(Checked { webpki, names: verification == Verification::Full })
        }
    };
    let builder = builder.dangerous().with_custom_certificate_verifier(verifier);
    match (&tls.client_cert, tls.mode) {
        (Some(client), mode) if mode != SslMode::Disable => {
            let chain = read_certs(&client.cert, "sslcert")?;
            let key = PrivateKeyDer::from_pem_file(&client.key)
                .map_err(|e| format!("cannot read sslkey {}: {e}", client.key.display()))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("sslcert/sslkey {} are not usable: {e}", client.cert.display()))
        }
        _ => Ok(builder.with_no_client_auth()),
    }
}

/// The tokio-postgres TLS connector for `tls`, built once per cache.
pub(crate) fn pg_connector(
    tls: &TlsConfig,
    cache: &TlsCache,
) -> Result<tokio_postgres_rustls::MakeRustlsConnect, Error> {
    cache
        .pg
        .get_or_init(|| client_config(tls).map(tokio_postgres_rustls::MakeRustlsConnect::new))
        .clone()
        .map_err(Error::config)
}

/// The tokio-postgres configuration and TLS connector keel uses for `config`'s server (same
/// URL handling, TLS mode, keepalive, `application_name` and `statement_timeout` as the pool),
/// for code that needs a raw tokio-postgres or diesel-async connection with keel's TLS
/// settings: the benchmark baselines. Fails with a configuration error for a bad URL or an
/// unreadable certificate file.
#[doc(hidden)]
pub fn tokio_postgres_connector(
    config: &crate::Config,
) -> Result<(tokio_postgres::Config, tokio_postgres_rustls::MakeRustlsConnect), Error> {
    crate::connect::pg_config(config)
}

/// A bare MySQL/MariaDB connection opened the way keel opens its own (URL handling, TLS mode,
/// keepalive; no statement timeout), for the benchmark baselines. Fails like
/// [`Pool::connect`](crate::Pool::connect) does.
#[doc(hidden)]
pub async fn mysql_connection(config: &crate::Config) -> Result<crate::MysqlConnection, Error> {
    crate::connect::mysql_bare(config).await
}

/// Accepts any certificate (modes that only encrypt) but still checks the handshake signatures,
/// so the session is encrypted to whoever holds the certificate's key.
#[derive(Debug)]
struct NoVerification(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerification {
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
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// WebPKI verification, with the host-name check optional (`verify-ca`).
#[derive(Debug)]
struct Checked {
    webpki: Arc<rustls::client::WebPkiServerVerifier>,
    names: bool,
}

impl ServerCertVerifier for Checked {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.webpki.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            // webpki checks the chain before the name, so a name error means the chain is good.
            Err(rustls::Error::InvalidCertificate(e)) if !self.names && is_name_mismatch(&e) => {
                Ok(ServerCertVerified::assertion())
            }
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

fn is_name_mismatch(e: &CertificateError) -> bool {
    matches!(e, CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. })
}

/// A TLS failure found in a driver error, told plainly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TlsFailure {
    pub(crate) reason: String,
    pub(crate) hint: &'static str,
    /// For a name mismatch: a name the certificate is valid for.
    pub(crate) presented_name: Option<String>,
    /// The server answered that it has no TLS.
    pub(crate) server_has_no_tls: bool,
}

/// The server answered that it has no TLS, while `mode` requires it.
pub(crate) fn no_tls_on_server(mode: SslMode, backend: Backend) -> TlsFailure {
    TlsFailure {
        reason: format!("the server does not support TLS ({})", mode.url_form(backend)),
        hint: "enable TLS on the server, or lower the TLS mode (prefer, or disable) if plain text is acceptable",
        presented_name: None,
        server_has_no_tls: true,
    }
}

/// Looks through `err` and its sources for a rustls error and says what it means; `host` is
/// the name the client connected to.
pub(crate) fn failure_in(err: &(dyn std::error::Error + 'static), host: &str) -> Option<TlsFailure> {
    let mut current = Some(err);
    while let Some(e) = current {
        if let Some(r) = e.downcast_ref::<rustls::Error>() {
            return Some(describe(r, host));
        }
        // io::Error's `source` skips the error it wraps, which is where tokio-rustls puts it.
        if let Some(inner) = e.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref())
            && let Some(r) = inner.downcast_ref::<rustls::Error>()
        {
            return Some(describe(r, host));
        }
        current = e.source();
    }
    None
}

fn describe(e: &rustls::Error, host: &str) -> TlsFailure {
    let (reason, hint) = reason_and_hint(e, host);
    let presented_name = match e {
        rustls::Error::InvalidCertificate(CertificateError::NotValidForNameContext { presented, .. }) => {
            presented.iter().find_map(|p| usable_name(p))
        }
        _ => None,
    };
    TlsFailure { reason, hint, presented_name, server_has_no_tls: false }
}

/// A name to connect as from webpki's rendering of a certificate's subjectAltName entry
/// (`DnsName("db.example")`, `IpAddress(10.0.0.1)`); a wildcard gets a label filled in.
fn usable_name(presented: &str) -> Option<String> {
    if let Some(dns) = presented.strip_prefix("DnsName(\"").and_then(|r| r.strip_suffix("\")")) {
        let name = match dns.strip_prefix("*.") {
            Some(rest) => format!("keel.{rest}"),
            None => dns.to_owned(),
        };
        return ServerName::try_from(name.as_str()).is_ok().then_some(name);
    }
    let ip = presented.strip_prefix("IpAddress(")?.strip_suffix(')')?;
    ip.parse::<std::net::IpAddr>().is_ok().then(|| ip.to_owned())
}

fn reason_and_hint(e: &rustls::Error, host: &str) -> (String, &'static str) {
    match e {
        rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer) => (
            "certificate signed by an unknown issuer".to_owned(),
            "set sslrootcert (ssl-ca on MySQL) to the CA certificate that signed the server's certificate",
        ),
        rustls::Error::InvalidCertificate(c) if is_name_mismatch(c) => (
            format!("certificate is not valid for host {host}"),
            "connect by a host name the server's certificate lists, or use verify-ca to check only the issuer",
        ),
        rustls::Error::InvalidCertificate(
            CertificateError::Expired | CertificateError::ExpiredContext { .. },
        ) => ("the server's certificate has expired".to_owned(), "renew the server's certificate"),
        rustls::Error::InvalidCertificate(
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. },
        ) => (
            "the server's certificate is not valid yet".to_owned(),
            "check the clocks of the client and the server",
        ),
        rustls::Error::AlertReceived(alert) => (
            format!("the server refused the TLS handshake ({alert:?})"),
            "check sslcert/sslkey (ssl-cert/ssl-key on MySQL) if the server asks for a client certificate",
        ),
        other => (
            format!("TLS handshake failed: {other}"),
            "check the server's TLS setup and the TLS settings in the URL",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse_in_both_spellings() {
        for (s, m) in [
            ("disable", SslMode::Disable),
            ("DISABLED", SslMode::Disable),
            ("prefer", SslMode::Prefer),
            ("PREFERRED", SslMode::Prefer),
            ("require", SslMode::Require),
            ("Required", SslMode::Require),
            ("verify-ca", SslMode::VerifyCa),
            ("VERIFY_CA", SslMode::VerifyCa),
            ("verify-full", SslMode::VerifyFull),
            ("VERIFY_IDENTITY", SslMode::VerifyFull),
        ] {
            assert_eq!(s.parse::<SslMode>().unwrap(), m, "{s}");
        }
        let err = "allow".parse::<SslMode>().unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Config);
        let text = err.to_string();
        assert!(
            text.contains("\"allow\"") && text.contains("verify-full") && text.contains("VERIFY_IDENTITY"),
            "{text}"
        );
    }

    #[test]
    fn require_checks_the_ca_only_when_a_root_is_given() {
        assert_eq!(TlsConfig::new(SslMode::Require).verification(), Verification::None);
        assert_eq!(
            TlsConfig::new(SslMode::Require).with_root_cert("/ca.pem").verification(),
            Verification::Ca
        );
        assert_eq!(
            TlsConfig::new(SslMode::Prefer).with_root_cert("/ca.pem").verification(),
            Verification::None
        );
        assert_eq!(TlsConfig::new(SslMode::VerifyFull).verification(), Verification::Full);
    }

    #[test]
    fn a_missing_root_file_is_named() {
        let tls = TlsConfig::new(SslMode::VerifyFull).with_root_cert("/nonexistent/ca.pem");
        let err = client_config(&tls).unwrap_err();
        assert!(err.contains("sslrootcert /nonexistent/ca.pem"), "{err}");
    }

    #[test]
    fn failures_are_told_plainly() {
        let unknown = rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer);
        let wrapped = std::io::Error::new(std::io::ErrorKind::InvalidData, unknown);
        assert_eq!(failure_in(&wrapped, "db").unwrap().reason, "certificate signed by an unknown issuer");
        let name = rustls::Error::InvalidCertificate(CertificateError::NotValidForName);
        assert_eq!(
            failure_in(&name, "127.0.0.1").unwrap().reason,
            "certificate is not valid for host 127.0.0.1"
        );
        assert_eq!(
            no_tls_on_server(SslMode::Require, Backend::Postgres).reason,
            "the server does not support TLS (sslmode=require)"
        );
    }
}
