//! The load generator behind the `ilp-load` binary (and the soak and benchmark scripts): K
//! senders keep K Prepares in flight over a link, each with its own condition, and a payee
//! fulfills them at the far end; latencies go into an HDR histogram, rejects are counted by
//! code, and the connector's CPU time, resident memory and open descriptors are read from
//! `/proc/<pid>`.

use crate::link::{Link, LinkError};
use crate::messages::{IncomingPrepare, PacketResult, Reply};
use actix::{Actor, Context, Handler};
use hdrhistogram::Histogram;
use ilp::packet::{Address, ErrorCode, FulfillBuilder, Prepare, PrepareBuilder, Reject, Timestamp};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The far end of an account that fulfills every Prepare whose data is its 32-byte preimage
/// (F06 otherwise), and counts what it is given.
#[derive(Default)]
pub struct PreimagePayee {
    pub delivered: Arc<AtomicUsize>,
}

impl Actor for PreimagePayee {
    type Context = Context<Self>;
}

impl Handler<IncomingPrepare> for PreimagePayee {
    type Result = Reply<PacketResult>;

    fn handle(&mut self, msg: IncomingPrepare, _: &mut Context<Self>) -> Self::Result {
        self.delivered.fetch_add(1, Ordering::Relaxed);
        let answer = <[u8; 32]>::try_from(msg.prepare.data())
            .ok()
            .and_then(|preimage| {
                FulfillBuilder {
                    fulfillment: &preimage,
                    data: b"thanks",
                }
                .build()
                .ok()
            })
            .ok_or_else(|| Reject::new(ErrorCode::F06_UNEXPECTED_PAYMENT, None, "no preimage"));
        Reply::ready(answer)
    }
}

/// What to send.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    pub destination: Address,
    pub amount: u64,
    /// Packets in flight at once (one sender task each).
    pub in_flight: usize,
    /// Stop after this many packets (whichever of `packets` and `duration` comes first).
    pub packets: Option<u64>,
    pub duration: Option<Duration>,
    /// At most this many packets per second in total; `None`: as fast as answers come.
    pub rate: Option<u64>,
    /// Each Prepare expires this long after it is sent.
    pub expiry: Duration,
    /// Distinguishes the conditions of one run from another's.
    pub seed: u64,
    /// `Some`: the packets are STREAM packets, each paying its amount on stream 1 of the
    /// connection at `destination` keyed by this shared secret (a STREAM receiver fulfills
    /// them); `None`: each packet's data is the preimage of its condition (a [`PreimagePayee`]).
    pub stream_secret: Option<[u8; 32]>,
}

/// What happened.
#[derive(Debug)]
pub struct LoadReport {
    pub sent: u64,
    pub fulfilled: u64,
    /// Rejects by ILP error code.
    pub rejected: BTreeMap<String, u64>,
    /// Sends the link refused (down) or answered with garbage.
    pub link_errors: u64,
    /// Fulfills whose fulfillment did not match the condition.
    pub wrong_fulfillments: u64,
    pub elapsed: Duration,
    /// Round trip of every answered packet, in microseconds.
    pub latency_us: Histogram<u64>,
}

