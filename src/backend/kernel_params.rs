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
    /// (field name, type) in declaration order: `u32`, `i32`, `f32`, or `[T; N]` for a WGSL
    /// `vecN<T>` or an `array<vecK<T>, M>` with K·M = N (uniform arrays have 16-byte elements).
    const FIELDS: &'static [(&'static str, &'static str)];
}

/// Declares a `#[repr(C)]` Pod struct of `u32` / `i32` / `f32` fields (and arrays of them for WGSL
/// vectors and arrays of vectors) mirroring a WGSL uniform struct field by field, padding fields
/// included (uniform structs are 16-byte multiples).
#[macro_export]
macro_rules! kernel_params {
    ($(#[$meta:meta])* pub struct $name:ident { $($(#[$fmeta:meta])* pub $field:ident : $ty:ty),* $(,)? }) => {
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
            let ty = wgsl_type(&module, m.ty);
            (m.name.clone().unwrap_or_default(), ty)
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

/// A WGSL type as the Rust type of the same bytes: `u32`, `[f32; 4]` for `vec4<f32>`,
/// `[u32; 8]` for `array<vec4<u32>, 2>`; anything else is named as unsupported.
fn wgsl_type(module: &naga::Module, ty: naga::Handle<naga::Type>) -> String {
    let scalar = |s: naga::Scalar| match (s.kind, s.width) {
        (naga::ScalarKind::Uint, 4) => "u32",
        (naga::ScalarKind::Sint, 4) => "i32",
        (naga::ScalarKind::Float, 4) => "f32",
        _ => "unsupported",
    };
    match &module.types[ty].inner {
        naga::TypeInner::Scalar(s) => scalar(*s).to_string(),
        naga::TypeInner::Vector { size, scalar: s } => format!("[{}; {}]", scalar(*s), *size as u8),
        naga::TypeInner::Array {
            base,
            size: naga::ArraySize::Constant(n),
            ..
        } => match &module.types[*base].inner {
            naga::TypeInner::Vector { size, scalar: s } => {
                format!("[{}; {}]", scalar(*s), *size as u32 * n.get())
            }
            naga::TypeInner::Scalar(s) => format!("[{}; {}]", scalar(*s), n.get()),
            _ => "unsupported".into(),
        },
        _ => "unsupported".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    kernel_params! {
        pub struct Good { pub len: u32, pub op: u32, pub slope: f32, pub _p: u32, pub shape: [u32; 8] }
    }
    kernel_params! {
        pub struct Swapped { pub op: u32, pub len: u32, pub slope: f32, pub _p: u32, pub shape: [u32; 8] }
    }
    kernel_params! {
        pub struct WrongType { pub len: u32, pub op: u32, pub slope: f32, pub _p: u32, pub shape: [f32; 8] }
    }
    kernel_params! {
        pub struct Short { pub len: u32, pub op: u32, pub slope: f32, pub _p: u32, pub shape: [u32; 4] }
    }

    #[test]
    fn params_are_checked_against_the_wgsl_struct() {
        let src = "struct Params { len: u32, op: u32, slope: f32, _p: u32, shape: array<vec4<u32>, 2> }\n\
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
