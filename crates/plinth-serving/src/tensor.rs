//! Tensors as the Open Inference Protocol carries them (`design/protocols.md` §4.1): a name, a
//! datatype, a shape and row-major data; and the two operations batching needs, joining requests'
//! tensors along the first (batch) dimension and splitting a batch's outputs back; and
//! `TensorSpec`, what a model declares about a tensor it takes or answers.
//!
//! Datatypes are OIP's names (`BOOL`, `UINT8` … `UINT64`, `INT8` … `INT64`, `FP32`, `FP64`,
//! `BYTES`). `FP16` and `BF16` are recognised and refused as not served yet.

use std::fmt;

/// Most dimensions a tensor may have.
pub const MAX_DIMS: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataType {
    Bool,
    U8,
    U16,
    U32,
    U64,
    I8,
    I16,
    I32,
    I64,
    F32,
    F64,
    Bytes,
}

impl DataType {
    const NAMES: [(&'static str, DataType); 12] = [
        ("BOOL", DataType::Bool),
        ("UINT8", DataType::U8),
        ("UINT16", DataType::U16),
        ("UINT32", DataType::U32),
        ("UINT64", DataType::U64),
        ("INT8", DataType::I8),
        ("INT16", DataType::I16),
        ("INT32", DataType::I32),
        ("INT64", DataType::I64),
        ("FP32", DataType::F32),
        ("FP64", DataType::F64),
        ("BYTES", DataType::Bytes),
    ];

    /// OIP's name of a datatype; half-precision types are named in the error.
    pub fn parse(name: &str) -> Result<DataType, TensorError> {
        if let Some((_, t)) = Self::NAMES.iter().find(|(n, _)| *n == name) {
            return Ok(*t);
        }
        match name {
            "FP16" | "BF16" => Err(TensorError::Unsupported(format!("datatype {name} is not served yet; send FP32"))),
            _ => Err(TensorError::Invalid(format!(
                "unknown datatype '{name}' (one of {})",
                Self::NAMES.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
            ))),
        }
    }

    pub fn as_str(self) -> &'static str {
        Self::NAMES.iter().find(|(_, t)| *t == self).map_or("?", |(n, _)| n)
    }
}

impl fmt::Display for DataType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A tensor's elements, row-major.
#[derive(Debug, Clone, PartialEq)]
pub enum Data {
    Bool(Vec<bool>),
    U8(Vec<u8>),
    U16(Vec<u16>),
    U32(Vec<u32>),
    U64(Vec<u64>),
    I8(Vec<i8>),
    I16(Vec<i16>),
    I32(Vec<i32>),
    I64(Vec<i64>),
    F32(Vec<f32>),
    F64(Vec<f64>),
    Bytes(Vec<Vec<u8>>),
}

/// Applies `$body` to the vector inside `$data`, whatever its element type.
macro_rules! each_kind {
    ($data:expr, $v:ident => $body:expr) => {
        match $data {
            Data::Bool($v) => $body,
            Data::U8($v) => $body,
            Data::U16($v) => $body,
            Data::U32($v) => $body,
            Data::U64($v) => $body,
            Data::I8($v) => $body,
            Data::I16($v) => $body,
            Data::I32($v) => $body,
            Data::I64($v) => $body,
            Data::F32($v) => $body,
            Data::F64($v) => $body,
            Data::Bytes($v) => $body,
        }
    };
}

impl Data {
    pub fn datatype(&self) -> DataType {
        match self {
            Data::Bool(_) => DataType::Bool,
            Data::U8(_) => DataType::U8,
            Data::U16(_) => DataType::U16,
            Data::U32(_) => DataType::U32,
            Data::U64(_) => DataType::U64,
            Data::I8(_) => DataType::I8,
            Data::I16(_) => DataType::I16,
            Data::I32(_) => DataType::I32,
            Data::I64(_) => DataType::I64,
            Data::F32(_) => DataType::F32,
            Data::F64(_) => DataType::F64,
            Data::Bytes(_) => DataType::Bytes,
        }
    }

