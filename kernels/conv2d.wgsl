// conv2d: implicit-GEMM convolution, register-blocked, no shared memory.
//
// Each invocation computes a 4 (output channels) x 4 (consecutive output pixels) tile:
// for every reduction index k = (ci, ky, kx) it loads one vec4 of weights (4 output channels,
// contiguous because the weights are packed [K][cout4] on upload) and 4 input values, and does
// 16 multiply-adds. Out-of-image taps read 0 (zero padding). Any kernel size, stride, padding.
//
// Bindings: x [N, Cin, H, W] f32; wt [K][cout4] vec4; bias [cout4] vec4 (ignored if has_bias=0);
// y [N, Cout, OH, OW] f32.

struct Params {
    n: u32, cin: u32, h: u32, w: u32,
    cout: u32, oh: u32, ow: u32, cout4: u32,
    kh: u32, kw: u32, stride: u32, pad: u32,
    has_bias: u32, _p0: u32, _p1: u32, _p2: u32,
}

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> wt: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> bias: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
@group(0) @binding(4) var<uniform> p: Params;

// Input value at (iy, ix) of channel plane `base`, or 0 outside the image.
fn tap(base: u32, iy: i32, ix: i32) -> f32 {
    let inside = iy >= 0 && iy < i32(p.h) && ix >= 0 && ix < i32(p.w);
    let idx = select(0u, base + u32(iy) * p.w + u32(ix), inside);
    return select(0.0, x[idx], inside);
}

@compute @workgroup_size(8, 8, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let co4 = gid.x;
    let npix = p.oh * p.ow;
    let q0 = gid.y * 4u;
    let n = gid.z;
    if (co4 >= p.cout4 || q0 >= npix || n >= p.n) {
        return;
    }
    // Top-left input coordinate of each of the 4 output pixels (pixels past the end are computed
    // on a clamped position and never written).
    let q1 = min(q0 + 1u, npix - 1u);
    let q2 = min(q0 + 2u, npix - 1u);
    let q3 = min(q0 + 3u, npix - 1u);
    let s = i32(p.stride);
    let pd = i32(p.pad);
    let y0 = i32(q0 / p.ow) * s - pd; let x0 = i32(q0 % p.ow) * s - pd;
    let y1 = i32(q1 / p.ow) * s - pd; let x1 = i32(q1 % p.ow) * s - pd;
    let y2 = i32(q2 / p.ow) * s - pd; let x2 = i32(q2 % p.ow) * s - pd;
    let y3 = i32(q3 / p.ow) * s - pd; let x3 = i32(q3 % p.ow) * s - pd;

    var a0 = vec4<f32>(0.0);
    var a1 = vec4<f32>(0.0);
    var a2 = vec4<f32>(0.0);
    var a3 = vec4<f32>(0.0);
    let hw = p.h * p.w;
    var widx = co4;
    for (var ci = 0u; ci < p.cin; ci++) {
        let base = (n * p.cin + ci) * hw;
        for (var ky = 0; ky < i32(p.kh); ky++) {
            for (var kx = 0; kx < i32(p.kw); kx++) {
                let wv = wt[widx];
                widx += p.cout4;
                a0 += wv * tap(base, y0 + ky, x0 + kx);
                a1 += wv * tap(base, y1 + ky, x1 + kx);
                a2 += wv * tap(base, y2 + ky, x2 + kx);
                a3 += wv * tap(base, y3 + ky, x3 + kx);
            }
        }
    }
    if (p.has_bias != 0u) {
        let b = bias[co4];
        a0 += b; a1 += b; a2 += b; a3 += b;
    }
    let ybase = n * p.cout * npix;
    for (var i = 0u; i < 4u; i++) {
        let co = co4 * 4u + i;
        if (co < p.cout) {
            let o = ybase + co * npix + q0;
            y[o] = a0[i];
            if (q0 + 1u < npix) { y[o + 1u] = a1[i]; }
            if (q0 + 2u < npix) { y[o + 2u] = a2[i]; }
            if (q0 + 3u < npix) { y[o + 3u] = a3[i]; }
        }
    }
}
