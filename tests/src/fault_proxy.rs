//! A loopback TCP proxy that puts a bad network between two regions: latency and jitter, a
//! bandwidth cap, connections reset after some bytes or at random, a blackhole (connections
//! are accepted and then nothing moves, as when packets are dropped; TCP carries on where it
//! stopped once the hole closes), and refused connections. Faults are switched while it runs;
//! byte counters say what crossed it. It runs on a thread and runtime of its own, so a test
//! that blocks (killing and restarting servers) never stalls the link.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

/// What the link does to traffic. `Faults::default()` is a clean link.
#[derive(Clone, Debug, Default)]
pub struct Faults {
    /// One-way delay added to every chunk, in both directions.
    pub latency: Duration,
    /// Each chunk's delay varies by up to this much either way (never reordering bytes).
    pub jitter: Duration,
    /// Bytes per second, per direction, shared by all connections (a link, not a socket).
    pub bandwidth: Option<u64>,
    /// Every time this many more bytes have crossed (both directions, all connections), the
    /// connection carrying the next chunk is reset instead.
    pub reset_every: Option<u64>,
    /// Chance, per chunk of up to 64 KiB, that its connection is reset.
    pub reset_chance: f64,
    /// Nothing moves; connections stay open (and new ones are accepted) until it is lifted.
    pub blackhole: bool,
    /// New connections are reset at once.
    pub refuse: bool,
}

#[derive(Default)]
struct Shared {
    faults: Mutex<Faults>,
    /// Client -> target bytes forwarded.
    up: AtomicU64,
    /// Target -> client bytes forwarded.
    down: AtomicU64,
    connections: AtomicU64,
    resets: AtomicU64,
    /// Crossed bytes counted for `reset_every`.
    crossed: AtomicU64,
    next_reset: Mutex<Option<u64>>,
    buckets: [Mutex<Bucket>; 2],
    rng: Mutex<u64>,
}

/// A token bucket (bytes), refilled at the link's rate, holding at most 64 KiB.
#[derive(Default)]
struct Bucket {
    tokens: f64,
    at: Option<Instant>,
}

const CHUNK: usize = 64 * 1024;

/// A running proxy to one target address.
pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    epoch: watch::Sender<u64>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FaultProxy {
    /// Listens on an ephemeral loopback port and forwards to `target`.
    pub fn start(target: SocketAddr) -> FaultProxy {
        let shared = Arc::new(Shared {
            rng: Mutex::new(0x9E37_79B9_7F4A_7C15),
            ..Shared::default()
        });
        let (epoch, epoch_rx) = watch::channel(0u64);
        let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let inner = shared.clone();
        let thread = std::thread::Builder::new()
            .name("fault-proxy".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("proxy runtime");
                rt.block_on(async move {
                    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
                    addr_tx.send(listener.local_addr().unwrap()).unwrap();
                    tokio::select! {
                        _ = accept_loop(listener, target, inner, epoch_rx) => {}
                        _ = stop_rx => {}
                    }
                });
                rt.shutdown_background();
            })
            .expect("proxy thread");
        let addr = addr_rx.recv().expect("proxy address");
        FaultProxy {
            addr,
            shared,
            epoch,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Replaces the faults.
    pub fn set(&self, faults: Faults) {
        *self.shared.next_reset.lock().unwrap() = faults
            .reset_every
            .map(|n| self.shared.crossed.load(Ordering::SeqCst) + n);
        *self.shared.faults.lock().unwrap() = faults;
    }

    /// Changes some faults, keeping the others.
    pub fn update(&self, change: impl FnOnce(&mut Faults)) {
        let mut faults = self.faults();
        change(&mut faults);
        self.set(faults);
    }

    pub fn faults(&self) -> Faults {
        self.shared.faults.lock().unwrap().clone()
    }

    /// Resets every open connection now.
    pub fn reset_all(&self) {
        self.epoch.send_modify(|e| *e += 1);
    }

    /// Bytes forwarded from clients to the target.
    pub fn bytes_up(&self) -> u64 {
        self.shared.up.load(Ordering::SeqCst)
    }

    /// Bytes forwarded from the target to clients.
    pub fn bytes_down(&self) -> u64 {
        self.shared.down.load(Ordering::SeqCst)
    }

    /// Connections accepted.
    pub fn connections(&self) -> u64 {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// Connections reset by the proxy (refused ones included).
    pub fn resets(&self) -> u64 {
        self.shared.resets.load(Ordering::SeqCst)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    target: SocketAddr,
    shared: Arc<Shared>,
    epoch: watch::Receiver<u64>,
) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        shared.connections.fetch_add(1, Ordering::SeqCst);
        if shared.faults.lock().unwrap().refuse {
            shared.resets.fetch_add(1, Ordering::SeqCst);
            reset(&client);
            continue;
        }
        let shared = shared.clone();
        let epoch = epoch.clone();
        tokio::spawn(async move {
            let Ok(server) = TcpStream::connect(target).await else {
                reset(&client);
                return;
            };
            let _ = client.set_nodelay(true);
            let _ = server.set_nodelay(true);
            let (client, server) = (Arc::new(client), Arc::new(server));
            let up = pump(
                client.clone(),
                server.clone(),
                shared.clone(),
                0,
                epoch.clone(),
            );
            let down = pump(server.clone(), client.clone(), shared.clone(), 1, epoch);
            tokio::pin!(up, down);
            // A direction that ends cleanly (half-close) waits for the other; a reset in
            // either ends both at once.
            let outcome = tokio::select! {
                a = &mut up => if a == Outcome::Reset { a } else { down.await },
                b = &mut down => if b == Outcome::Reset { b } else { up.await },
            };
            if outcome == Outcome::Reset {
                shared.resets.fetch_add(1, Ordering::SeqCst);
                reset(&client);
                reset(&server);
            }
        });
    }
}

/// Makes the close (when the last handle drops) an RST rather than a FIN.
fn reset(stream: &TcpStream) {
    // A zero linger never blocks: the kernel drops the socket's data and sends RST.
    let _ = socket2::SockRef::from(stream).set_linger(Some(Duration::ZERO));
}

#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Closed,
    Reset,
}

