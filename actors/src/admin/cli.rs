//! The operator commands of the `ilp-connector` binary: `ping`, `balances`, `routes` and
//! `snapshot` call a running node's admin API (address and token from `[listeners.admin]`, or
//! `--admin URL`); `restore` copies a snapshot over `store.path` of a node that is not running.

use crate::link::http::client::error_chain;
use crate::store::rocks::RocksStore;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use ilp::config::Config;
use serde_json::{json, Value};
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;
use thiserror::Error;

/// Bound on one admin request (a ping or a circular payment waits for its own timeout inside
/// it): above the longest circular payment the API accepts
/// ([`crate::admin::MAX_CIRCULAR_TIMEOUT_MS`]).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(75);

#[derive(Debug, Error)]
pub enum CliError {
    #[error("the node's admin API at {url} is not reachable: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("{status}: {message}")]
    Api { status: StatusCode, message: String },
    #[error("the admin API answered something that is not JSON: {0}")]
    BadAnswer(String),
    #[error("{0}")]
    Restore(String),
    /// A payment ran and failed: what to print (its final state), then exit 1.
    #[error("{0}")]
    PaymentFailed(String),
    /// A flag's value cannot be used (a file that cannot be read, a malformed header).
    #[error("{0}")]
    Usage(String),
}

/// Where the admin API of the configured node is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminTarget {
    /// `http://host:port`, no trailing slash.
    pub base: String,
    pub token: Option<String>,
}

impl AdminTarget {
    /// From `[listeners.admin]`: a wildcard bind is reached on loopback. `url` overrides the
    /// address (e.g. a node whose config binds port 0).
    pub fn from_config(config: &Config, url: Option<&str>) -> AdminTarget {
        let admin = &config.listeners.admin;
        let base = match url {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None => {
                let ip = match admin.bind.ip() {
                    IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
                    IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
                    ip => ip,
                };
                format!("http://{}", SocketAddr::new(ip, admin.bind.port()))
            }
        };
        AdminTarget {
            base,
            token: admin.token.as_ref().map(|t| t.expose().to_owned()),
        }
    }

    /// From what the operator gave (`url`, `token`), the rest from `config` when there is one:
    /// an operator command needs no configuration file when it names the node's admin API.
    /// Without `url` and `config` the address is `[listeners.admin]`'s default.
    pub fn resolve(config: Option<&Config>, url: Option<&str>, token: Option<String>) -> Self {
        let default = Config::default();
        let mut target = AdminTarget::from_config(config.unwrap_or(&default), url);
        if token.is_some() {
            target.token = token;
        }
        target
    }

    /// One request; the JSON answer of a 2xx, else the API's error message.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, CliError> {
        self.call_with(method, path, body, &[]).await
    }

    /// As [`AdminTarget::call`], with extra request headers.
    pub async fn call_with(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> Result<Value, CliError> {
        let url = format!("{}{path}", self.base);
        let client: Client<HttpConnector, Full<Bytes>> =
            Client::builder(TokioExecutor::new()).build(HttpConnector::new());
        let mut request = Request::builder().method(method).uri(&url);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(token) = &self.token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let body = body.map_or_else(Bytes::new, |b| Bytes::from(b.to_string()));
        if !body.is_empty() {
            request = request.header("content-type", "application/json");
        }
        let unreachable = |reason: String| CliError::Unreachable {
            url: url.clone(),
            reason,
        };
        let request = request
            .body(Full::new(body))
            .map_err(|e| unreachable(e.to_string()))?;
        let response = tokio::time::timeout(REQUEST_TIMEOUT, client.request(request))
            .await
            .map_err(|_| unreachable("no answer in time".into()))?
            .map_err(|e| unreachable(error_chain(&e)))?;
        let status = response.status();
        let bytes = tokio::time::timeout(REQUEST_TIMEOUT, response.into_body().collect())
            .await
            .map_err(|_| unreachable("no answer in time".into()))?
            .map_err(|e| unreachable(e.to_string()))?
            .to_bytes();
        let value: Value = serde_json::from_slice(&bytes)
            .map_err(|_| CliError::BadAnswer(String::from_utf8_lossy(&bytes).into_owned()))?;
        if status.is_success() {
            Ok(value)
        } else {
            let message = value
                .get("error")
                .and_then(Value::as_str)
                .map_or_else(|| value.to_string(), str::to_owned);
            Err(CliError::Api { status, message })
        }
    }
}

