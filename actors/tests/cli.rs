//! The binary against real files: the reference config.toml is accepted; a broken file gets
//! every error with its key path and exit code 2.

use std::process::Command;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ilp-connector"))
}

fn reference_config() -> String {
    format!("{}/../config.toml", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn reference_config_is_accepted() {
    let out = bin()
        .args(["check-config", "--config", &reference_config()])
        .output()
        .expect("binary runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(printed.contains("test.ilp-connector"), "{printed}");
}

/// The reference configuration with every listener on an ephemeral port (tests never bind a
/// fixed one), the store in `data`, and the admin API's token set when given.
fn ephemeral(reference: &str, data: &std::path::Path, token: Option<&str>) -> String {
    reference
        .lines()
        .map(|line| {
            let trimmed = line.trim_start();
            match token {
                Some(token) if trimmed.starts_with("# token = ") => {
                    return format!("token = {token:?}");
                }
                _ => {}
            }
            if trimmed.starts_with("bind = ") {
                "bind = \"127.0.0.1:0\"".to_owned()
            } else if trimmed.starts_with("path = ") {
                format!("path = {:?}", data.display().to_string())
            } else {
                line.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// `run` on the reference config starts the node, stays up, and exits 0 on SIGTERM.
#[cfg(unix)]
#[test]
fn run_stays_up_until_sigterm() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    use std::time::{Duration, Instant};

    // The reference configuration with every listener on an ephemeral port: tests never bind a
    // fixed one.
    let text = std::fs::read_to_string(reference_config()).expect("config.toml");
    let dir = std::env::temp_dir().join(format!("ilp-cli-run-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let data = dir.join("data");
    let ephemeral = ephemeral(&text, &data, None);
    assert_ne!(ephemeral, text, "config.toml binds listeners");
    let config_path = dir.join("config.toml");
    std::fs::write(&config_path, ephemeral).expect("write config");
    let mut child = bin()
        .args(["run", "--config"])
        .arg(&config_path)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("binary starts");
    let pid = child.id();
    let stdout = child.stdout.take().expect("stdout piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // The node prints a few start-up lines; wait (bounded) for the one saying it runs.
    let ready_by = Instant::now() + Duration::from_secs(20);
    let mut first = Err(std::sync::mpsc::RecvTimeoutError::Timeout);
    while let Some(left) = ready_by.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(line) if line.contains("ilp-connector running") => {
                first = Ok(line);
                break;
            }
            Ok(_) => continue,
            Err(e) => {
                first = Err(e);
                break;
            }
        }
    }
    // Still running a moment later: it serves until told to stop.
    std::thread::sleep(Duration::from_millis(300));
    let still_running = child.try_wait().expect("try_wait").is_none();
    let killed = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill runs");
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let rocksdb_files = std::fs::read_dir(&data).map(|d| d.count()).unwrap_or(0);
    std::fs::remove_dir_all(&dir).ok();
    let first = first.expect("the node prints a line once it runs");
    assert!(
        rocksdb_files > 0,
        "the node opened no RocksDB store in store.path"
    );
    assert!(
        first.contains("ilp-connector running: node test.ilp-connector"),
        "{first}"
    );
    assert!(still_running, "the node exited before it was told to");
    assert!(killed.success());
    let status = status.expect("the node exits within 20 s of SIGTERM");
    assert_eq!(status.code(), Some(0));
}

#[test]
fn broken_config_lists_every_error_and_exits_2() {
    let dir = std::env::temp_dir().join(format!("ilp-cli-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("broken.toml");
    std::fs::write(
        &path,
        "[node]\nilp_address = \"bad address\"\nasset_scale = 300\nbogus_key = 1\n",
    )
    .expect("write config");
    let out = bin()
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .expect("binary runs");
    std::fs::remove_dir_all(&dir).ok();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for key in ["node.ilp_address", "node.asset_scale", "node.bogus_key"] {
        assert!(stderr.contains(key), "missing {key} in:\n{stderr}");
    }
}

#[test]
fn missing_file_and_bad_arguments_exit_2() {
    let out = bin()
        .args(["--config", "/nonexistent/ilp.toml"])
        .output()
        .expect("binary runs");
    assert_eq!(out.status.code(), Some(2));
    let out = bin().arg("--frobnicate").output().expect("binary runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("usage"));
}

/// The operator commands against a running node found through the admin address it prints:
/// `balances`, `routes`, `snapshot`, `ping`; `restore` refused while the node runs and done
/// once it stopped; a stopped node is reported unreachable with exit code 1.
#[cfg(unix)]
#[test]
fn operator_commands_talk_to_the_admin_api() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    use std::time::{Duration, Instant};

    let text = std::fs::read_to_string(reference_config()).expect("config.toml");
    let dir = std::env::temp_dir().join(format!("ilp-cli-admin-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let data = dir.join("data");
    let config = ephemeral(&text, &data, Some("operator-token"));
    assert!(config.contains("token = \"operator-token\""));
    let config_path = dir.join("config.toml");
    std::fs::write(&config_path, config).expect("write config");
    let mut node = bin()
        .args(["run", "--config"])
        .arg(&config_path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("binary starts");
    let pid = node.id();
    let stdout = node.stdout.take().expect("stdout piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut admin = None;
    let ready_by = Instant::now() + Duration::from_secs(20);
    while let Some(left) = ready_by.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(line) => {
                if let Some(url) = line.strip_prefix("admin API listening on ") {
                    admin = Some(url.to_owned());
                }
                if line.contains("ilp-connector running") {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    let operator = |args: &[&str], admin: &str| {
        let mut command = bin();
        command
            .args(args)
            .arg("--config")
            .arg(&config_path)
            .args(["--admin", admin]);
        let out = command.output().expect("binary runs");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let stop = |node: &mut std::process::Child| {
        let _ = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = node.try_wait() {
                return Some(status);
            }
            if Instant::now() > deadline {
                let _ = node.kill();
                let _ = node.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let Some(admin) = admin else {
        stop(&mut node);
        panic!("the node printed no admin API address");
    };
    let balances = operator(&["balances"], &admin);
    let routes = operator(&["routes"], &admin);
    let snapshot = operator(&["snapshot"], &admin);
    let ping = operator(&["ping", "test.ilp-connector.alice"], &admin);
    let snapshot_dir = snapshot.1.trim().to_owned();
    let restore_running = operator(&["restore", &snapshot_dir], &admin);
    let status = stop(&mut node);
    let after_stop = operator(&["balances"], &admin);
    let restore_stopped = operator(&["restore", &snapshot_dir], &admin);
    let snapshot_ok = std::path::Path::new(&snapshot_dir)
        .join("CURRENT")
        .is_file();
    std::fs::remove_dir_all(&dir).ok();

    assert_eq!(balances.0, Some(0), "{balances:?}");
    assert!(balances.1.starts_with("account"), "{balances:?}");
    assert!(balances.1.contains("alice"), "{balances:?}");
    assert_eq!(routes.0, Some(0), "{routes:?}");
    assert!(routes.1.contains("test.ilp-connector.alice"), "{routes:?}");
    assert_eq!(snapshot.0, Some(0), "{snapshot:?}");
    assert!(snapshot_dir.contains("snapshots"), "{snapshot:?}");
    assert!(
        snapshot_ok,
        "the snapshot has no CURRENT file: {snapshot:?}"
    );
    // alice has no transport in the reference configuration: her link is down (T01).
    assert_eq!(ping.0, Some(1), "{ping:?}");
    assert!(ping.2.contains("T01"), "{ping:?}");
    assert_eq!(restore_running.0, Some(1), "{restore_running:?}");
    assert!(
        restore_running.2.contains("is a node running on it?"),
        "{restore_running:?}"
    );
    assert_eq!(status.and_then(|s| s.code()), Some(0));
    assert_eq!(after_stop.0, Some(1), "{after_stop:?}");
    assert!(after_stop.2.contains("not reachable"), "{after_stop:?}");
    assert_eq!(restore_stopped.0, Some(0), "{restore_stopped:?}");
}
