//! The generated series as state machines stepped from one grid timestamp to the next,
//! so the history written as OpenMetrics and the live exposition come from the same code
//! and the live values continue the history's.

use super::Spec;

/// A tiny deterministic PRNG (SplitMix64); good enough for test data.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn new(seed: u64, stream: u64) -> Rng {
        Rng(seed ^ stream.wrapping_mul(0x9E37_79B9_7F4A_7C15))
    }
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

const HANDLERS: [&str; 3] = ["/api/orders", "/api/users", "/healthz"];
const BUCKETS: [&str; 11] = [
    "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "+Inf",
];
const BUCKET_BOUNDS: [f64; 11] = [
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    f64::INFINITY,
];

/// One metric family: its OpenMetrics name, type and help, and its series.
#[derive(Debug, Clone)]
pub(super) struct Family {
    /// The OpenMetrics family name (a counter's without `_total`).
    pub name: &'static str,
    /// `gauge`, `counter` or `histogram`.
    pub kind: &'static str,
    /// The `# HELP` text.
    pub help: &'static str,
    /// The groups of series in this family, in output order.
    pub groups: Vec<Group>,
}

impl Family {
    /// The name the classic text format declares the family by: a counter's sample
    /// name, otherwise the family name.
    pub fn text_name(&self) -> String {
        match self.kind {
            "counter" => format!("{}_total", self.name),
            _ => self.name.to_owned(),
        }
    }
}

/// Series that share their state (one for most, a histogram's buckets, sum and count
/// together): their names and label sets, and the state that yields their next values.
#[derive(Debug, Clone)]
pub(super) struct Group {
    /// (sample name, label set as written inside the braces), in output order.
    pub series: Vec<(&'static str, String)>,
    state: State,
}

#[derive(Debug, Clone)]
enum State {
    /// `up`: 1 while scraped, 0 while down.
    Up { instance: usize },
    /// A request counter with resets and gaps.
    Requests {
        instance: usize,
        rng: Rng,
        base: f64,
        value: f64,
        prev: i64,
    },
    /// Free memory, a diurnal gauge with gaps.
    Memory { instance: usize, rng: Rng },
    /// A temperature that goes below zero, never absent.
    Temperature { rng: Rng },
    /// A classic histogram: 11 cumulative buckets, sum and count.
    Histogram {
        instance: usize,
        /// The handler's latency scale (times 50 ms).
        scale: f64,
        rng: Rng,
        cum: [f64; 11],
        sum: f64,
        prev: i64,
    },
    /// A counter that exists only from `begin` to `stop`.
    Batch {
        begin: i64,
        stop: i64,
        increment: f64,
        value: f64,
    },
}

fn day_fraction(t: i64) -> f64 {
    (t.rem_euclid(86_400_000) as f64) / 86_400_000.0
}

fn diurnal(t: i64) -> f64 {
    1.0 + 0.6 * (day_fraction(t) * std::f64::consts::TAU).sin()
}

impl Group {
    fn one(name: &'static str, labels: String, state: State) -> Group {
        Group {
            series: vec![(name, labels)],
            state,
        }
    }

