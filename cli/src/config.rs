//! The config file: the store, device name, document, state dir and key place a user would
//! otherwise export in every shell. `CRDTDIR_CONFIG` names it; otherwise `config.toml` in the OS config
//! folder (`~/.config/crdtdir/config.toml` on Linux), if there is one. A command-line flag
//! or an environment variable wins over it.
//!
//! ```toml
//! store = "~/Sync/groceries"   # as --store / CRDTDIR_STORE
//! device = "laptop"            # as --device / CRDTDIR_DEVICE
//! doc = "3c08…"                # as --doc / CRDTDIR_DOC
//! state_dir = "~/.crdtdir"     # as --state-dir / CRDTDIR_STATE_DIR
//! keychain = true              # as CRDTDIR_KEYCHAIN=1: keys go to the OS keychain
//! ```
//!
//! A path starting with `~/` is in the home folder; a relative path is relative to the
//! folder of the config file.

use std::path::{Path, PathBuf};

use crate::output::Failure;

/// The environment variable that names the config file.
pub(crate) const CONFIG_ENV: &str = "CRDTDIR_CONFIG";

/// What a config file sets.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Config {
    pub(crate) store: Option<PathBuf>,
    pub(crate) device: Option<String>,
    pub(crate) doc: Option<String>,
    pub(crate) state_dir: Option<PathBuf>,
    pub(crate) keychain: Option<bool>,
}

/// The config file's path: `CRDTDIR_CONFIG` (set and empty: none), else the OS config
/// folder's `crdtdir/config.toml`.
fn path() -> Option<(PathBuf, bool)> {
    // Set and empty: no config file at all.
    if let Some(named) = std::env::var_os(CONFIG_ENV) {
        return (!named.is_empty()).then(|| (PathBuf::from(named), true));
    }
    let dirs = directories::ProjectDirs::from("", "", "crdtdir")?;
    Some((dirs.config_dir().join("config.toml"), false))
}

/// The config, if there is one. A file `CRDTDIR_CONFIG` names must exist; one that does not
/// read or parse, or sets a key this build does not know, is one clear error.
pub(crate) fn load() -> Result<Config, Failure> {
    let Some((path, named)) = path() else {
        return Ok(Config::default());
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !named => {
            return Ok(Config::default())
        }
        Err(e) => return Err(bad(&path, &e.to_string())),
    };
    let mut config: Config = toml::from_str(&text).map_err(|e| {
        let message = e.message().to_string();
        let line = e
            .span()
            .map(|span| text[..span.start].matches('\n').count() + 1);
        match line {
            Some(line) => bad(&path, &format!("line {line}: {message}")),
            None => bad(&path, &message),
        }
    })?;
    let base = path.parent().unwrap_or(Path::new("."));
    config.store = config.store.map(|p| resolve(base, &p));
    config.state_dir = config.state_dir.map(|p| resolve(base, &p));
    Ok(config)
}

/// `~/…` in the home folder, a relative path in `base`.
fn resolve(base: &Path, p: &Path) -> PathBuf {
    if let Ok(rest) = p.strip_prefix("~") {
        if let Some(home) = directories::BaseDirs::new() {
            return home.home_dir().join(rest);
        }
    }
    if p.is_relative() {
        base.join(p)
    } else {
        p.to_path_buf()
    }
}

fn bad(path: &Path, why: &str) -> Failure {
    Failure {
        exit: crate::output::EXIT_ERROR,
        code: "config",
        message: format!("config file {}: {}", path.display(), why.trim()),
        hint: Some(format!(
            "a config file sets store, device, doc, state_dir and keychain (TOML); fix it, or run with {CONFIG_ENV}= (empty) to read none"
        )),
    }
}
