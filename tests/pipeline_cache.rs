//! Compiled pipelines persist across processes where the backend has a pipeline cache (Vulkan):
//! the file is written after work completes, carries a checksum, and a damaged file is ignored.
mod common;
use spadework::Tensor;
use spadework::backend::Device;

fn cache_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(dir)
        .map(|it| {
            it.map(|e| e.unwrap().path())
                .filter(|p| {
                    p.file_name()
                        .unwrap()
                        .to_string_lossy()
                        .starts_with("wgpu_pipeline_cache_")
                })
                .collect()
        })
        .unwrap_or_default()
}

fn relu_once(d: &Device) -> Vec<f32> {
    let x = Tensor::from_vec(d, &[1, 1, 1, 3], vec![-1.0, 0.5, 2.0]).unwrap();
    spadework::ops::relu(&x).unwrap().to_vec().unwrap()
}

#[test]
fn pipeline_cache_is_saved_checksummed_and_survives_damage() {
    // This test binary has one test, so setting the cache dir here races nothing.
    let dir = common::scratch("pipeline_cache");
    // SAFETY: single-threaded at this point (the only test of this binary, before any device).
    unsafe { std::env::set_var("SPADEWORK_CACHE_DIR", &dir) };
    let Some(Device::Gpu(ctx)) = common::gpu() else {
        return;
    };
    let d = Device::Gpu(ctx.clone());
    assert_eq!(relu_once(&d), [0.0, 0.5, 2.0]);
    let files = cache_files(&dir);
    if !ctx
        .device
        .features()
        .contains(wgpu::Features::PIPELINE_CACHE)
    {
        assert!(
            files.is_empty(),
            "{files:?} written without a pipeline cache"
        );
        return;
    }
    assert_eq!(files.len(), 1, "one cache file per adapter: {files:?}");
    let bytes = std::fs::read(&files[0]).unwrap();
    let (sum, data) = bytes.split_at(8);
    assert_eq!(
        u64::from_le_bytes(sum.try_into().unwrap()),
        spadework::backend::fnv1a(data),
        "checksum of {}",
        files[0].display()
    );
    drop(d);
    drop(ctx);
    // A damaged file: a new device starts with an empty cache and still computes, and rewrites it.
    std::fs::write(&files[0], b"not a pipeline cache").unwrap();
    let Some(d) = common::gpu() else { return };
    assert_eq!(relu_once(&d), [0.0, 0.5, 2.0]);
    drop(d);
    let bytes = std::fs::read(&files[0]).unwrap();
    assert_eq!(
        u64::from_le_bytes(bytes[..8].try_into().unwrap()),
        spadework::backend::fnv1a(&bytes[8..]),
        "the damaged file was replaced"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
