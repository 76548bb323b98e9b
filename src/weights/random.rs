//! Random weights for any generator config (benches, smoke tests): every tensor the config
//! expects, uniform in ±sqrt(3 / fan_in), batch-norm variances in [0.5, 1.5).
use super::WeightStore;
use crate::models::SpadeConfig;
use crate::models::spade::expected_tensors;
use crate::rng::Rng;
use anyhow::Result;

pub fn random_store(cfg: &SpadeConfig, seed: u64) -> Result<WeightStore> {
    let mut rng = Rng::new(seed);
    let mut store = WeightStore::new(format!("random weights (seed {seed})"));
    for (name, shape) in expected_tensors(cfg)? {
        let n: usize = shape.iter().product();
        let fan_in: usize = shape.iter().skip(1).product::<usize>().max(1);
        let a = (3.0 / fan_in as f32).sqrt();
        let v = if name.ends_with("running_var") {
            rng.uniform_vec(n, 0.5, 1.5)
        } else if name.ends_with("running_mean") || name.ends_with(".bias") {
            rng.uniform_vec(n, -0.1, 0.1)
        } else {
            rng.uniform_vec(n, -a, a)
        };
        store.insert(name, shape, v);
    }
    store
        .metadata
        .insert("spade_config".into(), serde_json::to_string(cfg)?);
    Ok(store)
}
