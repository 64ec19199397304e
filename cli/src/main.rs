//! The `meridian` command: `serve` runs the S3 server (the gateway); `bench`, `replication`,
//! `drill` and `tls-certs` are the client tools; `bench pipeline` measures the store alone.

mod lifecycle_bench;
mod pipeline_bench;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use meridian_gateway::config::{Config, ErasureSpec, Overrides};

#[derive(Parser)]
#[command(
    name = "meridian",
    version,
    about = "S3-compatible object store with erasure coding and geo-replication"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the S3 server (the default when no command is given).
    Serve(ServeArgs),
    /// Drive an S3 endpoint (any: Meridian, MinIO, Garage, AWS) and report throughput and latency.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Watch and steer replication on a running server: status, checkpoint, pause, resume, resync.
    #[command(subcommand)]
    Replication(meridian_client::replication::ReplicationCommand),
    /// Lifecycle rules of a running server: status, and a preview of what they will expire.
    #[command(subcommand)]
    Lifecycle(meridian_client::lifecycle::LifecycleCommand),
    /// Access keys and grants of a running server: create, disable, rotate, grant, ...
    #[command(subcommand)]
    Admin(meridian_client::admin::AdminCommand),
    /// A disaster-recovery drill between two regions: verify, failover or outage.
    Drill(meridian_client::drill::DrillArgs),
    /// Write a private CA and a server certificate for trying HTTPS locally (not for
    /// production).
    TlsCerts(meridian_client::certs::CertsArgs),
    /// The keyring of server-side encryption: add a key, rotate one.
    #[command(subcommand)]
    Kms(KmsCommand),
    /// A region of several nodes: the placement simulation (the rest is being built: see
    /// docs/CLUSTER.md).
    #[command(subcommand)]
    Cluster(ClusterCommand),
}

/// Where the region's control plane is.
#[derive(clap::Args)]
struct ControlArgs {
    /// etcd's client URLs.
    #[arg(
        long,
        env = "MERIDIAN_ETCD",
        value_delimiter = ',',
        default_value = "http://127.0.0.1:2379"
    )]
    etcd: Vec<String>,
    /// The region (the `region` of the nodes' config).
    #[arg(long, env = "MERIDIAN_REGION", default_value = "us-east-1")]
    region: String,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
