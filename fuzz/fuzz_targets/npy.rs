//! `.npy` reading (`--z`, `--latents`): an error or an array whose size matches its shape,
//! never a panic or an allocation the file did not pay for.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok((shape, values)) = spadework::io::npy::parse_f32(data, "fuzz input") {
        assert_eq!(shape.iter().product::<usize>(), values.len());
    }
});
