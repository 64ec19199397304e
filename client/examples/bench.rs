//! The bench without the server binary: `cargo run --release -p meridian-client --example bench
//! -- put --endpoint http://127.0.0.1:9000 ...` parses the same options as `meridian bench`.

use std::process::ExitCode;

use clap::Parser;

#[derive(Parser)]
#[command(
    name = "bench",
    about = "S3 load generator (the library behind `meridian bench`)"
)]
struct Cli {
    #[command(subcommand)]
    workload: meridian_client::Workload,
}

#[tokio::main]
async fn main() -> ExitCode {
    match meridian_client::run(Cli::parse().workload).await {
        Ok(report) if report.exit_ok() => ExitCode::SUCCESS,
        Ok(_) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}
