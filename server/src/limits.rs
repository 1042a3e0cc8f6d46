//! Rate limits on session opens and on chunks, per client and per link (token buckets from
//! `governor`, and with `--database postgres://...` the same buckets in PostgreSQL, shared by
//! every instance): 429 `rate-limited` with `Retry-After` when a bucket is empty.
//!
//! The defaults are set above what an honest uploader can reach (docs/SECURITY.md has the
//! figures): a client never waits because of them unless it sends far more requests than the
//! reference uploader at 6 parallel chunks could, on any link. What they bound is the cost one
//! client (or a crowd on one link) can put on the server: every chunk costs an `fdatasync` and a
//! metadata commit, every open a database row and a reserved file.

use std::hash::Hash;
use std::num::NonZeroU32;
use std::str::FromStr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use droppr_protocol::wire::ErrorCode;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::client::{ClientId, ClientKey};
use crate::error::{Error, Result};
use crate::meta::{BucketDraw, MetadataStore};

/// A token bucket: `RATE:BURST` on the command line (`50:200` = 50 a second on average, 200 at
/// once); `0` or `off` turns the limit off.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    pub per_second: f64,
    pub burst: NonZeroU32,
}

impl Rate {
    /// The time one token takes to come back.
    pub fn period(&self) -> Duration {
        Duration::from_secs_f64(1.0 / self.per_second)
    }
}

/// A limit that may be off.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateSetting(pub Option<Rate>);

impl FromStr for RateSetting {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s == "0" || s.eq_ignore_ascii_case("off") {
            return Ok(Self(None));
        }
        let bad = || format!("'{s}' is not RATE:BURST (e.g. 50:200), 0 or off");
        let (rate, burst) = s.split_once(':').ok_or_else(bad)?;
        let per_second: f64 = rate.trim().parse().map_err(|_| bad())?;
        let burst: u32 = burst.trim().parse().map_err(|_| bad())?;
        match NonZeroU32::new(burst) {
            Some(burst) if per_second.is_finite() && per_second >= 0.001 => {
                Ok(Self(Some(Rate { per_second, burst })))
            }
            _ => Err(bad()),
        }
    }
}

impl std::fmt::Display for RateSetting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            None => f.write_str("off"),
            Some(r) => write!(f, "{}:{}", r.per_second, r.burst),
        }
    }
}

/// The four limits, validated (see `--open-rate` and the others in `config.rs`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateConfig {
    pub open_per_client: RateSetting,
    pub open_per_link: RateSetting,
    pub chunk_per_client: RateSetting,
    pub chunk_per_link: RateSetting,
}

/// One keyed token bucket, or nothing when the limit is off.
#[derive(Debug)]
struct Bucket<K: Hash + Eq + Clone>(Option<DefaultKeyedRateLimiter<K>>);

impl<K: Hash + Eq + Clone> Bucket<K> {
    fn new(setting: RateSetting) -> Self {
        Self(setting.0.map(|rate| {
            let quota = Quota::with_period(rate.period())
                .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
                .allow_burst(rate.burst);
            RateLimiter::keyed(quota)
        }))
    }

    /// Takes one token for `key`; the wait until one is free when the bucket is empty.
    fn take(&self, key: &K) -> Option<Duration> {
        let limiter = self.0.as_ref()?;
        limiter
            .check_key(key)
            .err()
            .map(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }

    /// Forgets keys whose bucket is full again (they would behave the same if absent).
    fn prune(&self) {
        if let Some(limiter) = &self.0 {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }
}

/// What a bucket limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Open,
    Chunk,
}

impl Kind {
    /// The noun of the refusal and the prefix of the shared buckets' keys.
    fn as_str(self) -> &'static str {
        match self {
            Kind::Open => "uploads",
            Kind::Chunk => "chunks",
        }
    }
}

