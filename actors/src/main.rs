//! `ilp-connector`: the node binary. `run` loads and validates `config.toml` (every error, each
//! with its key path, exit code 2), starts the node's supervised actors and serves until SIGINT
//! or SIGTERM; `check-config` validates and prints the effective configuration. The operator
//! commands (`ping`, `balances`, `routes`, `snapshot`) call a running node's admin API;
//! `restore` copies a snapshot over `store.path` while no node runs on it.

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Writes one line on stdout with one `write` call. `println!` hands its format's pieces to
/// stdout's buffer one by one, and a line longer than the buffer leaves in pieces; scripts wait
/// for these lines in a file the log may share.
macro_rules! out_line {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let mut line = format!($($arg)*);
        line.push('\n');
        let _ = std::io::stdout().lock().write_all(line.as_bytes());
    }};
}

/// Writes one line on stderr with one `write` call (`eprintln!` writes each piece of its
/// format separately: stderr is unbuffered).
macro_rules! err_line {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let mut line = format!($($arg)*);
        line.push('\n');
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }};
}

use ilp::config::{Config, StoreBackend};
use ilp_actors::admin::cli::{
    self as operator, AdminTarget, CliError, HttpOptions, Operation, PayOptions,
};
use ilp_actors::admin::{AdminServer, AdminState};
use ilp_actors::clock::Clock;
use ilp_actors::link::btp_ws::{links_for_config, BtpOptions};
use ilp_actors::link::http::{links_from_config, HttpLinkOptions, HttpServer, HttpServerOptions};
use ilp_actors::link::{Link, UnconnectedLink};
use ilp_actors::messages::AccountId;
use ilp_actors::metrics::Metrics;
use ilp_actors::node::{Node, NodeOptions, NodeRandomness};
use ilp_actors::reload::{self, LinkSet};
use ilp_actors::spsp_server::{SpspAccounts, SpspServer};
use ilp_actors::store::memory::MemoryStore;
use ilp_actors::store::rocks::{RocksStore, WriterOptions};
use ilp_actors::store::Store;
use ilp_actors::tls;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

const USAGE: &str = "usage: ilp-connector [COMMAND] [OPTIONS]
  run              load the configuration and start the node (default command)
  check-config     validate the configuration and print the effective values
  ping ADDRESS     echo round trip from the running node to ADDRESS
  balances         the running node's accounts and balances
  receivers        the running node's local accounts: payment pointers, amounts received
  routes           the running node's routing table
  snapshot         snapshot the running node's store; prints the snapshot's path
  pay              pay a payment pointer from one of the running node's local accounts
  http [METHOD] URL  fetch URL like curl, paying what a paid HTTP API asks (HTTP-ILP)
  restore DIR      copy snapshot DIR over store.path (the node must be stopped)
  help [COMMAND]   this text, or one command's
  --config PATH    configuration file (default: config.toml)
  --admin URL      admin API of the running node (default: from [listeners.admin])
  --token TOKEN    the admin API's bearer token (default: $ILP_ADMIN_TOKEN, else from
                   [listeners.admin])
`ilp-connector COMMAND --help` shows one command's usage.";

/// Where an operator command finds the node, said the same way under every such command.
const OPERATOR_OPTIONS: &str = "
  --admin URL      the node's admin API, e.g. http://127.0.0.1:7770 (default: the address
                   of [listeners.admin] in the configuration)
  --token TOKEN    bearer token of the admin API (default: $ILP_ADMIN_TOKEN, else the token
                   of [listeners.admin]); the environment keeps it out of `ps`
  --config PATH    configuration file to take the address and token from (default:
                   config.toml; with --admin it is read only when named, or when it exists
                   and no token is given)";

const CONFIG_OPTION: &str = "
  --config PATH    configuration file (default: config.toml)";

/// The environment variable an operator command takes the admin API's token from.
const TOKEN_VARIABLE: &str = "ILP_ADMIN_TOKEN";

