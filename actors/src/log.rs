//! Logging with slog: the node's one logger, built from `[log]` (terminal lines or one JSON
//! object per line, on stderr, written by a background thread) and filtered by its level
//! directives (`info,ilp_actors::router=debug`). Per-packet lines are at debug or trace only.
//!
//! Actors take the logger from [`logger`], so none of their constructors change; until
//! [`init`] runs (tests, simulations) it discards everything.
//!
//! stdout is not a log: it carries the few lifecycle lines scripts wait for (`BTP listening on
//! ...`, `ilp-connector running ...`, `ilp-connector stopped`). Each log line reaches stderr in
//! one `write` call ([`WholeLines`]), and so does each lifecycle line on stdout, so a file that
//! both go to never has half of one inside the other.

use ilp::config::{LogConfig, LogDirectives, LogFormat, LogLevel};
use slog::{Discard, Drain, Logger, OwnedKVList, Record};
use std::io::{IsTerminal, Write};
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
    init_named(config, "ilp-connector")
}

/// [`init`] for another binary of the workspace, whose lines say `node=<name>`.
pub fn init_named(config: &LogConfig, name: &'static str) -> Option<slog_async::AsyncGuard> {
    let directives = config.directives();
    let (drain, guard) = match config.format {
        // On a terminal, colours; nothing parses what a terminal shows.
        LogFormat::Terminal if std::io::stderr().is_terminal() => {
            let decorator = slog_term::TermDecorator::new().stderr().build();
            async_drain(slog_term::FullFormat::new(decorator).build().fuse())
        }
        format => async_drain(line_drain(format, std::io::stderr())),
    };
    let filtered = DirectiveFilter { drain, directives }.fuse();
    let root = Logger::root(filtered, slog::o!("node" => name));
    LOGGER.set(root).ok().map(|()| guard)
}

/// The `format` lines written to `out`, each line with one `write` call: a formatter writes a
/// record in pieces (timestamp, level, message, each key and value), and unbuffered stderr would
/// pass each piece to the kernel on its own, so a line printed on stdout at that moment could
/// land inside it in a file both go to.
fn line_drain<W>(format: LogFormat, out: W) -> Box<dyn Drain<Ok = (), Err = slog::Never> + Send>
where
    W: Write + Send + 'static,
{
    let out = WholeLines::new(out);
    match format {
        LogFormat::Terminal => {
            let decorator = slog_term::PlainDecorator::new(out);
            Box::new(slog_term::FullFormat::new(decorator).build().fuse())
        }
        LogFormat::Json => Box::new(slog_json::Json::new(out).add_default_keys().build().fuse()),
    }
}

/// Holds what is written until a line is complete, then writes every complete line with one
/// `write_all` (one `write` call for a file or pipe that takes it whole).
pub struct WholeLines<W: Write> {
    out: W,
    pending: Vec<u8>,
}

impl<W: Write> WholeLines<W> {
    pub fn new(out: W) -> Self {
        WholeLines {
            out,
            pending: Vec::with_capacity(512),
        }
    }
}

impl<W: Write> Write for WholeLines<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.pending.extend_from_slice(buf);
        if let Some(end) = self.pending.iter().rposition(|&b| b == b'\n') {
            let result = self.out.write_all(&self.pending[..=end]);
            self.pending.drain(..=end);
            result?;
        }
        Ok(buf.len())
    }

    /// Writes what is held, a partial line included (a record's formatter flushes once it is
    /// complete, so that is the rare case).
    fn flush(&mut self) -> std::io::Result<()> {
        if !self.pending.is_empty() {
            let result = self.out.write_all(&self.pending);
            self.pending.clear();
            result?;
        }
        self.out.flush()
    }
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

    /// Keeps each `write` call it gets as one chunk.
    #[derive(Clone, Default)]
    struct Chunks(Arc<Mutex<Vec<Vec<u8>>>>);

    impl Write for Chunks {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().push(buf.to_vec());
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// Each record reaches the output in one write call holding the whole line, in both
    /// formats: what keeps a stdout line from landing inside a log line in a shared file.
    #[test]
    fn each_log_line_is_written_whole_in_one_call() {
        for format in [LogFormat::Terminal, LogFormat::Json] {
            let chunks = Chunks::default();
            // The node puts it behind the async drain; a mutex does here.
            let drain = Mutex::new(line_drain(format, chunks.clone())).fuse();
            let log = Logger::root(drain, slog::o!("node" => "n"));
            slog::info!(log, "first"; "account" => "alice", "amount" => 5);
            slog::warn!(log, "second"; "code" => "F00", "message" => "no, thanks");
            slog::error!(log, "third");
            let written = chunks.0.lock().unwrap().clone();
            let lines: Vec<String> = written
                .iter()
                .map(|c| String::from_utf8_lossy(c).into_owned())
                .collect();
            assert_eq!(lines.len(), 3, "{format:?}: {lines:?}");
            for (line, message) in lines.iter().zip(["first", "second", "third"]) {
                assert!(line.ends_with('\n'), "{format:?}: {line:?}");
                assert_eq!(line.matches('\n').count(), 1, "{format:?}: {line:?}");
                assert!(line.contains(message), "{format:?}: {line:?}");
            }
            assert!(lines[1].contains("no, thanks"), "{lines:?}");
        }
    }

    #[test]
    fn whole_lines_keeps_a_partial_line_until_it_ends_or_is_flushed() {
        let chunks = Chunks::default();
        let mut out = WholeLines::new(chunks.clone());
        out.write_all(b"Dec 04 06:58:03.654").unwrap();
        out.write_all(b" INFO one\ntwo and a").unwrap();
        out.write_all(b" half").unwrap();
        assert_eq!(
            *chunks.0.lock().unwrap(),
            vec![b"Dec 04 06:58:03.654 INFO one\n".to_vec()]
        );
        out.flush().unwrap();
        assert_eq!(chunks.0.lock().unwrap()[1], b"two and a half".to_vec());
    }

    #[test]
    fn the_logger_discards_until_initialised() {
        // Never panics and needs no setup: actors log from tests too.
        slog::info!(logger(), "nobody hears this"; "k" => 1);
    }
}
