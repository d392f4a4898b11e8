//! The demo's in-memory "database": a [`Database`] of rows, and a pool
//! [`Manager`] whose connections all write into it.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tower_patterns::pool::Manager;

/// The rows; clones share them.
#[derive(Clone, Default)]
pub struct Database {
    rows: Arc<Mutex<BTreeMap<u64, String>>>,
}

impl Database {
    /// How many rows have been written.
    pub fn rows(&self) -> usize {
        self.rows.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// A pool manager whose connections write into this database.
    pub fn manager(&self) -> MemDb {
        MemDb {
            db: self.clone(),
            next: AtomicU64::new(1),
        }
    }
}

/// Opens connections to a [`Database`], numbered from 1.
pub struct MemDb {
    db: Database,
    next: AtomicU64,
}

/// One pooled connection.
pub struct Conn {
    /// The connection's number, in the order they were opened.
    pub id: u64,
    db: Database,
}

impl Conn {
    /// Writes a row; takes a few milliseconds, like a real database would.
    pub async fn save(&mut self, key: u64, value: String) {
        tokio::time::sleep(Duration::from_millis(5)).await;
        self.db
            .rows
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, value);
    }
}

impl Manager for MemDb {
    type Resource = Conn;
    type Error = std::io::Error;

    async fn create(&self) -> Result<Conn, std::io::Error> {
        Ok(Conn {
            id: self.next.fetch_add(1, Ordering::Relaxed),
            db: self.db.clone(),
        })
    }

    async fn recycle(&self, _conn: &mut Conn) -> Result<(), std::io::Error> {
        Ok(())
    }
}
