//! The OS keychain as the place of an encrypted store's keys on this device (cargo feature
//! `keychain`, off by default; the device chooses it per store: [`crate::Options::keychain`],
//! [`crate::Store::move_key`]). Linux and the BSDs: the Secret Service on the session's D-Bus
//! (GNOME Keyring, KeePassXC, KWallet); macOS: the login keychain; Windows: the Credential
//! Manager.
//!
//! One item per store and state dir, under service [`SERVICE`]; its secret is the keys'
//! text, the current key first and the older ones after it, one per line — the same lines
//! as the `key` and `old-keys` files, so one write replaces them all at once. The state dir
//! names the item in `stores/<id>/keychain` (docs/FORMAT.md §11): the keychain holds the
//! secret, the state dir says where it is.
//!
//! The credential store is this module's own, never the process's default one: an app that
//! uses the keyring crates for itself keeps its own choice.

/// The service name of every item crdtdir keeps in the keychain.
pub(crate) const SERVICE: &str = "crdtdir";

/// Why the keychain did not do what was asked, in one line.
pub(crate) type Failed = String;

/// Keeps `secret` in the item `account` (made, or replaced whole), labelled `label` where
/// the keychain shows labels; then reads it back and compares, so that a keychain which
/// answered without keeping it is caught before anything relies on it.
pub(crate) fn set(account: &str, label: &str, secret: &str) -> Result<(), Failed> {
    imp::set(account, label, secret)?;
    match imp::get(account)? {
        Some(back) if back == secret => Ok(()),
        Some(_) => {
            Err("it kept something else than what was written (read back and compared)".into())
        }
        None => Err("it did not keep what was written (read back: no such item)".into()),
    }
}

/// The secret of item `account`: `None` when there is no such item.
pub(crate) fn get(account: &str) -> Result<Option<String>, Failed> {
    imp::get(account)
}

/// Deletes item `account` (none: nothing to do).
pub(crate) fn delete(account: &str) -> Result<(), Failed> {
    imp::delete(account)
}

#[cfg(feature = "keychain")]
mod imp {
    use std::collections::HashMap;
    use std::sync::{Arc, OnceLock};

    use keyring_core::{CredentialStore, Entry, Error};

    use super::{Failed, SERVICE};

    /// This process's credential store, made on first use (on Linux: a D-Bus connection).
    /// A failure is kept: each later call says the same.
    fn store() -> Result<&'static Arc<CredentialStore>, Failed> {
        static STORE: OnceLock<Result<Arc<CredentialStore>, Failed>> = OnceLock::new();
        STORE
            .get_or_init(|| make_store().map_err(|e| describe(&e)))
            .as_ref()
            .map_err(Clone::clone)
    }

    #[cfg(all(
        unix,
        not(any(target_os = "macos", target_os = "ios", target_os = "android"))
    ))]
    fn make_store() -> keyring_core::Result<Arc<CredentialStore>> {
        Ok(zbus_secret_service_keyring_store::Store::new()?)
    }

    #[cfg(target_os = "macos")]
    fn make_store() -> keyring_core::Result<Arc<CredentialStore>> {
        Ok(apple_native_keyring_store::keychain::Store::new()?)
    }

    #[cfg(target_os = "windows")]
    fn make_store() -> keyring_core::Result<Arc<CredentialStore>> {
        Ok(windows_native_keyring_store::Store::new()?)
    }

    #[cfg(not(any(
        all(
            unix,
            not(any(target_os = "macos", target_os = "ios", target_os = "android"))
        ),
        target_os = "macos",
        target_os = "windows"
    )))]
    fn make_store() -> keyring_core::Result<Arc<CredentialStore>> {
        Err(Error::NotSupportedByStore(
            "this platform has no keychain crdtdir knows".into(),
        ))
    }

    fn entry(account: &str, label: Option<&str>) -> Result<Entry, Failed> {
        let store = store()?;
        let mut modifiers = HashMap::new();
        if let Some(label) = label {
            modifiers.insert("label", label);
        }
        Entry::new_in_store_with_modifiers(store, SERVICE, account, &modifiers)
            .map_err(|e| describe(&e))
    }

    pub(super) fn set(account: &str, label: &str, secret: &str) -> Result<(), Failed> {
        entry(account, Some(label))?
            .set_password(secret)
            .map_err(|e| describe(&e))
    }

    pub(super) fn get(account: &str) -> Result<Option<String>, Failed> {
        match entry(account, None)?.get_password() {
            Ok(secret) => Ok(Some(secret)),
            Err(Error::NoEntry) => Ok(None),
            Err(e) => Err(describe(&e)),
        }
    }

    pub(super) fn delete(account: &str) -> Result<(), Failed> {
        match entry(account, None)?.delete_credential() {
            Ok(()) | Err(Error::NoEntry) => Ok(()),
            Err(e) => Err(describe(&e)),
        }
    }

    /// One line for `e`, naming what usually lies behind it.
    fn describe(e: &Error) -> Failed {
        let line = e.to_string().replace('\n', " ");
        match e {
            Error::NoStorageAccess(_) => {
                format!("the keychain is locked or refused access: {line}")
            }
            Error::PlatformFailure(_) if cfg!(target_os = "linux") => {
                format!("no Secret Service answered on the session's D-Bus (is a keyring such as gnome-keyring running and unlocked?): {line}")
            }
            _ => line,
        }
    }
}

#[cfg(not(feature = "keychain"))]
mod imp {
    use super::Failed;

    fn missing() -> Failed {
        "this build of crdtdir has no keychain support (cargo feature `keychain`)".into()
    }

    pub(super) fn set(_: &str, _: &str, _: &str) -> Result<(), Failed> {
        Err(missing())
    }

    pub(super) fn get(_: &str) -> Result<Option<String>, Failed> {
        Err(missing())
    }

    pub(super) fn delete(_: &str) -> Result<(), Failed> {
        Err(missing())
    }
}
