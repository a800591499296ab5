//! `ilp-load`: drives a connector with real packets and reports what it measured.
//!
//! It connects to the connector's BTP listener twice: as the payer account, which keeps K
//! Prepares in flight, and as the payee account, which fulfills them. It prints packets per
//! second, latency percentiles, rejects by code and (with `--connector-pid`) the connector's CPU
//! time per fulfilled packet, its resident memory and its open descriptors; `--json` adds one
//! machine-readable line for scripts.

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use ilp::packet::Address;
use ilp_actors::link::btp_ws::{BtpClientLink, BtpOptions};
use ilp_actors::link::Link;
use ilp_actors::loadgen::{self, LoadSpec, PreimagePayee};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

const USAGE: &str =
    "usage: ilp-load --btp URL --payer USER:TOKEN --payee USER:TOKEN --destination ADDRESS\n\
  or:    ilp-load --btp URL --payer USER:TOKEN (--spsp URL | --destination ADDRESS --stream-secret BASE64)\n\
  [-k IN_FLIGHT (100)] [--packets N] [--duration SECONDS] [--rate PACKETS_PER_SECOND]\n\
  [--amount UNITS (1)] [--expiry-ms MS (30000)] [--idempotent] [--connector-pid PID[,PID...]] [--json]\n\
  Stops after --packets or --duration (default: 10 s), then waits for every answer.\n\
  --http: the connector's HTTP listener; the payer POSTs to URL/accounts/USER/ilp, and ilp-load\n\
  serves the payee's /accounts/USER/ilp (and async callbacks) on --listen.\n\
  --spsp / --stream-secret: STREAM packets (1 unit each by default, stream 1) to a STREAM\n\
  receiver, with credentials from an SPSP server or given; no payee account.";

struct Args {
    /// The connector's BTP listener, or (`http`) its ILP-over-HTTP listener.
    transport: Transport,
    /// Where the payee connects, when not at `btp` (the JS connector listens per account).
    payee_btp: Option<String>,
    /// Where ilp-load serves its side of ILP over HTTP.
    listen: Option<std::net::SocketAddr>,
    asynchronous: bool,
    h2: bool,
    payer: (String, String),
    /// `None` with STREAM packets: the receiver answers them.
    payee: Option<(String, String)>,
    destination: Address,
    spec: LoadSpec,
    idempotent: bool,
    /// Where to ask for STREAM credentials (`--spsp`).
    spsp: Option<String>,
    /// The connector process(es) whose CPU time is charged to the packets (summed).
    pids: Vec<u32>,
    json: bool,
}

enum Transport {
    Btp(String),
    Http(String),
}

fn credentials(value: &str) -> Result<(String, String), String> {
    value
        .split_once(':')
        .map(|(u, t)| (u.to_owned(), t.to_owned()))
        .ok_or_else(|| format!("{value:?}: expected USER:TOKEN"))
}

fn secret32(value: &str) -> Result<[u8; 32], String> {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(value)
        .map_err(|e| format!("--stream-secret: not base64: {e}"))?;
    <[u8; 32]>::try_from(bytes.as_slice())
        .map_err(|_| format!("--stream-secret: {} bytes, not 32", bytes.len()))
}

/// STREAM credentials from the SPSP server at `url`.
async fn spsp_credentials(url: &str) -> Result<ilp::spsp::SpspResponse, String> {
    use http_body_util::BodyExt;
    let client: hyper_util::client::legacy::Client<_, http_body_util::Full<bytes::Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build(hyper_util::client::legacy::connect::HttpConnector::new());
    let request = hyper::Request::get(url)
        .header("accept", ilp::spsp::CONTENT_TYPE)
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .map_err(|e| format!("--spsp {url}: {e}"))?;
    let response = tokio::time::timeout(Duration::from_secs(10), client.request(request))
        .await
        .map_err(|_| format!("--spsp {url}: no answer in 10 s"))?
        .map_err(|e| format!("--spsp {url}: {e}"))?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("--spsp {url}: {e}"))?
        .to_bytes();
    if !status.is_success() {
        return Err(format!("--spsp {url}: {status}"));
    }
    ilp::spsp::SpspResponse::decode(&body).map_err(|e| format!("--spsp {url}: {e}"))
}

