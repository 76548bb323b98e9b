//! Label-map PNG decoding: an error or a map, within the pixel budget, never a panic.
//! The body lives in `spadework::fuzz_entry` so `cargo test` replays this target's corpus too.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| spadework::fuzz_entry::map_png(data));
