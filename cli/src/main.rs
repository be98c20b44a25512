//! `crdtdir`: the command-line face of the crdtdir library. Parses, calls the library,
//! prints JSON, maps errors to exit codes (0 ok, 1 error, 2 usage, 3 refused, 4 no store,
//! 5 compaction refused) and error codes. Each command lives in its own module under
//! `cmd/`.

mod cmd;
mod config;
mod forward;
mod output;
mod place;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use crdtdir::{Options, Store};

use crate::output::Failure;

/// The help heading of the options every command takes (`global = true`), apart from each
/// command's own.
const GLOBAL: &str = "Global options";

#[derive(Parser)]
#[command(
    name = "crdtdir",
    version,
    about = "Sync an Automerge document through any file-sync tool",
    after_help = "\
Examples:
  crdtdir demo                                   # a real two-device merge in a temp folder
  export CRDTDIR_STORE=~/Sync/groceries
  crdtdir init
  crdtdir append insert /items/- '\"milk\"'
  crdtdir merge --pretty
  crdtdir --json status | jq .presence
  crdtdir docs new --from note.json              # another document in the same folder

Exit codes: 0 ok, 1 error, 2 usage, 3 refused, 4 no store, 5 compaction refused.
With --json, an error is one JSON line on stderr: {\"error\":{\"code\",\"exit\",\"message\",\"hint\"}}."
)]
struct Cli {
    /// The store folder. Default: the current folder, or the nearest folder above it that
    /// holds a store (`crdtdir.store`), as git finds its repository.
    #[arg(long, global = true, help_heading = GLOBAL, env = "CRDTDIR_STORE", default_value = ".")]
    store: PathBuf,
    /// This device's display name.
    #[arg(long, global = true, help_heading = GLOBAL, env = "CRDTDIR_DEVICE")]
    device: Option<String>,
    /// The document to act on, by id or crdtdir: URL (`crdtdir docs` lists them). Default:
    /// the store's root document.
    #[arg(long, global = true, help_heading = GLOBAL, env = "CRDTDIR_DOC", value_name = "ID")]
    doc: Option<String>,
    /// Local state directory (never inside the synced folder).
    #[arg(long, global = true, help_heading = GLOBAL, env = "CRDTDIR_STATE_DIR")]
    state_dir: Option<PathBuf>,
    /// This device writes nothing to the synced folder (no op file, heartbeat, snapshot or
    /// temp): it merges, reads, checks, shows status and watches; append, compact, repair,
    /// pack and init are refused (exit 3).
    #[arg(long, global = true, help_heading = GLOBAL, env = "CRDTDIR_READ_ONLY", value_parser = clap::builder::FalseyValueParser::new())]
    read_only: bool,
    /// JSON output for every command (status, log, check, pack, checkpoint, docs and key
    /// export print text otherwise), and errors as one JSON line on stderr:
    /// {"error":{"code":…,"exit":…,"message":…,"hint":…}}.
    #[arg(long, global = true, help_heading = GLOBAL)]
    json: bool,
    /// Indent JSON output.
    #[arg(long, global = true, help_heading = GLOBAL)]
    pretty: bool,
    /// Say what crdtdir does on stderr: -v its warnings and main steps, -vv every step and
    /// decision with timings (listing, cache, merge strategy, heartbeat), -vvv everything.
    /// CRDTDIR_LOG takes a filter instead (e.g. CRDTDIR_LOG=crdtdir=debug).
    #[arg(short, long, global = true, help_heading = GLOBAL, action = clap::ArgAction::Count)]
    verbose: u8,
    /// The config file's `keychain = true`: keys this device is given go to the OS keychain.
    #[arg(skip)]
    keychain: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Make the folder a new store.
    Init(cmd::init::Args),
    /// Change the document: one append is one change is one op file.
    Append(cmd::append::Args),
    /// Print the merged document as JSON.
    Merge(cmd::merge::Args),
    /// Print the JSON value at a JSON Pointer (default: the whole document).
    Get(cmd::get::Args),
    /// Devices (and which look online), problem files, forks, quarantined and waiting changes.
    Status(cmd::status::Args),
    /// Fold the history into one SQLite snapshot, when this device is alone (asks first).
    Compact(cmd::compact::Args),
    /// Write back, as a new snapshot, changes this device has that the folder lost.
    #[command(
        after_help = "Examples:\n  crdtdir repair      # when merge or status says the folder lost changes this device has"
    )]
    Repair,
    /// Fold this device's own op files into packs (few files for the sync tool; no need to
    /// be alone). Writes do it on their own every CRDTDIR_PACK_SIZE (256) changes.
    Pack(cmd::pack::Args),
    /// Publish a checkpoint: this device's merged document and the op files it covers, so a
    /// new device reads one file instead of every op file. Deletes nothing (no need to be
    /// alone). Writes do it on their own every CRDTDIR_CHECKPOINT_EVERY (10000) changes.
    #[command(
        after_help = "Examples:\n  crdtdir checkpoint            # publish one now (replaces this device's older one)\n  crdtdir --json checkpoint     # what it did, as JSON"
    )]
    Checkpoint,
    /// Read every file of the folder again, ignoring this device's cache, and name each
    /// damaged one (exit 1 when any is). Writes nothing, not even a heartbeat.
    #[command(
        after_help = "Examples:\n  crdtdir check                  # every document's files, packs entry by entry\n  crdtdir --json check | jq .damaged\n  crdtdir --doc ID check         # one document's files"
    )]
    Check,
    /// Forget a device that is gone for good (an old laptop, a reader that ran once): no
    /// device waits for its acknowledgement any more (packing, kept copies).
    Forget(cmd::forget::Args),
    /// Show a real merge: two devices edit one store concurrently in a temporary folder,
    /// their files cross as a sync tool would carry them, and both print the same JSON.
    Demo,
    /// The history: one line per change.
    Log(cmd::log::Args),
    /// Merge what arrives as it arrives: one JSON line per merged batch (heads, changes,
    /// JSON Pointer patches), until interrupted.
    Watch(cmd::watch::Args),
    /// An encrypted store's key: export it here, import it on another device.
    #[command(subcommand)]
    Key(cmd::key::Args),
    /// Write the merged document as an .automerge file (Automerge's own format).
    Export(cmd::export::Args),
    /// The documents of the store: list them, make one (`new`), delete one (`delete ID`).
    Docs(cmd::documents::Args),
    /// Serve this device's store to apps and to this device's commands: JSON lines on
    /// stdin/stdout and on a socket in the local state (`append`, `get` and `merge` use it
    /// when it runs).
    Serve(cmd::serve::Args),
    /// Print shell completions (bash, zsh, fish, elvish, powershell).
    Completions(cmd::docs::CompletionsArgs),
    /// Print the man page (or write one per command with --dir).
    Man(cmd::docs::ManArgs),
}