    pub fn len(&self) -> usize {
        each_kind!(self, v => v.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// An empty vector of this kind, with room for `capacity` elements.
    fn empty_like(&self, capacity: usize) -> Data {
        match self {
            Data::Bool(_) => Data::Bool(Vec::with_capacity(capacity)),
            Data::U8(_) => Data::U8(Vec::with_capacity(capacity)),
            Data::U16(_) => Data::U16(Vec::with_capacity(capacity)),
            Data::U32(_) => Data::U32(Vec::with_capacity(capacity)),
            Data::U64(_) => Data::U64(Vec::with_capacity(capacity)),
            Data::I8(_) => Data::I8(Vec::with_capacity(capacity)),
            Data::I16(_) => Data::I16(Vec::with_capacity(capacity)),
            Data::I32(_) => Data::I32(Vec::with_capacity(capacity)),
            Data::I64(_) => Data::I64(Vec::with_capacity(capacity)),
            Data::F32(_) => Data::F32(Vec::with_capacity(capacity)),
            Data::F64(_) => Data::F64(Vec::with_capacity(capacity)),
            Data::Bytes(_) => Data::Bytes(Vec::with_capacity(capacity)),
        }
    }

    /// Appends `other`'s elements; both are of the same kind (checked by the caller).
    fn extend_from(&mut self, other: &Data) {
        match (self, other) {
            (Data::Bool(a), Data::Bool(b)) => a.extend_from_slice(b),
            (Data::U8(a), Data::U8(b)) => a.extend_from_slice(b),
            (Data::U16(a), Data::U16(b)) => a.extend_from_slice(b),
            (Data::U32(a), Data::U32(b)) => a.extend_from_slice(b),
            (Data::U64(a), Data::U64(b)) => a.extend_from_slice(b),
            (Data::I8(a), Data::I8(b)) => a.extend_from_slice(b),
            (Data::I16(a), Data::I16(b)) => a.extend_from_slice(b),
            (Data::I32(a), Data::I32(b)) => a.extend_from_slice(b),
            (Data::I64(a), Data::I64(b)) => a.extend_from_slice(b),
            (Data::F32(a), Data::F32(b)) => a.extend_from_slice(b),
            (Data::F64(a), Data::F64(b)) => a.extend_from_slice(b),
            (Data::Bytes(a), Data::Bytes(b)) => a.extend_from_slice(b),
            _ => unreachable!("the caller checks that the kinds match"),
        }
    }

    /// Splits into consecutive pieces of `sizes` elements (which add up to `len`).
    fn split_sizes(self, sizes: &[usize]) -> Vec<Data> {
        fn cut<T>(mut v: Vec<T>, sizes: &[usize], wrap: fn(Vec<T>) -> Data) -> Vec<Data> {
            let mut out = Vec::with_capacity(sizes.len());
            for size in sizes.iter().rev() {
                let tail = v.split_off(v.len() - size);
                out.push(wrap(tail));
            }
            out.reverse();
            out
        }
        match self {
            Data::Bool(v) => cut(v, sizes, Data::Bool),
            Data::U8(v) => cut(v, sizes, Data::U8),
            Data::U16(v) => cut(v, sizes, Data::U16),
            Data::U32(v) => cut(v, sizes, Data::U32),
            Data::U64(v) => cut(v, sizes, Data::U64),
            Data::I8(v) => cut(v, sizes, Data::I8),
            Data::I16(v) => cut(v, sizes, Data::I16),
            Data::I32(v) => cut(v, sizes, Data::I32),
            Data::I64(v) => cut(v, sizes, Data::I64),
            Data::F32(v) => cut(v, sizes, Data::F32),
            Data::F64(v) => cut(v, sizes, Data::F64),
            Data::Bytes(v) => cut(v, sizes, Data::Bytes),
        }
    }
}

/// What is wrong with a tensor, or with joining or splitting tensors.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TensorError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Unsupported(String),
}

/// A named tensor: its shape and its elements, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub data: Data,
}

