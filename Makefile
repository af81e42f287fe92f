# Two entry points: `make demo` runs the frontend in front of a demo Prometheus,
# `make test` installs what the tests need and runs them.
.PHONY: demo test deps lint

demo:
	scripts/demo.sh

deps:
	scripts/install-deps.sh

test: deps
	cargo test --locked

lint:
	cargo fmt --check
	cargo clippy --all-targets --locked -- -D warnings
