//! The CLIP text encoder against our PyTorch reference (tools/clip_text_reference.py): random
//! weights of tiny configs under the checkpoint's key names, on both backends.
mod common;
use spadework::models::{ClipTextConfig, ClipTextEncoder};
use spadework::weights::store::WeightStore;

fn fixture(name: &str) -> (WeightStore, ClipTextConfig, Vec<u32>) {
    let store =
        WeightStore::load(&common::fixture(&format!("clip_text/{name}.safetensors"))).unwrap();
    let cfg: ClipTextConfig = serde_json::from_str(&store.metadata["config"]).unwrap();
    let ids: Vec<u32> = serde_json::from_str(&store.metadata["input_ids"]).unwrap();
    (store, cfg, ids)
}

#[test]
fn clip_text_encoder_matches_the_pytorch_reference() {
    for name in ["tiny_quick_gelu", "tiny_gelu"] {
        let (store, cfg, ids) = fixture(name);
        let want = store
            .get("expected.last_hidden_state", &[1, ids.len(), cfg.width])
            .unwrap();
        for d in common::devices() {
            let enc = ClipTextEncoder::load(&store, &cfg, &d).unwrap();
            let got = enc.forward(&ids).unwrap();
            assert_eq!(got.shape(), [1, ids.len(), cfg.width]);
            let err = common::max_abs_diff(&got.to_vec().unwrap(), want);
            assert!(err < 2e-5, "{name} on {d:?}: max |Δ| {err}");
        }
    }
}

#[test]
fn clip_text_encoder_names_bad_input() {
    let (store, cfg, _) = fixture("tiny_quick_gelu");
    let enc = ClipTextEncoder::load(&store, &cfg, &spadework::backend::Device::Cpu).unwrap();
    let e = enc.forward(&[1, 2, 97]).unwrap_err().to_string();
    assert!(
        e.contains("token id 97 at position 2") && e.contains("97"),
        "{e}"
    );
    let e = enc.forward(&[1; 17]).unwrap_err().to_string();
    assert!(e.contains("1 to 16 tokens, got 17"), "{e}");
    // A checkpoint for another width names the tensor and both shapes.
    let wide = ClipTextConfig {
        width: 64,
        ..cfg.clone()
    };
    let e = ClipTextEncoder::load(&store, &wide, &spadework::backend::Device::Cpu)
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("text_model.encoder.layers.0.layer_norm1.weight"),
        "{e}"
    );
}
