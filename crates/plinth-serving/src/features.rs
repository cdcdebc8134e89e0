//! Features looked up at inference: a deployment that names a feature service takes entity keys
//! (and any request-time inputs) in its requests; serving reads the service's online features
//! through the `FeatureLookup` port (in-process, no HTTP hop) and assembles the model's inputs.
//!
//! Assembly, by the model's inputs:
//! - **one input** of shape `[-1, k]`: the service's features, in the service's declared order,
//!   are its `k` columns (request-time inputs cannot be mixed in);
//! - **several inputs**: each input is the request's tensor of that name (a request-time input),
//!   else the feature of that name, as `[rows]` or `[rows, 1]`.
//!
//! A value that is missing (`NOT_FOUND`, `NULL_VALUE`) or too old (`OUTSIDE_MAX_AGE`) is refused
//! with the feature, row and status, unless the deployment declares a default for that feature.

use async_trait::async_trait;
use plinth_core::serving::FeatureDefault;

use crate::source::SourceError;
use crate::tensor::{Data, DataType, Tensor, TensorSpec};

/// One value of the feature store, as serving sees it.
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
    Bytes(Vec<u8>),
}

/// One feature's values for the request's entity rows, with Feast's statuses (`PRESENT`,
/// `NULL_VALUE`, `NOT_FOUND`, `OUTSIDE_MAX_AGE`).
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureColumn {
    pub name: String,
    pub values: Vec<Scalar>,
    pub statuses: Vec<&'static str>,
}

/// What a feature service needs and gives.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceShape {
    /// The entity keys requests carry, with the datatype they are sent as (`INT64`, `BYTES`, …).
    pub join_keys: Vec<(String, DataType)>,
    /// The features, in the service's declared order.
    pub features: Vec<String>,
}

/// The online store, read in-process.
#[async_trait]
pub trait FeatureLookup: Send + Sync + 'static {
    async fn shape(&self, service: &str) -> Result<ServiceShape, SourceError>;
    /// The service's features for the entity rows (join-key columns by name), in its order.
    async fn lookup(&self, service: &str, entities: &[(String, Vec<Scalar>)]) -> Result<Vec<FeatureColumn>, SourceError>;
}

/// Entity rows: join-key columns by name.
pub type EntityColumns = Vec<(String, Vec<Scalar>)>;

/// The request's entity-key tensors as columns (`[rows]` or `[rows, 1]` each), and the rest.
pub fn split_entities(request: Vec<Tensor>, join_keys: &[(String, DataType)]) -> Result<(EntityColumns, Vec<Tensor>), String> {
    let mut entities = Vec::new();
    let mut rest = Vec::new();
    for t in request {
        if !join_keys.iter().any(|(k, _)| *k == t.name) {
            rest.push(t);
            continue;
        }
        if t.shape.len() > 2 || t.shape.get(1).is_some_and(|d| *d != 1) || t.shape.is_empty() {
            return Err(format!("entity key '{}' has shape {:?}; it takes [rows] or [rows, 1]", t.name, t.shape));
        }
        let values: Vec<Scalar> = match t.data {
            Data::I8(v) => v.into_iter().map(|x| Scalar::Int(x.into())).collect(),
            Data::I16(v) => v.into_iter().map(|x| Scalar::Int(x.into())).collect(),
            Data::I32(v) => v.into_iter().map(|x| Scalar::Int(x.into())).collect(),
            Data::I64(v) => v.into_iter().map(Scalar::Int).collect(),
            Data::U8(v) => v.into_iter().map(|x| Scalar::Int(x.into())).collect(),
            Data::U16(v) => v.into_iter().map(|x| Scalar::Int(x.into())).collect(),
            Data::U32(v) => v.into_iter().map(|x| Scalar::Int(x.into())).collect(),
            Data::U64(v) => v
                .into_iter()
                .map(|x| i64::try_from(x).map(Scalar::Int).map_err(|_| format!("entity key '{}': {x} is out of range", t.name)))
                .collect::<Result<_, _>>()?,
            Data::Bytes(v) => {
                v.into_iter().map(|b| String::from_utf8(b).map(Scalar::Text).unwrap_or_else(|e| Scalar::Bytes(e.into_bytes()))).collect()
            }
            other => return Err(format!("entity key '{}' is {}; keys are integers or strings", t.name, other.datatype())),
        };
        entities.push((t.name, values));
    }
    if let Some((missing, _)) = join_keys.iter().find(|(k, _)| !entities.iter().any(|(n, _)| n == k)) {
        return Err(format!("the request needs the entity key '{missing}' (an input of that name)"));
    }
    let rows = entities.first().map_or(0, |(_, v)| v.len());
    if let Some((name, v)) = entities.iter().find(|(_, v)| v.len() != rows) {
        return Err(format!("entity key '{name}' has {} rows; the others have {rows}", v.len()));
    }
    Ok((entities, rest))
}

