//! The pool benches' managers: ours and deadpool's, each creating a `u64`
//! at once and recycling it for free, so the benches measure the pools.

use std::convert::Infallible;

/// Our pool's manager.
pub struct Ours;

impl tower_patterns::pool::Manager for Ours {
    type Resource = u64;
    type Error = std::io::Error;

    async fn create(&self) -> Result<u64, std::io::Error> {
        Ok(7)
    }

    async fn recycle(&self, _: &mut u64) -> Result<(), std::io::Error> {
        Ok(())
    }
}

/// deadpool's manager.
pub struct Theirs;

impl deadpool::managed::Manager for Theirs {
    type Type = u64;
    type Error = Infallible;

    async fn create(&self) -> Result<u64, Infallible> {
        Ok(7)
    }

    async fn recycle(
        &self,
        _: &mut u64,
        _: &deadpool::managed::Metrics,
    ) -> deadpool::managed::RecycleResult<Infallible> {
        Ok(())
    }
}
