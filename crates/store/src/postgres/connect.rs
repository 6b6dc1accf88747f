//! Where the database is and how to reach it: the `store:` URL read strictly, the password
//! from its own file, and TLS through rustls when the URL asks for it.
//!
//! `sslmode=require` and `sslmode=verify-full` both verify the server's certificate chain and
//! its name (against the system's roots, or the CA file `sslrootcert=` names): unlike libpq,
//! `require` never accepts an unverified server, because an audit chain and the serial counter
//! are worth a man in the middle's while. `prefer` and `allow` are refused (they fall back to
//! plain text without saying so), and so is `verify-ca` (it does not check the name). No
//! `sslmode`, or `disable`: plain TCP, for a database on the same host or a private link.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::StoreError;

/// A database to connect to.
#[derive(Clone)]
pub(crate) struct Target {
    pub(crate) config: tokio_postgres::Config,
    pub(crate) tls: Option<MakeRustlsConnect>,
    /// The URL without any secret, for messages.
    pub(crate) shown: String,
}

fn bad(url: &str, reason: impl Into<String>) -> StoreError {
    StoreError::Open {
        path: shown_raw(url),
        reason: reason.into(),
    }
}

/// The URL up to its query, with any password blanked: safe to log.
fn shown_raw(url: &str) -> String {
    let base = url.split('?').next().unwrap_or_default();
    match (base.find("://"), base.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &base[scheme + 3..at];
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{}{user}{}", &base[..scheme + 3], &base[at..])
        }
        _ => base.to_string(),
    }
}

/// Reads `url` (`postgres://USER@HOST:PORT/DB[?sslmode=...&sslrootcert=FILE]`).
pub(crate) fn target(
    url: &str,
    password: Option<&str>,
    timeout: Duration,
) -> Result<Target, StoreError> {
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(bad(url, "a store URL starts with postgres://"));
    }
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let mut sslmode = None;
    let mut rootcert = None;
    let mut rest = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let decoded = percent_encoding::percent_decode_str(value)
            .decode_utf8()
            .map_err(|_| bad(url, format!("{key}'s value is not UTF-8")))?
            .into_owned();
        match key {
            "sslmode" => sslmode = Some(decoded),
            "sslrootcert" if !decoded.starts_with('/') => {
                return Err(bad(
                    url,
                    format!("sslrootcert {decoded} is not an absolute path"),
                ));
            }
            "sslrootcert" => rootcert = Some(decoded),
            "password" => {
                return Err(bad(
                    url,
                    "put the password in store_password_file, not in the URL",
                ));
            }
            _ => rest.push(pair),
        }
    }
    let rebuilt = if rest.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", rest.join("&"))
    };
    let mut config =
        tokio_postgres::Config::from_str(&rebuilt).map_err(|e| bad(url, e.to_string()))?;
    if config.get_password().is_some() {
        return Err(bad(
            url,
            "put the password in store_password_file, not in the URL",
        ));
    }
    if config.get_user().is_none() {
        return Err(bad(url, "the URL names no user (postgres://USER@HOST/DB)"));
    }
    if config.get_dbname().is_none() {
        return Err(bad(
            url,
            "the URL names no database (postgres://USER@HOST/DB)",
        ));
    }
    if let Some(password) = password {
        config.password(password);
    }
    config
        .application_name("jitca")
        .connect_timeout(timeout)
        .keepalives(true)
        .keepalives_idle(Duration::from_secs(30));
    let tls = match sslmode.as_deref() {
        None | Some("disable") => {
            if rootcert.is_some() {
                return Err(bad(url, "sslrootcert without sslmode=verify-full"));
            }
            config.ssl_mode(tokio_postgres::config::SslMode::Disable);
            None
        }
        Some("require" | "verify-full") => {
            config.ssl_mode(tokio_postgres::config::SslMode::Require);
            Some(tls(url, rootcert.as_deref())?)
        }
        Some(other) => {
            return Err(bad(
                url,
                format!(
                    "sslmode={other} is not accepted: use verify-full (or require, which jitca \
                     verifies the same way), or disable"
                ),
            ));
        }
    };
    Ok(Target {
        config,
        tls,
        shown: shown_raw(url),
    })
}

/// A TLS connector that verifies the server against `rootcert` or the system's roots.
fn tls(url: &str, rootcert: Option<&str>) -> Result<MakeRustlsConnect, StoreError> {
    let mut roots = rustls::RootCertStore::empty();
    match rootcert {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| bad(url, format!("cannot read sslrootcert {path}: {e}")))?;
            for cert in certs {
                let cert =
                    cert.map_err(|e| bad(url, format!("sslrootcert {path} is not PEM: {e}")))?;
                roots
                    .add(cert)
                    .map_err(|e| bad(url, format!("sslrootcert {path}: {e}")))?;
            }
            if roots.is_empty() {
                return Err(bad(url, format!("sslrootcert {path} holds no certificate")));
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for cert in found.certs {
                // A root the system lists but rustls cannot read is one root less, not a failure.
                let _ = roots.add(cert);
            }
            if roots.is_empty() {
                return Err(bad(
                    url,
                    "the system has no root certificates to verify the database with; name a \
                     CA file with sslrootcert=FILE",
                ));
            }
        }
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| bad(url, e.to_string()))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Duration = Duration::from_secs(10);

    fn refused(url: &str) -> String {
        match target(url, None, T) {
            Ok(_) => panic!("{url} was accepted"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn a_plain_url_is_read_and_shown_without_secrets() {
        let t = target("postgres://jitca@db.example:5433/jitca", Some("s3cret"), T).unwrap();
        assert!(t.tls.is_none());
        assert_eq!(t.shown, "postgres://jitca@db.example:5433/jitca");
        assert_eq!(t.config.get_ports(), &[5433]);
        assert_eq!(t.config.get_password(), Some(&b"s3cret"[..]));
    }

    #[test]
    fn what_would_weaken_or_leak_is_refused() {
        let e = refused("postgres://jitca:pw@db/jitca");
        assert!(e.contains("store_password_file"), "{e}");
        assert!(!e.contains("pw@"), "the password is not shown: {e}");
        assert!(refused("postgres://jitca@db/jitca?password=x").contains("store_password_file"));
        for mode in ["prefer", "allow", "verify-ca"] {
            let e = refused(&format!("postgres://jitca@db/jitca?sslmode={mode}"));
            assert!(
                e.contains(&format!("sslmode={mode} is not accepted")),
                "{e}"
            );
        }
        assert!(refused("mysql://jitca@db/jitca").contains("postgres://"));
        assert!(refused("postgres://db/jitca").contains("no user"));
        assert!(refused("postgres://jitca@db").contains("no database"));
        assert!(refused("postgres://jitca@db/j?sslrootcert=/x").contains("sslrootcert without"));
        let e = refused("postgres://jitca@db/j?sslmode=verify-full&sslrootcert=/nonexistent/ca");
        assert!(e.contains("cannot read sslrootcert /nonexistent/ca"), "{e}");
        let e = refused("postgres://jitca@db/j?sslmode=verify-full&sslrootcert=ca.pem");
        assert!(
            e.contains("sslrootcert ca.pem is not an absolute path"),
            "{e}"
        );
    }
}