impl Tensor {
    /// A tensor whose data holds exactly as many elements as its shape says.
    pub fn new(name: impl Into<String>, shape: Vec<usize>, data: Data) -> Result<Tensor, TensorError> {
        let name = name.into();
        if shape.len() > MAX_DIMS {
            return Err(TensorError::Invalid(format!("input '{name}' has {} dimensions; at most {MAX_DIMS}", shape.len())));
        }
        let want = shape.iter().try_fold(1usize, |n, d| n.checked_mul(*d));
        match want {
            Some(n) if n == data.len() => Ok(Tensor { name, shape, data }),
            Some(n) => Err(TensorError::Invalid(format!(
                "input '{name}' has shape {shape:?}, which holds {n} elements, but its data has {}",
                data.len()
            ))),
            None => Err(TensorError::Invalid(format!("input '{name}' has a shape too large to hold: {shape:?}"))),
        }
    }

    pub fn datatype(&self) -> DataType {
        self.data.datatype()
    }

    /// The size of the first (batch) dimension; a scalar counts as one row.
    pub fn rows(&self) -> usize {
        self.shape.first().copied().unwrap_or(1)
    }

    /// Joins tensors of one name, datatype and non-batch shape along the first dimension (the
    /// order given is the order of their rows).
    pub fn concat(parts: &[Tensor]) -> Result<Tensor, TensorError> {
        let Some(first) = parts.first() else { return Err(TensorError::Invalid("nothing to join".into())) };
        if first.shape.is_empty() {
            return Err(TensorError::Invalid(format!("input '{}' is a scalar: it has no batch dimension", first.name)));
        }
        let mut rows = 0usize;
        for part in parts {
            if part.name != first.name || part.datatype() != first.datatype() || part.shape.get(1..) != first.shape.get(1..) {
                return Err(TensorError::Invalid(format!(
                    "cannot join '{}' {} {:?} with '{}' {} {:?} along the batch dimension",
                    first.name,
                    first.datatype(),
                    first.shape,
                    part.name,
                    part.datatype(),
                    part.shape
                )));
            }
            rows += part.rows();
        }
        let total = parts.iter().map(|p| p.data.len()).sum();
        let mut data = first.data.empty_like(total);
        for part in parts {
            data.extend_from(&part.data);
        }
        let mut shape = first.shape.clone();
        shape[0] = rows;
        Tensor::new(first.name.clone(), shape, data)
    }

    /// The elements as JSON values, row-major: numbers (non-finite floats as the strings `NaN`,
    /// `Infinity`, `-Infinity`), booleans, and BYTES as strings (lossily, when not UTF-8).
    pub fn json_values(&self) -> Vec<serde_json::Value> {
        use serde_json::Value;
        fn float(v: f64) -> Value {
            if v.is_nan() {
                Value::String("NaN".into())
            } else if v.is_infinite() {
                Value::String(if v > 0.0 { "Infinity" } else { "-Infinity" }.into())
            } else {
                Value::from(v)
            }
        }
        match &self.data {
            Data::Bool(v) => v.iter().map(|b| Value::Bool(*b)).collect(),
            Data::U8(v) => v.iter().map(|x| Value::from(*x)).collect(),
            Data::U16(v) => v.iter().map(|x| Value::from(*x)).collect(),
            Data::U32(v) => v.iter().map(|x| Value::from(*x)).collect(),
            Data::U64(v) => v.iter().map(|x| Value::from(*x)).collect(),
            Data::I8(v) => v.iter().map(|x| Value::from(*x)).collect(),
            Data::I16(v) => v.iter().map(|x| Value::from(*x)).collect(),
            Data::I32(v) => v.iter().map(|x| Value::from(*x)).collect(),
            Data::I64(v) => v.iter().map(|x| Value::from(*x)).collect(),
            Data::F32(v) => v.iter().map(|x| float(f64::from(*x))).collect(),
            Data::F64(v) => v.iter().map(|x| float(*x)).collect(),
            Data::Bytes(v) => v.iter().map(|b| Value::String(String::from_utf8_lossy(b).into_owned())).collect(),
        }
    }

