//! The `wa-hub-sidecar` command: run the sidecar, or check a config file.

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
            eprintln!("wa-hub-sidecar: {e}");
            return ExitCode::from(2);
        }
    };
    match cli.command.unwrap_or(Command::Run) {
        Command::CheckConfig => {
            print!("{}", config.to_masked_yaml());
            eprintln!("wa-hub-sidecar: config OK ({})", cli.config.display());
            ExitCode::SUCCESS
        }
        Command::Run => {
            logging::init(&config.raw.log);
            match server::run(config) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e}");
                    eprintln!("wa-hub-sidecar: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
