//! Structure-aware inputs for JSON parsers (with `fuzz.rs`): a real document with one to three
//! of its values replaced, removed or duplicated, and random documents built from the keys the
//! real documents use, so that mutations reach the validation behind the JSON syntax.
#![allow(dead_code)]

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde_json::{Map, Number, Value};

/// Every object key in `v`, for random documents that look like real ones.
pub fn keys(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                if !out.contains(k) {
                    out.push(k.clone());
                }
                keys(v, out);
            }
        }
        Value::Array(a) => a.iter().take(3).for_each(|v| keys(v, out)),
        _ => {}
    }
}

/// A scalar from the values that break validation: extreme, negative, fractional and
/// integral-float numbers, empty strings, wrong types.
pub fn scalar(rng: &mut ChaCha8Rng, keys: &[String]) -> Value {
    let float = |f: f64| Value::Number(Number::from_f64(f).unwrap());
    match rng.random_range(0..16) {
        0 => Value::Null,
        1 => Value::Bool(rng.random()),
        2 => Value::from(0),
        3 => Value::from(-1),
        4 => Value::from(rng.random_range(0..20)),
        5 => Value::from(i64::MAX),
        6 => Value::from(u64::MAX),
        7 => float(1e308),
        8 => float(-1e308),
        9 => float(0.5),
        10 => float(1.0),
        11 => float(rng.random_range(-1e4..1e4)),
        12 => Value::from(""),
        13 if !keys.is_empty() => Value::from(keys[rng.random_range(0..keys.len())].clone()),
        14 => Value::from(9_007_199_254_740_993u64),
        _ => float(rng.random_range(0.0..1000.0)),
    }
}

/// A random value at most `depth` containers deep.
pub fn random_value(rng: &mut ChaCha8Rng, keys: &[String], depth: usize) -> Value {
    if depth == 0 || rng.random_range(0..3) == 0 {
        return scalar(rng, keys);
    }
    if rng.random_bool(0.5) {
        let n = rng.random_range(0..6);
        Value::Array((0..n).map(|_| random_value(rng, keys, depth - 1)).collect())
    } else {
        let mut m = Map::new();
        for _ in 0..rng.random_range(0..6) {
            let k = if keys.is_empty() || rng.random_range(0..8) == 0 {
                "x".to_string()
            } else {
                keys[rng.random_range(0..keys.len())].clone()
            };
            m.insert(k, random_value(rng, keys, depth - 1));
        }
        Value::Object(m)
    }
}

/// Edits one random node of `v`.
pub fn mutate_value(rng: &mut ChaCha8Rng, v: &mut Value, keys: &[String]) {
    // Walk down a random path, stopping at each level with probability 1/3.
    let descend = rng.random_range(0..3) != 0;
    match v {
        Value::Array(a) if !a.is_empty() && descend => {
            let i = rng.random_range(0..a.len());
            return mutate_value(rng, &mut a[i], keys);
        }
        Value::Object(m) if !m.is_empty() && descend => {
            let i = rng.random_range(0..m.len());
            let k = m.keys().nth(i).unwrap().clone();
            return mutate_value(rng, m.get_mut(&k).unwrap(), keys);
        }
        _ => {}
    }
    match (rng.random_range(0..6), v) {
        (0, Value::Object(m)) if !m.is_empty() => {
            let i = rng.random_range(0..m.len());
            let k = m.keys().nth(i).unwrap().clone();
            m.remove(&k);
        }
        (1, Value::Object(m)) => {
            let k = if keys.is_empty() {
                "x".into()
            } else {
                keys[rng.random_range(0..keys.len())].clone()
            };
            m.insert(k, random_value(rng, keys, 2));
        }
        (2, Value::Array(a)) if !a.is_empty() => {
            let i = rng.random_range(0..a.len());
            if rng.random_bool(0.5) {
                let dup = a[i].clone();
                a.push(dup);
            } else {
                a.remove(i);
            }
        }
        (3, Value::Array(a)) => {
            let cut = rng.random_range(0..=a.len());
            a.truncate(cut);
        }
        (_, v) => *v = random_value(rng, keys, 2),
    }
}

/// A document: one of `seeds` with 1 to 3 edits (three times in four), or a random document.
pub fn json_case(rng: &mut ChaCha8Rng, seeds: &[Value], keys: &[String]) -> Vec<u8> {
    let v = if rng.random_range(0..4) != 0 {
        let mut v = seeds[rng.random_range(0..seeds.len())].clone();
        for _ in 0..rng.random_range(1..=3) {
            mutate_value(rng, &mut v, keys);
        }
        v
    } else {
        random_value(rng, keys, 4)
    };
    serde_json::to_vec(&v).unwrap()
}
