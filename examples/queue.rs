//! A task queue at work: 20 jobs of mixed success and failure
//! submitted to 5 workers; wait for all of them, then print a status table.
//!
//! Run with `cargo run --example queue`.

use clap::Parser;
use std::time::Duration;

use tower::{service_fn, BoxError};
use tower_patterns::queue::{Shutdown, TaskError, TaskQueue, TaskStatus};

/// One job: "process" an order, taking a few milliseconds; some orders fail.
async fn process(order: u32) -> Result<String, BoxError> {
    tokio::time::sleep(Duration::from_millis(20 + u64::from(order % 7) * 15)).await;
    match order % 5 {
        3 => Err(format!("order {order}: payment declined").into()),
        4 if order.is_multiple_of(2) => Err(format!("order {order}: out of stock").into()),
        _ => Ok(format!("order {order} shipped")),
    }
}

/// Twenty jobs of mixed success and failure on five queue workers, with a status table.
///
/// Takes no flags; `--help` prints this.
#[derive(Parser)]
struct Args {}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    Args::parse();
    let queue = TaskQueue::builder()
        .workers(5)
        .capacity(100)
        .retain_results(Duration::from_secs(300))
        .build(service_fn(process))?;

    let mut ids = Vec::new();
    for order in 1..=20 {
        ids.push((order, queue.submit(order).await?));
    }
    println!(
        "submitted {} jobs to {} workers",
        ids.len(),
        queue.workers()
    );

    // Wait for every job: `result` is woken when its task finishes.
    let mut rows = Vec::new();
    for (order, id) in &ids {
        let outcome = tokio::time::timeout(Duration::from_secs(10), queue.result(*id)).await?;
        let (status, detail) = match outcome {
            Ok(message) => (TaskStatus::Completed, message),
            Err(TaskError::Failed(e)) => (TaskStatus::Failed, e.to_string()),
            Err(other) => (
                other.status().unwrap_or(TaskStatus::Failed),
                other.to_string(),
            ),
        };
        rows.push((*id, *order, status, detail));
    }

    println!();
    println!("{:<8} {:>5}  {:<10} detail", "task", "order", "status");
    println!("{}", "-".repeat(56));
    for (id, order, status, detail) in &rows {
        println!(
            "{:<8} {:>5}  {:<10} {}",
            id.to_string(),
            order,
            status.to_string(),
            detail
        );
    }
    let stats = queue.stats();
    println!("{}", "-".repeat(56));
    println!(
        "completed {}, failed {}, cancelled {}, still tracked {}",
        stats.completed, stats.failed, stats.cancelled, stats.tracked
    );

    let summary = queue
        .shutdown(Shutdown::Graceful(Duration::from_secs(5)))
        .await;
    println!(
        "shutdown: {} cancelled, deadline reached: {}",
        summary.cancelled.len(),
        summary.deadline_reached
    );
    Ok(())
}
