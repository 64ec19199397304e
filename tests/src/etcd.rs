//! A real etcd (Debian's `etcd-server`, which `scripts/setup.sh` installs) on loopback, for
//! the control plane of a region of several nodes.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Etcd {
    child: Option<Child>,
    pub client: SocketAddr,
    peer: SocketAddr,
    dir: PathBuf,
    _tmp: tempfile::TempDir,
}

impl Etcd {
    /// Starts etcd on free loopback ports and waits until it answers.
    pub fn start() -> Etcd {
        let tmp = tempfile::Builder::new()
            .prefix("meridian-etcd-")
            .tempdir()
            .expect("temp dir");
        let ports = crate::hold_ports(2);
        let client: SocketAddr = format!("127.0.0.1:{}", crate::port_of(&ports[0]))
            .parse()
            .unwrap();
        let peer: SocketAddr = format!("127.0.0.1:{}", crate::port_of(&ports[1]))
            .parse()
            .unwrap();
        drop(ports);
        let mut etcd = Etcd {
            child: None,
            client,
            peer,
            dir: tmp.path().join("data"),
            _tmp: tmp,
        };
        etcd.restart();
        etcd
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.client)
    }

    /// Stops it (kill -9).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on its data directory and ports, and waits until it answers.
    pub fn restart(&mut self) {
        self.kill();
        let binary = which_etcd();
        let log = std::fs::File::create(self.dir.with_extension("log")).expect("etcd log");
        let child = Command::new(binary)
            .args([
                "--name",
                "meridian-test",
                "--data-dir",
                self.dir.to_str().unwrap(),
                "--listen-client-urls",
                &format!("http://{}", self.client),
                "--advertise-client-urls",
                &format!("http://{}", self.client),
                "--listen-peer-urls",
                &format!("http://{}", self.peer),
                "--initial-advertise-peer-urls",
                &format!("http://{}", self.peer),
                "--initial-cluster",
                &format!("meridian-test=http://{}", self.peer),
            ])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start etcd");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let health = std::net::TcpStream::connect_timeout(&self.client, Duration::from_secs(1))
                .is_ok()
                && Command::new("etcdctl")
                    .args(["--endpoints", &self.url(), "endpoint", "health"])
                    .env("ETCDCTL_API", "3")
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success());
            if health {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "etcd did not start: see {}",
                self.dir.with_extension("log").display()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.kill();
    }
}

fn which_etcd() -> PathBuf {
    for dir in ["/usr/bin", "/usr/local/bin"] {
        let p = PathBuf::from(dir).join("etcd");
        if p.exists() {
            return p;
        }
    }
    panic!("etcd is not installed: `scripts/setup.sh system` (which `make test` runs) installs Debian's etcd-server");
}
