//! A local Ethereum chain (ganache, through `scripts/ganache/start.js`) and our settlement
//! engine binary (`ilp-eth-engine`) as child processes, killed by PID when dropped; and what the
//! chain says was transferred.

use super::process::{spawn_logged, START_BOUND};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The private keys of ganache's first deterministic accounts (the well-known test mnemonic).
pub const KEYS: [&str; 3] = [
    "0x4f3edf983ac636a65a842ce7c78d9aa706d3b113bce9c46f30d7d21715b23b1d",
    "0x6cbed15c793ce57650b9877cf6fa156fbef513c4e6134f022a85b1ffdd59b2a1",
    "0x6370fd033278c143179d81c5526140625662b8daa446c22ee2d73db3707e620c",
];

/// `scripts/ganache` of the workspace (found from the crate whose tests run).
fn ganache_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .map(|p| p.join("scripts/ganache"))
        .find(|p| p.join("package.json").exists())
        .expect("scripts/ganache in the workspace")
}

/// Installs ganache with `npm ci` unless it is there (once per test process).
fn install_ganache() {
    static INSTALLED: Mutex<bool> = Mutex::new(false);
    let mut done = INSTALLED.lock().unwrap_or_else(|p| p.into_inner());
    if *done
        || ganache_dir()
            .join("node_modules/ganache/package.json")
            .exists()
    {
        *done = true;
        return;
    }
    let mut npm = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
        .current_dir(ganache_dir())
        .spawn()
        .expect("npm (Node 20) installs ganache for the chain tests");
    let deadline = Instant::now() + Duration::from_secs(600);
    let status = loop {
        if let Some(status) = npm.try_wait().expect("npm ci") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = npm.kill();
            panic!("npm ci in scripts/ganache did not finish in 10 minutes");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "npm ci in scripts/ganache: {status}");
    *done = true;
}

/// A ganache chain on a port of the OS's choice; every account starts with 1000 ETH.
pub struct Ganache {
    child: Child,
    pub port: u16,
}

impl Ganache {
    pub fn start(log: &Path) -> Ganache {
        install_ganache();
        let mut command = Command::new("node");
        command.arg("start.js").current_dir(ganache_dir());
        let (mut child, lines) = spawn_logged(command, log).expect("node runs ganache");
        let deadline = Instant::now() + START_BOUND;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match lines.recv_timeout(left) {
                Ok(line) => {
                    if let Some(port) = line.strip_prefix("LISTENING ") {
                        let port = port.trim().parse().expect("a port");
                        return Ganache { child, port };
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("ganache did not start (see {})", log.display());
                }
            }
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Ganache {
    fn drop(&mut self) {
        // SIGTERM lets it delete its temporary database; SIGKILL after a bounded wait.
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `ilp-eth-engine` binary: the engine crate's own tests know it; the connector's find it
/// beside `ilp-connector` (`cargo test` at the workspace root builds both).
fn engine_binary() -> PathBuf {
    if let Some(path) = option_env!("CARGO_BIN_EXE_ilp-eth-engine") {
        return PathBuf::from(path);
    }
    let Some(connector) = option_env!("CARGO_BIN_EXE_ilp-connector") else {
        panic!("neither ilp-eth-engine nor ilp-connector was built for this test");
    };
    let path = Path::new(connector).with_file_name("ilp-eth-engine");
    assert!(
        path.exists(),
        "{} is missing: `cargo test` at the workspace root builds it (or `cargo build -p \
         ilp-eth-engine`)",
        path.display()
    );
    path
}

/// One run of the engine; killed (by PID) when dropped.
pub struct EthEngine {
    child: Child,
    /// Its RFC 38 API.
    pub api: SocketAddr,
    /// Its Ethereum address (lowercase hex).
    pub address: String,
}

impl EthEngine {
    /// Starts the engine on `config` and waits until it serves; retries (bounded) while its
    /// port is still held by the run before.
    pub fn start(config: &Path, log: &Path) -> EthEngine {
        let deadline = Instant::now() + START_BOUND;
        loop {
            match EthEngine::try_start(config, log) {
                Ok(e) => return e,
                Err(e) if Instant::now() < deadline => {
                    eprintln!("engine start failed ({e}); retrying");
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => panic!("the engine did not start: {e}"),
            }
        }
    }

    fn try_start(config: &Path, log: &Path) -> Result<EthEngine, String> {
        let mut command = Command::new(engine_binary());
        command.arg("--config").arg(config);
        let (mut child, lines) = spawn_logged(command, log)?;
        let deadline = Instant::now() + START_BOUND;
        let mut address = None;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match lines.recv_timeout(left) {
                Ok(line) => {
                    if let Some(rest) = line.strip_prefix("address ") {
                        address = rest.split_whitespace().next().map(str::to_owned);
                    }
                    if let Some(api) = line.strip_prefix("engine API listening on http://") {
                        let api = api.trim().parse().map_err(|_| "no API address")?;
                        let address = address.ok_or("no address printed")?;
                        return Ok(EthEngine {
                            child,
                            api,
                            address,
                        });
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    let status = child.wait().map_err(|e| e.to_string())?;
                    return Err(format!("exited or hung before serving: {status}"));
                }
            }
        }
    }

    pub fn kill_9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for EthEngine {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port free at the time of asking (for a process that must be told its port before it
/// starts, and keep it across restarts).
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// One JSON-RPC call to the chain.
pub async fn rpc(url: &str, method: &str, params: serde_json::Value) -> serde_json::Value {
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build(HttpConnector::new());
    let body = serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
    let request = hyper::Request::post(url)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    let response = tokio::time::timeout(Duration::from_secs(10), client.request(request))
        .await
        .expect("the chain answers")
        .expect("the chain answers");
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let value: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    value["result"].clone()
}

fn quantity(v: &serde_json::Value) -> u128 {
    u128::from_str_radix(v.as_str().unwrap().trim_start_matches("0x"), 16).unwrap()
}

/// Wei moved by every transfer on the chain from `from` to `to` (addresses in lowercase hex),
/// and how many transfers.
pub async fn transfers(url: &str, from: &str, to: &str) -> (u128, usize) {
    let head = quantity(&rpc(url, "eth_blockNumber", serde_json::json!([])).await);
    let (mut total, mut count) = (0u128, 0usize);
    for n in 0..=head {
        let block = rpc(
            url,
            "eth_getBlockByNumber",
            serde_json::json!([format!("0x{n:x}"), true]),
        )
        .await;
        for tx in block["transactions"].as_array().unwrap() {
            let is = |field: &str, who: &str| {
                tx[field].as_str().map(str::to_lowercase) == Some(who.to_owned())
            };
            if !(is("from", from) && is("to", to)) {
                continue;
            }
            // Only what the chain says moved: a failed transaction moves no value.
            let receipt = rpc(
                url,
                "eth_getTransactionReceipt",
                serde_json::json!([tx["hash"]]),
            )
            .await;
            if receipt["status"].as_str() == Some("0x1") {
                total += quantity(&tx["value"]);
                count += 1;
            }
        }
    }
    (total, count)
}
