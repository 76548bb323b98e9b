//! The SPADE pipeline: a model file (generator and, when it has one, the VAE style encoder), a
//! prepared label map and a style in, an image out. The CLI, the paint tool, the tests and the
//! benches all render through it.
use crate::backend::{Device, WeightStorage};
use crate::models::spade::input::{PreparedMap, texture_field};
use crate::models::{ConvEncoder, SpadeConfig, SpadeGenerator};
use crate::rng::Rng;
use crate::tensor::Tensor;
use crate::weights::WeightStore;
use crate::weights::vars::Vars;
use anyhow::{Context, Result, bail};
use std::path::Path;

/// The landscape demo model, compiled into the binary: a SPADE generator (128², ngf 32, VAE, 14
/// ADE20K landscape classes) with its style encoder, trained by `tools/train_landscape.py` on the
/// procedural world of `tools/landscape.py`, stored as int8 weights with per-channel scales.
#[cfg(demo_model)]
pub static DEMO_MODEL: Option<&[u8]> = Some(include_bytes!("../../assets/landscape.safetensors"));
#[cfg(not(demo_model))]
pub static DEMO_MODEL: Option<&[u8]> = None;

/// What `--weights` names when it is not given.
pub const DEMO_MODEL_NAME: &str = "the built-in landscape model";

/// The model file at `path`, or the built-in demo model.
pub fn load_store(path: Option<&Path>) -> Result<WeightStore> {
    match path {
        Some(p) => WeightStore::load(p),
        None => match DEMO_MODEL {
            Some(bytes) => WeightStore::from_static(bytes, DEMO_MODEL_NAME),
            None => bail!(
                "this build has no built-in model (assets/landscape.safetensors was missing); pass --weights"
            ),
        },
    }
}

pub struct SpadePipeline {
    pub cfg: SpadeConfig,
    pub generator: SpadeGenerator,
    pub encoder: Option<ConvEncoder>,
    pub device: Device,
}

/// Where the VAE generator's z comes from.
pub enum ZSource {
    Given(Vec<f32>),
    Seed(u64),
}

impl SpadePipeline {
    /// The model file at `path` on `device`, its GPU weights stored as `storage` says.
    pub fn load(path: &Path, device: &Device, storage: WeightStorage) -> Result<SpadePipeline> {
        let store = WeightStore::load(path)?;
        Self::from_store(&store, device, storage)
    }

    /// The config a model file carries in its header (`spade_config`).
    pub fn config_of(store: &WeightStore) -> Result<SpadeConfig> {
        let cfg_json = store.metadata.get("spade_config").with_context(|| {
            format!("{}: no 'spade_config' in the safetensors header; convert NVlabs checkpoints with `spadework convert`", store.source)
        })?;
        let cfg: SpadeConfig = serde_json::from_str(cfg_json)
            .with_context(|| format!("{}: bad spade_config header", store.source))?;
        cfg.validate()
            .with_context(|| format!("{}: spade_config", store.source))?;
        Ok(cfg)
    }

    /// The model in `store`, which must hold exactly its tensors (a file with tensors the config
    /// does not use was converted with other flags).
    pub fn from_store(
        store: &WeightStore,
        device: &Device,
        storage: WeightStorage,
    ) -> Result<SpadePipeline> {
        let cfg = Self::config_of(store)?;
        let vars = Vars::new(store, device).with_storage(storage);
        let model = Self::build(&vars, cfg)?;
        vars.finish(crate::models::spade::FLAGS_HINT)?;
        Ok(model)
    }

    /// Generator `fc.*`, `head_0.*`, … and, when the config has one, the style encoder `netE.*`.
    pub fn build(vars: &Vars, cfg: SpadeConfig) -> Result<SpadePipeline> {
        let generator = SpadeGenerator::load(vars, &cfg)?;
        let encoder = if cfg.has_encoder {
            Some(ConvEncoder::load(&vars.pp("netE"), &cfg)?)
        } else {
            None
        };
        Ok(SpadePipeline {
            cfg,
            generator,
            encoder,
            device: vars.device().clone(),
        })
    }

    /// A model file's tensors for `cfg` with deterministic random weights (benches, tests): what
    /// [`Self::build`] reads, drawn by [`Vars::random_recorded`], with the config in the header.
    pub fn random_store(cfg: &SpadeConfig, seed: u64) -> Result<WeightStore> {
        let vars = Vars::random_recorded(seed, &Device::Cpu);
        drop(Self::build(&vars, cfg.clone())?);
        let mut store = vars.into_store()?;
        store
            .metadata
            .insert("spade_config".into(), serde_json::to_string(cfg)?);
        Ok(store)
    }

    /// The style encoder's (mu, logvar) for a style image.
    pub fn encode_style(&self, path: &Path) -> Result<(Vec<f32>, Vec<f32>)> {
        let Some(enc) = &self.encoder else {
            bail!(
                "this model has no style encoder (convert with --netE latest_net_E.pth to add one)"
            );
        };
        let x = crate::io::image::load_style(path, self.cfg.map_size())?;
        let x = Tensor::from_vec(&self.device, &[1, 3, 256, 256], x)?;
        let (mu, logvar) = enc.forward(&x)?;
        Ok((mu.to_vec()?, logvar.to_vec()?))
    }

    /// Runs the generator; returns the float output [3, H, W] (before quantisation) and (H, W).
    /// A texture-field model draws its field from the z seed (0 for a given z).
    pub fn render(
        &self,
        map: &PreparedMap,
        z: Option<&ZSource>,
    ) -> Result<(Vec<f32>, (usize, usize))> {
        let field_seed = match z {
            Some(ZSource::Seed(s)) => *s,
            _ => 0,
        };
        self.render_seeded(map, z, field_seed)
    }

    /// [`Self::render`] with the texture field's seed given (models without one ignore it).
    pub fn render_seeded(
        &self,
        map: &PreparedMap,
        z: Option<&ZSource>,
        field_seed: u64,
    ) -> Result<(Vec<f32>, (usize, usize))> {
        let with_field;
        let map = match self.cfg.texture_field {
            Some(density) => {
                with_field = PreparedMap {
                    instance: Some(texture_field(field_seed, map.h, map.w, density)),
                    ..map.clone()
                };
                &with_field
            }
            None => map,
        };
        let seg = map.to_label_map(&self.device)?;
        let z = if self.cfg.use_vae {
            let zv = match z {
                Some(ZSource::Given(v)) => v.clone(),
                Some(ZSource::Seed(s)) => Rng::new(*s).normal_vec(self.cfg.z_dim),
                None => Rng::new(0).normal_vec(self.cfg.z_dim),
            };
            if zv.len() != self.cfg.z_dim {
                bail!(
                    "z has {} values but the model's z_dim is {}",
                    zv.len(),
                    self.cfg.z_dim
                );
            }
            Some(Tensor::from_vec(&self.device, &[1, self.cfg.z_dim], zv)?)
        } else {
            None
        };
        let out = self.generator.forward(seg, z.as_ref())?;
        let (_, _, h, w) = out.nchw()?;
        Ok((out.to_vec()?, (h, w)))
    }
}
