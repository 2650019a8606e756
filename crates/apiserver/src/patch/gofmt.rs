//! Go's `%v` rendering of decoded JSON and `reflect.TypeOf` names, which apimachinery's patch error messages embed.

use serde_json::Value;
use std::fmt::Write;

/// `fmt.Sprintf("%v", v)` of a value `encoding/json` decoded into `interface{}`.
pub(super) fn value(v: &Value) -> String {
    let mut out = String::new();
    write_value(&mut out, v);
    out
}

fn write_value(out: &mut String, v: &Value) {
    match v {
        Value::Null => out.push_str("<nil>"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&float(n.as_f64().unwrap_or_default())),
        Value::String(s) => out.push_str(s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                write_value(out, item);
            }
            out.push(']');
        }
        Value::Object(map) => {
            // fmt prints maps sorted by key.
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push_str("map[");
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                out.push_str(k);
                out.push(':');
                write_value(out, &map[k]);
            }
            out.push(']');
        }
    }
}

/// `%v` of a float64 (`%g`, shortest): exponent notation when the decimal exponent is below -4 or at least 6.
fn float(f: f64) -> String {
    let exp = if f == 0.0 { 0 } else { f.abs().log10().floor() as i32 };
    if (-4..6).contains(&exp) {
        return format!("{f}");
    }
    let e = format!("{f:e}");
    let (mantissa, exponent) = e.split_once('e').unwrap_or((&e, "0"));
    let (sign, digits) = exponent.strip_prefix('-').map_or(("+", exponent), |d| ("-", d));
    let mut s = String::new();
    let _ = write!(s, "{mantissa}e{sign}{digits:0>2}");
    s
}

/// `reflect.TypeOf(v).String()` of a decoded JSON value.
pub(super) fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "<nil>",
        Value::Bool(_) => "bool",
        Value::Number(_) => "float64",
        Value::String(_) => "string",
        Value::Array(_) => "[]interface {}",
        Value::Object(_) => "map[string]interface {}",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn renders_like_go() {
        assert_eq!(
            value(&json!({"b": [1, "x", null], "a": 8080})),
            "map[a:8080 b:[1 x <nil>]]"
        );
        assert_eq!(value(&json!(0.5)), "0.5");
        assert_eq!(value(&json!(1e6)), "1e+06");
        assert_eq!(value(&json!(123456)), "123456");
        assert_eq!(value(&json!(1e-7)), "1e-07");
        assert_eq!(type_name(&json!([])), "[]interface {}");
    }
}
