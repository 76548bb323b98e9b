//! Stable Diffusion's VAE against diffusers' `AutoencoderKL` (tools/vae_reference.py): tiny
//! configs with random weights under diffusers' key names, on both backends.
mod common;
use spadework::backend::Device;
use spadework::models::vae::{AutoencoderKL, AutoencoderKLConfig, Tiling};
use spadework::tensor::Tensor;
use spadework::weights::store::WeightStore;
use spadework::weights::vars::Vars;

struct Fixture {
    cfg: AutoencoderKLConfig,
    weights: WeightStore,
    io: WeightStore,
}

fn fixture(name: &str) -> Fixture {
    let dir = common::fixture(&format!("vae/{name}"));
    let cfg = std::fs::read_to_string(dir.join("config.json")).unwrap();
    Fixture {
        cfg: serde_json::from_str(&cfg).unwrap(),
        weights: WeightStore::load(&dir.join("diffusion_pytorch_model.safetensors")).unwrap(),
        io: WeightStore::load(&dir.join("io.safetensors")).unwrap(),
    }
}

fn input(io: &WeightStore, name: &str, d: &Device) -> Tensor {
    let shape = io.shape(name).unwrap().to_vec();
    Tensor::from_vec(d, &shape, io.values(name).unwrap().into_owned()).unwrap()
}

/// max |Δ| / max |expected| of `got` against the fixture's `name`.
fn rel_err(io: &WeightStore, name: &str, got: &Tensor) -> f32 {
    assert_eq!(got.shape(), io.shape(name).unwrap(), "{name}");
    let want = io.values(name).unwrap();
    let scale = want.iter().fold(0f32, |m, x| m.max(x.abs()));
    common::max_abs_diff(&got.to_vec().unwrap(), &want) / scale
}

fn load(f: &Fixture, d: &Device) -> AutoencoderKL {
    AutoencoderKL::load(&Vars::new(&f.weights, d), &f.cfg).unwrap()
}

fn check(name: &str) {
    let f = fixture(name);
    for d in common::devices() {
        let vae = load(&f, &d);
        let post = vae.encode(&input(&f.io, "image", &d)).unwrap();
        let sample = post.sample(&input(&f.io, "noise", &d)).unwrap();
        let decoded = vae.decode(&input(&f.io, "latents", &d)).unwrap();
        let tile = f.io.values("tile_latent_min_size").unwrap()[0] as usize;
        let overlap = f.io.values("tile_overlap_factor").unwrap()[0];
        let big = input(&f.io, "tiled_latents", &d);
        let tiled = vae.decode_tiled(&big, tile, overlap).unwrap();
        // The automatic choice with the same tile size is the same decode.
        let chosen = vae
            .decode_with(&big, Tiling::Tiles { tile, overlap })
            .unwrap();
        assert_eq!(tiled.to_vec().unwrap(), chosen.to_vec().unwrap());
        for (what, got) in [
            ("mean", post.mode()),
            ("logvar", &post.logvar),
            ("sample", &sample),
            ("decoded", &decoded),
            ("tiled_decoded", &tiled),
        ] {
            let rel = rel_err(&f.io, what, got);
            eprintln!("{name} {what} on {d:?}: max |Δ| / max |out| = {rel:.2e}");
            assert!(rel <= 1e-4, "{name} {what} on {d:?}: {rel:e}");
        }
        // How far the tiled decode is from the whole one (the seams the blend softens).
        let whole = vae.decode(&big).unwrap();
        let seams = rel_err(&f.io, "tiled_decoded", &whole);
        eprintln!("{name} tiled vs untiled on {d:?}: max |Δ| / max |out| = {seams:.2e}");
    }
}

#[test]
fn sd_style_vae_matches_diffusers() {
    check("sd");
}

#[test]
fn vae_without_attention_or_quant_convs_matches_diffusers() {
    check("plain");
}

