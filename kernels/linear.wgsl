// linear: y[n, o] = sum_i x[n, i] * w[o, i] + bias[o]   (PyTorch nn.Linear, weight [out, in]).
// Register-blocked like conv2d1x1: one invocation computes 4 vec4s of outputs (16 features) for 4
// rows; the weights are packed [in][out4] as vec4 on upload (out padded to a multiple of 16), so
// per input feature it loads 4 weight vec4s and 4 row values and does 64 multiply-adds.

struct Params { n: u32, fin: u32, fout: u32, has_bias: u32, fout4: u32, _p0: u32, _p1: u32, _p2: u32 }

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> wt: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> bias: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
@group(0) @binding(4) var<uniform> p: Params;

@compute @workgroup_size(8, 8, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let o4 = gid.x * 4u;
    let r0 = gid.y * 4u;
    if (o4 >= p.fout4 || r0 >= p.n) { return; }
    let xb0 = min(r0 + 0u, p.n - 1u) * p.fin;
    let xb1 = min(r0 + 1u, p.n - 1u) * p.fin;
    let xb2 = min(r0 + 2u, p.n - 1u) * p.fin;
    let xb3 = min(r0 + 3u, p.n - 1u) * p.fin;
    var a0_0 = vec4<f32>(0.0); var a0_1 = vec4<f32>(0.0); var a0_2 = vec4<f32>(0.0); var a0_3 = vec4<f32>(0.0);
    var a1_0 = vec4<f32>(0.0); var a1_1 = vec4<f32>(0.0); var a1_2 = vec4<f32>(0.0); var a1_3 = vec4<f32>(0.0);
    var a2_0 = vec4<f32>(0.0); var a2_1 = vec4<f32>(0.0); var a2_2 = vec4<f32>(0.0); var a2_3 = vec4<f32>(0.0);
    var a3_0 = vec4<f32>(0.0); var a3_1 = vec4<f32>(0.0); var a3_2 = vec4<f32>(0.0); var a3_3 = vec4<f32>(0.0);
    var widx = o4;
    for (var k = 0u; k < p.fin; k++) {
        let w0 = wt[widx + 0u];
        let w1 = wt[widx + 1u];
        let w2 = wt[widx + 2u];
        let w3 = wt[widx + 3u];
        widx += p.fout4;
        let t0 = x[xb0 + k];
        let t1 = x[xb1 + k];
        let t2 = x[xb2 + k];
        let t3 = x[xb3 + k];
        a0_0 += w0 * t0; a0_1 += w0 * t1; a0_2 += w0 * t2; a0_3 += w0 * t3;
        a1_0 += w1 * t0; a1_1 += w1 * t1; a1_2 += w1 * t2; a1_3 += w1 * t3;
        a2_0 += w2 * t0; a2_1 += w2 * t1; a2_2 += w2 * t2; a2_3 += w2 * t3;
        a3_0 += w3 * t0; a3_1 += w3 * t1; a3_2 += w3 * t2; a3_3 += w3 * t3;
    }
    if (p.has_bias != 0u) {
        let b0 = bias[o4 + 0u];
        a0_0 += b0; a0_1 += b0; a0_2 += b0; a0_3 += b0;
        let b1 = bias[o4 + 1u];
        a1_0 += b1; a1_1 += b1; a1_2 += b1; a1_3 += b1;
        let b2 = bias[o4 + 2u];
        a2_0 += b2; a2_1 += b2; a2_2 += b2; a2_3 += b2;
        let b3 = bias[o4 + 3u];
        a3_0 += b3; a3_1 += b3; a3_2 += b3; a3_3 += b3;
    }
    for (var i = 0u; i < 4u; i++) {
        let o0 = (o4 + 0u) * 4u + i;
        if (o0 < p.fout) {
            { y[(r0 + 0u) * p.fout + o0] = a0_0[i]; }
            if (r0 + 1u < p.n) { y[(r0 + 1u) * p.fout + o0] = a0_1[i]; }
            if (r0 + 2u < p.n) { y[(r0 + 2u) * p.fout + o0] = a0_2[i]; }
            if (r0 + 3u < p.n) { y[(r0 + 3u) * p.fout + o0] = a0_3[i]; }
        }
        let o1 = (o4 + 1u) * 4u + i;
        if (o1 < p.fout) {
            { y[(r0 + 0u) * p.fout + o1] = a1_0[i]; }
            if (r0 + 1u < p.n) { y[(r0 + 1u) * p.fout + o1] = a1_1[i]; }
            if (r0 + 2u < p.n) { y[(r0 + 2u) * p.fout + o1] = a1_2[i]; }
            if (r0 + 3u < p.n) { y[(r0 + 3u) * p.fout + o1] = a1_3[i]; }
        }
        let o2 = (o4 + 2u) * 4u + i;
        if (o2 < p.fout) {
            { y[(r0 + 0u) * p.fout + o2] = a2_0[i]; }
            if (r0 + 1u < p.n) { y[(r0 + 1u) * p.fout + o2] = a2_1[i]; }
            if (r0 + 2u < p.n) { y[(r0 + 2u) * p.fout + o2] = a2_2[i]; }
            if (r0 + 3u < p.n) { y[(r0 + 3u) * p.fout + o2] = a2_3[i]; }
        }
        let o3 = (o4 + 3u) * 4u + i;
        if (o3 < p.fout) {
            { y[(r0 + 0u) * p.fout + o3] = a3_0[i]; }
            if (r0 + 1u < p.n) { y[(r0 + 1u) * p.fout + o3] = a3_1[i]; }
            if (r0 + 2u < p.n) { y[(r0 + 2u) * p.fout + o3] = a3_2[i]; }
            if (r0 + 3u < p.n) { y[(r0 + 3u) * p.fout + o3] = a3_3[i]; }
        }
    }
}
