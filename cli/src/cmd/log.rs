//! `crdtdir log`: the history, one line per change (with `--json`, one JSON object per
//! line), oldest first: when, which device, actor and seq, the change's hash, how many
//! operations, the JSON Pointers it wrote to, and its message.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crdtdir::Store;

use crate::output::{json_text, rfc3339, to_json, write_out, Failure};

#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  crdtdir log --limit 20\n  crdtdir log --since 2h\n  crdtdir log --json --since 2026-12-01T00:00:00Z | jq -r .device"
)]
pub(crate) struct Args {
    /// Only the N most recent changes.
    #[arg(long, value_name = "N")]
    limit: Option<usize>,
    /// Only changes made since TIME: RFC 3339 (2026-12-01T09:00:00Z), a date (2026-12-01:
    /// its midnight, UTC) or an age (2h, 3days).
    #[arg(long, value_name = "TIME", value_parser = parse_since)]
    since: Option<i64>,
}

/// A time as Unix seconds: RFC 3339, a date (its midnight, UTC), or an age before now.
fn parse_since(text: &str) -> Result<i64, String> {
    let is_date = text.len() == 10
        && text.bytes().enumerate().all(|(i, b)| {
            if i == 4 || i == 7 {
                b == b'-'
            } else {
                b.is_ascii_digit()
            }
        });
    let text = if is_date {
        format!("{text}T00:00:00Z")
    } else {
        text.to_string()
    };
    let text = text.as_str();
    let when = match humantime::parse_rfc3339_weak(text) {
        Ok(t) => t,
        Err(_) => {
            let age = humantime::parse_duration(text).map_err(|_| {
                format!("{text:?} is neither an RFC 3339 time (2026-12-01T09:00:00Z), a date (2026-12-01) nor an age (2h, 3days)")
            })?;
            SystemTime::now().checked_sub(age).unwrap_or(UNIX_EPOCH)
        }
    };
    Ok(when
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs() as i64)
}

pub(crate) fn run(store: &Store, args: &Args) -> Result<(), Failure> {
    let view = store.read()?;
    let mut log = store.history()?;
    log.sort_by(|a, b| (a.time, &a.actor, a.seq).cmp(&(b.time, &b.actor, b.seq)));
    if let Some(since) = args.since {
        log.retain(|c| c.time >= since);
    }
    if let Some(n) = args.limit {
        log.drain(..log.len().saturating_sub(n));
    }
    let hashes: Vec<&str> = log.iter().map(|c| c.hash.as_str()).collect();
    let touched = view.touched_paths_of(&hashes);
    let mut out = String::new();
    for (c, paths) in log.iter().zip(touched) {
        use std::fmt::Write;
        if crate::output::json_wanted() {
            let mut line = to_json(c)?;
            line["time"] = rfc3339(c.time).into();
            line["paths"] = paths.into();
            out.push_str(&json_text(&line)?);
            out.push('\n');
            continue;
        }
        let _ = write!(
            out,
            "{}  {:<20} {}…  seq {:<6} {}  {} op(s)",
            rfc3339(c.time),
            c.device,
            &c.actor[..c.actor.len().min(8)],
            c.seq,
            &c.hash[..c.hash.len().min(8)],
            c.ops
        );
        // What it touched: the first few paths, and how many more.
        const SHOWN: usize = 3;
        if !paths.is_empty() {
            let _ = write!(out, " on {}", paths[..paths.len().min(SHOWN)].join(", "));
            if paths.len() > SHOWN {
                let _ = write!(out, " and {} more", paths.len() - SHOWN);
            }
        }
        match &c.message {
            Some(m) => {
                let _ = writeln!(out, "  {}", crate::output::one_line(m));
            }
            None => out.push('\n'),
        }
    }
    write_out(&out)
}
