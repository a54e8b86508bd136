//! Unit tests of the flow language on real rule strings.

use super::*;

fn ports() -> BTreeMap<String, PortNo> {
    [("tap1", 1), ("tap2", 2), ("p1", 11), ("p2", 12)]
        .into_iter()
        .map(|(n, p)| (n.to_string(), p))
        .collect()
}

#[test]
fn brief_example_round_trips() {
    let p = ports();
    let text = "table=0,priority=100,in_port=tap1,dl_type=0x0800,nw_src=10.0.0.0/24,nw_proto=6,tp_dst=80,actions=mod_vlan_vid:10,output:tap2";
    let rule = parse_rule(text, &p).unwrap();
    let printed = format_rule(&rule, &p);
    assert_eq!(
        printed,
        "table=0,priority=100,tcp,in_port=tap1,nw_src=10.0.0.0/24,tp_dst=80,actions=mod_vlan_vid:10,output:tap2"
    );
    assert_eq!(parse_rule(&printed, &p).unwrap(), rule);
}