#[test]
fn vae_config_reads_sd15_config_json() {
    // runwayml/stable-diffusion-v1-5 vae/config.json, as diffusers writes it.
    let sd15 = r#"{"_class_name": "AutoencoderKL", "_diffusers_version": "0.6.0",
        "act_fn": "silu", "block_out_channels": [128, 256, 512, 512],
        "down_block_types": ["DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D",
            "DownEncoderBlock2D"],
        "in_channels": 3, "latent_channels": 4, "layers_per_block": 2, "norm_num_groups": 32,
        "out_channels": 3, "sample_size": 512,
        "up_block_types": ["UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D",
            "UpDecoderBlock2D"]}"#;
    let cfg: AutoencoderKLConfig = serde_json::from_str(sd15).unwrap();
    assert_eq!(cfg, AutoencoderKLConfig::sd15());
    assert_eq!(cfg.scaling_factor, 0.18215);
    assert_eq!(cfg.shift_factor, None);
    assert_eq!(cfg.scale_factor(), 8);
    // diffusers' enable_tiling() threshold: latents longer than 64 on a side are tiled.
    assert_eq!(cfg.tile_latent_min_size(), 64);
    cfg.check().unwrap();
    // The full SD VAE builds from random weights under diffusers' key names.
    let vae = AutoencoderKL::load(&Vars::random(1, &Device::Cpu), &cfg).unwrap();
    assert_eq!(vae.tiles_for(64, 64, Tiling::Auto), None);
    assert_eq!(vae.tiles_for(64, 96, Tiling::Auto), Some((64, 0.25)));
    assert_eq!(vae.tiles_for(128, 128, Tiling::Off), None);
}

fn load_err(cfg: &AutoencoderKLConfig, weights: Option<&WeightStore>) -> String {
    let r = match weights {
        Some(w) => AutoencoderKL::load(&Vars::new(w, &Device::Cpu), cfg),
        None => AutoencoderKL::load(&Vars::random(1, &Device::Cpu), cfg),
    };
    format!("{:#}", r.err().expect("load should fail"))
}

#[test]
fn vae_config_names_what_it_does_not_support() {
    let f = fixture("sd");
    let mut cfg = f.cfg.clone();
    cfg.down_block_types[1] = "AttnDownEncoderBlock2D".into();
    let e = load_err(&cfg, None);
    assert!(
        e.contains("down_block_types[1] 'AttnDownEncoderBlock2D'")
            && e.contains("(DownEncoderBlock2D)"),
        "{e}"
    );
    let mut cfg = f.cfg.clone();
    cfg.up_block_types[0] = "AttnUpDecoderBlock2D".into();
    let e = load_err(&cfg, None);
    assert!(
        e.contains("up_block_types[0] 'AttnUpDecoderBlock2D'"),
        "{e}"
    );
    let mut cfg = f.cfg.clone();
    cfg.act_fn = "mish".into();
    let e = load_err(&cfg, None);
    assert!(
        e.contains("act_fn 'mish'") && e.contains("silu, swish"),
        "{e}"
    );
    let mut cfg = f.cfg.clone();
    cfg.up_block_types.pop();
    let e = load_err(&cfg, None);
    assert!(e.contains("1 up_block_types"), "{e}");
    let mut cfg = f.cfg.clone();
    cfg.norm_num_groups = 5;
    let e = load_err(&cfg, None);
    assert!(e.contains("norm_num_groups 5 does not divide"), "{e}");
}

