//! `store:` and `store_password_file:`: where requests, serials and the audit chain are kept,
//! and [`Config::check_store`], the database check `jitca check` runs.

use std::path::{Path, PathBuf};

use jitca_policy::names::show;
use jitca_policy::{ConfigError, ConfigErrors, Problems, YamlPath};
use jitca_store::{PgOptions, PgStore, postgres::schema};

use super::Config;

/// Where the store is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreLocation {
    /// The embedded store, in `data_dir` (no `store:` setting).
    Sled,
    /// A PostgreSQL database (`store: postgres://USER@HOST:PORT/DB`), shared by every daemon
    /// with this config.
    Postgres {
        url: String,
        /// The password's file (`store_password_file:`), checked like a key file.
        password_file: Option<PathBuf>,
    },
}

impl StoreLocation {
    /// Reads the two settings: `store` a PostgreSQL URL jitca accepts (see
    /// `jitca_store::postgres`), `store_password_file` only with it.
    pub(super) fn read(
        url: Option<String>,
        password_file: Option<String>,
        base: &Path,
        problems: &mut Problems<'_>,
    ) -> Self {
        let root = YamlPath::root();
        let password_file =
            password_file.map(|p| problems.file_path(&root.key("store_password_file"), &p, base));
        let Some(url) = url else {
            if password_file.is_some() {
                problems.at(
                    &root.key("store_password_file"),
                    "is for a PostgreSQL store; there is no store: postgres://... setting",
                );
            }
            return Self::Sled;
        };
        if let Err(e) = PgOptions::new(url.clone()).check() {
            problems.at(
                &root.key("store"),
                format_args!("{}: {e}", show(&redacted(&url))),
            );
        }
        Self::Postgres { url, password_file }
    }
}

/// A URL with anything after a `:` in its user part blanked, for messages.
fn redacted(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let user = url[scheme + 3..at].split(':').next().unwrap_or_default();
            format!("{}{user}{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_string(),
    }
}

impl Config {
    /// The options to reach a PostgreSQL store with, its password read (the file checked like
    /// a key file); `None` for the embedded store. `node` names this daemon among those that
    /// share the database.
    pub fn pg_options(&self, node: &str) -> anyhow::Result<Option<PgOptions>> {
        let StoreLocation::Postgres { url, password_file } = &self.store else {
            return Ok(None);
        };
        let password = match password_file {
            None => None,
            Some(path) => {
                let mut file = jitca_signer::open_private_file(path, "DATABASE PASSWORD")?;
                let mut text = String::new();
                std::io::Read::read_to_string(&mut file, &mut text)
                    .map_err(|e| anyhow::anyhow!("store_password_file {}: {e}", path.display()))?;
                Some(text.trim_end_matches(['\n', '\r']).to_string())
            }
        };
        Ok(Some(PgOptions {
            url: url.clone(),
            password,
            timeout: self.limits.store_timeout,
            node: node.to_string(),
            pool_size: 8,
        }))
    }

    /// For `jitca check`: with a PostgreSQL store, that the password file passes and the
    /// database answers within `limits.store_timeout`. Its schema is reported: none yet or an
    /// older one is a warning (the daemon migrates at start), a newer one than this jitca
    /// knows is a problem.
    pub fn check_store(&self) -> Result<Vec<ConfigError>, ConfigErrors> {
        let StoreLocation::Postgres { url, .. } = &self.store else {
            return Ok(Vec::new());
        };
        let root = YamlPath::root();
        let mut problems = Problems::new(&self.index);
        let shown = redacted(url);
        match self.pg_options("check") {
            Err(e) => problems.at(&root.key("store_password_file"), format_args!("{e:#}")),
            Ok(None) => {}
            Ok(Some(options)) => match PgStore::probe(&options) {
                Err(e) => problems.at(
                    &root.key("store"),
                    format_args!("cannot use the database {shown}: {e}"),
                ),
                Ok(0) => problems.warn(
                    &root.key("store"),
                    format_args!(
                        "the database {shown} answers and holds no jitca schema yet; the daemon \
                         creates it at its first start"
                    ),
                ),
                Ok(v) if v < schema::LATEST => problems.warn(
                    &root.key("store"),
                    format_args!(
                        "the database {shown} has jitca schema version {v}; the daemon \
                         migrates it to {} at start",
                        schema::LATEST
                    ),
                ),
                Ok(v) if v > schema::LATEST => problems.at(
                    &root.key("store"),
                    format_args!(
                        "the database {shown} has jitca schema version {v}, newer than this \
                         jitca knows ({}): run the newer jitca",
                        schema::LATEST
                    ),
                ),
                Ok(_) => {}
            },
        }
        problems.finish(&self.file)
    }
}
