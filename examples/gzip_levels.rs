//! Size and CPU time of the frontend's gzip at each level, for choosing the level
//! (`encoding::KEPT_LEVEL`, `encoding::FRESH_LEVEL`): `cargo run --release --example gzip_levels -- ANSWER.json`,
//! where ANSWER.json is a query_range answer (BENCHMARKS.md shows how one was made).
//! Prints, per level, the compressed size, its ratio to the input, and the median time
//! of 101 compressions.

use std::io::Write;
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args()
        .nth(1)
        .ok_or("usage: gzip_levels ANSWER.json")?;
    let data = std::fs::read(&path)?;
    println!("{path}: {} bytes", data.len());
    println!("level  bytes   ratio  median ms  MB/s");
    for level in 1..=9 {
        let mut times = Vec::with_capacity(101);
        let mut size = 0;
        for _ in 0..101 {
            let started = Instant::now();
            let mut enc = flate2::write::GzEncoder::new(
                Vec::with_capacity(data.len() / 4),
                flate2::Compression::new(level),
            );
            enc.write_all(&data)?;
            size = enc.finish()?.len();
            times.push(started.elapsed());
        }
        times.sort();
        let median = times[times.len() / 2].as_secs_f64();
        println!(
            "{level:>5}  {size:>6}  {:>5.3}  {:>9.3}  {:>4.0}",
            size as f64 / data.len() as f64,
            median * 1e3,
            data.len() as f64 / median / 1e6
        );
    }
    Ok(())
}
