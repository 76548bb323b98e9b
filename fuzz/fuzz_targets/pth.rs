//! The restricted pickle reader on arbitrary bytes, as a state dict and as a training checkpoint
//! (foreign objects kept inert): an error or tensors, never a panic or an unbounded allocation.
#![no_main]
use libfuzzer_sys::fuzz_target;
use spadework::weights::pth::{Objects, load_pth_bytes_with};

fuzz_target!(|data: &[u8]| {
    for objects in [Objects::Refuse, Objects::Inert] {
        if let Ok(tensors) = load_pth_bytes_with(data, "fuzz", objects) {
            for (_, t) in tensors {
                let _ = t.to_f32();
            }
        }
    }
});
