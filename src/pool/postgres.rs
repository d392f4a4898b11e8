//! [`PgManager`]: pools [`tokio_postgres::Client`]s (feature `postgres`).
//!
//! ```no_run
//! use std::time::Duration;
//! use tower_patterns::pool::{postgres::PgManager, Pool};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let manager = PgManager::from_url("postgresql://app:secret@127.0.0.1:5432/app")?;
//! let pool = Pool::builder()
//!     .min_size(10)
//!     .max_size(20)
//!     .acquire_timeout(Duration::from_secs(30))
//!     .build(manager)?;
//!
//! let mut conn = pool.acquire().await?;
//! let tx = conn.transaction().await?;
//! tx.execute("INSERT INTO users (name) VALUES ($1)", &[&"ada"]).await?;
//! tx.commit().await?;
//! # Ok(())
//! # }
//! ```

use std::fmt;

use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};
use tokio_postgres::{Client, Config, NoTls, Socket};

use super::manager::Manager;

/// A [`Manager`] of PostgreSQL connections made with `tokio_postgres`.
///
/// [`create`](Manager::create) connects and spawns the connection's I/O
/// task on the current Tokio runtime; [`recycle`](Manager::recycle) sends
/// an empty query, so a connection the server closed (a restart,
/// `pg_terminate_backend`, an idle timeout on a proxy) fails the check and
/// is replaced instead of being handed out.
///
/// `T` is the TLS connector, [`NoTls`] by default; any
/// `tokio_postgres` [`MakeTlsConnect`] works (for example
/// `tokio-postgres-rustls`).
pub struct PgManager<T = NoTls> {
    config: Config,
    tls: T,
}

impl<T> fmt::Debug for PgManager<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `Config`'s Debug redacts the password.
        f.debug_struct("PgManager")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl PgManager<NoTls> {
    /// A manager connecting without TLS with the settings of a
    /// `postgresql://user:password@host:port/dbname` URL or a
    /// `host=... user=...` string.
    ///
    /// # Errors
    ///
    /// The parse error if the string is not a valid connection string.
    pub fn from_url(url: &str) -> Result<Self, tokio_postgres::Error> {
        Ok(PgManager {
            config: url.parse()?,
            tls: NoTls,
        })
    }
}

impl<T> PgManager<T> {
    /// A manager connecting with `config` and the TLS connector `tls`.
    pub fn new(config: Config, tls: T) -> Self {
        PgManager { config, tls }
    }

    /// The connection settings.
    pub fn config(&self) -> &Config {
        &self.config
    }
}

impl<T> Manager for PgManager<T>
where
    T: MakeTlsConnect<Socket> + Clone + Send + Sync + 'static,
    T::Stream: Send + Sync + 'static,
    T::TlsConnect: Send + Sync,
    <T::TlsConnect as TlsConnect<Socket>>::Future: Send,
{
    type Resource = Client;
    type Error = tokio_postgres::Error;

    async fn create(&self) -> Result<Client, tokio_postgres::Error> {
        let (client, connection) = self.config.connect(self.tls.clone()).await?;
        tokio::spawn(async move {
            // Ends when the client is dropped or the server goes away; the
            // next recycle of this client then fails and it is replaced.
            let _result = connection.await;
            crate::trace::trace_event!(DEBUG, result = ?_result, "pool: postgres connection ended");
        });
        Ok(client)
    }

    async fn recycle(&self, client: &mut Client) -> Result<(), tokio_postgres::Error> {
        // A round trip: fails at once if the connection task has ended, and
        // catches a server-side close the task has not noticed yet.
        client.simple_query("").await.map(drop)
    }
}
