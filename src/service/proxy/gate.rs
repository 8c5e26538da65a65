//! The rate-limit gate shared by everything that sends the server's token
//! to GitHub: the proxy's fetches feed it and consult it, and
//! [`GatedUpstream`] holds back every other caller's requests (org
//! discovery) while it is closed. The rules are `domain::RateLimitGate`'s.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use async_trait::async_trait;

use crate::domain::{HeaderList, RateLimitGate};
use crate::ports::{UpstreamError, UpstreamGithub, UpstreamRequest, UpstreamResponse};

/// The gate for one token. Cloning an `Arc` of it shares it.
#[derive(Debug, Default)]
pub struct UpstreamGate {
    // A std mutex: held only to read or update a few numbers, never across
    // an await.
    state: Mutex<RateLimitGate>,
    reserve_pct: u8,
}

impl UpstreamGate {
    /// A gate keeping `reserve_pct` percent of the budget for cached keys.
    pub fn new(reserve_pct: u8) -> Self {
        Self {
            state: Mutex::new(RateLimitGate::new()),
            reserve_pct,
        }
    }

    /// Takes in one answer from GitHub.
    pub fn observe(&self, status: u16, headers: &HeaderList, now: SystemTime) {
        self.lock().observe(status, headers, now);
    }

    /// `Some(seconds)` while nothing may be sent.
    pub fn closed(&self, now: SystemTime) -> Option<u64> {
        self.lock().closed(now)
    }

    /// `Some(seconds until the reset)` while only cached keys may be
    /// fetched.
    pub fn in_reserve(&self, now: SystemTime) -> Option<u64> {
        self.lock().in_reserve(now, self.reserve_pct)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, RateLimitGate> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// An [`UpstreamGithub`] that sends nothing while the gate is closed and
/// reports every answer to it.
pub struct GatedUpstream {
    upstream: Arc<dyn UpstreamGithub>,
    gate: Arc<UpstreamGate>,
}

impl GatedUpstream {
    /// Wraps `upstream` with `gate`.
    pub fn new(upstream: Arc<dyn UpstreamGithub>, gate: Arc<UpstreamGate>) -> Self {
        Self { upstream, gate }
    }
}

#[async_trait]
impl UpstreamGithub for GatedUpstream {
    async fn get(&self, request: UpstreamRequest) -> Result<UpstreamResponse, UpstreamError> {
        if let Some(retry_after_secs) = self.gate.closed(SystemTime::now()) {
            return Err(UpstreamError::RateLimited { retry_after_secs });
        }
        let response = self.upstream.get(request).await?;
        self.gate
            .observe(response.status, &response.headers, SystemTime::now());
        Ok(response)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use bytes::Bytes;

    struct Counting(AtomicUsize);

    #[async_trait]
    impl UpstreamGithub for Counting {
        async fn get(&self, _: UpstreamRequest) -> Result<UpstreamResponse, UpstreamError> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Ok(UpstreamResponse {
                status: 429,
                headers: [("retry-after", "60")].into_iter().collect(),
                body: Bytes::new(),
            })
        }
    }

    #[tokio::test]
    async fn nothing_is_sent_once_github_has_rate_limited() {
        let counting = Arc::new(Counting(AtomicUsize::new(0)));
        let gated = GatedUpstream::new(counting.clone(), Arc::new(UpstreamGate::new(5)));
        let request = || UpstreamRequest {
            path_and_query: "/orgs/acme/repos".to_owned(),
            if_none_match: None,
        };
        assert_eq!(gated.get(request()).await.unwrap().status, 429);
        for _ in 0..3 {
            assert!(matches!(
                gated.get(request()).await,
                Err(UpstreamError::RateLimited { retry_after_secs }) if retry_after_secs <= 60
            ));
        }
        assert_eq!(counting.0.load(Ordering::SeqCst), 1);
    }
}
