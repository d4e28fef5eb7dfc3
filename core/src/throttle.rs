//! Bounds on sign-in work (invariant 8: no input takes the server down).
//!
//! * [`SignInThrottle`] counts failed sign-ins per client address and per user name
//!   in a sliding window; past the limit, further attempts are refused with the time
//!   to wait, before any password is hashed. An attempt is charged when it starts
//!   (so a burst of concurrent guesses cannot all slip in under the limit) and
//!   refunded when it succeeds; a success also clears the name's count. The tables
//!   live in memory and hold at most [`MAX_TRACKED_KEYS`] keys each, so a flood of
//!   random names cannot grow them without bound: stale keys are pruned first, then
//!   the key idle the longest is forgotten.
//! * [`HashLimiter`] lets only `max_concurrent_hashes` argon2 computations run at once,
//!   each in memory that is allocated once and reused (argon2id needs ~19 MiB per
//!   hash), so a flood of sign-ins costs waiting futures, not hundreds of megabytes.

use crate::config::AuthConfig;
use argon2::Block;
use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The most addresses, and separately the most names, whose failures are remembered.
pub const MAX_TRACKED_KEYS: usize = 10_000;
/// How long a sign-in waits for a free password hasher before it is told to retry.
pub const HASH_WAIT: Duration = Duration::from_secs(5);
/// The longest user name worth remembering; longer names cannot exist.
const MAX_NAME_KEY: usize = 64;
/// Stored hashes asking for more than this many KiB of memory are not computed.
const MAX_HASH_BLOCKS: usize = 256 * 1024;

/// Both sign-in guards, built from `[auth]` in the configuration.
#[derive(Debug)]
pub struct SignInGuard {
    pub throttle: SignInThrottle,
    pub hashes: HashLimiter,
}

impl SignInGuard {
    pub fn new(config: &AuthConfig) -> Self {
        Self {
            throttle: SignInThrottle::new(config),
            hashes: HashLimiter::new(config.max_concurrent_hashes, HASH_WAIT),
        }
    }
}

/// Failed sign-ins per address and per name, in a sliding window.
#[derive(Debug)]
pub struct SignInThrottle {
    per_address: usize,
    per_name: usize,
    window: Duration,
    max_keys: usize,
    tables: Mutex<Tables>,
}

#[derive(Debug, Default)]
struct Tables {
    addresses: Failures<IpAddr>,
    names: Failures<String>,
}

/// A refused attempt: how long until the next one may be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryAfter(pub Duration);

impl RetryAfter {
    /// Whole seconds, rounded up, at least one (the `Retry-After` header's value).
    pub fn secs(self) -> u64 {
        let d = self.0;
        (d.as_secs() + u64::from(d.subsec_nanos() > 0)).max(1)
    }

    /// "5 seconds", "4 minutes": the wait as a person reads it.
    pub fn human(self) -> String {
        let secs = self.secs();
        if secs <= 90 {
            format!("{secs} second{}", if secs == 1 { "" } else { "s" })
        } else {
            format!("{} minutes", secs.div_ceil(60))
        }
    }
}

impl SignInThrottle {
    pub fn new(config: &AuthConfig) -> Self {
        Self::with_capacity(config, MAX_TRACKED_KEYS)
    }

    /// A throttle remembering at most `max_keys` addresses and `max_keys` names.
    pub fn with_capacity(config: &AuthConfig, max_keys: usize) -> Self {
        let limit = |n: u32| usize::try_from(n).unwrap_or(usize::MAX);
        Self {
            per_address: limit(config.max_failures_per_address),
            per_name: limit(config.max_failures_per_name),
            window: Duration::from_secs(config.failure_window_secs),
            max_keys: max_keys.max(1),
            tables: Mutex::default(),
        }
    }

