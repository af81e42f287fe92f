//! libFuzzer entry point for `promql_frontend::fuzz_targets::cache_read`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    promql_frontend::fuzz_targets::cache_read(data);
});
