//! Test helpers: run an async test body inside an actix System on a paused, current-thread
//! tokio runtime, so timers (expiry, broadcast intervals, backoff) run on virtual time and tests
//! are deterministic and fast.

use crate::messages::IncomingPrepare;
use actix::{Actor, Context, Handler, MessageResult};
use ilp::packet::{ErrorCode, FulfillBuilder, Reject};
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

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
    type Result = MessageResult<IncomingPrepare>;

    fn handle(&mut self, msg: IncomingPrepare, _: &mut Context<Self>) -> Self::Result {
        self.delivered.fetch_add(1, Ordering::SeqCst);
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
        MessageResult(answer)
    }
}

/// Runs `body` to completion in a fresh actix System on paused tokio time; returns its output.
pub fn run<F, T>(body: F) -> T
where
    F: Future<Output = T> + 'static,
    T: 'static,
{
    let system = actix::System::with_tokio_rt(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .expect("tokio runtime for tests")
    });
    system.block_on(body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn virtual_time_advances_instantly() {
        let elapsed = run(async {
            let start = tokio::time::Instant::now();
            tokio::time::sleep(Duration::from_secs(3600)).await;
            start.elapsed()
        });
        assert!(elapsed >= Duration::from_secs(3600));
    }
}