    /// Starts a sign-in from `address` (if known) for `name` (if the attempt names a
    /// user), or says how long to wait (the longer wait when both are at their limit). The attempt counts as a failure unless
    /// [`Attempt::succeeded`] or [`Attempt::not_counted`] is called.
    pub fn begin(
        &self,
        address: Option<IpAddr>,
        name: Option<&str>,
    ) -> Result<Attempt<'_>, RetryAfter> {
        self.begin_at(address, name, Instant::now())
    }

    fn begin_at(
        &self,
        address: Option<IpAddr>,
        name: Option<&str>,
        now: Instant,
    ) -> Result<Attempt<'_>, RetryAfter> {
        // A limit of 0 turns that count off.
        let address = address.filter(|_| self.per_address > 0).map(address_key);
        let name = name.filter(|_| self.per_name > 0).map(name_key);
        let mut tables = self.lock();
        let waits = [
            address.and_then(|a| {
                tables
                    .addresses
                    .wait(&a, self.per_address, self.window, now)
            }),
            name.as_ref()
                .and_then(|n| tables.names.wait(n, self.per_name, self.window, now)),
        ];
        if let Some(longest) = waits.into_iter().flatten().max() {
            return Err(RetryAfter(longest));
        }
        if let Some(a) = address {
            tables.addresses.charge(a, now, self.window, self.max_keys);
        }
        if let Some(n) = &name {
            tables
                .names
                .charge(n.clone(), now, self.window, self.max_keys);
        }
        Ok(Attempt {
            throttle: self,
            address,
            name,
            at: now,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Tables> {
        // The tables stay consistent whatever panicked while holding them.
        self.tables.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// How many keys each table holds now (addresses, names).
    pub fn tracked(&self) -> (usize, usize) {
        let tables = self.lock();
        (tables.addresses.map.len(), tables.names.map.len())
    }
}

/// A sign-in in progress; dropping it leaves it counted as a failure.
#[derive(Debug)]
#[must_use = "an attempt counts as failed unless it is marked otherwise"]
pub struct Attempt<'a> {
    throttle: &'a SignInThrottle,
    address: Option<IpAddr>,
    name: Option<String>,
    at: Instant,
}

impl Attempt<'_> {
    /// The sign-in worked: it is not a failure, and the name's count starts over.
    pub fn succeeded(self) {
        let mut tables = self.throttle.lock();
        if let Some(a) = &self.address {
            tables.addresses.refund(a, self.at);
        }
        if let Some(n) = &self.name {
            tables.names.map.remove(n);
        }
    }

    /// Nothing was checked (the server was busy or failed): do not count it.
    pub fn not_counted(self) {
        let mut tables = self.throttle.lock();
        if let Some(a) = &self.address {
            tables.addresses.refund(a, self.at);
        }
        if let Some(n) = &self.name {
            tables.names.refund(n, self.at);
        }
    }
}

/// When each key failed recently, oldest first (at most its limit of entries).
#[derive(Debug)]
struct Failures<K> {
    map: HashMap<K, VecDeque<Instant>>,
}

impl<K> Default for Failures<K> {
    fn default() -> Self {
        Self {
            map: HashMap::new(),
        }
    }
}

impl<K: Hash + Eq + Clone> Failures<K> {
    /// How long `key` must wait before another attempt, if it is at its limit.
    fn wait(&mut self, key: &K, limit: usize, window: Duration, now: Instant) -> Option<Duration> {
        let times = self.map.get_mut(key)?;
        while times
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= window)
        {
            times.pop_front();
        }
        if times.is_empty() {
            self.map.remove(key);
            return None;
        }
        if times.len() < limit {
            return None;
        }
        // The attempt that brings the count back under the limit ages out first.
        let oldest_counted = times[times.len() - limit];
        Some((oldest_counted + window).saturating_duration_since(now))
    }

    fn charge(&mut self, key: K, now: Instant, window: Duration, max_keys: usize) {
        if !self.map.contains_key(&key) && self.map.len() >= max_keys {
            self.map.retain(|_, times| {
                times
                    .back()
                    .is_some_and(|t| now.saturating_duration_since(*t) < window)
            });
            if self.map.len() >= max_keys {
                let idlest = self
                    .map
                    .iter()
                    .min_by_key(|(_, times)| times.back().copied())
                    .map(|(k, _)| k.clone());
                if let Some(k) = idlest {
                    self.map.remove(&k);
                }
            }
        }
        self.map.entry(key).or_default().push_back(now);
    }

    fn refund(&mut self, key: &K, at: Instant) {
        if let Some(times) = self.map.get_mut(key) {
            if let Some(i) = times.iter().rposition(|t| *t == at) {
                times.remove(i);
            }
            if times.is_empty() {
                self.map.remove(key);
            }
        }
    }
}

/// IPv6 clients are counted per /64, the block one subscriber usually holds; an
/// IPv4-mapped address counts as the IPv4 address.
fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

fn name_key(name: &str) -> String {
    let mut end = name.len().min(MAX_NAME_KEY);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    name[..end].to_owned()
}

