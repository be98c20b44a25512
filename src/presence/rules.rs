//! The presence rule: other devices' heartbeats judged by this device's own clock, so that
//! clock skew never makes a live device look dead nor keeps a dead one alive.
//!
//! A device counts as possibly online when its beat counter changed within the threshold
//! as observed by THIS device's clock (a fresh state counts every beat as just seen), or
//! when its own reported time is within the threshold of ours, in either direction.

use crate::local::beats::Seen;

/// Notes a beat in `seen` and returns our clock's time of its last change.
pub(crate) fn observe(seen: &mut Seen, actor: &str, counter: u64, now: i64) -> i64 {
    match seen.get(actor) {
        Some(&(c, at)) if c == counter => at,
        _ => {
            seen.insert(actor.to_string(), (counter, now));
            now
        }
    }
}

/// The rule: changed recently by our clock, or its own clock says recently (either way).
pub(crate) fn looks_online(changed_at: i64, their_time: i64, now: i64, threshold: i64) -> bool {
    now - changed_at <= threshold || (their_time - now).abs() <= threshold
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3600;

    #[test]
    fn a_slow_clock_does_not_make_a_live_device_look_dead() {
        let mut seen = Seen::new();
        let threshold = 300;
        // Its clock is five hours behind ours, but its counter keeps changing.
        for (i, now) in [(1, 10_000), (2, 10_060), (3, 10_120)] {
            let at = observe(&mut seen, "b", i, now);
            assert!(looks_online(at, now - 5 * H, now, threshold));
        }
    }

    #[test]
    fn a_fast_clock_does_not_keep_a_dead_device_alive() {
        let mut seen = Seen::new();
        let threshold = 300;
        // Its last beat claims a time five hours ahead of ours and never changes again.
        let first = 10_000;
        let their_time = first + 5 * H;
        let at = observe(&mut seen, "c", 9, first);
        assert!(
            looks_online(at, their_time, first, threshold),
            "a fresh state sees it just now"
        );
        let later = first + threshold + 1;
        let at = observe(&mut seen, "c", 9, later);
        assert!(!looks_online(at, their_time, later, threshold));
        // Hours later still dead, although its clock is "ahead".
        let much_later = first + 4 * H;
        let at = observe(&mut seen, "c", 9, much_later);
        assert!(!looks_online(at, their_time, much_later, threshold));
    }

    #[test]
    fn a_recent_beat_by_its_own_clock_counts_even_unseen_before() {
        assert!(looks_online(0, 1_000_000 - 10, 1_000_000, 300));
        assert!(!looks_online(0, 1_000_000 - 301, 1_000_000, 300));
    }
}