/// The feature's value per row, with the declared default where it is missing or stale.
fn usable(column: &FeatureColumn, defaults: &[FeatureDefault], keys: &[(String, Vec<Scalar>)]) -> Result<Vec<Scalar>, String> {
    let default = defaults.iter().find(|d| d.feature == column.name).map(|d| Scalar::Float(d.value));
    column
        .values
        .iter()
        .zip(&column.statuses)
        .enumerate()
        .map(|(row, (value, status))| {
            if *status == "PRESENT" && *value != Scalar::Null {
                return Ok(value.clone());
            }
            default.clone().ok_or_else(|| {
                let key: Vec<String> = keys.iter().map(|(k, v)| format!("{k}={}", show(&v[row]))).collect();
                format!(
                    "feature '{}' is {status} for row {row} ({}); declare a default for it (feature_defaults) to serve such rows",
                    column.name,
                    key.join(", ")
                )
            })
        })
        .collect()
}

fn show(s: &Scalar) -> String {
    match s {
        Scalar::Null => "null".into(),
        Scalar::Bool(b) => b.to_string(),
        Scalar::Int(i) => i.to_string(),
        Scalar::Float(f) => f.to_string(),
        Scalar::Text(t) => format!("{t:?}"),
        Scalar::Bytes(b) => format!("{} bytes", b.len()),
    }
}

/// `values` (row-major) as `datatype`'s data.
fn to_data(name: &str, datatype: DataType, values: &[&Scalar]) -> Result<Data, String> {
    let wrong = |v: &Scalar| format!("feature '{name}' has the value {}, which the model's {datatype} input cannot take", show(v));
    let float = |v: &Scalar| match v {
        Scalar::Int(i) => Ok(*i as f64),
        Scalar::Float(f) => Ok(*f),
        Scalar::Bool(b) => Ok(f64::from(u8::from(*b))),
        other => Err(wrong(other)),
    };
    let int = |v: &Scalar| match v {
        Scalar::Int(i) => Ok(*i),
        Scalar::Bool(b) => Ok(i64::from(*b)),
        Scalar::Float(f) if f.fract() == 0.0 && f.abs() < 9.2e18 => Ok(*f as i64),
        other => Err(wrong(other)),
    };
    fn narrow<T: TryFrom<i64>>(values: &[&Scalar], int: impl Fn(&Scalar) -> Result<i64, String>, name: &str) -> Result<Vec<T>, String> {
        values
            .iter()
            .map(|v| int(v).and_then(|i| T::try_from(i).map_err(|_| format!("feature '{name}': {i} is out of the input's range"))))
            .collect()
    }
    Ok(match datatype {
        DataType::F32 => Data::F32(values.iter().map(|v| float(v).map(|f| f as f32)).collect::<Result<_, _>>()?),
        DataType::F64 => Data::F64(values.iter().map(|v| float(v)).collect::<Result<_, _>>()?),
        DataType::I64 => Data::I64(values.iter().map(|v| int(v)).collect::<Result<_, _>>()?),
        DataType::I32 => Data::I32(narrow(values, int, name)?),
        DataType::I16 => Data::I16(narrow(values, int, name)?),
        DataType::I8 => Data::I8(narrow(values, int, name)?),
        DataType::U64 => Data::U64(narrow(values, int, name)?),
        DataType::U32 => Data::U32(narrow(values, int, name)?),
        DataType::U16 => Data::U16(narrow(values, int, name)?),
        DataType::U8 => Data::U8(narrow(values, int, name)?),
        DataType::Bool => Data::Bool(values.iter().map(|v| int(v).map(|i| i != 0)).collect::<Result<_, _>>()?),
        DataType::Bytes => Data::Bytes(
            values
                .iter()
                .map(|v| match v {
                    Scalar::Text(t) => Ok(t.as_bytes().to_vec()),
                    Scalar::Bytes(b) => Ok(b.clone()),
                    other => Err(wrong(other)),
                })
                .collect::<Result<_, _>>()?,
        ),
    })
}

