//! The CLIP text encoder against our PyTorch reference (tools/clip_text_reference.py): random
//! weights of tiny configs under the checkpoint's key names, on both backends.
mod common;
use spadework::backend::{Device, WeightStorage};
use spadework::models::{ClipTextConfig, ClipTextEncoder};
use spadework::weights::store::WeightStore;
use spadework::weights::vars::Vars;

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
            .get(
                "expected.last_hidden_state",
                &[1, ids.len(), cfg.hidden_size],
            )
            .unwrap();
        for d in common::devices() {
            let enc = ClipTextEncoder::load(&Vars::new(&store, &d), &cfg).unwrap();
            let got = enc.forward(&ids).unwrap();
            assert_eq!(got.shape(), [1, ids.len(), cfg.hidden_size]);
            let err = common::max_abs_diff(&got.to_vec().unwrap(), &want);
            assert!(err < 2e-5, "{name} on {d:?}: max |Δ| {err}");
        }
    }
}

#[test]
fn clip_text_encoder_names_bad_input() {
    let (store, cfg, _) = fixture("tiny_quick_gelu");
    let enc = ClipTextEncoder::load(&Vars::new(&store, &Device::Cpu), &cfg).unwrap();
    let e = enc.forward(&[1, 2, 97]).unwrap_err().to_string();
    assert!(
        e.contains("token id 97 at position 2") && e.contains("97"),
        "{e}"
    );
    let e = enc.forward(&[1; 17]).unwrap_err().to_string();
    assert!(e.contains("1 to 16 tokens, got 17"), "{e}");
    // A checkpoint for another width names the tensor and both shapes.
    let wide = ClipTextConfig {
        hidden_size: 64,
        ..cfg.clone()
    };
    let e = ClipTextEncoder::load(&Vars::new(&store, &Device::Cpu), &wide)
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("text_model.encoder.layers.0.layer_norm1.weight"),
        "{e}"
    );
}

#[test]
fn clip_text_config_reads_a_transformers_config_json() {
    // Stable Diffusion 1.5's text_encoder/config.json as transformers writes it (fields this
    // model does not need are ignored).
    let sd15 = r#"{"architectures": ["CLIPTextModel"], "attention_dropout": 0.0,
        "bos_token_id": 0, "dropout": 0.0, "eos_token_id": 2, "hidden_act": "quick_gelu",
        "hidden_size": 768, "initializer_factor": 1.0, "initializer_range": 0.02,
        "intermediate_size": 3072, "layer_norm_eps": 1e-05, "max_position_embeddings": 77,
        "model_type": "clip_text_model", "num_attention_heads": 12, "num_hidden_layers": 12,
        "pad_token_id": 1, "projection_dim": 768, "torch_dtype": "float32",
        "transformers_version": "4.22.0.dev0", "vocab_size": 49408}"#;
    let cfg: ClipTextConfig = serde_json::from_str(sd15).unwrap();
    assert_eq!(cfg, ClipTextConfig::vit_l14());
    // Missing fields take CLIPTextConfig's defaults.
    let d: ClipTextConfig = serde_json::from_str("{}").unwrap();
    assert_eq!(
        (
            d.hidden_size,
            d.intermediate_size,
            d.num_attention_heads,
            d.hidden_act.as_str()
        ),
        (512, 2048, 8, "quick_gelu")
    );
    // An activation the model does not have is named.
    let relu = ClipTextConfig {
        hidden_act: "relu".into(),
        ..d
    };
    let e = ClipTextEncoder::load(&Vars::random(1, &Device::Cpu), &relu)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("hidden_act 'relu'"), "{e}");
}

#[test]
fn clip_text_encoder_reads_every_tensor_of_its_checkpoint() {
    let (store, cfg, _) = fixture("tiny_gelu");
    let v = Vars::new(&store, &Device::Cpu).with_storage(WeightStorage::F32);
    ClipTextEncoder::load(&v, &cfg).unwrap();
    // The only tensor left is the fixture's expected output.
    assert_eq!(v.unused(), ["expected.last_hidden_state"]);
    assert!(v.pp("text_model").finish("").is_ok());
}
