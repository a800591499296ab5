//! Child processes whose output goes to a log file and, line by line, to the test.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// A start-up (process spawn, RocksDB recovery, listeners) must finish within this.
pub const START_BOUND: Duration = Duration::from_secs(30);

/// Spawns `command` with its stdout and stderr appended to `log` line by line, and sent on
/// the returned channel as they come.
pub fn spawn_logged(
    mut command: Command,
    log: &Path,
) -> Result<(Child, mpsc::Receiver<String>), String> {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("spawn: {e}"))?;
    let (tx, rx) = mpsc::channel::<String>();
    for stream in [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
    ]
    .into_iter()
    .flatten()
    {
        let tx = tx.clone();
        let log = log.to_path_buf();
        std::thread::spawn(move || {
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log)
                .ok();
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                if let Some(f) = file.as_mut() {
                    let _ = writeln!(f, "{line}");
                }
                let _ = tx.send(line);
            }
        });
    }
    Ok((child, rx))
}

/// Lines of the file at `log` that contain `what` (0 while it does not exist).
pub fn mentions(log: &Path, what: &str) -> usize {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(what))
        .count()
}