/// The model's inputs from the request's other tensors and the looked-up features (see the
/// module's doc for the rule).
pub fn assemble(
    inputs: &[TensorSpec],
    request: Vec<Tensor>,
    features: &[FeatureColumn],
    defaults: &[FeatureDefault],
    keys: &[(String, Vec<Scalar>)],
) -> Result<Vec<Tensor>, String> {
    let rows = keys.first().map_or(0, |(_, v)| v.len());
    let columns: Vec<(String, Vec<Scalar>)> =
        features.iter().map(|c| usable(c, defaults, keys).map(|v| (c.name.clone(), v))).collect::<Result<_, _>>()?;
    match inputs {
        [only] if !request.iter().any(|t| t.name == only.name) => {
            if let Some(extra) = request.first() {
                return Err(format!("input '{}' is not the model's; with a feature service it takes the entity keys", extra.name));
            }
            if only.shape.len() != 2 || (only.shape[1] >= 0 && usize::try_from(only.shape[1]).ok() != Some(columns.len())) {
                return Err(format!(
                    "the model's input '{}' has shape {:?}; the feature service gives {} features per row",
                    only.name,
                    only.shape,
                    columns.len()
                ));
            }
            let mut cells = Vec::with_capacity(rows * columns.len());
            for r in 0..rows {
                for (_, values) in &columns {
                    cells.push(&values[r]);
                }
            }
            let data = to_data(&only.name, only.datatype, &cells)?;
            Ok(vec![Tensor::new(only.name.clone(), vec![rows, columns.len()], data).map_err(|e| e.to_string())?])
        }
        _ => {
            let mut request = request;
            let mut out = Vec::with_capacity(inputs.len());
            for spec in inputs {
                if let Some(idx) = request.iter().position(|t| t.name == spec.name) {
                    out.push(request.swap_remove(idx));
                    continue;
                }
                let (_, values) = columns
                    .iter()
                    .find(|(n, _)| *n == spec.name)
                    .ok_or_else(|| format!("the model's input '{}' is neither a feature of the service nor in the request", spec.name))?;
                let shape = match spec.shape.len() {
                    1 => vec![rows],
                    2 if spec.shape[1] == 1 || spec.shape[1] < 0 => vec![rows, 1],
                    _ => {
                        return Err(format!(
                            "the model's input '{}' has shape {:?}; a feature fills [-1] or [-1, 1]",
                            spec.name, spec.shape
                        ));
                    }
                };
                let cells: Vec<&Scalar> = values.iter().collect();
                out.push(Tensor::new(spec.name.clone(), shape, to_data(&spec.name, spec.datatype, &cells)?).map_err(|e| e.to_string())?);
            }
            if let Some(extra) = request.first() {
                return Err(format!("input '{}' is neither an entity key nor one of the model's inputs", extra.name));
            }
            Ok(out)
        }
    }
}

/// What a request to a deployment with a feature service carries: its entity keys (`[-1]`), then
/// the model's inputs that no feature fills (request-time inputs).
pub fn request_inputs(model_inputs: &[TensorSpec], shape: &ServiceShape) -> Vec<TensorSpec> {
    let mut out: Vec<TensorSpec> =
        shape.join_keys.iter().map(|(name, datatype)| TensorSpec { name: name.clone(), datatype: *datatype, shape: vec![-1] }).collect();
    if model_inputs.len() > 1 {
        out.extend(model_inputs.iter().filter(|i| !shape.features.contains(&i.name)).cloned());
    }
    out
}