    /// The elements as JSON lists nested to the shape (a scalar as itself).
    pub fn nested_json(&self) -> serde_json::Value {
        nest_json(&self.json_values(), &self.shape)
    }

    /// Splits along the first dimension into consecutive pieces of `rows` rows each (which add
    /// up to this tensor's rows): the inverse of `concat`.
    pub fn split(self, rows: &[usize]) -> Result<Vec<Tensor>, TensorError> {
        if self.shape.is_empty() {
            return Err(TensorError::Invalid(format!("output '{}' is a scalar: it cannot be split by rows", self.name)));
        }
        let total: usize = rows.iter().sum();
        if total != self.rows() {
            return Err(TensorError::Invalid(format!(
                "output '{}' has {} rows, but the batch's requests have {total}",
                self.name,
                self.rows()
            )));
        }
        let per_row: usize = self.shape[1..].iter().product();
        let sizes: Vec<usize> = rows.iter().map(|r| r * per_row).collect();
        let Tensor { name, shape, data } = self;
        Ok(data
            .split_sizes(&sizes)
            .into_iter()
            .zip(rows)
            .map(|(data, r)| {
                let mut shape = shape.clone();
                shape[0] = *r;
                Tensor { name: name.clone(), shape, data }
            })
            .collect())
    }
}

/// Row-major `flat` as lists nested to `shape`.
pub fn nest_json(flat: &[serde_json::Value], shape: &[usize]) -> serde_json::Value {
    use serde_json::Value;
    match shape {
        [] => flat.first().cloned().unwrap_or(Value::Null),
        [_] => Value::Array(flat.to_vec()),
        [n, rest @ ..] => {
            let step: usize = rest.iter().product();
            Value::Array((0..*n).map(|i| nest_json(&flat[i * step..(i + 1) * step], rest)).collect())
        }
    }
}

/// What a model declares about one of its inputs or outputs: a name, a datatype and a shape in
/// which -1 stands for a dimension of any size (most often the first, the batch).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorSpec {
    pub name: String,
    pub datatype: DataType,
    pub shape: Vec<i64>,
}

impl TensorSpec {
    /// Whether `tensor` can be fed where this spec is declared: the same datatype, as many
    /// dimensions, and every fixed dimension equal. Names are the caller's to pair.
    pub fn check(&self, tensor: &Tensor) -> Result<(), TensorError> {
        let fits = tensor.datatype() == self.datatype
            && tensor.shape.len() == self.shape.len()
            && tensor.shape.iter().zip(&self.shape).all(|(got, want)| *want < 0 || i64::try_from(*got).is_ok_and(|got| got == *want));
        if fits {
            return Ok(());
        }
        Err(TensorError::Invalid(format!(
            "input '{}' is {} {:?}, but the model takes {} {:?} (-1: any size)",
            tensor.name,
            tensor.datatype(),
            tensor.shape,
            self.datatype,
            self.shape
        )))
    }
}

