//! Every WGSL file parses and validates with naga.
#[test]
fn every_kernel_validates_with_naga() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("kernels");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "wgsl"))
        .collect();
    files.sort();
    assert_eq!(
        files.len(),
        spadework::backend::gpu::KERNELS.len(),
        "every kernels/*.wgsl must be registered in KERNELS"
    );
    for f in files {
        let src = std::fs::read_to_string(&f).unwrap();
        let module = naga::front::wgsl::parse_str(&src)
            .unwrap_or_else(|e| panic!("{}: {}", f.display(), e.emit_to_string(&src)));
        naga::valid::Validator::new(
            naga::valid::ValidationFlags::all(),
            naga::valid::Capabilities::empty(),
        )
        .validate(&module)
        .unwrap_or_else(|e| panic!("{}: {}", f.display(), e.emit_to_string(&src)));
        assert!(
            !module.entry_points.is_empty(),
            "{} has no entry point",
            f.display()
        );
    }
}

#[test]
fn conv2d_kernel_matches_the_wrapper_tile() {
    use spadework::ops::conv2d::{TILE_CO4, TILE_PIX};
    let src = spadework::backend::gpu::KERNELS
        .iter()
        .find(|(n, _)| *n == "conv2d.wgsl")
        .unwrap()
        .1;
    let want = format!("tile: {TILE_CO4} vec4s of output channels x {TILE_PIX} output pixels");
    assert!(
        src.contains(&want),
        "kernels/conv2d.wgsl was generated for another tile than src/ops/conv2d.rs ({want})"
    );
}
