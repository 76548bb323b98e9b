// onehot_conv: a stride-1 convolution whose input is a one-hot label map (+ an optional 0/1
// instance-edge channel), computed as a gather (SPADE_SPEC §6): for each output pixel and tap,
// add the weight column of the tap's label instead of multiplying 0s and 1s.
//   out[co, y, x] = bias[co] + sum_{taps in image} ( W[co, label(y', x'), tap] + edge(y', x') * W[co, edge_ch, tap] )
// With relu = 1 the output is max(0, ·) (SPADE's mlp_shared is conv → ReLU).
// Input seg: [2, H, W] f32 — channel 0 the label channel index (exact small integers), channel 1
// the edge bit. Weights packed [tap][channel][cout4] as vec4. Same result as conv2d on the dense
// one-hot up to summation order.

struct Params {
    h: u32, w: u32, channels: u32, cout: u32,
    cout4: u32, kh: u32, kw: u32, pad: u32,
    has_edge: u32, edge_ch: u32, relu: u32, _p1: u32,
}

@group(0) @binding(0) var<storage, read> seg: array<f32>;
@group(0) @binding(1) var<storage, read> wt: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> bias: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
@group(0) @binding(4) var<uniform> p: Params;

@compute @workgroup_size(4, 64, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let co4 = gid.x;
    let q = gid.y + gid.z * 65535u * 64u;
    let hw = p.h * p.w;
    if (co4 >= p.cout4 || q >= hw) {
        return;
    }
    let oy = i32(q / p.w);
    let ox = i32(q % p.w);
    var acc = bias[co4];
    for (var ky = 0; ky < i32(p.kh); ky++) {
        let iy = oy + ky - i32(p.pad);
        if (iy < 0 || iy >= i32(p.h)) { continue; }
        for (var kx = 0; kx < i32(p.kw); kx++) {
            let ix = ox + kx - i32(p.pad);
            if (ix < 0 || ix >= i32(p.w)) { continue; }
            let src = u32(iy) * p.w + u32(ix);
            let tap = u32(ky) * p.kw + u32(kx);
            let label = min(u32(seg[src]), p.channels - 1u);
            acc += wt[(tap * p.channels + label) * p.cout4 + co4];
            if (p.has_edge != 0u && seg[hw + src] > 0.5) {
                acc += wt[(tap * p.channels + p.edge_ch) * p.cout4 + co4];
            }
        }
    }
    if (p.relu != 0u) {
        acc = max(acc, vec4<f32>(0.0));
    }
    for (var i = 0u; i < 4u; i++) {
        let co = co4 * 4u + i;
        if (co < p.cout) {
            y[co * hw + q] = acc[i];
        }
    }
}