/// An operator command that talks to the admin API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operation {
    Ping(String),
    Balances,
    Receivers,
    Routes,
    Snapshot,
    Pay(Box<PayOptions>),
    Http(Box<HttpOptions>),
}

/// `http`'s flags: a request like curl's, paid for from `from`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HttpOptions {
    pub from: String,
    /// `GET` unless given (`POST` when there is data, as curl does).
    pub method: Option<String>,
    pub url: String,
    /// `-d`: the body; `@FILE` reads it from FILE.
    pub data: Option<String>,
    /// `-H 'Name: value'`, in order.
    pub headers: Vec<String>,
    pub max_price: Option<String>,
    /// `-i`: the status line and headers before the body.
    pub include: bool,
    /// `--json`: the admin API's answer as it is.
    pub json: bool,
    pub timeout_ms: Option<u64>,
}

/// What `http` prints: the body (raw bytes) on stdout, the payments on stderr.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpOutput {
    pub stdout: Vec<u8>,
    pub stderr: String,
    /// The server answered 1xx to 3xx.
    pub success: bool,
}

/// Fetches `options.url` through the node (`POST /accounts/<from>/http`), which pays what the
/// server asks within `--max-price`.
pub async fn http(target: &AdminTarget, options: &HttpOptions) -> Result<HttpOutput, CliError> {
    use base64::Engine as _;
    let mut headers = Vec::new();
    for header in &options.headers {
        let Some((name, value)) = header.split_once(':') else {
            return Err(CliError::Usage(format!(
                "-H {header:?}: expected 'Name: value'"
            )));
        };
        headers.push(json!([name.trim(), value.trim()]));
    }
    let mut body = json!({
        "url": options.url,
        "headers": headers,
    });
    if let Some(data) = &options.data {
        let bytes = match data.strip_prefix('@') {
            Some(file) => {
                std::fs::read(file).map_err(|e| CliError::Usage(format!("-d @{file}: {e}")))?
            }
            None => data.as_bytes().to_vec(),
        };
        body["body_base64"] = json!(base64::engine::general_purpose::STANDARD.encode(bytes));
    }
    let method = options.method.clone().unwrap_or_else(|| {
        if options.data.is_some() {
            "POST"
        } else {
            "GET"
        }
        .to_owned()
    });
    body["method"] = json!(method);
    if let Some(max) = &options.max_price {
        body["max_price"] = json!(max);
    }
    if let Some(ms) = options.timeout_ms {
        body["timeout_ms"] = json!(ms);
    }
    let path = format!("/accounts/{}/http", options.from);
    // Not fetched, or not paid: the error says what was paid on the way.
    let answer = target.call(Method::POST, &path, Some(&body)).await?;
    let status = answer["status"].as_u64().unwrap_or_default();
    let success = (100..400).contains(&status);
    if options.json {
        return Ok(HttpOutput {
            stdout: format!("{answer}\n").into_bytes(),
            stderr: String::new(),
            success,
        });
    }
    let mut stdout = Vec::new();
    if options.include {
        let mut head = format!("HTTP {status}\r\n");
        for pair in answer["headers"].as_array().into_iter().flatten() {
            let _ = write!(
                head,
                "{}: {}\r\n",
                pair[0].as_str().unwrap_or_default(),
                pair[1].as_str().unwrap_or_default()
            );
        }
        head.push_str("\r\n");
        stdout.extend_from_slice(head.as_bytes());
    }
    if let Some(text) = answer["body"].as_str() {
        stdout.extend_from_slice(text.as_bytes());
    } else if let Some(b64) = answer["body_base64"].as_str() {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|e| CliError::BadAnswer(format!("body_base64: {e}")))?;
        stdout.extend_from_slice(&bytes);
    }
    Ok(HttpOutput {
        stdout,
        stderr: paid_line(&answer),
        success,
    })
}

