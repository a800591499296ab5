//! `ilp-connector`: the node binary. It loads and validates `config.toml` (every error, each with
//! its key path, exit code 2) and prints the effective configuration. The actor runtime that
//! serves the configured accounts is the next piece of work (see the README's status line).

use ilp::config::Config;
use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "usage: ilp-connector [run|check-config] [--config PATH]\n\
  run           load the configuration and start the node (default command)\n\
  check-config  validate the configuration and print the effective values\n\
  --config PATH configuration file (default: config.toml)";

enum Command {
    Run,
    CheckConfig,
}

fn parse_args(args: impl Iterator<Item = String>) -> Result<(Command, PathBuf), String> {
    let mut command = Command::Run;
    let mut path = PathBuf::from("config.toml");
    let mut args = args.peekable();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "run" => command = Command::Run,
            "check-config" => command = Command::CheckConfig,
            "--config" | "-c" => {
                path = args
                    .next()
                    .map(PathBuf::from)
                    .ok_or("--config needs a path")?
            }
            "-h" | "--help" => return Err(String::new()),
            other => match other.strip_prefix("--config=") {
                Some(p) => path = PathBuf::from(p),
                None => return Err(format!("unknown argument {other:?}")),
            },
        }
    }
    Ok((command, path))
}

fn load(path: &PathBuf) -> Result<Config, ExitCode> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        eprintln!("cannot read {}: {e}", path.display());
        ExitCode::from(2)
    })?;
    Config::from_toml_str(&text).map_err(|errors| {
        eprintln!(
            "{}: {} configuration error(s):",
            path.display(),
            errors.errors().len()
        );
        for e in errors.errors() {
            eprintln!("  {e}");
        }
        ExitCode::from(2)
    })
}

fn main() -> ExitCode {
    let (command, path) = match parse_args(std::env::args().skip(1)) {
        Ok(parsed) => parsed,
        Err(message) => {
            if !message.is_empty() {
                eprintln!("{message}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(if message.is_empty() { 0 } else { 2 });
        }
    };
    let config = match load(&path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    match command {
        Command::CheckConfig => match toml::to_string_pretty(&config) {
            Ok(text) => {
                println!("{text}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("cannot print the configuration: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Run => {
            let address = config
                .node
                .ilp_address
                .as_ref()
                .map_or("(inherited from a parent over IL-DCP)".to_owned(), |a| {
                    a.to_string()
                });
            println!(
                "{}: node {address}, {} account(s), asset {} scale {}",
                path.display(),
                config.accounts.len(),
                config.node.asset_code,
                config.node.asset_scale
            );
            for (id, account) in &config.accounts {
                println!("  account {id}: {:?}", account.relation);
            }
            println!("configuration valid; the actor runtime is not built yet, so the node exits");
            ExitCode::SUCCESS
        }
    }
}
