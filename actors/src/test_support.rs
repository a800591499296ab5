//! Test helpers: run an async test body inside an actix System on a paused, current-thread
//! tokio runtime, so timers (expiry, broadcast intervals, backoff) run on virtual time and tests
//! are deterministic and fast.

use std::future::Future;

/// Fulfills what its data is the preimage of (shared with the load generator).
pub use crate::loadgen::PreimagePayee;

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
