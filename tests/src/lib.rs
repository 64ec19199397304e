//! End-to-end test harness: starts the real `meridian` binary on 127.0.0.1 with an ephemeral
//! port and temporary disks, and hands out real S3 clients for it. Servers can be stopped
//! (SIGTERM), killed (SIGKILL) and restarted on the same data, to test crash safety for real.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::Client;

pub mod etcd;
pub mod fault_proxy;
pub mod load;
pub mod raw;
pub mod region_mode;
pub mod regions;
pub mod tls;

pub const ACCESS_KEY: &str = "meridian-test-root";
pub const SECRET_KEY: &str = "meridian-test-root-secret";
pub const REGION: &str = "us-east-1";

/// How a test server is started.
#[derive(Clone, Debug)]
pub struct ServerOptions {
    /// `K+M`, passed as `--erasure`.
    pub erasure: String,
    /// Extra TOML appended to the generated config file (users, thresholds, ...).
    pub extra_config: String,
    /// Extra environment variables.
    pub env: Vec<(String, String)>,
    /// Listen on this port instead of an ephemeral one (servers that must know each other's
    /// endpoints before they start: see [`free_port`]).
    pub port: Option<u16>,
    /// Serve HTTPS with this certificate; clients trust `ca_pem`.
    pub tls: Option<(tls::ServerCert, String)>,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            erasure: "4+2".into(),
            extra_config: String::new(),
            env: Vec::new(),
            port: None,
            tls: None,
        }
    }
}

/// A loopback port that was free a moment ago (bound, read and released), for servers that
/// must name each other in their configs before either starts.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("binding an ephemeral port")
        .port()
}

/// `n` distinct loopback ports, held (bound) until the listeners are dropped: ports picked
/// one after the other can repeat once the first is released, and anything else binding an
/// ephemeral port meanwhile (a fault proxy) could take one.
pub fn hold_ports(n: usize) -> Vec<std::net::TcpListener> {
    (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("binding an ephemeral port"))
        .collect()
}

/// The port of a held listener.
pub fn port_of(listener: &std::net::TcpListener) -> u16 {
    listener.local_addr().expect("a bound address").port()
}

/// Sends `signal` to process `pid` (one of ours, still running).
pub fn send_signal(pid: u32, signal: rustix::process::Signal) {
    let pid = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
        .expect("a process id");
    rustix::process::kill_process(pid, signal).expect("signalling the server");
}

/// A running `meridian serve` process and its data directory.
pub struct TestServer {
    child: Option<Child>,
    /// `http://127.0.0.1:PORT`
    pub endpoint: String,
    pub data_dir: PathBuf,
    options: ServerOptions,
    _tmp: Option<tempfile::TempDir>,
    /// In region mode ([`region_mode`]): the region this server is node 1 of.
    region: Option<Box<region_mode::RegionParts>>,
}

