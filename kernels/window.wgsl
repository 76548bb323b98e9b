// window: paste a box of one NCHW-plane stack into another, in place (the SIGE-style partial
// recompute of SPADE's gamma/beta: a window is recomputed, and its valid part pasted back).
//
//   y[c, dy0 + r, dx0 + q] = x[c, sy0 + r, sx0 + q]   for c < planes, r < bh, q < bw
//
// x is [planes, sh, sw], y is [planes, dh, dw]; everything outside the box keeps its value.

struct Params {
    planes: u32, bh: u32, bw: u32, _p0: u32,
    sh: u32, sw: u32, sy0: u32, sx0: u32,
    dh: u32, dw: u32, dy0: u32, dx0: u32,
}

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;
@group(0) @binding(2) var<uniform> p: Params;

@compute @workgroup_size(256)
fn paste(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = gid.y * nwg.x * 256u + gid.x;
    let area = p.bh * p.bw;
    if (idx >= p.planes * area) { return; }
    let c = idx / area;
    let r = (idx % area) / p.bw;
    let q = idx % p.bw;
    y[(c * p.dh + p.dy0 + r) * p.dw + p.dx0 + q] = x[(c * p.sh + p.sy0 + r) * p.sw + p.sx0 + q];
}
