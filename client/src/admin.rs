//! `meridian admin key ...` and `meridian admin grant ...`: access keys and grants of a
//! running server, through its admin API (signed as root or a key with the `admin` grant).
//! A new or rotated secret is printed once; `--json` prints the API's JSON.

use meridian_api::{KeyInfo, KeyList, KeySecret};

use crate::replication::{call, Endpoint};

#[derive(clap::Subcommand, Clone, Debug)]
pub enum AdminCommand {
    /// Access keys: create, list, info, disable, enable, delete, rotate.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Grants of a key on a bucket (or a prefix*, or *): add, remove.
    #[command(subcommand)]
    Grant(GrantCommand),
}

#[derive(clap::Subcommand, Clone, Debug)]
pub enum KeyCommand {
    /// A new key; its secret is printed this once.
    Create {
        #[command(flatten)]
        target: Endpoint,
        /// A label (`training-job-7`).
        #[arg(long)]
        name: Option<String>,
        /// Refused from then on: a date (2027-01-31) or an RFC 3339 time.
        #[arg(long)]
        expires: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Every key, those of the configuration file included (read-only).
    List {
        #[command(flatten)]
        target: Endpoint,
        #[arg(long)]
        json: bool,
    },
    /// One key: state, grants, last change.
    Info {
        #[command(flatten)]
        target: Endpoint,
        key: String,
        #[arg(long)]
        json: bool,
    },
    /// Refuse the key (and its presigned URLs) from the next request on.
    Disable {
        #[command(flatten)]
        target: Endpoint,
        key: String,
    },
    Enable {
        #[command(flatten)]
        target: Endpoint,
        key: String,
    },
    Delete {
        #[command(flatten)]
        target: Endpoint,
        key: String,
    },
    /// A new secret (printed this once); the old one is accepted for `--grace` (default: not
    /// at all).
    Rotate {
        #[command(flatten)]
        target: Endpoint,
        key: String,
        /// How long the old secret stays valid (`10m`, `1h`, `7d`).
        #[arg(long)]
        grace: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(clap::Subcommand, Clone, Debug)]
pub enum GrantCommand {
    Add(GrantArgs),
    Remove(GrantArgs),
}

#[derive(clap::Args, Clone, Debug)]
pub struct GrantArgs {
    #[command(flatten)]
    target: Endpoint,
    #[arg(long)]
    key: String,
    /// A bucket, a prefix ending in `*`, or `*`.
    #[arg(long)]
    bucket: String,
    /// read (GET, HEAD, lists), write (object writes and deletes), owner (the bucket's
    /// configuration and DeleteBucket), create (CreateBucket), admin (this API; bucket *),
    /// replicate (a peer region's replication user).
    #[arg(long)]
    access: String,
}

/// Percent-encodes all but SigV4's unreserved characters (as the signer expects of a path).
fn encode(v: &str) -> String {
    const SET: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~');
    percent_encoding::utf8_percent_encode(v, SET).to_string()
}

fn query(pairs: &[(&str, Option<&str>)]) -> String {
    let q: Vec<String> = pairs
        .iter()
        .filter_map(|(k, v)| v.map(|v| format!("{k}={}", encode(v))))
        .collect();
    if q.is_empty() {
        String::new()
    } else {
        format!("?{}", q.join("&"))
    }
}

pub async fn run(command: AdminCommand) -> anyhow::Result<()> {
    match command {
        AdminCommand::Key(KeyCommand::Create {
            target,
            name,
            expires,
            json,
        }) => {
            let q = query(&[("name", name.as_deref()), ("expires", expires.as_deref())]);
            let made: KeySecret =
                call(&target, "POST", &format!("/_meridian/admin/keys{q}")).await?;
            print_secret(&made, json)?;
        }
        AdminCommand::Key(KeyCommand::List { target, json }) => {
            let list: KeyList = call(&target, "GET", "/_meridian/admin/keys").await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                print!("{}", key_table(&list.keys));
            }
        }
        AdminCommand::Key(KeyCommand::Info { target, key, json }) => {
            let info: KeyInfo = call(
                &target,
                "GET",
                &format!("/_meridian/admin/keys/{}", encode(&key)),
            )
            .await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&info)?);
            } else {
                print!("{}", key_details(&info));
            }
        }
        AdminCommand::Key(KeyCommand::Disable { target, key }) => {
            switch(&target, &key, "disable").await?;
        }
        AdminCommand::Key(KeyCommand::Enable { target, key }) => {
            switch(&target, &key, "enable").await?;
        }
        AdminCommand::Key(KeyCommand::Delete { target, key }) => {
            let _: serde_json::Value = call(
                &target,
                "DELETE",
                &format!("/_meridian/admin/keys/{}", encode(&key)),
            )
            .await?;
            println!("key {key} deleted");
        }
        AdminCommand::Key(KeyCommand::Rotate {
            target,
            key,
            grace,
            json,
        }) => {
            let q = query(&[("grace", grace.as_deref())]);
            let rotated: KeySecret = call(
                &target,
                "POST",
                &format!("/_meridian/admin/keys/{}/rotate{q}", encode(&key)),
            )
            .await?;
            print_secret(&rotated, json)?;
        }
        AdminCommand::Grant(GrantCommand::Add(args)) => grant(args, "POST").await?,
        AdminCommand::Grant(GrantCommand::Remove(args)) => grant(args, "DELETE").await?,
    }
    Ok(())
}