/// `paid 11 USD/2 in 1 payment (delivered 10) with token ...`, or nothing when nothing was paid.
fn paid_line(answer: &Value) -> String {
    let payments = answer["payments"].as_array().cloned().unwrap_or_default();
    if payments.is_empty() {
        return String::new();
    }
    let sent: Vec<String> = payments
        .iter()
        .map(|p| money(&p["progress"]["sent"]))
        .collect();
    let delivered: Vec<String> = payments
        .iter()
        .map(|p| money(&p["progress"]["delivered"]))
        .collect();
    format!(
        "paid {} ({} of the server's units delivered) in {} payment(s); token {}",
        sent.join(" + "),
        delivered.join(" + "),
        payments.len(),
        answer["token"].as_str().unwrap_or("?")
    )
}

/// `pay`'s flags.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PayOptions {
    pub from: String,
    pub to: String,
    /// Source units (base units), or destination units with `deliver`.
    pub amount: Option<String>,
    pub deliver: Option<String>,
    pub slippage: Option<String>,
    pub max_packet: Option<String>,
    pub destination_asset: Option<String>,
    pub quote_only: bool,
    pub idempotency_key: Option<String>,
    pub json: bool,
    /// `--circular`: out through `via` and back to the node itself.
    pub circular: bool,
    pub via: Option<String>,
    pub return_via: Option<String>,
    pub min_return: Option<String>,
    pub timeout_ms: Option<u64>,
}

/// How often `pay` asks for progress.
const PAY_POLL: Duration = Duration::from_millis(250);

/// Starts the payment, follows it to its end (progress on stderr once a second) and returns
/// its final state as a table or JSON.
async fn pay(target: &AdminTarget, options: &PayOptions) -> Result<String, CliError> {
    if options.circular {
        return circular(target, options).await;
    }
    let mut body = json!({ "to": options.to });
    for (field, value) in [
        ("amount", &options.amount),
        ("deliver", &options.deliver),
        ("slippage", &options.slippage),
        ("max_packet", &options.max_packet),
        ("destination_asset", &options.destination_asset),
    ] {
        if let Some(v) = value {
            body[field] = json!(v);
        }
    }
    let from = &options.from;
    let (path, key) = if options.quote_only {
        (format!("/accounts/{from}/quotes"), None)
    } else {
        // A key of our own when none is given: printed, so that a retry can reuse it.
        let key = options
            .idempotency_key
            .clone()
            .unwrap_or_else(|| hex::encode(rand::random::<[u8; 16]>()));
        (format!("/accounts/{from}/payments"), Some(key))
    };
    let headers: Vec<(&str, &str)> = key
        .as_deref()
        .map(|k| vec![("idempotency-key", k)])
        .unwrap_or_default();
    if let (Some(key), false) = (&key, options.json) {
        eprintln!("idempotency key {key}");
    }
    let mut state = target
        .call_with(Method::POST, &path, Some(&body), &headers)
        .await?;
    let id = state["id"].as_str().unwrap_or_default().to_owned();
    let mut last_line = std::time::Instant::now();
    while !matches!(
        state["status"].as_str(),
        Some("completed" | "failed" | "interrupted" | "quoted")
    ) {
        tokio::time::sleep(PAY_POLL).await;
        state = target
            .call(
                Method::GET,
                &format!("/accounts/{from}/payments/{id}"),
                None,
            )
            .await?;
        if last_line.elapsed() >= Duration::from_secs(1) && !options.json {
            eprintln!("{}", progress_line(&state));
            last_line = std::time::Instant::now();
        }
    }
    let output = if options.json {
        state.to_string()
    } else {
        payment_table(&state)
    };
    if state["status"] == json!("completed") || state["status"] == json!("quoted") {
        Ok(output)
    } else {
        Err(CliError::PaymentFailed(output))
    }
}

