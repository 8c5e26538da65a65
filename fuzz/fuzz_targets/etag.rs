#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| chimney_fuzz::etag(data));
