//! `crdtdir log`: the history, one line per change.

use crdtdir::Store;

use crate::output::{print_json, to_json, write_out, Failure};

#[derive(clap::Args)]
pub(crate) struct Args {
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(store: &Store, args: &Args) -> Result<(), Failure> {
    let mut log = store.history()?;
    log.sort_by(|a, b| (a.time, &a.actor, a.seq).cmp(&(b.time, &b.actor, b.seq)));
    if args.json {
        return print_json(&to_json(&log)?, false);
    }
    let mut out = String::new();
    for c in log {
        use std::fmt::Write;
        let when = std::time::UNIX_EPOCH + std::time::Duration::from_secs(c.time.max(0) as u64);
        let _ = writeln!(
            out,
            "{}  {:<20} {}…  seq {:<6} {} op(s)",
            humantime::format_rfc3339_seconds(when),
            c.device,
            &c.actor[..c.actor.len().min(8)],
            c.seq,
            c.ops
        );
    }
    write_out(&out)
}
