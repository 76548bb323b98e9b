// Elementwise ops over flat f32 arrays. The 1-D index is rebuilt from a 2-D grid of 256-wide
// workgroups so that tensors above 65535*256 elements still fit the dispatch limits.
//   unary: op 0 = ReLU, 1 = leaky-ReLU(slope), 2 = tanh, 3 = quick GELU x*sigmoid(1.702 x)
//          (OpenAI CLIP), 4 = GELU x/2 (1 + erf(x / sqrt 2))      (reads a; b is bound but unused)
//   add:   y = a + b

struct Params { len: u32, op: u32, slope: f32, _p: u32 }

@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;

fn flat(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.y * nwg.x * 256u + gid.x;
}

// tanh that saturates cleanly for large |v| (no inf/inf), accurate to ~1e-7 absolute.
fn tanh_safe(v: f32) -> f32 {
    let e = exp(-2.0 * min(abs(v), 40.0));
    return sign(v) * (1.0 - e) / (1.0 + e);
}

// erf by Abramowitz & Stegun 7.1.26 (|error| <= 1.5e-7); the CPU twin uses the same formula.
fn erf_as(v: f32) -> f32 {
    let t = 1.0 / (1.0 + 0.3275911 * abs(v));
    let poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))));
    return sign(v) * (1.0 - poly * exp(-v * v));
}

@compute @workgroup_size(256)
fn unary(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i >= p.len) { return; }
    let v = a[i];
    var r: f32;
    switch p.op {
        case 0u: { r = max(v, 0.0); }
        case 1u: { r = select(v * p.slope, v, v > 0.0); }
        case 3u: { r = v / (1.0 + exp(-1.702 * v)); }
        case 4u: { r = 0.5 * v * (1.0 + erf_as(v * 0.70710678)); }
        default: { r = tanh_safe(v); }
    }
    y[i] = r;
}

@compute @workgroup_size(256)
fn add(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i >= p.len) { return; }
    y[i] = a[i] + b[i];
}
