//! candle's Stable Diffusion 1.5 UNet call and VAE decode on the CPU, f32, random weights at the
//! real SD 1.5 config: the candle peer of `tools/bench_sd.py`.
//!
//!     RAYON_NUM_THREADS=2 candle_sd_bench [--only unet|vae] [--runs 3] [--no-pool]
//!
//! Workloads (the same shapes as diffusers' side and `spadework bench`):
//! - `UNet SD1.5 call 64² ×2 77 tok`: latent [2,4,64,64], timestep 999, text [2,77,768];
//! - `VAE SD decode 512²`: `AutoEncoderKL::decode` (post_quant_conv + decoder) of [1,4,64,64].
//!
//! Weights are drawn with the init candle's layers ask for (Kaiming-normal convs and linears,
//! GroupNorm/LayerNorm γ = 1, β = 0) straight into plain tensors (not `Var`s, which would make
//! every op record its backward graph and keep the intermediates alive). One warm-up, then N
//! timed runs, each inside `Device::with_context` (candle's own CPU thread pool, as its examples
//! run models) unless `--no-pool`. One JSON line per workload on stdout: median/min ms and the
//! process's peak RSS (VmHWM, which includes building the weights: run one workload per
//! process to keep them apart).
//!
//! Build features: `avx512` turns on gemm's AVX-512 microkernels (candle-core's default gemm uses
//! the AVX2+FMA ones on every x86-64 CPU); `mkl` is candle's MKL matmul (its build downloads MKL).
//!
//! Threads: candle's matmul (gemm) and its conv/elementwise loops use rayon with
//! `RAYON_NUM_THREADS` (`CANDLE_NUM_THREADS` overrides it for candle's barrier pool); the
//! default is the number of physical cores.
use candle_core::{DType, Device, Result, Shape, Tensor};
use candle_nn::{Init, VarBuilder};
use candle_transformers::models::stable_diffusion::{unet_2d, vae};
use std::time::Instant;

/// A `VarBuilder` backend that makes every requested tensor on the spot, randomly, as its init
/// hint says, as a plain tensor.
struct RandomWeights {
    /// Element count per tensor name (some layers probe a shape first, then ask again).
    sizes: std::sync::Mutex<std::collections::HashMap<String, usize>>,
}

impl candle_nn::var_builder::SimpleBackend for RandomWeights {
    fn get(&self, s: Shape, name: &str, h: Init, dtype: DType, dev: &Device) -> Result<Tensor> {
        self.sizes
            .lock()
            .unwrap()
            .insert(name.to_string(), s.elem_count());
        Ok(h.var(s, dtype, dev)?.as_tensor().detach())
    }
    fn get_unchecked(&self, name: &str, _dtype: DType, _dev: &Device) -> Result<Tensor> {
        candle_core::bail!("random weights: no shape for {name}")
    }
    fn contains_tensor(&self, _name: &str) -> bool {
        false
    }
}

fn random_vb(dev: &Device) -> (VarBuilder<'static>, std::sync::Arc<RandomWeights>) {
    // `from_backend` takes a Box; the Arc keeps the parameter count readable from outside.
    let w = std::sync::Arc::new(RandomWeights {
        sizes: Default::default(),
    });
    struct Shared(std::sync::Arc<RandomWeights>);
    impl candle_nn::var_builder::SimpleBackend for Shared {
        fn get(&self, s: Shape, n: &str, h: Init, dt: DType, dev: &Device) -> Result<Tensor> {
            self.0.get(s, n, h, dt, dev)
        }
        fn get_unchecked(&self, n: &str, dt: DType, dev: &Device) -> Result<Tensor> {
            self.0.get_unchecked(n, dt, dev)
        }
        fn contains_tensor(&self, n: &str) -> bool {
            self.0.contains_tensor(n)
        }
    }
    let vb = VarBuilder::from_backend(Box::new(Shared(w.clone())), DType::F32, dev.clone());
    (vb, w)
}

/// SD 1.5's UNet (runwayml/stable-diffusion-v1-5 unet/config.json), as candle's
/// `StableDiffusionConfig::v1_5` writes it (its fields there are private).
fn sd15_unet() -> unet_2d::UNet2DConditionModelConfig {
    let bc = |out_channels, use_cross_attn, attention_head_dim| unet_2d::BlockConfig {
        out_channels,
        use_cross_attn,
        attention_head_dim,
    };
    unet_2d::UNet2DConditionModelConfig {
        blocks: vec![
            bc(320, Some(1), 8),
            bc(640, Some(1), 8),
            bc(1280, Some(1), 8),
            bc(1280, None, 8),
        ],
        center_input_sample: false,
        cross_attention_dim: 768,
        downsample_padding: 1,
        flip_sin_to_cos: true,
        freq_shift: 0.,
        layers_per_block: 2,
        mid_block_scale_factor: 1.,
        norm_eps: 1e-5,
        norm_num_groups: 32,
        sliced_attention_size: None,
        use_linear_projection: false,
    }
}

