//! The shared backend: Redis, so that every frontend replica reads what any of them
//! wrote.
//!
//! Built to fail fast: the connection is opened lazily (the frontend starts and serves
//! while Redis is down), reconnects are attempted at most once per `reconnect_backoff`,
//! and the connection manager is configured with one retry and short delays (its
//! defaults block for seconds while Redis is down). The layer additionally bounds every
//! call with its operation timeout. Keys are `pf:<16 hex digits>`; reads use one `MGET`
//! for all keys asked together, writes `SET key value EX ttl` (pipelined when several
//! are written together).
//!
//! Redis Cluster: with `cluster`, the seed `nodes` are used to discover the cluster and
//! commands are routed by slot (an `MGET` over keys in several slots is split by the
//! client and reassembled in order).

use std::time::{Duration, Instant};

use bytes::Bytes;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, FromRedisValue, RedisResult};

use super::backend::{Backend, BackendError, BackendFuture};

/// Key prefix of every entry.
const KEY_PREFIX: &str = "pf:";

/// Options of the Redis backend.
#[derive(Debug, Clone)]
pub struct RedisOptions {
    /// `redis://host:port/db` (or `rediss://`, `redis+unix://`); unused with `cluster`.
    pub url: String,
    /// Talk to a Redis Cluster discovered from `nodes`.
    pub cluster: bool,
    /// Seed nodes of the cluster (`redis://host:port`).
    pub nodes: Vec<String>,
    /// Bound on connecting and on each command.
    pub timeout: Duration,
    /// After a failed connection attempt, wait this long before the next one.
    pub reconnect_backoff: Duration,
}

enum Client {
    Single(redis::Client),
    Cluster(Box<ClusterClient>),
}

#[derive(Clone)]
enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl Conn {
    async fn run<T: FromRedisValue>(&mut self, cmd: &Cmd) -> RedisResult<T> {
        match self {
            Conn::Single(c) => cmd.query_async(c).await,
            Conn::Cluster(c) => cmd.query_async(c).await,
        }
    }
}

/// `SET key value EX ttl`.
fn set_cmd(key: u64, value: &[u8], ttl: Duration) -> Cmd {
    let mut cmd = redis::cmd("SET");
    cmd.arg(RedisBackend::key(key))
        .arg(value)
        .arg("EX")
        .arg(ttl.as_secs().max(1));
    cmd
}

/// A Redis-backed cache.
pub struct RedisBackend {
    client: Client,
    opts: RedisOptions,
    /// An async mutex: concurrent callers wait for a connection attempt in progress
    /// instead of failing while it runs.
    state: tokio::sync::Mutex<ConnState>,
}

struct ConnState {
    conn: Option<Conn>,
    next_attempt: Instant,
}

impl RedisBackend {
    /// Creates the backend; does not connect yet. Fails only for a malformed URL.
    pub fn new(opts: RedisOptions) -> Result<RedisBackend, String> {
        let client = if opts.cluster {
            if opts.nodes.is_empty() {
                return Err("redis cluster needs at least one seed node".into());
            }
            let cluster = ClusterClient::builder(opts.nodes.iter().map(String::as_str))
                .retries(1)
                .min_retry_wait(10)
                .max_retry_wait(100)
                .connection_timeout(opts.timeout)
                .response_timeout(opts.timeout)
                .build()
                .map_err(|e| format!("redis cluster nodes {:?}: {e}", opts.nodes))?;
            Client::Cluster(Box::new(cluster))
        } else {
            Client::Single(
                redis::Client::open(opts.url.as_str())
                    .map_err(|e| format!("redis url {:?}: {e}", opts.url))?,
            )
        };
        Ok(RedisBackend {
            client,
            opts,
            state: tokio::sync::Mutex::new(ConnState {
                conn: None,
                next_attempt: Instant::now(),
            }),
        })
    }

    /// A live connection, or an error right away while in back-off.
    async fn connection(&self) -> Result<Conn, BackendError> {
        let mut st = self.state.lock().await;
        if let Some(c) = &st.conn {
            return Ok(c.clone());
        }
        let now = Instant::now();
        if now < st.next_attempt {
            return Err(BackendError::Failed(
                "redis unreachable (backing off)".into(),
            ));
        }
        st.next_attempt = now + self.opts.reconnect_backoff;
        let connect = async {
            match &self.client {
                Client::Single(client) => {
                    let config = ConnectionManagerConfig::new()
                        .set_number_of_retries(1)
                        .set_min_delay(Duration::from_millis(10))
                        .set_max_delay(Duration::from_millis(100))
                        .set_connection_timeout(Some(self.opts.timeout))
                        .set_response_timeout(Some(self.opts.timeout));
                    ConnectionManager::new_with_config(client.clone(), config)
                        .await
                        .map(Conn::Single)
                }
                Client::Cluster(client) => client.get_async_connection().await.map(Conn::Cluster),
            }
        };
        let conn = tokio::time::timeout(self.opts.timeout, connect)
            .await
            .map_err(|_| BackendError::Timeout(self.opts.timeout))?
            .map_err(|e| BackendError::Failed(format!("connecting to redis: {e}")))?;
        st.conn = Some(conn.clone());
        Ok(conn)
    }

