// Parameter-free normalisation.
//   instance_stats: one workgroup per (n, c) plane; two-pass mean / biased variance with a
//                   shared-memory tree reduction; writes scale = 1/sqrt(var+eps), shift = -mean*scale.
//   channel_affine: y = fma(x, scale[i], shift[i]) with i = c (batch norm, running statistics
//                   folded on the host) or i = n*C + c (instance norm, per-sample statistics).
//   layer_norm:     one workgroup per row of c values (n rows): y = (x - mean) / sqrt(var + eps)
//                   * gamma + beta (PyTorch nn.LayerNorm over the last dimension).
// Bindings: instance_stats: x, -, out = stats [2*N*C] (scale then shift);
//           channel_affine: x, stats [2*K] (scale[K] then shift[K]), y;
//           layer_norm: x [n, c], gamma then beta [2*c], y.

struct Params { n: u32, c: u32, hw: u32, per_sample: u32, eps: f32, _p0: u32, _p1: u32, _p2: u32 }

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> stats_in: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;

var<workgroup> red: array<f32, 256>;

fn reduce_sum(lid: u32, v: f32) -> f32 {
    red[lid] = v;
    workgroupBarrier();
    for (var s = 128u; s > 0u; s >>= 1u) {
        if (lid < s) { red[lid] += red[lid + s]; }
        workgroupBarrier();
    }
    let r = red[0];
    workgroupBarrier();
    return r;
}

@compute @workgroup_size(256)
fn instance_stats(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let plane = wid.x + wid.y * 65535u;
    let planes = p.n * p.c;
    // Uniform control flow: every invocation of the group takes the same branch.
    if (plane >= planes) { return; }
    let base = plane * p.hw;
    var s = 0.0;
    for (var i = lid; i < p.hw; i += 256u) { s += x[base + i]; }
    let mean = reduce_sum(lid, s) / f32(p.hw);
    var q = 0.0;
    for (var i = lid; i < p.hw; i += 256u) { let d = x[base + i] - mean; q += d * d; }
    let var_ = reduce_sum(lid, q) / f32(p.hw);
    if (lid == 0u) {
        let scale = 1.0 / sqrt(var_ + p.eps);
        out[plane] = scale;
        out[planes + plane] = -mean * scale;
    }
}

@compute @workgroup_size(256)
fn channel_affine(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.y * nwg.x * 256u + gid.x;
    let total = p.n * p.c * p.hw;
    if (i >= total) { return; }
    let nc = i / p.hw;
    let k = select(nc % p.c, nc, p.per_sample != 0u);
    let nk = select(p.c, p.n * p.c, p.per_sample != 0u);
    out[i] = fma(x[i], stats_in[k], stats_in[nk + k]);
}

@compute @workgroup_size(256)
fn layer_norm(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row = wid.x + wid.y * 65535u;
    if (row >= p.n) { return; }
    let base = row * p.c;
    var s = 0.0;
    for (var i = lid; i < p.c; i += 256u) { s += x[base + i]; }
    let mean = reduce_sum(lid, s) / f32(p.c);
    var q = 0.0;
    for (var i = lid; i < p.c; i += 256u) { let d = x[base + i] - mean; q += d * d; }
    let scale = 1.0 / sqrt(reduce_sum(lid, q) / f32(p.c) + p.eps);
    for (var i = lid; i < p.c; i += 256u) {
        out[base + i] = (x[base + i] - mean) * scale * stats_in[i] + stats_in[p.c + i];
    }
}
