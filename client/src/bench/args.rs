//! The command line of `meridian bench <workload>`: options every workload shares
//! ([`CommonArgs`]) plus each workload's own, and their resolution into a validated [`Plan`]
//! (defaults filled in, e.g. the number of distinct keys).

use std::time::Duration;

use crate::bench::report::Settings;
use crate::units::{parse_duration, ByteSize};

/// How long a run lasts when neither `--duration` nor `--count` is given.
const DEFAULT_DURATION: Duration = Duration::from_secs(10);
/// Default `--keys` is sized so pre-populating them writes at most about this much...
const DEFAULT_KEYS_DATA: u64 = 2 << 30;
/// ...and at most this many keys (but never fewer than the concurrency).
const DEFAULT_KEYS_MAX: u64 = 1000;

/// Options shared by every workload.
#[derive(clap::Args, Clone, Debug)]
pub struct CommonArgs {
    /// S3 endpoint, http://HOST:PORT or https://HOST:PORT (path-style requests).
    #[arg(
        long,
        env = "MERIDIAN_BENCH_ENDPOINT",
        default_value = "http://127.0.0.1:9000"
    )]
    pub endpoint: String,
    /// PEM file of the CA an https:// endpoint's certificate chains to (default: the system
    /// roots).
    #[arg(long, env = "MERIDIAN_CA_FILE")]
    pub ca_file: Option<std::path::PathBuf>,
    /// Access key id.
    #[arg(long, env = "AWS_ACCESS_KEY_ID")]
    pub access_key: String,
    /// Secret access key.
    #[arg(long, env = "AWS_SECRET_ACCESS_KEY", hide_env_values = true)]
    pub secret_key: String,
    /// Region the requests are signed for.
    #[arg(long, default_value = "us-east-1")]
    pub region: String,
    /// Bucket to use; created if absent.
    #[arg(long, default_value = "meridian-bench")]
    pub bucket: String,
    /// Key prefix; keys are PREFIXobj-NNNNNNNN.
    #[arg(long, default_value = "bench/")]
    pub prefix: String,
    /// Object size, e.g. 4KiB, 64KiB, 16MiB, 1GiB.
    #[arg(long, default_value = "64KiB")]
    pub size: ByteSize,
    /// Operations in flight at once.
    #[arg(long, short = 'c', default_value_t = 8)]
    pub concurrency: usize,
    /// How long to run, e.g. 5s, 2m [default: 10s unless --count is given].
    #[arg(long, value_parser = parse_duration, conflicts_with = "count")]
    pub duration: Option<Duration>,
    /// Run exactly this many operations instead of for a duration.
    #[arg(long)]
    pub count: Option<u64>,
    /// Distinct keys to cycle through [default: --count if smaller, else enough keys for
    /// about 2 GiB of data, between --concurrency and 1000].
    #[arg(long)]
    pub keys: Option<u64>,
    /// Part size of multipart uploads and of ranged GETs.
    #[arg(long, default_value = "16MiB")]
    pub part_size: ByteSize,
    /// Parts (or ranges) in flight per object.
    #[arg(long, default_value_t = 4)]
    pub part_concurrency: usize,
    /// Pre-population writes objects larger than this with multipart uploads.
    #[arg(long, default_value = "64MiB")]
    pub multipart_threshold: ByteSize,
    /// Check that GET bodies (and listing counts) match what the bench wrote.
    #[arg(long)]
    pub verify: bool,
    /// Exit successfully even when operations failed.
    #[arg(long)]
    pub tolerate_errors: bool,
    /// Print the report as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// An operation that takes longer than this fails with code Timeout.
    #[arg(long, value_parser = parse_duration, default_value = "5m")]
    pub op_timeout: Duration,
    /// Give the bucket this default encryption (AES256 or aws:kms) before the run, so every
    /// object the run writes is encrypted at rest: the cost of server-side encryption, next
    /// to a run on a bucket without one.
    #[arg(long, value_parser = ["AES256", "aws:kms"])]
    pub bucket_encryption: Option<String>,
}

/// `--no-prepare`, for workloads that read objects they first write.
#[derive(clap::Args, Clone, Debug)]
pub struct PrepareArgs {
    /// Skip the untimed pre-population: the objects already exist, written by an earlier run
    /// with the same --prefix, --size and --keys.
    #[arg(long)]
    pub no_prepare: bool,
}

/// `put`: PutObject of --size objects.
#[derive(clap::Args, Clone, Debug)]
pub struct PutArgs {
    #[command(flatten)]
    pub common: CommonArgs,
}

