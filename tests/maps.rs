//! The example maps (palette PNGs in ADE20K ids and colours) run through a model with a class
//! list: ids map to the model's channels, colour-coded copies map through the palette, and an id
//! the model does not know is refused naming its classes (or remapped with --unknown-as).
mod common;
use spadework::backend::{Device, WeightStorage};
use spadework::io::map_png::{self, Pixels};
use spadework::models::SpadeConfig;
use spadework::models::spade::config::ClassInfo;
use spadework::models::spade::input as labels;
use std::path::PathBuf;

fn maps_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("maps")
}

fn landscape_cfg() -> SpadeConfig {
    let classes: Vec<ClassInfo> =
        serde_json::from_str(&std::fs::read_to_string(maps_dir().join("classes.json")).unwrap())
            .unwrap();
    SpadeConfig {
        label_nc: classes.len(),
        contain_dontcare_label: false,
        no_instance: true,
        crop_size: 64,
        ngf: 2,
        classes,
        ..SpadeConfig::nvlabs_defaults()
    }
}

#[test]
fn every_example_map_renders_with_a_class_list_model() {
    let cfg = landscape_cfg();
    let store = spadework::pipelines::spade::SpadePipeline::random_store(&cfg, 3).unwrap();
    let model = spadework::pipelines::spade::SpadePipeline::from_store(
        &store,
        &Device::Cpu,
        WeightStorage::F32,
    )
    .unwrap();
    let mut seen = vec![false; cfg.label_nc];
    let mut n = 0;
    for e in std::fs::read_dir(maps_dir()).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        if !name.ends_with(".png") || name.ends_with("_render.png") {
            continue;
        }
        let map = map_png::read_map_png(&p).unwrap();
        assert!(
            matches!(map.pixels, Pixels::Ids(_)),
            "{name} should be a palette PNG of ids"
        );
        let prepared = labels::prepare(&cfg, &map, &name, None, None).unwrap();
        for &l in &prepared.labels {
            seen[l as usize] = true;
        }
        let (out, (h, w)) = model.render(&prepared, None).unwrap();
        assert_eq!((h, w), (64, 64));
        assert!(out.iter().all(|v| v.is_finite() && v.abs() <= 1.0));
        n += 1;
    }
    assert!(n >= 8, "expected at least 8 example maps, found {n}");
    assert!(
        seen.iter().all(|&s| s),
        "every class appears in some example map: {seen:?}"
    );
}

#[test]
fn colour_coded_copy_gives_the_same_labels_and_unknown_ids_are_named() {
    let cfg = landscape_cfg();
    let map = map_png::read_map_png(&maps_dir().join("lake.png")).unwrap();
    let Pixels::Ids(ids) = &map.pixels else {
        panic!()
    };
    let rgb: Vec<[u8; 3]> = ids
        .iter()
        .map(|&id| cfg.classes.iter().find(|c| c.id == id).unwrap().color)
        .collect();
    let colour = map_png::MapImage {
        width: map.width,
        height: map.height,
        pixels: Pixels::Rgb(rgb),
    };
    let a = labels::prepare(&cfg, &map, "lake.png", None, None).unwrap();
    let b = labels::prepare(&cfg, &colour, "lake-rgb", None, None).unwrap();
    assert_eq!(a.labels, b.labels);

    let mut bad = ids.clone();
    bad[0] = 150; // ADE "flag": not a landscape class
    let bad = map_png::MapImage {
        width: map.width,
        height: map.height,
        pixels: Pixels::Ids(bad),
    };
    let e = labels::prepare(
        &SpadeConfig {
            crop_size: map.width,
            ..cfg.clone()
        },
        &bad,
        "bad.png",
        None,
        None,
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("150") && e.contains("3 sky") && e.contains("--unknown-as"),
        "{e}"
    );
    let ok = labels::prepare(
        &SpadeConfig {
            crop_size: map.width,
            ..cfg.clone()
        },
        &bad,
        "bad.png",
        None,
        Some("grass"),
    )
    .unwrap();
    let grass = cfg.classes.iter().position(|c| c.name == "grass").unwrap() as u32;
    assert_eq!(ok.labels[0], grass);
}

