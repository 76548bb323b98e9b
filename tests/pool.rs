//! The device buffer pool: size classes, reuse, and the bound on what it holds.
mod common;
use spadework::backend::Device;
use spadework::backend::gpu::size_class;

#[test]
fn size_classes_waste_at_most_an_eighth() {
    for b in (1..5000u64).chain([1 << 20, (1 << 20) + 1, 3 << 22, 12_345_678, 67_108_864]) {
        let c = size_class(b);
        assert!(c >= b && c.is_multiple_of(16), "{b} -> {c}");
        assert!(
            c <= (b.max(16) + b.max(16) / 8).max(16).div_ceil(16) * 16,
            "{b} -> {c}"
        );
        assert_eq!(size_class(c), c, "a class is its own class ({b} -> {c})");
    }
}

/// A SPADE-like pass: the working set grows level by level (sizes double), then everything is
/// freed and the pass repeats. The pool never holds more than the most bytes live at once.
#[test]
fn pool_holds_no_more_than_the_live_peak() {
    let Some(Device::Gpu(ctx)) = common::gpu() else {
        return;
    };
    ctx.sync().unwrap();
    ctx.trim_pool();
    ctx.reset_mem_stats();
    let base = ctx.mem_stats().live;
    let mut max_live = 0;
    for _pass in 0..3 {
        let mut carry = None;
        for lv in 0..5u64 {
            let bytes = 4096 << lv;
            // Three buffers of this level live at once beside the one carried from the last.
            let bufs: Vec<_> = (0..3).map(|_| ctx.alloc(bytes).unwrap()).collect();
            max_live = max_live.max(ctx.mem_stats().live - base);
            drop(bufs);
            carry = Some(ctx.alloc(bytes).unwrap());
        }
        drop(carry);
    }
    let st = ctx.mem_stats();
    assert!(
        st.peak - base <= max_live,
        "pool held {} B at peak; the most live at once was {max_live} B",
        st.peak - base
    );
    assert_eq!(st.largest, [size_class(4096 << 4); 2]);
}
