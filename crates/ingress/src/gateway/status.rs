//! The statuses the compiled Gateway API objects should have, as JSON merge patches of `status`: conditions
//! stamped with the object's generation, keeping the transition time of a condition whose status did not change.

use super::compile::{Gateways, ListenerState, PolicyState, RouteState};
use super::conditions::Cond;
use serde_json::{Value, json};
use weft_gateway::api::ParentReference;
use weft_model::{Key, Snapshot};

/// One object's wanted status.
#[derive(Clone, Debug, PartialEq)]
pub struct Wanted {
    pub key: Key,
    pub status: Value,
}

fn conditions(list: &[Cond], generation: Option<i64>, before: Option<&Value>, now: &str) -> Value {
    let before = before.and_then(Value::as_array);
    let stamped: Vec<Value> = list
        .iter()
        .map(|c| {
            let status = if c.status { "True" } else { "False" };
            let kept = before
                .into_iter()
                .flatten()
                .find(|b| b["type"] == c.type_ && b["status"] == status)
                .and_then(|b| b["lastTransitionTime"].as_str());
            json!({
                "type": c.type_,
                "status": status,
                "reason": c.reason,
                "message": c.message,
                "observedGeneration": generation.unwrap_or(0),
                "lastTransitionTime": kept.unwrap_or(now),
            })
        })
        .collect();
    Value::Array(stamped)
}

fn current(snapshot: &Snapshot, key: &Key) -> Option<Value> {
    snapshot.get(key).map(|o| o.to_value()["status"].clone())
}

/// Every wanted status; `controller` names the route parents' `controllerName`; `now` is the time new
/// transitions get (RFC 3339).
pub fn wanted(gateways: &Gateways, snapshot: &Snapshot, controller: &str, now: &str) -> Vec<Wanted> {
    let mut out = Vec::new();
    for (name, generation, conds) in &gateways.classes {
        let key = Key::new("GatewayClass", None, name);
        let before = current(snapshot, &key);
        let status =
            json!({"conditions": conditions(conds, *generation, before.as_ref().map(|b| &b["conditions"]), now)});
        out.push(Wanted { key, status });
    }
    for g in &gateways.gateways {
        let key = Key::new("Gateway", Some(&g.namespace), &g.name);
        let before = current(snapshot, &key);
        let listeners = listeners(&g.listeners, g.generation, before.as_ref(), now);
        let addresses: Vec<Value> = g
            .addresses
            .iter()
            .map(|a| {
                let kind = if a.parse::<std::net::IpAddr>().is_ok() {
                    "IPAddress"
                } else {
                    "Hostname"
                };
                json!({"type": kind, "value": a})
            })
            .collect();
        let status = json!({
            "addresses": addresses,
            "conditions": conditions(&g.conditions, g.generation, before.as_ref().map(|b| &b["conditions"]), now),
            "listeners": listeners,
            "attachedListenerSets": g.attached_listener_sets,
        });
        out.push(Wanted { key, status });
    }
    for s in &gateways.listener_sets {
        let key = Key::new("ListenerSet", Some(&s.namespace), &s.name);
        let before = current(snapshot, &key);
        let status = json!({
            "conditions": conditions(&s.conditions, s.generation, before.as_ref().map(|b| &b["conditions"]), now),
            "listeners": listeners(&s.listeners, s.generation, before.as_ref(), now),
        });
        out.push(Wanted { key, status });
    }
    for r in &gateways.routes {
        out.push(route(r, snapshot, controller, now));
    }
    for p in &gateways.policies {
        out.push(policy(p, snapshot, controller, now));
    }
    out
}

/// A BackendTLSPolicy's status: an ancestor entry per Gateway of `controller`'s; other controllers' kept.
fn policy(p: &PolicyState, snapshot: &Snapshot, controller: &str, now: &str) -> Wanted {
    let key = Key::new("BackendTLSPolicy", Some(&p.namespace), &p.name);
    let before = current(snapshot, &key);
    let wanted = p.ancestors.iter().map(|(a, conds)| (a, conds.as_slice()));
    let ancestors = PerParent {
        list: "ancestors",
        reference: "ancestorRef",
        controller,
        generation: p.generation,
        now,
    }
    .entries(before.as_ref(), wanted);
    Wanted {
        key,
        status: json!({"ancestors": ancestors}),
    }
}

/// A status list with an entry per parent (a route's `parents`, a policy's `ancestors`), each naming its parent
/// in `reference`: other controllers' entries are kept, `controller`'s are the wanted ones.
struct PerParent<'a> {
    list: &'a str,
    reference: &'a str,
    controller: &'a str,
    generation: Option<i64>,
    now: &'a str,
}

impl PerParent<'_> {
    fn entries<'w>(
        &self,
        before: Option<&Value>,
        wanted: impl Iterator<Item = (&'w ParentReference, &'w [Cond])>,
    ) -> Vec<Value> {
        let old = before
            .and_then(|b| b[self.list].as_array())
            .cloned()
            .unwrap_or_default();
        let mut out: Vec<Value> = old
            .iter()
            .filter(|p| p["controllerName"] != self.controller)
            .cloned()
            .collect();
        for (parent, conds) in wanted {
            let reference = serde_json::to_value(parent).unwrap_or_default();
            let previous = old
                .iter()
                .find(|o| o["controllerName"] == self.controller && o[self.reference] == reference)
                .map(|o| &o["conditions"]);
            let mut entry = json!({
                "controllerName": self.controller,
                "conditions": conditions(conds, self.generation, previous, self.now),
            });
            entry[self.reference] = reference;
            out.push(entry);
        }
        out
    }
}

/// The `listeners` of a Gateway's or ListenerSet's status (`before`: the status it has).
fn listeners(list: &[ListenerState], generation: Option<i64>, before: Option<&Value>, now: &str) -> Vec<Value> {
    list.iter()
        .map(|l| {
            let old = before
                .and_then(|b| b["listeners"].as_array())
                .and_then(|ls| ls.iter().find(|x| x["name"] == l.name.as_str()))
                .map(|x| &x["conditions"]);
            json!({
                "name": l.name,
                "supportedKinds": l.supported_kinds,
                "attachedRoutes": l.attached,
                "conditions": conditions(&l.conditions, generation, old, now),
            })
        })
        .collect()
}

/// A route's status: the parents of this controller as wanted; other controllers' entries kept.
fn route(r: &RouteState, snapshot: &Snapshot, controller: &str, now: &str) -> Wanted {
    let key = Key::new(r.kind, Some(&r.namespace), &r.name);
    let before = current(snapshot, &key);
    let wanted = r.parents.iter().map(|p| (&p.parent, p.conditions.as_slice()));
    let parents = PerParent {
        list: "parents",
        reference: "parentRef",
        controller,
        generation: r.generation,
        now,
    }
    .entries(before.as_ref(), wanted);
    Wanted {
        key,
        status: json!({"parents": parents}),
    }
}
