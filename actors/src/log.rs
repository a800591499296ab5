//! Logging with slog: the node's one logger, built from `[log]` (terminal lines or one JSON
//! object per line, on stderr, written by a background thread) and filtered by its level
//! directives (`info,ilp_actors::router=debug`). Per-packet lines are at debug or trace only.
//!
//! Actors take the logger from [`logger`], so none of their constructors change; until
//! [`init`] runs (tests, simulations) it discards everything.
//!
//! stdout is not a log: it carries the few lifecycle lines scripts wait for (`BTP listening on
//! ...`, `ilp-connector running ...`, `ilp-connector stopped`).

use ilp::config::{LogConfig, LogDirectives, LogFormat, LogLevel};
use slog::{Discard, Drain, Logger, OwnedKVList, Record};
use std::sync::OnceLock;

static LOGGER: OnceLock<Logger> = OnceLock::new();

/// The node's logger (a discarding one before [`init`]).
pub fn logger() -> &'static Logger {
    LOGGER.get_or_init(|| Logger::root(Discard, slog::o!()))
}

/// Builds the logger `config` describes and makes it the node's; returns a guard that flushes
/// the background writer when dropped (keep it until exit). A second call keeps the first
/// logger (the process has one).
pub fn init(config: &LogConfig) -> Option<slog_async::AsyncGuard> {
    let directives = config.directives();
    let (drain, guard) = match config.format {
        LogFormat::Terminal => {
            let decorator = slog_term::TermDecorator::new().stderr().build();
            let format = slog_term::FullFormat::new(decorator).build().fuse();
            async_drain(format)
        }
        LogFormat::Json => {
            let json = slog_json::Json::new(std::io::stderr())
                .add_default_keys()
                .build()
                .fuse();
            async_drain(json)
        }
    };
    let filtered = DirectiveFilter { drain, directives }.fuse();
    let root = Logger::root(filtered, slog::o!("node" => "ilp-connector"));
    LOGGER.set(root).ok().map(|()| guard)
}

fn async_drain<D>(drain: D) -> (slog_async::Async, slog_async::AsyncGuard)
where
    D: Drain<Ok = (), Err = slog::Never> + Send + 'static,
{
    slog_async::Async::new(drain)
        .chan_size(8192)
        // A flood of debug lines drops lines (and says how many), never stalls a packet.
        .overflow_strategy(slog_async::OverflowStrategy::DropAndReport)
        .thread_name("log".into())
        .build_with_guard()
}

/// Passes a record when its level is within what the directives allow for its module; runs
/// before the async channel, so a filtered-out debug line costs no copy.
struct DirectiveFilter<D> {
    drain: D,
    directives: LogDirectives,
}

fn allows(max: LogLevel, level: slog::Level) -> bool {
    let needed = match level {
        slog::Level::Critical | slog::Level::Error => LogLevel::Error,
        slog::Level::Warning => LogLevel::Warn,
        slog::Level::Info => LogLevel::Info,
        slog::Level::Debug => LogLevel::Debug,
        slog::Level::Trace => LogLevel::Trace,
    };
    max != LogLevel::Off && needed <= max
}

impl<D: Drain> Drain for DirectiveFilter<D> {
    type Ok = Option<D::Ok>;
    type Err = D::Err;

    fn log(&self, record: &Record, values: &OwnedKVList) -> Result<Self::Ok, Self::Err> {
        if allows(self.directives.level_for(record.module()), record.level()) {
            self.drain.log(record, values).map(Some)
        } else {
            Ok(None)
        }
    }

    fn is_enabled(&self, level: slog::Level) -> bool {
        allows(self.directives.max_level(), level)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// Collects the messages it is given.
    #[derive(Clone, Default)]
    struct Collect(Arc<Mutex<Vec<String>>>);

    impl Drain for Collect {
        type Ok = ();
        type Err = slog::Never;
        fn log(&self, record: &Record, _: &OwnedKVList) -> Result<(), slog::Never> {
            self.0.lock().unwrap().push(record.msg().to_string());
            Ok(())
        }
    }

    fn filtered(level: &str) -> (Logger, Collect) {
        let collect = Collect::default();
        let config = LogConfig {
            level: level.into(),
            ..LogConfig::default()
        };
        let drain = DirectiveFilter {
            drain: collect.clone(),
            directives: config.directives(),
        };
        (Logger::root(drain.fuse(), slog::o!()), collect)
    }

    #[test]
    fn levels_and_module_directives_filter_records() {
        // Records from this module carry module path `ilp_actors::log::tests`.
        let (log, seen) = filtered("info");
        slog::info!(log, "kept");
        slog::debug!(log, "dropped");
        slog::error!(log, "kept too");
        assert_eq!(*seen.0.lock().unwrap(), vec!["kept", "kept too"]);

        let (log, seen) = filtered("warn,ilp_actors::log=trace");
        slog::trace!(log, "kept");
        assert_eq!(*seen.0.lock().unwrap(), vec!["kept"]);

        let (log, seen) = filtered("trace,ilp_actors=off");
        slog::error!(log, "dropped");
        assert!(seen.0.lock().unwrap().is_empty());
    }

    #[test]
    fn the_logger_discards_until_initialised() {
        // Never panics and needs no setup: actors log from tests too.
        slog::info!(logger(), "nobody hears this"; "k" => 1);
    }
}