/// `get`: GetObject of pre-populated objects.
#[derive(clap::Args, Clone, Debug)]
pub struct GetArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(flatten)]
    pub prepare: PrepareArgs,
    /// Read each object as parallel ranged GETs of --part-size, --part-concurrency in flight.
    #[arg(long)]
    pub ranged: bool,
}

/// `mixed`: GETs and PUTs of the same keys, in a fixed ratio.
#[derive(clap::Args, Clone, Debug)]
pub struct MixedArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(flatten)]
    pub prepare: PrepareArgs,
    /// Fraction of operations that are GETs; the rest are PUTs.
    #[arg(long, default_value_t = 0.7)]
    pub get_ratio: f64,
}

/// `list`: ListObjectsV2 walks over the pre-populated keys.
#[derive(clap::Args, Clone, Debug)]
pub struct ListArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(flatten)]
    pub prepare: PrepareArgs,
    /// Keys per page (one page is one operation).
    #[arg(long, default_value_t = 1000)]
    pub max_keys: u32,
}

/// `multipart`: whole multipart uploads of --size objects in --part-size parts.
#[derive(clap::Args, Clone, Debug)]
pub struct MultipartArgs {
    #[command(flatten)]
    pub common: CommonArgs,
}

/// `delete`: DeleteObject of pre-populated keys, each once.
#[derive(clap::Args, Clone, Debug)]
pub struct DeleteArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(flatten)]
    pub prepare: PrepareArgs,
}

/// A rejected combination of options.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ArgsError {
    #[error("--{option} must be at least 1")]
    Zero { option: &'static str },
    #[error("--get-ratio must be between 0 and 1, not {0}")]
    Ratio(f64),
}

/// When a run stops: after `count` operations, at `duration`, or whichever comes first.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Stop {
    pub count: Option<u64>,
    pub duration: Option<Duration>,
}

/// A validated run: the settings the report quotes, plus what it does not print.
#[derive(Clone, Debug)]
pub struct Plan {
    pub settings: Settings,
    pub stop: Stop,
    pub access_key: String,
    pub secret_key: String,
    pub json: bool,
}

impl CommonArgs {
    /// The number of distinct keys when `--keys` is not given.
    fn default_keys(&self) -> u64 {
        let by_data = (DEFAULT_KEYS_DATA / self.size.bytes().max(1)).min(DEFAULT_KEYS_MAX);
        let keys = by_data.max(self.concurrency as u64).max(1);
        match self.count {
            Some(count) => keys.min(count.max(1)),
            None => keys,
        }
    }

    /// Validates the options and fills in defaults.
    pub fn plan(&self, prepared: bool) -> Result<Plan, ArgsError> {
        for (option, value) in [
            ("concurrency", self.concurrency as u64),
            ("part-concurrency", self.part_concurrency as u64),
            ("part-size", self.part_size.bytes()),
            ("keys", self.keys.unwrap_or(1)),
        ] {
            if value == 0 {
                return Err(ArgsError::Zero { option });
            }
        }
        let duration = match self.count {
            Some(_) => None,
            None => Some(self.duration.unwrap_or(DEFAULT_DURATION)),
        };
        let settings = Settings {
            endpoint: self.endpoint.clone(),
            ca_file: self.ca_file.clone(),
            region: self.region.clone(),
            bucket: self.bucket.clone(),
            prefix: self.prefix.clone(),
            size_bytes: self.size.bytes(),
            size: self.size.to_string(),
            concurrency: self.concurrency,
            duration_limit_s: duration.map(|d| d.as_secs_f64()),
            count: self.count,
            keys: self.keys.unwrap_or_else(|| self.default_keys()),
            part_size_bytes: self.part_size.bytes(),
            part_concurrency: self.part_concurrency,
            multipart_threshold_bytes: self.multipart_threshold.bytes(),
            verify: self.verify,
            tolerate_errors: self.tolerate_errors,
            prepared,
            op_timeout_s: self.op_timeout.as_secs_f64(),
            get_ratio: None,
            ranged: None,
            max_keys: None,
            bucket_encryption: self.bucket_encryption.clone(),
        };
        Ok(Plan {
            stop: Stop {
                count: self.count,
                duration,
            },
            settings,
            access_key: self.access_key.clone(),
            secret_key: self.secret_key.clone(),
            json: self.json,
        })
    }
}