/// The server's rate limits: the instance's own token buckets, and with a metadata store that
/// every instance shares (PostgreSQL) the same buckets in that store as well.
///
/// The instance's buckets stay in front as a cheap first line: a request they refuse never
/// reaches the database, so a flood at one instance costs it no more database work than the
/// limit's own rate. Behind them the shared buckets are exact: a client spreading its requests
/// over several instances gets the limit once, not once per instance.
#[derive(Debug)]
pub struct RateLimits {
    open_client: Bucket<ClientKey>,
    open_link: Bucket<String>,
    chunk_client: Bucket<ClientKey>,
    chunk_link: Bucket<String>,
    config: RateConfig,
    /// The store holding the shared buckets, when it shares them.
    shared: Option<Arc<dyn MetadataStore>>,
    checks: AtomicU32,
}

/// Checks between two sweeps of idle keys (their cost is one pass over the keys).
const PRUNE_EVERY: u32 = 4096;

impl RateLimits {
    /// Limits kept by this instance alone.
    pub fn new(config: &RateConfig) -> Self {
        Self {
            open_client: Bucket::new(config.open_per_client),
            open_link: Bucket::new(config.open_per_link),
            chunk_client: Bucket::new(config.chunk_per_client),
            chunk_link: Bucket::new(config.chunk_per_link),
            config: *config,
            shared: None,
            checks: AtomicU32::new(0),
        }
    }

    /// Limits that hold across every instance using `meta`, when it shares buckets.
    pub fn shared(config: &RateConfig, meta: Arc<dyn MetadataStore>) -> Self {
        let mut limits = Self::new(config);
        // The mutant keeps every instance's limits to itself (tests/scaleout.rs must catch it).
        if meta.shares_buckets() && !cfg!(feature = "mutant-local-rate-limits") {
            limits.shared = Some(meta);
        }
        limits
    }

    /// Before a session is opened (with or without a first chunk).
    pub async fn check_open(&self, client: &ClientId, link: &str) -> Result<()> {
        self.check(Kind::Open, client, link).await
    }

    /// Before a chunk's body is read.
    pub async fn check_chunk(&self, client: &ClientId, link: &str) -> Result<()> {
        self.check(Kind::Chunk, client, link).await
    }

    async fn check(&self, kind: Kind, client: &ClientId, link: &str) -> Result<()> {
        if self.checks.fetch_add(1, Ordering::Relaxed) % PRUNE_EVERY == PRUNE_EVERY - 1 {
            self.prune();
        }
        let (per_client, per_link, settings) = match kind {
            Kind::Open => (
                &self.open_client,
                &self.open_link,
                (self.config.open_per_client, self.config.open_per_link),
            ),
            Kind::Chunk => (
                &self.chunk_client,
                &self.chunk_link,
                (self.config.chunk_per_client, self.config.chunk_per_link),
            ),
        };
        // The link's bucket is only drawn from by clients within their own limit, so one client
        // flooding a link cannot spend more of the link's budget than its own rate.
        let local = per_client
            .take(&client.key())
            .map(|wait| (wait, Whose::Client))
            .or_else(|| {
                per_link
                    .take(&link.to_owned())
                    .map(|wait| (wait, Whose::Link))
            });
        let refused = match (local, &self.shared) {
            (Some(refused), _) => Some(refused),
            (None, None) => None,
            (None, Some(meta)) => {
                draw_shared(
                    meta.clone(),
                    kind,
                    &client.key().to_string(),
                    link,
                    settings,
                )
                .await?
            }
        };
        match refused {
            None => Ok(()),
            Some((wait, whose)) => Err(Error::client(
                ErrorCode::RateLimited,
                format!(
                    "Too many {} {}: slow down and retry after the Retry-After seconds.",
                    kind.as_str(),
                    whose.as_str()
                ),
            )
            .with_retry_after(retry_after_secs(wait))),
        }
    }

    fn prune(&self) {
        for bucket in [&self.open_client, &self.chunk_client] {
            bucket.prune();
        }
        for bucket in [&self.open_link, &self.chunk_link] {
            bucket.prune();
        }
        if let Some(meta) = self.shared.clone() {
            tokio::task::spawn_blocking(move || {
                if let Err(e) = meta.prune_buckets() {
                    tracing::warn!(error = %e, "shared rate-limit buckets not pruned");
                }
            });
        }
    }
}

