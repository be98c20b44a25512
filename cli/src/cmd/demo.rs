//! `crdtdir demo`: a real merge in a temporary folder — two devices edit one store
//! concurrently, their files cross as a sync tool would carry them, and both print the
//! same JSON.

use crdtdir::{Options, Store};
use serde_json::json;

use crate::output::{fail, Failure};

/// Two devices, two folders, concurrent edits, files exchanged both ways, one result.
pub(crate) fn run() -> Result<(), Failure> {
    let io = |e: std::io::Error| fail(e.to_string());
    let tmp = tempfile::tempdir().map_err(io)?;
    let dev = |name: &str| {
        Options::new()
            .state_dir(tmp.path().join(format!("state-{name}")))
            .device(name)
    };
    let (laptop_dir, phone_dir) = (
        tmp.path().join("laptop/todo"),
        tmp.path().join("phone/todo"),
    );
    let say = |who: &str, what: &str| {
        let _ = crate::output::write_out(&format!("{who:>7}: {what}\n"));
    };

    let laptop = Store::init(
        &laptop_dir,
        dev("laptop"),
        Some(&json!({"title": "Groceries", "items": []})),
    )?;
    say(
        "laptop",
        r#"crdtdir init --from {"title":"Groceries","items":[]}"#,
    );
    std::fs::create_dir_all(&phone_dir).map_err(io)?;
    copy_new_files(&laptop_dir, &phone_dir).map_err(io)?;
    let phone = Store::open(&phone_dir, dev("phone"))?;
    say("sync", "the phone receives the store");

    // Both devices edit while apart.
    let edits: [(&Store, &str, &str); 4] = [
        (
            &laptop,
            "laptop",
            r#"[{"op":"add","path":"/items/-","value":"milk"}]"#,
        ),
        (
            &laptop,
            "laptop",
            r#"[{"op":"splice","path":"/title","pos":9,"del":0,"text":" for Sunday"}]"#,
        ),
        (
            &phone,
            "phone",
            r#"[{"op":"add","path":"/items/0","value":"eggs"}]"#,
        ),
        (
            &phone,
            "phone",
            r#"[{"op":"splice","path":"/title","pos":0,"del":0,"text":"Weekly "}]"#,
        ),
    ];
    for (store, who, patch) in edits {
        store.apply_patch(&crdtdir::parse_patch(patch)?)?;
        say(who, &format!("crdtdir append --patch - <<< '{patch}'"));
    }
    let (a, b) = (
        serde_json::to_string(&laptop.read()?.to_json()).map_err(|e| fail(e.to_string()))?,
        serde_json::to_string(&phone.read()?.to_json()).map_err(|e| fail(e.to_string()))?,
    );
    say("laptop", &format!("crdtdir merge   # before sync: {a}"));
    say("phone", &format!("crdtdir merge   # before sync: {b}"));

    copy_new_files(&laptop_dir, &phone_dir).map_err(io)?;
    copy_new_files(&phone_dir, &laptop_dir).map_err(io)?;
    say("sync", "op files cross both ways (any sync tool does this)");
    let (a, b) = (laptop.read()?.to_json(), phone.read()?.to_json());
    say("laptop", &format!("crdtdir merge   # {a}"));
    say("phone", &format!("crdtdir merge   # {b}"));
    if a != b {
        return Err(fail("the two devices disagree: this is a bug"));
    }
    crate::output::write_out(
        "both devices print the same document: concurrent edits merged, none lost\n",
    )
}

/// Copies files that `to` does not have yet (what a sync tool does with immutable files).
fn copy_new_files(from: &std::path::Path, to: &std::path::Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            std::fs::create_dir_all(&target)?;
            copy_new_files(&entry.path(), &target)?;
        } else if !target.exists() {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}
