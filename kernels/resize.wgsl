// Nearest-neighbour resize of NCHW f32 tensors, with the two rules SPADE needs:
//   rule 0 (torch F.interpolate 'nearest', also 2x upsample): src = min(floor(dst * (in/out)), in-1),
//          with the scale computed in f32 as PyTorch does;
//   rule 1 (PIL Image.NEAREST, center-aligned): src = floor((dst + 0.5) * in / out), evaluated exactly
//          in integers as floor((2*dst + 1) * in / (2*out)).

struct Params { planes: u32, ih: u32, iw: u32, oh: u32, ow: u32, rule: u32, _p0: u32, _p1: u32 }

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;
@group(0) @binding(2) var<uniform> p: Params;

fn src_index(d: u32, i: u32, o: u32) -> u32 {
    if (p.rule == 0u) {
        let scale = f32(i) / f32(o);
        return min(u32(floor(f32(d) * scale)), i - 1u);
    }
    return min(((2u * d + 1u) * i) / (2u * o), i - 1u);
}

@compute @workgroup_size(256)
fn nearest(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = gid.y * nwg.x * 256u + gid.x;
    let ohw = p.oh * p.ow;
    if (idx >= p.planes * ohw) { return; }
    let plane = idx / ohw;
    let r = idx % ohw;
    let sy = src_index(r / p.ow, p.ih, p.oh);
    let sx = src_index(r % p.ow, p.iw, p.ow);
    y[idx] = x[(plane * p.ih + sy) * p.iw + sx];
}
