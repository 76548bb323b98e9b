//! Every WGSL file parses and validates with naga, and the generated conv kernels carry the tiles
//! their wrapper dispatches.
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
        // Only the f16-weight kernels need a capability: unpack2x16float (wgpu grants it where
        // the adapter has the SHADER_F16_IN_F32 downlevel flag).
        let caps = if f.to_string_lossy().ends_with("_f16.wgsl") {
            naga::valid::Capabilities::SHADER_FLOAT16_IN_FLOAT32
        } else {
            naga::valid::Capabilities::empty()
        };
        naga::valid::Validator::new(naga::valid::ValidationFlags::all(), caps)
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
fn conv2d_kernels_match_the_wrapper_tiles() {
    use spadework::backend::WeightStorage;
    use spadework::ops::conv2d::{ConvKernel, TILES};
    let gen_src = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/gen_conv2d.py"),
    )
    .unwrap();
    let listed: Vec<String> = TILES.iter().map(|(g, p)| format!("({g}, {p})")).collect();
    assert!(
        gen_src.contains(&format!("TILES = [{}]", listed.join(", "))),
        "tools/gen_conv2d.py TILES differ from src/ops/conv2d.rs TILES {TILES:?}"
    );
    for (t, kind, storage) in TILES.iter().flat_map(|&t| {
        ConvKernel::ALL
            .iter()
            .flat_map(move |&k| [WeightStorage::F32, WeightStorage::F16].map(|s| (t, k, s)))
    }) {
        {
            let name = kind.file(t, storage);
            let src = spadework::backend::gpu::KERNELS
                .iter()
                .find(|(n, _)| *n == name)
                .unwrap_or_else(|| panic!("{name} not registered"))
                .1;
            // Each generator's header names its tile.
            let want = match kind {
                ConvKernel::General => format!(
                    "tile: {} vec4s of output channels x {} output pixels",
                    t.0, t.1
                ),
                ConvKernel::Gemm1x1 => format!(
                    "tile: {} vec4s of\n// output channels x {} consecutive output pixels",
                    t.0, t.1
                ),
                ConvKernel::Row3x3 => format!(
                    "tile: {} vec4s of output channels x {} consecutive output pixels of one",
                    t.0, t.1
                ),
            };
            assert!(
                src.contains(&want),
                "kernels/{name} was generated for another tile ({want})"
            );
            let half = src.contains("array<vec2<u32>>");
            assert_eq!(
                half,
                storage == WeightStorage::F16,
                "kernels/{name} reads weights of the wrong storage"
            );
        }
    }
}