/// `disable` or `enable`.
async fn switch(target: &Endpoint, key: &str, action: &str) -> anyhow::Result<()> {
    let info: KeyInfo = call(
        target,
        "POST",
        &format!("/_meridian/admin/keys/{}/{action}", encode(key)),
    )
    .await?;
    println!("key {} {action}d", info.access_key);
    Ok(())
}

async fn grant(args: GrantArgs, method: &str) -> anyhow::Result<()> {
    let q = query(&[
        ("bucket", Some(args.bucket.as_str())),
        ("access", Some(args.access.as_str())),
    ]);
    let info: KeyInfo = call(
        &args.target,
        method,
        &format!("/_meridian/admin/keys/{}/grants{q}", encode(&args.key)),
    )
    .await?;
    print!("{}", key_details(&info));
    Ok(())
}

fn print_secret(key: &KeySecret, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(key)?);
        return Ok(());
    }
    println!("access key: {}", key.access_key);
    println!("secret key: {}", key.secret_key);
    if let Some(until) = &key.previous_secret_valid_until {
        println!("the previous secret is accepted until {until}");
    }
    println!("(the secret is shown only this once)");
    Ok(())
}

/// One line per key.
pub fn key_table(keys: &[KeyInfo]) -> String {
    let mut out = format!(
        "{:<22} {:<20} {:<8} {:<9} {}\n",
        "ACCESS KEY", "NAME", "SOURCE", "STATE", "GRANTS"
    );
    for k in keys {
        out.push_str(&format!(
            "{:<22} {:<20} {:<8} {:<9} {}\n",
            k.access_key,
            k.name,
            k.source,
            if k.enabled { "enabled" } else { "disabled" },
            grants(k)
        ));
    }
    out
}

fn grants(k: &KeyInfo) -> String {
    if k.grants.is_empty() {
        return "-".into();
    }
    k.grants
        .iter()
        .map(|g| format!("{}:{}", g.bucket, g.access))
        .collect::<Vec<_>>()
        .join(", ")
}

fn key_details(k: &KeyInfo) -> String {
    let line = |label: &str, v: Option<&str>| format!("{label:<12} {}\n", v.unwrap_or("-"));
    let mut out = String::new();
    out.push_str(&line("access key", Some(&k.access_key)));
    out.push_str(&line("name", Some(&k.name)));
    out.push_str(&line("source", Some(&k.source)));
    out.push_str(&line(
        "state",
        Some(if k.enabled { "enabled" } else { "disabled" }),
    ));
    out.push_str(&line("created", k.created.as_deref()));
    out.push_str(&line("expires", k.expires.as_deref()));
    out.push_str(&line(
        "old secret",
        k.previous_secret_valid_until.as_deref(),
    ));
    out.push_str(&line("grants", Some(&grants(k))));
    out.push_str(&line("changed by", k.changed_by.as_deref()));
    out.push_str(&line("changed in", k.changed_in.as_deref()));
    out
}