/// The command line as clap sees it, with the version naming the store format.
fn command() -> clap::Command {
    use clap::CommandFactory;
    // `crdtdir --version` names the on-disk format version this build writes.
    let version: &'static str = Box::leak(
        format!(
            "{} (store format {})",
            env!("CARGO_PKG_VERSION"),
            crdtdir::FORMAT_VERSION
        )
        .into_boxed_str(),
    );
    Cli::command().version(version).long_version(version)
}

fn main() -> ExitCode {
    use clap::FromArgMatches;
    let matches = match command().try_get_matches() {
        Ok(m) => m,
        // Help and version are not errors; usage errors with --json are JSON.
        Err(e) if e.use_stderr() && std::env::args_os().any(|a| a == "--json") => {
            output::set_format(true, false);
            let text = e.render().to_string();
            let first = text.lines().next().unwrap_or("usage error");
            let first = first.strip_prefix("error: ").unwrap_or(first);
            output::report_failure(output::EXIT_USAGE, "usage", first, None);
            return ExitCode::from(output::EXIT_USAGE);
        }
        Err(e) => e.exit(),
    };
    let mut cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    output::set_format(cli.json, cli.pretty);
    // The config file fills in what no flag or environment variable gave.
    let config = match config::load() {
        Ok(config) => config,
        Err(f) => {
            output::report_failure(f.exit, f.code, &f.message, f.hint.as_deref());
            return ExitCode::from(f.exit);
        }
    };
    // No --store and no CRDTDIR_STORE: the current folder when it is a store or inside one
    // (the store above it), else the config's store, else the current folder. (`init`
    // makes a store here, never above or elsewhere.)
    let default_store =
        matches.value_source("store") == Some(clap::parser::ValueSource::DefaultValue);
    if default_store && !matches!(cli.command, Command::Init(_)) {
        let cwd = std::env::current_dir().ok();
        match cwd.as_deref().and_then(crdtdir::find_store) {
            Some(found) if Some(found.as_path()) != cwd.as_deref() => cli.store = found,
            Some(_) => {}
            None => {
                if let Some(store) = config.store {
                    cli.store = store;
                }
            }
        }
    }
    cli.device = cli.device.or(config.device);
    cli.doc = cli.doc.or(config.doc);
    cli.state_dir = cli.state_dir.or(config.state_dir);
    // CRDTDIR_KEYCHAIN, set to anything, wins over the file.
    if std::env::var_os(crdtdir::KEYCHAIN_ENV).is_none() {
        cli.keychain = config.keychain.unwrap_or(false);
    }
    init_logging(cli.verbose);
    // Automerge can panic on a forged change; the library catches that and reports it, so
    // the default panic message would be noise. A panic that escapes is reported below.
    std::panic::set_hook(Box::new(|_| {}));
    match std::panic::catch_unwind(|| run(cli)) {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(f)) => {
            output::report_failure(f.exit, f.code, &f.message, f.hint.as_deref());
            ExitCode::from(f.exit)
        }
        Err(_) => {
            output::report_failure(
                output::EXIT_ERROR,
                "internal",
                "internal error (a bug): nothing was written after it",
                None,
            );
            ExitCode::from(output::EXIT_ERROR)
        }
    }
}

