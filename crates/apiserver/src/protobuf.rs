//! Protobuf request bodies of the kinds kubectl sends that way (`Content-Type: application/vnd.kubernetes.protobuf`
//! for `auth can-i`, `auth whoami`, `create token`, `create rolebinding|role|...`): the `k8s\0` envelope
//! (`runtime.Unknown`) and the fields of those kinds, turned into the JSON the rest of the server reads. Field
//! numbers are those of k8s.io/api's generated.proto files.

use serde_json::{Map, Value, json};

const MAGIC: &[u8] = b"k8s\0";

/// One field of a message: its number and its value (varint, or bytes for length-delimited fields).
enum Field<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
}

fn varint(buf: &[u8], at: &mut usize) -> Result<u64, String> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *buf.get(*at).ok_or("truncated varint")?;
        *at += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err("varint too long".into())
}

/// The fields of a message, in order.
fn fields(buf: &[u8]) -> Result<Vec<(u64, Field<'_>)>, String> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < buf.len() {
        let key = varint(buf, &mut at)?;
        let field = match key & 7 {
            0 => Field::Varint(varint(buf, &mut at)?),
            2 => {
                let len = usize::try_from(varint(buf, &mut at)?).map_err(|_| "length too large")?;
                let end = at
                    .checked_add(len)
                    .filter(|e| *e <= buf.len())
                    .ok_or("truncated field")?;
                let bytes = &buf[at..end];
                at = end;
                Field::Bytes(bytes)
            }
            1 => {
                at = at.checked_add(8).filter(|e| *e <= buf.len()).ok_or("truncated field")?;
                continue;
            }
            5 => {
                at = at.checked_add(4).filter(|e| *e <= buf.len()).ok_or("truncated field")?;
                continue;
            }
            other => return Err(format!("unsupported wire type {other}")),
        };
        out.push((key >> 3, field));
    }
    Ok(out)
}

/// How to read one message: each known field's JSON name and shape.
enum Shape {
    String,
    Strings,
    Int,
    Bool,
    Message(&'static [(u64, &'static str, Shape)]),
    Messages(&'static [(u64, &'static str, Shape)]),
}

fn message(buf: &[u8], shape: &[(u64, &str, Shape)]) -> Result<Value, String> {
    let mut out = Map::new();
    for (number, field) in fields(buf)? {
        let Some((_, name, kind)) = shape.iter().find(|(n, _, _)| *n == number) else {
            continue;
        };
        let value = match (kind, field) {
            (Shape::Int, Field::Varint(v)) => json!(v as i64),
            (Shape::Bool, Field::Varint(v)) => json!(v != 0),
            (Shape::String | Shape::Strings, Field::Bytes(b)) => {
                json!(std::str::from_utf8(b).map_err(|_| format!("{name}: not UTF-8"))?)
            }
            (Shape::Message(inner) | Shape::Messages(inner), Field::Bytes(b)) => message(b, inner)?,
            _ => return Err(format!("{name}: unexpected wire type")),
        };
        match kind {
            Shape::Strings | Shape::Messages(_) => {
                if let Some(list) = out.entry(name.to_string()).or_insert_with(|| json!([])).as_array_mut() {
                    list.push(value);
                }
            }
            _ => {
                out.insert(name.to_string(), value);
            }
        }
    }
    Ok(Value::Object(out))
}

const META: Shape = Shape::Message(&[
    (1, "name", Shape::String),
    (2, "generateName", Shape::String),
    (3, "namespace", Shape::String),
]);
const RESOURCE_ATTRIBUTES: Shape = Shape::Message(&[
    (1, "namespace", Shape::String),
    (2, "verb", Shape::String),
    (3, "group", Shape::String),
    (4, "version", Shape::String),
    (5, "resource", Shape::String),
    (6, "subresource", Shape::String),
    (7, "name", Shape::String),
]);
const POLICY_RULES: Shape = Shape::Messages(&[
    (1, "verbs", Shape::Strings),
    (2, "apiGroups", Shape::Strings),
    (3, "resources", Shape::Strings),
    (4, "resourceNames", Shape::Strings),
    (5, "nonResourceURLs", Shape::Strings),
]);
const SUBJECTS: Shape = Shape::Messages(&[
    (1, "kind", Shape::String),
    (2, "apiGroup", Shape::String),
    (3, "name", Shape::String),
    (4, "namespace", Shape::String),
]);
const ROLE_REF: Shape = Shape::Message(&[
    (1, "apiGroup", Shape::String),
    (2, "kind", Shape::String),
    (3, "name", Shape::String),
]);
const NON_RESOURCE_ATTRIBUTES: Shape = Shape::Message(&[(1, "path", Shape::String), (2, "verb", Shape::String)]);

