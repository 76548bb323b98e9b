// GroupNorm (torch.nn.GroupNorm) on x: [N, C, *spatial] (NCHW for images), HW = the spatial size.
// The channels split into G groups of C/G; group g of sample n is one contiguous run of
// (C/G)·HW values, normalised by its own mean and biased variance.
//   group_stats: one workgroup per (n, g) run: two-pass mean / biased variance with a
//                shared-memory tree reduction; writes stats[2k] = mean, stats[2k+1] =
//                1/sqrt(var + eps) for k = n·G + g.
//   group_apply: y = (x - mean) · rstd · gamma[c] + beta[c], then SiLU y·sigmoid(y) if silu != 0
//                (ResnetBlock2D's norm → SiLU in one pass). 1-D over all N·C·HW values.
// Bindings: x, stats [2·N·G] (group_apply reads it), gamma then beta [2·C], out, params.
//   group_stats writes stats to out; group_apply writes y to out.

struct Params { n: u32, c: u32, hw: u32, groups: u32, eps: f32, silu: u32, _p0: u32, _p1: u32 }

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> stats_in: array<f32>;
@group(0) @binding(2) var<storage, read> gamma_beta: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<uniform> p: Params;

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
fn group_stats(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let k = wid.x + wid.y * 65535u;
    // Uniform control flow: every invocation of the group takes the same branch.
    if (k >= p.n * p.groups) { return; }
    let len = (p.c / p.groups) * p.hw;
    let base = k * len;
    var s = 0.0;
    for (var i = lid; i < len; i += 256u) { s += x[base + i]; }
    let mean = reduce_sum(lid, s) / f32(len);
    var q = 0.0;
    for (var i = lid; i < len; i += 256u) { let d = x[base + i] - mean; q += d * d; }
    let var_ = reduce_sum(lid, q) / f32(len);
    if (lid == 0u) {
        out[2u * k] = mean;
        out[2u * k + 1u] = 1.0 / sqrt(var_ + p.eps);
    }
}

@compute @workgroup_size(256)
fn group_apply(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.y * nwg.x * 256u + gid.x;
    if (i >= p.n * p.c * p.hw) { return; }
    let nc = i / p.hw;
    let ch = nc % p.c;
    let k = (nc / p.c) * p.groups + ch / (p.c / p.groups);
    var v = (x[i] - stats_in[2u * k]) * stats_in[2u * k + 1u] * gamma_beta[ch] + gamma_beta[p.c + ch];
    if (p.silu != 0u) { v = v / (1.0 + exp(-v)); }
    out[i] = v;
}