/// At most `max` password hashes at once, each in reused memory.
#[derive(Clone)]
pub struct HashLimiter {
    permits: Arc<Semaphore>,
    spare: Arc<Mutex<Vec<Vec<Block>>>>,
    wait: Duration,
}

impl std::fmt::Debug for HashLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HashLimiter")
            .field("available", &self.permits.available_permits())
            .field("wait", &self.wait)
            .finish_non_exhaustive()
    }
}

impl HashLimiter {
    /// `max` hashes at once (at least one); a caller waits up to `wait` for its turn.
    pub fn new(max: u32, wait: Duration) -> Self {
        let max = usize::try_from(max.max(1)).unwrap_or(1);
        Self {
            permits: Arc::new(Semaphore::new(max)),
            spare: Arc::default(),
            wait,
        }
    }

    /// A turn to hash a password, or `None` when none came free within the wait
    /// (the server is busy: answer "retry in a few seconds").
    pub async fn acquire(&self) -> Option<HashPermit> {
        let permit = tokio::time::timeout(self.wait, self.permits.clone().acquire_owned())
            .await
            .ok()?
            .ok()?;
        let memory = self
            .spare
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop()
            .unwrap_or_default();
        Some(HashPermit {
            _permit: permit,
            memory,
            spare: self.spare.clone(),
        })
    }

    /// Hashes that may start right now.
    pub fn available(&self) -> usize {
        self.permits.available_permits()
    }
}

/// One turn to hash a password, with the memory to do it in. Move it into the
/// blocking task that hashes, so the turn lasts as long as the work, even when the
/// request that asked for it has gone.
pub struct HashPermit {
    _permit: OwnedSemaphorePermit,
    memory: Vec<Block>,
    spare: Arc<Mutex<Vec<Vec<Block>>>>,
}

impl std::fmt::Debug for HashPermit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HashPermit")
            .field("memory_blocks", &self.memory.len())
            .finish()
    }
}

impl HashPermit {
    /// `blocks` KiB-blocks of working memory for argon2, or `None` if a hash asks
    /// for an unreasonable amount (a stored hash is never trusted that far).
    pub fn memory(&mut self, blocks: usize) -> Option<&mut [Block]> {
        if blocks > MAX_HASH_BLOCKS {
            return None;
        }
        if self.memory.len() < blocks {
            self.memory.resize(blocks, Block::default());
        }
        Some(&mut self.memory[..blocks])
    }
}

impl Drop for HashPermit {
    fn drop(&mut self) {
        // What argon2 leaves behind is derived from a password: wipe it first.
        self.memory.fill(Block::default());
        let memory = std::mem::take(&mut self.memory);
        if !memory.is_empty() {
            self.spare
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(memory);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn config(per_address: u32, per_name: u32) -> AuthConfig {
        AuthConfig {
            max_failures_per_address: per_address,
            max_failures_per_name: per_name,
            failure_window_secs: 60,
            max_concurrent_hashes: 2,
            ..AuthConfig::default()
        }
    }

    const HOME: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));

    #[test]
    fn a_name_is_refused_after_its_limit_until_the_oldest_failure_ages_out() {
        let t = SignInThrottle::new(&config(100, 3));
        let start = Instant::now();
        for i in 0..3 {
            drop(
                t.begin_at(Some(HOME), Some("ana"), start + Duration::from_secs(i))
                    .unwrap(),
            );
        }
        let later = start + Duration::from_secs(10);
        let refused = t.begin_at(Some(HOME), Some("ana"), later).unwrap_err();
        assert_eq!(refused, RetryAfter(Duration::from_secs(50)));
        assert_eq!(refused.secs(), 50);
        assert_eq!(refused.human(), "50 seconds");
        assert!(
            t.begin_at(Some(HOME), Some("bo"), later).is_ok(),
            "other names still sign in"
        );
        assert!(
            t.begin_at(Some(HOME), Some("ana"), start + Duration::from_secs(60))
                .is_ok(),
            "the first failure has aged out"
        );
    }

