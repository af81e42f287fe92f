//! Coalescing of identical in-flight requests: the first request with a key (the
//! leader) goes to the querier; requests with the same key that arrive while it is in
//! flight (followers) wait for its outcome instead of sending their own.
//!
//! The leader publishes either a shared answer or nothing. Nothing — the leader's
//! client went away, the querier could not be reached, the answer was too large to
//! share — releases the followers, each of which then asks the querier itself (not
//! coalesced again, so one failure costs each follower at most one request of its own
//! and nobody waits for a second leader). The key's slot is freed when the leader
//! finishes or is dropped, whichever comes first, so a failure never poisons later
//! requests.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

/// What a leader hands its followers.
type Slot<T> = watch::Receiver<Option<Arc<T>>>;

/// The in-flight requests of one kind, by key.
pub struct Inflight<T> {
    slots: Mutex<HashMap<u64, (String, Slot<T>)>>,
}

impl<T> Default for Inflight<T> {
    fn default() -> Self {
        Inflight {
            slots: Mutex::new(HashMap::new()),
        }
    }
}

/// A request's role for its key.
pub enum Role<T> {
    /// Go to the querier, then [`Leader::publish`] (or drop to release the followers).
    Leader(Leader<T>),
    /// Wait with [`Follower::wait`].
    Follower(Follower<T>),
    /// Another key with the same hash is in flight: go alone.
    Alone,
}

/// The request that asks the querier for everyone with its key.
pub struct Leader<T> {
    inflight: Arc<Inflight<T>>,
    hash: u64,
    tx: Option<watch::Sender<Option<Arc<T>>>>,
}

/// A request waiting for its leader.
pub struct Follower<T> {
    rx: Slot<T>,
}

impl<T> Inflight<T> {
    /// The number of keys in flight.
    pub fn len(&self) -> usize {
        self.slots.lock().map_or(0, |s| s.len())
    }

    /// Whether no key is in flight.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Joins the requests in flight for `key` (whose hash is `hash`), or leads them.
    pub fn join(self: &Arc<Self>, key: &str, hash: u64) -> Role<T> {
        let Ok(mut slots) = self.slots.lock() else {
            return Role::Alone;
        };
        if let Some((full, rx)) = slots.get(&hash) {
            if full != key {
                return Role::Alone;
            }
            return Role::Follower(Follower { rx: rx.clone() });
        }
        let (tx, rx) = watch::channel(None);
        slots.insert(hash, (key.to_owned(), rx));
        Role::Leader(Leader {
            inflight: self.clone(),
            hash,
            tx: Some(tx),
        })
    }

    fn release(&self, hash: u64) {
        if let Ok(mut slots) = self.slots.lock() {
            slots.remove(&hash);
        }
    }
}

impl<T> Leader<T> {
    /// Hands `value` to every follower and frees the key.
    pub fn publish(mut self, value: Arc<T>) {
        self.inflight.release(self.hash);
        if let Some(tx) = self.tx.take() {
            tx.send_replace(Some(value));
        }
    }
}

impl<T> Drop for Leader<T> {
    fn drop(&mut self) {
        if self.tx.is_some() {
            // Freed before the sender goes, so a released follower that retries never
            // finds the stale slot.
            self.inflight.release(self.hash);
        }
    }
}

impl<T> Follower<T> {
    /// The leader's published value, or `None` when the leader ended without one.
    pub async fn wait(mut self) -> Option<Arc<T>> {
        match self.rx.wait_for(Option::is_some).await {
            Ok(v) => v.clone(),
            Err(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn followers_get_the_leaders_value_and_the_key_is_freed() {
        let inflight = Arc::new(Inflight::<u32>::default());
        let Role::Leader(leader) = inflight.join("k", 1) else {
            panic!("the first request leads");
        };
        let Role::Follower(f1) = inflight.join("k", 1) else {
            panic!("the second follows");
        };
        let Role::Follower(f2) = inflight.join("k", 1) else {
            panic!("the third follows");
        };
        assert!(
            matches!(inflight.join("other", 1), Role::Alone),
            "same hash, other key: alone"
        );
        leader.publish(Arc::new(7));
        assert_eq!(f1.wait().await.as_deref(), Some(&7));
        assert_eq!(f2.wait().await.as_deref(), Some(&7));
        assert!(inflight.is_empty());
        assert!(matches!(inflight.join("k", 1), Role::Leader(_)));
    }

    #[tokio::test]
    async fn a_dropped_leader_releases_its_followers() {
        let inflight = Arc::new(Inflight::<u32>::default());
        let Role::Leader(leader) = inflight.join("k", 1) else {
            panic!("the first request leads");
        };
        let Role::Follower(f) = inflight.join("k", 1) else {
            panic!("the second follows");
        };
        drop(leader);
        assert_eq!(f.wait().await, None);
        assert!(inflight.is_empty(), "the failed key is not kept");
        assert!(matches!(inflight.join("k", 1), Role::Leader(_)));
    }
}
