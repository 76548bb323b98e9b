//! Stable Diffusion's UNet against diffusers' `UNet2DConditionModel` (tools/unet_reference.py):
//! tiny configs with random weights under diffusers' key names, on both backends.
mod common;
use spadework::backend::Device;
use spadework::models::unet::config::PerBlock;
use spadework::models::{UNet2DConditionConfig, UNet2DConditionModel};
use spadework::tensor::Tensor;
use spadework::weights::store::WeightStore;
use spadework::weights::vars::Vars;

struct Fixture {
    cfg: UNet2DConditionConfig,
    weights: WeightStore,
    io: WeightStore,
}

fn fixture(name: &str) -> Fixture {
    let dir = common::fixture(&format!("unet/{name}"));
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

/// max |Δ| / max |expected| of the fixture's output on `d`.
fn run(f: &Fixture, d: &Device) -> f32 {
    let unet = UNet2DConditionModel::load(&Vars::new(&f.weights, d), &f.cfg).unwrap();
    let sample = input(&f.io, "sample", d);
    let text = input(&f.io, "encoder_hidden_states", d);
    let labels =
        f.io.contains("class_labels")
            .then(|| input(&f.io, "class_labels", d));
    let t = f.io.values("timestep").unwrap();
    let got = unet.forward(&sample, &t, &text, labels.as_ref()).unwrap();
    let want = f.io.values("expected").unwrap();
    assert_eq!(got.shape(), f.io.shape("expected").unwrap());
    let scale = want.iter().fold(0f32, |m, x| m.max(x.abs()));
    common::max_abs_diff(&got.to_vec().unwrap(), &want) / scale
}

fn check(name: &str) {
    let f = fixture(name);
    for d in common::devices() {
        let rel = run(&f, &d);
        eprintln!("{name} on {d:?}: max |Δ| / max |out| = {rel:.2e}");
        assert!(
            rel <= 1e-4,
            "{name} on {d:?}: max |Δ| / max |out| = {rel:e}"
        );
    }
}

#[test]
fn sd1_style_unet_matches_diffusers() {
    check("sd1");
}

#[test]
fn sd2_style_unet_matches_diffusers() {
    check("sd2");
}

#[test]
fn inpainting_unet_matches_diffusers() {
    check("inpaint");
}

#[test]
fn class_projection_unet_matches_diffusers() {
    check("class_proj");
}

#[test]
fn unet_with_less_common_options_matches_diffusers() {
    check("options");
}

#[test]
fn unet_config_reads_sd15_config_json() {
    // runwayml/stable-diffusion-v1-5 unet/config.json, as diffusers writes it.
    let sd15 = r#"{"_class_name": "UNet2DConditionModel", "_diffusers_version": "0.6.0",
        "act_fn": "silu", "attention_head_dim": 8, "block_out_channels": [320, 640, 1280, 1280],
        "center_input_sample": false, "cross_attention_dim": 768,
        "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D",
            "CrossAttnDownBlock2D", "DownBlock2D"],
        "downsample_padding": 1, "flip_sin_to_cos": true, "freq_shift": 0, "in_channels": 4,
        "layers_per_block": 2, "mid_block_scale_factor": 1, "norm_eps": 1e-05,
        "norm_num_groups": 32, "out_channels": 4, "sample_size": 64,
        "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D",
            "CrossAttnUpBlock2D"]}"#;
    let cfg: UNet2DConditionConfig = serde_json::from_str(sd15).unwrap();
    assert_eq!(cfg, UNet2DConditionConfig::sd15());
    let plan = cfg.plan().unwrap();
    assert_eq!(plan.time_embed_dim, 1280);
    // attention_head_dim 8 is the head count: 8 heads of 40, 80, 160 channels.
    let heads: Vec<usize> = plan.down.iter().map(|b| b.num_attention_heads).collect();
    assert_eq!(heads, [8, 8, 8, 8]);
    let up_in: Vec<(usize, usize, usize)> = plan
        .up
        .iter()
        .map(|b| (b.prev_output_channel, b.in_channels, b.out_channels))
        .collect();
    assert_eq!(
        up_in,
        [
            (1280, 1280, 1280),
            (1280, 640, 1280),
            (1280, 320, 640),
            (640, 320, 320)
        ]
    );
    // SD 2.x: a head count per block.
    let sd2: UNet2DConditionConfig =
        serde_json::from_str(r#"{"attention_head_dim": [5, 10, 20, 20]}"#).unwrap();
    assert_eq!(sd2.attention_head_dim, PerBlock::Each(vec![5, 10, 20, 20]));
    let up: Vec<usize> = sd2
        .plan()
        .unwrap()
        .up
        .iter()
        .map(|b| b.num_attention_heads)
        .collect();
    assert_eq!(up, [20, 20, 10, 5]);
}

fn load_err(cfg: &UNet2DConditionConfig, weights: Option<&WeightStore>) -> String {
    let r = match weights {
        Some(w) => UNet2DConditionModel::load(&Vars::new(w, &Device::Cpu), cfg),
        None => UNet2DConditionModel::load(&Vars::random(1, &Device::Cpu), cfg),
    };
    format!("{:#}", r.err().expect("load should fail"))
}

