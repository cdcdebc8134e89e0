//! MLflow's scoring inputs (`design/protocols.md` §4.4) turned into a model's input tensors.
//!
//! Two shapes of input reach `/invocations`:
//!
//! - **Tables**: `dataframe_split`, `dataframe_records`, a CSV body (header row first) or a Parquet
//!   body. They become a `Frame` (named columns of scalar cells), then tensors by MLflow's rule for
//!   ONNX models: a model with **one** input takes every column, in order, as the columns of a
//!   `[rows, columns]` tensor (`[rows]` when the input has one dimension and the table one
//!   column); a model with **several** inputs takes each from the column of its name, as
//!   `[rows]` or `[rows, 1]`. A column no input takes is refused (a misspelt name would otherwise
//!   be served silently without it).
//! - **Tensors**: `inputs` (a tensor for a one-input model, or an object of named tensors) and
//!   `instances` (rows: values for a one-input model, or objects of named values). Shapes come from
//!   the nesting, which must be rectangular.
//!
//! Cells convert to the input's datatype exactly: an integer input takes no fraction and nothing
//! out of its range, a float input takes numbers (CSV text is parsed as such), `BOOL` takes
//! booleans, `BYTES` strings. A missing cell (JSON `null`, an empty CSV field, a Parquet null), NaN
//! or an infinity is refused with its row and column.

use plinth_serving::tensor::nest_json;
use plinth_serving::{Data, DataType, Tensor, TensorSpec};
use serde_json::Value;

use crate::oip::{MAX_ELEMENTS, OipError};

/// One cell of a table.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Cell {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    /// A JSON or Parquet string: only a `BYTES` input takes it.
    Str(String),
    /// A CSV field: untyped text, parsed as the input's datatype.
    Text(String),
}

/// A table: named columns of the same length.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Frame {
    pub(crate) columns: Vec<(String, Vec<Cell>)>,
}

fn invalid(message: impl Into<String>) -> OipError {
    OipError(message.into())
}

impl Frame {
    pub(crate) fn rows(&self) -> usize {
        self.columns.first().map_or(0, |(_, c)| c.len())
    }

    /// Checks the table's size against the request limit before any tensor is built.
    fn check_size(&self) -> Result<(), OipError> {
        let cells = self.rows().saturating_mul(self.columns.len());
        if cells > MAX_ELEMENTS {
            return Err(invalid(format!("the table has {cells} cells; a request carries at most {MAX_ELEMENTS}")));
        }
        if self.rows() == 0 {
            return Err(invalid("the table has no rows"));
        }
        Ok(())
    }

    /// `dataframe_split`: `{"columns": [...], "data": [[...], ...], "index"?: [...]}`.
    pub(crate) fn from_split(value: &Value) -> Result<Frame, OipError> {
        let obj = value.as_object().ok_or_else(|| invalid("dataframe_split must be an object with columns and data"))?;
        if let Some(key) = obj.keys().find(|k| !matches!(k.as_str(), "columns" | "data" | "index")) {
            return Err(invalid(format!("dataframe_split has an unknown field '{key}' (it takes columns, data and index)")));
        }
        let data = obj.get("data").and_then(Value::as_array).ok_or_else(|| invalid("dataframe_split.data must be a list of rows"))?;
        let names: Vec<String> = match obj.get("columns") {
            Some(Value::Array(cols)) => cols.iter().map(column_name).collect::<Result<_, _>>()?,
            None | Some(Value::Null) => {
                // pandas' split orient without columns: positions name them.
                let width = data.first().and_then(Value::as_array).map_or(0, Vec::len);
                (0..width).map(|i| i.to_string()).collect()
            }
            Some(_) => return Err(invalid("dataframe_split.columns must be a list of names")),
        };
        check_unique(&names)?;
        let mut columns: Vec<(String, Vec<Cell>)> = names.into_iter().map(|n| (n, Vec::with_capacity(data.len()))).collect();
        for (i, row) in data.iter().enumerate() {
            let row = row.as_array().ok_or_else(|| invalid(format!("dataframe_split.data row {i} is not a list")))?;
            if row.len() != columns.len() {
                return Err(invalid(format!("dataframe_split.data row {i} has {} values for {} columns", row.len(), columns.len())));
            }
            for ((name, cells), v) in columns.iter_mut().zip(row) {
                cells.push(json_cell(v, name, i)?);
            }
        }
        let frame = Frame { columns };
        frame.check_size()?;
        Ok(frame)
    }