/// The object a protobuf body of `kind` holds, as JSON.
pub fn decode(kind: &str, body: &[u8]) -> Result<Value, String> {
    let envelope = body.strip_prefix(MAGIC).ok_or("not a Kubernetes protobuf body")?;
    let mut raw: &[u8] = &[];
    for (number, field) in fields(envelope)? {
        if let (2, Field::Bytes(b)) = (number, field) {
            raw = b;
        }
    }
    let spec: &[(u64, &str, Shape)] = match kind {
        "SelfSubjectAccessReview" | "SubjectAccessReview" | "LocalSubjectAccessReview" => &[
            (1, "resourceAttributes", RESOURCE_ATTRIBUTES),
            (2, "nonResourceAttributes", NON_RESOURCE_ATTRIBUTES),
            (3, "user", Shape::String),
            (4, "groups", Shape::Strings),
            (6, "uid", Shape::String),
        ],
        "SelfSubjectRulesReview" => &[(1, "namespace", Shape::String)],
        "TokenReview" => &[(1, "token", Shape::String), (2, "audiences", Shape::Strings)],
        "TokenRequest" => &[
            (1, "audiences", Shape::Strings),
            (4, "expirationSeconds", Shape::Int),
            (
                3,
                "boundObjectRef",
                Shape::Message(&[
                    (1, "kind", Shape::String),
                    (2, "apiVersion", Shape::String),
                    (3, "name", Shape::String),
                    (4, "uid", Shape::String),
                ]),
            ),
        ],
        // Only metadata and status.
        "SelfSubjectReview" => &[],
        // Kinds without a spec.
        "Role" | "ClusterRole" => return message(raw, &[(1, "metadata", META), (2, "rules", POLICY_RULES)]),
        "RoleBinding" | "ClusterRoleBinding" => {
            return message(
                raw,
                &[
                    (1, "metadata", META),
                    (2, "subjects", SUBJECTS),
                    (3, "roleRef", ROLE_REF),
                ],
            );
        }
        "ServiceAccount" => {
            return message(
                raw,
                &[(1, "metadata", META), (4, "automountServiceAccountToken", Shape::Bool)],
            );
        }
        other => return Err(format!("protobuf bodies of kind {other} are not served; send JSON")),
    };
    let shape = [(1, "metadata", META), (2, "spec", Shape::Message(spec))];
    let mut object = message(raw, &shape)?;
    if kind == "SelfSubjectReview"
        && let Some(map) = object.as_object_mut()
    {
        map.remove("spec");
    }
    Ok(object)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(number: u64, bytes: &[u8]) -> Vec<u8> {
        let mut out = vec![(number << 3 | 2) as u8, bytes.len() as u8];
        out.extend_from_slice(bytes);
        out
    }

    #[test]
    fn access_reviews_and_token_requests_decode_as_kubectl_sends_them() {
        let attrs = [field(1, b"default"), field(2, b"list"), field(5, b"pods")].concat();
        let review = field(2, &field(1, &attrs));
        let body = [
            MAGIC,
            &field(
                1,
                &[
                    field(1, b"authorization.k8s.io/v1"),
                    field(2, b"SelfSubjectAccessReview"),
                ]
                .concat(),
            ),
            &field(2, &review),
        ]
        .concat();
        let v = decode("SelfSubjectAccessReview", &body).unwrap();
        assert_eq!(
            v,
            json!({"spec": {"resourceAttributes": {"namespace": "default", "verb": "list", "resource": "pods"}}})
        );

        let spec = [field(1, b"api"), field(1, b"vault"), vec![4 << 3, 0x90, 0x1c]].concat();
        let body = [MAGIC, &field(2, &field(2, &spec))].concat();
        let v = decode("TokenRequest", &body).unwrap();
        assert_eq!(
            v,
            json!({"spec": {"audiences": ["api", "vault"], "expirationSeconds": 3600}})
        );

        let subject = [field(1, b"ServiceAccount"), field(3, b"default"), field(4, b"default")].concat();
        let binding = [
            field(1, &field(1, b"sa-view")),
            field(2, &subject),
            field(3, &[field(2, b"ClusterRole"), field(3, b"view")].concat()),
        ]
        .concat();
        let v = decode("RoleBinding", &[MAGIC, &field(2, &binding)].concat()).unwrap();
        assert_eq!(
            v,
            json!({"metadata": {"name": "sa-view"}, "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": "default"}],
                   "roleRef": {"kind": "ClusterRole", "name": "view"}})
        );

        assert!(decode("TokenRequest", b"k8s\0\x12\x05\x12\x09").is_err());
        assert!(decode("Pod", &body).is_err());
        assert!(decode("TokenRequest", b"{}").is_err());
    }
}
