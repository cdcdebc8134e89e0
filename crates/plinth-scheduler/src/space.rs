//! A sweep's search space and its trials' parameters: grid, choice, uniform, log-uniform and
//! integer domains, sampled reproducibly from a seed. Pure, no I/O.
//!
//! Grid parameters are crossed (every combination, in declaration order, the last varying
//! fastest); the other parameters are drawn for each trial. Trial `i` takes grid combination
//! `i mod combinations` and its own draws, so the same spec and seed always give the same trials.

use std::fmt;

use rand::{Rng, SeedableRng};

/// A parameter's value, as a trial gets it.
#[derive(Debug, Clone, PartialEq)]
pub enum ParamValue {
    Float(f64),
    Int(i64),
    Text(String),
}

impl fmt::Display for ParamValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParamValue::Float(v) => write!(f, "{v}"),
            ParamValue::Int(v) => write!(f, "{v}"),
            ParamValue::Text(v) => f.write_str(v),
        }
    }
}

/// Where a parameter's values come from.
#[derive(Debug, Clone, PartialEq)]
pub enum Domain {
    /// Every value, crossed with the other grids.
    Grid(Vec<ParamValue>),
    /// One value drawn at random per trial.
    Choice(Vec<ParamValue>),
    Uniform {
        low: f64,
        high: f64,
    },
    /// Uniform in the logarithm: each decade equally likely.
    LogUniform {
        low: f64,
        high: f64,
    },
    /// An integer from `low` to `high`, both included.
    Int {
        low: i64,
        high: i64,
    },
}

/// One parameter of the search space.
#[derive(Debug, Clone, PartialEq)]
pub struct Parameter {
    pub name: String,
    pub domain: Domain,
}

/// Checks a space: names and bounds. Every problem, one per line.
pub fn validate(space: &[Parameter]) -> Result<(), Vec<String>> {
    let mut problems = Vec::new();
    for (i, p) in space.iter().enumerate() {
        let ok_name = p.name.starts_with(|c: char| c.is_ascii_alphabetic())
            && p.name.len() <= 64
            && p.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !ok_name {
            problems.push(format!("parameters.{}: use 1 to 64 ASCII letters, digits or '_', starting with a letter", p.name));
        }
        if space[..i].iter().any(|q| q.name == p.name) {
            problems.push(format!("parameters.{}: declared twice", p.name));
        }
        let bad = match &p.domain {
            Domain::Grid(values) | Domain::Choice(values) => values.is_empty().then_some("needs at least one value"),
            Domain::Uniform { low, high } => {
                (!(low.is_finite() && high.is_finite() && low < high)).then_some("needs finite bounds, low < high")
            }
            Domain::LogUniform { low, high } => {
                (!(low.is_finite() && high.is_finite() && *low > 0.0 && low < high)).then_some("needs bounds 0 < low < high")
            }
            Domain::Int { low, high } => (low > high).then_some("needs low <= high"),
        };
        if let Some(why) = bad {
            problems.push(format!("parameters.{}: {why}", p.name));
        }
    }
    if problems.is_empty() { Ok(()) } else { Err(problems) }
}

/// How many combinations the grid parameters make (1 without any).
pub fn grid_size(space: &[Parameter]) -> usize {
    space
        .iter()
        .map(|p| match &p.domain {
            Domain::Grid(values) => values.len().max(1),
            _ => 1,
        })
        .fold(1usize, usize::saturating_mul)
}

/// The parameters of trial `index` (0-based) of a sweep with `seed`.
pub fn trial(space: &[Parameter], seed: u64, index: u64) -> Vec<(String, ParamValue)> {
    // Each trial has a generator of its own, so trial `i` does not depend on how many came before.
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ index.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let mut combination = index as usize % grid_size(space);
    // The last grid parameter varies fastest: digits taken from the right.
    let mut grid_picks = vec![0usize; space.len()];
    for (i, p) in space.iter().enumerate().rev() {
        if let Domain::Grid(values) = &p.domain {
            grid_picks[i] = combination % values.len().max(1);
            combination /= values.len().max(1);
        }
    }
    space
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let value = match &p.domain {
                Domain::Grid(values) => values[grid_picks[i]].clone(),
                Domain::Choice(values) => values[rng.random_range(0..values.len())].clone(),
                Domain::Uniform { low, high } => ParamValue::Float(rng.random_range(*low..*high)),
                Domain::LogUniform { low, high } => ParamValue::Float(rng.random_range(low.ln()..high.ln()).exp()),
                Domain::Int { low, high } => ParamValue::Int(rng.random_range(*low..=*high)),
            };
            (p.name.clone(), value)
        })
        .collect()
}