    /// `dataframe_records`: `[{"col": value, ...}, ...]`; columns in order of first appearance, a
    /// column a record lacks is missing there.
    pub(crate) fn from_records(value: &Value) -> Result<Frame, OipError> {
        let records = value.as_array().ok_or_else(|| invalid("dataframe_records must be a list of objects"))?;
        let mut columns: Vec<(String, Vec<Cell>)> = Vec::new();
        for (i, record) in records.iter().enumerate() {
            let record = record.as_object().ok_or_else(|| invalid(format!("dataframe_records item {i} is not an object")))?;
            for (name, v) in record {
                let idx = match columns.iter().position(|(n, _)| n == name) {
                    Some(idx) => idx,
                    None => {
                        columns.push((name.clone(), vec![Cell::Null; i]));
                        columns.len() - 1
                    }
                };
                columns[idx].1.push(json_cell(v, name, i)?);
            }
            for (_, cells) in &mut columns {
                if cells.len() == i {
                    cells.push(Cell::Null);
                }
            }
        }
        let frame = Frame { columns };
        frame.check_size()?;
        Ok(frame)
    }

    /// A CSV body: a header row of column names, then one record per row (RFC 4180 quoting).
    pub(crate) fn from_csv(body: &[u8]) -> Result<Frame, OipError> {
        let mut reader = csv::ReaderBuilder::new().has_headers(true).flexible(false).from_reader(body);
        let names: Vec<String> =
            reader.headers().map_err(|e| invalid(format!("the CSV header cannot be read: {e}")))?.iter().map(str::to_owned).collect();
        check_unique(&names)?;
        let mut columns: Vec<(String, Vec<Cell>)> = names.into_iter().map(|n| (n, Vec::new())).collect();
        for (i, record) in reader.records().enumerate() {
            let record = record.map_err(|e| invalid(format!("CSV row {i}: {e}")))?;
            for ((_, cells), field) in columns.iter_mut().zip(record.iter()) {
                cells.push(if field.is_empty() { Cell::Null } else { Cell::Text(field.to_owned()) });
            }
            if columns.first().map_or(0, |(_, c)| c.len()).saturating_mul(columns.len()) > MAX_ELEMENTS {
                return Err(invalid(format!("the table has more than the {MAX_ELEMENTS} cells a request may carry")));
            }
        }
        let frame = Frame { columns };
        frame.check_size()?;
        Ok(frame)
    }

