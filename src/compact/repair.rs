//! `repair`: writes back, as a new snapshot that deletes nothing, any change this device
//! holds that neither a valid snapshot nor an op file in the folder provides; publishes again
//! this device's own op files and the store marker the folder lost.

use serde::Serialize;

/// What `repair` wrote back.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Repaired {
    /// The store marker was missing and was written again, as it was (same store id).
    pub marker_restored: bool,
    /// This device's own op files published again (paths in the store).
    pub republished: Vec<String>,
    /// The snapshot written with the changes no file in the folder provides, if any.
    pub snapshot: Option<String>,
}

impl Repaired {
    /// True when the folder already provided everything this device has.
    pub fn is_empty(&self) -> bool {
        !self.marker_restored && self.republished.is_empty() && self.snapshot.is_none()
    }
}

/// How often, at most, a device writes back on its own what the folder lost.
pub(crate) const WRITE_BACK_EVERY_SECS: u64 = 3600;
