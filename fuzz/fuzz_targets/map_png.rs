//! Label-map PNG decoding: an error or a map, within the pixel budget, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = spadework::io::map_png::decode_map_png(data);
});