/// `pay --circular`: one request, answered when the payment is back (or failed).
async fn circular(target: &AdminTarget, options: &PayOptions) -> Result<String, CliError> {
    let mut body = json!({ "via": options.via, "amount": options.amount });
    for (field, value) in [
        ("return_via", &options.return_via),
        ("min_return", &options.min_return),
    ] {
        if let Some(v) = value {
            body[field] = json!(v);
        }
    }
    if let Some(ms) = options.timeout_ms {
        body["timeout_ms"] = json!(ms);
    }
    match target.call(Method::POST, "/circular", Some(&body)).await {
        Ok(report) if options.json => Ok(report.to_string()),
        Ok(report) => Ok(circular_table(&report)),
        // It ran and was rejected: exit 1, as a failed payment.
        Err(CliError::Api { status, message }) if status == StatusCode::BAD_GATEWAY => {
            Err(CliError::PaymentFailed(message))
        }
        Err(e) => Err(e),
    }
}

fn circular_table(r: &Value) -> String {
    let leg = |leg: &Value| {
        format!(
            "{} through {}, expires {}",
            money(&leg["amount"]),
            leg["via"].as_str().unwrap_or("-"),
            leg["expires_at"].as_str().unwrap_or("-"),
        )
    };
    let first_hop = match &r["first_hop"] {
        Value::String(s) => s.clone(),
        other => format!(
            "rejected {} after the return was booked: {}",
            other["code"].as_str().unwrap_or("-"),
            other["message"].as_str().unwrap_or("-")
        ),
    };
    let rows = [
        ("circular payment", cell(r.get("id"))),
        ("destination", cell(r.get("destination"))),
        ("sent", leg(&r["sent"])),
        ("returned", leg(&r["returned"])),
        ("rate", cell(r.get("rate"))),
        (
            "round trip",
            format!("{:.1} ms", r["round_trip_ms"].as_f64().unwrap_or(0.0)),
        ),
        ("first hop", first_hop),
    ];
    let mut out = String::new();
    for (key, value) in rows {
        let _ = writeln!(out, "{key:<16}  {value}");
    }
    out
}

/// `{"amount", "code", "scale", "value"}` as `12.34 USD`.
fn money(v: &Value) -> String {
    match (v["value"].as_str(), v["code"].as_str()) {
        (Some(value), Some(code)) if !code.is_empty() => format!("{value} {code}"),
        (Some(value), _) => value.to_owned(),
        _ => "-".into(),
    }
}

fn progress_line(state: &Value) -> String {
    let p = &state["progress"];
    let of = state["quote"]["max_source_amount"]["value"]
        .as_str()
        .map(|v| format!("/{v}"))
        .unwrap_or_default();
    format!(
        "{}: sent {}{of} · delivered {} · in flight {} · rate {} · {} packets",
        state["status"].as_str().unwrap_or("-"),
        money(&p["sent"]),
        money(&p["delivered"]),
        money(&p["in_flight_source"]),
        p["rate"]["decimal"].as_str().unwrap_or("-"),
        cell(Some(&p["packets"]["sent"])),
    )
}

