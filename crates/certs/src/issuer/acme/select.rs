//! Which of an issuer's solvers answers an identifier, by cert-manager's precedence: a solver's `selector` must
//! match entirely (every `matchLabels` label on the Order, the name in `dnsNames`, the name inside one of
//! `dnsZones`); among those that match, one naming the identifier in `dnsNames` beats one that does not, then the
//! longest matching `dnsZone` (in labels) wins, then the most `matchLabels`; a solver without a selector matches
//! everything and is chosen only when nothing more specific is; ties go to the first listed. Only HTTP-01 solvers
//! count (weft solves no other type), and a wildcard name has no HTTP-01 challenge.
//!
//! `http01.ingress` is then adjusted by the Order's override annotations, as cert-manager adjusts it (ingress-shim
//! sets them from the Ingress's `acme.cert-manager.io/http01-edit-in-place` and `http01-ingress-class`).

use crate::annotations::{
    HTTP01_OVERRIDE_INGRESS_CLASS as OVERRIDE_INGRESS_CLASS,
    HTTP01_OVERRIDE_INGRESS_CLASS_NAME as OVERRIDE_INGRESS_CLASS_NAME,
    HTTP01_OVERRIDE_INGRESS_NAME as OVERRIDE_INGRESS_NAME,
};
use crate::api::{ACMEChallengeSolver, CertificateDNSNameSelector};
use std::collections::BTreeMap;

/// How well a selector matched: (names matched, zone labels matched, labels matched).
type Score = (bool, usize, usize);

/// The solver for `identifier` among `solvers`, given the Order's labels; None when no solver can serve it.
pub fn pick<'a>(
    solvers: &'a [ACMEChallengeSolver],
    identifier: &str,
    labels: &BTreeMap<String, String>,
) -> Option<&'a ACMEChallengeSolver> {
    if identifier.starts_with("*.") {
        return None;
    }
    let mut best: Option<(&ACMEChallengeSolver, Score)> = None;
    for solver in solvers.iter().filter(|s| s.http01.is_some()) {
        let Some(selector) = &solver.selector else {
            // Match-all, scoring nothing: only as long as nothing else was chosen.
            if best.is_none() {
                best = Some((solver, (false, 0, 0)));
            }
            continue;
        };
        let Some(score) = score(selector, identifier, labels) else {
            continue;
        };
        if best.is_none_or(|(_, chosen)| more_specific(score, chosen)) {
            best = Some((solver, score));
        }
    }
    best.map(|(solver, _)| solver)
}

/// Whether `new` beats `chosen`: dnsNames first, then the longer zone, then more labels.
fn more_specific(new: Score, chosen: Score) -> bool {
    let (new_names, new_zone, new_labels) = new;
    let (names, zone, labels) = chosen;
    if new_names != names {
        return new_names;
    }
    if new_zone != zone {
        return new_zone > zone;
    }
    new_labels > labels
}

/// The selector's match of `identifier` and the Order's labels; None when any part of it does not match.
fn score(selector: &CertificateDNSNameSelector, identifier: &str, labels: &BTreeMap<String, String>) -> Option<Score> {
    if !selector.match_labels.iter().all(|(k, v)| labels.get(k) == Some(v)) {
        return None;
    }
    let names = !selector.dns_names.is_empty();
    if names && !selector.dns_names.iter().any(|n| n == identifier) {
        return None;
    }
    let zone = if selector.dns_zones.is_empty() {
        0
    } else {
        let longest = selector
            .dns_zones
            .iter()
            .filter_map(|zone| zone_labels(zone, identifier))
            .max()?;
        // A zone of no labels ("" or ".") matches nothing, as in cert-manager.
        (longest > 0).then_some(longest)?
    };
    Some((names, zone, selector.match_labels.len()))
}

/// The number of labels of `zone` when `name` is inside it (or is it), compared case-insensitively.
fn zone_labels(zone: &str, name: &str) -> Option<usize> {
    let split = |s: &str| -> Vec<String> {
        s.trim_end_matches('.')
            .split('.')
            .filter(|l| !l.is_empty())
            .map(str::to_ascii_lowercase)
            .collect()
    };
    let (zone, name) = (split(zone), split(name));
    name.ends_with(&zone).then_some(zone.len())
}

