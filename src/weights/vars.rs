//! The prefix weight loader: every model names its tensors once, where it builds the layer that
//! uses them, by walking a key prefix (`vars.pp("down_blocks").pp(i).pp("resnets")`), the way the
//! checkpoint's module tree does.
//!
//! - Typed getters take the expected shape; a missing or wrong-shaped tensor is reported by its
//!   full key, the file and both shapes.
//! - Every key read is recorded: [`Vars::finish`] names the file's keys no layer used (so there is
//!   no second hand-kept list of expected keys to drift out of step with the loads).
//! - A rename hook maps the model's key to the file's (checkpoints in another layout).
//! - The GPU weight storage (f32 or f16) is chosen per loader, and inherited by its prefixes.
//! - [`Vars::random`] builds the same model from deterministic random weights through the same
//!   code (tests, benches); [`Vars::random_recorded`] + [`Vars::into_store`] hand those weights
//!   over as a file would.
use super::WeightStore;
use crate::backend::{Device, WeightStorage};
use crate::ops::{Conv2d, GroupNorm, LayerNorm, Linear};
use crate::rng::Rng;
use anyhow::{Result, bail};
use std::borrow::Cow;
use std::collections::BTreeSet;
use std::fmt::Display;
use std::sync::{Arc, Mutex};

/// How [`Vars::random`] fills a tensor. Each tensor's values depend only on the seed and its key.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Init {
    /// Uniform in ±√(3 / fan_in), fan_in = the product of all dims but the first (unit variance
    /// through a layer).
    FanIn,
    /// Uniform in [lo, hi).
    Uniform(f32, f32),
}

/// Where the tensors come from.
enum Source<'a> {
    Store(&'a WeightStore),
    /// Made on request; with a store, also kept there so that [`Vars::into_store`] can hand
    /// them over.
    Random {
        seed: u64,
        made: Option<Mutex<WeightStore>>,
    },
}

type Rename<'a> = Box<dyn Fn(&str) -> String + Send + Sync + 'a>;

struct Shared<'a> {
    source: Source<'a>,
    device: Device,
    rename: Option<Rename<'a>>,
    /// File keys read so far.
    used: Mutex<BTreeSet<String>>,
}

/// A view of the weights under one key prefix (cheap to clone; prefixes share what they read).
#[derive(Clone)]
pub struct Vars<'a> {
    shared: Arc<Shared<'a>>,
    /// "" or "a.b." (with the trailing dot).
    prefix: String,
    storage: WeightStorage,
}

impl<'a> Vars<'a> {
    /// The tensors of `store`, built on `device` with f32 weight storage.
    pub fn new(store: &'a WeightStore, device: &Device) -> Vars<'a> {
        Self::with_source(Source::Store(store), device, None)
    }

    /// [`Self::new`] with a rename hook: a layer's key `k` is read from the file as `rename(k)`.
    pub fn with_rename(
        store: &'a WeightStore,
        device: &Device,
        rename: impl Fn(&str) -> String + Send + Sync + 'a,
    ) -> Vars<'a> {
        Self::with_source(Source::Store(store), device, Some(Box::new(rename)))
    }