    #[test]
    fn an_address_is_refused_after_its_limit_whatever_the_names() {
        let t = SignInThrottle::new(&config(3, 100));
        let now = Instant::now();
        for name in ["a", "b", "c"] {
            drop(t.begin_at(Some(HOME), Some(name), now).unwrap());
        }
        assert!(t.begin_at(Some(HOME), Some("d"), now).is_err());
        assert!(
            t.begin_at(Some(HOME), None, now).is_err(),
            "token sign-ins too"
        );
        let elsewhere = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));
        assert!(t.begin_at(Some(elsewhere), Some("d"), now).is_ok());
        assert!(
            t.begin_at(None, Some("e"), now).is_ok(),
            "no address: only the name counts"
        );
    }

    #[test]
    fn a_success_clears_the_names_count_and_is_not_a_failure_of_the_address() {
        let t = SignInThrottle::new(&config(3, 3));
        let now = Instant::now();
        drop(t.begin_at(Some(HOME), Some("ana"), now).unwrap());
        drop(t.begin_at(Some(HOME), Some("ana"), now).unwrap());
        t.begin_at(Some(HOME), Some("ana"), now)
            .unwrap()
            .succeeded();
        // Three more for the name are allowed again; the address has two failures.
        drop(t.begin_at(None, Some("ana"), now).unwrap());
        drop(t.begin_at(None, Some("ana"), now).unwrap());
        drop(t.begin_at(None, Some("ana"), now).unwrap());
        assert!(t.begin_at(None, Some("ana"), now).is_err());
        t.begin_at(Some(HOME), Some("bo"), now)
            .unwrap()
            .not_counted();
        drop(t.begin_at(Some(HOME), Some("cy"), now).unwrap());
        assert!(
            t.begin_at(Some(HOME), Some("dee"), now).is_err(),
            "two failures, one uncounted attempt, one failure: the address is at 3"
        );
    }

    #[test]
    fn concurrent_attempts_are_charged_before_they_finish() {
        let t = SignInThrottle::new(&config(100, 2));
        let now = Instant::now();
        let first = t.begin_at(Some(HOME), Some("ana"), now).unwrap();
        let second = t.begin_at(Some(HOME), Some("ana"), now).unwrap();
        assert!(
            t.begin_at(Some(HOME), Some("ana"), now).is_err(),
            "two are in flight"
        );
        drop((first, second));
    }

    #[test]
    fn a_flood_of_random_names_stays_within_the_capacity() {
        let t = SignInThrottle::with_capacity(&config(u32::MAX, 10), 100);
        let now = Instant::now();
        drop(t.begin_at(Some(HOME), Some("target"), now).unwrap());
        for i in 0..10_000 {
            drop(
                t.begin_at(
                    Some(HOME),
                    Some(&format!("random-{i}")),
                    now + Duration::from_millis(i),
                )
                .unwrap(),
            );
        }
        assert_eq!(t.tracked(), (1, 100));
    }

    #[test]
    fn ipv6_clients_count_per_64_and_mapped_ipv4_as_ipv4() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        assert_eq!(address_key(a), address_key(b));
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(address_key(mapped), HOME);
        assert_eq!(name_key(&"é".repeat(40)).len(), 64);
    }

    #[test]
    fn waits_read_as_seconds_then_minutes() {
        assert_eq!(RetryAfter(Duration::from_millis(10)).secs(), 1);
        assert_eq!(RetryAfter(Duration::from_millis(1500)).human(), "2 seconds");
        assert_eq!(RetryAfter(Duration::from_secs(1)).human(), "1 second");
        assert_eq!(RetryAfter(Duration::from_secs(299)).human(), "5 minutes");
    }

    #[tokio::test]
    async fn only_max_hashes_run_at_once_and_their_memory_is_reused() {
        let limiter = HashLimiter::new(2, Duration::from_millis(50));
        let mut first = limiter.acquire().await.unwrap();
        let second = limiter.acquire().await.unwrap();
        assert_eq!(limiter.available(), 0);
        assert!(
            limiter.acquire().await.is_none(),
            "a third waits, then gives up"
        );
        first.memory(8).unwrap()[0] = {
            let mut b = Block::default();
            b.as_mut()[0] = 7;
            b
        };
        assert!(first.memory(MAX_HASH_BLOCKS + 1).is_none());
        drop(first);
        let mut again = limiter.acquire().await.unwrap();
        assert_eq!(
            format!("{again:?}"),
            "HashPermit { memory_blocks: 8 }",
            "the freed memory came back"
        );
        assert_eq!(again.memory(8).unwrap()[0].as_ref()[0], 0, "and was wiped");
        drop((second, again));
        assert_eq!(limiter.available(), 2);
    }
}