/// Forwards `from` -> `to` through the faults: a reader that applies blackhole, bandwidth
/// and resets, and a writer that releases each chunk at its deadline (latency, jitter).
async fn pump(
    from: Arc<TcpStream>,
    to: Arc<TcpStream>,
    shared: Arc<Shared>,
    direction: usize,
    mut epoch: watch::Receiver<u64>,
) -> Outcome {
    let (tx, mut rx) = mpsc::channel::<(Instant, Vec<u8>)>(64);
    let writer = {
        let to = to.clone();
        let shared = shared.clone();
        async move {
            while let Some((due, chunk)) = rx.recv().await {
                tokio::time::sleep_until(due.into()).await;
                if write_all(&to, &chunk).await.is_err() {
                    return Outcome::Reset;
                }
                let counter = if direction == 0 {
                    &shared.up
                } else {
                    &shared.down
                };
                counter.fetch_add(chunk.len() as u64, Ordering::SeqCst);
            }
            let _ = socket2::SockRef::from(&*to).shutdown(std::net::Shutdown::Write);
            Outcome::Closed
        }
    };
    let reader = async move {
        let start_epoch = *epoch.borrow();
        let mut last_due = Instant::now();
        let mut buf = vec![0u8; CHUNK];
        loop {
            let n = tokio::select! {
                n = read_some(&from, &mut buf) => match n {
                    Ok(0) => return Outcome::Closed,
                    Ok(n) => n,
                    Err(_) => return Outcome::Reset,
                },
                _ = epoch.wait_for(|e| *e != start_epoch) => return Outcome::Reset,
            };
            loop {
                if *epoch.borrow() != start_epoch {
                    return Outcome::Reset;
                }
                if !shared.faults.lock().unwrap().blackhole {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let faults = shared.faults.lock().unwrap().clone();
            if should_reset(&shared, &faults, n as u64) {
                return Outcome::Reset;
            }
            if let Some(rate) = faults.bandwidth {
                throttle(&shared.buckets[direction], rate, n).await;
            }
            let jitter = if faults.jitter.is_zero() {
                0.0
            } else {
                (random(&shared) * 2.0 - 1.0) * faults.jitter.as_secs_f64()
            };
            let delay = (faults.latency.as_secs_f64() + jitter).max(0.0);
            let due = (Instant::now() + Duration::from_secs_f64(delay)).max(last_due);
            last_due = due;
            if tx.send((due, buf[..n].to_vec())).await.is_err() {
                return Outcome::Reset;
            }
        }
    };
    let (written, read) = tokio::join!(writer, reader);
    if read == Outcome::Reset || written == Outcome::Reset {
        Outcome::Reset
    } else {
        Outcome::Closed
    }
}

fn should_reset(shared: &Shared, faults: &Faults, n: u64) -> bool {
    let crossed = shared.crossed.fetch_add(n, Ordering::SeqCst) + n;
    if let Some(every) = faults.reset_every {
        let mut next = shared.next_reset.lock().unwrap();
        let due = next.get_or_insert(every);
        if crossed >= *due {
            *due = crossed + every;
            return true;
        }
    }
    faults.reset_chance > 0.0 && random(shared) < faults.reset_chance
}

/// xorshift64*: enough randomness for jitter and random resets, reproducible per proxy.
fn random(shared: &Shared) -> f64 {
    let mut s = shared.rng.lock().unwrap();
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    (s.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
}

async fn throttle(bucket: &Mutex<Bucket>, rate: u64, n: usize) {
    let wait = {
        let mut b = bucket.lock().unwrap();
        let now = Instant::now();
        let elapsed = b.at.map_or(0.0, |at| now.duration_since(at).as_secs_f64());
        b.tokens = (b.tokens + elapsed * rate as f64).min(CHUNK as f64);
        b.at = Some(now);
        b.tokens -= n as f64;
        if b.tokens < 0.0 {
            Duration::from_secs_f64(-b.tokens / rate as f64)
        } else {
            Duration::ZERO
        }
    };
    if !wait.is_zero() {
        tokio::time::sleep(wait).await;
    }
}

async fn read_some(s: &TcpStream, buf: &mut [u8]) -> std::io::Result<usize> {
    loop {
        s.readable().await?;
        match s.try_read(buf) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            other => return other,
        }
    }
}

async fn write_all(s: &TcpStream, mut data: &[u8]) -> std::io::Result<()> {
    while !data.is_empty() {
        s.writable().await?;
        match s.try_write(data) {
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    /// A server that echoes whatever it reads, on its own thread.
    fn echo_server() -> SocketAddr {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { return };
                std::thread::spawn(move || {
                    let mut buf = vec![0u8; 65536];
                    while let Ok(n) = conn.read(&mut buf) {
                        if n == 0 || conn.write_all(&buf[..n]).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        addr
    }

    fn round_trip(proxy: &FaultProxy, data: &[u8]) -> std::io::Result<Vec<u8>> {
        let mut s = std::net::TcpStream::connect(proxy.addr())?;
        s.set_read_timeout(Some(Duration::from_secs(20)))?;
        s.write_all(data)?;
        let mut got = vec![0u8; data.len()];
        s.read_exact(&mut got)?;
        Ok(got)
    }

    #[test]
    fn a_clean_link_forwards_bytes_both_ways_and_counts_them() {
        let proxy = FaultProxy::start(echo_server());
        let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7) as u8).collect();
        assert_eq!(round_trip(&proxy, &data).unwrap(), data);
        // The pump counts a chunk after writing it: the client may hold the last bytes a
        // moment before the counters do.
        let deadline = Instant::now() + Duration::from_secs(10);
        while (proxy.bytes_up() < data.len() as u64 || proxy.bytes_down() < data.len() as u64)
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(proxy.bytes_up(), data.len() as u64);
        assert_eq!(proxy.bytes_down(), data.len() as u64);
        assert_eq!(proxy.connections(), 1);
    }

    #[test]
    fn latency_delays_each_direction() {
        let proxy = FaultProxy::start(echo_server());
        proxy.set(Faults {
            latency: Duration::from_millis(100),
            jitter: Duration::from_millis(10),
            ..Faults::default()
        });
        let started = Instant::now();
        assert_eq!(round_trip(&proxy, b"ping").unwrap(), b"ping");
        // There and back: at least twice the latency less the jitter, whatever the machine.
        assert!(started.elapsed() >= Duration::from_millis(180));
    }

    #[test]
    fn bandwidth_caps_the_rate() {
        let proxy = FaultProxy::start(echo_server());
        proxy.set(Faults {
            bandwidth: Some(2_000_000),
            ..Faults::default()
        });
        let data = vec![7u8; 1_000_000];
        let started = Instant::now();
        assert_eq!(round_trip(&proxy, &data).unwrap(), data);
        // 1 MB at 2 MB/s with a 64 KiB burst: at least 0.45 s, however fast the machine.
        assert!(started.elapsed() >= Duration::from_millis(450));
    }

    #[test]
    fn resets_cut_a_connection_after_the_byte_budget_and_new_ones_work() {
        let proxy = FaultProxy::start(echo_server());
        proxy.set(Faults {
            reset_every: Some(200_000),
            ..Faults::default()
        });
        assert!(round_trip(&proxy, &vec![1u8; 500_000]).is_err());
        assert!(proxy.resets() >= 1);
        proxy.set(Faults::default());
        assert_eq!(round_trip(&proxy, b"after").unwrap(), b"after");
    }

    #[test]
    fn a_blackhole_holds_traffic_until_lifted_and_refusal_resets_at_once() {
        let proxy = FaultProxy::start(echo_server());
        proxy.set(Faults {
            blackhole: true,
            ..Faults::default()
        });
        let mut s = std::net::TcpStream::connect(proxy.addr()).unwrap();
        s.write_all(b"held").unwrap();
        s.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let mut buf = [0u8; 4];
        assert!(
            s.read_exact(&mut buf).is_err(),
            "nothing crosses a blackhole"
        );
        proxy.set(Faults::default());
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        s.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"held", "TCP carries on once the hole closes");

        proxy.set(Faults {
            refuse: true,
            ..Faults::default()
        });
        assert!(round_trip(&proxy, b"no").is_err());
        proxy.reset_all();
        proxy.set(Faults::default());
        assert_eq!(round_trip(&proxy, b"yes").unwrap(), b"yes");
    }

    #[test]
    fn reset_all_cuts_open_connections() {
        let proxy = FaultProxy::start(echo_server());
        let mut s = std::net::TcpStream::connect(proxy.addr()).unwrap();
        s.write_all(b"one").unwrap();
        let mut buf = [0u8; 3];
        s.read_exact(&mut buf).unwrap();
        proxy.reset_all();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        // The connection is gone: a write then a read fails or sees the end.
        let _ = s.write_all(b"two");
        let mut rest = Vec::new();
        let outcome = s.read_to_end(&mut rest);
        assert!(outcome.is_err() || rest.is_empty());
    }
}
