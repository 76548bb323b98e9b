//! The text encoders. CLIP against our PyTorch reference (tools/clip_text_reference.py): random
//! weights of tiny configs under the checkpoint's key names, on both backends. BERT (the MiniLM
//! sentence encoder) against transformers (tools/minilm_reference.py): a tiny random model, and
//! the built-in pretrained copy against sentence-transformers' f32 embeddings.
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

mod tokenizer {
    use spadework::models::clip::tokenizer::{ClipTokenizer, MAX_TOKENS};
    use std::io::Read;
    use std::path::{Path, PathBuf};

    struct Case {
        text: String,
        full: Vec<u32>,
        sd1: Vec<u32>,
        sd2: Vec<u32>,
    }

    /// tools/clip_tokenizer_reference.py: transformers' CLIPTokenizer on these prompts.
    fn cases() -> Vec<Case> {
        let v: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(super::common::fixture("clip_tokenizer/cases.json")).unwrap(),
        )
        .unwrap();
        let ids = |v: &serde_json::Value| -> Vec<u32> {
            v.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_u64().unwrap() as u32)
                .collect()
        };
        v["cases"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| Case {
                text: c["text"].as_str().unwrap().to_string(),
                full: ids(&c["ids_untruncated"]),
                sd1: ids(&c["ids_sd1"]),
                sd2: ids(&c["ids_sd2"]),
            })
            .collect()
    }

    fn bpe_gz() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/clip/bpe_simple_vocab_16e6.txt.gz")
    }

    fn tmpdir(name: &str) -> PathBuf {
        super::common::scratch(&format!("tokenizer-{name}"))
    }

    fn check(tok: &ClipTokenizer, pad_sd2: bool, what: &str) {
        for c in cases() {
            let t = tok.encode(&c.text).unwrap();
            let want = if pad_sd2 { &c.sd2 } else { &c.sd1 };
            assert_eq!(&t.ids, want, "{what}: {:?}", c.text);
            // (`ids_untruncated` are SD 1.x's: SD 2.x's `!` pad token splits "!!!" apart.)
            if !pad_sd2 {
                assert_eq!(t.untruncated, c.full.len(), "{what}: {:?}", c.text);
                assert_eq!(t.truncated(), c.full.len() > MAX_TOKENS);
            }
            assert_eq!(t.ids.len(), MAX_TOKENS);
        }
    }

    #[test]
    fn clip_tokenizer_from_openai_merges_matches_transformers() {
        check(
            &ClipTokenizer::from_openai_bpe(&bpe_gz(), "<|endoftext|>").unwrap(),
            false,
            "sd1",
        );
        check(
            &ClipTokenizer::from_openai_bpe(&bpe_gz(), "!").unwrap(),
            true,
            "sd2",
        );
    }

    #[test]
    fn clip_tokenizer_from_a_diffusers_folder_matches_transformers() {
        // tokenizer.json as transformers writes it.
        let mut json = String::new();
        flate2::read::GzDecoder::new(
            std::fs::File::open(super::common::fixture("clip_tokenizer/tokenizer.json.gz"))
                .unwrap(),
        )
        .read_to_string(&mut json)
        .unwrap();
        let fast = tmpdir("fast");
        std::fs::write(fast.join("tokenizer.json"), &json).unwrap();
        check(
            &ClipTokenizer::from_folder(&fast).unwrap(),
            false,
            "tokenizer.json",
        );
        // vocab.json + merges.txt, as released SD 2.x folders hold them, padding with "!".
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        let slow = tmpdir("slow");
        std::fs::write(slow.join("vocab.json"), v["model"]["vocab"].to_string()).unwrap();
        let merges: Vec<String> = v["model"]["merges"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| format!("{} {}", m[0].as_str().unwrap(), m[1].as_str().unwrap()))
            .collect();
        std::fs::write(
            slow.join("merges.txt"),
            format!("#version: 0.2\n{}\n", merges.join("\n")),
        )
        .unwrap();
        std::fs::write(
            slow.join("special_tokens_map.json"),
            r#"{"pad_token": "!"}"#,
        )
        .unwrap();
        check(
            &ClipTokenizer::from_folder(&slow).unwrap(),
            true,
            "vocab.json + merges.txt",
        );
        // A folder without either names what it expected.
        let empty = tmpdir("empty");
        let e = ClipTokenizer::from_folder(&empty)
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("tokenizer.json") && e.contains("merges.txt"),
            "{e}"
        );
        for d in [fast, slow, empty] {
            std::fs::remove_dir_all(d).unwrap();
        }
    }
}

mod bert {
    use super::common;
    use spadework::backend::Device;
    use spadework::models::bert::{BertConfig, BertModel, SentenceEncoder};
    use spadework::weights::store::WeightStore;
    use spadework::weights::vars::Vars;

    fn tiny() -> (WeightStore, BertConfig, Vec<u32>, Vec<bool>) {
        let store = WeightStore::load(&common::fixture("bert/tiny.safetensors")).unwrap();
        let cfg: BertConfig = serde_json::from_str(&store.metadata["bert_config"]).unwrap();
        let ids: Vec<u32> = serde_json::from_str(&store.metadata["input_ids"]).unwrap();
        let mask: Vec<u8> = serde_json::from_str(&store.metadata["attention_mask"]).unwrap();
        (store, cfg, ids, mask.iter().map(|&m| m == 1).collect())
    }

