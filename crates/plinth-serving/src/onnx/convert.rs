//! Between plinth's tensors and ONNX Runtime's values: element types, the graph's declared
//! inputs and outputs, borrowed views of request data as inputs (no copy), and owned copies of
//! outputs.

use std::path::Path;

use ort::session::SessionInputValue;
use ort::value::{DynValue, Outlet, PrimitiveTensorElementType, TensorElementType, TensorRef, ValueType};

use crate::onnx::LoadError;
use crate::tensor::{Data, DataType, Tensor, TensorSpec};

/// Whether an outlet is one of the graph's inputs or outputs, for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    Input,
    Output,
}

impl Role {
    fn as_str(self) -> &'static str {
        match self {
            Role::Input => "input",
            Role::Output => "output",
        }
    }
}

/// The datatype of an ONNX element type, or why it is not served.
fn datatype(ty: TensorElementType) -> Result<DataType, String> {
    Ok(match ty {
        TensorElementType::Bool => DataType::Bool,
        TensorElementType::Uint8 => DataType::U8,
        TensorElementType::Uint16 => DataType::U16,
        TensorElementType::Uint32 => DataType::U32,
        TensorElementType::Uint64 => DataType::U64,
        TensorElementType::Int8 => DataType::I8,
        TensorElementType::Int16 => DataType::I16,
        TensorElementType::Int32 => DataType::I32,
        TensorElementType::Int64 => DataType::I64,
        TensorElementType::Float32 => DataType::F32,
        TensorElementType::Float64 => DataType::F64,
        TensorElementType::String => return Err("its elements are strings (BYTES), which this runtime does not serve yet".into()),
        TensorElementType::Float16 => {
            return Err("its elements are float16 (FP16), which is not served yet; convert the model to float32".into());
        }
        TensorElementType::Bfloat16 => {
            return Err("its elements are bfloat16 (BF16), which is not served yet; convert the model to float32".into());
        }
        other => return Err(format!("its elements are {other}, which has no datatype in the inference protocol")),
    })
}

/// The spec of one of the graph's inputs or outputs, or why it cannot be served.
pub(crate) fn spec(path: &Path, role: Role, outlet: &Outlet) -> Result<TensorSpec, LoadError> {
    let name = outlet.name().to_owned();
    match outlet.dtype() {
        ValueType::Tensor { ty, shape, .. } => match datatype(*ty) {
            Ok(datatype) => Ok(TensorSpec { name, datatype, shape: shape.iter().copied().collect() }),
            Err(reason) => Err(LoadError::UnsupportedType { path: path.to_path_buf(), role: role.as_str(), name, reason }),
        },
        other => {
            // skl2onnx's classifiers answer probabilities as a sequence of maps by default (ZipMap).
            let zipmap = role == Role::Output && matches!(other, ValueType::Sequence(inner) if matches!(**inner, ValueType::Map { .. }));
            let hint = if zipmap {
                "; a classifier converted by skl2onnx answers its probabilities so (ZipMap): convert it with the option zipmap=False"
            } else {
                ""
            };
            Err(LoadError::NotATensor { path: path.to_path_buf(), role: role.as_str(), name, found: other.to_string(), hint })
        }
    }
}

/// A view of `tensor`'s data as an ONNX Runtime input; the data is not copied.
pub(crate) fn input(tensor: &Tensor) -> Result<SessionInputValue<'_>, String> {
    fn view<T: PrimitiveTensorElementType + std::fmt::Debug + Clone + 'static>(
        shape: Vec<i64>,
        data: &[T],
    ) -> ort::Result<SessionInputValue<'_>> {
        TensorRef::from_array_view((shape, data)).map(SessionInputValue::from)
    }
    let shape = tensor
        .shape
        .iter()
        .map(|d| i64::try_from(*d))
        .collect::<Result<Vec<i64>, _>>()
        .map_err(|_| format!("input '{}' has a dimension too large: {:?}", tensor.name, tensor.shape))?;
    let res = match &tensor.data {
        Data::Bool(v) => view(shape, v),
        Data::U8(v) => view(shape, v),
        Data::U16(v) => view(shape, v),
        Data::U32(v) => view(shape, v),
        Data::U64(v) => view(shape, v),
        Data::I8(v) => view(shape, v),
        Data::I16(v) => view(shape, v),
        Data::I32(v) => view(shape, v),
        Data::I64(v) => view(shape, v),
        Data::F32(v) => view(shape, v),
        Data::F64(v) => view(shape, v),
        Data::Bytes(_) => return Err(format!("input '{}' is BYTES, which this runtime does not serve yet", tensor.name)),
    };
    res.map_err(|e| format!("input '{}' could not be handed to ONNX Runtime: {e}", tensor.name))
}

/// A copy of an output ONNX Runtime answered, as the tensor `spec` declares.
pub(crate) fn output(spec: &TensorSpec, value: &DynValue) -> Result<Tensor, String> {
    fn copy<T: PrimitiveTensorElementType + Clone>(value: &DynValue, wrap: fn(Vec<T>) -> Data) -> ort::Result<(Vec<i64>, Data)> {
        let (shape, data) = value.try_extract_tensor::<T>()?;
        Ok((shape.iter().copied().collect(), wrap(data.to_vec())))
    }
    let res = match spec.datatype {
        DataType::Bool => copy(value, Data::Bool),
        DataType::U8 => copy(value, Data::U8),
        DataType::U16 => copy(value, Data::U16),
        DataType::U32 => copy(value, Data::U32),
        DataType::U64 => copy(value, Data::U64),
        DataType::I8 => copy(value, Data::I8),
        DataType::I16 => copy(value, Data::I16),
        DataType::I32 => copy(value, Data::I32),
        DataType::I64 => copy(value, Data::I64),
        DataType::F32 => copy(value, Data::F32),
        DataType::F64 => copy(value, Data::F64),
        DataType::Bytes => return Err(format!("output '{}' is BYTES, which this runtime does not serve yet", spec.name)),
    };
    let (shape, data) = res.map_err(|e| format!("output '{}' could not be read: {e}", spec.name))?;
    let shape = shape
        .iter()
        .map(|d| usize::try_from(*d))
        .collect::<Result<Vec<usize>, _>>()
        .map_err(|_| format!("output '{}' has a negative dimension: {shape:?}", spec.name))?;
    Tensor::new(spec.name.clone(), shape, data).map_err(|e| e.to_string())
}

/// One row of zeros for `spec`: every variable dimension (-1) taken as 1.
pub(crate) fn zeros(spec: &TensorSpec) -> Result<Tensor, String> {
    let shape: Vec<usize> = spec.shape.iter().map(|d| usize::try_from(*d).unwrap_or(1)).collect();
    let n: usize = shape.iter().product();
    let data = match spec.datatype {
        DataType::Bool => Data::Bool(vec![false; n]),
        DataType::U8 => Data::U8(vec![0; n]),
        DataType::U16 => Data::U16(vec![0; n]),
        DataType::U32 => Data::U32(vec![0; n]),
        DataType::U64 => Data::U64(vec![0; n]),
        DataType::I8 => Data::I8(vec![0; n]),
        DataType::I16 => Data::I16(vec![0; n]),
        DataType::I32 => Data::I32(vec![0; n]),
        DataType::I64 => Data::I64(vec![0; n]),
        DataType::F32 => Data::F32(vec![0.0; n]),
        DataType::F64 => Data::F64(vec![0.0; n]),
        DataType::Bytes => Data::Bytes(vec![Vec::new(); n]),
    };
    Tensor::new(spec.name.clone(), shape, data).map_err(|e| e.to_string())
}
