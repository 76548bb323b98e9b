//! A safetensors file from anywhere: the lazy store (every tensor decoded), and the Stable
//! Diffusion single-file split and config inference on whatever names and shapes it holds.
//! The body lives in `spadework::fuzz_entry` so `cargo test` replays this target's corpus too.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| spadework::fuzz_entry::safetensors(data));