fn sd15_vae() -> vae::AutoEncoderKLConfig {
    vae::AutoEncoderKLConfig {
        block_out_channels: vec![128, 256, 512, 512],
        layers_per_block: 2,
        latent_channels: 4,
        norm_num_groups: 32,
        use_quant_conv: true,
        use_post_quant_conv: true,
    }
}

fn status_mib(key: &str) -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

fn main() -> Result<()> {
    let mut runs = 3usize;
    let mut only = String::new();
    let mut pool = true;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--runs" => runs = args.next().and_then(|s| s.parse().ok()).expect("--runs N"),
            "--only" => only = args.next().expect("--only unet|vae"),
            "--no-pool" => pool = false,
            "-h" | "--help" => {
                println!("candle_sd_bench [--only unet|vae] [--runs N] [--no-pool]");
                return Ok(());
            }
            _ => panic!("unknown argument {a}"),
        }
    }
    let runs = runs.max(1);
    let dev = Device::Cpu;
    let threads = candle_core::utils::get_num_threads();
    let only = only.to_lowercase();
    let want = |k: &str| only.is_empty() || only.split(',').any(|o| k.contains(o.trim()));
    for (key, name) in [
        ("unet", "UNet SD1.5 call 64² ×2 77 tok"),
        ("vae", "VAE SD decode 512²"),
    ] {
        if !want(key) {
            continue;
        }
        let t_build = Instant::now();
        let (vb, w) = random_vb(&dev);
        // The workload as a closure over its model and inputs.
        let run: Box<dyn Fn() -> Result<Vec<usize>> + Send + Sync> = if key == "unet" {
            let unet = unet_2d::UNet2DConditionModel::new(vb, 4, 4, false, sd15_unet())?;
            let x = Tensor::randn(0f32, 1., (2, 4, 64, 64), &dev)?;
            let text = Tensor::randn(0f32, 1., (2, 77, 768), &dev)?;
            Box::new(move || Ok(unet.forward(&x, 999., &text)?.dims().to_vec()))
        } else {
            let ae = vae::AutoEncoderKL::new(vb, 3, 3, sd15_vae())?;
            let z = Tensor::randn(0f32, 1., (1, 4, 64, 64), &dev)?;
            Box::new(move || Ok(ae.decode(&z)?.dims().to_vec()))
        };
        let params: usize = w.sizes.lock().unwrap().values().sum();
        let build_s = t_build.elapsed().as_secs_f64();
        let rss_built = status_mib("VmRSS");
        let go = || if pool { dev.with_context(&run) } else { run() };
        let t = Instant::now();
        let shape = go()?;
        let warm_ms = t.elapsed().as_secs_f64() * 1e3;
        let mut times = Vec::with_capacity(runs);
        for _ in 0..runs {
            let t = Instant::now();
            go()?;
            times.push(t.elapsed().as_secs_f64() * 1e3);
        }
        let min = times.iter().cloned().fold(f64::INFINITY, f64::min);
        let mut s = times.clone();
        s.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let median = if s.len() % 2 == 1 {
            s[s.len() / 2]
        } else {
            (s[s.len() / 2 - 1] + s[s.len() / 2]) / 2.0
        };
        let times_s: Vec<String> = times.iter().map(|t| format!("{t:.1}")).collect();
        println!(
            "{{\"impl\": \"candle\", \"candle\": \"0.11.1\", \"workload\": \"{name}\", \"device\": \"cpu\", \
             \"dtype\": \"f32\", \"threads\": {threads}, \"pool\": {pool}, \"mkl\": {}, \"gemm_avx512\": {}, \"params\": {params}, \
             \"out_shape\": {shape:?}, \"build_s\": {build_s:.1}, \"warmup_ms\": {warm_ms:.1}, \"runs\": {runs}, \
             \"times_ms\": [{}], \"median_ms\": {median:.1}, \"min_ms\": {min:.1}, \
             \"resident_after_build_mib\": {rss_built:.0}, \"peak_rss_mib\": {:.0}}}",
            candle_core::utils::has_mkl(),
            cfg!(feature = "avx512"),
            times_s.join(", "),
            status_mib("VmHWM")
        );
        drop(run);
    }
    Ok(())
}
