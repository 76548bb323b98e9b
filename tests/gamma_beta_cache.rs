//! The γ/β cache: a new z on the same map, and small edits recomputed only around the change,
//! must give the same image as a render from scratch.
mod common;
use spadework::backend::{Device, WeightStorage};
use spadework::models::SpadeConfig;
use spadework::models::spade::input::PreparedMap;
use spadework::pipelines::spade::{SpadePipeline, ZSource};

fn cfg(no_instance: bool) -> SpadeConfig {
    SpadeConfig {
        label_nc: 9,
        contain_dontcare_label: false,
        no_instance,
        crop_size: 64,
        ngf: 8,
        use_vae: true,
        ..SpadeConfig::nvlabs_defaults()
    }
}

fn map(seed: u32) -> Vec<u32> {
    // Horizontal bands with a wavy border, so every level has several classes.
    (0..64 * 64)
        .map(|i| {
            let (x, y) = (i % 64, i / 64);
            ((y + (x * seed as usize / 7) % 5) / 9) as u32 % 9
        })
        .collect()
}

fn render(m: &SpadePipeline, labels: &[u32], seed: u64) -> Vec<f32> {
    let p = PreparedMap {
        h: 64,
        w: 64,
        labels: labels.to_vec(),
        instance: (!m.cfg.no_instance).then(|| labels.to_vec()),
    };
    m.render(&p, Some(&ZSource::Seed(seed))).unwrap().0
}

#[test]
fn cached_gamma_beta_match_a_full_render_after_edits_and_style_changes() {
    for device in common::devices() {
        for no_instance in [true, false] {
            let c = cfg(no_instance);
            let store = spadework::pipelines::spade::SpadePipeline::random_store(&c, 11).unwrap();
            let cached = SpadePipeline::from_store(&store, &device, WeightStorage::F32).unwrap();
            cached.generator.set_gamma_beta_cache(true);
            let fresh =
                SpadePipeline::from_store(&store, &Device::Cpu, WeightStorage::F32).unwrap();
            let mut labels = map(3);
            let check = |labels: &[u32], seed: u64, what: &str| {
                let a = render(&cached, labels, seed);
                let b = render(&fresh, labels, seed);
                let d = common::max_abs_diff(&a, &b);
                assert!(d < 2e-5, "{}, {what}: max |Δ| {d}", device.describe());
            };
            check(&labels, 0, "first render");
            check(&labels, 1, "same map, new z");
            // A brush dab in the middle, one at a corner, one on the border.
            for (cx, cy) in [(30usize, 33usize), (2, 2), (63, 40)] {
                for y in cy.saturating_sub(2)..(cy + 3).min(64) {
                    for x in cx.saturating_sub(2)..(cx + 3).min(64) {
                        labels[y * 64 + x] = 7;
                    }
                }
                check(&labels, 1, &format!("dab at ({cx}, {cy})"));
            }
            // A large edit falls back to a full recompute.
            labels = map(5);
            check(&labels, 2, "new map");
        }
    }
}
