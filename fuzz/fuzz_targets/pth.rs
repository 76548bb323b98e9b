//! The restricted pickle reader on arbitrary bytes, as a state dict and as a training checkpoint
//! (foreign objects kept inert): an error or tensors, never a panic or an unbounded allocation.
//! The body lives in `spadework::fuzz_entry` so `cargo test` replays this target's corpus too.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| spadework::fuzz_entry::pth(data));
