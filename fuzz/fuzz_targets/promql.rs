//! libFuzzer entry point for `promql_frontend::fuzz_targets::promql`.
#![no_main]

libfuzzer_sys::fuzz_target!(
    // libfuzzer-sys aborts on every panic, even one the code catches; the frontend
    // catches panics inside promql-parser (treating them as parse failures), so a hook
    // that only prints one line replaces it: a panic that escapes the target still ends
    // the run (libfuzzer-sys aborts when the unwinding reaches it) and is reported as a
    // crash, with that line just before the report.
    init: std::panic::set_hook(Box::new(|info| eprintln!("panic: {info}"))),
    |data: &[u8]| {
        promql_frontend::fuzz_targets::promql(data);
    }
);
