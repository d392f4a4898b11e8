//! Redis for the `redis` tests: the server `.ci/redis.sh` starts
//! (TOWER_PATTERNS_REDIS_URL), servers a test starts, pauses and kills
//! itself, fresh keys, and waiting on a condition under a deadline.

use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

const MS: Duration = Duration::from_millis(1);

/// The URL of the Redis of `.ci/redis.sh`, or `None` (skipped, with the
/// reason on stderr) outside CI; under CI a missing Redis fails.
pub fn redis_url() -> Option<String> {
    super::service_url(
        "TOWER_PATTERNS_REDIS_URL",
        "start Redis with `eval \"$(bash .ci/redis.sh | tail -1)\"`",
    )
}

/// A key (or prefix) no other test or run has used.
pub fn fresh_key(name: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "{name}-{}-{nanos}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Polls `check` every 10 ms until it returns `Some`, or panics with
/// `what` after `deadline`.
pub async fn wait_for<T, F, Fut>(what: &str, deadline: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            start.elapsed() < deadline,
            "{what}: not within {deadline:?}"
        );
        tokio::time::sleep(10 * MS).await;
    }
}

/// Polls `check` every 10 ms until it is true, or panics with `what`
/// after `deadline`.
pub async fn wait_until(what: &str, deadline: Duration, mut check: impl FnMut() -> bool) {
    wait_for(what, deadline, || {
        let done = check();
        async move { done.then_some(()) }
    })
    .await
}

/// A redis-server this test owns, on 127.0.0.1:`port`; killed on drop.
pub struct OwnServer {
    pub port: u16,
    args: Vec<String>,
    child: Option<Child>,
}

impl OwnServer {
    pub async fn start(args: &[&str]) -> OwnServer {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut server = OwnServer {
            port,
            args: args.iter().map(|a| a.to_string()).collect(),
            child: None,
        };
        server.restart().await;
        server
    }

    /// Starts (again) on the same port, and waits until it accepts connections.
    pub async fn restart(&mut self) {
        let dir = std::env::temp_dir();
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .arg("--dir")
            .arg(&dir)
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("redis-server is on PATH (.ci/redis.sh installs it)");
        let child = self.child.insert(child);
        let start = Instant::now();
        while tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .is_err()
        {
            if let Some(status) = child.try_wait().unwrap() {
                panic!("redis-server {:?} exited: {status}", self.args);
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "redis-server not listening within 10 s"
            );
            tokio::time::sleep(10 * MS).await;
        }
    }

    pub async fn kill(&mut self) {
        let mut child = self.child.take().expect("running");
        child.kill().await.unwrap();
    }

    /// Sends the server `signal` (`"STOP"` pauses it: connections stay
    /// open and nothing answers, as a hung server; `"CONT"` resumes it).
    pub fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().and_then(Child::id).expect("running");
        let status = std::process::Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .status()
            .expect("kill is on PATH");
        assert!(status.success(), "kill -{signal} {pid}: {status}");
    }

    pub fn url(&self, userinfo: &str) -> String {
        format!("redis://{userinfo}127.0.0.1:{}", self.port)
    }
}

/// A plain connection to `url`, to look at (or spoil) what the stores wrote.
#[cfg(feature = "redis")]
pub async fn raw(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .expect("the test connects to Redis")
}
