//! HTTPS with HTTP/2 (ALPN `h2`, `http/1.1`): from PEM files, or a certificate
//! made at start for `localhost` and the address.

use std::sync::Arc;

use axum::Router;
use tower_sse::Shutdown;

use crate::server;

pub(crate) type CertChain = Vec<rustls::pki_types::CertificateDer<'static>>;
pub(crate) type PrivateKey = rustls::pki_types::PrivateKeyDer<'static>;

/// The TLS settings from `TLS_CERT` and `TLS_KEY` (PEM files), or a self-signed
/// certificate for `localhost` and `addr` made now.
pub fn tls_config(addr: std::net::SocketAddr) -> std::io::Result<Arc<rustls::ServerConfig>> {
    let invalid = |e: &dyn std::fmt::Display| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string())
    };
    let (certs, key) = match (std::env::var_os("TLS_CERT"), std::env::var_os("TLS_KEY")) {
        (Some(cert), Some(key)) => pem_files(cert.as_ref(), key.as_ref())?,
        (None, None) => self_signed(addr.ip()).map_err(|e| invalid(&e))?,
        _ => return Err(invalid(&"set both TLS_CERT and TLS_KEY, or neither")),
    };
    tls_server_config(certs, key)
}

/// A certificate chain and its private key from PEM files.
pub fn pem_files(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> std::io::Result<(CertChain, PrivateKey)> {
    use rustls::pki_types::pem::PemObject;
    let invalid = |what: &str, path: &std::path::Path, e: &dyn std::fmt::Display| {
        let message = format!("{what} {}: {e}", path.display());
        std::io::Error::new(std::io::ErrorKind::InvalidInput, message)
    };
    let certs = rustls::pki_types::CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<CertChain, _>>())
        .map_err(|e| invalid("TLS_CERT", cert, &e))?;
    if certs.is_empty() {
        return Err(invalid("TLS_CERT", cert, &"no certificate in the file"));
    }
    let key = PrivateKey::from_pem_file(key).map_err(|e| invalid("TLS_KEY", key, &e))?;
    Ok((certs, key))
}

/// A certificate for `localhost`, `127.0.0.1`, `::1` and `ip`, signed by itself.
pub fn self_signed(ip: std::net::IpAddr) -> Result<(CertChain, PrivateKey), rcgen::Error> {
    let mut names = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    if !ip.is_unspecified() && !names.contains(&ip.to_string()) {
        names.push(ip.to_string());
    }
    let rcgen::CertifiedKey { cert, signing_key } = rcgen::generate_simple_self_signed(names)?;
    let key = rustls::pki_types::PrivatePkcs8KeyDer::from(signing_key.serialize_der());
    Ok((vec![cert.der().clone()], key.into()))
}

/// Server settings offering HTTP/2 and HTTP/1.1 by ALPN.
pub fn tls_server_config(
    certs: CertChain,
    key: PrivateKey,
) -> std::io::Result<Arc<rustls::ServerConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|builder| builder.with_no_client_auth().with_single_cert(certs, key))
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Serves `app` over TLS, HTTP/2 or HTTP/1.1 as each client chooses, on the
/// same serving defaults as plain HTTP (write and header timeouts included; a
/// handshake counts against the header timeout), until `shutdown` is
/// triggered and its grace period has passed.
pub async fn serve_tls(
    listener: tokio::net::TcpListener,
    app: Router,
    config: Arc<rustls::ServerConfig>,
    shutdown: &Shutdown,
) -> std::io::Result<()> {
    let tls = tokio_rustls::TlsAcceptor::from(config);
    server(shutdown)
        .serve_with(listener, app, move |tcp| tls.accept(tcp))
        .await
}
