//! The real `ilp-connector` binary as a child process: started on a config file, its output
//! appended to a log file, its BTP address read from what it prints; killed by PID when dropped.

use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

pub use super::process::{spawn_logged, START_BOUND};

/// One run of the binary; killed (by PID) when dropped.
pub struct Connector {
    child: Child,
    /// The address its BTP listener bound.
    pub btp: std::net::SocketAddr,
    /// The address its admin API bound, when it serves one.
    pub admin: Option<std::net::SocketAddr>,
    /// The address its ILP-over-HTTP listener bound, when it serves one.
    pub http: Option<std::net::SocketAddr>,
    /// The address its SPSP server bound, when it serves one.
    pub spsp: Option<std::net::SocketAddr>,
    /// The address its settlement API (RFC 38) bound, when it serves one.
    pub settlement: Option<std::net::SocketAddr>,
}

impl Connector {
    /// Starts the binary on `config_path` and waits until it serves; its output is appended
    /// to `log`. A bind that fails because the previous run's socket is not released yet is
    /// retried (bounded).
    pub fn start(config_path: &Path, log: &Path) -> Connector {
        let deadline = Instant::now() + START_BOUND;
        loop {
            match Connector::try_start(config_path, log) {
                Ok(c) => return c,
                Err(e) if Instant::now() < deadline => {
                    eprintln!("start failed ({e}); retrying");
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => panic!("the connector did not start: {e}"),
            }
        }
    }

    fn try_start(config_path: &Path, log: &Path) -> Result<Connector, String> {
        // `ILP_TEST_CONNECTOR` runs another build instead (e.g. an earlier commit's, to show
        // that a test fails there).
        let binary = std::env::var("ILP_TEST_CONNECTOR")
            .unwrap_or_else(|_| env!("CARGO_BIN_EXE_ilp-connector").to_owned());
        let mut command = Command::new(binary);
        command.args(["run", "--config"]).arg(config_path);
        let (mut child, rx) = spawn_logged(command, log)?;
        let deadline = Instant::now() + START_BOUND;
        let mut btp = None;
        let mut admin = None;
        let mut http = None;
        let mut spsp = None;
        let mut settlement = None;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(addr) = line.strip_prefix("BTP listening on ws://") {
                        btp = addr.trim().parse().ok();
                    }
                    if let Some(addr) = line.strip_prefix("admin API listening on http://") {
                        admin = addr.trim().parse().ok();
                    }
                    if let Some(rest) = line.strip_prefix("ILP over HTTP listening on ") {
                        http = rest
                            .split_once("://")
                            .and_then(|(_, a)| a.trim().parse().ok());
                    }
                    if let Some(rest) = line.strip_prefix("SPSP listening on ") {
                        spsp = rest
                            .split_once("://")
                            .and_then(|(_, a)| a.trim().parse().ok());
                    }
                    if let Some(addr) = line.strip_prefix("settlement API listening on http://") {
                        settlement = addr.trim().parse().ok();
                    }
                    if line.starts_with("ilp-connector running") {
                        let btp = btp.ok_or("no BTP address printed")?;
                        return Ok(Connector {
                            child,
                            btp,
                            admin,
                            http,
                            spsp,
                            settlement,
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

    /// SIGKILL: no chance to flush or say goodbye.
    pub fn kill_9(mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reaped");
    }

    /// SIGTERM, then the exit status.
    pub fn terminate(self) -> std::process::ExitStatus {
        self.sigterm();
        self.wait_exit()
    }

    pub fn sigterm(&self) {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status();
        assert!(sent.is_ok_and(|s| s.success()), "kill -TERM {pid}");
    }

    /// Waits (bounded) for the process to exit.
    pub fn wait_exit(mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + START_BOUND;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "no exit after SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Connector {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Connector {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

/// Sends `name` (a `kill -s` signal name such as `HUP`) to `pid`.
pub fn signal(pid: u32, name: &str) {
    let pid = pid.to_string();
    let sent = Command::new("kill").args(["-s", name, &pid]).status();
    assert!(sent.is_ok_and(|s| s.success()), "kill -s {name} {pid}");
}

/// Lines in `log` so far.
pub fn line_count(log: &Path) -> usize {
    std::fs::read_to_string(log).map_or(0, |t| t.lines().count())
}