    /// A Parquet body. pandas' index columns (`__index_level_N__`) are not columns of the table.
    pub(crate) fn from_parquet(body: bytes::Bytes) -> Result<Frame, OipError> {
        use plinth_features::arrow::array::{Array, AsArray};
        use plinth_features::arrow::datatypes::{DataType as A, Float64Type, Int64Type, UInt64Type};
        use plinth_features::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

        let bad = |e: &dyn std::fmt::Display| invalid(format!("the Parquet body cannot be read: {e}"));
        let builder = ParquetRecordBatchReaderBuilder::try_new(body).map_err(|e| bad(&e))?;
        let rows = usize::try_from(builder.metadata().file_metadata().num_rows()).unwrap_or(usize::MAX);
        let width = builder.schema().fields().len();
        if rows.saturating_mul(width) > MAX_ELEMENTS {
            return Err(invalid(format!("the table has {} cells; a request carries at most {MAX_ELEMENTS}", rows.saturating_mul(width))));
        }
        let schema = builder.schema().clone();
        let keep: Vec<usize> = (0..width).filter(|i| !schema.field(*i).name().starts_with("__index_level_")).collect();
        let mut columns: Vec<(String, Vec<Cell>)> =
            keep.iter().map(|i| (schema.field(*i).name().clone(), Vec::with_capacity(rows))).collect();
        let reader = builder.build().map_err(|e| bad(&e))?;
        for batch in reader {
            let batch = batch.map_err(|e| bad(&e))?;
            for ((name, cells), idx) in columns.iter_mut().zip(&keep) {
                let column = batch.column(*idx);
                let cast = |to: &A| plinth_features::arrow::compute::cast(column, to).map_err(|e| bad(&e));
                let target = match column.data_type() {
                    A::Boolean => A::Boolean,
                    A::Int8 | A::Int16 | A::Int32 | A::Int64 => A::Int64,
                    A::UInt8 | A::UInt16 | A::UInt32 | A::UInt64 => A::UInt64,
                    A::Float16 | A::Float32 | A::Float64 => A::Float64,
                    A::Utf8 | A::LargeUtf8 | A::Utf8View | A::Dictionary(..) => A::Utf8,
                    A::Null => A::Null,
                    other => {
                        return Err(invalid(format!(
                            "column '{name}' is {other}; the scoring protocol takes numbers, booleans and strings"
                        )));
                    }
                };
                let array = cast(&target)?;
                for i in 0..array.len() {
                    cells.push(if array.is_null(i) {
                        Cell::Null
                    } else {
                        match &target {
                            A::Boolean => Cell::Bool(array.as_boolean().value(i)),
                            A::Int64 => Cell::Int(array.as_primitive::<Int64Type>().value(i)),
                            A::UInt64 => Cell::UInt(array.as_primitive::<UInt64Type>().value(i)),
                            A::Float64 => Cell::Float(array.as_primitive::<Float64Type>().value(i)),
                            A::Utf8 => Cell::Str(array.as_string::<i32>().value(i).to_owned()),
                            _ => Cell::Null,
                        }
                    });
                }
            }
        }
        let frame = Frame { columns };
        frame.check_size()?;
        Ok(frame)
    }

    /// The model's input tensors, by MLflow's rule for ONNX models (see the module's doc).
    pub(crate) fn into_tensors(self, inputs: &[TensorSpec]) -> Result<Vec<Tensor>, OipError> {
        let rows = self.rows();
        match inputs {
            [] => Err(invalid("the model declares no inputs")),
            [only] => {
                let width = self.columns.len();
                let fixed = only.shape.get(1).copied().filter(|d| *d >= 0);
                if let Some(want) = fixed
                    && usize::try_from(want).ok() != Some(width)
                {
                    let names: Vec<&str> = self.columns.iter().map(|(n, _)| n.as_str()).collect();
                    return Err(invalid(format!(
                        "the model's input '{}' takes {want} columns; the table has {width} ({})",
                        only.name,
                        names.join(", ")
                    )));
                }
                let shape = match only.shape.len() {
                    2 => vec![rows, width],
                    1 if width == 1 => vec![rows],
                    n => {
                        return Err(invalid(format!(
                            "the model's input '{}' has {n} dimensions; a table fills inputs of one or two",
                            only.name
                        )));
                    }
                };
                // Row-major: row by row, each row's cells in column order.
                let mut cells = Vec::with_capacity(rows * width);
                for r in 0..rows {
                    for (name, column) in &self.columns {
                        cells.push((&column[r], name.as_str(), r));
                    }
                }
                let data = convert_cells(only.datatype, &cells)?;
                Ok(vec![Tensor::new(only.name.clone(), shape, data).map_err(OipError::from)?])
            }
            many => {
                if let Some((extra, _)) = self.columns.iter().find(|(n, _)| !many.iter().any(|s| &s.name == n)) {
                    let names: Vec<&str> = many.iter().map(|s| s.name.as_str()).collect();
                    return Err(invalid(format!("unknown column '{extra}'; the model's inputs are: {}", names.join(", "))));
                }
                let mut out = Vec::with_capacity(many.len());
                for spec in many {
                    let (name, column) = self
                        .columns
                        .iter()
                        .find(|(n, _)| *n == spec.name)
                        .ok_or_else(|| invalid(format!("the table has no column '{}', an input of the model", spec.name)))?;
                    let shape = match spec.shape.len() {
                        1 => vec![rows],
                        2 if spec.shape[1] == 1 || spec.shape[1] < 0 => vec![rows, 1],
                        _ => {
                            return Err(invalid(format!(
                                "the model's input '{}' has shape {:?}; a table column fills an input of shape [-1] or [-1, 1]",
                                spec.name, spec.shape
                            )));
                        }
                    };
                    let cells: Vec<(&Cell, &str, usize)> = column.iter().enumerate().map(|(r, c)| (c, name.as_str(), r)).collect();
                    let data = convert_cells(spec.datatype, &cells)?;
                    out.push(Tensor::new(spec.name.clone(), shape, data).map_err(OipError::from)?);
                }
                Ok(out)
            }
        }
    }
}