impl MixedArgs {
    /// [`CommonArgs::plan`] plus the GET ratio.
    pub fn plan(&self) -> Result<Plan, ArgsError> {
        if !(0.0..=1.0).contains(&self.get_ratio) {
            return Err(ArgsError::Ratio(self.get_ratio));
        }
        let mut plan = self.common.plan(!self.prepare.no_prepare)?;
        plan.settings.get_ratio = Some(self.get_ratio);
        Ok(plan)
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(subcommand)]
        workload: crate::Workload,
    }

    fn parse(args: &str) -> crate::Workload {
        let argv = ["bench"].into_iter().chain(args.split_whitespace());
        Cli::try_parse_from(argv)
            .unwrap_or_else(|e| panic!("{args}: {e}"))
            .workload
    }

    const CREDS: &str = "--access-key ak --secret-key sk";

    #[test]
    fn the_issue_command_line_parses() {
        let w = parse(&format!(
            "put --endpoint http://127.0.0.1:9000 {CREDS} --bucket B --size 64KiB --concurrency 8 --duration 5s --json"
        ));
        let crate::Workload::Put(put) = w else {
            panic!("not put")
        };
        let plan = put.common.plan(false).unwrap();
        assert_eq!(plan.settings.size_bytes, 65536);
        assert_eq!(plan.settings.bucket, "B");
        assert_eq!(
            plan.stop,
            Stop {
                count: None,
                duration: Some(Duration::from_secs(5))
            }
        );
        assert!(plan.json);
    }

    #[test]
    fn count_replaces_duration_and_bounds_the_default_keys() {
        let crate::Workload::Get(get) = parse(&format!(
            "get {CREDS} --count 20 --verify --no-prepare --size 4KiB"
        )) else {
            panic!("not get")
        };
        assert!(get.prepare.no_prepare);
        let plan = get.common.plan(false).unwrap();
        assert_eq!(
            plan.stop,
            Stop {
                count: Some(20),
                duration: None
            }
        );
        assert_eq!(plan.settings.keys, 20);
        assert!(plan.settings.verify);
    }

    #[test]
    fn count_and_duration_together_are_rejected() {
        let argv = format!("bench put {CREDS} --count 5 --duration 5s");
        assert!(Cli::try_parse_from(argv.split_whitespace()).is_err());
    }

    #[test]
    fn default_keys_hold_about_two_gib_between_concurrency_and_a_thousand() {
        let keys = |args: &str| {
            let crate::Workload::Put(p) = parse(&format!("put {CREDS} {args}")) else {
                panic!()
            };
            p.common.plan(false).unwrap().settings.keys
        };
        assert_eq!(keys("--size 4KiB"), 1000);
        assert_eq!(keys("--size 64MiB"), 32);
        assert_eq!(keys("--size 1GiB --concurrency 1"), 2);
        assert_eq!(keys("--size 1GiB --concurrency 8"), 8);
        assert_eq!(keys("--size 4KiB --keys 100000"), 100000);
        assert_eq!(keys("--size 4KiB --count 100000"), 1000);
    }

    #[test]
    fn workload_options_parse_with_their_defaults() {
        let crate::Workload::Mixed(m) = parse(&format!("mixed {CREDS}")) else {
            panic!()
        };
        assert_eq!(m.get_ratio, 0.7);
        let plan = m.plan().unwrap();
        assert_eq!(plan.stop.duration, Some(DEFAULT_DURATION));
        assert_eq!(plan.settings.get_ratio, Some(0.7));
        let crate::Workload::List(l) = parse(&format!("list {CREDS} --max-keys 100")) else {
            panic!()
        };
        assert_eq!(l.max_keys, 100);
        let crate::Workload::Multipart(mp) = parse(&format!(
            "multipart {CREDS} --size 1GiB --part-size 16MiB --part-concurrency 8"
        )) else {
            panic!()
        };
        assert_eq!(mp.common.part_size.bytes(), 16 << 20);
        assert!(matches!(
            parse(&format!("delete {CREDS}")),
            crate::Workload::Delete(_)
        ));
        assert!(
            matches!(parse(&format!("get {CREDS} --ranged")), crate::Workload::Get(g) if g.ranged)
        );
    }

    #[test]
    fn nonsense_values_are_rejected() {
        let crate::Workload::Mixed(m) = parse(&format!("mixed {CREDS} --get-ratio 1.5")) else {
            panic!()
        };
        assert_eq!(m.plan().unwrap_err(), ArgsError::Ratio(1.5));
        let crate::Workload::Put(p) = parse(&format!("put {CREDS} --concurrency 0")) else {
            panic!()
        };
        assert_eq!(
            p.common.plan(false).unwrap_err(),
            ArgsError::Zero {
                option: "concurrency"
            }
        );
        let argv = format!("bench put {CREDS} --size 12parsecs");
        assert!(Cli::try_parse_from(argv.split_whitespace()).is_err());
    }
}
