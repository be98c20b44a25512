//! `crdtdir check`: read every file of the folder again and say which are damaged.

use crdtdir::{CheckReport, Repo, Store};

use crate::output::{json_wanted, print_json, to_json, write_out, Failure, EXIT_ERROR};

pub(crate) fn run(store: &Store) -> Result<(), Failure> {
    let report = if store.is_root_doc() {
        Repo::from(store.clone()).check()?
    } else {
        store.check()?
    };
    if json_wanted() {
        print_json(&to_json(&report)?)?;
    } else {
        write_out(&text(&report))?;
    }
    if report.is_clean() {
        return Ok(());
    }
    let mut paths: Vec<&str> = report.damaged.iter().map(|p| p.path.as_str()).collect();
    paths.dedup();
    let files = paths.len();
    Err(Failure {
        exit: EXIT_ERROR,
        code: "damaged",
        message: format!("{files} damaged file(s) in the folder: readers skip them"),
        hint: Some(
            "run `crdtdir repair` on each device: one whose view holds a damaged file's change writes it back; or put back a good copy of the file from a backup or another device's folder"
                .into(),
        ),
    })
}

fn text(r: &CheckReport) -> String {
    let mut out = format!(
        "checked {} file(s) of {} document(s): op files {} (loose files and pack entries, each copy), packs {}, snapshots {}, records {}, checkpoints {}, heartbeats {}, passphrase files {}\n",
        r.files(),
        r.documents,
        r.op_files,
        r.packs,
        r.snapshots,
        r.records,
        r.checkpoints,
        r.heartbeats,
        r.keys
    );
    for p in &r.damaged {
        out.push_str(&format!("damaged  {}: {}\n", p.path, p.reason));
    }
    for p in &r.noticed {
        out.push_str(&format!("noticed  {}: {}\n", p.path, p.reason));
    }
    if r.is_clean() {
        out.push_str("no damaged file\n");
    }
    out
}