/// The solver as the Order's override annotations leave it: any of them replaces the solver's own Ingress
/// settings; more than one at once is an error (cert-manager's words).
pub fn with_overrides(
    mut solver: ACMEChallengeSolver,
    annotations: &BTreeMap<String, String>,
) -> Result<ACMEChallengeSolver, String> {
    let name = annotations.get(OVERRIDE_INGRESS_NAME);
    let class = annotations.get(OVERRIDE_INGRESS_CLASS);
    let class_name = annotations.get(OVERRIDE_INGRESS_CLASS_NAME);
    let given = [name, class, class_name].iter().filter(|a| a.is_some()).count();
    if given > 1 {
        return Err("may not specify more than one of: name, class, ingressClassName override annotations".into());
    }
    if let Some(ingress) = solver.http01.as_mut().and_then(|h| h.ingress.as_mut())
        && given == 1
    {
        ingress.name = name.cloned();
        ingress.class = class.cloned();
        ingress.ingress_class_name = class_name.cloned();
    }
    Ok(solver)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{ACMEChallengeSolverHTTP01, ACMEChallengeSolverHTTP01Ingress};

    /// A solver whose Ingress class names it, with a selector of names, zones and labels.
    fn solver(id: &str, names: &[&str], zones: &[&str], labels: &[(&str, &str)]) -> ACMEChallengeSolver {
        ACMEChallengeSolver {
            selector: Some(CertificateDNSNameSelector {
                match_labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
                dns_names: names.iter().map(|n| n.to_string()).collect(),
                dns_zones: zones.iter().map(|z| z.to_string()).collect(),
            }),
            ..default(id)
        }
    }

    fn default(id: &str) -> ACMEChallengeSolver {
        ACMEChallengeSolver {
            selector: None,
            http01: Some(ACMEChallengeSolverHTTP01 {
                ingress: Some(ACMEChallengeSolverHTTP01Ingress {
                    ingress_class_name: Some(id.into()),
                    ..Default::default()
                }),
            }),
        }
    }

    fn chosen(solvers: &[ACMEChallengeSolver], name: &str, labels: &[(&str, &str)]) -> Option<String> {
        let labels = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        pick(solvers, name, &labels).and_then(|s| s.http01.clone()?.ingress?.ingress_class_name)
    }

    #[test]
    fn dns_names_beat_zones_which_beat_labels_which_beat_no_selector() {
        let solvers = [
            default("any"),
            solver("labelled", &[], &[], &[("team", "blue")]),
            solver("zone", &["a.example.com"], &[], &[]),
            solver("example", &[], &["example.com"], &[]),
            solver("sub", &[], &["sub.example.com"], &[]),
        ];
        assert_eq!(chosen(&solvers, "a.example.com", &[]).as_deref(), Some("zone"));
        assert_eq!(
            chosen(&solvers, "b.sub.example.com", &[("team", "blue")]).as_deref(),
            Some("sub")
        );
        assert_eq!(chosen(&solvers, "b.example.com", &[]).as_deref(), Some("example"));
        assert_eq!(
            chosen(&solvers, "other.org", &[("team", "blue")]).as_deref(),
            Some("labelled")
        );
        assert_eq!(
            chosen(&solvers, "other.org", &[("team", "green")]).as_deref(),
            Some("any")
        );
        // An empty selector scores nothing: it does not displace a solver without one listed before it.
        let empty = [default("any"), solver("empty", &[], &[], &[])];
        assert_eq!(chosen(&empty, "other.org", &[]).as_deref(), Some("any"));
        assert_eq!(chosen(&[empty[1].clone()], "other.org", &[]).as_deref(), Some("empty"));
    }

    #[test]
    fn every_part_of_a_selector_must_match() {
        let solvers = [
            solver("both", &["a.example.com"], &["example.com"], &[("team", "blue")]),
            solver("zone", &[], &["EXAMPLE.com."], &[]),
        ];
        assert_eq!(
            chosen(&solvers, "a.example.com", &[("team", "blue")]).as_deref(),
            Some("both")
        );
        // The label missing, the first solver is out; the zone matches case-insensitively, with its root dot.
        assert_eq!(chosen(&solvers, "a.example.com", &[]).as_deref(), Some("zone"));
        // A zone matches whole labels only.
        assert_eq!(chosen(&solvers, "notexample.com", &[]), None);
        assert_eq!(chosen(&solvers, "example.com", &[]).as_deref(), Some("zone"));
    }

    #[test]
    fn ties_go_to_the_first_listed_and_more_labels_win() {
        let solvers = [
            solver("first", &[], &["example.com"], &[]),
            solver("second", &[], &["example.com"], &[]),
            solver("labels", &[], &["example.com"], &[("a", "1")]),
        ];
        assert_eq!(chosen(&solvers[..2], "x.example.com", &[]).as_deref(), Some("first"));
        assert_eq!(
            chosen(&solvers, "x.example.com", &[("a", "1")]).as_deref(),
            Some("labels")
        );
        // Both name the identifier: the longer zone decides.
        let named = [
            solver("named", &["x.example.com"], &[], &[]),
            solver("named-zone", &["x.example.com"], &["example.com"], &[]),
        ];
        assert_eq!(chosen(&named, "x.example.com", &[]).as_deref(), Some("named-zone"));
    }

    #[test]
    fn no_solver_for_names_outside_every_selector_nor_for_wildcards() {
        let solvers = [solver("zone", &[], &["example.com"], &[])];
        assert_eq!(chosen(&solvers, "example.org", &[]), None);
        assert_eq!(chosen(&[default("any")], "*.example.com", &[]), None);
        // A solver without http01 (a DNS-01 one, which weft does not run) never answers.
        let dns01 = ACMEChallengeSolver::default();
        assert_eq!(chosen(&[dns01], "example.com", &[]), None);
    }

    #[test]
    fn override_annotations_replace_the_solvers_ingress_settings() {
        let annotations = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
        };
        let edited = with_overrides(default("nginx"), &annotations(&[(OVERRIDE_INGRESS_NAME, "web")])).unwrap();
        let ingress = edited.http01.unwrap().ingress.unwrap();
        assert_eq!(
            (ingress.name.as_deref(), ingress.ingress_class_name),
            (Some("web"), None)
        );
        let unchanged = with_overrides(default("nginx"), &BTreeMap::new()).unwrap();
        assert_eq!(unchanged, default("nginx"));
        let both = annotations(&[(OVERRIDE_INGRESS_NAME, "web"), (OVERRIDE_INGRESS_CLASS, "nginx")]);
        assert!(with_overrides(default("nginx"), &both).is_err());
    }
}