/// `command` with `{name}` replaced by each parameter's value (`{{` and `}}` are literal braces).
pub fn substitute(command: &[String], params: &[(String, ParamValue)]) -> Vec<String> {
    command
        .iter()
        .map(|arg| {
            let mut out = arg.replace("{{", "\u{0}").replace("}}", "\u{1}");
            for (name, value) in params {
                out = out.replace(&format!("{{{name}}}"), &value.to_string());
            }
            out.replace('\u{0}', "{").replace('\u{1}', "}")
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn space() -> Vec<Parameter> {
        vec![
            Parameter { name: "batch".into(), domain: Domain::Grid(vec![ParamValue::Int(32), ParamValue::Int(64)]) },
            Parameter { name: "opt".into(), domain: Domain::Grid(vec![ParamValue::Text("adam".into()), ParamValue::Text("sgd".into())]) },
            Parameter { name: "lr".into(), domain: Domain::LogUniform { low: 1e-4, high: 1e-1 } },
            Parameter { name: "layers".into(), domain: Domain::Int { low: 1, high: 4 } },
            Parameter { name: "dropout".into(), domain: Domain::Uniform { low: 0.0, high: 0.5 } },
            Parameter {
                name: "act".into(),
                domain: Domain::Choice(vec![ParamValue::Text("relu".into()), ParamValue::Text("gelu".into())]),
            },
        ]
    }

    #[test]
    fn grids_are_crossed_and_draws_stay_in_bounds_and_repeat() {
        let s = space();
        assert_eq!(grid_size(&s), 4);
        let grid: Vec<String> = (0..4).map(|i| format!("{}/{}", trial(&s, 7, i)[0].1, trial(&s, 7, i)[1].1)).collect();
        assert_eq!(grid, ["32/adam", "32/sgd", "64/adam", "64/sgd"]);
        for i in 0..200 {
            let t = trial(&s, 7, i);
            let ParamValue::Float(lr) = t[2].1 else { panic!("lr is a float") };
            assert!((1e-4..1e-1).contains(&lr), "{lr}");
            let ParamValue::Int(layers) = t[3].1 else { panic!("layers is an int") };
            assert!((1..=4).contains(&layers));
            let ParamValue::Float(d) = t[4].1 else { panic!("dropout is a float") };
            assert!((0.0..0.5).contains(&d));
            assert_eq!(t, trial(&s, 7, i), "the same seed and index give the same trial");
        }
        assert_ne!(trial(&s, 7, 5), trial(&s, 8, 5), "another seed, other draws");
        // Log-uniform: each decade about equally often.
        let below_1e3 = (0..3000).filter(|i| matches!(trial(&s, 1, *i)[2].1, ParamValue::Float(v) if v < 1e-3)).count();
        assert!((800..1200).contains(&below_1e3), "{below_1e3} of 3000 in the first of three decades");
    }

    #[test]
    fn bad_spaces_list_every_problem() {
        let bad = vec![
            Parameter { name: "1x".into(), domain: Domain::Grid(vec![]) },
            Parameter { name: "lr".into(), domain: Domain::LogUniform { low: 0.0, high: 1.0 } },
            Parameter { name: "lr".into(), domain: Domain::Uniform { low: 1.0, high: 1.0 } },
            Parameter { name: "n".into(), domain: Domain::Int { low: 3, high: 2 } },
        ];
        let problems = validate(&bad).expect_err("invalid");
        assert_eq!(problems.len(), 6, "{problems:#?}");
        assert!(validate(&space()).is_ok());
    }

    #[test]
    fn commands_take_the_values() {
        let params = vec![("lr".to_owned(), ParamValue::Float(0.01)), ("opt".to_owned(), ParamValue::Text("adam".into()))];
        let command: Vec<String> = ["python", "train.py", "--lr={lr}", "--opt", "{opt}", "{{literal}}"].map(String::from).to_vec();
        assert_eq!(substitute(&command, &params), ["python", "train.py", "--lr=0.01", "--opt", "adam", "{literal}"]);
    }
}
