//! The `wa-hub-sidecar` command: run the sidecar, or check a config file.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use mimalloc::MiMalloc;
use wa_hub_sidecar::{config, logging, server};

/// mimalloc: the proxy and webhook paths allocate per request from several threads, where
/// glibc's allocator showed up as a fifth of the CPU profile.
#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

/// Pingora sidecar for wa-hub: authenticated REST proxy, webhook receiver, event sinks.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// YAML config file.
    #[arg(
        long,
        short,
        global = true,
        default_value = "config.yaml",
        env = "WA_HUB_SIDECAR_CONFIG"
    )]
    config: PathBuf,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the sidecar (the default).
    Run,
    /// Validate the config and print the effective settings, secrets masked.
    CheckConfig,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match config::load(&cli.config) {
        Ok(c) => c,
        Err(e) => {
            report(format_args!("{e}"));
            return ExitCode::from(2);
        }
    };
    match cli.command.unwrap_or(Command::Run) {
        Command::CheckConfig => {
            let mut out = std::io::stdout().lock();
            if let Err(e) = out
                .write_all(config.to_masked_yaml().as_bytes())
                .and_then(|()| out.flush())
            {
                report(format_args!("cannot write the settings to stdout: {e}"));
                return ExitCode::FAILURE;
            }
            report(format_args!("config OK ({})", cli.config.display()));
            ExitCode::SUCCESS
        }
        Command::Run => {
            logging::init(&config.raw.log);
            let json = config.raw.log.format == config::LogFormat::Json;
            match server::run(config) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    let logged = tracing::enabled!(tracing::Level::ERROR);
                    tracing::error!("{e}");
                    // A JSON log stays JSON; a text log also gets the plain line that names
                    // the program, as a config error does.
                    if !(json && logged) {
                        report(format_args!("{e}"));
                    }
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// Writes `wa-hub-sidecar: <message>` to stderr. A stderr that takes nothing (a full disk, a
/// closed pipe) loses the line; `eprintln!` would panic there and turn exit code 2 into 101.
fn report(message: std::fmt::Arguments) {
    let _ = writeln!(std::io::stderr(), "wa-hub-sidecar: {message}");
}
