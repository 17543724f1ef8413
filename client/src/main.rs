//! `spentledger`: the command-line tool (commands in `spentledger_client::cli`).

use std::process::ExitCode;

use clap::Parser;
use spentledger_client::cli::{self, Cli};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("spentledger: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(cli::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("spentledger: {e}");
            ExitCode::from(1)
        }
    }
}