/// Whether a model can be fed by a service (checked when a deployment is created or updated): a
/// one-input model takes exactly the service's features; a model with several inputs takes each
/// from a feature or the request, which is seen only at inference.
pub fn check_fit(inputs: &[TensorSpec], shape: &ServiceShape) -> Result<(), String> {
    if let [only] = inputs
        && !shape.features.contains(&only.name)
        && only.shape.len() == 2
        && only.shape[1] >= 0
        && usize::try_from(only.shape[1]).ok() != Some(shape.features.len())
    {
        return Err(format!(
            "the model's input '{}' takes {} columns; the feature service gives {} features ({})",
            only.name,
            only.shape[1],
            shape.features.len(),
            shape.features.join(", ")
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn column(name: &str, values: Vec<Scalar>, statuses: Vec<&'static str>) -> FeatureColumn {
        FeatureColumn { name: name.into(), values, statuses }
    }

    fn keys() -> Vec<(String, Vec<Scalar>)> {
        vec![("customer_id".into(), vec![Scalar::Int(7), Scalar::Int(9)])]
    }

    #[test]
    fn entity_keys_are_taken_out_of_the_request() {
        let request = vec![
            Tensor::new("customer_id", vec![2, 1], Data::I64(vec![7, 9])).expect("t"),
            Tensor::new("amount", vec![2], Data::F32(vec![1.0, 2.0])).expect("t"),
        ];
        let key = |name: &str| vec![(name.to_owned(), DataType::I64)];
        let (entities, rest) = split_entities(request.clone(), &key("customer_id")).expect("split");
        assert_eq!(entities, keys());
        assert_eq!(rest.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(), ["amount"]);
        assert!(split_entities(request.clone(), &key("region")).expect_err("missing").contains("needs the entity key 'region'"));
        let wide = vec![Tensor::new("customer_id", vec![1, 2], Data::I64(vec![7, 9])).expect("t")];
        assert!(split_entities(wide, &key("customer_id")).expect_err("shape").contains("[rows] or [rows, 1]"));
        let float = vec![Tensor::new("customer_id", vec![1], Data::F32(vec![7.0])).expect("t")];
        assert!(split_entities(float, &key("customer_id")).expect_err("type").contains("integers or strings"));
    }

    #[test]
    fn one_input_takes_the_features_in_order_and_several_take_them_by_name() {
        let features = vec![
            column("a", vec![Scalar::Float(1.0), Scalar::Float(2.0)], vec!["PRESENT", "PRESENT"]),
            column("b", vec![Scalar::Int(3), Scalar::Int(4)], vec!["PRESENT", "PRESENT"]),
        ];
        let one = [TensorSpec { name: "X".into(), datatype: DataType::F32, shape: vec![-1, 2] }];
        assert_eq!(
            assemble(&one, vec![], &features, &[], &keys()),
            Ok(vec![Tensor::new("X", vec![2, 2], Data::F32(vec![1.0, 3.0, 2.0, 4.0])).expect("t")])
        );
        let many = [
            TensorSpec { name: "b".into(), datatype: DataType::I64, shape: vec![-1, 1] },
            TensorSpec { name: "amount".into(), datatype: DataType::F32, shape: vec![-1] },
        ];
        let amount = Tensor::new("amount", vec![2], Data::F32(vec![5.0, 6.0])).expect("t");
        assert_eq!(
            assemble(&many, vec![amount.clone()], &features, &[], &keys()),
            Ok(vec![Tensor::new("b", vec![2, 1], Data::I64(vec![3, 4])).expect("t"), amount])
        );
        let three = [TensorSpec { name: "X".into(), datatype: DataType::F32, shape: vec![-1, 3] }];
        assert!(assemble(&three, vec![], &features, &[], &keys()).expect_err("width").contains("gives 2 features"));
        let shape = ServiceShape { join_keys: vec![("customer_id".into(), DataType::I64)], features: vec!["a".into(), "b".into()] };
        assert!(check_fit(&three, &shape).expect_err("width").contains("takes 3 columns"));
        assert!(check_fit(&one, &shape).is_ok());
        let key = TensorSpec { name: "customer_id".into(), datatype: DataType::I64, shape: vec![-1] };
        assert_eq!(request_inputs(&one, &shape), vec![key.clone()]);
        assert_eq!(request_inputs(&many, &shape), vec![key, many[1].clone()]);
    }

    #[test]
    fn missing_and_stale_values_are_refused_unless_defaulted() {
        let features = vec![column("a", vec![Scalar::Float(1.0), Scalar::Null], vec!["PRESENT", "OUTSIDE_MAX_AGE"])];
        let one = [TensorSpec { name: "X".into(), datatype: DataType::F64, shape: vec![-1, 1] }];
        let err = assemble(&one, vec![], &features, &[], &keys()).expect_err("stale");
        assert!(err.contains("feature 'a' is OUTSIDE_MAX_AGE for row 1 (customer_id=9)"), "{err}");
        let defaults = [FeatureDefault { feature: "a".into(), value: -1.0 }];
        assert_eq!(
            assemble(&one, vec![], &features, &defaults, &keys()),
            Ok(vec![Tensor::new("X", vec![2, 1], Data::F64(vec![1.0, -1.0])).expect("t")])
        );
    }
}
