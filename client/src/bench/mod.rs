//! `meridian bench`: an S3 load generator that drives any S3 endpoint (Meridian, MinIO,
//! Garage, AWS; HTTP or HTTPS) and reports ops/s, MB/s, latency percentiles and errors by
//! code, as a table or as JSON.
//!
//! It is built to stay out of the way of the server it measures, even on the same two cores:
//! one pooled keep-alive HTTP/1 client, SigV4 header signing with unsigned payloads, request
//! bodies that are zero-copy slices of one payload buffer generated per run, and GET bodies
//! that are streamed and (with `--verify`) compared chunk by chunk, never buffered whole.
//!
//! `meridian bench <workload>` parses [`Workload`] and calls [`run`]; `bench pipeline` (the
//! store's ceiling) and `bench replication` reuse [`Report`] and [`OpTally`] for their figures.

mod args;
mod driver;
mod objects;
pub mod replication;
mod report;
mod run;
mod stats;
mod workloads;

pub use args::{
    ArgsError, CommonArgs, DeleteArgs, GetArgs, ListArgs, MixedArgs, MultipartArgs, PrepareArgs,
    PutArgs,
};
pub use report::{LatencyMs, OpReport, Report, Settings};
pub use stats::OpTally;

/// A `meridian bench` workload with its options.
#[derive(clap::Subcommand, Clone, Debug)]
pub enum Workload {
    /// PutObject of --size objects over --keys keys.
    Put(PutArgs),
    /// GetObject of pre-populated objects (whole, or --ranged).
    Get(GetArgs),
    /// GETs and PUTs of the same objects in a fixed ratio (--get-ratio).
    Mixed(MixedArgs),
    /// ListObjectsV2 pages over a prefix holding --keys objects.
    List(ListArgs),
    /// Whole multipart uploads of --size objects in --part-size parts.
    Multipart(MultipartArgs),
    /// DeleteObject of pre-populated objects, each once.
    Delete(DeleteArgs),
}

/// Runs `workload`: ensures the bucket exists, pre-populates the objects reading workloads
/// need (untimed, unless `--no-prepare`), runs the workload with a progress line on stderr,
/// and prints the report on stdout (a table, or JSON with `--json`).
///
/// Failed operations do not make this return an error: they are counted in the report, and
/// the caller exits non-zero when `!report.exit_ok()`. An error here means the run could not
/// happen at all (bad options, unreachable endpoint, bucket or pre-population failure).
pub async fn run(workload: Workload) -> anyhow::Result<Report> {
    run::run(workload).await
}
