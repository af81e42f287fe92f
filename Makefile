# Two entry points: `make demo` runs the frontend in front of a demo Prometheus,
# `make test` installs what the tests need, checks formatting and lints, and runs the tests.
.PHONY: demo test deps lint

demo:
	scripts/demo.sh

deps:
	scripts/install-deps.sh

test: deps lint
	cargo test --locked

lint:
	cargo fmt --check
	cargo clippy --all-targets --locked -- -D warnings
