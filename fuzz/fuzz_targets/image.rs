//! Style, init and mask images (any format the `image` crate reads, as `open_image`): an error
//! or an image within the pixel budget, never a panic.
//! The body lives in `spadework::fuzz_entry` so `cargo test` replays this target's corpus too.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| spadework::fuzz_entry::image(data));
