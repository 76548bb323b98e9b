//! Style, init and mask images (any format the `image` crate reads, as `open_image`): an error
//! or an image within the pixel budget, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(img) = spadework::io::image::decode_image(data, "fuzz input") {
        let _ = img.to_rgb8();
    }
});
