//! `ilp-eth-engine --config <file>`: runs the engine (see the crate docs and README).
//! `ilp-eth-engine check-config --config <file>`: reads the file, prints what is wrong, exits 2 if
//! anything is.

use ilp::config::ClientTlsConfig;
use ilp_actors::engine_client::EngineClient;
use ilp_actors::store::rocks::RocksStore;
use ilp_actors::store::Store;
use ilp_eth_engine::config::EngineConfig;
use ilp_eth_engine::engine::Engine;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

const USAGE: &str = "usage: ilp-eth-engine [check-config] --config <file>";

/// Longest a call to the connector may take (then it is tried again later).
const CONNECTOR_TIMEOUT: Duration = Duration::from_secs(10);

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (check_only, rest) = match args.first().map(String::as_str) {
        Some("check-config") => (true, &args[1..]),
        _ => (false, &args[..]),
    };
    let path = match rest {
        [flag, path] if flag == "--config" => path.clone(),
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("{path}: {e}");
            return ExitCode::from(2);
        }
    };
    let config = match EngineConfig::from_toml_str(&text) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{path}: {e}");
            return ExitCode::from(2);
        }
    };
    if check_only {
        println!("{path}: ok");
        return ExitCode::SUCCESS;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("no runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run(config, path))
}

async fn run(config: EngineConfig, path: String) -> ExitCode {
    let _guard = ilp_actors::log::init_named(&config.log, "ilp-eth-engine");
    let log = ilp_actors::log::logger().clone();
    let store = match RocksStore::open(&config.store.path) {
        Ok(s) => Arc::new(s),
        Err(e) => {
            eprintln!("{path}: store.path {}: {e}", config.store.path.display());
            return ExitCode::from(2);
        }
    };
    let tls =
        match ilp_actors::tls::client_config(&ClientTlsConfig::default(), "engine.connector_url") {
            Ok(t) => t,
            Err(e) => {
                eprintln!("{path}: {e}");
                return ExitCode::from(2);
            }
        };
    let mut connector = EngineClient::new(tls, CONNECTOR_TIMEOUT);
    if let Some(token) = &config.engine.connector_token {
        connector = match connector.with_bearer(token.expose()) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("{path}: engine.connector_token: {e}");
                return ExitCode::from(2);
            }
        };
    }
    let shared: Arc<dyn Store> = store.clone();
    let engine = match Engine::open(&config, shared, connector, log.clone()).await {
        Ok(e) => e,
        Err(e) => {
            eprintln!("{path}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let listener = match tokio::net::TcpListener::bind(config.engine.bind).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("{path}: engine.bind {}: {e}", config.engine.bind);
            return ExitCode::from(2);
        }
    };
    let local = match listener.local_addr() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{path}: engine.bind: {e}");
            return ExitCode::from(2);
        }
    };
    let server = ilp_eth_engine::api::serve(listener, engine.clone());
    engine.run().await;
    println!(
        "address {} on chain {}",
        ilp_eth_engine::eth::format_address(&engine.address()),
        engine.chain_id()
    );
    println!("engine API listening on http://{local}");
    wait_for_signal().await;
    server.abort();
    match store.flush().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!(
                "store.path {}: flush failed: {e}",
                config.store.path.display()
            );
            ExitCode::FAILURE
        }
    }
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        // No signal handling: run until killed.
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
