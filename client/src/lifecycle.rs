//! `meridian lifecycle status|preview`: the lifecycle admin API of a running server, signed
//! as root. Status prints each bucket's rules and the work they left; preview lists what the
//! rules would remove by a date and the bytes it frees, without acting (`--json` for the
//! API's JSON).

use meridian_api::{LifecyclePreview, LifecycleStatus};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::replication::{call, Endpoint};
use crate::units::parse_duration;

#[derive(clap::Subcommand, Clone, Debug)]
pub enum LifecycleCommand {
    /// Rules per bucket, indexing passes, the due backlog, the last run, what was expired.
    Status {
        #[command(flatten)]
        target: Endpoint,
        #[arg(long)]
        bucket: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// What the bucket's rules would remove by `--at` (default now) and the bytes it frees.
    Preview {
        #[command(flatten)]
        target: Endpoint,
        #[arg(long)]
        bucket: String,
        /// A date (`2027-01-31`), an RFC 3339 time, or a duration from now (`30d`).
        #[arg(long)]
        at: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

/// `--at` as Unix seconds.
pub fn parse_at(text: &str) -> anyhow::Result<i64> {
    if let Ok(t) = OffsetDateTime::parse(text, &Rfc3339) {
        return Ok(t.unix_timestamp());
    }
    let day = time::macros::format_description!("[year]-[month]-[day]");
    if let Ok(d) = time::Date::parse(text, &day) {
        return Ok(d.midnight().assume_utc().unix_timestamp());
    }
    let ahead = parse_duration(text).map_err(|_| {
        anyhow::anyhow!(
            "--at {text:?}: give a date (2027-01-31), an RFC 3339 time or a duration (30d)"
        )
    })?;
    Ok(OffsetDateTime::now_utc().unix_timestamp() + ahead.as_secs() as i64)
}

fn date(secs: i64) -> String {
    OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| secs.to_string())
}

pub fn status_table(s: &LifecycleStatus) -> String {
    let mut out = String::new();
    if let Some(day) = s.test_day_seconds {
        out.push_str(&format!("TEST DAY: a lifecycle day is {day} s\n"));
    }
    if s.buckets.is_empty() {
        out.push_str("no bucket has lifecycle rules\n");
    }
    for b in &s.buckets {
        out.push_str(&format!("{}: {}", b.bucket, b.rules.join(", ")));
        if let Some(n) = b.indexing {
            out.push_str(&format!(" (indexing existing versions: {n} so far)"));
        }
        out.push('\n');
    }
    out.push_str(&format!(
        "due now: {} (oldest waiting {:.0} s); next due: {}; last run: {}\n",
        s.backlog,
        s.oldest_due_age_seconds,
        s.next_due.map_or("nothing indexed".into(), date),
        s.last_run.map_or("never".into(), date),
    ));
    let actions: Vec<String> = s.actions.iter().map(|(k, v)| format!("{k} {v}")).collect();
    out.push_str(&format!(
        "since start: {}; {} bytes freed\n",
        actions.join(", "),
        s.bytes_freed
    ));
    out
}

pub fn preview_table(p: &LifecyclePreview) -> String {
    let mut out = String::new();
    for a in &p.actions {
        out.push_str(&format!(
            "{:<20} {} {} due {} frees {}\n",
            a.action,
            a.key,
            a.id,
            date(a.due),
            a.frees
        ));
    }
    out.push_str(&format!(
        "by {}: {} versions, {} bytes freed{}\n",
        date(p.at),
        p.versions,
        p.bytes,
        if p.truncated {
            " (first 1,000 actions listed)"
        } else {
            ""
        }
    ));
    out
}

pub async fn run(command: LifecycleCommand) -> anyhow::Result<()> {
    match command {
        LifecycleCommand::Status {
            target,
            bucket,
            json,
        } => {
            let path = match &bucket {
                Some(b) => format!("/_meridian/lifecycle/status?bucket={}", urlencode(b)),
                None => "/_meridian/lifecycle/status".to_owned(),
            };
            let status: LifecycleStatus = call(&target, "GET", &path).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&status)?);
            } else {
                print!("{}", status_table(&status));
            }
        }
        LifecycleCommand::Preview {
            target,
            bucket,
            at,
            json,
        } => {
            let mut path = format!("/_meridian/lifecycle/preview?bucket={}", urlencode(&bucket));
            if let Some(at) = at {
                path.push_str(&format!("&at={}", parse_at(&at)?));
            }
            let preview: LifecyclePreview = call(&target, "GET", &path).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&preview)?);
            } else {
                print!("{}", preview_table(&preview));
            }
        }
    }
    Ok(())
}

fn urlencode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_takes_dates_times_and_durations() {
        assert_eq!(parse_at("2027-01-31").unwrap(), 1_801_353_600);
        assert_eq!(
            parse_at("2027-01-31T12:00:00Z").unwrap(),
            1_801_353_600 + 43_200
        );
        let ahead = parse_at("1d").unwrap() - OffsetDateTime::now_utc().unix_timestamp();
        assert!((86_399..=86_401).contains(&ahead));
        assert!(parse_at("someday").is_err());
    }
}
