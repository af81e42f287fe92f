# Two entry points: `make demo` runs the frontend in front of a demo Prometheus,
# `make test` installs what the tests need, checks formatting and lints, and runs the tests.
.PHONY: demo test deps lint bench bench-micro fuzz

demo:
	scripts/demo.sh

deps:
	scripts/install-deps.sh

test: deps lint
	cargo test --locked

lint:
	cargo fmt --check
	cargo clippy --all-targets --locked -- -D warnings

# The end-to-end benchmark: release build, generated data, real Prometheus, Redis and
# nginx; writes its section of BENCHMARKS.md. About 33 minutes on 2 cores, half of it
# the cold mix. `BENCH_ONLY=coldmix make bench` (names in benches/e2e.rs) runs and
# rewrites only the scenarios named; `BENCH_ONLY=live` the dashboard at now (~3 min).
bench:
	scripts/install-deps.sh --bench
	cargo bench --locked --bench e2e

bench-micro:
	cargo bench --locked --bench split_merge

# Coverage-guided fuzzing (cargo-fuzz, libFuzzer): 10 minutes per target, two at a time.
fuzz:
	scripts/fuzz.sh 600