impl LoadReport {
    pub fn packets_per_second(&self) -> f64 {
        let answered = self.fulfilled + self.rejected.values().sum::<u64>();
        answered as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// `p` in 0..=100, in milliseconds.
    pub fn latency_ms(&self, p: f64) -> f64 {
        self.latency_us.value_at_quantile(p / 100.0) as f64 / 1000.0
    }
}

/// The Prepare number `index` of a run: its data is the preimage of its condition, or (with
/// [`LoadSpec::stream_secret`]) a STREAM packet with sequence `index + 1`.
pub fn payment(spec: &LoadSpec, index: u64, expires_at: Timestamp) -> Option<Prepare> {
    let preimage: [u8; 32] =
        Sha256::digest([spec.seed.to_be_bytes(), index.to_be_bytes()].concat()).into();
    if let Some(secret) = &spec.stream_secret {
        let keys = ilp::stream::StreamKeys::new(secret);
        let packet = ilp::stream::StreamPacket {
            packet_type: ilp::packet::PacketType::Prepare,
            sequence: index + 1,
            prepare_amount: 0,
            frames: vec![ilp::stream::Frame::StreamMoney {
                stream_id: 1,
                shares: 1,
            }],
        };
        // A fresh IV per packet: taken from the run's seed and the packet's number.
        let mut iv = [0u8; ilp::stream::IV_LEN];
        iv.copy_from_slice(&preimage[..ilp::stream::IV_LEN]);
        let data = keys.encrypt_packet(&iv, &packet).ok()?;
        return PrepareBuilder {
            amount: spec.amount,
            expires_at,
            execution_condition: &keys.condition(&data),
            destination: &spec.destination,
            data: &data,
        }
        .build()
        .ok();
    }
    let condition: [u8; 32] = Sha256::digest(preimage).into();
    PrepareBuilder {
        amount: spec.amount,
        expires_at,
        execution_condition: &condition,
        destination: &spec.destination,
        data: &preimage,
    }
    .build()
    .ok()
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

#[derive(Default)]
struct Tally {
    fulfilled: u64,
    rejected: BTreeMap<String, u64>,
    link_errors: u64,
    wrong_fulfillments: u64,
}

/// Sends over `link` as `spec` says; returns when the packets or the time are used up and
/// every packet sent is answered.
pub async fn run(link: Arc<dyn Link>, spec: LoadSpec) -> LoadReport {
    let next = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(spec.in_flight);
    for _ in 0..spec.in_flight.max(1) {
        let (link, spec, next, stop) = (link.clone(), spec.clone(), next.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut tally = Tally::default();
            let mut latency = histogram();
            loop {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                if spec.duration.is_some_and(|d| start.elapsed() >= d) {
                    break;
                }
                let index = next.fetch_add(1, Ordering::Relaxed);
                if spec.packets.is_some_and(|n| index >= n) {
                    break;
                }
                if let Some(rate) = spec.rate.filter(|r| *r > 0) {
                    let due = start + Duration::from_secs_f64(index as f64 / rate as f64);
                    tokio::time::sleep_until(due.into()).await;
                }
                let expiry_ms = u64::try_from(spec.expiry.as_millis()).unwrap_or(u64::MAX);
                let expires_at = Timestamp::from_unix_millis(now_ms().saturating_add(expiry_ms));
                let Some(prepare) = payment(&spec, index, expires_at) else {
                    tally.link_errors += 1;
                    continue;
                };
                let condition = *prepare.execution_condition();
                let sent = Instant::now();
                let answer = link.send_prepare(prepare).await;
                let micros = u64::try_from(sent.elapsed().as_micros()).unwrap_or(u64::MAX);
                match answer {
                    Ok(Ok(fulfill)) => {
                        let hash: [u8; 32] = Sha256::digest(fulfill.fulfillment()).into();
                        if hash == condition {
                            tally.fulfilled += 1;
                        } else {
                            tally.wrong_fulfillments += 1;
                        }
                        let _ = latency.record(micros.max(1));
                    }
                    Ok(Err(reject)) => {
                        *tally
                            .rejected
                            .entry(reject.code().as_str().to_owned())
                            .or_default() += 1;
                        let _ = latency.record(micros.max(1));
                    }
                    Err(LinkError::Down) | Err(LinkError::Protocol(_)) => {
                        tally.link_errors += 1;
                        // A link that is down fails at once: do not spin on it.
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
            (tally, latency)
        }));
    }
    let mut report = LoadReport {
        sent: 0,
        fulfilled: 0,
        rejected: BTreeMap::new(),
        link_errors: 0,
        wrong_fulfillments: 0,
        elapsed: Duration::ZERO,
        latency_us: histogram(),
    };
    for task in tasks {
        if let Ok((tally, latency)) = task.await {
            report.fulfilled += tally.fulfilled;
            report.link_errors += tally.link_errors;
            report.wrong_fulfillments += tally.wrong_fulfillments;
            for (code, n) in tally.rejected {
                *report.rejected.entry(code).or_default() += n;
            }
            let _ = report.latency_us.add(&latency);
        }
    }
    stop.store(true, Ordering::Relaxed);
    report.elapsed = start.elapsed();
    report.sent = report.fulfilled
        + report.rejected.values().sum::<u64>()
        + report.wrong_fulfillments
        + report.link_errors;
    report
}

/// Microseconds, 3 significant digits, growing as needed.
fn histogram() -> Histogram<u64> {
    // 3 significant figures is a valid precision, so this cannot fail.
    #[allow(clippy::expect_used)]
    let mut h = Histogram::<u64>::new(3).expect("3 significant figures");
    h.auto(true);
    h
}

/// What `/proc/<pid>` says about a process (Linux).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProcessSample {
    /// User plus system CPU time, in seconds.
    pub cpu_seconds: f64,
    pub rss_kib: u64,
    pub open_fds: u64,
}

/// Reads `/proc/<pid>/stat`, `/status` and `/fd`; `None` when the process is gone or this is not
/// Linux.
pub fn sample(pid: u32) -> Option<ProcessSample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    // USER_HZ is 100 on every Linux ABI this runs on.
    let cpu_seconds = (utime + stime) as f64 / 100.0;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())?;
    let open_fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64;
    Some(ProcessSample {
        cpu_seconds,
        rss_kib,
        open_fds,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::link::memory::MemoryLink;

    fn spec(packets: u64) -> LoadSpec {
        LoadSpec {
            destination: Address::try_from("test.payee").unwrap(),
            amount: 7,
            in_flight: 4,
            packets: Some(packets),
            duration: None,
            rate: None,
            expiry: Duration::from_secs(30),
            seed: 1,
            stream_secret: None,
        }
    }

    #[test]
    fn stream_packets_are_readable_and_fulfillable_by_the_receiver() {
        let secret = [9u8; 32];
        let spec = LoadSpec {
            stream_secret: Some(secret),
            ..spec(2)
        };
        let keys = ilp::stream::StreamKeys::new(&secret);
        let expires = Timestamp::from_unix_millis(1_700_000_000_000);
        let (a, b) = (
            payment(&spec, 0, expires).unwrap(),
            payment(&spec, 1, expires).unwrap(),
        );
        for (prepare, sequence) in [(&a, 1), (&b, 2)] {
            let packet = keys.decrypt_packet(prepare.data()).unwrap();
            assert_eq!(packet.sequence, sequence);
            assert_eq!(
                packet.frames,
                vec![ilp::stream::Frame::StreamMoney {
                    stream_id: 1,
                    shares: 1
                }]
            );
            assert_eq!(
                prepare.execution_condition(),
                &keys.condition(prepare.data())
            );
            assert_eq!(prepare.amount(), 7);
        }
        // A fresh IV each: no two packets encrypt alike.
        assert_ne!(a.data()[..12], b.data()[..12]);
    }

    #[actix::test]
    async fn every_packet_is_sent_once_and_fulfilled() {
        let (ours, far) = MemoryLink::pair();
        let payee = PreimagePayee::default();
        let delivered = payee.delivered.clone();
        far.attach(payee.start().recipient());
        let report = run(Arc::new(ours), spec(103)).await;
        assert_eq!(report.fulfilled, 103);
        assert_eq!(report.sent, 103);
        assert_eq!(delivered.load(Ordering::SeqCst), 103);
        assert!(report.rejected.is_empty());
        assert_eq!(report.latency_us.len(), 103);
        assert!(report.packets_per_second() > 0.0);
    }

    #[actix::test]
    async fn a_down_link_is_counted_not_fulfilled() {
        let (ours, far) = MemoryLink::pair();
        far.attach(PreimagePayee::default().start().recipient());
        ours.set_up(false);
        let report = run(Arc::new(ours), spec(3)).await;
        assert_eq!(report.fulfilled, 0);
        assert_eq!(report.link_errors, 3);
        assert_eq!(report.sent, 3);
    }

    #[test]
    fn samples_this_process() {
        let s = sample(std::process::id()).unwrap();
        assert!(s.rss_kib > 0);
        assert!(s.open_fds > 0);
        assert!(s.cpu_seconds >= 0.0);
        assert_eq!(sample(u32::MAX), None);
    }
}
