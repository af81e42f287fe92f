//! The Redis backend against a real `redis-server`: answers equal Prometheus', a second
//! frontend process sharing the Redis is served from the first one's writes, and Redis
//! dying or restarting never breaks or falsifies an answer.

use std::time::Duration;

use http::Method;

use crate::split_equivalence::compare;
use crate::support::{
    Reply, Supervised, bed, blocking, counting_proxy, form, free_port, probe_status,
    redis_command_calls, redis_config, secs, send, start_frontend, start_redis,
    start_redis_cluster,
};

const H: i64 = 3_600_000;

const EXPRS: &[&str] = &[
    "up",
    "sum by (code) (rate(http_requests_total[5m]))",
    "histogram_quantile(0.9, sum by (le, handler) (rate(request_duration_seconds_bucket[5m])))",
    "avg_over_time(temperature_celsius[10m])",
    "batch_jobs_processed_total",
    "max_over_time(rate(http_requests_total{code=\"500\"}[5m])[30m:1m])",
    "node_memory_free_bytes offset 1h",
    "temperature_celsius - temperature_celsius @ start()",
];

async fn range(base: &str, expr: &str, start: i64, end: i64) -> Reply {
    let qs = form(&[
        ("query", expr),
        ("start", &secs(start)),
        ("end", &secs(end)),
        ("step", "60"),
    ]);
    send(
        Method::GET,
        &format!("{base}/api/v1/query_range?{qs}"),
        &[],
        None,
    )
    .await
}

fn x_cache(r: &Reply) -> String {
    r.x_cache().to_owned()
}