fn column_name(v: &Value) -> Result<String, OipError> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        other => Err(invalid(format!("a column name must be a string or a number, not {other}"))),
    }
}

fn check_unique(names: &[String]) -> Result<(), OipError> {
    for (i, n) in names.iter().enumerate() {
        if names[..i].contains(n) {
            return Err(invalid(format!("column '{n}' appears twice")));
        }
    }
    Ok(())
}

fn json_cell(v: &Value, column: &str, row: usize) -> Result<Cell, OipError> {
    Ok(match v {
        Value::Null => Cell::Null,
        Value::Bool(b) => Cell::Bool(*b),
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => Cell::Int(i),
            (None, Some(u)) => Cell::UInt(u),
            _ => Cell::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => Cell::Str(s.clone()),
        Value::Array(_) | Value::Object(_) => {
            return Err(invalid(format!("row {row} of column '{column}' is a list or an object; table cells are scalars")));
        }
    })
}

/// Converts cells (each with its column and row, for the error) to `datatype`'s data.
fn convert_cells(datatype: DataType, cells: &[(&Cell, &str, usize)]) -> Result<Data, OipError> {
    let wrong = |(cell, column, row): &(&Cell, &str, usize)| {
        let shown = match cell {
            Cell::Null => return invalid(format!("row {row} of column '{column}' has no value; the model takes {datatype}")),
            Cell::Bool(b) => b.to_string(),
            Cell::Int(i) => i.to_string(),
            Cell::UInt(u) => u.to_string(),
            Cell::Float(f) if !f.is_finite() => {
                return invalid(format!(
                    "row {row} of column '{column}' is {f}: NaN and infinities are refused; the model takes finite numbers"
                ));
            }
            Cell::Float(f) => f.to_string(),
            Cell::Str(s) => format!("the string {s:?}"),
            Cell::Text(s) if s.trim().parse::<f64>().is_ok_and(|f| !f.is_finite()) => {
                return invalid(format!(
                    "row {row} of column '{column}' is {s:?}: NaN and infinities are refused; the model takes finite numbers"
                ));
            }
            Cell::Text(s) => format!("{s:?}"),
        };
        invalid(format!("row {row} of column '{column}' is {shown}, which is not {datatype}"))
    };
    fn float(c: &Cell) -> Option<f64> {
        let f = match c {
            Cell::Int(i) => *i as f64,
            Cell::UInt(u) => *u as f64,
            Cell::Float(f) => *f,
            Cell::Text(s) => s.trim().parse::<f64>().ok()?,
            _ => return None,
        };
        f.is_finite().then_some(f)
    }
    fn int(c: &Cell) -> Option<i128> {
        match c {
            Cell::Int(i) => Some(i128::from(*i)),
            Cell::UInt(u) => Some(i128::from(*u)),
            Cell::Float(f) if f.is_finite() && f.fract() == 0.0 && f.abs() < 1.8e19 => Some(*f as i128),
            Cell::Text(s) => s.trim().parse::<i128>().ok().or_else(|| int(&Cell::Float(s.trim().parse::<f64>().ok()?))),
            _ => None,
        }
    }
    fn ints<T: TryFrom<i128>>(
        cells: &[(&Cell, &str, usize)],
        wrong: impl Fn(&(&Cell, &str, usize)) -> OipError,
    ) -> Result<Vec<T>, OipError> {
        cells.iter().map(|c| int(c.0).and_then(|i| T::try_from(i).ok()).ok_or_else(|| wrong(c))).collect()
    }
    Ok(match datatype {
        DataType::Bool => Data::Bool(
            cells
                .iter()
                .map(|c| {
                    match c.0 {
                        Cell::Bool(b) => Some(*b),
                        Cell::Text(s) if s.eq_ignore_ascii_case("true") => Some(true),
                        Cell::Text(s) if s.eq_ignore_ascii_case("false") => Some(false),
                        _ => None,
                    }
                    .ok_or_else(|| wrong(c))
                })
                .collect::<Result<_, _>>()?,
        ),
        DataType::U8 => Data::U8(ints(cells, wrong)?),
        DataType::U16 => Data::U16(ints(cells, wrong)?),
        DataType::U32 => Data::U32(ints(cells, wrong)?),
        DataType::U64 => Data::U64(ints(cells, wrong)?),
        DataType::I8 => Data::I8(ints(cells, wrong)?),
        DataType::I16 => Data::I16(ints(cells, wrong)?),
        DataType::I32 => Data::I32(ints(cells, wrong)?),
        DataType::I64 => Data::I64(ints(cells, wrong)?),
        DataType::F32 => Data::F32(cells.iter().map(|c| float(c.0).map(|f| f as f32).ok_or_else(|| wrong(c))).collect::<Result<_, _>>()?),
        DataType::F64 => Data::F64(cells.iter().map(|c| float(c.0).ok_or_else(|| wrong(c))).collect::<Result<_, _>>()?),
        DataType::Bytes => Data::Bytes(
            cells
                .iter()
                .map(|c| match c.0 {
                    Cell::Str(s) | Cell::Text(s) => Ok(s.as_bytes().to_vec()),
                    _ => Err(wrong(c)),
                })
                .collect::<Result<_, _>>()?,
        ),
    })
}

