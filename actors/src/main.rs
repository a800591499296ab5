//! `ilp-connector`: the node binary. `run` loads and validates `config.toml` (every error, each
//! with its key path, exit code 2), starts the node's supervised actors and serves until SIGINT
//! or SIGTERM; `check-config` validates and prints the effective configuration. The operator
//! commands (`ping`, `balances`, `routes`, `snapshot`) call a running node's admin API;
//! `restore` copies a snapshot over `store.path` while no node runs on it.

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use ilp::config::{Config, StoreBackend};
use ilp_actors::admin::cli::{self as operator, AdminTarget, Operation};
use ilp_actors::admin::{AdminServer, AdminState};
use ilp_actors::clock::Clock;
use ilp_actors::link::btp_ws::{links_for_config, BtpOptions};
use ilp_actors::link::http::{links_from_config, HttpLinkOptions, HttpServer, HttpServerOptions};
use ilp_actors::link::{Link, UnconnectedLink};
use ilp_actors::messages::AccountId;
use ilp_actors::metrics::Metrics;
use ilp_actors::node::{Node, NodeOptions, NodeRandomness};
use ilp_actors::reload::{self, LinkSet};
use ilp_actors::store::memory::MemoryStore;
use ilp_actors::store::rocks::{RocksStore, WriterOptions};
use ilp_actors::store::Store;
use ilp_actors::tls;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

const USAGE: &str = "usage: ilp-connector [COMMAND] [--config PATH] [--admin URL]\n\
  run              load the configuration and start the node (default command)\n\
  check-config     validate the configuration and print the effective values\n\
  ping ADDRESS     echo round trip from the running node to ADDRESS\n\
  balances         the running node's accounts and balances\n\
  routes           the running node's routing table\n\
  snapshot         snapshot the running node's store; prints the snapshot's path\n\
  restore DIR      copy snapshot DIR over store.path (the node must be stopped)\n\
  --config PATH    configuration file (default: config.toml)\n\
  --admin URL      admin API of the running node (default: from [listeners.admin])";

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
    config: PathBuf,
    admin: Option<String>,
}

fn parse_args(args: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut command = Command::Run;
    let mut path = PathBuf::from("config.toml");
    let mut admin = None;
    let mut args = args.peekable();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "run" => command = Command::Run,
            "check-config" => command = Command::CheckConfig,
            "ping" => {
                let address = args.next().ok_or("ping needs an ILP address")?;
                command = Command::Operator(Operation::Ping(address));
            }
            "balances" => command = Command::Operator(Operation::Balances),
            "routes" => command = Command::Operator(Operation::Routes),
            "snapshot" => command = Command::Operator(Operation::Snapshot),
            "restore" => {
                let dir = args.next().ok_or("restore needs a snapshot directory")?;
                command = Command::Restore(PathBuf::from(dir));
            }
            "--admin" => admin = Some(args.next().ok_or("--admin needs a URL")?),
            "--config" | "-c" => {
                path = args
                    .next()
                    .map(PathBuf::from)
                    .ok_or("--config needs a path")?
            }
            "-h" | "--help" => return Err(String::new()),
            other => match other.strip_prefix("--config=") {
                Some(p) => path = PathBuf::from(p),
                None => return Err(format!("unknown argument {other:?}")),
            },
        }
    }
    Ok(Args {
        command,
        config: path,
        admin,
    })
}

fn load(path: &PathBuf) -> Result<Config, ExitCode> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        eprintln!("cannot read {}: {e}", path.display());
        ExitCode::from(2)
    })?;
    Config::from_toml_str(&text).map_err(|errors| {
        eprintln!(
            "{}: {} configuration error(s):",
            path.display(),
            errors.errors().len()
        );
        for e in errors.errors() {
            eprintln!("  {e}");
        }
        ExitCode::from(2)
    })
}

