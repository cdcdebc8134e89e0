//! Small ONNX graphs written here, byte by byte (the protobuf encoding of `onnx.proto`'s
//! `ModelProto`), for what scikit-learn's converters do not make: every datatype, types the
//! runtime refuses, ZipMap, an operator nobody implements, a graph that fails when run.

use std::path::{Path, PathBuf};

/// ONNX element types (`TensorProto.DataType`).
pub(crate) mod elem {
    pub(crate) const FLOAT: u64 = 1;
    pub(crate) const UINT8: u64 = 2;
    pub(crate) const INT8: u64 = 3;
    pub(crate) const UINT16: u64 = 4;
    pub(crate) const INT16: u64 = 5;
    pub(crate) const INT32: u64 = 6;
    pub(crate) const INT64: u64 = 7;
    pub(crate) const STRING: u64 = 8;
    pub(crate) const BOOL: u64 = 9;
    pub(crate) const FLOAT16: u64 = 10;
    pub(crate) const DOUBLE: u64 = 11;
    pub(crate) const UINT32: u64 = 12;
    pub(crate) const UINT64: u64 = 13;
}

/// A protobuf message being written: fields in order, each a key and a value.
#[derive(Default, Clone)]
pub(crate) struct Msg(Vec<u8>);

impl Msg {
    fn key(mut self, field: u64, wire_type: u64) -> Msg {
        put_varint(&mut self.0, (field << 3) | wire_type);
        self
    }

    pub(crate) fn int(self, field: u64, value: i64) -> Msg {
        let mut m = self.key(field, 0);
        // Negative int64s are written as their two's complement, ten bytes long.
        put_varint(&mut m.0, value as u64);
        m
    }

    pub(crate) fn bytes(self, field: u64, value: &[u8]) -> Msg {
        let mut m = self.key(field, 2);
        put_varint(&mut m.0, value.len() as u64);
        m.0.extend_from_slice(value);
        m
    }

    pub(crate) fn text(self, field: u64, value: &str) -> Msg {
        self.bytes(field, value.as_bytes())
    }

    pub(crate) fn msg(self, field: u64, value: Msg) -> Msg {
        self.bytes(field, &value.0)
    }
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// `TypeProto` of a tensor; `None` is a dimension of any size (named `N`).
pub(crate) fn tensor(elem_type: u64, dims: &[Option<i64>]) -> Msg {
    let shape = dims.iter().fold(Msg::default(), |shape, dim| {
        let dim = match dim {
            Some(n) => Msg::default().int(1, *n),
            None => Msg::default().text(2, "N"),
        };
        shape.msg(1, dim)
    });
    Msg::default().msg(1, Msg::default().int(1, elem_type as i64).msg(2, shape))
}

/// `TypeProto` of what ZipMap answers: a sequence of maps from int64 labels to float scores.
pub(crate) fn sequence_of_maps() -> Msg {
    let map = Msg::default().int(1, elem::INT64 as i64).msg(2, Msg::default().msg(1, Msg::default().int(1, elem::FLOAT as i64)));
    Msg::default().msg(4, Msg::default().msg(1, Msg::default().msg(5, map)))
}

/// `ValueInfoProto`: a named input or output of a type.
pub(crate) fn value(name: &str, ty: Msg) -> Msg {
    Msg::default().text(1, name).msg(2, ty)
}

/// `NodeProto` of an operator (in the default domain unless `domain` is given).
pub(crate) fn node(op: &str, domain: &str, inputs: &[&str], outputs: &[&str], attributes: Vec<Msg>) -> Msg {
    let mut m = Msg::default();
    for i in inputs {
        m = m.text(1, i);
    }
    for o in outputs {
        m = m.text(2, o);
    }
    m = m.text(4, op);
    for a in attributes {
        m = m.msg(5, a);
    }
    if !domain.is_empty() {
        m = m.text(7, domain);
    }
    m
}

/// `AttributeProto` of a list of int64s.
pub(crate) fn ints(name: &str, values: &[i64]) -> Msg {
    let m = Msg::default().text(1, name);
    values.iter().fold(m, |m, v| m.int(8, *v)).int(20, 7)
}

/// `AttributeProto` of one int64.
pub(crate) fn int(name: &str, value: i64) -> Msg {
    Msg::default().text(1, name).int(3, value).int(20, 2)
}

/// `TensorProto` of int64s, for an initializer.
pub(crate) fn int64s(name: &str, dims: &[i64], values: &[i64]) -> Msg {
    let m = dims.iter().fold(Msg::default(), |m, d| m.int(1, *d)).int(2, elem::INT64 as i64);
    values.iter().fold(m, |m, v| m.int(7, *v)).text(8, name)
}

/// A graph: its nodes, initializers, inputs and outputs.
#[derive(Default)]
pub(crate) struct Graph {
    pub(crate) nodes: Vec<Msg>,
    pub(crate) initializers: Vec<Msg>,
    pub(crate) inputs: Vec<Msg>,
    pub(crate) outputs: Vec<Msg>,
}

impl Graph {
    /// The `ModelProto` bytes: IR version 8, opset 17 and the ML domain's opset 3.
    pub(crate) fn encode(self) -> Vec<u8> {
        let mut graph = Msg::default();
        for n in self.nodes {
            graph = graph.msg(1, n);
        }
        graph = graph.text(2, "test");
        for i in self.initializers {
            graph = graph.msg(5, i);
        }
        for i in self.inputs {
            graph = graph.msg(11, i);
        }
        for o in self.outputs {
            graph = graph.msg(12, o);
        }
        let opset = |domain: &str, version: i64| Msg::default().text(1, domain).int(2, version);
        Msg::default().int(1, 8).msg(8, opset("", 17)).msg(8, opset("ai.onnx.ml", 3)).msg(7, graph).0
    }

    /// Writes the model as `dir/name.onnx`.
    pub(crate) fn write(self, dir: &Path, name: &str) -> PathBuf {
        let path = dir.join(format!("{name}.onnx"));
        std::fs::write(&path, self.encode()).expect("write the model");
        path
    }
}

/// `Y = Identity(X)` over one element type and shape.
pub(crate) fn identity(elem_type: u64, dims: &[Option<i64>]) -> Graph {
    Graph {
        nodes: vec![node("Identity", "", &["X"], &["Y"], vec![])],
        inputs: vec![value("X", tensor(elem_type, dims))],
        outputs: vec![value("Y", tensor(elem_type, dims))],
        ..Graph::default()
    }
}