    /// Steps the state to the grid timestamp `t` (the one after the previous call's)
    /// and writes each series' value there into `out`; `None`: no sample (target down,
    /// series absent).
    pub fn step(&mut self, spec: &Spec, t: i64, out: &mut [Option<f64>]) {
        match &mut self.state {
            State::Up { instance } => {
                out[0] = Some(if spec.down(*instance, t) { 0.0 } else { 1.0 });
            }
            State::Requests {
                instance,
                rng,
                base,
                value,
                prev,
            } => {
                if spec.restarted(*instance, *prev, t) {
                    *value = 0.0;
                }
                *value += (*base * diurnal(t) * (0.5 + rng.unit())).floor();
                *prev = t;
                out[0] = (!spec.down(*instance, t)).then_some(*value);
            }
            State::Memory { instance, rng } => {
                let v = 4.0e9 + 1.5e9 * diurnal(t) + (rng.unit() * 1.0e8).floor();
                out[0] = (!spec.down(*instance, t)).then_some(v);
            }
            State::Temperature { rng } => {
                let v = -5.0 + 20.0 * day_fraction(t) + rng.unit() * 3.0;
                out[0] = Some((v * 1000.0).round() / 1000.0);
            }
            State::Histogram {
                instance,
                scale,
                rng,
                cum,
                sum,
                prev,
            } => {
                if spec.restarted(*instance, *prev, t) {
                    *cum = [0.0; 11];
                    *sum = 0.0;
                }
                *prev = t;
                let observations = 5 + (rng.unit() * 30.0 * diurnal(t)) as usize;
                for _ in 0..observations {
                    // Exponential latency with a per-handler scale.
                    let v = -(1.0 - rng.unit()).ln() * 0.05 * *scale;
                    *sum += v;
                    for (b, bound) in BUCKET_BOUNDS.iter().enumerate() {
                        if v <= *bound {
                            cum[b] += 1.0;
                        }
                    }
                }
                let up = !spec.down(*instance, t);
                for (slot, count) in out.iter_mut().zip(cum.iter()) {
                    *slot = up.then_some(*count);
                }
                out[11] = up.then_some((*sum * 1e6).round() / 1e6);
                out[12] = up.then_some(cum[10]);
            }
            State::Batch {
                begin,
                stop,
                increment,
                value,
            } => {
                out[0] = if t < *begin || t > *stop {
                    None
                } else {
                    *value += *increment;
                    Some(*value)
                };
            }
        }
    }
}

/// Every family of the data set with its series in their initial state (before the
/// spec's first timestamp).
pub(super) fn families(spec: &Spec) -> Vec<Family> {
    let instance_labels = |i: usize| format!("instance=\"host-{i}:8080\",job=\"api\"");
    let before_start = spec.start_ms() - spec.interval_ms;
    let up = (0..spec.instances)
        .map(|i| Group::one("up", instance_labels(i), State::Up { instance: i }))
        .collect();

    let mut requests = Vec::new();
    for i in 0..spec.instances {
        for (h, handler) in HANDLERS.iter().enumerate() {
            for method in ["GET", "POST"] {
                for code in ["200", "500"] {
                    let rng = Rng::new(
                        spec.seed,
                        (i * 100 + h * 10) as u64
                            + method.len() as u64 * 3
                            + code.as_bytes()[0] as u64,
                    );
                    let base = (if code == "200" { 20.0 } else { 0.4 })
                        * (1.0 + h as f64)
                        * (1.0 + i as f64 / 4.0);
                    let labels = format!(
                        "code=\"{code}\",handler=\"{handler}\",instance=\"host-{i}:8080\",job=\"api\",method=\"{method}\""
                    );
                    requests.push(Group::one(
                        "http_requests_total",
                        labels,
                        State::Requests {
                            instance: i,
                            rng,
                            base,
                            value: 0.0,
                            prev: before_start,
                        },
                    ));
                }
            }
        }
    }

    let memory = (0..spec.instances)
        .map(|i| {
            let rng = Rng::new(spec.seed, 10_000 + i as u64);
            let state = State::Memory { instance: i, rng };
            Group::one("node_memory_free_bytes", instance_labels(i), state)
        })
        .collect();

    let mut temperature = Vec::new();
    for i in 0..spec.instances {
        for sensor in ["inlet", "outlet"] {
            let rng = Rng::new(spec.seed, 20_000 + i as u64 * 7 + sensor.len() as u64);
            let labels = format!("instance=\"host-{i}:8080\",job=\"api\",sensor=\"{sensor}\"");
            temperature.push(Group::one(
                "temperature_celsius",
                labels,
                State::Temperature { rng },
            ));
        }
    }

    let mut histograms = Vec::new();
    for i in 0..spec.instances {
        for (h, handler) in HANDLERS.iter().enumerate() {
            let base = format!("handler=\"{handler}\",instance=\"host-{i}:8080\",job=\"api\"");
            let mut series: Vec<(&'static str, String)> = BUCKETS
                .iter()
                .map(|le| {
                    (
                        "request_duration_seconds_bucket",
                        format!("{base},le=\"{le}\""),
                    )
                })
                .collect();
            series.push(("request_duration_seconds_sum", base.clone()));
            series.push(("request_duration_seconds_count", base));
            histograms.push(Group {
                series,
                state: State::Histogram {
                    instance: i,
                    scale: 1.0 + h as f64 * 2.0,
                    rng: Rng::new(spec.seed, 30_000 + (i * 10 + h) as u64),
                    cum: [0.0; 11],
                    sum: 0.0,
                    prev: before_start,
                },
            });
        }
    }

    let batches = (0..10i64)
        .map(|b| {
            let begin = spec.start_ms() + spec.range_ms * b / 10 + 3_600_000;
            let state = State::Batch {
                begin,
                stop: begin + spec.range_ms / 8,
                increment: 3.0 + (b % 4) as f64,
                value: 0.0,
            };
            let labels = format!("batch=\"b{b}\",job=\"batch\"");
            Group::one("batch_jobs_processed_total", labels, state)
        })
        .collect();

    vec![
        Family {
            name: "up",
            kind: "gauge",
            help: "Whether the target was scraped successfully.",
            groups: up,
        },
        Family {
            name: "http_requests",
            kind: "counter",
            help: "HTTP requests served.",
            groups: requests,
        },
        Family {
            name: "node_memory_free_bytes",
            kind: "gauge",
            help: "Free memory.",
            groups: memory,
        },
        Family {
            name: "temperature_celsius",
            kind: "gauge",
            help: "Sensor temperature; goes below zero.",
            groups: temperature,
        },
        Family {
            name: "request_duration_seconds",
            kind: "histogram",
            help: "Request latency.",
            groups: histograms,
        },
        Family {
            name: "batch_jobs_processed",
            kind: "counter",
            help: "Items processed by short-lived batch jobs.",
            groups: batches,
        },
    ]
}