/// `inputs`: one tensor (for a one-input model) or an object of named tensors, each nested lists.
pub(crate) fn tensors_from_inputs(value: &Value, specs: &[TensorSpec]) -> Result<Vec<Tensor>, OipError> {
    let mut budget = MAX_ELEMENTS;
    match value {
        Value::Object(named) => named_tensors(named.iter().map(|(k, v)| (k.as_str(), v)), specs, &mut budget),
        other => match specs {
            [only] => Ok(vec![crate::oip::tensor_from_nested(&only.name, only.datatype, other, &mut budget)?]),
            _ => Err(invalid(format!(
                "the model has {} inputs; give inputs as an object of named tensors ({})",
                specs.len(),
                specs.iter().map(|s| s.name.as_str()).collect::<Vec<_>>().join(", ")
            ))),
        },
    }
}

/// `instances`: rows. For a one-input model each row is the input's value for that row; for
/// several inputs each row is an object of values by input name. An object of lists is taken as
/// `inputs` is.
pub(crate) fn tensors_from_instances(value: &Value, specs: &[TensorSpec]) -> Result<Vec<Tensor>, OipError> {
    let mut budget = MAX_ELEMENTS;
    let rows = match value {
        Value::Object(_) => return tensors_from_inputs(value, specs),
        Value::Array(rows) => rows,
        _ => return Err(invalid("instances must be a list of rows (or an object of named lists)")),
    };
    if rows.is_empty() {
        return Err(invalid("instances has no rows"));
    }
    if rows.iter().all(Value::is_object) {
        let mut names: Vec<&str> = Vec::new();
        for row in rows {
            for k in row.as_object().into_iter().flat_map(|o| o.keys()) {
                if !names.contains(&k.as_str()) {
                    names.push(k);
                }
            }
        }
        let mut stacked: Vec<(&str, Value)> = Vec::with_capacity(names.len());
        for name in names {
            let column = rows
                .iter()
                .enumerate()
                .map(|(i, row)| row.get(name).cloned().ok_or_else(|| invalid(format!("instances row {i} has no value for '{name}'"))))
                .collect::<Result<Vec<Value>, _>>()?;
            stacked.push((name, Value::Array(column)));
        }
        return named_tensors(stacked.iter().map(|(k, v)| (*k, v)), specs, &mut budget);
    }
    if rows.iter().any(Value::is_object) {
        return Err(invalid("instances mixes objects with other values"));
    }
    tensors_from_inputs(value, specs)
}