/// One command's usage, for `COMMAND --help` and `help COMMAND`.
fn command_usage(command: &str) -> Option<String> {
    let (synopsis, what, options) = match command {
        "run" => (
            "run [--config PATH]",
            "Loads and validates the configuration, starts the node and serves until SIGINT or
SIGTERM (packets in flight drain first); SIGHUP reloads the configuration.",
            CONFIG_OPTION,
        ),
        "check-config" => (
            "check-config [--config PATH]",
            "Validates the configuration and prints the effective values; exit 2 with every
error, one per line with its key path.",
            CONFIG_OPTION,
        ),
        "ping" => (
            "ping ADDRESS [--admin URL] [--token TOKEN] [--config PATH]",
            "Echo round trip from the running node to ADDRESS (a connector's own address, the
node's own included); prints the answer as JSON, or exits 1 with the Reject.",
            OPERATOR_OPTIONS,
        ),
        "balances" => (
            "balances [--admin URL] [--token TOKEN] [--config PATH]",
            "The running node's accounts as a table: relation, asset, balance, amounts pending
and link state.",
            OPERATOR_OPTIONS,
        ),
        "receivers" => (
            "receivers [--admin URL] [--token TOKEN] [--config PATH]",
            "The running node's local accounts as a table: where each is paid (its payment
pointer, or its SPSP URL when the SPSP server has no https public_url), asset, amount received
and maximum.",
            OPERATOR_OPTIONS,
        ),
        "routes" => (
            "routes [--admin URL] [--token TOKEN] [--config PATH]",
            "The running node's routing table: prefix, next hop account and kind.",
            OPERATOR_OPTIONS,
        ),
        "snapshot" => (
            "snapshot [--admin URL] [--token TOKEN] [--config PATH]",
            "Takes a RocksDB checkpoint of the running node's store and prints its directory.",
            OPERATOR_OPTIONS,
        ),
        "pay" => (
            "pay --from ACCOUNT --to POINTER (--amount N | --deliver N) [--slippage 0.01]
       [--max-packet N] [--destination-asset CODE:SCALE] [--quote-only]
       [--idempotency-key KEY] [--json] [--admin URL] [--token TOKEN] [--config PATH]
   or: pay --circular --via ACCOUNT --amount N [--return-via ACCOUNT] [--min-return N]
       [--timeout-ms MS] [--json] [--admin URL] [--token TOKEN] [--config PATH]",
            "Pays POINTER ($host/path, or an https SPSP URL) from the local account ACCOUNT of the
running node: probes the path's rate and refuses it when it is worse than the node's rate
table less the slippage (default [sender] default_slippage), then sends --amount (source base
units) or delivers --deliver (destination base units). Progress goes to stderr once a second;
the result is printed as a table, or as JSON with --json. --quote-only prints the quote and
sends no money. Without --idempotency-key a random key is used and printed: repeating the
command with it never pays twice. Exit 0 when the payment completed, 1 when it failed.

--circular sends --amount (in ACCOUNT's base units) out through the peer account --via,
addressed to the node itself, and fulfills it when it comes back (through --return-via when
given, with at least --min-return of that account's base units): a route test, a measure of
what the path delivers, or a move of credit from one peer to another. Both legs are booked
together when it returns. Prints the amounts, expiries and the path's rate.",
            OPERATOR_OPTIONS,
        ),
        "http" => (
            "http [METHOD] URL --from ACCOUNT [--max-price N] [-d DATA | -d @FILE]
       [-H 'Name: value']... [-i] [--json] [--timeout-ms MS] [--admin URL] [--token TOKEN]
       [--config PATH]",
            "Sends the request (GET, or POST with -d, unless METHOD or -X says) through the running
node for its local account ACCOUNT, with that account's Pay-Token for the server. When the
server answers 402 with a Pay header (HTTP-ILP: interledger-psk2 or interledger-stream), the
node pays the price less what the token holds, debiting ACCOUNT at most --max-price of its base
units over the whole request (nothing without --max-price), then sends the request again.
Prints the body on stdout (with -i the status line and headers first; --json the node's whole
answer) and what was paid on stderr. Exit 0 for a 1xx-3xx answer, 1 otherwise. The whole
request, payments included, ends within --timeout-ms (default 30000, at most 60000); a payment
still running then goes on, and what it delivers stays on the token for the next request.",
            OPERATOR_OPTIONS,
        ),
        "restore" => (
            "restore DIR [--config PATH]",
            "Copies snapshot DIR over store.path of the configuration; refused while a node
runs on that store.",
            CONFIG_OPTION,
        ),
        "help" => ("help [COMMAND]", "This text, or one command's usage.", ""),
        _ => return None,
    };
    Some(format!("usage: ilp-connector {synopsis}\n{what}{options}"))
}

/// Pause between the last packet answered and the links closing at shutdown.
const SHUTDOWN_LINGER: Duration = Duration::from_millis(250);

enum Command {
    Run,
    CheckConfig,
    Operator(Operation),
    Restore(PathBuf),
}

struct Args {
    command: Command,
    /// `--config`, when given.
    config: Option<PathBuf>,
    admin: Option<String>,
    token: Option<String>,
}

/// What the command line asks for.
enum Parsed {
    Args(Box<Args>),
    /// Help was asked for: print this on stdout and exit 0, touching no file.
    Help(String),
}

/// A usage error: the message, and the usage to show under it.
struct UsageError {
    message: String,
    usage: String,
}

fn parse_args(args: impl Iterator<Item = String>) -> Result<Parsed, UsageError> {
    let mut words = Vec::new();
    let mut config = None;
    let mut admin = None;
    let mut token = None;
    let mut help = false;
    let mut pay = PayOptions::default();
    let mut pay_flags: Vec<String> = Vec::new();
    let mut http = HttpOptions::default();
    let mut http_flags: Vec<String> = Vec::new();
    let mut problem: Option<String> = None;
    let mut args = args.peekable();
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => (flag.to_owned(), Some(value)),
            _ => (arg.clone(), None),
        };
        let mut value = |name: &str| -> Option<String> {
            let value = inline.map(str::to_owned).or_else(|| args.next());
            if value.is_none() {
                problem.get_or_insert_with(|| format!("{name} needs a value"));
            }
            value
        };
        match flag.as_str() {
            "-h" | "--help" => help = true,
            "--config" | "-c" => config = value("--config").map(PathBuf::from),
            "--admin" => admin = value("--admin"),
            "--token" => token = value("--token"),
            "--from"
            | "--to"
            | "--amount"
            | "--deliver"
            | "--slippage"
            | "--max-packet"
            | "--destination-asset"
            | "--idempotency-key"
            | "--via"
            | "--return-via"
            | "--min-return"
            | "--timeout-ms" => {
                let v = value(&flag);
                pay_flags.push(flag.clone());
                match flag.as_str() {
                    "--from" => pay.from = v.unwrap_or_default(),
                    "--to" => pay.to = v.unwrap_or_default(),
                    "--amount" => pay.amount = v,
                    "--deliver" => pay.deliver = v,
                    "--slippage" => pay.slippage = v,
                    "--max-packet" => pay.max_packet = v,
                    "--destination-asset" => pay.destination_asset = v,
                    "--via" => pay.via = v,
                    "--return-via" => pay.return_via = v,
                    "--min-return" => pay.min_return = v,
                    "--timeout-ms" => match v.as_deref().map(str::parse::<u64>) {
                        Some(Ok(ms)) => pay.timeout_ms = Some(ms),
                        Some(Err(_)) => {
                            problem.get_or_insert_with(|| {
                                "--timeout-ms needs a number of milliseconds".into()
                            });
                        }
                        None => {}
                    },
                    _ => pay.idempotency_key = v,
                }
            }
            "-X" | "--request" | "-d" | "--data" | "-H" | "--header" | "--max-price" => {
                let v = value(&flag);
                http_flags.push(flag.clone());
                match flag.as_str() {
                    "-X" | "--request" => http.method = v,
                    "-d" | "--data" => http.data = v,
                    "-H" | "--header" => http.headers.extend(v),
                    _ => http.max_price = v,
                }
            }
            "-i" | "--include" => {
                http.include = true;
                http_flags.push(flag.clone());
            }
            "--circular" => {
                pay.circular = true;
                pay_flags.push(flag.clone());
            }
            "--quote-only" => {
                pay.quote_only = true;
                pay_flags.push(flag.clone());
            }
            "--json" => {
                pay.json = true;
                pay_flags.push(flag.clone());
            }
            other if other.starts_with('-') => {
                problem.get_or_insert_with(|| format!("unknown argument {other:?}"));
            }
            _ => words.push(arg),
        }
    }
    let mut words = words.into_iter();
    let name = words.next();
    let command_name = name.as_deref().unwrap_or("run");
    if command_name == "help" {
        help = true;
    }
    let Some(usage) = command_usage(command_name) else {
        return Err(UsageError {
            message: format!("unknown command {command_name:?}"),
            usage: USAGE.to_owned(),
        });
    };
    if help {
        // `help`, `--help`, `help COMMAND`, `COMMAND --help`: no file is read.
        let topic = match command_name {
            "help" => words.next(),
            _ => name,
        };
        return match topic {
            None => Ok(Parsed::Help(USAGE.to_owned())),
            Some(topic) => command_usage(&topic)
                .map(Parsed::Help)
                .ok_or_else(|| UsageError {
                    message: format!("unknown command {topic:?}"),
                    usage: USAGE.to_owned(),
                }),
        };
    }
    let fail = |message: String| UsageError {
        message,
        usage: usage.clone(),
    };
    if let Some(problem) = problem {
        return Err(fail(problem));
    }
    let mut operand = |what: &str| {
        words
            .next()
            .ok_or_else(|| fail(format!("{command_name} needs {what}")))
    };
    let command = match command_name {
        "run" => Command::Run,
        "check-config" => Command::CheckConfig,
        "ping" => Command::Operator(Operation::Ping(operand("an ILP address")?)),
        "balances" => Command::Operator(Operation::Balances),
        "receivers" => Command::Operator(Operation::Receivers),
        "routes" => Command::Operator(Operation::Routes),
        "snapshot" => Command::Operator(Operation::Snapshot),
        "pay" if pay.circular => {
            if pay.via.is_none() {
                return Err(fail("pay --circular needs --via ACCOUNT".into()));
            }
            if pay.amount.is_none() {
                return Err(fail("pay --circular needs --amount N".into()));
            }
            let only_direct = [
                (!pay.from.is_empty(), "--from"),
                (!pay.to.is_empty(), "--to"),
                (pay.deliver.is_some(), "--deliver"),
                (pay.slippage.is_some(), "--slippage"),
                (pay.max_packet.is_some(), "--max-packet"),
                (pay.destination_asset.is_some(), "--destination-asset"),
                (pay.quote_only, "--quote-only"),
                (pay.idempotency_key.is_some(), "--idempotency-key"),
            ];
            if let Some(flag) = first_given(&only_direct) {
                return Err(fail(format!(
                    "{flag} is for paying a pointer, not for pay --circular"
                )));
            }
            Command::Operator(Operation::Pay(Box::new(pay.clone())))
        }
        "pay" => {
            let only_circular = [
                (pay.via.is_some(), "--via"),
                (pay.return_via.is_some(), "--return-via"),
                (pay.min_return.is_some(), "--min-return"),
                (pay.timeout_ms.is_some(), "--timeout-ms"),
            ];
            if let Some(flag) = first_given(&only_circular) {
                return Err(fail(format!("{flag} is an option of pay --circular")));
            }
            if pay.from.is_empty() {
                return Err(fail("pay needs --from ACCOUNT".into()));
            }
            if pay.to.is_empty() {
                return Err(fail("pay needs --to POINTER".into()));
            }
            if pay.amount.is_some() == pay.deliver.is_some() {
                return Err(fail("pay needs one of --amount N and --deliver N".into()));
            }
            Command::Operator(Operation::Pay(Box::new(pay.clone())))
        }
        "http" => {
            let first = operand("a URL")?;
            let (method, url) = match words.next() {
                Some(url) => (Some(first), url),
                None => (None, first),
            };
            if method.is_some() && http.method.is_some() {
                return Err(fail(
                    "give the method once: http METHOD URL or -X METHOD".into(),
                ));
            }
            let only_pay = [
                (!pay.to.is_empty(), "--to"),
                (pay.amount.is_some(), "--amount"),
                (pay.deliver.is_some(), "--deliver"),
                (pay.slippage.is_some(), "--slippage"),
                (pay.max_packet.is_some(), "--max-packet"),
                (pay.destination_asset.is_some(), "--destination-asset"),
                (pay.quote_only, "--quote-only"),
                (pay.idempotency_key.is_some(), "--idempotency-key"),
                (pay.circular, "--circular"),
                (pay.via.is_some(), "--via"),
                (pay.return_via.is_some(), "--return-via"),
                (pay.min_return.is_some(), "--min-return"),
            ];
            if let Some(flag) = first_given(&only_pay) {
                return Err(fail(format!("{flag} is an option of pay, not of http")));
            }
            if pay.from.is_empty() {
                return Err(fail("http needs --from ACCOUNT".into()));
            }
            if let Some(max) = &http.max_price {
                if max.parse::<u64>().is_err() {
                    return Err(fail(format!(
                        "--max-price {max:?}: a whole number of the account's base units"
                    )));
                }
            }
            http.from = pay.from.clone();
            http.url = url;
            http.method = http.method.clone().or(method);
            http.json = pay.json;
            http.timeout_ms = pay.timeout_ms;
            Command::Operator(Operation::Http(Box::new(http.clone())))
        }
        "restore" => Command::Restore(PathBuf::from(operand("a snapshot directory")?)),
        other => return Err(fail(format!("unknown command {other:?}"))),
    };
    if let Some(extra) = words.next() {
        return Err(fail(format!("unexpected argument {extra:?}")));
    }
    if command_name != "pay" && command_name != "http" {
        if let Some(flag) = pay_flags.first() {
            return Err(fail(format!("{flag} is an option of pay")));
        }
    }
    if command_name != "http" {
        if let Some(flag) = http_flags.first() {
            return Err(fail(format!("{flag} is an option of http")));
        }
    }
    if !matches!(command, Command::Operator(_)) {
        for (given, flag) in [(admin.is_some(), "--admin"), (token.is_some(), "--token")] {
            if given {
                return Err(fail(format!(
                    "{flag} is for the commands that call a running node (ping, balances, routes, snapshot, pay, http)"
                )));
            }
        }
    }
    Ok(Parsed::Args(Box::new(Args {
        command,
        config,
        admin,
        token,
    })))
}