/// A payment's final state as `key  value` lines.
fn payment_table(state: &Value) -> String {
    let q = &state["quote"];
    let p = &state["progress"];
    let e = &state["error"];
    let mut rows = vec![
        vec!["payment".into(), cell(state.get("id"))],
        vec!["status".into(), cell(state.get("status"))],
        vec!["to".into(), cell(state.get("to"))],
        vec![
            "destination".into(),
            cell(state["destination"].get("address")),
        ],
    ];
    if !q.is_null() {
        rows.push(vec![
            "rate (probed)".into(),
            format!(
                "{} .. {} (minimum {})",
                q["rate"]["low"]["decimal"].as_str().unwrap_or("-"),
                q["rate"]["high"]["decimal"].as_str().unwrap_or("-"),
                q["rate"]["minimum"]["decimal"].as_str().unwrap_or("-"),
            ),
        ]);
        rows.push(vec!["max packet".into(), money(&q["max_packet_amount"])]);
        rows.push(vec!["max source".into(), money(&q["max_source_amount"])]);
        rows.push(vec![
            "min delivery".into(),
            money(&q["min_delivery_amount"]),
        ]);
    }
    rows.push(vec!["sent".into(), money(&p["sent"])]);
    rows.push(vec!["delivered".into(), money(&p["delivered"])]);
    if p["undelivered_source"]["amount"] != json!("0") && !p["undelivered_source"].is_null() {
        rows.push(vec!["undelivered".into(), money(&p["undelivered_source"])]);
    }
    rows.push(vec![
        "packets".into(),
        format!(
            "{} sent, {} fulfilled, rejected {}",
            cell(Some(&p["packets"]["sent"])),
            cell(Some(&p["packets"]["fulfilled"])),
            p["packets"]["rejected"],
        ),
    ]);
    if let Some(receipt) = state["receipt"].as_str() {
        rows.push(vec!["receipt".into(), receipt.to_owned()]);
    }
    if !e.is_null() {
        let mut what = format!(
            "{}: {}",
            e["kind"].as_str().unwrap_or("-"),
            e["message"].as_str().unwrap_or("-")
        );
        if let Some(code) = e["code"].as_str() {
            let _ = write!(
                what,
                " ({code} from {})",
                e["triggered_by"].as_str().unwrap_or("?")
            );
        }
        rows.push(vec!["error".into(), what]);
    }
    let width = rows.iter().map(|r| r[0].len()).max().unwrap_or(0);
    let mut out = String::new();
    for row in rows {
        let _ = writeln!(out, "{:<width$}  {}", row[0], row[1]);
    }
    out
}

/// Runs `operation` against `target` and returns what to print.
pub async fn run(target: &AdminTarget, operation: &Operation) -> Result<String, CliError> {
    match operation {
        Operation::Ping(destination) => {
            let answer = target
                .call(
                    Method::POST,
                    "/ping",
                    Some(&json!({ "destination": destination })),
                )
                .await?;
            Ok(answer.to_string())
        }
        Operation::Balances => {
            let answer = target.call(Method::GET, "/accounts", None).await?;
            Ok(balances_table(&answer))
        }
        Operation::Receivers => {
            let answer = target.call(Method::GET, "/accounts", None).await?;
            Ok(receivers_table(&answer))
        }
        Operation::Routes => {
            let answer = target.call(Method::GET, "/routes", None).await?;
            Ok(routes_table(&answer))
        }
        Operation::Pay(options) => pay(target, options).await,
        Operation::Http(options) => {
            let output = http(target, options).await?;
            Ok(String::from_utf8_lossy(&output.stdout).into_owned())
        }
        Operation::Snapshot => {
            let answer = target.call(Method::POST, "/snapshot", None).await?;
            Ok(answer
                .get("path")
                .and_then(Value::as_str)
                .map_or_else(|| answer.to_string(), str::to_owned))
        }
    }
}

fn cell(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => "-".into(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// Left-aligned columns, two spaces apart.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.len());
        }
    }
    let mut out = String::new();
    let line = |out: &mut String, cells: &[String]| {
        let text: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        let _ = writeln!(out, "{}", text.join("  ").trim_end());
    };
    let header: Vec<String> = header.iter().map(|h| (*h).to_owned()).collect();
    line(&mut out, &header);
    for row in rows {
        line(&mut out, row);
    }
    out
}