/// The `meridian` binary built next to the test executables (`target/<profile>/meridian`),
/// or `MERIDIAN_BIN` when set.
pub fn meridian_binary() -> PathBuf {
    if let Ok(p) = std::env::var("MERIDIAN_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> -> target/<profile>/meridian
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile> directory");
    let bin = profile_dir.join("meridian");
    assert!(
        bin.exists(),
        "{} does not exist: build it first (`cargo build -p meridian-cli`, which `make test` does)",
        bin.display()
    );
    bin
}

impl TestServer {
    /// A 4+2 server on fresh temporary disks.
    pub fn start() -> TestServer {
        Self::start_with(ServerOptions::default())
    }

    pub fn start_with(options: ServerOptions) -> TestServer {
        if region_mode::applies_to(&options) {
            return region_mode::start(options);
        }
        let tmp = tempfile::Builder::new()
            .prefix("meridian-e2e-")
            .tempdir()
            .expect("temp dir");
        let data_dir = tmp.path().to_path_buf();
        let mut server = TestServer {
            child: None,
            endpoint: String::new(),
            data_dir,
            options,
            _tmp: Some(tmp),
            region: None,
        };
        server.launch();
        server
    }

    fn log_path(&self) -> PathBuf {
        self.data_dir.join("server.log")
    }

    fn config_path(&self) -> PathBuf {
        self.data_dir.join("meridian.toml")
    }

    /// Starts the process on the existing data directory and waits until it listens.
    fn launch(&mut self) {
        // Keep the port of an earlier run so clients made before a restart still work.
        let first = match self.options.port {
            Some(port) => format!("127.0.0.1:{port}"),
            None => "127.0.0.1:0".to_owned(),
        };
        let address = self
            .endpoint
            .split_once("://")
            .map_or(first, |(_, address)| address.to_owned());
        // Extra settings first: top-level keys must precede the [root] table.
        let tls = self
            .options
            .tls
            .as_ref()
            .map(|(cert, _)| cert.config())
            .unwrap_or_default();
        let config = format!(
            "shutdown_grace = \"5s\"\n{}\n{tls}[root]\naccess_key = \"{ACCESS_KEY}\"\nsecret_key = \"{SECRET_KEY}\"\n",
            self.options.extra_config
        );
        std::fs::write(self.config_path(), config).expect("writing test config");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("log file");
        let mut cmd = Command::new(meridian_binary());
        cmd.arg("serve")
            .arg("--config")
            .arg(self.config_path())
            .arg("--address")
            .arg(&address)
            .arg("--data")
            .arg(&self.data_dir)
            .arg("--erasure")
            .arg(&self.options.erasure)
            .env_remove("MERIDIAN_ROOT_USER")
            .env_remove("MERIDIAN_ROOT_PASSWORD")
            .env(
                "MERIDIAN_LOG",
                std::env::var("MERIDIAN_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log));
        for (k, v) in &self.options.env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawning meridian");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(rest) = line.strip_prefix("meridian listening on ") {
                    let url = rest
                        .split_whitespace()
                        .next()
                        .unwrap_or_default()
                        .to_owned();
                    let _ = tx.send(url);
                }
            }
        });
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(url) => self.endpoint = url,
            Err(_) => {
                let _ = child.kill();
                panic!("meridian did not start listening; log:\n{}", self.log());
            }
        }
        self.child = Some(child);
    }

    /// The server's stderr so far (for assertion messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("server running").id()
    }

    /// Sends `signal` to the server (SIGTERM to stop, SIGHUP to reload).
    pub fn signal(&self, signal: rustix::process::Signal) {
        send_signal(self.pid(), signal);
    }

    /// SIGKILL: no chance to clean up, like a power cut for the process.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM and wait for a clean exit; returns the exit status.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("server running");
        send_signal(child.id(), rustix::process::Signal::TERM);
        child.wait().expect("waiting for meridian")
    }

    /// Waits for a server that was already signalled to exit; returns the exit status.
    pub fn stop_wait(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("server running");
        child.wait().expect("waiting for meridian")
    }

    /// Starts the server again on the same data directory and port.
    pub fn restart(&mut self) {
        assert!(
            self.child.is_none(),
            "stop or kill the server before restarting it"
        );
        self.launch();
        if self.region.is_some() {
            // Node 1 of a region serves once it holds its lease and knows the layout again.
            region_mode::wait_ready(&self.endpoint);
        }
    }

    /// Deletes the stopped server's disks and metadata (a region that lost its data); the
    /// next restart starts empty.
    pub fn wipe_data(&mut self) {
        assert!(
            self.child.is_none(),
            "stop or kill the server before wiping it"
        );
        for entry in std::fs::read_dir(&self.data_dir)
            .expect("data dir")
            .flatten()
        {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name == "meta" || name.starts_with("disk") {
                std::fs::remove_dir_all(entry.path()).expect("removing data");
            }
        }
    }

    pub fn disk_dir(&self, slot: usize) -> PathBuf {
        self.data_dir.join(format!("disk{}", slot + 1))
    }

    /// An aws-sdk-s3 client for the root user.
    pub fn client(&self) -> Client {
        self.client_for(ACCESS_KEY, SECRET_KEY)
    }

    pub fn client_for(&self, access_key: &str, secret_key: &str) -> Client {
        if let Some(region) = &self.region {
            return Client::from_conf(
                client_config(&self.endpoint, access_key, secret_key)
                    .interceptor(region.spreader())
                    .build(),
            );
        }
        match &self.options.tls {
            Some((_, ca_pem)) => tls::https_client(&self.endpoint, ca_pem, access_key, secret_key),
            None => s3_client(&self.endpoint, access_key, secret_key),
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A path-style aws-sdk-s3 client without retries (so tests see every error).
pub fn s3_client(endpoint: &str, access_key: &str, secret_key: &str) -> Client {
    Client::from_conf(client_config(endpoint, access_key, secret_key).build())
}

/// The settings of [`s3_client`], for clients that change some of them.
pub fn client_config(
    endpoint: &str,
    access_key: &str,
    secret_key: &str,
) -> aws_sdk_s3::config::Builder {
    aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .endpoint_url(endpoint)
        .force_path_style(true)
        .credentials_provider(Credentials::new(
            access_key,
            secret_key,
            None,
            None,
            "meridian-tests",
        ))
        .retry_config(aws_sdk_s3::config::retry::RetryConfig::disabled())
}

/// The server's metrics page, read as root.
pub fn metrics(server: &TestServer) -> String {
    raw::send_signed(
        &server.endpoint,
        "GET",
        "/_meridian/metrics",
        &[],
        b"",
        aws_sigv4::http_request::SignableBody::Bytes(b""),
        ACCESS_KEY,
        SECRET_KEY,
    )
    .body
}

/// Every file under `dir`, recursively (none when it does not exist).
pub fn files_under(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// Bytes in shard files on the server's disks (everything but their `format.json`): what a
/// `du` of the data disks would show, without the disks' own bookkeeping.
pub fn shard_bytes(server: &TestServer, disks: usize) -> u64 {
    fn walk(dir: &std::path::Path) -> u64 {
        std::fs::read_dir(dir)
            .map(|rd| {
                rd.flatten()
                    .map(|e| {
                        let p = e.path();
                        if p.is_dir() {
                            walk(&p)
                        } else if e.file_name().to_string_lossy().starts_with("format") {
                            0
                        } else {
                            e.metadata().map_or(0, |m| m.len())
                        }
                    })
                    .sum()
            })
            .unwrap_or(0)
    }
    (0..disks).map(|slot| walk(&server.disk_dir(slot))).sum()
}

/// Deterministic pseudo-random bytes (xorshift), so failures reproduce.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// The S3 error code of a failed SDK call, e.g. `"NoSuchKey"`.
pub fn error_code<E, R>(err: &aws_sdk_s3::error::SdkError<E, R>) -> Option<String>
where
    E: aws_sdk_s3::error::ProvideErrorMetadata,
{
    err.as_service_error()
        .and_then(|e| e.code())
        .map(str::to_owned)
}

/// The HTTP status of a failed SDK call.
pub fn error_status<E>(
    err: &aws_sdk_s3::error::SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
) -> Option<u16> {
    err.raw_response().map(|r| r.status().as_u16())
}

/// Runs `cmd` to completion like `Command::output`, but kills it and panics if it is still
/// running after `limit` (a server that should have refused to start must not hang a test).
/// Its output is read while it runs, so a long one cannot fill the pipe and stall it.
pub fn output_within(cmd: &mut Command, limit: Duration) -> std::process::Output {
    use std::io::Read;
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning");
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut buf);
            }
            buf
        })
    };
    let stdout = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let stderr = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let deadline = std::time::Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting") {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            let err = stderr.join().unwrap_or_default();
            panic!(
                "still running after {limit:?}; stderr:\n{}",
                String::from_utf8_lossy(&err)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    std::process::Output {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    }
}

