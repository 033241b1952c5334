//! The command line (SPEC §2): one file per subcommand.

mod audit;
mod check;
mod grants;
mod lookup;
mod progress;
mod run;
mod transfers;
mod upstreams;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::DEFAULT_PATH;

/// residency-proxy: a reverse proxy that keeps health data inside the EEA.
#[derive(Debug, Parser)]
#[command(name = "residency-proxy", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    /// Log line format on stderr (filter with RUST_LOG, default "info").
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// `--log-format`
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One line per event, `key=value` fields.
    Text,
    /// One JSON object per line (for log shippers).
    Json,
    /// Multi-line, human-friendly.
    Pretty,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the proxy.
    Run(ConfigArg),
    /// Validate the config and GeoIP database, print a summary; exit 0 or 1.
    Check {
        #[command(flatten)]
        config: ConfigArg,
        /// Exit 0 even if a route has no upstream address its policy allows
        /// (say, where the storage names do not resolve); warn instead.
        #[arg(long)]
        allow_unready_routes: bool,
    },
    /// Print the country and verdict of each IP under the configured policy.
    Lookup {
        #[command(flatten)]
        config: ConfigArg,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Addresses to judge (IPv4 or IPv6).
        #[arg(required = true, value_name = "IP")]
        ips: Vec<String>,
    },
    /// Resolve every route's upstreams now and print each IP's country and
    /// verdict; exit 1 if a route has no allowed IP (pre-flight).
    Upstreams {
        #[command(flatten)]
        config: ConfigArg,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Audit trail tools.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// The cartography of flows outside the allowed area, from audit logs.
    Transfers {
        /// Audit files, oldest first; or a directory holding several
        /// chains (its `*.jsonl` files, grouped by file stem, each
        /// verified on its own).
        /// Or `s3://bucket/prefix`: the objects `[audit.export]` uploaded,
        /// read through the endpoint and credentials of `--config`, each
        /// origin's chains verified on their own.
        #[arg(long = "audit", value_name = "PATH", required = true, num_args = 1..)]
        audit: Vec<PathBuf>,
        /// Config whose `[audit.export]` reads an `s3://` source.
        #[arg(long, short = 'c', value_name = "PATH", default_value = DEFAULT_PATH)]
        config: PathBuf,
        /// Output format.
        #[arg(long, value_enum, default_value_t = ReportFormat::Md)]
        format: ReportFormat,
        #[command(flatten)]
        expect: ExpectArgs,
        #[command(flatten)]
        period: transfers::PeriodArgs,
    },
    /// Signed, time-boxed grants (SPEC §9): keys, signing, checking.
    #[command(subcommand)]
    Grants(GrantsCommand),
    /// The annual access review pack: each listed identity's owner, role,
    /// review and use, identities seen but not listed, unused ones.
    AccessReview {
        /// The identities file (`[[identity]]` entries).
        #[arg(long, value_name = "FILE")]
        identities: PathBuf,
        /// Audit files, oldest first (one chain, verified; a chain that
        /// does not verify gives no report and exit 1).
        #[arg(long = "audit", value_name = "PATH", required = true, num_args = 1..)]
        audit: Vec<PathBuf>,
        /// The review period (as `[identities] review_every`).
        #[arg(long, value_name = "DURATION", default_value = "365d")]
        review_every: String,
        /// Output format.
        #[arg(long, value_enum, default_value_t = ReportFormat::Md)]
        format: ReportFormat,
    },
}

/// `residency-proxy grants …`
#[derive(Debug, Subcommand)]
pub enum GrantsCommand {
    /// Make an approver's Ed25519 key pair: the private key in PATH (mode
    /// 0600), the public key in PATH.pub and on stdout.
    Keygen {
        /// Where to write the private key (must not exist).
        #[arg(value_name = "PATH")]
        path: PathBuf,
    },
    /// Add the approver's signature of grant ID to GRANTS_FILE.
    Sign {
        /// The approver's private key (made by `grants keygen`).
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        /// The approver's name, as in `[grants] approvers`.
        #[arg(long, value_name = "NAME")]
        approver: String,
        /// The grants file.
        #[arg(value_name = "GRANTS_FILE")]
        file: PathBuf,
        /// The grant's id.
        #[arg(value_name = "ID")]
        id: String,
    },
    /// Each grant of the configured file: valid, or why not; exit 1 if any
    /// opens nothing now.
    Check(ConfigArg),
}

