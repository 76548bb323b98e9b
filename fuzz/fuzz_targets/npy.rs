//! `.npy` reading (`--z`, `--latents`): an error or an array whose size matches its shape,
//! never a panic or an allocation the file did not pay for.
//! The body lives in `spadework::fuzz_entry` so `cargo test` replays this target's corpus too.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| spadework::fuzz_entry::npy(data));