/// The built-in landscape model renders an example map with no `--weights`, and its regions
/// look like their classes: the sky is bluer than the grass, the grass greener than the sky.
#[test]
fn built_in_model_renders_the_example_maps() {
    let dir = common::scratch("builtin");
    let out = dir.join("lake.png");
    let r = std::process::Command::new(env!("CARGO_BIN_EXE_spadework"))
        .args(["render", "--backend", "cpu", "--map"])
        .arg(maps_dir().join("lake.png"))
        .arg("-o")
        .arg(&out)
        .output()
        .unwrap();
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let img = image::open(&out).unwrap().to_rgb8();
    assert_eq!(img.dimensions(), (128, 128));
    // Mean colour of each class region (the map is 256², the output 128²).
    let map = map_png::read_map_png(&maps_dir().join("lake.png")).unwrap();
    let Pixels::Ids(ids) = map.pixels else {
        panic!()
    };
    let mean = |class: u32| {
        let mut s = [0f64; 3];
        let mut n = 0.0;
        for y in 0..128 {
            for x in 0..128 {
                if ids[(2 * y) * 256 + 2 * x] == class {
                    let p = img.get_pixel(x as u32, y as u32);
                    for c in 0..3 {
                        s[c] += p[c] as f64;
                    }
                    n += 1.0;
                }
            }
        }
        assert!(n > 100.0, "class {class} covers {n} pixels");
        s.map(|v| v / n)
    };
    let (sky, grass) = (mean(3), mean(10));
    assert!(sky[2] > grass[2] + 20.0, "sky {sky:?} vs grass {grass:?}");
    assert!(
        grass[1] > grass[2] && grass[1] > grass[0],
        "grass {grass:?}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The built-in model against its PyTorch twin (tools/make_landscape_fixture.py): one held-out
/// map, a given z and, for a texture-field model, the field of seed `field_seed`, on every
/// backend.
#[test]
fn built_in_model_matches_its_pytorch_twin() {
    use spadework::pipelines::spade::{SpadePipeline, ZSource, load_store};
    let case: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(common::fixture("landscape/case.json")).unwrap(),
    )
    .unwrap();
    let store = load_store(None).unwrap();
    let map = map_png::read_map_png(&common::fixture("landscape/map.png")).unwrap();
    let z = spadework::io::npy::read_f32(&common::fixture("landscape/z.npy"))
        .unwrap()
        .1;
    let (_, want) =
        spadework::io::npy::read_f32(&common::fixture("landscape/expected.npy")).unwrap();
    for device in common::devices() {
        let model = SpadePipeline::from_store(&store, &device, WeightStorage::F32).unwrap();
        assert_eq!(
            model.cfg.texture_field,
            case["texture_field"].as_f64(),
            "the fixture was made from another model file: run tools/make_landscape_fixture.py"
        );
        let prepared = labels::prepare(&model.cfg, &map, "map.png", None, None).unwrap();
        let field_seed = case["field_seed"].as_u64().unwrap();
        let (got, _) = model
            .render_seeded(&prepared, Some(&ZSource::Given(z.clone())), field_seed)
            .unwrap();
        let d = common::max_abs_diff(&got, &want);
        assert!(d < 1e-4, "{}: max |diff| {d}", device.describe());
        if model.cfg.texture_field.is_some() {
            // Another field seed changes the texture, not the picture.
            let (other, _) = model
                .render_seeded(&prepared, Some(&ZSource::Given(z.clone())), field_seed + 1)
                .unwrap();
            let d = common::max_abs_diff(&other, &want);
            let mean = other
                .iter()
                .zip(&want)
                .map(|(a, b)| (a - b).abs())
                .sum::<f32>()
                / want.len() as f32;
            assert!(d > 1e-3 && mean < 0.2, "{}: {d} {mean}", device.describe());
        }
    }
}
