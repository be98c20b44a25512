//! The guide's example apps, run: examples/todo.rs here, its Python and JavaScript twins in
//! cli/tests/guide.rs.

// The example's own code, not a copy: its `main` is the one item the test does not call.
#[allow(dead_code)]
#[path = "../examples/todo.rs"]
mod todo;

/// Two devices add, tick and delete todos at once; the phone's watcher brings the laptop's
/// edits; both end with the same list, holding each device's additions, the laptop's
/// delete, both devices' ticks, and no trace of the phone's tick of the deleted todo.
#[test]
fn the_todo_app_ends_with_both_devices_showing_every_devices_edits() {
    let dir = tempfile::tempdir().unwrap();
    let summary = todo::run(dir.path()).unwrap();
    assert_eq!(summary.laptop, summary.phone);
    let shown: Vec<(&str, bool)> = summary
        .laptop
        .iter()
        .map(|t| (t.title.as_str(), t.done))
        .collect();
    for want in [
        ("Buy milk", false),        // the laptop's, untouched
        ("Water the plants", true), // the laptop's tick
        ("Book the dentist", true), // the phone's tick, at the index the delete moved
        ("Pay rent", false),        // added by the laptop during the phone's edits
        ("Buy bread", false),       // added by the phone during the laptop's
    ] {
        assert!(shown.contains(&want), "{want:?} not in {shown:?}");
    }
    assert_eq!(shown.len(), 5, "{shown:?}"); // "Call mum" is deleted, and stays deleted
    let mut ids: Vec<&str> = summary.laptop.iter().map(|t| t.id.as_str()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 5, "every todo has its own id");
    // The watcher told the phone of the laptop's additions and of its delete.
    let heard = summary.heard.join("\n");
    assert!(heard.contains(r#"added "Buy milk""#), "{heard}");
    assert!(heard.contains(r#"deleted "Call mum""#), "{heard}");
    assert!(
        summary.heard.iter().all(|l| l.contains("laptop")),
        "{heard}"
    );
}
