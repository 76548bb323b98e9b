//! A safetensors file from anywhere: the lazy store (every tensor decoded), and the Stable
//! Diffusion single-file split and config inference on whatever names and shapes it holds.
#![no_main]
use libfuzzer_sys::fuzz_target;
use spadework::pipelines::single_file::SingleFile;
use spadework::weights::WeightStore;

fuzz_target!(|data: &[u8]| {
    let Ok(store) = WeightStore::from_bytes(data.to_vec(), "fuzz") else {
        return;
    };
    let names: Vec<String> = store.names().map(str::to_owned).collect();
    for n in &names {
        let _ = store.values(n);
    }
    let _ = spadework::pipelines::spade::SpadePipeline::config_of(&store);
    let _ = SingleFile::from_store(store, "fuzz");
});