    fn key(k: u64) -> String {
        format!("{KEY_PREFIX}{k:016x}")
    }
}

impl Backend for RedisBackend {
    fn name(&self) -> &'static str {
        "redis"
    }

    fn get_many<'a>(&'a self, keys: &'a [u64]) -> BackendFuture<'a, Vec<Option<Bytes>>> {
        Box::pin(async move {
            if keys.is_empty() {
                return Ok(Vec::new());
            }
            let mut conn = self.connection().await?;
            let names: Vec<String> = keys.iter().map(|&k| Self::key(k)).collect();
            let values: Vec<Option<Vec<u8>>> = conn
                .run(redis::cmd("MGET").arg(&names))
                .await
                .map_err(|e| BackendError::Failed(format!("MGET: {e}")))?;
            if values.len() != keys.len() {
                return Err(BackendError::Failed(format!(
                    "MGET answered {} values for {} keys",
                    values.len(),
                    keys.len()
                )));
            }
            Ok(values.into_iter().map(|v| v.map(Bytes::from)).collect())
        })
    }

    fn set<'a>(&'a self, key: u64, value: Bytes, ttl: Duration) -> BackendFuture<'a, ()> {
        Box::pin(async move {
            let mut conn = self.connection().await?;
            let () = conn
                .run(&set_cmd(key, &value, ttl))
                .await
                .map_err(|e| BackendError::Failed(format!("SET: {e}")))?;
            Ok(())
        })
    }

    fn set_many<'a>(&'a self, items: Vec<(u64, Bytes)>, ttl: Duration) -> BackendFuture<'a, ()> {
        Box::pin(async move {
            let mut conn = self.connection().await?;
            match &mut conn {
                // One pipeline, one round trip.
                Conn::Single(c) => {
                    let mut pipe = redis::pipe();
                    for (key, value) in &items {
                        pipe.add_command(set_cmd(*key, value, ttl)).ignore();
                    }
                    let () = pipe
                        .query_async(c)
                        .await
                        .map_err(|e| BackendError::Failed(format!("pipelined SET: {e}")))?;
                }
                // A pipeline over keys in different slots fails with CROSSSLOT: one SET
                // per key, routed by slot.
                Conn::Cluster(_) => {
                    for (key, value) in &items {
                        let () = conn
                            .run(&set_cmd(*key, value, ttl))
                            .await
                            .map_err(|e| BackendError::Failed(format!("SET: {e}")))?;
                    }
                }
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_urls_are_rejected() {
        let opts = |url: &str| RedisOptions {
            url: url.into(),
            cluster: false,
            nodes: vec![],
            timeout: Duration::from_millis(100),
            reconnect_backoff: Duration::from_secs(1),
        };
        assert!(RedisBackend::new(opts("redis://127.0.0.1:6379/0")).is_ok());
        assert!(RedisBackend::new(opts("http://x")).is_err());
        assert!(RedisBackend::new(opts("not a url")).is_err());
        let cluster = |nodes: Vec<String>| RedisOptions {
            cluster: true,
            nodes,
            ..opts("redis://unused")
        };
        assert!(
            RedisBackend::new(cluster(vec![])).is_err(),
            "a cluster needs seed nodes"
        );
        assert!(RedisBackend::new(cluster(vec!["redis://127.0.0.1:7000".into()])).is_ok());
    }

    #[tokio::test]
    async fn nothing_listening_fails_fast_and_backs_off() {
        // Port 1 on loopback: nothing listens, connections are refused at once.
        let backend = RedisBackend::new(RedisOptions {
            url: "redis://127.0.0.1:1/0".into(),
            cluster: false,
            nodes: vec![],
            timeout: Duration::from_millis(200),
            reconnect_backoff: Duration::from_secs(60),
        })
        .expect("valid url");
        assert!(backend.get_many(&[1]).await.is_err());
        // In back-off, the next call fails without trying to connect.
        match backend.get_many(&[1]).await {
            Err(BackendError::Failed(m)) => assert!(m.contains("backing off"), "{m}"),
            other => panic!("expected a back-off failure, got {other:?}"),
        }
    }
}
