//! Typed kernel parameters. Every kernel reads its parameters from one uniform struct; on the
//! Rust side that struct is declared with [`kernel_params!`], a `#[repr(C)]` Pod struct whose
//! field names and types are kept beside it, and the first dispatch of a kernel with a params
//! type checks them, by naga reflection of the WGSL source, against the kernel's uniform struct:
//! same fields in the same order with the same scalar types and the same size. A kernel and its
//! Rust caller cannot drift apart silently; the kernel tests run every kernel, so they check
//! every pair.
use anyhow::{Result, anyhow, bail};

/// A kernel's uniform parameters (see the module docs). Declare with [`kernel_params!`].
pub trait KernelParams: bytemuck::Pod {
    /// (field name, scalar type: `u32`, `i32` or `f32`) in declaration order.
    const FIELDS: &'static [(&'static str, &'static str)];
}

/// Declares a `#[repr(C)]` Pod struct of `u32` / `i32` / `f32` fields mirroring a WGSL uniform
/// struct field by field (padding fields included: uniform structs are 16-byte multiples).
#[macro_export]
macro_rules! kernel_params {
    ($(#[$meta:meta])* pub struct $name:ident { $($(#[$fmeta:meta])* pub $field:ident : $ty:ident),* $(,)? }) => {
        $(#[$meta])*
        #[repr(C)]
        #[derive(Clone, Copy, Debug, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
        pub struct $name { $($(#[$fmeta])* pub $field: $ty),* }
        impl $crate::backend::kernel_params::KernelParams for $name {
            const FIELDS: &'static [(&'static str, &'static str)] =
                &[$((stringify!($field), stringify!($ty))),*];
        }
    };
}

/// Checks `P` against the uniform struct of the WGSL `source` (file `file`).
pub fn check<P: KernelParams>(file: &str, source: &str) -> Result<()> {
    let module = naga::front::wgsl::parse_str(source)
        .map_err(|e| anyhow!("{file}: {}", e.emit_to_string(source)))?;
    let Some(var) = module
        .global_variables
        .iter()
        .map(|(_, v)| v)
        .find(|v| v.space == naga::AddressSpace::Uniform)
    else {
        bail!("{file} has no uniform parameter struct");
    };
    let naga::TypeInner::Struct { members, span } = &module.types[var.ty].inner else {
        bail!("{file}: the uniform is not a struct");
    };
    let wgsl: Vec<(String, String)> = members
        .iter()
        .map(|m| {
            let ty = match module.types[m.ty].inner {
                naga::TypeInner::Scalar(naga::Scalar { kind, width: 4 }) => match kind {
                    naga::ScalarKind::Uint => "u32",
                    naga::ScalarKind::Sint => "i32",
                    naga::ScalarKind::Float => "f32",
                    _ => "other",
                },
                _ => "other",
            };
            (m.name.clone().unwrap_or_default(), ty.to_string())
        })
        .collect();
    let rust: Vec<(String, String)> = P::FIELDS
        .iter()
        .map(|(n, t)| (n.to_string(), t.to_string()))
        .collect();
    if wgsl != rust || *span as usize != std::mem::size_of::<P>() {
        bail!(
            "{file}: the Rust params {} ({} bytes) do not match the WGSL uniform struct ({span} bytes): \
             Rust {rust:?}, WGSL {wgsl:?}",
            std::any::type_name::<P>(),
            std::mem::size_of::<P>()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    kernel_params! {
        pub struct Good { pub len: u32, pub op: u32, pub slope: f32, pub _p: u32 }
    }
    kernel_params! {
        pub struct Swapped { pub op: u32, pub len: u32, pub slope: f32, pub _p: u32 }
    }
    kernel_params! {
        pub struct WrongType { pub len: u32, pub op: u32, pub slope: u32, pub _p: u32 }
    }
    kernel_params! {
        pub struct Short { pub len: u32, pub op: u32, pub slope: f32 }
    }

    #[test]
    fn params_are_checked_against_the_wgsl_struct() {
        let src = "struct Params { len: u32, op: u32, slope: f32, _p: u32 }\n\
                   @group(0) @binding(0) var<uniform> p: Params;\n\
                   @compute @workgroup_size(1) fn main() { let x = p.len; }";
        check::<Good>("t.wgsl", src).unwrap();
        for e in [
            check::<Swapped>("t.wgsl", src),
            check::<WrongType>("t.wgsl", src),
            check::<Short>("t.wgsl", src),
        ] {
            let e = e.unwrap_err().to_string();
            assert!(e.contains("t.wgsl") && e.contains("do not match"), "{e}");
        }
    }
}