enum ClusterCommand {
    /// The region's nodes (registered, alive, copies and primaries held) and its current
    /// and staged layouts.
    Status(ControlArgs),
    /// Put a registered node in the layout. The first layout (once R nodes are in) takes
    /// effect at once; a later one is staged until its copies are filled.
    AddNode {
        /// One or more node ids; the first layout of a region takes them all at once.
        #[arg(required = true, num_args = 1..)]
        ids: Vec<u32>,
        /// Copies of every partition (R), for the region's first layout.
        #[arg(long, default_value_t = 2)]
        replicas: usize,
        #[command(flatten)]
        control: ControlArgs,
    },
    /// Take a node out of the layout: it drains (its copies are staged onto the others).
    RemoveNode {
        id: u32,
        #[arg(long, default_value_t = 2)]
        replicas: usize,
        #[command(flatten)]
        control: ControlArgs,
    },
    /// Balance and movement of the partition layout for 4 to 100 nodes, next to a hash
    /// ring and a Garage-style layout, and the load the control plane puts on etcd.
    Simulate {
        /// Copies of every partition.
        #[arg(long, default_value_t = 2)]
        replicas: usize,
        /// Node counts to simulate.
        #[arg(long, value_delimiter = ',', default_values_t = [4usize, 8, 16, 32, 64, 100])]
        nodes: Vec<usize>,
        /// Objects in the region (for the sampling noise a layout adds).
        #[arg(long, default_value_t = 1_000_000_000u64)]
        objects: u64,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum KmsCommand {
    /// Add a 256-bit key (an SSE-KMS key id, e.g. testkey-1) to the keyring, creating the
    /// file (mode 0600) if needed. A running server sees it on its next request.
    AddKey {
        name: String,
        /// The keyring file (`[encryption] keyring`).
        #[arg(long, env = "MERIDIAN_KEYRING")]
        keyring: PathBuf,
    },
    /// Add a new version of a key (of every key when none is named): new data keys are
    /// sealed with it, and a running server seals existing data keys again with it in the
    /// background; older versions stay in the keyring and keep opening what they sealed.
    Rotate {
        name: Option<String>,
        #[arg(long, env = "MERIDIAN_KEYRING")]
        keyring: PathBuf,
    },
}

#[derive(Subcommand)]
enum BenchCommand {
    /// The ceiling: the PUT and GET paths on local disks without HTTP, in MB/s.
    Pipeline(pipeline_bench::PipelineArgs),
    /// Lifecycle costs on the local store: indexing a rule over existing versions, the idle
    /// worker, expiry throughput.
    Lifecycle(lifecycle_bench::LifecycleBenchArgs),
    /// Replication between two live regions: lag at a fixed PUT rate, objects/s when
    /// saturated, and a large object next to a direct upload.
    Replication(meridian_client::bench::replication::ReplicationBenchArgs),
    #[command(flatten)]
    Workload(meridian_client::Workload),
}

#[derive(clap::Args, Default)]
struct ServeArgs {
    /// TOML configuration file (every field optional).
    #[arg(long, env = "MERIDIAN_CONFIG")]
    config: Option<PathBuf>,
    /// Listen address, HOST:PORT.
    #[arg(long)]
    address: Option<std::net::SocketAddr>,
    /// Data directory: disks at DIR/disk1..N, metadata at DIR/meta.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Erasure coding, K+M (data + parity shards), e.g. 4+2.
    #[arg(long)]
    erasure: Option<ErasureSpec>,
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("MERIDIAN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,s3s=off"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let result = runtime.block_on(async {
        match cli.command.unwrap_or(Command::Serve(ServeArgs::default())) {
            Command::Serve(args) => {
                let overrides = Overrides {
                    address: args.address,
                    data_dir: args.data,
                    erasure: args.erasure,
                };
                let config = Config::load(args.config.as_deref(), &overrides)?;
                meridian_gateway::node::run(config)
                    .await
                    .map(|()| ExitCode::SUCCESS)
            }
            Command::Cluster(command) => {
                run_cluster(command).await?;
                Ok(ExitCode::SUCCESS)
            }
            Command::Drill(args) => {
                let identical = meridian_client::drill::run(args).await?;
                Ok(if identical {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                })
            }
            Command::Kms(KmsCommand::AddKey { name, keyring }) => {
                if meridian_store::encryption::keyring::key_versions(&keyring, &name)? > 0 {
                    anyhow::bail!(
                        "key {name} already exists (`meridian kms rotate` adds a version)"
                    );
                }
                meridian_store::encryption::keyring::add_key(&keyring, &name)?;
                println!(
                    "added key {name} to {}; back this file up",
                    keyring.display()
                );
                Ok(ExitCode::SUCCESS)
            }
            Command::Kms(KmsCommand::Rotate { name, keyring }) => {
                use meridian_store::encryption::keyring;
                let names = match name {
                    Some(name) if keyring::key_versions(&keyring, &name)? == 0 => {
                        anyhow::bail!("no key {name} in {}", keyring.display())
                    }
                    Some(name) => vec![name],
                    None => keyring::key_names(&keyring)?,
                };
                if names.is_empty() {
                    anyhow::bail!("no keys in {}", keyring.display());
                }
                for name in names {
                    let version = keyring::add_key(&keyring, &name)?;
                    println!(
                        "key {name} is now at version {version}; new data keys are sealed with it"
                    );
                }
                Ok(ExitCode::SUCCESS)
            }
            Command::TlsCerts(args) => {
                meridian_client::certs::write_local_certs(&args)?;
                Ok(ExitCode::SUCCESS)
            }
            Command::Replication(command) => {
                let ok = meridian_client::replication::run(command).await?;
                Ok(if ok {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                })
            }
            Command::Lifecycle(command) => {
                meridian_client::lifecycle::run(command).await?;
                Ok(ExitCode::SUCCESS)
            }
            Command::Admin(command) => {
                meridian_client::admin::run(command).await?;
                Ok(ExitCode::SUCCESS)
            }
            Command::Bench(command) => {
                let report = match command {
                    BenchCommand::Pipeline(args) => pipeline_bench::run(args).await?,
                    BenchCommand::Lifecycle(args) => {
                        lifecycle_bench::run(args).await?;
                        return Ok(ExitCode::SUCCESS);
                    }
                    BenchCommand::Replication(args) => {
                        meridian_client::bench::replication::run(args).await?;
                        return Ok(ExitCode::SUCCESS);
                    }
                    BenchCommand::Workload(workload) => meridian_client::run(workload).await?,
                };
                Ok(if report.exit_ok() {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                })
            }
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("meridian: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `meridian cluster simulate`: the placement comparison and etcd's load, as a table or JSON.
fn cluster_simulate(
    replicas: usize,
    nodes: &[usize],
    objects: u64,
    json: bool,
) -> anyhow::Result<()> {
    use meridian_cluster::simulate::{etcd_load, schemes};
    if let Some(n) = nodes.iter().find(|n| **n < replicas) {
        anyhow::bail!("{n} nodes cannot hold {replicas} copies");
    }
    let rows: Vec<_> = schemes()
        .iter()
        .flat_map(|s| nodes.iter().map(move |n| s.row(*n, replicas)))
        .collect();
    let load = etcd_load(100, meridian_cluster::DEFAULT_PARTITIONS, replicas, 10.0);
    // One partition's share of the objects varies by about 1/sqrt(objects per partition).
    let per_partition = objects as f64 / meridian_cluster::DEFAULT_PARTITIONS as f64;
    let noise = 1.0 / per_partition.sqrt();
    if json {
        let doc = serde_json::json!({"replicas": replicas, "objects": objects,
            "object_noise": noise, "rows": rows, "etcd_at_100_nodes": load});
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(());
    }
    println!(
        "{} objects, {replicas} copies each; balance = most loaded node / mean (1.00 is perfect)",
        objects
    );
    println!(
        "{:<40} {:>5} {:>9} {:>12} {:>7}",
        "scheme", "nodes", "max/mean", "moved on +1", "ideal"
    );
    for r in &rows {
        println!(
            "{:<40} {:>5} {:>9.3} {:>11.2}% {:>6.2}%",
            r.scheme,
            r.nodes,
            r.max_over_mean,
            100.0 * r.moved_on_add,
            100.0 * r.ideal_move
        );
    }
    println!(
        "(partition layouts: objects per partition vary by about {:.3}% at this count)",
        100.0 * noise
    );
    println!();
    println!(
        "etcd at {} nodes (P={}, R={}, 10 s leases):",
        load.nodes, load.partitions, load.replicas
    );
    println!(
        "  layout value: {} bytes, written once per layout change",
        load.layout_bytes
    );
    println!(
        "  lease keep-alives: {:.0}/s (not raft writes)",
        load.keepalives_per_s
    );
    println!(
        "  a node failure: {} partition epochs in one transaction of ~{} bytes (limit {})",
        load.epochs_on_failure, load.failure_txn_bytes, load.request_limit_bytes
    );
    Ok(())
}

/// `meridian cluster ...`.
async fn run_cluster(command: ClusterCommand) -> anyhow::Result<()> {
    use meridian_cluster::control::ControlPlane;
    let (control, status) = match command {
        ClusterCommand::Simulate {
            replicas,
            nodes,
            objects,
            json,
        } => return cluster_simulate(replicas, &nodes, objects, json),
        ClusterCommand::Status(control) => {
            let cp = ControlPlane::connect(&control.etcd, &control.region).await?;
            let status = cp.status().await?;
            (control, status)
        }
        ClusterCommand::AddNode {
            ids,
            replicas,
            control,
        } => {
            let cp = ControlPlane::connect(&control.etcd, &control.region).await?;
            let status = cp.add_nodes(&ids, replicas).await?;
            (control, status)
        }
        ClusterCommand::RemoveNode {
            id,
            replicas,
            control,
        } => {
            let cp = ControlPlane::connect(&control.etcd, &control.region).await?;
            let status = cp.remove_node(id, replicas).await?;
            (control, status)
        }
    };
    print_status(&status, control.json)
}

/// `meridian cluster status` (and the answer of add-node / remove-node).
fn print_status(status: &meridian_cluster::control::Status, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(status)?);
        return Ok(());
    }
    println!("region {}", status.region);
    for n in &status.nodes {
        println!(
            "node {}: {} weight {} {:?} {} copies {} primaries {}",
            n.record.id,
            n.record.endpoint,
            n.record.weight,
            n.record.state,
            if n.alive { "alive" } else { "down" },
            n.copies,
            n.primaries
        );
    }
    match &status.current {
        Some(l) => println!(
            "layout {}: {} partitions x {} copies over {} nodes",
            l.version,
            l.partitions.len(),
            l.replicas,
            l.nodes.len()
        ),
        None => println!("no layout yet (add-node puts registered nodes in it)"),
    }
    if let Some(s) = &status.staged {
        println!(
            "staged layout {}: {} copies to fill before it takes effect",
            s.version, status.copies_to_fill
        );
        for (id, f) in &status.fills {
            println!(
                "  node {id}: {} versions queued for new copies, {} still to arrive{}",
                f.queued,
                f.pending,
                if f.done { ", done" } else { "" }
            );
        }
    }
    Ok(())
}
