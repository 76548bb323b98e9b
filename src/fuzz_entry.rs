//! What each fuzz target (`fuzz/fuzz_targets/`) does with its bytes, in one place: the libFuzzer
//! targets call these, and `tests/errors.rs` replays the committed corpora (`fuzz/corpus/`)
//! through them on every `cargo test`. Each returns quietly on an error; a panic is the bug.

use crate::pipelines::single_file::SingleFile;
use crate::weights::WeightStore;
use crate::weights::pth::{Objects, load_pth_bytes_with};

/// The restricted pickle reader, as a state dict and as a training checkpoint (foreign objects
/// kept inert); every tensor it returns converted to f32.
pub fn pth(data: &[u8]) {
    for objects in [Objects::Refuse, Objects::Inert] {
        if let Ok(tensors) = load_pth_bytes_with(data, "fuzz", objects) {
            for (_, t) in tensors {
                let _ = t.to_f32();
            }
        }
    }
}

/// The lazy safetensors store (every tensor decoded), the SPADE config check, and the Stable
/// Diffusion single-file split and config inference on whatever names and shapes it holds.
pub fn safetensors(data: &[u8]) {
    let Ok(store) = WeightStore::from_bytes(data.to_vec(), "fuzz") else {
        return;
    };
    let names: Vec<String> = store.names().map(str::to_owned).collect();
    for n in &names {
        let _ = store.values(n);
    }
    let _ = crate::pipelines::spade::SpadePipeline::config_of(&store);
    let _ = SingleFile::from_store(store, "fuzz");
}

/// Label-map PNG decoding, within the pixel budget.
pub fn map_png(data: &[u8]) {
    let _ = crate::io::map_png::decode_map_png(data);
}

/// Style, init and mask images (every format the `image` crate reads), within the pixel budget.
pub fn image(data: &[u8]) {
    if let Ok(img) = crate::io::image::decode_image(data, "fuzz input") {
        let _ = img.to_rgb8();
    }
}

/// `.npy` arrays (`--z`, `--latents`): an array whose size matches its shape.
pub fn npy(data: &[u8]) {
    if let Ok((shape, values)) = crate::io::npy::parse_f32(data, "fuzz input") {
        assert_eq!(
            shape.iter().product::<usize>(),
            values.len(),
            "npy: shape and data disagree"
        );
    }
}