/// The frontend binary with the Redis cache, as a separate process.
fn spawn_binary(listen_port: u16, downstream: &str, redis_port: u16) -> Supervised {
    let log =
        std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("fe-{listen_port}.log"));
    let script_env = [
        ("PROMQL_FRONTEND_LISTEN", format!("127.0.0.1:{listen_port}")),
        ("PROMQL_FRONTEND_DOWNSTREAM_URL", downstream.to_owned()),
        ("PROMQL_FRONTEND_CACHE__BACKEND", "redis".to_owned()),
        (
            "PROMQL_FRONTEND_CACHE__REDIS__URL",
            format!("redis://127.0.0.1:{redis_port}/0"),
        ),
    ];
    let mut args = Vec::new();
    for (k, v) in &script_env {
        args.push(format!("{k}={v}"));
    }
    args.push(env!("CARGO_BIN_EXE_promql-frontend").to_owned());
    let proc = Supervised::start("env", &args, &log, None);
    for _ in 0..200 {
        if probe_status(listen_port, "/-/healthy") == Some(200) {
            return proc;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("frontend binary did not start:\n{}", proc.log());
}

#[tokio::test]
async fn a_second_frontend_process_is_served_from_the_shared_redis() {
    let tb = bed().await;
    let (_redis, redis_port) = blocking(|| start_redis(None)).await;
    let proxy = counting_proxy(&tb.prom_url).await;
    let first = start_frontend(redis_config(&proxy.url, redis_port)).await;
    let (start, end) = (tb.end_ms - 40 * H, tb.end_ms - 2 * H);
    let mut directs = Vec::new();
    let mgets_before = blocking(move || redis_command_calls(redis_port, "mget")).await;
    for expr in EXPRS {
        let direct = range(&tb.prom_url, expr, start, end).await;
        let via = range(&first.url, expr, start, end).await;
        assert!(
            compare(expr, &direct, &via, false).is_none(),
            "cold {expr} through redis differs"
        );
        assert_eq!(x_cache(&via), "miss", "{expr}");
        directs.push((expr, direct));
    }
    // The pieces of one query look up their entries with one MGET.
    let mgets = blocking(move || redis_command_calls(redis_port, "mget")).await - mgets_before;
    let pieces = (end / (24 * H) - start / (24 * H) + 1) as u64;
    assert!(pieces >= 2);
    assert_eq!(
        mgets,
        EXPRS.len() as u64,
        "one MGET per query, not one per piece ({pieces} pieces)"
    );
    // Writes happen after the answer: give them a moment to land.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let port = free_port();
    let proxy_url = proxy.url.clone();
    let _second = blocking(move || spawn_binary(port, &proxy_url, redis_port)).await;
    let second = format!("http://127.0.0.1:{port}");
    let before = proxy.requests();
    for (expr, direct) in &directs {
        let via = range(&second, expr, start, end).await;
        assert!(
            compare(expr, direct, &via, false).is_none(),
            "warm {expr} from redis differs"
        );
        assert_eq!(
            x_cache(&via),
            "hit",
            "{expr} is served from the first frontend's writes"
        );
    }
    assert_eq!(
        proxy.requests(),
        before,
        "the second frontend sent nothing to the querier"
    );
}

#[tokio::test]
async fn redis_dying_and_coming_back() {
    let tb = bed().await;
    let (redis, redis_port) = blocking(|| start_redis(None)).await;
    let mut config = redis_config(&tb.prom_url, redis_port);
    // Exact repeats would be answered from memory: this test is about Redis.
    config.cache.response_capacity_bytes = 0;
    let fe = start_frontend(config).await;
    let (start, end) = (tb.end_ms - 30 * H, tb.end_ms - 3 * H);
    let expr = "sum by (instance) (rate(http_requests_total[5m]))";
    let direct = range(&tb.prom_url, expr, start, end).await;
    range(&fe.url, expr, start, end).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(x_cache(&range(&fe.url, expr, start, end).await), "hit");

    // Redis dies: answers stay correct (misses), within a bound far below any timeout.
    drop(redis);
    for _ in 0..5 {
        let via = tokio::time::timeout(Duration::from_secs(10), range(&fe.url, expr, start, end))
            .await
            .expect("the frontend answers while redis is down");
        assert_eq!(via.status, 200, "{}", via.text());
        assert!(
            compare(expr, &direct, &via, false).is_none(),
            "answer with redis down differs"
        );
        assert_eq!(x_cache(&via), "miss");
    }

    // Redis comes back (empty) on the same port: hits return without a restart.
    let (_redis, _) = blocking(move || start_redis(Some(redis_port))).await;
    let mut recovered = false;
    for _ in 0..50 {
        let via = range(&fe.url, expr, start, end).await;
        assert!(
            compare(expr, &direct, &via, false).is_none(),
            "answer after restart differs"
        );
        if x_cache(&via) == "hit" {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(recovered, "the cache did not recover after redis restarted");
}

/// The `SET` calls the Redis servers on `ports` have seen, once they reach `want` or
/// ten seconds have passed (cache entries are written after the answer is sent).
async fn wait_for_sets(ports: &[u16], want: u64) -> u64 {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let mut sets = 0;
        for &p in ports {
            sets += blocking(move || redis_command_calls(p, "set")).await;
        }
        if sets >= want || std::time::Instant::now() > deadline {
            return sets;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn two_tier_serves_hot_entries_from_memory_when_redis_is_gone() {
    let tb = bed().await;
    let (redis, redis_port) = blocking(|| start_redis(None)).await;
    let mut config = redis_config(&tb.prom_url, redis_port);
    config.cache.two_tier = true;
    let fe = start_frontend(config).await;
    let (start, end) = (tb.end_ms - 30 * H, tb.end_ms - 3 * H);
    let expr = "avg_over_time(temperature_celsius[10m])";
    let direct = range(&tb.prom_url, expr, start, end).await;
    let cold = range(&fe.url, expr, start, end).await;
    assert!(compare(expr, &direct, &cold, false).is_none());
    // 27 hours touch two or three UTC days, depending on the time of day.
    let day = 24 * H;
    let windows = (end.div_euclid(day) - start.div_euclid(day) + 1) as u64;
    // Entries are written in the background, after the answer: wait for them (bounded).
    let sets = wait_for_sets(&[redis_port], windows).await;
    assert_eq!(sets, windows, "every day window written to redis");
    drop(redis);
    let warm = range(&fe.url, expr, start, end).await;
    assert_eq!(
        x_cache(&warm),
        "hit",
        "the memory tier answers without redis"
    );
    assert!(compare(expr, &direct, &warm, false).is_none());
}

#[tokio::test]
async fn redis_cluster_backend() {
    let tb = bed().await;
    let (_nodes, ports) = blocking(start_redis_cluster).await;
    let mut config = redis_config(&tb.prom_url, ports[0]);
    config.cache.redis.cluster = true;
    config.cache.redis.nodes = ports
        .iter()
        .map(|p| format!("redis://127.0.0.1:{p}"))
        .collect();
    config.validate().expect("cluster config is valid");
    let fe = start_frontend(config).await;
    // A long window: its pieces' keys land in different slots, so the one MGET per query
    // spans several nodes.
    let (start, end) = (tb.end_ms - 60 * H, tb.end_ms - 2 * H);
    for expr in EXPRS {
        let direct = range(&tb.prom_url, expr, start, end).await;
        let cold = range(&fe.url, expr, start, end).await;
        assert!(
            compare(expr, &direct, &cold, false).is_none(),
            "cold {expr} through the cluster differs"
        );
        assert_eq!(x_cache(&cold), "miss", "{expr}");
    }
    let sets = wait_for_sets(&ports, EXPRS.len() as u64 * 3).await;
    let mut nodes_with_writes = 0;
    for &p in &ports {
        let n = blocking(move || redis_command_calls(p, "set")).await;
        nodes_with_writes += usize::from(n > 0);
    }
    assert!(
        sets >= EXPRS.len() as u64 * 3,
        "entries were written across the cluster ({sets} SETs)"
    );
    assert!(
        nodes_with_writes >= 2,
        "keys are spread over the cluster's nodes"
    );
    for expr in EXPRS {
        let direct = range(&tb.prom_url, expr, start, end).await;
        let warm = range(&fe.url, expr, start, end).await;
        assert!(
            compare(expr, &direct, &warm, false).is_none(),
            "warm {expr} from the cluster differs"
        );
        assert_eq!(x_cache(&warm), "hit", "{expr}");
    }
}