fn balances_table(accounts: &Value) -> String {
    let rows: Vec<Vec<String>> = accounts
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|a| {
            let up = match a.get("link_up").and_then(Value::as_bool) {
                // A local account has no link: the node answers its packets.
                _ if a.get("receiver").is_some() => "local",
                Some(true) => "up",
                _ => "down",
            };
            vec![
                cell(a.get("id")),
                cell(a.get("relation")),
                format!(
                    "{} {}",
                    cell(a.get("asset_code")),
                    cell(a.get("asset_scale"))
                ),
                cell(a.get("balance")),
                cell(a.get("pending_incoming")),
                cell(a.get("pending_outgoing")),
                up.to_owned(),
            ]
        })
        .collect();
    table(
        &[
            "account",
            "relation",
            "asset",
            "balance",
            "pending_in",
            "pending_out",
            "link",
        ],
        &rows,
    )
}

/// The local accounts: where each is paid (its payment pointer, else its SPSP URL), asset,
/// what it received and its maximum.
fn receivers_table(accounts: &Value) -> String {
    let rows: Vec<Vec<String>> = accounts
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter_map(|a| {
            let r = a.get("receiver")?;
            let pay_at = match r.get("payment_pointer") {
                Some(Value::String(p)) => p.clone(),
                _ => cell(r.get("spsp_url")),
            };
            Some(vec![
                cell(a.get("id")),
                pay_at,
                format!(
                    "{} {}",
                    cell(a.get("asset_code")),
                    cell(a.get("asset_scale"))
                ),
                cell(r.get("received")),
                cell(r.get("maximum")),
            ])
        })
        .collect();
    table(
        &["account", "pay at", "asset", "received", "maximum"],
        &rows,
    )
}

fn routes_table(routes: &Value) -> String {
    let rows: Vec<Vec<String>> = routes
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|r| {
            let prefix = cell(r.get("prefix"));
            vec![
                if prefix.is_empty() {
                    "(default)".to_owned()
                } else {
                    prefix
                },
                cell(r.get("account")),
                cell(r.get("kind")),
            ]
        })
        .collect();
    table(&["prefix", "account", "kind"], &rows)
}

/// Replaces the RocksDB store in `store_path` with a copy of `snapshot` (a directory made by
/// `POST /snapshot`). Refuses while a node holds the store (RocksDB's lock makes our open fail)
/// and keeps `store_path/snapshots`.
pub fn restore(snapshot: &Path, store_path: &Path) -> Result<(), CliError> {
    let fail = |m: String| CliError::Restore(m);
    if !snapshot.join("CURRENT").is_file() {
        return Err(fail(format!(
            "{} is not a RocksDB snapshot (no CURRENT file)",
            snapshot.display()
        )));
    }
    std::fs::create_dir_all(store_path)
        .map_err(|e| fail(format!("cannot create {}: {e}", store_path.display())))?;
    let store_path = store_path
        .canonicalize()
        .map_err(|e| fail(format!("{}: {e}", store_path.display())))?;
    let snapshot = snapshot
        .canonicalize()
        .map_err(|e| fail(format!("{}: {e}", snapshot.display())))?;
    let kept = store_path.join("snapshots");
    if snapshot.starts_with(&store_path) && !snapshot.starts_with(&kept) {
        return Err(fail(format!(
            "{} is inside the store it would replace",
            snapshot.display()
        )));
    }
    // Opening takes RocksDB's lock: it fails while a node runs on this store.
    let store = RocksStore::open(&store_path).map_err(|e| {
        fail(format!(
            "cannot open the store at {} (is a node running on it?): {e}",
            store_path.display()
        ))
    })?;
    store
        .close()
        .map_err(|e| fail(format!("cannot close the store: {e}")))?;
    let entries = std::fs::read_dir(&store_path)
        .map_err(|e| fail(format!("{}: {e}", store_path.display())))?;
    for entry in entries {
        let entry = entry.map_err(|e| fail(format!("{}: {e}", store_path.display())))?;
        let path = entry.path();
        if path == kept {
            continue;
        }
        let removed = if path.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        removed.map_err(|e| fail(format!("cannot remove {}: {e}", path.display())))?;
    }
    copy_dir(&snapshot, &store_path).map_err(fail)
}

