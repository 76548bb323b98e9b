// attention: out = softmax(q · kᵀ · scale + bias [+ causal mask]) · v, per head
//   (PyTorch F.scaled_dot_product_attention on [B, H, L, D] views of [B, L, H·D] rows).
// q: [B, Lq, H·D], k, v: [B, Lk, H·D], bias: [B, Lk] added to every query's scores (a key
// padding mask: 0 or a large negative number), out: [B, Lq, H·D]. D is a multiple of 4, ≤ 128.
//
// One invocation owns one query row of one head and streams the keys with an online softmax
// (flash-attention style): its q row and output accumulator stay in registers, and nothing of
// size Lq×Lk is ever stored, so the 4096-token self-attention of a 64² UNet level needs no more
// memory than its inputs. A workgroup's 64 invocations are 64 queries of the same head: every
// key and value load is the same address across the workgroup (uniform), with no shared memory
// and no barriers. Keys go 4 at a time: 4 dot products, one max/rescale, 4 value updates.

struct Params {
    lq: u32, lk: u32, heads: u32, d4: u32,
    flags: u32,      // bit 0: causal (key j visible to query i iff j <= i); bit 1: bias present
    scale: f32,
    _p0: u32, _p1: u32,
}

const MAXD4: u32 = 32u;
const NEG: f32 = -3.0e38;

@group(0) @binding(0) var<storage, read> q: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> k: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> v: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<vec4<f32>>;
@group(0) @binding(5) var<uniform> p: Params;

@compute @workgroup_size(64, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let i = gid.x;
    let h = wid.y;
    let b = wid.z;
    if (i >= p.lq) { return; }
    let row4 = p.heads * p.d4;
    let qbase = (b * p.lq + i) * row4 + h * p.d4;
    var qr: array<vec4<f32>, MAXD4>;
    var acc: array<vec4<f32>, MAXD4>;
    for (var t = 0u; t < p.d4; t++) {
        qr[t] = q[qbase + t] * p.scale;
        acc[t] = vec4<f32>(0.0);
    }
    var n = p.lk;
    if ((p.flags & 1u) != 0u) { n = min(p.lk, i + 1u); }
    let has_bias = (p.flags & 2u) != 0u;
    let kv0 = b * p.lk * row4 + h * p.d4;
    var m = NEG;
    var l = 0.0;
    for (var j0 = 0u; j0 < n; j0 += 4u) {
        // Rows past the last visible key are clamped for the load and masked out below.
        let j1 = min(j0 + 1u, n - 1u);
        let j2 = min(j0 + 2u, n - 1u);
        let j3 = min(j0 + 3u, n - 1u);
        let b0 = kv0 + j0 * row4;
        let b1 = kv0 + j1 * row4;
        let b2 = kv0 + j2 * row4;
        let b3 = kv0 + j3 * row4;
        var s = vec4<f32>(0.0);
        for (var t = 0u; t < p.d4; t++) {
            let qt = qr[t];
            s += vec4<f32>(dot(qt, k[b0 + t]), dot(qt, k[b1 + t]), dot(qt, k[b2 + t]), dot(qt, k[b3 + t]));
        }
        if (has_bias) {
            let bb = b * p.lk;
            s += vec4<f32>(bias[bb + j0], bias[bb + j1], bias[bb + j2], bias[bb + j3]);
        }
        let valid = vec4<bool>(true, j0 + 1u < n, j0 + 2u < n, j0 + 3u < n);
        s = select(vec4<f32>(NEG), s, valid);
        let m_new = max(m, max(max(s.x, s.y), max(s.z, s.w)));
        let corr = exp(m - m_new);
        let e = select(vec4<f32>(0.0), exp(s - vec4<f32>(m_new)), valid);
        l = l * corr + (e.x + e.y) + (e.z + e.w);
        m = m_new;
        for (var t = 0u; t < p.d4; t++) {
            acc[t] = acc[t] * corr + e.x * v[b0 + t] + e.y * v[b1 + t] + e.z * v[b2 + t] + e.w * v[b3 + t];
        }
    }
    // A row whose every score is -inf (all keys masked) has l = 0: it outputs 0.
    let inv = select(0.0, 1.0 / l, l > 0.0);
    for (var t = 0u; t < p.d4; t++) {
        out[qbase + t] = acc[t] * inv;
    }
}