/// `residency-proxy audit …`
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Verify the hash chain across files in order; name the first bad record.
    Verify {
        /// Audit files, oldest first; or a directory holding several
        /// chains (its `*.jsonl` files, grouped by file stem, each
        /// verified on its own).
        /// Or `s3://bucket/prefix`: the objects `[audit.export]` uploaded
        /// (`<prefix><origin>/<file>`), read through the endpoint and
        /// credentials of `--config`, each origin's chains on their own.
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<PathBuf>,
        /// Config whose `[audit.export]` reads an `s3://` source.
        #[arg(long, short = 'c', value_name = "PATH", default_value = DEFAULT_PATH)]
        config: PathBuf,
        #[command(flatten)]
        expect: ExpectArgs,
        /// Also check every file against its signed checkpoints
        /// (`FILE.checkpoints`) with this public key (made by `audit
        /// keygen`); repeat for several replicas' keys (any may sign).
        #[arg(long, value_name = "PUBLIC_KEY")]
        key: Vec<PathBuf>,
    },
    /// Make an Ed25519 key pair for signed checkpoints: the private key in
    /// PATH (mode 0600), the public key in PATH.pub.
    Keygen {
        /// The key's name, in signature lines (default: the host name).
        #[arg(long)]
        name: Option<String>,
        /// Where to write the private key (must not exist).
        #[arg(value_name = "PATH")]
        path: PathBuf,
    },
}

/// Where the chain must start and end (`audit verify`, `transfers`).
#[derive(Debug, clap::Args)]
pub struct ExpectArgs {
    /// The first record's prev must be HASH (the last hash printed by the
    /// verification of the segment before), instead of genesis (64 zeros).
    #[arg(long, value_name = "HASH", value_parser = parse_hash)]
    pub from: Option<String>,
    /// The last record's hash must be HASH (a hash kept elsewhere): catches
    /// records removed from the end.
    #[arg(long = "expect-last", value_name = "HASH", value_parser = parse_hash)]
    pub expect_last: Option<String>,
}

impl ExpectArgs {
    fn expect(self) -> crate::audit::Expect {
        crate::audit::Expect {
            from: self.from,
            last: self.expect_last,
        }
    }
}

/// A full hash as `audit verify` prints it: 64 hex characters (upper case
/// accepted, kept in lower case).
fn parse_hash(s: &str) -> Result<String, String> {
    if s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(s.to_ascii_lowercase())
    } else {
        Err("expected 64 hex characters (a full hash as `audit verify` prints it)".to_owned())
    }
}

/// `transfers --format`
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportFormat {
    /// Markdown table.
    Md,
    /// JSON document.
    Json,
    /// One self-contained HTML page to publish: a world map, the flows
    /// beside the `[transparency]` declarations, in `--lang`.
    Html,
}

/// `--config PATH`
#[derive(Debug, clap::Args)]
pub struct ConfigArg {
    /// Config file.
    #[arg(long, short = 'c', value_name = "PATH", default_value = DEFAULT_PATH)]
    pub config: PathBuf,
}

/// Runs a parsed command line; the result becomes the exit code.
///
/// # Errors
/// Whatever the command failed with; `main` prints it and exits 1.
pub fn dispatch(cli: Cli) -> anyhow::Result<std::process::ExitCode> {
    match cli.command {
        Command::Run(c) => run::run(&c.config),
        Command::Check {
            config,
            allow_unready_routes,
        } => check::check(&config.config, allow_unready_routes),
        Command::Lookup { config, json, ips } => lookup::lookup(&config.config, json, &ips),
        Command::Upstreams { config, json } => upstreams::upstreams(&config.config, json),
        Command::Audit(AuditCommand::Verify {
            paths,
            expect,
            key,
            config,
        }) => audit::verify(&paths, &expect.expect(), &key, &config),
        Command::Audit(AuditCommand::Keygen { name, path }) => audit::keygen(name, &path),
        Command::Transfers {
            audit,
            format,
            expect,
            config,
            period,
        } => transfers::transfers(&audit, format, &expect.expect(), &config, &period),
        Command::Grants(GrantsCommand::Keygen { path }) => grants::keygen(&path),
        Command::Grants(GrantsCommand::Sign {
            key,
            approver,
            file,
            id,
        }) => grants::sign(&key, &approver, &file, &id),
        Command::Grants(GrantsCommand::Check(c)) => grants::check(&c.config),
        Command::AccessReview {
            identities,
            audit,
            review_every,
            format,
        } => grants::access_review(&identities, &review_every, &audit, format),
    }
}

/// Writes a new key pair: `private` into `path` (created, mode 0600) and
/// `public` into `path.pub` (0644); neither may exist. Returns the public
/// key's path. Shared by `audit keygen` and `grants keygen`.
///
/// # Errors
/// A file that exists or cannot be written.
pub(crate) fn write_key_pair(
    path: &std::path::Path,
    private: &str,
    public: &str,
) -> anyhow::Result<std::path::PathBuf> {
    use anyhow::Context as _;
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut public_path = path.as_os_str().to_owned();
    public_path.push(".pub");
    let public_path = std::path::PathBuf::from(public_path);
    for (file, text, mode) in [
        (path, private, 0o600),
        (public_path.as_path(), public, 0o644),
    ] {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(file)
            .and_then(|mut f| f.write_all(format!("{text}\n").as_bytes()))
            .with_context(|| format!("cannot write key file {}", file.display()))?;
    }
    Ok(public_path)
}