#[test]
fn unet_config_names_what_it_does_not_support() {
    let f = fixture("sd1");
    let mut cfg = f.cfg.clone();
    cfg.down_block_types[1] = "AttnDownBlock2D".into();
    let e = load_err(&cfg, None);
    assert!(
        e.contains("down_block_types[1] 'AttnDownBlock2D'")
            && e.contains("CrossAttnDownBlock2D, DownBlock2D"),
        "{e}"
    );
    let mut cfg = f.cfg.clone();
    cfg.up_block_types[0] = "SimpleCrossAttnUpBlock2D".into();
    let e = load_err(&cfg, None);
    assert!(
        e.contains("up_block_types[0] 'SimpleCrossAttnUpBlock2D'"),
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
    cfg.addition_embed_type = Some("text_time".into());
    let e = load_err(&cfg, None);
    assert!(e.contains("addition_embed_type Some(\"text_time\")"), "{e}");
    let mut cfg = f.cfg.clone();
    cfg.class_embed_type = Some("timestep".into());
    let e = load_err(&cfg, None);
    assert!(
        e.contains("class_embed_type 'timestep'") && e.contains("projection"),
        "{e}"
    );
    let mut cfg = f.cfg.clone();
    cfg.mid_block_type = Some("UNetMidBlock2DSimpleCrossAttn".into());
    let e = load_err(&cfg, None);
    assert!(
        e.contains("mid_block_type 'UNetMidBlock2DSimpleCrossAttn'"),
        "{e}"
    );
    let mut cfg = f.cfg.clone();
    cfg.attention_head_dim = PerBlock::Each(vec![4, 4, 4]);
    let e = load_err(&cfg, None);
    assert!(e.contains("attention_head_dim has 3 entries"), "{e}");
}

#[test]
fn unet_names_a_checkpoint_whose_widths_disagree_with_the_config() {
    let f = fixture("sd1");
    // The checkpoint's first level is 16 wide; a config that says 24 names the first tensor it
    // reads with both shapes.
    let mut cfg = f.cfg.clone();
    cfg.block_out_channels = vec![24, 32];
    let e = load_err(&cfg, Some(&f.weights));
    assert!(
        e.contains("'conv_in.weight'")
            && e.contains("[16, 4, 3, 3]")
            && e.contains("[24, 4, 3, 3]"),
        "{e}"
    );
    // Wider text tokens: the first cross-attention key projection.
    let mut cfg = f.cfg.clone();
    cfg.cross_attention_dim = PerBlock::One(48);
    let e = load_err(&cfg, Some(&f.weights));
    assert!(
        e.contains("'down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.weight'")
            && e.contains("[16, 32]")
            && e.contains("[16, 48]"),
        "{e}"
    );
    // A config with fewer layers than the checkpoint leaves tensors unread.
    let mut cfg = f.cfg.clone();
    cfg.mid_block_type = None;
    let e = load_err(&cfg, Some(&f.weights));
    assert!(
        e.contains("not used by this model") && e.contains("mid_block."),
        "{e}"
    );
}

#[test]
fn unet_names_bad_inputs() {
    let f = fixture("class_proj");
    let d = Device::Cpu;
    let unet = UNet2DConditionModel::load(&Vars::new(&f.weights, &d), &f.cfg).unwrap();
    let sample = input(&f.io, "sample", &d);
    let text = input(&f.io, "encoder_hidden_states", &d);
    let e = unet
        .forward(&sample, &[1.0], &text, None)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("needs class_labels"), "{e}");
    let labels = input(&f.io, "class_labels", &d);
    let e = unet
        .forward(&sample, &[1.0, 2.0, 3.0], &text, Some(&labels))
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("3 timesteps for a batch of 2"), "{e}");
    let wrong = Tensor::from_vec(&d, &[2, 3, 9, 7], vec![0.0; 2 * 3 * 63]).unwrap();
    let e = unet
        .forward(&wrong, &[1.0], &text, Some(&labels))
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("sample has 3 channels, the model takes 4"),
        "{e}"
    );
}

#[test]
fn unet_flops_match_torch_flop_counter() {
    // torch.utils.flop_counter.FlopCounterMode totals of the diffusers forward on each fixture's
    // inputs (convolutions, matmuls and attention).
    for (name, want) in [
        ("sd1", 108957696.0),
        ("sd2", 151490560.0),
        ("inpaint", 48324608.0),
        ("class_proj", 22448640.0),
        ("options", 25410816.0),
    ] {
        let f = fixture(name);
        let unet =
            UNet2DConditionModel::load(&Vars::new(&f.weights, &Device::Cpu), &f.cfg).unwrap();
        let [b, _, h, w] = f.io.shape("sample").unwrap()[..] else {
            panic!()
        };
        let tokens = f.io.shape("encoder_hidden_states").unwrap()[1];
        let got = unet.flops(b, h, w, tokens);
        assert_eq!(got, want, "{name}");
    }
}