fn named_tensors<'a>(
    named: impl Iterator<Item = (&'a str, &'a Value)>,
    specs: &[TensorSpec],
    budget: &mut usize,
) -> Result<Vec<Tensor>, OipError> {
    let mut out = Vec::new();
    for (name, data) in named {
        let spec = specs.iter().find(|s| s.name == name).ok_or_else(|| {
            let names: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
            invalid(format!("unknown input '{name}'; the model's inputs are: {}", names.join(", ")))
        })?;
        let mut t = crate::oip::tensor_from_nested(name, spec.datatype, data, budget)?;
        // One value per row for an input of shape [-1, 1]: the trailing 1 is implied.
        if t.shape.len() + 1 == spec.shape.len() && spec.shape.last() == Some(&1) {
            t.shape.push(1);
        }
        out.push(t);
    }
    Ok(out)
}

/// The answer's `predictions` for a table: one record per row, each output's value for the row
/// (a scalar when the output has one value per row, else its nested lists). `None` when an output
/// is not one row per input row (the caller then answers the tensors by name).
pub(crate) fn records(outputs: &[Tensor], rows: usize) -> Option<Value> {
    if outputs.iter().any(|t| t.shape.first() != Some(&rows)) {
        return None;
    }
    let per_row: Vec<Vec<Value>> = outputs
        .iter()
        .map(|t| {
            let flat = t.json_values();
            let width: usize = t.shape[1..].iter().product();
            (0..rows)
                .map(|r| {
                    let row = &flat[r * width..(r + 1) * width];
                    if width == 1 && t.shape.len() <= 2 { row[0].clone() } else { nest_json(row, &t.shape[1..]) }
                })
                .collect()
        })
        .collect();
    Some(Value::Array(
        (0..rows)
            .map(|r| {
                let mut rec = serde_json::Map::with_capacity(outputs.len());
                for (t, values) in outputs.iter().zip(&per_row) {
                    rec.insert(t.name.clone(), values[r].clone());
                }
                Value::Object(rec)
            })
            .collect(),
    ))
}