    #[test]
    fn bert_matches_transformers_with_padding() {
        let (store, cfg, ids, mask) = tiny();
        let want = store
            .get(
                "expected.last_hidden_state",
                &[1, ids.len(), cfg.hidden_size],
            )
            .unwrap();
        for d in common::devices() {
            let v = Vars::new(&store, &d);
            let m = BertModel::load(&v, &cfg).unwrap();
            let got = m.forward(&ids, &mask).unwrap();
            assert_eq!(got.shape(), [1, ids.len(), cfg.hidden_size]);
            // Padding positions included: their states depend on the real tokens only.
            let err = common::max_abs_diff(&got.to_vec().unwrap(), &want);
            assert!(err < 1e-4, "{d:?}: max |Δ| {err}");
            // Every tensor of the checkpoint was read.
            assert_eq!(v.unused(), ["expected.last_hidden_state"]);
        }
    }

    #[test]
    fn bert_names_bad_input_and_configs() {
        let (store, cfg, ids, mask) = tiny();
        let m = BertModel::load(&Vars::new(&store, &Device::Cpu), &cfg).unwrap();
        let e = m.forward(&[2, 97, 3], &[true; 3]).unwrap_err().to_string();
        assert!(e.contains("token id 97 at position 1"), "{e}");
        let e = m.forward(&[2; 20], &[true; 20]).unwrap_err().to_string();
        assert!(e.contains("1 to 19 tokens, got 20"), "{e}");
        let e = m.forward(&ids, &[false; 11]).unwrap_err().to_string();
        assert!(e.contains("at least one real token"), "{e}");
        let e = m.forward(&ids, &mask[..3]).unwrap_err().to_string();
        assert!(e.contains("one entry per token (11)"), "{e}");
        for (bad, what) in [
            (
                BertConfig {
                    hidden_act: "relu".into(),
                    ..cfg.clone()
                },
                "hidden_act 'relu'",
            ),
            (
                BertConfig {
                    num_attention_heads: 5,
                    ..cfg.clone()
                },
                "does not divide hidden_size 24",
            ),
            (
                BertConfig {
                    position_embedding_type: "relative_key".into(),
                    ..cfg.clone()
                },
                "relative_key",
            ),
            (
                BertConfig {
                    intermediate_size: 41,
                    ..cfg.clone()
                },
                "encoder.layer.0.intermediate.dense.weight",
            ),
        ] {
            let e = BertModel::load(&Vars::new(&store, &Device::Cpu), &bad)
                .err()
                .unwrap()
                .to_string();
            assert!(e.contains(what), "{e}");
        }
        // transformers' config.json field names; missing fields take BertConfig's defaults.
        let d: BertConfig = serde_json::from_str(r#"{"hidden_size": 384}"#).unwrap();
        assert_eq!(
            (d.hidden_size, d.num_hidden_layers, d.layer_norm_eps),
            (384, 12, 1e-12)
        );
    }

    struct Case {
        text: String,
        ids: Vec<u32>,
        mask: Vec<bool>,
        untruncated: usize,
        pooled: Vec<f32>,
    }

    /// tools/minilm_reference.py fixtures: transformers' tokens, sentence-transformers' f32
    /// embeddings of the real model.
    fn cases() -> (usize, Vec<Case>) {
        let v: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(common::fixture("bert/minilm_cases.json")).unwrap(),
        )
        .unwrap();
        let nums = |v: &serde_json::Value| -> Vec<f64> {
            v.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap())
                .collect()
        };
        let cases = v["cases"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| Case {
                text: c["text"].as_str().unwrap().into(),
                ids: nums(&c["ids"]).iter().map(|&x| x as u32).collect(),
                mask: nums(&c["mask"]).iter().map(|&x| x == 1.0).collect(),
                untruncated: c["untruncated"].as_u64().unwrap() as usize,
                pooled: nums(&c["pooled"]).iter().map(|&x| x as f32).collect(),
            })
            .collect();
        (v["len"].as_u64().unwrap() as usize, cases)
    }

    #[test]
    fn builtin_minilm_matches_sentence_transformers() {
        let (len, cases) = cases();
        for d in common::devices() {
            let enc = SentenceEncoder::builtin(&d).unwrap();
            for c in &cases {
                let t = enc.tokenizer.encode(&c.text, len).unwrap();
                assert_eq!(t.ids, c.ids, "{:?}", c.text);
                assert_eq!(t.mask, c.mask, "{:?}", c.text);
                assert_eq!(t.untruncated, c.untruncated, "{:?}", c.text);
                let e = enc.encode(&c.text, len).unwrap();
                assert_eq!(e.tokens.shape(), [1, len, 384]);
                assert_eq!(e.truncated, c.untruncated > len);
                // The f16 copy against the f32 model: measured 1.0e-4 (tools/minilm_reference.py).
                let err = common::max_abs_diff(&e.pooled, &c.pooled);
                assert!(err < 5e-4, "{d:?} {:?}: max |Δ| {err}", c.text);
                let norm: f32 = e.pooled.iter().map(|v| v * v).sum::<f32>().sqrt();
                assert!((norm - 1.0).abs() < 1e-5, "{norm}");
            }
        }
    }

    #[test]
    fn builtin_minilm_knows_synonyms() {
        // What a pretrained encoder buys: paraphrases land close, different scenes do not.
        let enc = SentenceEncoder::builtin(&Device::Cpu).unwrap();
        let e = |t: &str| enc.encode(t, 32).unwrap().pooled;
        let cos = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>();
        let (sea, ocean, woods) = (
            e("a calm sea at dusk"),
            e("the ocean in the evening"),
            e("a dense forest of pine trees"),
        );
        assert!(
            cos(&sea, &ocean) > cos(&sea, &woods) + 0.2,
            "{} vs {}",
            cos(&sea, &ocean),
            cos(&sea, &woods)
        );
    }
}