/// The first flag of `flags` (given?, name) that was given.
fn first_given<'a>(flags: &[(bool, &'a str)]) -> Option<&'a str> {
    flags
        .iter()
        .find(|(given, _)| *given)
        .map(|(_, flag)| *flag)
}

const DEFAULT_CONFIG: &str = "config.toml";

fn load(path: &Path) -> Result<Config, ExitCode> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        err_line!("cannot read {}: {e}", path.display());
        ExitCode::from(2)
    })?;
    Config::from_toml_str(&text).map_err(|errors| {
        err_line!(
            "{}: {} configuration error(s):",
            path.display(),
            errors.errors().len()
        );
        for e in errors.errors() {
            err_line!("  {e}");
        }
        ExitCode::from(2)
    })
}

/// Prints a command's output as whole lines: exactly one newline at the end, whatever the
/// text ended with.
fn print_block(text: &str) {
    out_line!("{}", text.trim_end_matches('\n'));
}

fn main() -> ExitCode {
    let Args {
        command,
        config: named_config,
        admin,
        token,
    } = match parse_args(std::env::args().skip(1)) {
        Ok(Parsed::Args(args)) => *args,
        Ok(Parsed::Help(text)) => {
            print_block(&text);
            return ExitCode::SUCCESS;
        }
        Err(UsageError { message, usage }) => {
            err_line!("{message}\n{usage}");
            return ExitCode::from(2);
        }
    };
    let path = named_config
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG));
    match command {
        Command::Operator(operation) => {
            operator_command(&operation, named_config.as_deref(), admin, token)
        }
        Command::CheckConfig => {
            let config = match load(&path) {
                Ok(c) => c,
                Err(code) => return code,
            };
            match toml::to_string_pretty(&config) {
                Ok(text) => {
                    print_block(&text);
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    err_line!("cannot print the configuration: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Run => match load(&path) {
            Ok(config) => run(&path, &config),
            Err(code) => code,
        },
        Command::Restore(snapshot) => {
            let config = match load(&path) {
                Ok(c) => c,
                Err(code) => return code,
            };
            if config.store.backend != StoreBackend::Rocksdb {
                err_line!("{}: store.backend is not rocksdb", path.display());
                return ExitCode::from(2);
            }
            match operator::restore(&snapshot, &config.store.path) {
                Ok(()) => {
                    out_line!(
                        "restored {} into {}",
                        snapshot.display(),
                        config.store.path.display()
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    err_line!("{e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// An operator command: the node can be named without a configuration file (`--admin`, with the
/// token from `--token` or the environment); a configuration is read only for what is not
/// given: always without `--admin`, else when named, or when no token is given and the default
/// file exists.
fn operator_command(
    operation: &Operation,
    named_config: Option<&Path>,
    admin: Option<String>,
    token: Option<String>,
) -> ExitCode {
    let token = token.or_else(|| std::env::var(TOKEN_VARIABLE).ok());
    let path = named_config.unwrap_or(Path::new(DEFAULT_CONFIG));
    let read_config = match &admin {
        None => true,
        Some(_) => named_config.is_some() || (token.is_none() && path.is_file()),
    };
    let config = if read_config {
        match load(path) {
            Ok(c) => Some(c),
            Err(code) => {
                if admin.is_none() {
                    err_line!(
                        "(--admin URL names the node's admin API without a configuration file)"
                    );
                }
                return code;
            }
        }
    } else {
        None
    };
    let target = AdminTarget::resolve(config.as_ref(), admin.as_deref(), token);
    operate(&target, operation)
}

/// Runs one admin API call on a small runtime of its own; exit 1 with the error otherwise.
fn operate(target: &AdminTarget, operation: &Operation) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            err_line!("cannot start the tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Operation::Http(options) = operation {
        return match runtime.block_on(operator::http(target, options)) {
            Ok(output) => {
                use std::io::Write as _;
                let mut stdout = std::io::stdout().lock();
                let _ = stdout.write_all(&output.stdout);
                let _ = stdout.flush();
                if !output.stderr.is_empty() {
                    err_line!("{}", output.stderr);
                }
                if output.success {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                }
            }
            Err(e) => {
                err_line!("{e}");
                ExitCode::FAILURE
            }
        };
    }
    match runtime.block_on(operator::run(target, operation)) {
        Ok(text) => {
            print_block(&text);
            ExitCode::SUCCESS
        }
        Err(CliError::PaymentFailed(text)) => {
            print_block(&text);
            ExitCode::FAILURE
        }
        Err(e) => {
            err_line!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// Starts the node in an actix System (actors and, by default, socket I/O on the System's
/// thread; `node.io_threads` moves I/O to a pool) and blocks until SIGINT or SIGTERM.
fn run(path: &std::path::Path, config: &Config) -> ExitCode {
    // With io_threads = 0 (the default) every actor and every link runs on this one thread: no
    // hand-off between threads per packet, which measured 30 % less CPU per packet and 60 %
    // more packets per second here (README, Performance). The store's writer thread stays apart.
    let io_threads = usize::from(config.node.io_threads);
    let system = actix::System::with_tokio_rt(move || {
        let mut builder = if io_threads == 0 {
            tokio::runtime::Builder::new_current_thread()
        } else {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(io_threads);
            b
        };
        builder.enable_all().build().unwrap_or_else(|e| {
            err_line!("cannot start the tokio runtime: {e}");
            std::process::exit(1)
        })
    });
    let config = config.clone();
    let path = path.display().to_string();
    // Every TLS config names ring itself; this covers any library asking rustls for a default.
    ilp_actors::tls::install_default_provider();
    // Flushes the log writer thread when `run` returns.
    let _log_guard = ilp_actors::log::init(&config.log);
    let log = ilp_actors::log::logger();
    slog::info!(log, "starting"; "config" => &path, "accounts" => config.accounts.len(),
        "store" => ?config.store.backend);
    system.block_on(async move {
        let clock = Clock::system();
        // BTP accounts get their WebSocket links, HTTP accounts their ILP-over-HTTP links.
        let options = BtpOptions {
            clock,
            ..BtpOptions::default()
        };
        let mut btp = match links_for_config(&config, options.clone()).await {
            Ok(btp) => btp,
            Err(e) => {
                err_line!("{path}: {e}");
                return ExitCode::from(2);
            }
        };
        if let Some(server) = &btp.server {
            let tls = config.listeners.btp.as_ref().is_some_and(|l| l.tls.enabled);
            let scheme = if tls { "wss" } else { "ws" };
            out_line!("BTP listening on {scheme}://{}", server.local_addr());
        }
        let http_links = match links_from_config(&config, clock, &HttpLinkOptions::default()) {
            Ok(links) => links,
            Err(e) => {
                err_line!("{path}: {e}");
                return ExitCode::from(2);
            }
        };
        let http_server = match (&config.listeners.http, http_links.is_empty()) {
            (Some(listener), _) => {
                let alpn = if listener.h2 {
                    tls::ALPN_H2_HTTP1
                } else {
                    tls::ALPN_HTTP1
                };
                let server_tls = match tls::server_tls(&listener.tls, "listeners.http.tls", alpn) {
                    Ok(t) => t,
                    Err(e) => {
                        err_line!("{path}: {e}");
                        return ExitCode::from(2);
                    }
                };
                let scheme = if server_tls.is_some() {
                    "https"
                } else {
                    "http"
                };
                let bound = match TcpListener::bind(listener.bind).await {
                    Ok(l) => l,
                    Err(e) => {
                        err_line!("{path}: listeners.http.bind {}: {e}", listener.bind);
                        return ExitCode::from(2);
                    }
                };
                let options = HttpServerOptions {
                    h2: listener.h2,
                    tls: server_tls,
                    ..HttpServerOptions::default()
                };
                match HttpServer::serve(bound, http_links.values().cloned(), options) {
                    Ok(server) => {
                        out_line!(
                            "ILP over HTTP listening on {scheme}://{}",
                            server.local_addr()
                        );
                        Some(server)
                    }
                    Err(e) => {
                        err_line!("{path}: {e}");
                        return ExitCode::from(2);
                    }
                }
            }
            (None, false) => {
                err_line!("{path}: accounts with link.type = \"http\" need [listeners.http]");
                return ExitCode::from(2);
            }
            (None, true) => None,
        };
        // Accounts whose transport is not built yet (memory links belong to tests) stay down,
        // so their packets are rejected T01 at once.
        let links: BTreeMap<AccountId, Arc<dyn Link>> = config
            .accounts
            .keys()
            .map(|id| {
                let link = btp
                    .links
                    .get(id.as_str())
                    .cloned()
                    .or_else(|| {
                        http_links
                            .get(id.as_str())
                            .map(|l| Arc::new(l.clone()) as Arc<dyn Link>)
                    })
                    .unwrap_or_else(|| Arc::new(UnconnectedLink) as Arc<dyn Link>);
                (Arc::from(id.as_str()), link)
            })
            .collect();
        // The RocksDB store is also kept by its type, to flush it at shutdown.
        let mut rocks: Option<Arc<RocksStore>> = None;
        let store: Arc<dyn Store> = match config.store.backend {
            StoreBackend::Memory => {
                out_line!("store: memory (nothing survives a restart)");
                Arc::new(MemoryStore::new())
            }
            StoreBackend::Rocksdb => {
                if let Err(e) = std::fs::create_dir_all(&config.store.path) {
                    err_line!("{path}: store.path {}: {e}", config.store.path.display());
                    return ExitCode::from(2);
                }
                let writer = WriterOptions::from_config(&config.store);
                match RocksStore::open_with(&config.store.path, writer) {
                    Ok(store) => {
                        out_line!("store: RocksDB in {}", config.store.path.display());
                        let store = Arc::new(store);
                        rocks = Some(store.clone());
                        store
                    }
                    Err(e) => {
                        err_line!("{path}: store.path {}: {e}", config.store.path.display());
                        return ExitCode::from(2);
                    }
                }
            }
        };
        // Metrics exist for the admin API to serve them.
        let metrics = config
            .listeners
            .admin
            .enabled
            .then(|| Arc::new(Metrics::new()));
        // The seed and the routing secret come from the OS, not the clock: nobody who knows
        // when the node started can guess them.
        let randomness = match NodeRandomness::from_os() {
            Ok(r) => r,
            Err(e) => {
                eprintln!("{path}: cannot read the OS random number generator: {e}");
                return ExitCode::from(2);
            }
        };
        let node_options = NodeOptions {
            clock,
            store,
            seed: randomness.seed,
            links,
            metrics,
        };
        let secret = randomness.routing_secret;
        let mut node = match Node::start_with_routing_secret(&config, node_options, secret) {
            Ok(node) => node,
            Err(e) => {
                err_line!("{path}: cannot start the node: {e}");
                return ExitCode::from(2);
            }
        };
        for link in http_links.values() {
            link.set_node_address(node.address.clone());
        }
        let spsp_server = match &config.listeners.spsp {
            Some(listener) => match SpspServer::start(listener, &node, &config).await {
                Ok(server) => {
                    out_line!(
                        "SPSP listening on {}://{}",
                        server.scheme(),
                        server.local_addr()
                    );
                    Some(server)
                }
                Err(e) => {
                    err_line!("{path}: {e}");
                    return ExitCode::from(2);
                }
            },
            None => None,
        };
        let paid_proxy = match ilp_actors::paid_proxy::PaidProxy::start(&config, &node).await {
            Ok(proxy) => {
                if let Some(proxy) = &proxy {
                    let scheme = if config.paid_http.as_ref().is_some_and(|p| p.tls.enabled) {
                        "https"
                    } else {
                        "http"
                    };
                    out_line!(
                        "paid HTTP proxy listening on {scheme}://{}",
                        proxy.local_addr()
                    );
                }
                proxy
            }
            Err(e) => {
                err_line!("{path}: {e}");
                return ExitCode::from(2);
            }
        };
        let settlement_api = match config.settlement_listener() {
            Some(listener_config) => {
                let bind = listener_config.bind;
                let served = match TcpListener::bind(bind).await {
                    Ok(l) => ilp_actors::settlement_api::SettlementApi::serve(
                        l,
                        &listener_config,
                        node.settlement.clone(),
                    ),
                    Err(e) => Err(e),
                };
                match served {
                    Ok(api) => {
                        out_line!("settlement API listening on http://{}", api.local_addr());
                        Some(api)
                    }
                    Err(e) => {
                        err_line!("{path}: listeners.settlement.bind {bind}: {e}");
                        return ExitCode::from(2);
                    }
                }
            }
            None => None,
        };
        // Up before the address is learned, so /ready can tell operators it is not yet.
        let admin_server = if config.listeners.admin.enabled {
            let bind = config.listeners.admin.bind;
            let listener = match TcpListener::bind(bind).await {
                Ok(l) => l,
                Err(e) => {
                    err_line!("{path}: listeners.admin.bind {bind}: {e}");
                    return ExitCode::from(2);
                }
            };
            let mut state = AdminState::new(&node, &config);
            if let Some(base) = spsp_server.as_ref().and_then(SpspServer::base_url) {
                state = state.with_spsp_base(base);
            }
            match AdminServer::serve(listener, state) {
                Ok(server) => {
                    out_line!("admin API listening on http://{}", server.local_addr());
                    Some(server)
                }
                Err(e) => {
                    err_line!("{path}: listeners.admin.bind {bind}: {e}");
                    return ExitCode::from(2);
                }
            }
        } else {
            None
        };
        if let Some(parent) = config.address_parent() {
            out_line!("learning our address from parent account {parent} over IL-DCP");
            match node.inherit_address(parent, clock).await {
                Ok(r) => out_line!(
                    "address {} (asset {} scale {}) from {parent}",
                    r.client_address, r.asset_code, r.asset_scale
                ),
                Err(e) => {
                    err_line!("{path}: {e}");
                    return ExitCode::from(1);
                }
            }
        }
        let address = node
            .address
            .get()
            .map_or("(to be learned from a parent)".to_owned(), |a| {
                a.to_string()
            });
        out_line!(
            "ilp-connector running: node {address}, {} account(s); stop with SIGINT or SIGTERM",
            node.accounts.len()
        );
        slog::info!(log, "running"; "address" => &address);
        let mut signals = Signals::new();
        let mut running = config.clone();
        while let Signal::Reload = signals.next().await {
            let new = match std::fs::read_to_string(&path)
                .map_err(|e| format!("cannot read it: {e}"))
                .and_then(|text| Config::from_toml_str(&text).map_err(|e| e.to_string()))
            {
                Ok(new) => new,
                Err(e) => {
                    err_line!("SIGHUP: {path} not reloaded: {e}");
                    slog::error!(log, "configuration not reloaded"; "error" => e);
                    continue;
                }
            };
            let links = LinkSet {
                btp: &mut btp,
                http: http_server.as_ref(),
                clock,
                btp_options: &options,
            };
            match reload::apply(&running, new, &mut node, links).await {
                Ok(done) => {
                    let c = &done.changes;
                    let list = |s: &std::collections::BTreeSet<String>| {
                        s.iter().cloned().collect::<Vec<_>>().join(",")
                    };
                    out_line!(
                        "reloaded {path}: added [{}] removed [{}] relinked [{}] updated [{}] routing {}; waiting for a restart: [{}]",
                        list(&c.added),
                        list(&c.removed),
                        list(&c.relinked),
                        list(&c.updated),
                        if c.routing { "changed" } else { "unchanged" },
                        c.needs_restart.join(",")
                    );
                    slog::info!(log, "configuration reloaded"; "added" => c.added.len(),
                        "removed" => c.removed.len(), "relinked" => c.relinked.len(),
                        "updated" => c.updated.len(), "routing" => c.routing);
                    if let Some(admin) = &admin_server {
                        admin.reload(&node, &done.config);
                    }
                    if let Some(spsp) = &spsp_server {
                        spsp.set_accounts(SpspAccounts::from_config(&done.config));
                    }
                    if let (Some(proxy), Some(paid)) = (&paid_proxy, &done.config.paid_http) {
                        proxy.set_prices(paid.price_table());
                    }
                    running = done.config;
                }
                Err(e) => {
                    err_line!("SIGHUP: {path} not applied: {e}");
                    slog::error!(log, "configuration not applied"; "error" => %e);
                }
            }
        }
        // New packets are turned away (T03) while those in flight finish or expire; the links
        // stay up meanwhile, since the answers come back over them.
        let bound = Duration::from_millis(config.node.max_hold_time_ms.saturating_add(1_000));
        out_line!(
            "ilp-connector stopping: {} packet(s) in flight, waiting up to {} ms",
            node.gate.in_flight(),
            bound.as_millis()
        );
        let left = node.gate.drain(bound).await;
        if left > 0 {
            slog::warn!(log, "packets still in flight at shutdown"; "count" => left);
        }
        // An answer leaves through its connection's writer task a moment after its packet left
        // the gate: give those writes time to reach the socket before the links close.
        tokio::time::sleep(SHUTDOWN_LINGER).await;
        // The listeners and links live until here; the admin API too, so operators can watch
        // the drain.
        drop(admin_server);
        drop(btp);
        drop(http_server);
        drop(spsp_server);
        drop(paid_proxy);
        drop(settlement_api);
        if let Some(rocks) = rocks {
            if let Err(e) = rocks.flush().await {
                err_line!(
                    "store.path {}: flush failed: {e}",
                    config.store.path.display()
                );
                return ExitCode::FAILURE;
            }
        }
        out_line!("ilp-connector stopped");
        slog::info!(log, "stopped"; "unanswered" => left);
        ExitCode::SUCCESS
    })
}

enum Signal {
    Stop,
    Reload,
}

/// SIGINT and SIGTERM stop the node; SIGHUP reloads its configuration.
struct Signals {
    #[cfg(unix)]
    term: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    hup: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    fn new() -> Signals {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Signals {
                term: signal(SignalKind::terminate()).ok(),
                hup: signal(SignalKind::hangup()).ok(),
            }
        }
        #[cfg(not(unix))]
        Signals {}
    }

    async fn next(&mut self) -> Signal {
        #[cfg(unix)]
        {
            let term = async {
                match &mut self.term {
                    Some(s) => s.recv().await,
                    None => std::future::pending().await,
                }
            };
            let hup = async {
                match &mut self.hup {
                    Some(s) => s.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => Signal::Stop,
                _ = term => Signal::Stop,
                _ = hup => Signal::Reload,
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            Signal::Stop
        }
    }
}
