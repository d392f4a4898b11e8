//! A fault-injecting TCP proxy on loopback, for tests that put a real
//! network fault between a client (HTTP, PostgreSQL, Redis) and its server.
//!
//! Every connection the proxy accepts is handled by the [`Fault`] in force
//! when it was accepted: passed through, reset, stalled, dripped, cut short
//! or half-closed. The proxy counts the connections it holds open, so a test
//! can check that a client let go of them.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// What the proxy does to a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Forwards both ways, unchanged.
    Pass,
    /// Forwards the client's bytes; after `n` bytes of the server's answer,
    /// resets the connection (RST).
    ResetAfter(usize),
    /// Accepts, reads whatever the client sends, never answers.
    Stall,
    /// Forwards `n` bytes of the server's answer, then goes silent (the
    /// connection stays open).
    StallAfter(usize),
    /// Forwards the server's answer one byte every `every`.
    Drip { every: Duration },
    /// Forwards `n` bytes of the server's answer, then closes cleanly
    /// (FIN): a truncated response.
    TruncateAfter(usize),
    /// Closes its sending side at once (FIN to the client) while still
    /// reading: the server "hung up" before answering.
    HalfClose,
}

/// A running proxy; stops when dropped.
pub struct FaultProxy {
    addr: SocketAddr,
    fault: Arc<Mutex<Fault>>,
    open: Arc<AtomicUsize>,
    accepted: Arc<AtomicUsize>,
    down: Arc<AtomicUsize>,
    frozen: Arc<AtomicBool>,
    task: JoinHandle<()>,
}

impl FaultProxy {
    /// A proxy on 127.0.0.1 in front of `upstream`, applying `fault`.
    pub async fn start(upstream: SocketAddr, fault: Fault) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let fault = Arc::new(Mutex::new(fault));
        let open = Arc::new(AtomicUsize::new(0));
        let accepted = Arc::new(AtomicUsize::new(0));
        let down = Arc::new(AtomicUsize::new(0));
        let frozen = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn({
            let (fault, open, accepted, down, frozen) = (
                fault.clone(),
                open.clone(),
                accepted.clone(),
                down.clone(),
                frozen.clone(),
            );
            async move {
                loop {
                    let Ok((client, _)) = listener.accept().await else {
                        return;
                    };
                    accepted.fetch_add(1, Ordering::SeqCst);
                    let now = *fault.lock().unwrap();
                    let open = open.clone();
                    let down = down.clone();
                    let frozen = frozen.clone();
                    open.fetch_add(1, Ordering::SeqCst);
                    tokio::spawn(async move {
                        let _ = handle(client, upstream, now, &down, frozen).await;
                        open.fetch_sub(1, Ordering::SeqCst);
                    });
                }
            }
        });
        FaultProxy {
            addr,
            fault,
            open,
            accepted,
            down,
            frozen,
            task,
        }
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The fault for connections accepted from now on.
    pub fn set(&self, fault: Fault) {
        *self.fault.lock().unwrap() = fault;
    }

    /// Connections the proxy holds open now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }

    /// Stalls every connection, those already open included: no byte moves
    /// either way until [`thaw`](Self::thaw). A server that stops answering
    /// in the middle of a session.
    pub fn freeze(&self) {
        self.frozen.store(true, Ordering::SeqCst);
    }

    /// Lets bytes move again after [`freeze`](Self::freeze).
    pub fn thaw(&self) {
        self.frozen.store(false, Ordering::SeqCst);
    }

    /// Bytes forwarded from the server to clients so far.
    pub fn forwarded(&self) -> usize {
        self.down.load(Ordering::SeqCst)
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// An address nothing listens on: connecting to it is refused.
pub async fn refused_addr() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
    // Dropped here: the port is closed.
}

async fn handle(
    mut client: TcpStream,
    upstream: SocketAddr,
    fault: Fault,
    down: &AtomicUsize,
    frozen: Arc<AtomicBool>,
) -> std::io::Result<()> {
    match fault {
        Fault::Stall => {
            // Read and drop until the client goes away.
            let mut buf = [0u8; 4096];
            while client.read(&mut buf).await? > 0 {}
            return Ok(());
        }
        Fault::HalfClose => {
            client.shutdown().await?;
            let mut buf = [0u8; 4096];
            while client.read(&mut buf).await? > 0 {}
            return Ok(());
        }
        _ => {}
    }
    if let Fault::ResetAfter(_) = fault {
        // With a zero linger, closing the socket sends a reset, not a FIN.
        client.set_zero_linger()?;
    }
    let server = TcpStream::connect(upstream).await?;
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    // Client to server: always forwarded as it is. Ends when the client
    // closes its side.
    let thawed = {
        let frozen = frozen.clone();
        move || {
            let frozen = frozen.clone();
            async move {
                while frozen.load(Ordering::SeqCst) {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        }
    };
    let upward = tokio::spawn({
        let thawed = thawed.clone();
        async move {
            let mut buf = vec![0u8; 16 * 1024];
            loop {
                match client_read.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        thawed().await;
                        if server_write.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                }
            }
            let _ = server_write.shutdown().await;
            client_read
        }
    });
    // Server to client: where the faults are.
    let mut sent = 0usize;
    let mut buf = vec![0u8; 16 * 1024];
    let result = loop {
        let n = match server_read.read(&mut buf).await {
            Ok(0) => break Ok(()),
            Ok(n) => n,
            Err(e) => break Err(e),
        };
        thawed().await;
        let chunk = &buf[..n];
        let before = sent;
        match fault {
            Fault::ResetAfter(limit) | Fault::TruncateAfter(limit) | Fault::StallAfter(limit) => {
                let take = chunk.len().min(limit.saturating_sub(sent));
                client_write.write_all(&chunk[..take]).await?;
                sent += take;
                if sent >= limit {
                    break Ok(());
                }
            }
            Fault::Drip { every } => {
                for byte in chunk {
                    client_write.write_all(std::slice::from_ref(byte)).await?;
                    down.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(every).await;
                }
            }
            Fault::Pass | Fault::Stall | Fault::HalfClose => {
                client_write.write_all(chunk).await?;
                sent += chunk.len();
            }
        }
        down.fetch_add(sent - before, Ordering::SeqCst);
    };
    if let Fault::StallAfter(_) = fault {
        // Silent, but open, until the client leaves.
        let _ = upward.await;
        return result;
    }
    // Dropping both halves closes the socket: a FIN, or a reset under
    // `ResetAfter`'s zero linger.
    upward.abort();
    drop(upward.await);
    drop(client_write);
    result
}