#[test]
fn vae_names_wrong_tensors_and_inputs() {
    let f = fixture("sd");
    // A checkpoint with other widths: the first tensor read, with both shapes.
    let mut cfg = f.cfg.clone();
    cfg.block_out_channels = vec![8, 32];
    let e = load_err(&cfg, Some(&f.weights));
    assert!(
        e.contains("'encoder.conv_in.weight'")
            && e.contains("[16, 3, 3, 3]")
            && e.contains("[8, 3, 3, 3]"),
        "{e}"
    );
    // A config without the mid-block attention leaves its tensors unread.
    let mut cfg = f.cfg.clone();
    cfg.mid_block_add_attention = false;
    let e = load_err(&cfg, Some(&f.weights));
    assert!(
        e.contains("not used by this model") && e.contains("mid_block.attentions.0"),
        "{e}"
    );
    let mut cfg = f.cfg.clone();
    cfg.use_quant_conv = false;
    let e = load_err(&cfg, Some(&f.weights));
    assert!(
        e.contains("not used by this model") && e.contains("\"quant_conv.weight\""),
        "{e}"
    );

    let d = Device::Cpu;
    let vae = load(&f, &d);
    let gray = Tensor::from_vec(&d, &[1, 1, 8, 8], vec![0.0; 64]).unwrap();
    let e = format!("{:#}", vae.encode(&gray).err().unwrap());
    assert!(
        e.contains("the image has 1 channels, the model takes 3"),
        "{e}"
    );
    let z = Tensor::from_vec(&d, &[1, 3, 4, 4], vec![0.0; 48]).unwrap();
    let e = format!("{:#}", vae.decode(&z).err().unwrap());
    assert!(
        e.contains("the latents have 3 channels, the model takes 4"),
        "{e}"
    );
    let flat = Tensor::from_vec(&d, &[4, 16], vec![0.0; 64]).unwrap();
    let e = format!("{:#}", vae.decode(&flat).err().unwrap());
    assert!(e.contains("AutoencoderKL::decode: latents"), "{e}");
    let z = Tensor::from_vec(&d, &[1, 4, 4, 4], vec![0.0; 64]).unwrap();
    let e = format!("{:#}", vae.decode_tiled(&z, 1, 0.25).err().unwrap());
    assert!(e.contains("gives no step between tiles"), "{e}");
    let post = vae.encode(&input(&f.io, "image", &d)).unwrap();
    let e = format!("{:#}", post.sample(&z).err().unwrap());
    assert!(e.contains("noise has shape [1, 4, 4, 4]"), "{e}");
}

#[test]
fn vae_reads_the_deprecated_attention_key_names() {
    // Checkpoints saved before diffusers renamed the VAE attention name its projections
    // query/key/value/proj_attn; the same weights under those names decode the same.
    let f = fixture("sd");
    let mut old = WeightStore::new("old-names.safetensors");
    for k in f.weights.names() {
        let renamed = k
            .replace(".to_q.", ".query.")
            .replace(".to_k.", ".key.")
            .replace(".to_v.", ".value.")
            .replace(".to_out.0.", ".proj_attn.");
        let shape = f.weights.shape(k).unwrap().to_vec();
        old.insert(renamed, shape, f.weights.values(k).unwrap().into_owned());
    }
    assert!(old.contains("decoder.mid_block.attentions.0.proj_attn.weight"));
    let d = Device::Cpu;
    let vae = AutoencoderKL::load(&Vars::new(&old, &d), &f.cfg).unwrap();
    let got = vae.decode(&input(&f.io, "latents", &d)).unwrap();
    assert!(rel_err(&f.io, "decoded", &got) <= 1e-4);
}

#[test]
fn posterior_clamps_logvar_and_samples_with_its_std() {
    use spadework::models::vae::DiagonalGaussianDistribution;
    let d = Device::Cpu;
    // [1, 2, 1, 3]: mean channel then logvar channel.
    let moments =
        Tensor::from_vec(&d, &[1, 2, 1, 3], vec![1.0, -2.0, 0.5, -40.0, 2.0, 25.0]).unwrap();
    let post = DiagonalGaussianDistribution::new(&moments).unwrap();
    assert_eq!(post.mode().to_vec().unwrap(), [1.0, -2.0, 0.5]);
    assert_eq!(post.logvar.to_vec().unwrap(), [-30.0, 2.0, 20.0]);
    let noise = Tensor::from_vec(&d, &[1, 1, 1, 3], vec![1.0, 1.0, -1.0]).unwrap();
    let s = post.sample(&noise).unwrap().to_vec().unwrap();
    let want = [1.0 + (-15f32).exp(), -2.0 + 1f32.exp(), 0.5 - 10f32.exp()];
    for (g, w) in s.iter().zip(want) {
        assert!(
            (g - w).abs() <= 1e-6 * w.abs().max(1.0),
            "{s:?} vs {want:?}"
        );
    }
}