fn copy_dir(from: &Path, to: &Path) -> Result<(), String> {
    let entries = std::fs::read_dir(from).map_err(|e| format!("{}: {e}", from.display()))?;
    for entry in entries {
        let entry = entry.map_err(|e| format!("{}: {e}", from.display()))?;
        let source = entry.path();
        let target: PathBuf = to.join(entry.file_name());
        if source.is_dir() {
            std::fs::create_dir_all(&target).map_err(|e| format!("{}: {e}", target.display()))?;
            copy_dir(&source, &target)?;
        } else {
            std::fs::copy(&source, &target).map_err(|e| {
                format!(
                    "cannot copy {} to {}: {e}",
                    source.display(),
                    target.display()
                )
            })?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Store, StoreOp};

    #[test]
    fn target_from_config() {
        let config = Config::from_toml_str(
            "[node]\nilp_address = \"test.a\"\n[listeners.admin]\nbind = \"0.0.0.0:7771\"\ntoken = \"secret\"\n",
        )
        .unwrap();
        assert_eq!(
            AdminTarget::from_config(&config, None),
            AdminTarget {
                base: "http://127.0.0.1:7771".into(),
                token: Some("secret".into()),
            }
        );
        assert_eq!(
            AdminTarget::from_config(&config, Some("http://[::1]:9/")).base,
            "http://[::1]:9"
        );
    }

    #[test]
    fn tables() {
        let accounts = json!([{
            "id": "alice", "relation": "child", "asset_code": "USD", "asset_scale": 9,
            "link_up": true, "balance": -5, "pending_incoming": 0, "pending_outgoing": 0
        }, {
            "id": "b", "relation": "peer", "asset_code": "EUR", "asset_scale": 2,
            "link_up": false, "balance": null, "pending_incoming": null, "pending_outgoing": null
        }]);
        assert_eq!(
            balances_table(&accounts),
            "account  relation  asset  balance  pending_in  pending_out  link\n\
             alice    child     USD 9  -5       0           0            up\n\
             b        peer      EUR 2  -        -           -            down\n"
        );
        let routes = json!([
            {"prefix": "", "account": "parent", "kind": "default"},
            {"prefix": "g.x", "account": "b", "kind": "static"}
        ]);
        assert_eq!(
            routes_table(&routes),
            "prefix     account  kind\n(default)  parent   default\ng.x        b        static\n"
        );
    }

    #[tokio::test]
    async fn restore_replaces_the_store_and_refuses_while_open() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let store = RocksStore::open(&data).unwrap();
        let set = |balance| {
            vec![StoreOp::SetBalance {
                account: "a".into(),
                balance,
            }]
        };
        store.commit(set(1)).await.unwrap();
        std::fs::create_dir_all(data.join("snapshots")).unwrap();
        let snap = data.join("snapshots").join("1");
        store.checkpoint(&snap).unwrap();
        store.commit(set(2)).await.unwrap();
        let refused = restore(&snap, &data).unwrap_err().to_string();
        assert!(refused.contains("is a node running on it?"), "{refused}");
        store.close().unwrap();
        assert!(restore(dir.path(), &data)
            .unwrap_err()
            .to_string()
            .contains("not a RocksDB snapshot"));
        restore(&snap, &data).unwrap();
        assert!(snap.join("CURRENT").is_file(), "the snapshot is kept");
        let store = RocksStore::open(&data).unwrap();
        assert_eq!(store.load_balances().unwrap().get("a"), Some(&1));
    }

    #[tokio::test]
    async fn unreachable_node_is_reported() {
        // A port nothing listens on: bind one, then free it.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let target = AdminTarget {
            base: format!("http://127.0.0.1:{port}"),
            token: None,
        };
        let e = run(&target, &Operation::Balances).await.unwrap_err();
        assert!(matches!(e, CliError::Unreachable { .. }), "{e}");
    }
}
