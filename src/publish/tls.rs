//! TLS to the broker with rustls: the CA that signed the broker's certificate, and optionally a
//! client certificate and key for mutual TLS, all PEM files. The files are read here, at start,
//! rather than by rumqttc at each connect, so a wrong path or a key that does not match its
//! certificate fails `start` with an error naming the file instead of a reconnect loop.

use std::path::Path;
use std::sync::Arc;

use rumqttc::tokio_rustls::rustls::crypto::{self, CryptoProvider};
use rumqttc::tokio_rustls::rustls::pki_types::pem::PemObject;
use rumqttc::tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rumqttc::tokio_rustls::rustls::{ClientConfig, RootCertStore};

use crate::config::TlsConfig;
use crate::publish::error::PublishError;

/// The rustls client configuration for `[mqtt.tls]`.
pub fn client_config(tls: &TlsConfig) -> Result<ClientConfig, PublishError> {
    let roots = root_store(&tls.ca)?;
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| PublishError::Tls(e.to_string()))?
        .with_root_certificates(roots);
    match (&tls.cert, &tls.key) {
        (Some(cert), Some(key)) => builder
            .with_client_auth_cert(certificates("cert", cert)?, private_key(key)?)
            .map_err(|e| PublishError::TlsFile {
                key: "cert",
                path: cert.clone(),
                reason: format!("cannot be used with mqtt.tls.key {}: {e}", key.display()),
            }),
        (None, None) => Ok(builder.with_no_client_auth()),
        (Some(_), None) => Err(PublishError::Tls("mqtt.tls.cert is set but mqtt.tls.key is not".into())),
        (None, Some(_)) => Err(PublishError::Tls("mqtt.tls.key is set but mqtt.tls.cert is not".into())),
    }
}

/// The process-wide provider when one is installed, else the one rumqttc's default features
/// bring. Asking rustls to pick by itself panics when a dependency enables a second provider.
fn provider() -> Arc<CryptoProvider> {
    CryptoProvider::get_default().cloned().unwrap_or_else(|| Arc::new(crypto::aws_lc_rs::default_provider()))
}

fn root_store(ca: &Path) -> Result<RootCertStore, PublishError> {
    let mut roots = RootCertStore::empty();
    for cert in certificates("ca", ca)? {
        roots.add(cert).map_err(|e| tls_file("ca", ca, format!("not a usable CA certificate: {e}")))?;
    }
    Ok(roots)
}

/// All certificates of a PEM file; at least one.
fn certificates(key: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, PublishError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|e| tls_file(key, path, e.to_string()))?;
    if certs.is_empty() {
        return Err(tls_file(key, path, "holds no PEM certificate (BEGIN CERTIFICATE)".into()));
    }
    Ok(certs)
}

fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, PublishError> {
    PrivateKeyDer::from_pem_file(path)
        .map_err(|e| tls_file("key", path, format!("no usable PEM private key: {e}")))
}

fn tls_file(key: &'static str, path: &Path, reason: String) -> PublishError {
    PublishError::TlsFile { key, path: path.to_path_buf(), reason }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn temp(name: &str, text: &str) -> PathBuf {
        let path = std::env::temp_dir().join(format!("inspectd-tls-{}-{name}", std::process::id()));
        std::fs::write(&path, text).expect("write");
        path
    }

    #[test]
    fn a_missing_ca_file_is_named() {
        let tls = TlsConfig { ca: "/nonexistent/ca.pem".into(), cert: None, key: None };
        let err = client_config(&tls).expect_err("missing");
        assert!(err.to_string().contains("mqtt.tls.ca /nonexistent/ca.pem"), "{err}");
    }

    #[test]
    fn a_file_without_certificates_is_named() {
        let ca = temp("empty-ca.pem", "not a certificate\n");
        let err = client_config(&TlsConfig { ca: ca.clone(), cert: None, key: None }).expect_err("empty");
        assert!(err.to_string().contains(&ca.display().to_string()), "{err}");
        assert!(err.to_string().contains("no PEM certificate"), "{err}");
        std::fs::remove_file(ca).expect("cleanup");
    }
}
