//! libFuzzer entry point for `promql_frontend::fuzz_targets::response`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    promql_frontend::fuzz_targets::response(data);
});
