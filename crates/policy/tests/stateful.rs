//! The contract with the flow table, played out the way the pipeline uses it: decide once
//! per new flow, install both directions, and re-decide a flow whose policy generation is
//! older than the published one on its next packet.

use std::sync::Arc;

use flow::{Action as FlowAction, FlowTable, FlowTableConfig, Generations, Verdict};
use policy::*;
use wire::flow::FlowKey;

fn server_policy(port: u16, verdict: Action) -> PolicySet {
    let rules = Arc::new(RuleList {
        rules: vec![Rule {
            proto: Some(6),
            dst_ports: Some(PortRange::single(port)),
            ..Rule::any(RuleId(1), verdict)
        }],
        default: Action::Allow,
    });
    PolicySet {
        endpoints: vec![Endpoint {
            id: EndpointId(1),
            vrf: 0,
            addrs: vec!["10.0.0.2".parse().unwrap()],
            ingress: Some(rules),
            // The server may not open connections itself.
            egress: Some(Arc::new(RuleList {
                rules: vec![],
                default: Action::Deny,
            })),
        }],
    }
}

fn flow_action(d: &FlowDecision) -> FlowAction {
    if d.allow {
        FlowAction::allow(1)
    } else {
        FlowAction::deny()
    }
}

#[test]
fn reverse_is_allowed_and_a_new_deny_cuts_the_flow_on_its_next_packet() {
    let store = PolicyStore::new();
    store.publish(&server_policy(22, Action::Allow)).unwrap();
    let table = FlowTable::new(FlowTableConfig::with_capacity(1024)).unwrap();
    let reader = table.reader().unwrap();

    let fwd = FlowKey::v4("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap(), 6, 40000, 22);
    let rev = fwd.reversed();
    let fields = Fields::from_key(&fwd, None);

    // First packet: one evaluation, both directions installed with its generation.
    let policy = store.load();
    let d = policy.evaluate(&fields);
    assert!(d.allow);
    let gens = Generations {
        route: 0,
        policy: d.generation,
    };
    reader
        .insert_pair(&fwd, &rev, flow_action(&d), flow_action(&d), gens, 0)
        .unwrap();
    let ingress = policy.table(EndpointId(1), Direction::Ingress).unwrap();
    assert_eq!(ingress.hits().next(), Some((RuleId(1), 1)), "evaluated once");
    // Evaluated on its own the reply would be refused by the server's egress list; it is
    // allowed because it inherits the forward decision.
    assert!(!policy.evaluate(&fields.reversed()).allow);
    let id = reader.lookup(&rev, rev.hash()).unwrap();
    assert_eq!(reader.flow(id).action().verdict, Verdict::Allow);

    // The operator denies port 22.
    let (g2, _) = store.publish(&server_policy(22, Action::Deny)).unwrap();
    assert!(g2 > d.generation);

    // Next packet of the established flow: the generation is stale, so it is re-decided.
    let id = reader.lookup(&fwd, fwd.hash()).unwrap();
    let f = reader.flow(id);
    let current = store.load();
    assert_ne!(f.generations().policy, current.generation());
    let d2 = current.evaluate(&fields);
    assert!(!d2.allow);
    assert_eq!(d2.ingress.unwrap().rule, Some(RuleId(1)));
    let gens2 = Generations {
        route: 0,
        policy: d2.generation,
    };
    f.set_action(flow_action(&d2), gens2);
    let back = reader.flow(reader.lookup(&rev, rev.hash()).unwrap());
    back.set_action(flow_action(&d2), gens2);
    assert_eq!(
        reader.flow(reader.lookup(&fwd, fwd.hash()).unwrap()).action().verdict,
        Verdict::Deny
    );
    assert_eq!(back.action().verdict, Verdict::Deny);
}