    /// Deterministic random weights (see [`Init`]); `seed` and the key fix each tensor. Each is
    /// dropped once its layer has it (see [`Self::random_recorded`] to keep them).
    pub fn random(seed: u64, device: &Device) -> Vars<'static> {
        Vars::with_source(Source::Random { seed, made: None }, device, None)
    }

    /// [`Self::random`], keeping every tensor made for [`Self::into_store`].
    pub fn random_recorded(seed: u64, device: &Device) -> Vars<'static> {
        let made = WeightStore::new(format!("random weights (seed {seed})"));
        Vars::with_source(
            Source::Random {
                seed,
                made: Some(Mutex::new(made)),
            },
            device,
            None,
        )
    }

    fn with_source(source: Source<'a>, device: &Device, rename: Option<Rename<'a>>) -> Vars<'a> {
        Vars {
            shared: Arc::new(Shared {
                source,
                device: device.clone(),
                rename,
                used: Mutex::new(BTreeSet::new()),
            }),
            prefix: String::new(),
            storage: WeightStorage::F32,
        }
    }

    /// The weights under `self`'s prefix + `name` (a module name or a list index).
    pub fn pp(&self, name: impl Display) -> Vars<'a> {
        Vars {
            shared: self.shared.clone(),
            prefix: format!("{}{name}.", self.prefix),
            storage: self.storage,
        }
    }

    /// The same view with GPU weight storage `storage` for the layers built from it (and its
    /// prefixes). The CPU backend always keeps f32.
    pub fn with_storage(&self, storage: WeightStorage) -> Vars<'a> {
        Vars {
            storage,
            ..self.clone()
        }
    }

    pub fn storage(&self) -> WeightStorage {
        self.storage
    }

    pub fn device(&self) -> &Device {
        &self.shared.device
    }

    /// The full model key of `name` under this prefix.
    pub fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// The key in the file for model key `key`.
    fn file_key(&self, key: &str) -> String {
        match &self.shared.rename {
            Some(r) => r(key),
            None => key.to_string(),
        }
    }

    /// Names the source in errors.
    pub fn source(&self) -> String {
        match &self.shared.source {
            Source::Store(s) => s.source.clone(),
            Source::Random { seed, .. } => format!("random weights (seed {seed})"),
        }
    }

    /// Whether the file has `name` under this prefix (always false for random weights: a model
    /// built at random follows its config, not a file).
    pub fn contains(&self, name: &str) -> bool {
        match &self.shared.source {
            Source::Store(s) => s.contains(&self.file_key(&self.key(name))),
            Source::Random { .. } => false,
        }
    }

    /// The shape of `name` under this prefix in the file, if it is there.
    pub fn shape_of(&self, name: &str) -> Option<Vec<usize>> {
        match &self.shared.source {
            Source::Store(s) => s.shape(&self.file_key(&self.key(name))).map(|s| s.to_vec()),
            Source::Random { .. } => None,
        }
    }

    /// The tensor `name` under this prefix, which must have exactly `shape`; random weights are
    /// drawn as `init` says.
    pub fn get(&self, name: &str, shape: &[usize], init: Init) -> Result<Cow<'a, [f32]>> {
        let key = self.key(name);
        let file_key = self.file_key(&key);
        let values = match &self.shared.source {
            Source::Store(s) => {
                let renamed = if file_key != key {
                    format!(" (model key '{key}')")
                } else {
                    String::new()
                };
                match s.shape(&file_key) {
                    None => bail!(
                        "{}: missing tensor '{file_key}'{renamed}, expected shape {shape:?}",
                        s.source
                    ),
                    Some(got) if got != shape => bail!(
                        "{}: tensor '{file_key}'{renamed} has shape {got:?}, expected {shape:?}",
                        s.source
                    ),
                    Some(_) => {
                        let v = s.get(&file_key, shape)?;
                        if let Some((i, x)) = crate::tensor::first_non_finite(&v) {
                            bail!(
                                "{}: tensor '{file_key}'{renamed} holds {x} at flat index {i} \
                                 (shape {shape:?}): the weights are damaged or diverged",
                                s.source
                            );
                        }
                        v
                    }
                }
            }
            Source::Random { seed, made } => {
                let v = random_values(*seed, &file_key, shape, init);
                if let Some(made) = made {
                    made.lock()
                        .unwrap()
                        .insert(file_key.clone(), shape.to_vec(), v.clone());
                }
                Cow::Owned(v)
            }
        };
        self.shared.used.lock().unwrap().insert(file_key);
        Ok(values)
    }

    /// `name.weight` [out, in, kh, kw] and, with `bias`, `name.bias` [out]: a `nn.Conv2d`.
    pub fn conv2d(
        &self,
        name: &str,
        shape: [usize; 4],
        bias: bool,
        stride: usize,
        pad: usize,
    ) -> Result<Conv2d> {
        let v = self.pp(name);
        let w = v.get("weight", &shape, Init::FanIn)?;
        let b = if bias {
            Some(v.get("bias", &shape[..1], Init::Uniform(-0.1, 0.1))?)
        } else {
            None
        };
        Conv2d::with_storage(
            self.device(),
            &w,
            shape,
            b.as_deref(),
            stride,
            pad,
            self.storage,
        )
    }

    /// `name.weight` [out, in] and, with `bias`, `name.bias` [out]: a `nn.Linear`.
    pub fn linear(&self, name: &str, [fout, fin]: [usize; 2], bias: bool) -> Result<Linear> {
        let v = self.pp(name);
        let w = v.get("weight", &[fout, fin], Init::FanIn)?;
        let b = if bias {
            Some(v.get("bias", &[fout], Init::Uniform(-0.1, 0.1))?)
        } else {
            None
        };
        Linear::with_storage(self.device(), &w, [fout, fin], b.as_deref(), self.storage)
    }

    /// `name.weight` and `name.bias`, both [dim]: a `nn.LayerNorm(dim, eps)`.
    pub fn layer_norm(&self, name: &str, dim: usize, eps: f32) -> Result<LayerNorm> {
        let v = self.pp(name);
        let w = v.get("weight", &[dim], Init::Uniform(0.9, 1.1))?;
        let b = v.get("bias", &[dim], Init::Uniform(-0.1, 0.1))?;
        LayerNorm::new(self.device(), &w, &b, eps)
    }

    /// `name.weight` and `name.bias`, both [channels]: a `nn.GroupNorm(groups, channels, eps)`.
    pub fn group_norm(
        &self,
        name: &str,
        groups: usize,
        channels: usize,
        eps: f32,
    ) -> Result<GroupNorm> {
        let v = self.pp(name);
        let w = v.get("weight", &[channels], Init::Uniform(0.9, 1.1))?;
        let b = v.get("bias", &[channels], Init::Uniform(-0.1, 0.1))?;
        GroupNorm::new(self.device(), &w, &b, groups, eps)
    }

    /// The file's keys under this prefix that nothing has read.
    pub fn unused(&self) -> Vec<String> {
        let Source::Store(s) = &self.shared.source else {
            return vec![];
        };
        let used = self.shared.used.lock().unwrap();
        let prefix = self.file_key(&self.prefix);
        s.names()
            .filter(|k| k.starts_with(&prefix) && !used.contains(*k))
            .map(str::to_string)
            .collect()
    }

    /// Ends a load: an error naming the file's keys under this prefix that no layer used (a file
    /// for another config, or a model that forgot a tensor).
    pub fn finish(&self, hint: &str) -> Result<()> {
        let extra = self.unused();
        if !extra.is_empty() {
            bail!(
                "{}: {} tensor(s) not used by this model, e.g. {:?}{}",
                self.source(),
                extra.len(),
                &extra[..extra.len().min(5)],
                if hint.is_empty() {
                    String::new()
                } else {
                    format!("; {hint}")
                }
            );
        }
        Ok(())
    }

    /// The random weights made so far, as a store (for saving them as a model file).
    pub fn into_store(self) -> Result<WeightStore> {
        match Arc::try_unwrap(self.shared) {
            Ok(Shared {
                source: Source::Random {
                    made: Some(made), ..
                },
                ..
            }) => Ok(made.into_inner().unwrap()),
            Ok(_) => bail!("into_store: these weights were not made by Vars::random_recorded"),
            Err(_) => bail!("into_store: other views of these weights are still alive"),
        }
    }
}

