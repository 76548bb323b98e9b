// linear: y[n, o] = sum_i x[n, i] * w[o, i] + bias[o]   (PyTorch nn.Linear, weight [out, in]).
// One invocation per output; 4-way unrolled reduction over the input features.

struct Params { n: u32, fin: u32, fout: u32, has_bias: u32 }

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> w: array<f32>;
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
@group(0) @binding(4) var<uniform> p: Params;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let o = gid.x;
    let n = gid.y;
    if (o >= p.fout || n >= p.n) { return; }
    let xb = n * p.fin;
    let wb = o * p.fin;
    var acc = vec4<f32>(0.0);
    var i = 0u;
    for (; i + 4u <= p.fin; i += 4u) {
        acc += vec4<f32>(x[xb + i], x[xb + i + 1u], x[xb + i + 2u], x[xb + i + 3u])
             * vec4<f32>(w[wb + i], w[wb + i + 1u], w[wb + i + 2u], w[wb + i + 3u]);
    }
    var s = (acc.x + acc.y) + (acc.z + acc.w);
    for (; i < p.fin; i++) {
        s += x[xb + i] * w[wb + i];
    }
    if (p.has_bias != 0u) { s += bias[o]; }
    y[n * p.fout + o] = s;
}
