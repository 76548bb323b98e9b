//! The Python globals a checkpoint may name: `collections.OrderedDict`, the `torch._utils`
//! functions that rebuild tensors and parameters, and the ten `torch.<Type>Storage` classes.
//! Any other global is refused by the pickle machine at the opcode that names it.

use crate::weights::dtype::DType;

/// The only Python globals a checkpoint may reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Global {
    OrderedDict,
    RebuildTensorV2,
    RebuildTensor,
    RebuildParameter,
    RebuildParameterWithState,
    /// `torch.<Type>Storage`: only meaningful inside a storage persistent id.
    Storage(DType),
}

pub(super) const ALLOWED_GLOBALS: &str = "collections.OrderedDict, torch._utils._rebuild_tensor_v2, \
     torch._utils._rebuild_tensor, torch._utils._rebuild_parameter, \
     torch._utils._rebuild_parameter_with_state, torch.{Double,Float,Half,BFloat16,Long,Int,\
     Short,Char,Byte,Bool}Storage";

impl Global {
    pub(super) fn resolve(module: &str, name: &str) -> Option<Global> {
        match (module, name) {
            ("collections", "OrderedDict") => Some(Global::OrderedDict),
            ("torch._utils", "_rebuild_tensor_v2") => Some(Global::RebuildTensorV2),
            ("torch._utils", "_rebuild_tensor") => Some(Global::RebuildTensor),
            ("torch._utils", "_rebuild_parameter") => Some(Global::RebuildParameter),
            ("torch._utils", "_rebuild_parameter_with_state") => {
                Some(Global::RebuildParameterWithState)
            }
            ("torch", _) => DType::ALL
                .into_iter()
                .find(|d| storage_class(*d) == name)
                .map(Global::Storage),
            _ => None,
        }
    }

    pub(super) fn path(self) -> String {
        match self {
            Global::OrderedDict => "collections.OrderedDict".into(),
            Global::RebuildTensorV2 => "torch._utils._rebuild_tensor_v2".into(),
            Global::RebuildTensor => "torch._utils._rebuild_tensor".into(),
            Global::RebuildParameter => "torch._utils._rebuild_parameter".into(),
            Global::RebuildParameterWithState => {
                "torch._utils._rebuild_parameter_with_state".into()
            }
            Global::Storage(d) => format!("torch.{}", storage_class(d)),
        }
    }
}

/// The storage class torch pickles for a dtype (`FloatStorage`, ...).
fn storage_class(d: DType) -> &'static str {
    match d {
        DType::F64 => "DoubleStorage",
        DType::F32 => "FloatStorage",
        DType::F16 => "HalfStorage",
        DType::BF16 => "BFloat16Storage",
        DType::I64 => "LongStorage",
        DType::I32 => "IntStorage",
        DType::I16 => "ShortStorage",
        DType::I8 => "CharStorage",
        DType::U8 => "ByteStorage",
        DType::Bool => "BoolStorage",
    }
}