fn main() -> ExitCode {
    let Args {
        command,
        config: path,
        admin,
    } = match parse_args(std::env::args().skip(1)) {
        Ok(parsed) => parsed,
        Err(message) => {
            if !message.is_empty() {
                eprintln!("{message}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(if message.is_empty() { 0 } else { 2 });
        }
    };
    let config = match load(&path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    match command {
        Command::CheckConfig => match toml::to_string_pretty(&config) {
            Ok(text) => {
                println!("{text}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("cannot print the configuration: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Run => run(&path, &config),
        Command::Operator(operation) => {
            let target = AdminTarget::from_config(&config, admin.as_deref());
            operate(&target, &operation)
        }
        Command::Restore(snapshot) => {
            if config.store.backend != StoreBackend::Rocksdb {
                eprintln!("{}: store.backend is not rocksdb", path.display());
                return ExitCode::from(2);
            }
            match operator::restore(&snapshot, &config.store.path) {
                Ok(()) => {
                    println!(
                        "restored {} into {}",
                        snapshot.display(),
                        config.store.path.display()
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("{e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// Runs one admin API call on a small runtime of its own; exit 1 with the error otherwise.
fn operate(target: &AdminTarget, operation: &Operation) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(operator::run(target, operation)) {
        Ok(text) => {
            print!("{text}");
            if !text.ends_with('\n') {
                println!();
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// Starts the node in an actix System (actors on the System's thread, I/O tasks on a
/// multi-thread tokio pool, DESIGN.md §7) and blocks until SIGINT or SIGTERM.
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
            eprintln!("cannot start the tokio runtime: {e}");
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
                eprintln!("{path}: {e}");
                return ExitCode::from(2);
            }
        };
        if let Some(server) = &btp.server {
            let tls = config.listeners.btp.as_ref().is_some_and(|l| l.tls.enabled);
            let scheme = if tls { "wss" } else { "ws" };
            println!("BTP listening on {scheme}://{}", server.local_addr());
        }
        let http_links = match links_from_config(&config, clock, &HttpLinkOptions::default()) {
            Ok(links) => links,
            Err(e) => {
                eprintln!("{path}: {e}");
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
                        eprintln!("{path}: {e}");
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
                        eprintln!("{path}: listeners.http.bind {}: {e}", listener.bind);
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
                        println!(
                            "ILP over HTTP listening on {scheme}://{}",
                            server.local_addr()
                        );
                        Some(server)
                    }
                    Err(e) => {
                        eprintln!("{path}: {e}");
                        return ExitCode::from(2);
                    }
                }
            }
            (None, false) => {
                eprintln!("{path}: accounts with link.type = \"http\" need [listeners.http]");
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
                println!("store: memory (nothing survives a restart)");
                Arc::new(MemoryStore::new())
            }
            StoreBackend::Rocksdb => {
                if let Err(e) = std::fs::create_dir_all(&config.store.path) {
                    eprintln!("{path}: store.path {}: {e}", config.store.path.display());
                    return ExitCode::from(2);
                }
                let writer = WriterOptions::from_config(&config.store);
                match RocksStore::open_with(&config.store.path, writer) {
                    Ok(store) => {
                        println!("store: RocksDB in {}", config.store.path.display());
                        let store = Arc::new(store);
                        rocks = Some(store.clone());
                        store
                    }
                    Err(e) => {
                        eprintln!("{path}: store.path {}: {e}", config.store.path.display());
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
                eprintln!("{path}: cannot start the node: {e}");
                return ExitCode::from(2);
            }
        };
        for link in http_links.values() {
            link.set_node_address(node.address.clone());
        }
        // Up before the address is learned, so /ready can tell operators it is not yet.
        let admin_server = if config.listeners.admin.enabled {
            let bind = config.listeners.admin.bind;
            let listener = match TcpListener::bind(bind).await {
                Ok(l) => l,
                Err(e) => {
                    eprintln!("{path}: listeners.admin.bind {bind}: {e}");
                    return ExitCode::from(2);
                }
            };
            match AdminServer::serve(listener, AdminState::new(&node, &config)) {
                Ok(server) => {
                    println!("admin API listening on http://{}", server.local_addr());
                    Some(server)
                }
                Err(e) => {
                    eprintln!("{path}: listeners.admin.bind {bind}: {e}");
                    return ExitCode::from(2);
                }
            }
        } else {
            None
        };
        if let Some(parent) = config.address_parent() {
            println!("learning our address from parent account {parent} over IL-DCP");
            match node.inherit_address(parent, clock).await {
                Ok(r) => println!(
                    "address {} (asset {} scale {}) from {parent}",
                    r.client_address, r.asset_code, r.asset_scale
                ),
                Err(e) => {
                    eprintln!("{path}: {e}");
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
        println!(
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
                    eprintln!("SIGHUP: {path} not reloaded: {e}");
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
                    println!(
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
                    running = done.config;
                }
                Err(e) => {
                    eprintln!("SIGHUP: {path} not applied: {e}");
                    slog::error!(log, "configuration not applied"; "error" => %e);
                }
            }
        }
        // New packets are turned away (T03) while those in flight finish or expire; the links
        // stay up meanwhile, since the answers come back over them.
        let bound = Duration::from_millis(config.node.max_hold_time_ms.saturating_add(1_000));
        println!(
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
        if let Some(rocks) = rocks {
            if let Err(e) = rocks.flush().await {
                eprintln!(
                    "store.path {}: flush failed: {e}",
                    config.store.path.display()
                );
                return ExitCode::FAILURE;
            }
        }
        println!("ilp-connector stopped");
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
