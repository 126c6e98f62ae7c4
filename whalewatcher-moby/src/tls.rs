//! TLS to a `tcp://` endpoint as the docker CLI does it: the certificates
//! directory holds `ca.pem` (the CA that signed the engine's certificate)
//! and, when the engine verifies clients, `cert.pem` and `key.pem`.

use std::io::ErrorKind;
use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{AlertDescription, CertificateError};

/// The client configuration from the certificates in `dir`; the error
/// says which file is missing or unreadable. Like the docker CLI, goes on
/// without a client certificate when neither `cert.pem` nor `key.pem` is
/// there.
pub(crate) fn client_config(dir: &Path) -> Result<rustls::ClientConfig, String> {
    let (ca, cert, key) = (
        dir.join("ca.pem"),
        dir.join("cert.pem"),
        dir.join("key.pem"),
    );
    let unreadable = |what: &str, path: &Path, e: &dyn std::fmt::Display| {
        format!("TLS: cannot read {what} {}: {e}", path.display())
    };
    let mut roots = rustls::RootCertStore::empty();
    let cas = CertificateDer::pem_file_iter(&ca)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| unreadable("the CA certificate", &ca, &e))?;
    let (added, _) = roots.add_parsable_certificates(cas);
    if added == 0 {
        return Err(format!(
            "TLS: {} holds no usable CA certificate",
            ca.display()
        ));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_root_certificates(roots);
    let mut config = match (cert.exists(), key.exists()) {
        (false, false) => builder.with_no_client_auth(),
        (true, false) => {
            return Err(format!(
                "TLS: {} has cert.pem but no key.pem",
                dir.display()
            ))
        }
        (false, true) => {
            return Err(format!(
                "TLS: {} has key.pem but no cert.pem",
                dir.display()
            ))
        }
        (true, true) => {
            let chain = CertificateDer::pem_file_iter(&cert)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(|e| unreadable("the client certificate", &cert, &e))?;
            let private = PrivateKeyDer::from_pem_file(&key)
                .map_err(|e| unreadable("the client key", &key, &e))?;
            builder
                .with_client_auth_cert(chain, private)
                .map_err(|e| format!("TLS: {} and {}: {e}", cert.display(), key.display()))?
        }
    };
    // No session resumption: the pool opens few connections, so it gains
    // little, and an OpenSSL server that verifies clients without a
    // session id context (socat's) fails every resumed handshake.
    config.resumption = rustls::client::Resumption::disabled();
    Ok(config)
}

/// A request's error as an I/O error that names the certificate problem,
/// when TLS failed for a reason the user can fix in the certificates
/// directory `dir`; else `None`.
pub(crate) fn explain(
    error: &(dyn std::error::Error + 'static),
    dir: &Path,
) -> Option<std::io::Error> {
    let tls = find_tls_error(error)?;
    let message = match tls {
        rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer) => format!(
            "TLS: the engine's certificate is not signed by the CA in {} ({tls})",
            dir.join("ca.pem").display()
        ),
        rustls::Error::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
        ) => format!("TLS: the engine's certificate is not for this host ({tls})"),
        rustls::Error::InvalidCertificate(_) => {
            format!("TLS: the engine's certificate is not accepted ({tls})")
        }
        rustls::Error::AlertReceived(
            AlertDescription::CertificateRequired
            | AlertDescription::BadCertificate
            | AlertDescription::UnknownCA
            | AlertDescription::CertificateUnknown
            | AlertDescription::HandshakeFailure
            | AlertDescription::AccessDenied,
        ) => {
            let cert = dir.join("cert.pem");
            if cert.exists() {
                format!(
                    "TLS: the engine rejected the client certificate {} ({tls})",
                    cert.display()
                )
            } else {
                format!(
                    "TLS: the engine wants a client certificate, and {} has no cert.pem and key.pem ({tls})",
                    dir.display()
                )
            }
        }
        rustls::Error::InvalidMessage(_) => format!(
            "TLS: the endpoint does not answer in TLS; for a plain tcp:// engine, leave out the certificates and DOCKER_TLS_VERIFY ({tls})"
        ),
        _ => return None,
    };
    Some(std::io::Error::new(ErrorKind::InvalidData, message))
}

/// The first rustls error in the chain from `error`, looking into I/O
/// errors too (their `source()` skips the error they wrap).
fn find_tls_error<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    let mut next = Some(error);
    while let Some(error) = next {
        if let Some(tls) = error.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        if let Some(inner) = error
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            if let Some(found) = find_tls_error(inner) {
                return Some(found);
            }
        }
        next = error.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_ca_is_named() {
        let err = client_config(Path::new("/nonexistent/certs")).unwrap_err();
        assert!(
            err.contains("the CA certificate /nonexistent/certs/ca.pem"),
            "{err}"
        );
    }

    #[test]
    fn a_tls_error_inside_io_errors_is_found_and_named() {
        let tls = rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer);
        let wrapped = std::io::Error::other(std::io::Error::new(ErrorKind::InvalidData, tls));
        let explained = explain(&wrapped, Path::new("/certs")).expect("explained");
        assert_eq!(explained.kind(), ErrorKind::InvalidData);
        assert!(
            explained
                .to_string()
                .contains("not signed by the CA in /certs/ca.pem"),
            "{explained}"
        );
        assert!(explain(&std::io::Error::other("plain"), Path::new("/certs")).is_none());
    }
}
