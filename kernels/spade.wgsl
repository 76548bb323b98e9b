// SPADE modulation, fused with the parameter-free norm and the optional leaky-ReLU:
//   n   = fma(x, scale[k], shift[k])          (k = c for batch norm, n*C + c for instance norm)
//   out = n * (1 + gamma) + beta              (gamma, beta = the two halves of gb [N, 2C, H, W])
//   out = leaky_relu(out, slope)              (if act != 0)
// The arithmetic order matches PyTorch's eager `normalized * (1 + gamma) + beta`.

struct Params { n: u32, c: u32, hw: u32, per_sample: u32, act: u32, slope: f32, _p0: u32, _p1: u32 }

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> stats: array<f32>;
@group(0) @binding(2) var<storage, read> gb: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
@group(0) @binding(4) var<uniform> p: Params;

@compute @workgroup_size(256)
fn modulate(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.y * nwg.x * 256u + gid.x;
    let total = p.n * p.c * p.hw;
    if (i >= total) { return; }
    let nc = i / p.hw;
    let s = i % p.hw;
    let n = nc / p.c;
    let c = nc % p.c;
    let k = select(c, nc, p.per_sample != 0u);
    let nk = select(p.c, p.n * p.c, p.per_sample != 0u);
    let normed = fma(x[i], stats[k], stats[nk + k]);
    let g = gb[(n * 2u * p.c + c) * p.hw + s];
    let b = gb[(n * 2u * p.c + p.c + c) * p.hw + s];
    var v = normed * (1.0 + g) + b;
    if (p.act != 0u) { v = select(v * p.slope, v, v > 0.0); }
    y[i] = v;
}
