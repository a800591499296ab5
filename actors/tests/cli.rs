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
    assert!(
        printed.ends_with('\n') && !printed.ends_with("\n\n"),
        "not one newline at the end: {:?}",
        &printed[printed.len().saturating_sub(40)..]
    );
}

/// The reference configuration with every listener on an ephemeral port (tests never bind a
/// fixed one), the store in `data`, and the admin API's token set when given.
fn ephemeral(reference: &str, data: &std::path::Path, token: Option<&str>) -> String {
    // The first commented token is the admin API's ([listeners.admin] comes first).
    let mut token = token;
    reference
        .lines()
        .map(|line| {
            let trimmed = line.trim_start();
            if let Some(t) = token.filter(|_| trimmed.starts_with("# token = ")) {
                token = None;
                return format!("token = {t:?}");
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
    let config = ephemeral(&text, &data, Some("operator-token"))
        .replace("# allow_http = false", "allow_http = true");
    assert!(config.contains("token = \"operator-token\""));
    assert!(config.contains("\nallow_http = true"));
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
    let mut spsp = None;
    let ready_by = Instant::now() + Duration::from_secs(20);
    while let Some(left) = ready_by.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(line) => {
                if let Some(url) = line.strip_prefix("admin API listening on ") {
                    admin = Some(url.to_owned());
                }
                if let Some(url) = line.strip_prefix("SPSP listening on ") {
                    spsp = Some(url.to_owned());
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
        command.args(args).arg("--config").arg(&config_path);
        // `restore` works on the store, not through the admin API: it takes no --admin.
        if args.first() != Some(&"restore") {
            command.args(["--admin", admin]);
        }
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
    let receivers = operator(&["receivers"], &admin);
    let routes = operator(&["routes"], &admin);
    let snapshot = operator(&["snapshot"], &admin);
    let ping = operator(&["ping", "test.ilp-connector.alice"], &admin);
    let ping_self = operator(&["ping", "test.ilp-connector"], &admin);
    // The local account `wallet` is given 5 000 000 units, pays 1 000 000 of them to `shop`
    // through the node, quotes without paying, and cannot pay more than it holds.
    let funded = post(
        &admin,
        "/accounts/wallet/balance",
        r#"{"adjust": -5000000}"#,
    );
    let shop_url = format!("{}/shop", spsp.clone().unwrap_or_default());
    let paid = operator(
        &[
            "pay", "--from", "wallet", "--to", &shop_url, "--amount", "1000000", "--json",
        ],
        &admin,
    );
    let quoted = operator(
        &[
            "pay",
            "--from",
            "wallet",
            "--to",
            &shop_url,
            "--amount",
            "1000",
            "--quote-only",
        ],
        &admin,
    );
    let too_much = operator(
        &[
            "pay", "--from", "wallet", "--to", &shop_url, "--amount", "99000000",
        ],
        &admin,
    );
    // Circular payments leave through a peer: alice's link is down (T01), wallet is local.
    let circular_down = operator(
        &["pay", "--circular", "--via", "alice", "--amount", "10"],
        &admin,
    );
    let circular_local = operator(
        &["pay", "--circular", "--via", "wallet", "--amount", "10"],
        &admin,
    );
    let after_pay = operator(&["balances"], &admin);
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
    // The reference configuration's local account, paid at the SPSP server's bound address
    // (no https public_url: no payment pointer), /.well-known/pay being its default account.
    assert_eq!(receivers.0, Some(0), "{receivers:?}");
    let shop = receivers
        .1
        .lines()
        .find(|l| l.starts_with("shop "))
        .unwrap_or_else(|| panic!("no shop row: {receivers:?}"));
    assert!(shop.contains("http://127.0.0.1:"), "{receivers:?}");
    assert!(shop.contains("/.well-known/pay"), "{receivers:?}");
    assert!(shop.contains("USD 9"), "{receivers:?}");
    assert!(!receivers.1.contains("alice"), "{receivers:?}");
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
    // Our own address: a round trip, however the node's accounts are linked.
    assert_eq!(ping_self.0, Some(0), "{ping_self:?}");
    assert!(ping_self.1.contains("\"rtt_ms\""), "{ping_self:?}");
    for out in [&balances, &routes, &snapshot, &ping_self] {
        assert!(
            out.1.ends_with('\n') && !out.1.ends_with("\n\n"),
            "not one newline at the end: {out:?}"
        );
    }
    assert_eq!(restore_running.0, Some(1), "{restore_running:?}");
    assert!(
        restore_running.2.contains("is a node running on it?"),
        "{restore_running:?}"
    );
    assert_eq!(status.and_then(|s| s.code()), Some(0));
    assert_eq!(after_stop.0, Some(1), "{after_stop:?}");
    assert!(after_stop.2.contains("not reachable"), "{after_stop:?}");
    assert_eq!(restore_stopped.0, Some(0), "{restore_stopped:?}");
    assert!(funded.contains("-5000000"), "{funded}");
    assert_eq!(paid.0, Some(0), "{paid:?}");
    let paid_json: serde_json::Value = serde_json::from_str(paid.1.trim()).expect("--json");
    assert_eq!(paid_json["status"], "completed", "{paid:?}");
    assert_eq!(paid_json["progress"]["sent"]["amount"], "1000000");
    // The node keeps its spread (0.2 % by default) on the way to its own local account.
    assert_eq!(paid_json["progress"]["delivered"]["amount"], "998000");
    assert_eq!(quoted.0, Some(0), "{quoted:?}");
    assert!(quoted.1.contains("rate (probed)"), "{quoted:?}");
    assert!(
        quoted
            .1
            .lines()
            .any(|l| l.starts_with("status") && l.ends_with(" quoted")),
        "{quoted:?}"
    );
    assert_eq!(circular_down.0, Some(1), "{circular_down:?}");
    assert!(
        circular_down.1.contains("rejected T01"),
        "{circular_down:?}"
    );
    assert_eq!(circular_local.0, Some(1), "{circular_local:?}");
    assert!(
        circular_local.2.contains("local account"),
        "{circular_local:?}"
    );
    assert_eq!(too_much.0, Some(1), "{too_much:?}");
    assert!(too_much.2.contains("may spend 4000000"), "{too_much:?}");
    let row = |name: &str| {
        after_pay
            .1
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_default()
            .to_owned()
    };
    assert!(row("wallet ").contains("-4000000"), "{after_pay:?}");
    assert!(row("shop ").contains("-998000"), "{after_pay:?}");
}

/// One HTTP/1.1 POST with the test's token; the response as text (bounded by a timeout).
fn post(base: &str, path: &str, body: &str) -> String {
    use std::io::{Read, Write};
    let host = base.trim_start_matches("http://");
    let Ok(mut stream) = std::net::TcpStream::connect(host) else {
        return String::new();
    };
    let _ = stream.set_read_timeout(Some(std::time::Duration::from_secs(10)));
    let request = format!(
        "POST {path} HTTP/1.1\r\nhost: {host}\r\nauthorization: Bearer operator-token\r\n\
         content-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(request.as_bytes());
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer
}

/// Every command's `--help` (and `help COMMAND`) prints that command's usage on stdout and exits
/// 0 without reading any file: run in an empty directory, with a `--config` that does not
/// exist, and nothing appears in the directory.
#[test]
fn every_command_prints_its_usage_on_help_without_reading_files() {
    let dir = tempfile::tempdir().expect("temp dir");
    let commands = [
        "run",
        "check-config",
        "ping",
        "balances",
        "receivers",
        "routes",
        "snapshot",
        "restore",
    ];
    let run = |args: &[&str]| {
        let out = bin()
            .args(args)
            .current_dir(dir.path())
            .env_remove("ILP_ADMIN_TOKEN")
            .output()
            .expect("binary runs");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    for command in commands {
        let usage = format!("usage: ilp-connector {command}");
        for args in [
            vec![command, "--help"],
            vec![command, "-h"],
            vec!["help", command],
            vec![command, "--help", "--config", "/nonexistent/ilp.toml"],
            vec!["--config", "/nonexistent/ilp.toml", command, "-h"],
        ] {
            let (code, stdout, stderr) = run(&args);
            assert_eq!(code, Some(0), "{args:?}: {stdout}{stderr}");
            assert!(stdout.starts_with(&usage), "{args:?}: {stdout}");
            assert!(
                stdout.ends_with('\n') && !stdout.ends_with("\n\n"),
                "{args:?}: {stdout:?}"
            );
            assert!(stderr.is_empty(), "{args:?}: {stderr}");
        }
    }
    for args in [vec!["--help"], vec!["help"], vec!["-h"]] {
        let (code, stdout, _) = run(&args);
        assert_eq!(code, Some(0), "{args:?}");
        assert!(
            stdout.starts_with("usage: ilp-connector [COMMAND]"),
            "{stdout}"
        );
        for command in commands {
            assert!(stdout.contains(command), "{command} missing from {stdout}");
        }
    }
    // A command without its operand, or one that does not exist: exit 2 with the usage.
    let (code, _, stderr) = run(&["ping"]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("ping needs an ILP address"), "{stderr}");
    assert!(stderr.contains("usage: ilp-connector ping"), "{stderr}");
    // pay --circular has its own flags, and pay's others are not among them.
    for (args, message) in [
        (
            &["pay", "--circular", "--amount", "5"][..],
            "pay --circular needs --via ACCOUNT",
        ),
        (
            &["pay", "--circular", "--via", "a"][..],
            "pay --circular needs --amount N",
        ),
        (
            &[
                "pay",
                "--circular",
                "--via",
                "a",
                "--amount",
                "5",
                "--to",
                "$x.y",
            ][..],
            "--to is for paying a pointer",
        ),
        (
            &[
                "pay", "--from", "w", "--to", "$x.y", "--amount", "5", "--via", "a",
            ][..],
            "--via is an option of pay --circular",
        ),
        (
            &[
                "pay",
                "--circular",
                "--via",
                "a",
                "--amount",
                "5",
                "--timeout-ms",
                "soon",
            ][..],
            "--timeout-ms needs a number",
        ),
        (
            &["ping", "test.x", "--via", "a"][..],
            "--via is an option of pay",
        ),
    ] {
        let (code, _, stderr) = run(args);
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(message), "{args:?}: {stderr}");
    }
    let (code, _, stderr) = run(&["frobnicate", "--help"]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("unknown command"), "{stderr}");
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .expect("read temp dir")
        .collect();
    assert!(leftovers.is_empty(), "files appeared: {leftovers:?}");
}

/// A stand-in for a node's admin API on 127.0.0.1:0 that answers the operator commands'
/// requests with fixed JSON, requires `Bearer <token>`, and records each request line. It
/// serves until dropped (bounded: it stops by itself after 60 s).
struct FakeAdmin {
    url: String,
    requests: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakeAdmin {
    fn start(token: &'static str) -> FakeAdmin {
        use std::io::{Read, Write};
        use std::sync::atomic::Ordering;
        use std::time::{Duration, Instant};

        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        listener.set_nonblocking(true).expect("nonblocking");
        let url = format!("http://{}", listener.local_addr().expect("local addr"));
        let requests = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (seen, stopped) = (requests.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let until = Instant::now() + Duration::from_secs(60);
            while !stopped.load(Ordering::SeqCst) && Instant::now() < until {
                let mut stream = match listener.accept() {
                    Ok((stream, _)) => stream,
                    Err(_) => {
                        std::thread::sleep(Duration::from_millis(5));
                        continue;
                    }
                };
                let _ = stream.set_nonblocking(false);
                let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                // The head, then as much body as Content-Length says (bounded by the timeout).
                let complete = |r: &[u8]| {
                    let text = String::from_utf8_lossy(r);
                    let Some((head, body)) = text.split_once("\r\n\r\n") else {
                        return false;
                    };
                    let length = head
                        .lines()
                        .find_map(|l| {
                            let (name, value) = l.split_once(':')?;
                            name.eq_ignore_ascii_case("content-length")
                                .then(|| value.trim().parse::<usize>().ok())?
                        })
                        .unwrap_or(0);
                    body.len() >= length
                };
                while !complete(&request) {
                    match stream.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let text = String::from_utf8_lossy(&request).into_owned();
                let line = text.lines().next().unwrap_or_default().to_owned();
                seen.lock().expect("requests").push(line.clone());
                let authorized = text
                    .lines()
                    .any(|l| l.eq_ignore_ascii_case(&format!("authorization: Bearer {token}")));
                let (status, body) = if !authorized {
                    (
                        "401 Unauthorized",
                        r#"{"error":"missing or wrong bearer token"}"#,
                    )
                } else if line.starts_with("GET /accounts ") {
                    (
                        "200 OK",
                        r#"[{"id":"alice","relation":"child","asset_code":"USD","asset_scale":9,"link_up":true,"balance":-5,"pending_incoming":0,"pending_outgoing":0},{"id":"bob","relation":"peer","asset_code":"USD","asset_scale":9,"link_up":false,"balance":12,"pending_incoming":0,"pending_outgoing":3}]"#,
                    )
                } else if line.starts_with("GET /routes ") {
                    (
                        "200 OK",
                        r#"[{"prefix":"","account":"bob","kind":"default"},{"prefix":"test.node.alice","account":"alice","kind":"child"}]"#,
                    )
                } else if line.starts_with("POST /ping ") {
                    ("200 OK", r#"{"destination":"test.node","rtt_ms":0.02}"#)
                } else if line.starts_with("POST /snapshot ") {
                    ("200 OK", r#"{"path":"/data/snapshots/1"}"#)
                } else {
                    ("404 Not Found", r#"{"error":"no such endpoint"}"#)
                };
                let answer = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(answer.as_bytes());
            }
        });
        FakeAdmin {
            url,
            requests,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for FakeAdmin {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// `--admin URL` names the node without a configuration file: the operator commands run in an
/// empty directory, with the token from `--token` or `ILP_ADMIN_TOKEN`; each output ends with
/// exactly one newline (tables included). Without `--admin` the missing file is an error that
/// points at `--admin`.
#[test]
fn admin_url_needs_no_configuration_file() {
    let admin = FakeAdmin::start("op-token");
    let dir = tempfile::tempdir().expect("temp dir");
    let run = |args: &[&str], env_token: Option<&str>| {
        let mut command = bin();
        command
            .args(args)
            .current_dir(dir.path())
            .env_remove("ILP_ADMIN_TOKEN");
        if let Some(token) = env_token {
            command.env("ILP_ADMIN_TOKEN", token);
        }
        let out = command.output().expect("binary runs");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let url = admin.url.as_str();
    let balances = run(&["balances", "--admin", url, "--token", "op-token"], None);
    let routes = run(&["routes", "--admin", url], Some("op-token"));
    let ping = run(
        &["ping", "test.node", "--admin", url, "--token=op-token"],
        None,
    );
    let snapshot = run(&["snapshot", "--admin", url], Some("op-token"));
    let no_token = run(&["balances", "--admin", url], None);
    let no_admin = run(&["balances"], Some("op-token"));
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .expect("read temp dir")
        .collect();
    let requests = admin.requests.lock().expect("requests").clone();
    drop(admin);

    assert_eq!(balances.0, Some(0), "{balances:?}");
    assert_eq!(
        balances.1,
        "account  relation  asset  balance  pending_in  pending_out  link\n\
         alice    child     USD 9  -5       0           0            up\n\
         bob      peer      USD 9  12       0           3            down\n"
    );
    assert_eq!(routes.0, Some(0), "{routes:?}");
    assert_eq!(
        routes.1,
        "prefix           account  kind\n\
         (default)        bob      default\n\
         test.node.alice  alice    child\n"
    );
    assert_eq!(ping.0, Some(0), "{ping:?}");
    assert_eq!(ping.1, "{\"destination\":\"test.node\",\"rtt_ms\":0.02}\n");
    assert_eq!(snapshot.0, Some(0), "{snapshot:?}");
    assert_eq!(snapshot.1, "/data/snapshots/1\n");
    for out in [&balances, &routes, &ping, &snapshot] {
        assert!(out.2.is_empty(), "{out:?}");
    }
    assert_eq!(no_token.0, Some(1), "{no_token:?}");
    assert!(no_token.2.contains("401"), "{no_token:?}");
    assert_eq!(no_admin.0, Some(2), "{no_admin:?}");
    assert!(
        no_admin.2.contains("cannot read config.toml"),
        "{no_admin:?}"
    );
    assert!(no_admin.2.contains("--admin"), "{no_admin:?}");
    assert!(leftovers.is_empty(), "files appeared: {leftovers:?}");
    assert_eq!(
        requests,
        [
            "GET /accounts HTTP/1.1",
            "GET /routes HTTP/1.1",
            "POST /ping HTTP/1.1",
            "POST /snapshot HTTP/1.1",
            "GET /accounts HTTP/1.1",
        ]
    );
}

/// A node the test started: its process and the lines it printed until it ran.
struct Started {
    child: std::process::Child,
    lines: Vec<String>,
}

impl Started {
    /// Runs the binary on `config_path` and reads its stdout (bounded) until it runs.
    fn run(config_path: &std::path::Path) -> Started {
        use std::io::{BufRead, BufReader};
        use std::time::{Duration, Instant};
        let mut child = bin()
            .args(["run", "--config"])
            .arg(config_path)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("binary starts");
        let stdout = child.stdout.take().expect("stdout piped");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut lines = Vec::new();
        let ready_by = Instant::now() + Duration::from_secs(20);
        while let Some(left) = ready_by.checked_duration_since(Instant::now()) {
            match rx.recv_timeout(left) {
                Ok(line) => {
                    let running = line.contains("ilp-connector running");
                    lines.push(line);
                    if running {
                        break;
                    }
                }
                Err(_) => break,
            }
        }
        Started { child, lines }
    }

    /// What the node printed after `prefix`.
    fn printed(&self, prefix: &str) -> Option<String> {
        self.lines
            .iter()
            .find_map(|l| l.strip_prefix(prefix).map(str::to_owned))
    }
}

impl Drop for Started {
    /// SIGTERM by PID, then SIGKILL if it has not exited within 20 s.
    fn drop(&mut self) {
        use std::time::{Duration, Instant};
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
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

/// A plain HTTP/1.1 upstream on its own thread answering every request `stored <n>`; the count
/// of requests it served. It stops when the test process ends.
fn counting_upstream() -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::sync::atomic::{AtomicUsize, Ordering};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind upstream");
    let addr = listener.local_addr().expect("upstream address");
    let served = std::sync::Arc::new(AtomicUsize::new(0));
    let count = served.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().map_while(Result::ok) {
            let _ = stream.set_read_timeout(Some(std::time::Duration::from_secs(5)));
            let mut reader = BufReader::new(stream);
            loop {
                let mut length = 0usize;
                let mut line = String::new();
                let mut head_ok = false;
                while reader.read_line(&mut line).unwrap_or(0) > 0 {
                    if line == "\r\n" {
                        head_ok = true;
                        break;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap_or(0);
                    }
                    line.clear();
                }
                if !head_ok {
                    break;
                }
                let mut body = vec![0; length];
                if reader.read_exact(&mut body).is_err() {
                    break;
                }
                let n = count.fetch_add(1, Ordering::SeqCst) + 1;
                let answer = format!("stored {n}");
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\r\n{answer}",
                    answer.len()
                );
                if reader.get_mut().write_all(response.as_bytes()).is_err() {
                    break;
                }
            }
        }
    });
    (addr, served)
}

/// `ilp-connector http` pays the node's own paid proxy from its local account wallet (the
/// proxy is paid to shop): without --max-price it pays nothing and exits 1; with it, the upload
/// is paid, sent once and printed (with -i, status and headers first), what was paid on stderr.
#[test]
fn http_pays_a_paid_api_within_its_max_price() {
    use std::sync::atomic::Ordering;
    let (upstream, served) = counting_upstream();
    let text = std::fs::read_to_string(reference_config()).expect("config.toml");
    let dir = std::env::temp_dir().join(format!("ilp-cli-http-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let config = format!(
        "{}\n[paid_http]\nbind = \"127.0.0.1:0\"\nupstream = \"http://{upstream}\"\n\
         account = \"shop\"\n[[paid_http.routes]]\nmethod = \"POST\"\npath_prefix = \"/upload\"\n\
         price = 1000000\n",
        ephemeral(&text, &dir.join("data"), None)
    );
    let config_path = dir.join("config.toml");
    std::fs::write(&config_path, config).expect("write config");
    let node = Started::run(&config_path);
    let admin = node.printed("admin API listening on ").unwrap_or_default();
    let proxy = node
        .printed("paid HTTP proxy listening on ")
        .unwrap_or_default();
    let cli = |args: &[&str]| {
        let out = bin()
            .args(args)
            .args(["--admin", &admin])
            .output()
            .expect("binary runs");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let funded = post(
        &admin,
        "/accounts/wallet/balance",
        r#"{"adjust": -5000000}"#,
    );
    let upload = format!("{proxy}/upload");
    let unpaid = cli(&["http", "POST", &upload, "-d", "img", "--from", "wallet"]);
    let paid = cli(&[
        "http",
        &upload,
        "-d",
        "img",
        "-H",
        "Content-Type: image/png",
        "--from",
        "wallet",
        "--max-price",
        "2000000",
        "-i",
    ]);
    let no_from = cli(&["http", &upload]);
    let balances = cli(&["balances"]);
    drop(node);
    std::fs::remove_dir_all(&dir).ok();

    assert!(!admin.is_empty() && !proxy.is_empty(), "{admin} {proxy}");
    assert!(funded.contains("-5000000"), "{funded}");
    assert_eq!(unpaid.0, Some(1), "{unpaid:?}");
    assert!(unpaid.2.contains("no maximum price"), "{unpaid:?}");
    assert_eq!(paid.0, Some(0), "{paid:?}");
    assert!(paid.1.starts_with("HTTP 200\r\n"), "{paid:?}");
    assert!(
        paid.1.to_ascii_lowercase().contains("\r\npay-balance: "),
        "{paid:?}"
    );
    assert!(paid.1.ends_with("\r\n\r\nstored 1"), "{paid:?}");
    assert!(paid.2.starts_with("paid "), "{paid:?}");
    assert_eq!(served.load(Ordering::SeqCst), 1);
    assert_eq!(no_from.0, Some(2), "{no_from:?}");
    assert!(
        no_from.2.contains("http needs --from ACCOUNT"),
        "{no_from:?}"
    );
    // What the wallet spent is what shop was paid (the node keeps its 0.2 % spread on the way);
    // columns: account, relation, asset code, scale, balance.
    let balance = |name: &str| -> i64 {
        balances
            .1
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(4)?.parse::<i64>().ok())
            .unwrap_or_default()
    };
    let spent = balance("wallet ") + 5_000_000;
    let shop = -balance("shop ");
    assert!(spent > 1_000_000 && spent <= 2_000_000, "{balances:?}");
    assert!(shop >= 1_000_000 && shop <= spent, "{balances:?}");
}
