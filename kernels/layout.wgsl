// Layout: an N-d strided copy (rank ≤ 6) that permute, concat, narrow / chunk and zero padding are
// all built on (src/ops/layout.rs plans the strides).
//   copy: for every coordinate c of the view shape[0..rank] (row-major, last fastest):
//           y[dst_base + Σ c_d · dst_stride_d] = x[src_base + Σ (c_d - lo_d) · src_stride_d]
//         when lo_d ≤ c_d < lo_d + size_d in every dim, else 0 (zero padding around the source).
// One invocation per view element; the 1-D index is rebuilt from a 2-D grid of 256-wide
// workgroups, as in elementwise.wgsl. Bindings: x, y, params.

struct Params {
    len: u32, rank: u32, src_base: u32, dst_base: u32,
    shape: array<vec4<u32>, 2>,
    src_stride: array<vec4<u32>, 2>,
    dst_stride: array<vec4<u32>, 2>,
    lo: array<vec4<u32>, 2>,
    size: array<vec4<u32>, 2>,
}

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;
@group(0) @binding(2) var<uniform> p: Params;

@compute @workgroup_size(256)
fn copy(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.y * nwg.x * 256u + gid.x;
    if (i >= p.len) { return; }
    var rem = i;
    var src = p.src_base;
    var dst = p.dst_base;
    var inside = true;
    for (var d = p.rank; d > 0u; d--) {
        let k = d - 1u;
        let n = p.shape[k / 4u][k % 4u];
        let c = rem % n;
        rem = rem / n;
        dst += c * p.dst_stride[k / 4u][k % 4u];
        let lo = p.lo[k / 4u][k % 4u];
        if (c < lo || c >= lo + p.size[k / 4u][k % 4u]) {
            inside = false;
        } else {
            src += (c - lo) * p.src_stride[k / 4u][k % 4u];
        }
    }
    if (inside) {
        y[dst] = x[src];
    } else {
        y[dst] = 0.0;
    }
}
