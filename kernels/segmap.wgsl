// The generator's input map.
//   one_hot: out[c, y, x] = 1.0 if label[y, x] == c else 0.0, for channels c < classes
//            (labels are u32 ids, already checked < classes on the host).
//   edges:   out[edge_ch, y, x] = 1.0 if any in-image 4-neighbour has a different instance id
//            (NVlabs get_edges: symmetric, no diagonals, no border padding), else 0.0.
// Binding 0 holds the u32 label ids (one_hot) or instance ids (edges); out is [channels, H, W].

struct Params { h: u32, w: u32, classes: u32, edge_ch: u32 }

@group(0) @binding(0) var<storage, read> ids: array<u32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<uniform> p: Params;

@compute @workgroup_size(256)
fn one_hot(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.y * nwg.x * 256u + gid.x;
    let hw = p.h * p.w;
    if (i >= hw * p.classes) { return; }
    let c = i / hw;
    let s = i % hw;
    out[i] = select(0.0, 1.0, ids[s] == c);
}

@compute @workgroup_size(256)
fn edges(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.y * nwg.x * 256u + gid.x;
    let hw = p.h * p.w;
    if (i >= hw) { return; }
    let yy = i / p.w;
    let xx = i % p.w;
    let v = ids[i];
    var e = false;
    if (xx > 0u) { e = e || ids[i - 1u] != v; }
    if (xx + 1u < p.w) { e = e || ids[i + 1u] != v; }
    if (yy > 0u) { e = e || ids[i - p.w] != v; }
    if (yy + 1u < p.h) { e = e || ids[i + p.w] != v; }
    out[p.edge_ch * hw + i] = select(0.0, 1.0, e);
}