/// Starts a multipart upload of `bucket/key`; returns its id.
pub async fn create_upload(s3: &Client, bucket: &str, key: &str) -> String {
    s3.create_multipart_upload()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .expect("CreateMultipartUpload")
        .upload_id()
        .expect("an upload id")
        .to_owned()
}

/// Uploads part `n` of an upload; returns its ETag.
pub async fn upload_part(
    s3: &Client,
    bucket: &str,
    key: &str,
    upload_id: &str,
    n: i32,
    data: &[u8],
) -> String {
    s3.upload_part()
        .bucket(bucket)
        .key(key)
        .upload_id(upload_id)
        .part_number(n)
        .body(data.to_vec().into())
        .send()
        .await
        .expect("UploadPart")
        .e_tag()
        .expect("an ETag")
        .to_owned()
}

/// The CompleteMultipartUpload body naming `(part number, ETag)` pairs.
pub fn completed_parts(parts: &[(i32, &str)]) -> aws_sdk_s3::types::CompletedMultipartUpload {
    aws_sdk_s3::types::CompletedMultipartUpload::builder()
        .set_parts(Some(
            parts
                .iter()
                .map(|(n, e)| {
                    aws_sdk_s3::types::CompletedPart::builder()
                        .part_number(*n)
                        .e_tag(*e)
                        .build()
                })
                .collect(),
        ))
        .build()
}

