//! The `quorate` binary: parses the command line, environment (`QUORATE_*`) and config file,
//! sets up tracing and the abort-on-panic hook, and runs a member, the local demo cluster or a
//! client command. It must hold no database logic of its own.

mod bench_cmd;
mod check_cmd;
mod cli;
mod coord;
mod demo;
mod fault_cmd;
mod named;
mod node_cmd;
mod print;
mod quorum_cmd;
mod range_cmd;
mod ring_cmd;
mod txn;
mod watch_cmd;

use clap::Parser;

fn main() -> std::process::ExitCode {
    // A panicking task must not leave a half-alive replica: log and abort in every profile.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default_hook(info);
        tracing::error!(%info, "panic: aborting");
        std::process::abort();
    }));
    if let Err(error) = node_cmd::apply_config_file() {
        eprintln!("error: {error:#}");
        return std::process::ExitCode::from(2);
    }
    let args = cli::Cli::parse();
    init_tracing(&args.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("start tokio runtime");
    match runtime.block_on(cli::run(args)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            if let Some(check) = error.downcast_ref::<tester::CheckError>() {
                match check {
                    tester::CheckError::Invalid | tester::CheckError::Unknown => {
                        eprintln!("{check}")
                    }
                    _ => eprintln!("Error: {check}"),
                }
                return std::process::ExitCode::from(check.exit_code());
            }
            eprintln!("Error: {error:#}");
            std::process::ExitCode::from(1)
        }
    }
}

fn init_tracing(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("QUORATE_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("info,openraft=warn,h2=warn,tower=warn")
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}