fn number<T: std::str::FromStr>(flag: &str, value: Option<String>) -> Result<T, String> {
    let value = value.ok_or_else(|| format!("{flag} needs a value"))?;
    value
        .parse()
        .map_err(|_| format!("{flag} {value:?}: not a number"))
}

fn parse(args: impl Iterator<Item = String>) -> Result<Args, String> {
    let (mut btp, mut payer, mut payee, mut destination) = (None, None, None, None);
    let mut payee_btp = None;
    let (mut spsp, mut stream_secret) = (None, None);
    let (mut http, mut listen, mut asynchronous, mut h2) = (None, None, false, false);
    let (mut in_flight, mut packets, mut duration, mut rate) = (100usize, None, None, None);
    let (mut amount, mut expiry_ms, mut idempotent, mut pids, mut json) =
        (1u64, 30_000u64, false, Vec::new(), false);
    let mut args = args.into_iter();
    while let Some(flag) = args.next() {
        match flag.as_str() {
            "--btp" => btp = args.next(),
            "--payee-btp" => payee_btp = args.next(),
            "--http" => http = args.next(),
            "--listen" => listen = Some(number(&flag, args.next())?),
            "--async" => asynchronous = true,
            "--h2" => h2 = true,
            "--payer" => payer = Some(credentials(&args.next().unwrap_or_default())?),
            "--payee" => payee = Some(credentials(&args.next().unwrap_or_default())?),
            "--destination" => {
                let value = args.next().unwrap_or_default();
                destination = Some(
                    Address::try_from(value.as_str())
                        .map_err(|e| format!("--destination {value:?}: {e}"))?,
                );
            }
            "-k" | "--in-flight" => in_flight = number(&flag, args.next())?,
            "--packets" => packets = Some(number(&flag, args.next())?),
            "--duration" => duration = Some(Duration::from_secs_f64(number(&flag, args.next())?)),
            "--rate" => rate = Some(number(&flag, args.next())?),
            "--amount" => amount = number(&flag, args.next())?,
            "--expiry-ms" => expiry_ms = number(&flag, args.next())?,
            "--idempotent" => idempotent = true,
            "--connector-pid" => {
                for pid in args.next().unwrap_or_default().split(',') {
                    pids.push(number(&flag, Some(pid.to_owned()))?);
                }
            }
            "--json" => json = true,
            "--spsp" => spsp = args.next(),
            "--stream-secret" => {
                let value = args.next().unwrap_or_default();
                stream_secret = Some(secret32(&value)?);
            }
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if spsp.is_some() && (destination.is_some() || stream_secret.is_some()) {
        return Err("--spsp gives the destination and the secret: not with --destination or --stream-secret".into());
    }
    if stream_secret.is_some() && destination.is_none() {
        return Err("--stream-secret needs --destination".into());
    }
    // Filled in from the SPSP answer before the run when --spsp is given.
    let destination = match (&spsp, destination) {
        (Some(_), None) => Address::try_from("test.spsp.pending").map_err(|e| e.to_string())?,
        (_, Some(d)) => d,
        (None, None) => return Err("--destination is required".into()),
    };
    let streaming = spsp.is_some() || stream_secret.is_some();
    if !streaming && payee.is_none() {
        return Err("--payee is required".into());
    }
    if in_flight == 0 {
        return Err("-k must be at least 1".into());
    }
    if packets.is_none() && duration.is_none() {
        duration = Some(Duration::from_secs(10));
    }
    Ok(Args {
        transport: match (btp, http) {
            (Some(url), None) => Transport::Btp(url),
            (None, Some(url)) => {
                if listen.is_none() {
                    return Err("--http needs --listen".into());
                }
                Transport::Http(url.trim_end_matches('/').to_owned())
            }
            _ => return Err("give one of --btp and --http".into()),
        },
        payee_btp,
        listen,
        asynchronous,
        h2,
        payer: payer.ok_or("--payer is required")?,
        payee: if streaming { None } else { payee },
        spsp,
        spec: LoadSpec {
            destination: destination.clone(),
            amount,
            in_flight,
            packets,
            duration,
            rate,
            expiry: Duration::from_millis(expiry_ms),
            seed: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0),
            stream_secret,
        },
        destination,
        idempotent,
        pids,
        json,
    })
}

fn main() -> ExitCode {
    let args = match parse(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(message) => {
            if !message.is_empty() {
                eprintln!("{message}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(if message.is_empty() { 0 } else { 2 });
        }
    };
    let system = actix::System::with_tokio_rt(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|e| {
                eprintln!("cannot start the tokio runtime: {e}");
                std::process::exit(1)
            })
    });
    system.block_on(drive(args))
}

/// The payer's link and what must live while it is used (the payee's side).
struct Endpoints {
    payer: Arc<dyn Link>,
    delivered: Arc<std::sync::atomic::AtomicUsize>,
    _keep: Box<dyn std::any::Any>,
}

/// Both accounts over BTP: two client connections (the payee's answers its Prepares).
async fn btp_endpoints(args: &Args, url: &str) -> Result<Endpoints, String> {
    use actix::Actor;
    let options = BtpOptions::default();
    let payer = Arc::new(BtpClientLink::connect_with_tls(
        url,
        &args.payer.0,
        &args.payer.1,
        None,
        args.idempotent,
        options.clone(),
    ));
    let payee = args.payee.as_ref().map(|(user, token)| {
        BtpClientLink::connect_with_tls(
            args.payee_btp.as_deref().unwrap_or(url),
            user,
            token,
            None,
            false,
            options,
        )
    });
    let fulfiller = PreimagePayee::default();
    let delivered = fulfiller.delivered.clone();
    if let Some(payee) = &payee {
        payee.attach(fulfiller.start().recipient());
    }
    let connected_by = Instant::now() + Duration::from_secs(15);
    while !(payer.is_up() && payee.as_ref().is_none_or(|p| p.is_up())) {
        if Instant::now() > connected_by {
            return Err(format!(
                "could not connect and authenticate both accounts at {url}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(Endpoints {
        payer,
        delivered,
        _keep: Box::new(payee),
    })
}

/// Both accounts over ILP over HTTP: the payer POSTs to the connector; the payee's endpoint
/// (and, async, both callback endpoints) are served on `--listen`, built from the same link and
/// server code as the connector's, configured by a small TOML of our own.
async fn http_endpoints(args: &Args, base: &str) -> Result<Endpoints, String> {
    use actix::Actor;
    use ilp_actors::link::http::{HttpLink, HttpLinkOptions, HttpServer, HttpServerOptions};
    let listen = args.listen.ok_or("--http needs --listen")?;
    let payee = args
        .payee
        .as_ref()
        .ok_or("--http sends to a payee account: STREAM packets go over --btp")?;
    let mode = if args.asynchronous { "async" } else { "sync" };
    let account = |(user, token): &(String, String)| {
        let callback = if args.asynchronous {
            format!(", callback_url = \"http://{listen}/accounts/{user}/callback\"")
        } else {
            String::new()
        };
        format!(
            "[accounts.{user}]\nrelation = \"parent\"\n\
             link = {{ type = \"http\", mode = \"{mode}\", outgoing_url = \"{base}/accounts/{user}/ilp\", \
             outgoing_auth_token = \"{token}\", incoming_auth_token = \"{token}\", http2 = {}{callback} }}\n",
            args.h2
        )
    };
    let text = format!(
        "[node]\nilp_address = \"test.ilp-load\"\n[listeners.http]\nbind = \"{listen}\"\n{}{}",
        account(&args.payer),
        account(payee)
    );
    let config = ilp::config::Config::from_toml_str(&text).map_err(|e| format!("{e}\n{text}"))?;
    let options = HttpLinkOptions {
        http2_prior_knowledge: args.h2,
        max_pending_callbacks: 1_000_000,
        ..HttpLinkOptions::default()
    };
    let clock = ilp_actors::clock::Clock::system();
    let link = |user: &str| {
        HttpLink::from_config(user, &config.accounts[user], clock, &options)
            .map_err(|e| e.to_string())
    };
    let (payer, payee) = (link(&args.payer.0)?, link(&payee.0)?);
    let fulfiller = PreimagePayee::default();
    let delivered = fulfiller.delivered.clone();
    payee.attach(fulfiller.start().recipient());
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| format!("--listen {listen}: {e}"))?;
    let server = HttpServer::serve(
        listener,
        [payer.clone(), payee],
        HttpServerOptions {
            h2: true,
            ..HttpServerOptions::default()
        },
    )
    .map_err(|e| e.to_string())?;
    Ok(Endpoints {
        payer: Arc::new(payer),
        delivered,
        _keep: Box::new(server),
    })
}

async fn drive(mut args: Args) -> ExitCode {
    if let Some(url) = args.spsp.clone() {
        match spsp_credentials(&url).await {
            Ok(credentials) => {
                args.destination = credentials.destination_account.clone();
                args.spec.destination = credentials.destination_account;
                args.spec.stream_secret = Some(credentials.shared_secret);
            }
            Err(message) => {
                eprintln!("{message}");
                return ExitCode::FAILURE;
            }
        }
    }
    let endpoints = match &args.transport {
        Transport::Btp(url) => btp_endpoints(&args, url).await,
        Transport::Http(url) => http_endpoints(&args, url).await,
    };
    let Endpoints {
        payer,
        delivered,
        _keep,
    } = match endpoints {
        Ok(e) => e,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::FAILURE;
        }
    };
    // The connector registers a BTP payee's connection a moment after the payee sees its auth.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let sample_all = |pids: &[u32]| -> Option<loadgen::ProcessSample> {
        let samples: Option<Vec<_>> = pids.iter().map(|p| loadgen::sample(*p)).collect();
        let samples = samples?;
        Some(loadgen::ProcessSample {
            cpu_seconds: samples.iter().map(|s| s.cpu_seconds).sum(),
            rss_kib: samples.iter().map(|s| s.rss_kib).sum(),
            open_fds: samples.iter().map(|s| s.open_fds).sum(),
        })
    };
    let before = (!args.pids.is_empty())
        .then(|| sample_all(&args.pids))
        .flatten();
    let report = loadgen::run(payer.clone(), args.spec.clone()).await;
    let after = (!args.pids.is_empty())
        .then(|| sample_all(&args.pids))
        .flatten();
    let rejected: u64 = report.rejected.values().sum();
    println!(
        "{} packets in {:.2} s to {}: {} fulfilled, {} rejected {:?}, {} link errors, {} wrong fulfillments; \
         {:.0} packets/s; latency ms p50 {:.3} p90 {:.3} p99 {:.3} p99.9 {:.3} max {:.3}; payee saw {}",
        report.sent,
        report.elapsed.as_secs_f64(),
        args.destination,
        report.fulfilled,
        rejected,
        report.rejected,
        report.link_errors,
        report.wrong_fulfillments,
        report.packets_per_second(),
        report.latency_ms(50.0),
        report.latency_ms(90.0),
        report.latency_ms(99.0),
        report.latency_ms(99.9),
        report.latency_us.max() as f64 / 1000.0,
        delivered.load(std::sync::atomic::Ordering::Relaxed),
    );
    let cpu_us_per_packet = match (before, after) {
        (Some(b), Some(a)) if report.fulfilled > 0 => {
            let per = (a.cpu_seconds - b.cpu_seconds) * 1e6 / report.fulfilled as f64;
            println!(
                "connector: {per:.1} µs CPU per fulfilled packet; RSS {} KiB; {} open descriptors",
                a.rss_kib, a.open_fds
            );
            Some((per, a.rss_kib, a.open_fds))
        }
        _ => None,
    };
    if args.json {
        let (cpu, rss, fds) =
            cpu_us_per_packet.map_or((None, None, None), |(c, r, f)| (Some(c), Some(r), Some(f)));
        let line = serde_json::json!({
            "sent": report.sent,
            "fulfilled": report.fulfilled,
            "rejected": report.rejected,
            "link_errors": report.link_errors,
            "seconds": report.elapsed.as_secs_f64(),
            "pps": report.packets_per_second(),
            "p50_ms": report.latency_ms(50.0),
            "p90_ms": report.latency_ms(90.0),
            "p99_ms": report.latency_ms(99.0),
            "p999_ms": report.latency_ms(99.9),
            "cpu_us_per_packet": cpu,
            "rss_kib": rss,
            "open_fds": fds,
        });
        println!("{line}");
    }
    if report.fulfilled == 0 {
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