/// Whose bucket was empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Whose {
    Client,
    Link,
}

impl Whose {
    fn as_str(self) -> &'static str {
        match self {
            Whose::Client => "from your address",
            Whose::Link => "on this link",
        }
    }
}

/// Draws from the shared buckets of the limits that are on: the client's, then the link's (one
/// round trip to the store).
async fn draw_shared(
    meta: Arc<dyn MetadataStore>,
    kind: Kind,
    client: &str,
    link: &str,
    (per_client, per_link): (RateSetting, RateSetting),
) -> Result<Option<(Duration, Whose)>> {
    let mut draws: Vec<(String, Rate, Whose)> = Vec::with_capacity(2);
    if let Some(rate) = per_client.0 {
        draws.push((
            format!("{}:client:{client}", kind.as_str()),
            rate,
            Whose::Client,
        ));
    }
    if let Some(rate) = per_link.0 {
        draws.push((format!("{}:link:{link}", kind.as_str()), rate, Whose::Link));
    }
    if draws.is_empty() {
        return Ok(None);
    }
    let refused = tokio::task::spawn_blocking(move || {
        let buckets: Vec<BucketDraw<'_>> = draws
            .iter()
            .map(|(key, rate, _)| BucketDraw {
                key,
                period: rate.period(),
                burst: rate.burst.get(),
            })
            .collect();
        let refused = meta.draw_tokens(&buckets)?;
        Ok::<_, Error>(refused.and_then(|(i, wait)| Some((wait, draws.get(i)?.2))))
    })
    .await??;
    Ok(refused)
}

/// `Retry-After` is in whole seconds: round up, so a client that waits that long finds a token.
pub fn retry_after_secs(wait: Duration) -> u64 {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    secs.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::HeaderMap;

    fn client(ip: &str) -> ClientId {
        ClientId::from_parts(ip.parse().unwrap(), &HeaderMap::new(), &Default::default())
    }

    fn setting(s: &str) -> RateSetting {
        s.parse().unwrap()
    }

    #[test]
    fn settings_parse_and_refuse_nonsense() {
        assert_eq!(setting("off"), RateSetting(None));
        assert_eq!(setting("0"), RateSetting(None));
        let r = setting("0.5:3").0.unwrap();
        assert_eq!((r.per_second, r.burst.get()), (0.5, 3));
        for bad in ["", "5", "5:0", "-1:3", "x:3", "5:y", "NaN:3"] {
            assert!(bad.parse::<RateSetting>().is_err(), "{bad}");
        }
        assert_eq!(setting("50:200").to_string(), "50:200");
    }

    #[actix_web::test]
    async fn a_client_over_its_burst_waits_and_others_do_not() {
        let limits = RateLimits::new(&RateConfig {
            open_per_client: setting("1:2"),
            open_per_link: setting("1:3"),
            chunk_per_client: setting("off"),
            chunk_per_link: setting("off"),
        });
        let (a, b) = (client("192.0.2.1"), client("192.0.2.2"));
        limits.check_open(&a, "L").await.unwrap();
        limits.check_open(&a, "L").await.unwrap();
        let refused = limits.check_open(&a, "L").await.unwrap_err();
        assert_eq!(refused.code(), ErrorCode::RateLimited);
        assert!(matches!(
            refused,
            Error::Client {
                retry_after: Some(1),
                ..
            }
        ));
        // Refused by its own bucket, `a` took nothing from the link's: `b` still gets one.
        limits.check_open(&b, "L").await.unwrap();
        let link = limits.check_open(&b, "L").await.unwrap_err();
        assert!(link.to_string().contains("on this link"), "{link}");
        // Another link is untouched; chunks are not limited at all here.
        limits.check_open(&client("192.0.2.3"), "M").await.unwrap();
        for _ in 0..100 {
            limits.check_chunk(&a, "L").await.unwrap();
        }
    }

    #[test]
    fn retry_after_rounds_up() {
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1001)), 2);
        assert_eq!(retry_after_secs(Duration::from_secs(3)), 3);
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
    }
}