/// The environment variable that filters log lines (tracing's `EnvFilter` syntax).
const LOG_ENV: &str = "CRDTDIR_LOG";

/// Log lines on stderr for `-v` or `CRDTDIR_LOG`; none otherwise.
fn init_logging(verbose: u8) {
    use tracing_subscriber::fmt::format::FmtSpan;
    let filter = match std::env::var(LOG_ENV) {
        Ok(f) if !f.trim().is_empty() => f,
        _ => match verbose {
            0 => return,
            1 => "crdtdir=info".to_string(),
            2 => "crdtdir=debug".to_string(),
            _ => "trace".to_string(),
        },
    };
    let filter = tracing_subscriber::EnvFilter::try_new(&filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("crdtdir=info"));
    // Spans print their time when they close, so a slow step shows.
    let spans = if verbose >= 2 || std::env::var_os(LOG_ENV).is_some() {
        FmtSpan::CLOSE
    } else {
        FmtSpan::NONE
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_span_events(spans)
        .with_timer(tracing_subscriber::fmt::time::Uptime::default())
        .with_writer(std::io::stderr)
        .try_init();
}

fn options(cli: &Cli) -> Options {
    let mut o = Options::new();
    if let Some(d) = &cli.state_dir {
        o = o.state_dir(d);
    }
    if let Some(d) = &cli.device {
        o = o.device(d);
    }
    let keychain = match &cli.command {
        Command::Init(args) => args.keychain(),
        Command::Key(args) => args.keychain(),
        _ => false,
    };
    o.read_only(cli.read_only)
        .keychain(keychain || cli.keychain)
}

fn run(cli: Cli) -> Result<(), Failure> {
    forward::set_options(cli.device.clone(), cli.read_only);
    let opts = options(&cli);
    let store = match &cli.command {
        Command::Demo => return cmd::demo::run(),
        Command::Completions(args) => return cmd::docs::completions(args, command()),
        Command::Man(args) => return cmd::docs::man(args, command()),
        Command::Init(args) => cmd::init::run(&cli.store, opts, args)?,
        // A store this device left: no folder to open.
        Command::Forget(args) if args.is_local() => return cmd::forget::local(&opts, args),
        command => {
            let store = match place::remote(&cli.store) {
                Some(folder) => Store::open_in(folder?, opts)?,
                None => Store::open(&cli.store, opts)?,
            };
            output::progress_bar(&store);
            match &cli.doc {
                // The root document's handle beats below, for the whole device.
                Some(id) => on_store(
                    &crdtdir::Repo::from(store.clone()).find(&id.parse()?)?,
                    command,
                )?,
                None => on_store(&store, command)?,
            }
            store
        }
    };
    // A command that succeeded on the store says so in a heartbeat (rate-limited; a store
    // this build must not write to gets none; a dry run changes nothing).
    let dry_run = matches!(&cli.command, Command::Compact(args) if args.dry_run)
        || matches!(&cli.command, Command::Pack(args) if args.dry_run)
        || matches!(&cli.command, Command::Check);
    // A command a server answered: the server beats for the device.
    if dry_run || forward::forwarded() {
        return Ok(());
    }
    if let Err(e) = store.beat() {
        eprintln!("crdtdir: warning: no heartbeat published: {e}");
    }
    Ok(())
}

fn on_store(store: &Store, command: &Command) -> Result<(), Failure> {
    match command {
        Command::Init(_) | Command::Demo | Command::Completions(_) | Command::Man(_) => {
            unreachable!("handled by run")
        }
        Command::Export(args) => cmd::export::run(store, args),
        Command::Key(args) => cmd::key::run(store, args),
        Command::Append(args) => cmd::append::run(store, args),
        Command::Merge(args) => cmd::merge::run(store, args),
        Command::Get(args) => cmd::get::run(store, args),
        Command::Status(args) => cmd::status::run(store, args),
        Command::Compact(args) => cmd::compact::run(store, args),
        Command::Repair => cmd::repair::run(store),
        Command::Pack(args) => cmd::pack::run(store, args),
        Command::Checkpoint => cmd::checkpoint::run(store),
        Command::Check => cmd::check::run(store),
        Command::Forget(args) => cmd::forget::run(store, args),
        Command::Log(args) => cmd::log::run(store, args),
        Command::Watch(args) => cmd::watch::run(store, args),
        Command::Docs(args) => cmd::documents::run(store, args),
        Command::Serve(args) => cmd::serve::run(store, args),
    }
}

#[cfg(test)]
mod tests {
    /// The command line is consistent (clap's own checks), and every positional argument of
    /// every command has help text and every command examples.
    #[test]
    fn every_command_has_help_and_examples() {
        fn walk(cmd: &clap::Command, path: &str) {
            for arg in cmd.get_positionals() {
                assert!(
                    arg.get_help().is_some(),
                    "{path}: argument {} has no help",
                    arg.get_id()
                );
            }
            let leaf = cmd.get_subcommands().next().is_none();
            if leaf && !["demo", "help"].contains(&cmd.get_name()) && !path.contains("append ") {
                assert!(
                    cmd.get_after_help()
                        .is_some_and(|h| h.to_string().contains("Examples:")),
                    "{path}: no examples in --help"
                );
            }
            for sub in cmd.get_subcommands() {
                walk(sub, &format!("{path} {}", sub.get_name()));
            }
        }
        let cmd = super::command();
        cmd.clone().debug_assert();
        walk(&cmd, "crdtdir");
    }
}
