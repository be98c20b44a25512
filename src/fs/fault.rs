//! Named fault points: the steps of every protocol that changes the disk, where tests make
//! crdtdir crash or fail, then reopen what is left.
//!
//! Each multi-step protocol (a write, `init`, a heartbeat, saving the cache, compaction,
//! `repair`) calls `at` with a step name from [`STEPS`] after the step is durable. A test
//! can make the next such point on its own thread:
//! - **crash** ([`Fault::Crash`]): unwind with a [`Crashed`] payload, as a power cut there
//!   would stop the process (nothing after the point runs; no cleanup either, since crdtdir
//!   cleans up explicitly, never in destructors);
//! - **fail** ([`Fault::Fail`]): return an I/O error, as a full disk there would.
//!
//! The CLI's tests do the same to the real binary with the environment variable
//! `CRDTDIR_CRASH_AT=<step>`, which aborts the process at that step.
//!
//! This module exists for tests; it is not part of the supported API.

use std::cell::RefCell;
use std::io;

/// Every named step, in the order the protocols reach them.
pub const STEPS: &[&str] = &[
    // init
    "marker-published",
    // a write (docs/FORMAT.md §7)
    "op-staged",
    "op-kept",
    "record-written",
    "op-published",
    // a heartbeat (§13)
    "beat-counted",
    "beat-published",
    // saving the cache (§11)
    "held-saved",
    "cache-saved",
    // compaction and repair (§14)
    "snapshot-staged",
    "snapshot-published",
    "retained",
    "recorded",
    "deleting",
    "republished",
    // packing (§17)
    "pack-kept",
    "pack-published",
    "loose-deleting",
    "pack-settled",
    // key rotation (§16)
    "keys-kept-older",
    "key-rotated-kept",
    "rotation-staged",
    // checkpoints (§19)
    "checkpoint-staged",
    "checkpoint-published",
    "checkpoint-replaced",
];

/// What happens at the chosen step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Stop there, as a crash would: the operation unwinds with a [`Crashed`] payload.
    Crash,
    /// The step fails with an I/O error ("no space left on device").
    Fail,
    /// The step fails every time it is reached until the guard is dropped (a disk that
    /// stays full, a sync tool that keeps deleting temps).
    FailAlways,
}

/// The panic payload of an injected crash: the step it happened at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Crashed(pub &'static str);

thread_local! {
    static PLAN: RefCell<Option<(String, Fault)>> = const { RefCell::new(None) };
}

/// Arms `fault` at the next time this thread reaches `step`; disarmed when it fires or when
/// the returned guard is dropped.
pub fn inject(step: &str, fault: Fault) -> Armed {
    assert!(STEPS.contains(&step), "unknown fault step {step:?}");
    PLAN.with(|p| *p.borrow_mut() = Some((step.to_string(), fault)));
    Armed(())
}

/// Keeps a fault armed; dropping it disarms the fault.
#[must_use = "the fault is disarmed when this is dropped"]
#[derive(Debug)]
pub struct Armed(());

impl Drop for Armed {
    fn drop(&mut self) {
        PLAN.with(|p| *p.borrow_mut() = None);
    }
}

/// The fault point `step`: crashes or fails if a fault is armed there.
pub(crate) fn at(step: &'static str) -> io::Result<()> {
    debug_assert!(STEPS.contains(&step), "unnamed fault step {step:?}");
    if let Some(want) = std::env::var_os("CRDTDIR_CRASH_AT") {
        if want == step {
            // A real crash: no destructors, no buffered output, no cleanup.
            std::process::abort();
        }
    }
    let fired = PLAN.with(|p| {
        let mut plan = p.borrow_mut();
        match plan.as_ref() {
            Some((s, fault)) if s == step => {
                let fault = *fault;
                if fault != Fault::FailAlways {
                    *plan = None;
                }
                Some(fault)
            }
            _ => None,
        }
    });
    match fired {
        None => Ok(()),
        Some(Fault::Crash) => std::panic::panic_any(Crashed(step)),
        Some(Fault::Fail | Fault::FailAlways) => Err(io::Error::new(
            io::ErrorKind::StorageFull,
            format!("no space left on device (injected at {step})"),
        )),
    }
}