/// The random values of one tensor: a function of the seed, the key, the shape and `init` only.
fn random_values(seed: u64, key: &str, shape: &[usize], init: Init) -> Vec<f32> {
    let n: usize = shape.iter().product();
    let mut rng = Rng::new(seed ^ crate::backend::fnv1a(key.as_bytes()));
    let (lo, hi) = match init {
        Init::FanIn => {
            let fan_in: usize = shape.iter().skip(1).product::<usize>().max(1);
            let a = (3.0 / fan_in as f32).sqrt();
            (-a, a)
        }
        Init::Uniform(lo, hi) => (lo, hi),
    };
    rng.uniform_vec(n, lo, hi)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> WeightStore {
        let mut s = WeightStore::new("test.safetensors");
        s.insert("blocks.0.proj.weight", vec![3, 2], vec![1.0; 6]);
        s.insert("blocks.0.proj.bias", vec![3], vec![0.5; 3]);
        s.insert("blocks.1.proj.weight", vec![3, 2], vec![2.0; 6]);
        s
    }

    #[test]
    fn prefixes_build_full_keys_and_errors_name_them() {
        let s = store();
        let v = Vars::new(&s, &Device::Cpu);
        let b0 = v.pp("blocks").pp(0);
        assert_eq!(b0.key("proj.weight"), "blocks.0.proj.weight");
        assert!(b0.linear("proj", [3, 2], true).is_ok());
        let e = v
            .pp("blocks")
            .pp(1)
            .linear("proj", [3, 2], true)
            .err()
            .unwrap();
        let e = e.to_string();
        assert!(
            e.contains("test.safetensors") && e.contains("'blocks.1.proj.bias'"),
            "{e}"
        );
        let e = v
            .pp("blocks")
            .pp(1)
            .linear("proj", [2, 3], false)
            .err()
            .unwrap();
        let e = e.to_string();
        assert!(e.contains("[3, 2]") && e.contains("[2, 3]"), "{e}");
    }

    #[test]
    fn finish_names_unused_keys() {
        let s = store();
        let v = Vars::new(&s, &Device::Cpu);
        v.pp("blocks").pp(0).linear("proj", [3, 2], true).unwrap();
        let e = v.finish("check the config").unwrap_err().to_string();
        assert!(
            e.contains("1 tensor(s)")
                && e.contains("blocks.1.proj.weight")
                && e.contains("check the config"),
            "{e}"
        );
        // Only the keys under a prefix count for that prefix.
        assert!(v.pp("blocks").pp(0).finish("").is_ok());
        v.pp("blocks")
            .pp(1)
            .get("proj.weight", &[3, 2], Init::FanIn)
            .unwrap();
        assert!(v.finish("").is_ok());
    }

    #[test]
    fn rename_maps_model_keys_to_file_keys() {
        let s = store();
        let v = Vars::with_rename(&s, &Device::Cpu, |k| k.replace("layers.", "blocks."));
        let w = v
            .pp("layers")
            .pp(1)
            .get("proj.weight", &[3, 2], Init::FanIn)
            .unwrap();
        assert_eq!(&w[..], &[2.0; 6]);
        let e = v
            .pp("layers")
            .pp(2)
            .get("proj.weight", &[3, 2], Init::FanIn);
        let e = e.unwrap_err().to_string();
        assert!(
            e.contains("'blocks.2.proj.weight' (model key 'layers.2.proj.weight')"),
            "{e}"
        );
    }

    #[test]
    fn random_weights_depend_on_seed_and_key_only_and_hand_over_as_a_store() {
        let v = Vars::random_recorded(7, &Device::Cpu);
        let a = v
            .pp("x")
            .get("w", &[4, 8], Init::FanIn)
            .unwrap()
            .into_owned();
        let b = v
            .pp("y")
            .get("w", &[4, 8], Init::FanIn)
            .unwrap()
            .into_owned();
        let a2 = Vars::random(7, &Device::Cpu)
            .pp("x")
            .get("w", &[4, 8], Init::FanIn)
            .unwrap()
            .into_owned();
        assert_eq!(a, a2);
        assert_ne!(a, b);
        let bound = (3.0f32 / 8.0).sqrt();
        assert!(a.iter().all(|x| x.abs() <= bound));
        let s = v.into_store().unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(&s.get("x.w", &[4, 8]).unwrap()[..], &a[..]);
    }
}