/// Uploads `parts` (numbered from 1) to an upload and completes it; the version id.
pub async fn upload_parts_and_complete(
    s3: &Client,
    bucket: &str,
    key: &str,
    upload_id: &str,
    parts: &[&[u8]],
) -> String {
    let mut etags = Vec::new();
    for (n, data) in (1..).zip(parts) {
        etags.push((n, upload_part(s3, bucket, key, upload_id, n, data).await));
    }
    let named: Vec<(i32, &str)> = etags.iter().map(|(n, e)| (*n, e.as_str())).collect();
    s3.complete_multipart_upload()
        .bucket(bucket)
        .key(key)
        .upload_id(upload_id)
        .multipart_upload(completed_parts(&named))
        .send()
        .await
        .unwrap()
        .version_id()
        .unwrap()
        .to_owned()
}

/// Turns versioning on for `bucket`.
pub async fn enable_versioning(s3: &Client, bucket: &str) {
    s3.put_bucket_versioning()
        .bucket(bucket)
        .versioning_configuration(
            aws_sdk_s3::types::VersioningConfiguration::builder()
                .status(aws_sdk_s3::types::BucketVersioningStatus::Enabled)
                .build(),
        )
        .send()
        .await
        .unwrap_or_else(|e| panic!("enabling versioning on {bucket}: {e:?}"));
}

/// The whole body of the latest version of `bucket/key`.
pub async fn read_object(s3: &Client, bucket: &str, key: &str) -> Vec<u8> {
    s3.get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .expect("GetObject")
        .body
        .collect()
        .await
        .expect("the body")
        .into_bytes()
        .to_vec()
}

/// A multipart upload of `parts` whose client sends `algorithm` checksums (of
/// `checksum_type`, when given), completed with each part's ETag and checksum; the parts'
/// answers, in order.
pub async fn checksummed_multipart(
    s3: &Client,
    bucket: &str,
    key: &str,
    algorithm: aws_sdk_s3::types::ChecksumAlgorithm,
    checksum_type: Option<aws_sdk_s3::types::ChecksumType>,
    parts: &[Vec<u8>],
) -> Vec<aws_sdk_s3::operation::upload_part::UploadPartOutput> {
    let id = s3
        .create_multipart_upload()
        .bucket(bucket)
        .key(key)
        .checksum_algorithm(algorithm.clone())
        .set_checksum_type(checksum_type)
        .send()
        .await
        .unwrap()
        .upload_id()
        .unwrap()
        .to_owned();
    let mut answers = Vec::new();
    let mut done = Vec::new();
    for (i, data) in parts.iter().enumerate() {
        let out = s3
            .upload_part()
            .bucket(bucket)
            .key(key)
            .upload_id(&id)
            .part_number(i as i32 + 1)
            .checksum_algorithm(algorithm.clone())
            .body(data.clone().into())
            .send()
            .await
            .unwrap();
        done.push(
            aws_sdk_s3::types::CompletedPart::builder()
                .part_number(i as i32 + 1)
                .e_tag(out.e_tag().unwrap())
                .set_checksum_crc32(out.checksum_crc32().map(str::to_owned))
                .set_checksum_crc32_c(out.checksum_crc32_c().map(str::to_owned))
                .set_checksum_crc64_nvme(out.checksum_crc64_nvme().map(str::to_owned))
                .set_checksum_sha1(out.checksum_sha1().map(str::to_owned))
                .set_checksum_sha256(out.checksum_sha256().map(str::to_owned))
                .build(),
        );
        answers.push(out);
    }
    s3.complete_multipart_upload()
        .bucket(bucket)
        .key(key)
        .upload_id(&id)
        .multipart_upload(
            aws_sdk_s3::types::CompletedMultipartUpload::builder()
                .set_parts(Some(done))
                .build(),
        )
        .send()
        .await
        .unwrap();
    answers
}

/// An unsigned HTTP/1.1 request (a PUT carries 4 bytes); the status and the whole response.
pub fn anonymous_request(endpoint: &str, method: &str, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let addr = endpoint.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(addr).expect("connecting");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("read timeout");
    let body = if method == "PUT" { "data" } else { "" };
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("writing the request");
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    let response = String::from_utf8_lossy(&raw).into_owned();
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, response)
}

/// An SSE-C key made from `seed`: (base64 key, base64 MD5), as the headers carry them.
pub fn customer_key(seed: u8) -> (String, String) {
    use base64::Engine as _;
    use md5::Digest as _;
    let key: Vec<u8> = (0..32)
        .map(|i| seed.wrapping_mul(31).wrapping_add(i))
        .collect();
    let b64 = base64::engine::general_purpose::STANDARD;
    (b64.encode(&key), b64.encode(md5::Md5::digest(&key)))
}
