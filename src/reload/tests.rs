use super::rule_changes;

#[test]
fn rule_changes_name_each_changed_line_by_route() {
    let before =
        "residency-policy 1\npolicy.mode enforce\nroute a\nroute.hosts x\nroute b\nroute.hosts y\n";
    let after =
        "residency-policy 1\npolicy.mode monitor\nroute b\nroute.hosts z\nroute c\nroute.hosts y\n";
    assert_eq!(
        rule_changes(before, after),
        [
            "policy.mode: enforce -> monitor",
            "route[b].hosts: y -> z",
            "route c added",
            "route[c].hosts: (none) -> y",
            "route a removed",
            "route[a].hosts: x -> (none)",
        ]
    );
    let swapped =
        "residency-policy 1\npolicy.mode enforce\nroute b\nroute.hosts y\nroute a\nroute.hosts x\n";
    assert_eq!(rule_changes(before, swapped), ["route order: a,b -> b,a"]);
    assert!(rule_changes(before, before).is_empty());
}