impl fmt::Display for TensorSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "'{}' {} {:?}", self.name, self.datatype, self.shape)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn datatypes_by_oip_name() {
        for (name, t) in DataType::NAMES {
            assert_eq!(DataType::parse(name), Ok(t));
            assert_eq!(t.as_str(), name);
        }
        assert!(matches!(DataType::parse("FP16"), Err(TensorError::Unsupported(_))));
        assert!(matches!(DataType::parse("fp32"), Err(TensorError::Invalid(m)) if m.contains("FP32")));
    }

    #[test]
    fn shapes_must_hold_the_data() {
        assert!(Tensor::new("x", vec![2, 3], Data::F32(vec![0.0; 6])).is_ok());
        let err = Tensor::new("x", vec![2, 3], Data::F32(vec![0.0; 5])).expect_err("short");
        assert!(err.to_string().contains("holds 6 elements, but its data has 5"), "{err}");
        assert!(Tensor::new("x", vec![usize::MAX, 2], Data::F32(vec![])).is_err());
        assert!(Tensor::new("x", vec![1; MAX_DIMS + 1], Data::F32(vec![0.0])).is_err());
    }

    #[test]
    fn only_alike_tensors_join() {
        let a = Tensor::new("x", vec![1, 2], Data::F32(vec![1.0, 2.0])).expect("a");
        let wider = Tensor::new("x", vec![1, 3], Data::F32(vec![1.0, 2.0, 3.0])).expect("wider");
        let other_type = Tensor::new("x", vec![1, 2], Data::F64(vec![1.0, 2.0])).expect("f64");
        let other_name = Tensor::new("y", vec![1, 2], Data::F32(vec![1.0, 2.0])).expect("y");
        for bad in [wider, other_type, other_name] {
            assert!(Tensor::concat(&[a.clone(), bad]).is_err());
        }
        let scalar = Tensor::new("s", vec![], Data::I64(vec![1])).expect("scalar");
        assert!(Tensor::concat(&[scalar]).is_err());
        let joined = Tensor::concat(&[a.clone(), a]).expect("join");
        assert_eq!((joined.shape, joined.data), (vec![2, 2], Data::F32(vec![1.0, 2.0, 1.0, 2.0])));
    }

    #[test]
    fn a_split_must_account_for_every_row() {
        let t = Tensor::new("y", vec![3], Data::I64(vec![1, 2, 3])).expect("t");
        assert!(t.clone().split(&[1, 1]).is_err());
        let parts = t.split(&[2, 1]).expect("split");
        assert_eq!(parts[0].data, Data::I64(vec![1, 2]));
        assert_eq!((parts[1].shape.clone(), parts[1].data.clone()), (vec![1], Data::I64(vec![3])));
    }

    #[test]
    fn specs_take_tensors_of_their_type_and_fixed_dimensions() {
        let spec = TensorSpec { name: "x".into(), datatype: DataType::F32, shape: vec![-1, 3] };
        let t = |shape: Vec<usize>, data: Data| Tensor::new("x", shape, data).expect("tensor");
        assert!(spec.check(&t(vec![1, 3], Data::F32(vec![0.0; 3]))).is_ok());
        assert!(spec.check(&t(vec![4, 3], Data::F32(vec![0.0; 12]))).is_ok());
        for bad in [t(vec![1, 4], Data::F32(vec![0.0; 4])), t(vec![1, 3], Data::F64(vec![0.0; 3])), t(vec![3], Data::F32(vec![0.0; 3]))] {
            let err = spec.check(&bad).expect_err("refused");
            assert!(err.to_string().contains("the model takes FP32 [-1, 3]"), "{err}");
        }
        assert_eq!(spec.to_string(), "'x' FP32 [-1, 3]");
    }

    proptest! {
        /// Splitting a join gives back exactly the parts, bytes included, for every kind.
        #[test]
        fn split_undoes_concat(rows in proptest::collection::vec(1usize..5, 1..8), width in 1usize..4, seed in any::<u64>()) {
            let kinds: [fn(usize, u64) -> Data; 4] = [
                |n, s| Data::F32((0..n).map(|i| (i as u64 ^ s) as f32 * 0.5).collect()),
                |n, s| Data::I64((0..n).map(|i| (i as u64).wrapping_mul(s) as i64).collect()),
                |n, s| Data::Bool((0..n).map(|i| (i as u64).wrapping_add(s).is_multiple_of(3)).collect()),
                |n, s| Data::Bytes((0..n).map(|i| format!("{i}-{s}").into_bytes()).collect()),
            ];
            for make in kinds {
                let parts: Vec<Tensor> = rows
                    .iter()
                    .enumerate()
                    .map(|(i, r)| Tensor::new("x", vec![*r, width], make(r * width, seed.wrapping_add(i as u64))).expect("part"))
                    .collect();
                let joined = Tensor::concat(&parts).expect("join");
                prop_assert_eq!(joined.rows(), rows.iter().sum::<usize>());
                prop_assert_eq!(joined.split(&rows).expect("split"), parts);
            }
        }
    }
}