/// The answer's `predictions` for tensors: each output's nested lists, by name.
pub(crate) fn named(outputs: &[Tensor]) -> Value {
    Value::Object(outputs.iter().map(|t| (t.name.clone(), t.nested_json())).collect())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn spec(name: &str, datatype: DataType, shape: &[i64]) -> TensorSpec {
        TensorSpec { name: name.into(), datatype, shape: shape.to_vec() }
    }

    fn tensor(name: &str, shape: Vec<usize>, data: Data) -> Tensor {
        Tensor::new(name, shape, data).expect("tensor")
    }

    #[test]
    fn tables_fill_one_input_by_position_and_many_by_name() {
        let one = [spec("x", DataType::F32, &[-1, 2])];
        let split = json!({"columns": ["a", "b"], "data": [[1, 2.5], [3, 4]]});
        assert_eq!(
            Frame::from_split(&split).and_then(|f| f.into_tensors(&one)),
            Ok(vec![tensor("x", vec![2, 2], Data::F32(vec![1.0, 2.5, 3.0, 4.0]))])
        );
        let records = json!([{"a": 1, "b": 2}, {"a": 3, "b": 4}]);
        assert_eq!(
            Frame::from_records(&records).and_then(|f| f.into_tensors(&one)),
            Ok(vec![tensor("x", vec![2, 2], Data::F32(vec![1.0, 2.0, 3.0, 4.0]))])
        );
        let csv = b"a,b\n1,2.5\n3,4\n";
        assert_eq!(
            Frame::from_csv(csv).and_then(|f| f.into_tensors(&one)),
            Ok(vec![tensor("x", vec![2, 2], Data::F32(vec![1.0, 2.5, 3.0, 4.0]))])
        );
        let many = [spec("age", DataType::I64, &[-1, 1]), spec("city", DataType::Bytes, &[-1])];
        let split = json!({"columns": ["city", "age"], "data": [["Oslo", 30], ["Lima", 41]]});
        assert_eq!(
            Frame::from_split(&split).and_then(|f| f.into_tensors(&many)),
            Ok(vec![
                tensor("age", vec![2, 1], Data::I64(vec![30, 41])),
                tensor("city", vec![2], Data::Bytes(vec![b"Oslo".to_vec(), b"Lima".to_vec()])),
            ])
        );
        let vector = [spec("x", DataType::F64, &[-1])];
        assert_eq!(
            Frame::from_csv(b"x\n1\n2\n").and_then(|f| f.into_tensors(&vector)),
            Ok(vec![tensor("x", vec![2], Data::F64(vec![1.0, 2.0]))])
        );
    }

    #[test]
    fn bad_tables_are_refused_with_their_row_and_column() {
        let one = [spec("x", DataType::F32, &[-1, 2])];
        let ints = [spec("x", DataType::I8, &[-1, 1])];
        let many = [spec("a", DataType::F32, &[-1]), spec("b", DataType::F32, &[-1])];
        let cases: Vec<(Result<Frame, OipError>, &[TensorSpec], &str)> = vec![
            (Frame::from_split(&json!({"columns": ["a", "b"], "data": [[1, 2], [3]]})), &one, "row 1 has 1 values for 2 columns"),
            (Frame::from_split(&json!({"columns": ["a", "b", "c"], "data": [[1, 2, 3]]})), &one, "takes 2 columns; the table has 3"),
            (Frame::from_split(&json!({"columns": ["a", "a"], "data": [[1, 2]]})), &one, "column 'a' appears twice"),
            (Frame::from_split(&json!({"columns": ["a", "b"], "data": [[1, null]]})), &one, "row 0 of column 'b' has no value"),
            (Frame::from_split(&json!({"columns": ["a", "b"], "data": [[1, "x"]]})), &one, "the string \"x\", which is not FP32"),
            (Frame::from_split(&json!({"columns": ["a", "b"], "data": [[1, [2]]]})), &one, "table cells are scalars"),
            (Frame::from_split(&json!({"columns": ["a", "b"], "data": []})), &one, "no rows"),
            (Frame::from_split(&json!({"columns": ["a"], "data": [[1.5]]})), &ints, "1.5, which is not INT8"),
            (Frame::from_split(&json!({"columns": ["a"], "data": [[300]]})), &ints, "300, which is not INT8"),
            (Frame::from_split(&json!({"columns": ["a", "b", "c"], "data": [[1, 2, 3]]})), &many, "unknown column 'c'"),
            (Frame::from_split(&json!({"columns": ["a"], "data": [[1]]})), &many, "no column 'b'"),
            (Frame::from_records(&json!([{"a": 1, "b": 2}, {"a": 3}])), &many, "row 1 of column 'b' has no value"),
            (Frame::from_csv(b"a,b\n1,nan\n"), &many, "NaN"),
            (Frame::from_csv(b"a,b\n1,2,3\n"), &many, "CSV row 0"),
            (Frame::from_csv(b"a,b\n1,\n"), &many, "row 0 of column 'b' has no value"),
            (Frame::from_split(&json!({"columns": ["a"], "data": [[1]], "extra": 1})), &many, "unknown field 'extra'"),
        ];
        for (frame, specs, want) in cases {
            let err = frame.and_then(|f| f.into_tensors(specs)).expect_err(want);
            assert!(err.0.contains(want), "{err} should mention {want}");
        }
    }

    #[test]
    fn tensor_inputs_take_their_shape_from_the_nesting() {
        let one = [spec("x", DataType::F32, &[-1, 2])];
        assert_eq!(
            tensors_from_inputs(&json!([[1, 2], [3, 4]]), &one),
            Ok(vec![tensor("x", vec![2, 2], Data::F32(vec![1.0, 2.0, 3.0, 4.0]))])
        );
        assert_eq!(tensors_from_instances(&json!([[1, 2]]), &one), Ok(vec![tensor("x", vec![1, 2], Data::F32(vec![1.0, 2.0]))]));
        let many = [spec("a", DataType::I64, &[-1, 1]), spec("b", DataType::Bool, &[-1])];
        assert_eq!(
            tensors_from_instances(&json!([{"a": 1, "b": true}, {"a": 2, "b": false}]), &many),
            Ok(vec![tensor("a", vec![2, 1], Data::I64(vec![1, 2])), tensor("b", vec![2], Data::Bool(vec![true, false]))])
        );
        assert_eq!(
            tensors_from_inputs(&json!({"a": [[1], [2]], "b": [true, false]}), &many),
            Ok(vec![tensor("a", vec![2, 1], Data::I64(vec![1, 2])), tensor("b", vec![2], Data::Bool(vec![true, false]))])
        );
        for (value, specs, want) in [
            (json!([[1, 2], [3]]), &one[..], "does not follow its shape"),
            (json!({"z": [1]}), &many[..], "unknown input 'z'"),
            (json!([1, 2]), &many[..], "give inputs as an object"),
            (json!([{"a": 1}, {"b": true}]), &many[..], "row 1 has no value for 'a'"),
            (json!([[1, "x"]]), &one[..], "is FP32"),
        ] {
            let err = tensors_from_instances(&value, specs).expect_err(want);
            assert!(err.0.contains(want), "{err} should mention {want}");
        }
    }

    #[test]
    fn answers_are_records_for_tables_and_named_lists_for_tensors() {
        let label = tensor("label", vec![2], Data::I64(vec![0, 1]));
        let probs = tensor("probabilities", vec![2, 2], Data::F32(vec![0.75, 0.25, 0.5, 0.5]));
        let value = tensor("variable", vec![2, 1], Data::F32(vec![1.5, 2.5]));
        assert_eq!(
            records(&[label.clone(), probs.clone()], 2),
            Some(json!([{"label": 0, "probabilities": [0.75, 0.25]}, {"label": 1, "probabilities": [0.5, 0.5]}]))
        );
        assert_eq!(records(std::slice::from_ref(&value), 2), Some(json!([{"variable": 1.5}, {"variable": 2.5}])));
        assert_eq!(records(std::slice::from_ref(&value), 3), None);
        assert_eq!(named(&[label, probs]), json!({"label": [0, 1], "probabilities": [[0.75, 0.25], [0.5, 0.5]]}));
    }
}
